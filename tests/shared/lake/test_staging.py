from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest
from azure.data.tables import TableServiceClient

from claimsflow.azurite import Azurite
from shared.lake.staging import StagingTable, UnstageableRow, entity_size, request_size
from shared.lake.tables import TableSpec, WriteMode
from shared.pool import IoPool
from shared.state.sharding import safe_row_key, shard_of
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

pytestmark = pytest.mark.azurite

TYPED = TableSpec(
    name="test_typed",
    schema=pl.Schema(
        {
            "k": pl.String(),
            "big": pl.Int64(),
            "small": pl.Int32(),
            "flag": pl.Boolean(),
            "ratio": pl.Float64(),
            "day": pl.Date(),
            "at": pl.Datetime("us", "UTC"),
            "text": pl.String(),
            "body": pl.String(),
        }
    ),
    key=("k",),
    mode=WriteMode.UPSERT,
    large_text=frozenset({"body"}),
)


@pytest.fixture
def staging(azurite: Azurite, unique: Callable[[str], str], io_pool: IoPool) -> StagingTable:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return StagingTable(service, io_pool, table_name=unique("stg"), shards=4)


def by_key(staging: StagingTable, spec: TableSpec) -> dict[str, dict[str, object]]:
    return {r.key: r.values for r in staging.read(spec, 10_000)}


@pytest.mark.unit
def test_row_keys_are_table_safe_and_injective() -> None:
    forbidden = "a/b\\c#d?e%f\x01g\x7f"
    key = safe_row_key(forbidden)
    assert not set(key) & set("/\\#?\x01\x7f")
    assert safe_row_key("a/b") != safe_row_key("a%2Fb")
    long = safe_row_key("x" * 2000)
    assert long.startswith("%H") and len(long) == 66
    assert shard_of("trace-1", 16) == shard_of("trace-1", 16)
    assert len({shard_of(f"k{i}", 16) for i in range(200)}) == 16


def test_upsert_merge_later_non_null_values_win(staging: StagingTable) -> None:
    spec = XACT_ATTACHMENTS_FAILED
    staging.stage_many(
        spec, [{"media_id": "m1", "status": "failed_permanent", "error_message": "404", "http_status": 404}]
    )
    staging.stage_many(
        spec, [{"media_id": "m1", "status": "exhausted", "error_message": None, "retry_count": 4}]
    )
    staging.stage_many(spec, [{"media_id": "m1", "trace_id": "t1"}, {"media_id": "m1", "retry_count": None}])
    rows = by_key(staging, spec)
    assert rows == {
        "m1": {
            "media_id": "m1",
            "trace_id": "t1",
            "status": "exhausted",
            "error_message": "404",
            "http_status": 404,
            "retry_count": 4,
        }
    }
    assert staging.count(spec) == 1


def test_types_round_trip(staging: StagingTable) -> None:
    plus_two = timezone(timedelta(hours=2))
    staging.stage_many(
        TYPED,
        [
            {
                "k": "a",
                "big": 2**40 + 7,
                "small": -5,
                "flag": False,
                "ratio": 0.25,
                "day": date(2026, 2, 28),
                "at": datetime(2026, 2, 28, 23, 59, 59, 123456, tzinfo=plus_two),
                "text": "naïve ✓",
                "body": "é" * 70_000,  # over one property's 64 KiB: stored in chunks
            }
        ],
    )
    staging.stage_many(TYPED, [{"k": "b", "flag": True, "big": -(2**62)}])
    rows = by_key(staging, TYPED)
    a = rows["a"]
    assert a["big"] == 2**40 + 7 and type(a["big"]) is int
    assert a["small"] == -5
    assert a["flag"] is False
    assert a["ratio"] == 0.25
    assert a["day"] == date(2026, 2, 28) and type(a["day"]) is date
    assert a["at"] == datetime(2026, 2, 28, 21, 59, 59, 123456, tzinfo=UTC)
    assert type(a["at"]) is datetime and a["at"].utcoffset() == timedelta(0)
    assert a["text"] == "naïve ✓"
    assert a["body"] == "é" * 70_000
    assert rows["b"] == {"k": "b", "flag": True, "big": -(2**62)}
    # a shorter text later replaces the chunks; a null leaves them alone
    staging.stage_many(TYPED, [{"k": "a", "body": "short"}])
    staging.stage_many(TYPED, [{"k": "a", "body": None, "text": None}])
    a = by_key(staging, TYPED)["a"]
    assert a["body"] == "short" and a["text"] == "naïve ✓"
    frame = TYPED.to_frame([a])
    assert frame.schema == TYPED.schema


def test_keys_with_forbidden_characters(staging: StagingTable) -> None:
    keys = ["a/b", "a%2Fb", "q?x=1#frag", "back\\slash", "tab\tkey", "k" * 1500]
    staging.stage_many(XACT_EVENTS, [{"trace_id": k, "event_date": date(2026, 1, 1)} for k in keys])
    staging.stage_many(XACT_EVENTS, [{"trace_id": "k" * 1500, "event_date": date(2026, 1, 1), "type": "x"}])
    rows = by_key(staging, XACT_EVENTS)
    assert set(rows) == set(keys)
    assert rows["k" * 1500]["type"] == "x"
    assert all(rows[k]["trace_id"] == k for k in keys)


def test_stage_many_batches_per_partition_and_reads_every_shard(
    azurite: Azurite, unique: Callable[[str], str], io_pool: IoPool
) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    one = StagingTable(service, io_pool, table_name=unique("stg"), shards=1)
    rows = [{"media_id": f"m{i}", "event_date": date(2026, 1, 1 + i % 20)} for i in range(250)]
    rows.append({"media_id": "m0", "sha256": "abc", "event_date": date(2026, 1, 1)})  # same key again
    assert one.stage_many(XACT_ATTACHMENTS, rows) == 250  # 3 transactions in one partition
    assert one.count(XACT_ATTACHMENTS) == 250
    assert by_key(one, XACT_ATTACHMENTS)["m0"]["sha256"] == "abc"

    many = StagingTable(service, io_pool, table_name=unique("stg"), shards=8)
    many.stage_many(XACT_ATTACHMENTS, rows)
    some = many.read(XACT_ATTACHMENTS, 40)
    assert len(some) == 40
    assert len({r.partition_key for r in some}) == 8  # a fair share from every shard
    everything = many.read(XACT_ATTACHMENTS, 1000)
    assert len(everything) == 250 and len({r.key for r in everything}) == 250
    assert many.count(XACT_EVENTS) == 0  # tables do not see each other's rows


def test_delete_only_if_unchanged(staging: StagingTable) -> None:
    spec = XACT_ATTACHMENTS_FAILED
    staging.stage_many(spec, [{"media_id": f"m{i}", "status": "rejected"} for i in range(30)])
    read = staging.read(spec, 100)
    staging.stage_many(spec, [{"media_id": "m7", "status": "exhausted"}])  # changed after the read
    assert staging.delete_if_unchanged(read) == 29
    left = by_key(staging, spec)
    assert list(left) == ["m7"] and left["m7"]["status"] == "exhausted"
    staging.delete_if_unchanged(read)  # gone or changed: no error, and m7 stays
    assert list(by_key(staging, spec)) == ["m7"]
    assert staging.delete_if_unchanged(staging.read(spec, 10)) == 1
    assert staging.count(spec) == 0


def test_insert_only_rows_may_be_staged_together_in_one_partition(staging: StagingTable) -> None:
    """A batch of insert-only rows goes in one transaction; a key staged again in another batch
    may land in another partition, and both copies are read (the flush folds them)."""
    rows = [{"trace_id": f"tog-{i}", "event_date": date(2026, 1, 1), "type": "x"} for i in range(30)]
    entities = [staging.encode(XACT_EVENTS, row) for row in rows]
    assert len({e["PartitionKey"] for e in entities}) > 1  # by key, they would spread
    assert staging.stage_entities(XACT_EVENTS, entities, together=True) == 30
    staged = staging.read(XACT_EVENTS, 100)
    assert len({row.partition_key for row in staged}) == 1
    again = [staging.encode(XACT_EVENTS, {**rows[5], "type": "y"})]
    staging.stage_entities(XACT_EVENTS, again, together=True)
    copies = [row for row in staging.read(XACT_EVENTS, 100) if row.key == "tog-5"]
    assert len(copies) == 2 and {row.values["type"] for row in copies} == {"x", "y"}
    with pytest.raises(ValueError, match="only insert-only rows"):
        staging.stage_entities(
            XACT_ATTACHMENTS_FAILED,
            [staging.encode(XACT_ATTACHMENTS_FAILED, {"media_id": "m"})],
            together=True,
        )


@pytest.mark.unit
def test_rows_over_the_table_limits_are_refused_before_any_request(io_pool: IoPool) -> None:
    offline = StagingTable(
        TableServiceClient.from_connection_string("UseDevelopmentStorage=true"), io_pool, "x"
    )
    day = date(2026, 1, 1)
    with pytest.raises(UnstageableRow, match="author holds 40000 UTF-16 units"):
        offline.encode(XACT_EVENTS, {"trace_id": "t", "event_date": day, "author": "a" * 40_000})
    with pytest.raises(UnstageableRow, match="exceeds a Table entity"):
        offline.encode(XACT_EVENTS, {"trace_id": "t", "event_date": day, "raw_json": "😀" * 300_000})
    with pytest.raises(UnstageableRow, match="row's request of"):  # the JSON escapes every é
        offline.encode(XACT_EVENTS, {"trace_id": "t", "event_date": day, "raw_json": "é" * 200_000})
    with pytest.raises(UnstageableRow, match="outside what Azure Tables keep"):
        offline.encode(XACT_EVENTS, {"trace_id": "t", "event_date": day, "created_at": datetime(1500, 1, 1)})
    with pytest.raises(UnstageableRow, match="does not fit"):
        offline.encode(XACT_ATTACHMENTS_FAILED, {"media_id": "m", "http_status": 2**40})
    fits = offline.encode(XACT_EVENTS, {"trace_id": "t", "event_date": day, "raw_json": "é" * 170_000})
    assert entity_size(fits) <= 1024 * 1024 and request_size(fits) <= 1024 * 1024


def test_transactions_are_cut_at_four_mebibytes(staging: StagingTable) -> None:
    """Ten rows of ~900 KiB of JSON each cannot share one 4 MiB transaction."""
    rows = [
        {"trace_id": f"big-{i}", "event_date": date(2026, 1, 1), "raw_json": "é" * 150_000} for i in range(10)
    ]
    entities = [staging.encode(XACT_EVENTS, row) for row in rows]
    assert staging.stage_entities(XACT_EVENTS, entities, together=True) == 10
    assert {row.key for row in staging.read(XACT_EVENTS, 100)} == {f"big-{i}" for i in range(10)}
