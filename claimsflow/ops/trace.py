"""``claimsflow trace ID``: the whole story of one event, XACT or ClaimX, from a trace id, an event
id, a media id or a dead-letter id: its dedup latch, its orchestrations (and their replays) with
their status, its rows waiting in staging and in Delta, its dead letters, and its files with their
size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from azure.core.exceptions import ResourceNotFoundError
from deltalake.exceptions import TableNotFoundError

from claimsflow.ops.common import AppUrl, AsJson, RunName, run, target_of
from claimsflow.ops.dlq import letter_object
from claimsflow.ops.instances import instance_object
from claimsflow.ops.render import emit_json, fail, fields, table
from claimsflow.ops.target import Target
from shared.claimx import tables as claimx_tables
from shared.claimx.ingest import instance_id as claimx_instance_id
from shared.domains import Domain
from shared.ids import event_id, xact_instance_id
from shared.lake.reader import read_delta, text_in
from shared.lake.tables import TableSpec
from shared.storage import LakeLocation, StorageFactory
from shared.xact import tables as xact_tables


@dataclass(frozen=True)
class DomainTrace:
    """Where one domain keeps an event's story."""

    domain: Domain
    events: TableSpec
    attachments: TableSpec
    failed: TableSpec
    written: tuple[TableSpec, ...]  # entity rows an event writes (found by their trace id)
    files_uri: Callable[[Any], str]  # settings -> the root URI of the domain's files
    instance_prefix: Callable[[str], str]  # trace id -> the event orchestration's instance id
    ids: Callable[[str], dict[str, str]]  # trace id -> other ids worth showing


XACT = DomainTrace(
    Domain.XACT,
    xact_tables.XACT_EVENTS,
    xact_tables.XACT_ATTACHMENTS,
    xact_tables.XACT_ATTACHMENTS_FAILED,
    (),
    lambda settings: str(settings.xact_attachments_uri),
    lambda trace_id: xact_instance_id(event_id(trace_id)),
    lambda trace_id: {"event_id": event_id(trace_id)},
)
CLAIMX = DomainTrace(
    Domain.CLAIMX,
    claimx_tables.CLAIMX_EVENTS,
    claimx_tables.CLAIMX_ATTACHMENTS,
    claimx_tables.CLAIMX_ATTACHMENTS_FAILED,
    tuple(spec for spec in claimx_tables.CLAIMX_TABLES if spec.version is not None),
    lambda settings: str(settings.claimx_attachments_uri),
    claimx_instance_id,
    lambda trace_id: {},
)
DOMAINS = (XACT, CLAIMX)
_BIG_COLUMNS = {"raw_json", "description", "attachments", "loss_description", "media_description"}


def delta_rows(settings: Any, name: str, column: str, values: list[str]) -> list[dict[str, Any]]:
    root = LakeLocation.parse(settings.lake_tables_uri)
    options = StorageFactory(settings).delta_storage_options(root)
    try:
        return read_delta(root.child(name).uri, options, where=text_in(column, values)).to_dicts()
    except TableNotFoundError:
        return []


def find_trace_id(settings: Any, runtime: Any, identifier: str) -> tuple[DomainTrace, str] | None:
    """The domain and trace id behind an identifier: itself, an event's, an attachment's or a
    dead letter's."""
    by_domain = {d.domain.value: d for d in DOMAINS}
    letter = runtime.dead_letters.get(identifier)
    if letter is not None and letter.trace_id:
        return by_domain[str(letter.domain)], str(letter.trace_id)
    for domain in DOMAINS:
        columns = ["trace_id", *(["event_id"] if "event_id" in domain.events.schema else [])]
        for column in columns:
            rows = delta_rows(settings, domain.events.name, column, [identifier])
            if rows:
                return domain, str(rows[0]["trace_id"])
        for spec in (domain.attachments, domain.failed):
            rows = delta_rows(settings, spec.name, "media_id", [identifier])
            if rows and rows[0].get("trace_id"):
                return domain, str(rows[0]["trace_id"])
    for letter in runtime.dead_letters.iter():
        if letter.trace_id and identifier in (letter.trace_id, letter.media_id):
            return by_domain[str(letter.domain)], str(letter.trace_id)
    if runtime.dedup.entry(identifier) is not None:
        domain = CLAIMX if len(identifier) == 64 else XACT  # ClaimX trace ids are SHA-256 hex
        return domain, identifier
    return None


def file_info(root_uri: str, settings: Any, blob_path: str) -> dict[str, Any]:
    root = LakeLocation.parse(root_uri)
    name = f"{root.path}/{blob_path}".strip("/")
    blob = StorageFactory(settings).lake_blob_service(root).get_blob_client(root.container, name)
    try:
        size = blob.get_blob_properties().size
    except ResourceNotFoundError:
        return {"path": name, "exists": False, "size": None}
    return {"path": name, "exists": True, "size": size}


def story(target: Target, identifier: str) -> dict[str, Any] | None:
    from shared.runtime import get_runtime

    with target.activated() as settings:
        runtime = get_runtime()
        found = find_trace_id(settings, runtime, identifier)
        if found is None:
            return None
        domain, trace_id = found
        letters = [dl for dl in runtime.dead_letters.iter() if dl.trace_id == trace_id]
        events = delta_rows(settings, domain.events.name, "trace_id", [trace_id])
        attachments = delta_rows(settings, domain.attachments.name, "trace_id", [trace_id])
        failed = delta_rows(settings, domain.failed.name, "trace_id", [trace_id])
        media_ids = sorted(
            {str(r["media_id"]) for r in attachments + failed}
            | {dl.media_id for dl in letters if dl.media_id}
        )
        rows: dict[str, dict[str, list[dict[str, Any]]]] = {
            domain.events.name: {
                "delta": _plain(events),
                "staged": _staged([runtime.staging.find(domain.events, trace_id)]),
            }
        }
        for spec, found_rows in ((domain.attachments, attachments), (domain.failed, failed)):
            rows[spec.name] = {
                "delta": _plain(found_rows),
                "staged": _staged([runtime.staging.find(spec, m) for m in media_ids]),
            }
        for spec in domain.written:
            written = delta_rows(settings, spec.name, "trace_id", [trace_id])
            if written:
                rows[spec.name] = {"delta": _plain(written), "staged": []}
        paths = [r["blob_path"] for r in attachments]
        paths += [
            dl.payload["blob_path"]
            for dl in letters
            if isinstance(dl.payload, dict) and "blob_path" in dl.payload
        ]
        files = [file_info(domain.files_uri(settings), settings, path) for path in dict.fromkeys(paths)]
        latch = runtime.dedup.entry(trace_id)
    instances = run(_instances(target, domain.instance_prefix(trace_id)))
    return {
        "domain": domain.domain.value,
        "trace_id": trace_id,
        **domain.ids(trace_id),
        "dedup_latch": latch,
        "instances": instances,
        "rows": rows,
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
    return [{k: v for k, v in row.items() if k not in _BIG_COLUMNS} for row in rows]


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
        f"{found['domain']} trace {found['trace_id']}",
        {
            **({"event id": found["event_id"]} if "event_id" in found else {}),
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
                row.get("status") or row.get("bytes_downloaded") or row.get("bytes"),
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
