"""Health routes: liveness without a key (it says nothing but "alive"), readiness with one."""

from __future__ import annotations

import json

import azure.functions as func

from shared.health import check_readiness, liveness

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(liveness()), mimetype="application/json")


@bp.route(route="health/ready", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health_ready(req: func.HttpRequest) -> func.HttpResponse:
    report = check_readiness()
    return func.HttpResponse(
        json.dumps(report.to_dict()), status_code=200 if report.ready else 503, mimetype="application/json"
    )
