"""Flush benchmark: our MERGE of 2,000 rows into a 1,000,000-row table vs a raw append.

On a fresh Azurite, builds an ``xact_attachments``-shaped table of 1,000,000 rows over 30
``event_date`` partitions, then measures in the same run (medians of several repetitions):

a. a raw ``write_deltalake`` append of 2,000 rows (kept ``DeltaTable``), the floor for a commit;
b. the flush's MERGE of 2,000 new rows through :class:`DeltaWriter` (dedupe, coercion,
   partition-pruned insert-only MERGE), for rows of the two most recent days (the usual case)
   and for rows spread over all 30 days (the worst case);
c. a full ``flush_table`` of 2,000 staged rows: staging read + MERGE + etag-guarded delete.

Prints the ratio b/a (target <= 5x). Run: ``.venv/bin/python bench/bench_flush.py``
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
from deltalake import write_deltalake

from claimsflow.azurite import Azurite
from shared.config import Settings
from shared.lake.reader import count_rows
from shared.runtime import Runtime
from shared.xact.tables import XACT_ATTACHMENTS

TABLE_ROWS = 1_000_000
DAYS = 30
BATCH = 2_000
REPEATS = 5
FIRST_DAY = date(2026, 10, 1)
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def media_id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:32]


def rows(start: int, count: int, days: list[date]) -> list[dict[str, Any]]:
    out = []
    for n in range(start, start + count):
        mid = media_id(n)
        out.append(
            {
                "media_id": mid,
                "trace_id": f"trace-{n // 3}",
                "attachment_url": f"https://example.test/files/{mid}.pdf",
                "blob_path": f"documentsReceived/A{n % 9973}/trace-{n // 3}/{mid}.pdf",
                "file_type": "pdf",
                "status_subtype": "documentsReceived",
                "assignment_id": f"A{n % 9973}",
                "bytes_downloaded": 100_000 + n % 5_000_000,
                "content_type": "application/pdf",
                "sha256": hashlib.sha256(mid.encode()).hexdigest(),
                "downloaded_at": NOW,
                "event_date": days[n % len(days)],
                "created_at": NOW,
            }
        )
    return out


def big_frame() -> pl.DataFrame:
    """The 1M-row table built with polars expressions (a python loop would take minutes)."""
    n = pl.int_range(0, TABLE_ROWS, eager=True).alias("n")
    frame = pl.DataFrame(n).with_columns(
        media_id=pl.col("n").cast(pl.String).str.pad_start(32, "0"),
        trace_id=pl.format("trace-{}", pl.col("n") // 3),
        attachment_url=pl.format("https://example.test/files/{}.pdf", pl.col("n")),
        blob_path=pl.format(
            "documentsReceived/A{}/trace-{}/{}.pdf", pl.col("n") % 9973, pl.col("n") // 3, "n"
        ),
        file_type=pl.lit("pdf"),
        status_subtype=pl.lit("documentsReceived"),
        assignment_id=pl.format("A{}", pl.col("n") % 9973),
        bytes_downloaded=(pl.col("n") % 5_000_000 + 100_000).cast(pl.Int64),
        content_type=pl.lit("application/pdf"),
        sha256=pl.col("n").cast(pl.String).str.pad_start(64, "f"),
        downloaded_at=pl.lit(NOW).cast(pl.Datetime("us", "UTC")),
        event_date=pl.lit(FIRST_DAY) + pl.duration(days=pl.col("n") % DAYS),
        created_at=pl.lit(NOW).cast(pl.Datetime("us", "UTC")),
    )
    return frame.select([pl.col(c).cast(t) for c, t in XACT_ATTACHMENTS.schema.items()])


def median_seconds(fn: Callable[[int], object], repeats: int = REPEATS) -> float:
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    began = time.perf_counter()
    azurite = Azurite.start()
    try:
        settings = Settings(
            AzureWebJobsStorage=azurite.connection_string,
            ENVIRONMENT="test",
            LAKE_TABLES_URI="abfss://bench@devstoreaccount1.dfs.core.windows.net/Tables",
            FLUSH_MAX_ROWS=BATCH,
        )
        runtime = Runtime(settings)
        lakehouse = runtime.lakehouse
        writer = lakehouse.writer(XACT_ATTACHMENTS)
        writer.merge([])  # creates the table (schema + partition)
        t0 = time.perf_counter()
        write_deltalake(writer.table(), big_frame(), mode="append")
        dt = writer.table()
        print(
            f"built {TABLE_ROWS:,} rows in {len(dt.file_uris())} files over {DAYS} partitions "
            f"in {time.perf_counter() - t0:.1f}s"
        )

        recent = [FIRST_DAY + timedelta(days=DAYS - 2), FIRST_DAY + timedelta(days=DAYS - 1)]
        all_days = [FIRST_DAY + timedelta(days=d) for d in range(DAYS)]
        next_id = [10_000_000]

        def take(days: list[date]) -> list[dict[str, Any]]:
            batch = rows(next_id[0], BATCH, days)
            next_id[0] += BATCH
            return batch

        def append(_: int) -> None:
            frame = XACT_ATTACHMENTS.to_frame(batches.pop())
            write_deltalake(writer.table(), frame, mode="append")

        def merge(_: int) -> None:
            metrics = writer.merge(batches.pop())
            assert metrics.inserted == BATCH, metrics

        # rows are built outside the timed part; each repetition gets fresh keys
        batches = [take(recent) for _ in range(REPEATS)]
        append_s = median_seconds(append)
        batches = [take(recent) for _ in range(REPEATS)]
        merge_s = median_seconds(merge)
        batches = [take(all_days) for _ in range(REPEATS)]
        merge_spread_s = median_seconds(merge)
        # our writer re-merging rows that are all present already (a crash replay)
        replay = take(recent)
        writer.merge(replay)
        replay_s = median_seconds(lambda _: writer.merge(replay))

        def flush(_: int) -> None:
            result = lakehouse.flush(XACT_ATTACHMENTS, max_batches=1)
            assert result.inserted == BATCH and result.deleted == BATCH, result

        flush_times = []
        for _ in range(3):
            lakehouse.staging.stage_many(XACT_ATTACHMENTS, take(recent))  # not timed
            flush_times.append(median_seconds(flush, repeats=1))
        flush_s = statistics.median(flush_times)

        rows_now = count_rows(writer.uri, writer.storage_options)
        print(f"table now holds {rows_now:,} rows; medians of {REPEATS} (flush: of 3)")
        report = [
            (f"(a) raw write_deltalake append of {BATCH:,} rows", append_s),
            (f"(b) DeltaWriter MERGE of {BATCH:,} rows, 2 recent days", merge_s),
            (f"    DeltaWriter MERGE of {BATCH:,} rows, all {DAYS} days", merge_spread_s),
            (f"    DeltaWriter re-MERGE of {BATCH:,} rows already present", replay_s),
            (f"(c) flush_table of {BATCH:,} staged rows (read+merge+delete)", flush_s),
        ]
        for label, seconds in report:
            print(f"{label:<62} {seconds * 1000:7.0f} ms")
        ratio = merge_s / append_s
        verdict = "OK" if ratio <= 5 else "OVER"
        print(f"ratio merge/append (recent days): {ratio:.2f}x  (target <= 5x) {verdict}")
        print(f"ratio merge/append (all {DAYS} days): {merge_spread_s / append_s:.2f}x")
        runtime.close()
    finally:
        azurite.stop()
    print(f"total {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
