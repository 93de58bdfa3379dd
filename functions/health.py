"""Health route (function key required, like every ops route)."""

from __future__ import annotations

import json

import azure.functions as func

from shared.health import check_health

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health()
    return func.HttpResponse(
        json.dumps(report.to_dict()),
        status_code=200 if report.status == "ready" else 503,
        mimetype="application/json",
    )
