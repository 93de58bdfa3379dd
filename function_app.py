"""Composition root: one Durable Functions app, one blueprint per concern from ``functions/``."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions import health, housekeeping, lakehouse, xact
from shared.logs import install_redaction

install_redaction()
app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(xact.bp)
app.register_functions(lakehouse.bp)
app.register_functions(housekeeping.bp)
app.register_functions(health.bp)
