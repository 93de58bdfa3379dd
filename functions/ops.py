"""Ops routes: what needs the app's own identity (dead-letter replay, flush now, compact now).
Admin level: only the host's master key opens them; every other call gets 401 from the host."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.durable import DurableStarter
from shared.ops import compact_now, flush_now, matching_ids, replay_dead_letters
from shared.runtime import get_runtime
from shared.state.deadletter import DeadLetterFilter

log = logging.getLogger(__name__)
bp = df.Blueprint()
OPS_AUTH = func.AuthLevel.ADMIN


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")


def _filter(data: dict[str, Any]) -> DeadLetterFilter:
    since = data.get("since")
    return DeadLetterFilter(
        domain=data.get("domain"),
        stage=data.get("stage"),
        reason=data.get("reason"),
        status=data.get("status", "open"),
        since=datetime.fromisoformat(since) if since else None,
    )


@bp.route(route="ops/deadletters/replay", methods=["POST"], auth_level=OPS_AUTH)
@bp.durable_client_input(client_name="client")
async def ops_replay(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Body: ``{"ids": [...]}``, or ``{"all": true, "filter": {"domain": ..., "stage": ...}}``."""
    try:
        data = req.get_json()
    except ValueError:
        return _json({"error": "the body must be JSON"}, 400)
    runtime = get_runtime()
    if data.get("all"):
        ids = await runtime.pool.run(matching_ids, runtime, _filter(data.get("filter") or {}))
    else:
        ids = [str(i) for i in data.get("ids") or []]
    if not ids and not data.get("all"):
        return _json({"error": "give ids, or all with a filter"}, 400)
    results = await replay_dead_letters(ids, runtime=runtime, starter=DurableStarter(client))
    log.info("dead letters replayed", extra={"stage": "ops_replay", "count": len(results)})
    return _json([result.to_dict() for result in results])


@bp.route(route="ops/flush", methods=["POST"], auth_level=OPS_AUTH)
def ops_flush(req: func.HttpRequest) -> func.HttpResponse:
    return _json(flush_now(get_runtime()))


@bp.route(route="ops/compact", methods=["POST"], auth_level=OPS_AUTH)
def ops_compact(req: func.HttpRequest) -> func.HttpResponse:
    return _json(compact_now(get_runtime()))
