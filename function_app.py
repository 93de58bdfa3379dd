"""Composition root: one Durable Functions app, one blueprint per concern from ``functions/``."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
