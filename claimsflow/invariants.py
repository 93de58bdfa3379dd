"""Gathers what a run left behind (Delta tables, dead letters, orchestrations) and checks the
invariants of ``shared.invariants`` on it, for both domains: the ``invariants`` of the run report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import polars as pl
from deltalake.exceptions import TableNotFoundError

from shared.claimx import invariants as claimx_invariants
from shared.claimx.activities import DOWNLOAD_STAGE
from shared.claimx.activities import ENRICH_STAGE as CLAIMX_ENRICH_STAGE
from shared.claimx.events import EVENT_TYPES
from shared.claimx.ingest import instance_id as claimx_instance_id
from shared.claimx.tables import CLAIMX_ATTACHMENTS, CLAIMX_ATTACHMENTS_FAILED, CLAIMX_EVENTS
from shared.ids import event_id, xact_instance_id
from shared.invariants import DomainRun, EventInstance, InvariantReport, check_invariants
from shared.lake.reader import read_delta
from shared.lake.tables import TableSpec
from shared.xact import invariants as xact_invariants
from shared.xact.activities import ENRICH_STAGE as XACT_ENRICH_STAGE
from shared.xact.activities import TRANSFER_STAGE
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

if TYPE_CHECKING:
    from local_host import LocalHost
    from shared.runtime import Runtime


def read_table(runtime: Runtime, spec: TableSpec, columns: list[str]) -> pl.DataFrame:
    """The table's rows (only ``columns``), or none when nothing was ever flushed to it."""
    writer = runtime.lakehouse.writer(spec)
    try:
        return read_delta(writer.uri, writer.storage_options, columns=columns)
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


async def _instances(
    host: LocalHost, trace_ids: Iterable[str], instance_of: Callable[[str], str]
) -> dict[str, EventInstance]:
    found: dict[str, EventInstance] = {}
    for trace_id in trace_ids:
        instance_id = instance_of(trace_id)
        status = await host.get_status(instance_id)
        if status is not None:
            payload = decoded(status.input)
            found[trace_id] = EventInstance(
                instance_id,
                status.runtime_status,
                payload if isinstance(payload, dict) else {},
                decoded(status.output),
            )
    return found


def _outcomes(
    runtime: Runtime, uploaded: TableSpec, failed: TableSpec
) -> tuple[list[str], Mapping[str, str]]:
    failures = read_table(runtime, failed, ["media_id", "status"])
    return read_table(runtime, uploaded, ["media_id"])["media_id"].to_list(), dict(failures.iter_rows())


async def check_run(host: LocalHost, runtime: Runtime) -> InvariantReport:
    xact_events = read_table(runtime, XACT_EVENTS, ["trace_id", "assignment_id"])
    xact_accepted = xact_events.filter(pl.col("assignment_id").is_not_null())["trace_id"].to_list()
    xact_uploaded, xact_failed = _outcomes(runtime, XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED)
    claimx_events = read_table(runtime, CLAIMX_EVENTS, ["trace_id", "event_type"])
    claimx_accepted = claimx_events.filter(pl.col("event_type").is_in(sorted(EVENT_TYPES)))[
        "trace_id"
    ].to_list()
    claimx_uploaded, claimx_failed = _outcomes(runtime, CLAIMX_ATTACHMENTS, CLAIMX_ATTACHMENTS_FAILED)
    domains = [
        DomainRun(
            "xact",
            xact_accepted,
            await _instances(host, xact_accepted, lambda t: xact_instance_id(event_id(t))),
            xact_uploaded,
            xact_failed,
            xact_invariants.expected_media,
            XACT_ENRICH_STAGE,
            TRANSFER_STAGE,
        ),
        DomainRun(
            "claimx",
            claimx_accepted,
            await _instances(host, claimx_accepted, claimx_instance_id),
            claimx_uploaded,
            claimx_failed,
            claimx_invariants.expected_media,
            CLAIMX_ENRICH_STAGE,
            DOWNLOAD_STAGE,
        ),
    ]
    letters = [letter.id for letter in runtime.dead_letters.list(limit=10_000_000)]
    return check_invariants(domains, letters)
