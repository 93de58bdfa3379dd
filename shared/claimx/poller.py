"""The ClaimX Eventhouse poller: new rows of the ClaimX events table, in order, handed on to the
ClaimX ingest exactly once.

Rows are read 1,000 a batch (``CLAIMX_POLL_BATCH_SIZE``) ordered by ingestion time and, for rows
that share one ingestion time, by a key hashed from the whole row; the query resumes strictly
after the last (time, key) handed on, so no row is read twice or skipped at a batch boundary, however
many rows share a time. The cursor is stored in the state account only after the batch was handed
on; a crash in between hands the batch on again, and the dedup latch drops what was already seen.
The newest :data:`VISIBILITY_LAG` is left for the next poll, because rows of one ingestion time can
become visible a little after later ones.

Backfills: ``claimsflow claimx-backfill --start --end`` records a request beside the live cursor;
each poll also works through open requests, each with its own cursor, through the same ingest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.claimx.ingest import Message
from shared.clock import utc_now

log = logging.getLogger(__name__)

VISIBILITY_LAG = timedelta(seconds=30)
MAX_BATCHES_PER_POLL = 10
EARLIEST = "2000-01-01T00:00:00.0000000Z"
KEY_COLUMN = "_key"
TIME_COLUMN = "_ingested"
LIVE = "live"

QUERY = (
    "declare query_parameters(after_time:datetime, after_key:string, until_time:datetime, batch_size:long);\n"
    """{table}
| extend {key} = hash_sha256(tostring(pack_all()))
| extend _time = ingestion_time()
| where _time <= until_time and (_time > after_time or (_time == after_time and {key} > after_key))
| order by _time asc, {key} asc
| take batch_size
| extend {ingested} = tostring(_time)
| project-away _time"""
)
_TIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$")


def kusto_time(value: datetime) -> str:
    """A UTC time as Kusto writes it (seven fractional digits)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_kusto_time(text: str) -> datetime:
    """Kusto's time text as a ``datetime`` (the seventh fractional digit is below a microsecond)."""
    if not _TIME_TEXT.match(text):
        raise ValueError(f"not a Kusto time: {text!r}")
    main, _, fraction = text.removesuffix("Z").partition(".")
    micros = (fraction + "000000")[:6]
    return datetime.fromisoformat(f"{main}.{micros}+00:00")


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row handed on: its ingestion time (Kusto's exact text) and its row key."""

    ingested: str = EARLIEST
    key: str = ""


@dataclass(frozen=True, slots=True)
class PolledRow:
    ingested: str
    key: str
    columns: dict[str, Any]

    def message(self) -> Message:
        """The row as an ingest message; its ingestion time stands in for the enqueued time."""
        body = json.dumps(self.columns, default=str, separators=(",", ":"))
        return Message(body, parse_kusto_time(self.ingested))


class EventSource(Protocol):
    def fetch(self, after: Cursor, until: str, limit: int) -> list[PolledRow]:
        """Up to ``limit`` rows after ``after`` with ingestion time up to ``until``, in order."""
        ...


@dataclass
class KustoEventSource:
    """The Eventhouse table through azure-kusto-data (one client per process)."""

    client: Any
    database: str
    table: str

    @classmethod
    def open(
        cls, cluster_url: str, database: str, table: str, *, local: bool, credential: Any
    ) -> KustoEventSource:
        from azure.kusto.data import KustoClient, KustoConnectionStringBuilder

        if local:
            kcsb = KustoConnectionStringBuilder.with_no_authentication(cluster_url)
        else:
            kcsb = KustoConnectionStringBuilder.with_azure_token_credential(cluster_url, credential)
        return cls(KustoClient(kcsb), database, table)

    def fetch(self, after: Cursor, until: str, limit: int) -> list[PolledRow]:
        from azure.kusto.data import ClientRequestProperties

        properties = ClientRequestProperties()  # type: ignore[no-untyped-call]
        properties.set_parameter("after_time", f"datetime({after.ingested})")
        properties.set_parameter("after_key", after.key)
        properties.set_parameter("until_time", f"datetime({until})")
        properties.set_parameter("batch_size", str(limit))
        query = QUERY.format(table=self.table, key=KEY_COLUMN, ingested=TIME_COLUMN)
        response = self.client.execute_query(self.database, query, properties)
        rows: list[PolledRow] = []
        for row in response.primary_results[0]:
            columns = row.to_dict()
            ingested, key = str(columns.pop(TIME_COLUMN)), str(columns.pop(KEY_COLUMN))
            rows.append(PolledRow(ingested, key, {k: _plain(v) for k, v in columns.items()}))
        return rows

    def close(self) -> None:
        self.client.close()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


@dataclass
class Track:
    """How far one track got: the live one follows the clock; a backfill ends at ``end``."""

    cursor: Cursor = field(default_factory=Cursor)
    handed_on: int = 0
    start: str | None = None
    end: str | None = None
    done: bool = False
    requested_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Track:
        data = json.loads(text)
        return cls(**{**data, "cursor": Cursor(**data["cursor"])})


@dataclass
class CursorStore:
    """Tracks as small blobs in the state account, written only when nobody else moved them
    since they were read (etag)."""

    container: ContainerClient
    prefix: str = "claimx"

    def load(self, name: str) -> tuple[Track | None, str | None]:
        """(track, etag) of a stored track, or (None, None)."""
        try:
            downloaded = self.container.download_blob(f"{self.prefix}/{name}.json")
        except ResourceNotFoundError:
            return None, None
        return Track.from_json(downloaded.readall().decode("utf-8")), str(downloaded.properties.etag)

    def save(self, name: str, track: Track, etag: str | None) -> str:
        """Write ``track``; ``etag`` None means create. Raises if another writer got there first."""
        blob = self.container.get_blob_client(f"{self.prefix}/{name}.json")
        data = track.to_json().encode("utf-8")
        try:
            if etag is None:
                result = blob.upload_blob(data, overwrite=False)
            else:
                result = blob.upload_blob(
                    data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except ResourceNotFoundError:  # the container does not exist yet
            with contextlib.suppress(ResourceExistsError):
                self.container.create_container()
            result = blob.upload_blob(data, overwrite=False)
        return str(result["etag"])

    def backfills(self) -> list[str]:
        prefix = f"{self.prefix}/backfill/"
        try:
            blobs = self.container.list_blobs(name_starts_with=prefix)
            return sorted(b.name.removeprefix(f"{self.prefix}/").removesuffix(".json") for b in blobs)
        except ResourceNotFoundError:
            return []


@dataclass
class PollReport:
    batches: int = 0
    handed_on: int = 0
    tracks: dict[str, int] = field(default_factory=dict)


HandOn = Callable[[Sequence[Message]], Awaitable[Any]]
Runner = Callable[..., Awaitable[Any]]


@dataclass
class ClaimXPoller:
    source: EventSource
    cursors: CursorStore
    hand_on: HandOn
    run: Runner  # runs a blocking call off the event loop (the process's I/O pool)
    batch_size: int = 1000
    max_batches: int = MAX_BATCHES_PER_POLL

    async def poll(self) -> PollReport:
        """One timer tick: the live track, then every open backfill, each up to ``max_batches``."""
        until = kusto_time(utc_now() - VISIBILITY_LAG)
        report = PollReport()
        for name in [LIVE, *await self.run(self.cursors.backfills)]:
            batches, handed = await self._run_track(name, until)
            report.batches += batches
            report.handed_on += handed
            report.tracks[name] = handed
        return report

    async def _run_track(self, name: str, live_until: str) -> tuple[int, int]:
        track, etag = await self.run(self.cursors.load, name)
        track = track or Track()
        if track.done:
            return 0, 0
        until = track.end or live_until
        batches = handed = 0
        for _ in range(self.max_batches):
            rows = await self.run(self.source.fetch, track.cursor, until, self.batch_size)
            if rows:
                await self.hand_on([row.message() for row in rows])
                track = replace(
                    track,
                    cursor=Cursor(rows[-1].ingested, rows[-1].key),
                    handed_on=track.handed_on + len(rows),
                )
                batches, handed = batches + 1, handed + len(rows)
            short = len(rows) < self.batch_size
            if short and track.end is not None:
                track = replace(track, done=True)
            if rows or track.done:
                try:
                    etag = await self.run(self.cursors.save, name, track, etag)
                except (ResourceModifiedError, ResourceExistsError):
                    log.warning("another poller moved the %s track; this one stops", name)
                    break
            if short:
                break
        return batches, handed


def request_backfill(cursors: CursorStore, start: datetime, end: datetime, *, now: datetime) -> str:
    """Record a backfill of the rows ingested in ``[start, end]``; returns its name. The next
    polls work through it."""
    if end < start:
        raise ValueError("the backfill ends before it starts")
    name = f"backfill/{start:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    track = Track(
        # strictly after a cursor just before the start: rows at exactly ``start`` are included
        cursor=Cursor(kusto_time(start - timedelta(microseconds=1)), "\uffff"),
        start=kusto_time(start),
        end=kusto_time(end),
        requested_at=now.isoformat(),
    )
    cursors.save(name, track, None)
    return name
