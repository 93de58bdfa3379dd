"""Composition root: one Durable Functions app, one blueprint per concern from ``functions/``,
and the concrete plugins handed to the runtime."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions import claimx, health, housekeeping, lakehouse, ops, xact
from plugins import configured_plugins
from shared.logs import install_redaction
from shared.runtime import use_plugins
from shared.telemetry import install_log_context

install_redaction()
install_log_context()
use_plugins(configured_plugins)
app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(xact.bp)
app.register_functions(claimx.bp)
app.register_functions(lakehouse.bp)
app.register_functions(housekeeping.bp)
app.register_functions(health.bp)
app.register_functions(ops.bp)
