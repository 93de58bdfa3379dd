"""``claimsflow trace ID``: the whole story of one XACT event, from a trace id, an event id or a
media id: its dedup latch, its orchestrations (and their replays) with their status, its rows
waiting in staging and in Delta, its dead letters, and its files with their size."""

from __future__ import annotations

from typing import Annotated, Any

import polars as pl
import typer
from azure.core.exceptions import ResourceNotFoundError
from deltalake.exceptions import TableNotFoundError

from claimsflow.ops.common import AppUrl, AsJson, RunName, run, target_of
from claimsflow.ops.dlq import letter_object
from claimsflow.ops.instances import instance_object
from claimsflow.ops.render import emit_json, fail, fields, table
from claimsflow.ops.target import Target
from shared.ids import event_id, xact_instance_id
from shared.storage import LakeLocation, StorageFactory


def delta_rows(settings: Any, name: str, column: str, values: list[str]) -> list[dict[str, Any]]:
    root = LakeLocation.parse(settings.lake_tables_uri)
    options = StorageFactory(settings).delta_storage_options(root)
    try:
        frame = pl.scan_delta(root.child(name).uri, storage_options=options)
        return frame.filter(pl.col(column).is_in(values)).collect().to_dicts()
    except TableNotFoundError:
        return []


def find_trace_id(settings: Any, runtime: Any, identifier: str) -> str | None:
    """The trace id behind an identifier: itself, an event's, an attachment's or a dead letter's."""
    letter = runtime.dead_letters.get(identifier)
    if letter is not None and letter.trace_id:
        return str(letter.trace_id)
    for table_name, column in (("xact_events", "trace_id"), ("xact_events", "event_id")):
        rows = delta_rows(settings, table_name, column, [identifier])
        if rows:
            return str(rows[0]["trace_id"])
    for table_name in ("xact_attachments", "xact_attachments_failed"):
        rows = delta_rows(settings, table_name, "media_id", [identifier])
        if rows:
            return str(rows[0]["trace_id"])
    for letter in runtime.dead_letters.iter():
        if identifier in (letter.trace_id, letter.media_id):
            return str(letter.trace_id)
    if runtime.dedup.entry(identifier) is not None:
        return identifier
    return None


def file_info(settings: Any, blob_path: str) -> dict[str, Any]:
    root = LakeLocation.parse(settings.xact_attachments_uri)
    name = f"{root.path}/{blob_path}".strip("/")
    blob = StorageFactory(settings).lake_blob_service(root).get_blob_client(root.container, name)
    try:
        size = blob.get_blob_properties().size
    except ResourceNotFoundError:
        return {"path": name, "exists": False, "size": None}
    return {"path": name, "exists": True, "size": size}


def story(target: Target, identifier: str) -> dict[str, Any] | None:
    from shared.runtime import get_runtime
    from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

    with target.activated() as settings:
        runtime = get_runtime()
        trace_id = find_trace_id(settings, runtime, identifier)
        if trace_id is None:
            return None
        letters = [dl for dl in runtime.dead_letters.iter() if dl.trace_id == trace_id]
        events = delta_rows(settings, "xact_events", "trace_id", [trace_id])
        attachments = delta_rows(settings, "xact_attachments", "trace_id", [trace_id])
        failed = delta_rows(settings, "xact_attachments_failed", "trace_id", [trace_id])
        media_ids = sorted(
            {r["media_id"] for r in attachments + failed} | {dl.media_id for dl in letters if dl.media_id}
        )
        staged = {
            XACT_EVENTS.name: [runtime.staging.find(XACT_EVENTS, trace_id)],
            XACT_ATTACHMENTS.name: [runtime.staging.find(XACT_ATTACHMENTS, m) for m in media_ids],
            XACT_ATTACHMENTS_FAILED.name: [
                runtime.staging.find(XACT_ATTACHMENTS_FAILED, m) for m in media_ids
            ],
        }
        paths = [r["blob_path"] for r in attachments]
        paths += [
            dl.payload["blob_path"]
            for dl in letters
            if isinstance(dl.payload, dict) and "blob_path" in dl.payload
        ]
        files = [file_info(settings, path) for path in dict.fromkeys(paths)]
        latch = runtime.dedup.entry(trace_id)
    instances = run(_instances(target, xact_instance_id(event_id(trace_id))))
    return {
        "trace_id": trace_id,
        "event_id": event_id(trace_id),
        "dedup_latch": latch,
        "instances": instances,
        "rows": {
            "xact_events": {"delta": _plain(events), "staged": _staged(staged[XACT_EVENTS.name])},
            "xact_attachments": {
                "delta": _plain(attachments),
                "staged": _staged(staged[XACT_ATTACHMENTS.name]),
            },
            "xact_attachments_failed": {
                "delta": _plain(failed),
                "staged": _staged(staged[XACT_ATTACHMENTS_FAILED.name]),
            },
        },
        "dead_letters": [letter_object(dl) for dl in letters],
        "files": files,
    }


async def _instances(target: Target, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with target.durable() as api:
        async for page in api.pages(prefix=prefix):
            found += [instance_object(s) for s in page]
    return sorted(found, key=lambda i: (i["created_at"] or "", i["instance_id"]))


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    skip = {"raw_json", "description", "attachments"}
    return [{k: v for k, v in row.items() if k not in skip} for row in rows]


def _staged(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"key": r.key, **r.values} for r in rows if r is not None]


def trace(
    identifier: Annotated[
        str, typer.Argument(help="A trace id, an event id, a media id or a dead letter id.")
    ],
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Everything known about one event, from any of its ids.

    Shows its dedup latch, its orchestrations and their status, its rows (waiting in staging and
    in Delta), its dead letters, and its attachment files with their size."""
    found = story(target_of(run_name, app_url), identifier)
    if found is None:
        raise fail(f"nothing known about {identifier}")
    if as_json:
        emit_json(found)
        return
    latch = found["dedup_latch"] or {}
    fields(
        f"trace {found['trace_id']}",
        {
            "event id": found["event_id"],
            "dedup latch": f"{latch.get('state')} since {latch.get('claimed_at')}" if latch else "none",
        },
    )
    table(
        "orchestrations",
        ["instance id", "name", "status", "created", "last updated"],
        (
            [i["instance_id"], i["name"], i["runtime_status"], i["created_at"], i["last_updated_at"]]
            for i in found["instances"]
        ),
    )
    rows = found["rows"]
    table(
        "rows",
        ["table", "where", "key", "status / size"],
        (
            [
                name,
                where,
                row.get("media_id") or row.get("trace_id") or row.get("key"),
                row.get("status") or row.get("bytes_downloaded"),
            ]
            for name, places in rows.items()
            for where, entries in places.items()
            for row in entries
        ),
    )
    table(
        "dead letters",
        ["id", "reason", "category", "retries", "status", "error"],
        (
            [d["id"], d["reason"], d["category"], d["retry_count"], d["status"], d["error"][:80]]
            for d in found["dead_letters"]
        ),
    )
    table("files", ["path", "exists", "bytes"], ([f["path"], f["exists"], f["size"]] for f in found["files"]))
