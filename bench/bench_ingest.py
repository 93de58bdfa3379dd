"""Ingest benchmarks, each a ratio against a raw baseline measured in the same run.

1. parse + validate + dedup (memory-cache hit) vs plain ``json.loads`` of the same bodies
   (target ≥ 0.3×).
2. ingest events/s with dedup latch and staging I/O on Azurite (orchestration start is an
   in-memory registry) vs raw Azure Table batch upserts of the same event rows (target >= 0.3x;
   the latch's claims, one transaction per latch partition touched, dominate).

Run: ``.venv/bin/python bench/bench_ingest.py``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableServiceClient, UpdateMode

from claimsflow.azurite import Azurite
from claimsflow.samples import generate
from shared.config import Settings
from shared.runtime import Runtime
from shared.xact.events import XactEvent, parse_xact_body
from shared.xact.ingest import XactIngestor
from shared.xact.rows import event_row


def best_rate(fn: Callable[[], int], repeats: int = 5) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = fn()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_parse(bodies: list[bytes], runtime_factory: Callable[[], Runtime]) -> None:
    runtime = runtime_factory()
    latch = runtime.dedup
    for body in bodies:  # warm the memory cache: every lookup below is a hit
        parsed = parse_xact_body(body)
        if isinstance(parsed, XactEvent):
            latch._seen[parsed.trace_id] = True

    def baseline() -> int:
        for body in bodies:
            json.loads(body)
        return len(bodies)

    def ours() -> int:
        hits = 0
        for body in bodies:
            parsed = parse_xact_body(body)
            if isinstance(parsed, XactEvent) and latch.seen_recently(parsed.trace_id):
                hits += 1
        return len(bodies)

    raw = best_rate(baseline)
    rate = best_rate(ours)
    print(
        f"parse+validate+dedup(hit): {rate:,.0f} events/s; json.loads: {raw:,.0f} events/s; "
        f"ratio {rate / raw:.2f}x (target >= 0.3x)"
    )


class Registry:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool:
        if instance_id in self.ids:
            return False
        self.ids.add(instance_id)
        return True

    async def exists(self, instance_id: str) -> bool:
        return instance_id in self.ids


def bench_ingest_io(azurite: Azurite, batches: int = 10, batch_size: int = 100) -> None:
    now = datetime.now(UTC)
    results = []
    for run in range(3):
        settings = Settings(AzureWebJobsStorage=azurite.connection_string, TASKHUB_NAME=f"benchingest{run}")
        runtime = Runtime(settings)
        unique_events = {}
        for body in generate(batches * batch_size * 2, seed=run):
            parsed = parse_xact_body(body)
            if isinstance(parsed, XactEvent):
                unique_events[parsed.trace_id] = body
        bodies = list(unique_events.values())[: batches * batch_size]
        ingestor = XactIngestor(
            latch=runtime.dedup,
            staging=runtime.staging,
            dead_letters=runtime.dead_letters,
            failures=runtime.ingest_failures,
            starter=Registry(),
            retry_delays=(300,),
            now=lambda: now,
            pool=runtime.pool,
        )
        started = time.perf_counter()
        for i in range(batches):
            asyncio.run(ingestor.ingest(bodies[i * batch_size : (i + 1) * batch_size]))
        ours = len(bodies) / (time.perf_counter() - started)

        service = TableServiceClient.from_connection_string(azurite.connection_string)
        raw_table = service.create_table_if_not_exists(f"benchraw{run}")
        rows = []
        for body in bodies:
            parsed = parse_xact_body(body)
            assert isinstance(parsed, XactEvent)
            row = {k: v for k, v in event_row(parsed, created_at=now).items() if v is not None}
            row["event_date"] = row["event_date"].isoformat()
            row["created_date"] = row["created_date"].isoformat()
            row.update(PartitionKey="p", RowKey=parsed.trace_id)
            rows.append(row)
        started = time.perf_counter()
        for i in range(0, len(rows), 100):
            raw_table.submit_transaction(
                [("upsert", r, {"mode": UpdateMode.MERGE}) for r in rows[i : i + 100]]
            )
        raw = len(rows) / (time.perf_counter() - started)
        results.append((ours, raw))
    ours = statistics.median(r[0] for r in results)
    raw = statistics.median(r[1] for r in results)
    print(
        f"ingest with latch+staging on Azurite: {ours:,.0f} events/s; raw batched table upserts: "
        f"{raw:,.0f} rows/s; ratio {ours / raw:.2f}x (target >= 0.3x)"
    )


def main() -> None:
    azurite = Azurite.start()
    try:
        bodies = [b.encode() for b in generate(20_000, seed=1) if isinstance(parse_xact_body(b), XactEvent)]
        bench_parse(bodies, lambda: Runtime(Settings(AzureWebJobsStorage=azurite.connection_string)))
        bench_ingest_io(azurite)
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
