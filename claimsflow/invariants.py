"""Gathers what a run left behind (Delta tables, dead letters, orchestrations) and checks the
invariants of ``shared.xact.invariants`` on it: the ``invariants`` section of the run report."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import polars as pl
from deltalake.exceptions import TableNotFoundError

from shared.ids import event_id, xact_instance_id
from shared.lake.tables import TableSpec
from shared.xact.invariants import EventInstance, InvariantReport, check_invariants
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

if TYPE_CHECKING:
    from local_host import LocalHost
    from shared.runtime import Runtime


def read_table(runtime: Runtime, spec: TableSpec, columns: list[str]) -> pl.DataFrame:
    """The table's rows (only ``columns``), or none when nothing was ever flushed to it."""
    writer = runtime.lakehouse.writer(spec)
    try:
        return pl.read_delta(writer.uri, storage_options=writer.storage_options, columns=columns)
    except TableNotFoundError:
        return pl.DataFrame(schema={c: spec.schema[c] for c in columns})


def decoded(text: str | None) -> Any:
    """An instance's input or output: JSON, sometimes JSON text inside JSON (as the client posts it)."""
    value: Any = text
    while isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


async def check_run(host: LocalHost, runtime: Runtime) -> InvariantReport:
    events = read_table(runtime, XACT_EVENTS, ["trace_id", "assignment_id"])
    accepted = events.filter(pl.col("assignment_id").is_not_null())["trace_id"].to_list()
    instances: dict[str, EventInstance] = {}
    for trace_id in accepted:
        instance_id = xact_instance_id(event_id(trace_id))
        status = await host.get_status(instance_id)
        if status is not None:
            payload = decoded(status.input)
            instances[trace_id] = EventInstance(
                instance_id,
                status.runtime_status,
                payload if isinstance(payload, dict) else {},
                decoded(status.output),
            )
    failed = read_table(runtime, XACT_ATTACHMENTS_FAILED, ["media_id", "status"])
    return check_invariants(
        accepted_trace_ids=accepted,
        event_instances=instances,
        uploaded=read_table(runtime, XACT_ATTACHMENTS, ["media_id"])["media_id"].to_list(),
        failed=dict(failed.iter_rows()),
        dead_letter_ids=[letter.id for letter in runtime.dead_letters.list(limit=10_000_000)],
    )
