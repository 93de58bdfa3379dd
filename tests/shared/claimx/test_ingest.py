"""ClaimX ingest against real Azurite tables: counts, unknown types, stable ids from the enqueued
time across redelivery, latches released on a storage failure, a poison body isolated after its
batch kept failing, hostile bodies each counted once while the rest of their batch goes on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claimsflow.claimx_samples import claimx_body
from shared.claimx.events import trace_id
from shared.claimx.ingest import EVENT_ORCHESTRATOR, ClaimXIngestor, Message, instance_id
from shared.claimx.tables import CLAIMX_EVENTS
from shared.runtime import Runtime
from shared.state.deadletter import DeadLetterReason
from shared.state.failures import POISON_AFTER

pytestmark = pytest.mark.azurite

ENQUEUED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
AT = "2026-02-14T15:04:05Z"


class Instances:
    """A starter that behaves like the Durable client's check-then-start."""

    def __init__(self, fail_after: int | None = None, refuse: frozenset[str] = frozenset()) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.runs: Counter[str] = Counter()
        self.fail_after = fail_after
        self.refuse = refuse  # instances whose input the service rejects for good

    async def start_once(
        self, orchestrator: str, instance: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool:
        assert orchestrator == EVENT_ORCHESTRATOR
        if self.fail_after is not None and len(self.instances) >= self.fail_after:
            raise ConnectionResetError("connection reset while starting the orchestration")
        if instance in self.refuse:
            raise ValueError(f"the service rejected the input of {instance}")
        if instance in self.instances and not rerun_finished:
            return False
        self.instances[instance] = payload
        self.runs[instance] += 1
        return True

    async def exists(self, instance: str) -> bool:
        return instance in self.instances


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


def ingestor(runtime: Runtime, starter: Instances) -> ClaimXIngestor:
    return ClaimXIngestor(
        latch=runtime.dedup,
        staging=runtime.staging,
        dead_letters=runtime.dead_letters,
        failures=runtime.ingest_failures,
        starter=starter,
        retry_delays=(300, 600, 1200, 2400),
        pool=runtime.pool,
    )


def messages(*bodies: str, at: datetime = ENQUEUED) -> list[Message]:
    return [Message(body.encode(), at) for body in bodies]


async def test_counts_unknown_types_and_invalid_bodies(runtime: Runtime) -> None:
    starter = Instances()
    created = claimx_body("PROJECT_CREATED", 1, AT)
    batch = messages(
        created,
        created,
        claimx_body("PROJECT_FILE_ADDED", "2", AT, mediaId=3),
        claimx_body("PROJECT_ARCHIVED", 4, AT),
        "{oops",
        '{"eventType": "PROJECT_CREATED", "projectId": "abc"}',
    )
    report = await ingestor(runtime, starter).ingest(batch)
    assert (report.received, report.accepted, report.duplicates, report.skipped, report.invalid) == (
        6,
        2,
        1,
        1,
        2,
    )
    assert (
        sorted(starter.instances)
        == sorted(report.started)
        == sorted(
            [
                instance_id(trace_id("1", "PROJECT_CREATED", AT)),
                instance_id(trace_id("2", "PROJECT_FILE_ADDED", AT, media_id="3")),
            ]
        )
    )
    payload = starter.instances[instance_id(trace_id("1", "PROJECT_CREATED", AT))]
    assert payload["retry_delays"] == [300, 600, 1200, 2400] and payload["ingested_at_text"] == AT
    rows = {row.key: row.values for row in runtime.staging.read(CLAIMX_EVENTS, limit=100)}
    assert len(rows) == 3  # the unknown type too
    unknown = rows[trace_id("4", "PROJECT_ARCHIVED", AT)]
    assert unknown["event_type"] == "PROJECT_ARCHIVED" and unknown["event_date"].isoformat() == "2026-02-14"
    letters = runtime.dead_letters.list()
    assert sorted(letter.payload for letter in letters) == sorted(batch_text(batch[4:]))
    assert {(letter.reason.value, letter.stage) for letter in letters} == {("invalid", "claimx_ingest")}


def batch_text(batch: list[Message]) -> list[str]:
    return [m.body.decode() if isinstance(m.body, bytes) else m.body for m in batch]


async def test_an_event_without_ingested_at_keeps_its_id_on_redelivery(runtime: Runtime) -> None:
    starter = Instances()
    body = claimx_body("PROJECT_CREATED", 9, None)
    first = await ingestor(runtime, starter).ingest(messages(body))
    # a redelivery keeps the enqueued time: the same id, a duplicate
    again = await ingestor(Runtime(runtime.settings), starter).ingest(messages(body))
    assert (first.accepted, again.duplicates) == (1, 1)
    # a new message with the same body, enqueued later, is a new event
    later = await ingestor(runtime, starter).ingest(messages(body, at=ENQUEUED + timedelta(minutes=1)))
    assert later.accepted == 1
    [row_a, row_b] = sorted(
        (r.values for r in runtime.staging.read(CLAIMX_EVENTS, limit=10)), key=lambda v: v["ingested_at"]
    )
    assert row_a["ingested_at"] == ENQUEUED and row_b["ingested_at"] == ENQUEUED + timedelta(minutes=1)


async def test_storage_failure_releases_latches_and_redelivery_processes(runtime: Runtime) -> None:
    bodies = [claimx_body("PROJECT_CREATED", n, AT) for n in (1, 2, 3)]
    with pytest.raises(ConnectionResetError):
        await ingestor(runtime, Instances(fail_after=1)).ingest(messages(*bodies))
    starter = Instances()
    report = await ingestor(runtime, starter).ingest(messages(*bodies))
    assert report.accepted == 3 and len(starter.instances) == 3


async def test_a_poison_body_is_isolated_after_repeated_failures(runtime: Runtime) -> None:
    """A body that fails its batch for a reason nobody foresaw blocks nothing for long: after
    POISON_AFTER failures (counted per body, so a batch of another shape counts on) the batch is
    split, the body is dead-lettered as poison and the others are processed."""
    bodies = [claimx_body("PROJECT_CREATED", n, AT) for n in range(1, 9)]
    starter = Instances(refuse=frozenset({instance_id(trace_id("5", "PROJECT_CREATED", AT))}))
    for _ in range(POISON_AFTER - 1):
        with pytest.raises(ValueError, match="rejected"):
            await ingestor(runtime, starter).ingest(messages(*bodies))
    report = await ingestor(runtime, starter).ingest(messages(*reversed(bodies)))
    assert (report.received, report.accepted, report.invalid, report.poison) == (8, 7, 1, 1)
    assert len(starter.instances) == 7
    [letter] = runtime.dead_letters.list()
    assert (letter.reason, letter.stage) == (DeadLetterReason.POISON, "claimx_ingest")
    assert letter.payload == bodies[4] and "rejected the input" in letter.error


def hostile_claimx_lines() -> dict[str, str | bytes]:
    """The hostile classes of the XACT acceptance, in ClaimX's shape: dates, depth, size, Unicode,
    path escapes in ids, a BOM, bytes that are not UTF-8."""
    return {
        "ingestedAt in year 9999 with a -23:00 offset": claimx_body(
            "PROJECT_CREATED", 101, "9999-12-31T23:00:00-23:00"
        ),
        "100,000 nested brackets": '{"eventType": "PROJECT_CREATED", "projectId": 102, "x": '
        + "[" * 100_000
        + "}",
        "a 40,000-character master file name": claimx_body(
            "PROJECT_MFN_ADDED", 103, AT, masterFileName="m" * 40_000
        ),
        "a media id that climbs out of its folder": claimx_body(
            "PROJECT_FILE_ADDED", 104, AT, mediaId="../../../../other/evil"
        ),
        "a project id past any integer": '{"eventType": "PROJECT_CREATED", "projectId": 1' + "0" * 400 + "}",
        "a lone surrogate in the event type": '{"eventType": "\\ud800", "projectId": 106}',
        "bytes that are not UTF-8": b'{"eventType": "PROJECT_CREATED", "projectId": 107, "n": "\xff\xfe"}',
        "a body over the limit": claimx_body("PROJECT_CREATED", 108, AT, note="x" * 300_000),
        "a BOM before a valid body": b"\xef\xbb\xbf" + claimx_body("PROJECT_CREATED", 109, AT).encode(),
        "text with a lone surrogate (a body handed on as text)": '{"eventType": "PROJECT_CREATED", '
        '"projectId": 110, "masterFileName": "\ud800"}',
    }


async def test_hostile_bodies_are_each_counted_once_and_the_batch_goes_on(runtime: Runtime) -> None:
    hostile = hostile_claimx_lines()
    good = [claimx_body("PROJECT_CREATED", n, AT) for n in (1, 2, 3)]
    batch = [Message(body, ENQUEUED) for body in [*hostile.values(), *good]]
    starter = Instances()
    report = await ingestor(runtime, starter).ingest(batch)
    outcomes = (report.accepted, report.duplicates, report.skipped, report.invalid)
    assert report.received == len(batch) == sum(outcomes)
    # invalid: the date, the nesting, the long name, both surrogates, the bytes, the size; the rest
    # are events (ids are data here: paths are made safe where they are built, test_paths.py)
    assert outcomes == (6, 0, 0, 7)
    for project in ("1", "2", "3", "109"):  # the good ones and the BOM body
        assert instance_id(trace_id(project, "PROJECT_CREATED", AT)) in starter.instances
    letters = runtime.dead_letters.list()
    assert len(letters) == report.invalid
    assert all(letter.reason is DeadLetterReason.INVALID and letter.error for letter in letters)
    assert all(isinstance(letter.payload, str) and letter.payload.encode("utf-8") for letter in letters)
