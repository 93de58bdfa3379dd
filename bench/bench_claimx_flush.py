"""ClaimX entity flush benchmark: our null-preserving upsert of entity rows vs a raw append.

On a fresh Azurite, measures in the same run (medians):

a. a raw ``write_deltalake`` append of the rows (the floor for a commit of those rows);
b. the flush's upsert MERGE of the same number of rows through :class:`DeltaWriter` (half new
   keys, half updates of stored keys, coalescing so a null never erases a value, keeping the
   stored ``created_at``), for ``claimx_contacts`` (compound key, no partition, 50,000 rows
   stored) and ``claimx_projects`` (partitioned by ``project_id``, 2,000 projects stored);
c. a whole flush from staging of one batch of rows of all seven entity tables
   (staging read + MERGE + etag-guarded delete), against raw appends of the same rows.

The first of three flushes warms the tables up and is not counted. Prints the ratios b/a and c/a.
Run: ``.venv/bin/python bench/bench_claimx_flush.py``
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from deltalake import write_deltalake

from claimsflow.azurite import Azurite
from claimsflow.claimx_samples import project_export, task_assignment, video_report
from shared.claimx.tables import (
    CLAIMX_ATTACHMENT_METADATA,
    CLAIMX_CONTACTS,
    CLAIMX_EXTERNAL_LINKS,
    CLAIMX_PROJECTS,
    CLAIMX_TASK_TEMPLATES,
    CLAIMX_TASKS,
    CLAIMX_VIDEO_COLLAB,
    ENTITY_TABLES,
)
from shared.claimx.transformers import (
    Stamp,
    contact_rows,
    external_link_row,
    media_row,
    project_row,
    task_row,
    template_row,
    video_row,
)
from shared.config import Settings
from shared.lake.tables import TableSpec
from shared.runtime import Runtime

REPEATS = 5
BATCH = 1_000
STORED_CONTACTS = 50_000
STORED_PROJECTS = 2_000
AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def median_seconds(fn: Callable[[int], object], repeats: int = REPEATS) -> float:
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def entity_rows(first: int, count: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of every entity table, as the handlers make them, for ``count`` projects."""
    out: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in ENTITY_TABLES}
    for n in range(first, first + count):
        stamp = Stamp(f"trace-{n}", AT)
        export = project_export(n, wrapped=False)
        out[CLAIMX_PROJECTS.name].append(project_row(export, stamp, str(n)))
        out[CLAIMX_CONTACTS.name].extend(contact_rows(export, stamp, str(n)))
        item = {"mediaID": n, "mediaName": f"m{n}.jpg", "fullDownloadLink": f"https://h/m/{n}?sign=x"}
        out[CLAIMX_ATTACHMENT_METADATA.name].append({**media_row(item, stamp, str(n)), "media_id": str(n)})
        assignment = task_assignment(n, n, task_id=n % 50)
        out[CLAIMX_TASKS.name].append(task_row(assignment, stamp, str(n)))
        out[CLAIMX_TASK_TEMPLATES.name].append(template_row(assignment["customTask"], stamp))
        out[CLAIMX_EXTERNAL_LINKS.name].append(
            external_link_row(assignment["externalLinkData"], stamp, str(n), str(n))
        )
        out[CLAIMX_VIDEO_COLLAB.name].append(video_row(video_report(n, n)["data"][-1], stamp, str(n)))
    return out


def main() -> None:
    began = time.perf_counter()
    azurite = Azurite.start()
    try:
        settings = Settings(
            AzureWebJobsStorage=azurite.connection_string,
            ENVIRONMENT="test",
            LAKE_TABLES_URI="abfss://bench@devstoreaccount1.dfs.core.windows.net/Tables",
            FLUSH_MAX_ROWS=20_000,
        )
        runtime = Runtime(settings)
        lakehouse = runtime.lakehouse
        report: list[tuple[str, float]] = []
        ratios: list[tuple[str, float]] = []

        def upsert_vs_append(
            spec: TableSpec, stored: list[dict[str, Any]], fresh: list[list[dict[str, Any]]]
        ) -> None:
            writer = lakehouse.writer(spec)
            writer.merge(stored)
            append_table = lakehouse.writer(
                TableSpec(f"{spec.name}_raw", spec.schema, spec.key, spec.partition, spec.mode)
            )
            append_table.merge(stored[:1])
            frames = [spec.to_frame(batch) for batch in fresh]
            append_s = median_seconds(
                lambda i: write_deltalake(append_table.table(), frames[i], mode="append")
            )
            merge_s = median_seconds(lambda i: writer.merge(fresh[i]))
            report.append((f"(a) raw append, {spec.name}, {len(fresh[0]):,} rows", append_s))
            report.append((f"(b) upsert MERGE, {spec.name}, {len(fresh[0]):,} rows", merge_s))
            ratios.append((f"upsert/append {spec.name}", merge_s / append_s))

        def batch_of(table: str, first: int, count: int) -> list[dict[str, Any]]:
            return entity_rows(first, count)[table]

        # contacts: 2 per project; a batch is half updates (changed names), half new keys
        stored = batch_of(CLAIMX_CONTACTS.name, 0, STORED_CONTACTS // 2)
        fresh = []
        for i in range(REPEATS):
            updates = [{**r, "first_name": f"P{i}"} for r in stored[i * BATCH // 2 : (i + 1) * BATCH // 2]]
            fresh.append(updates + batch_of(CLAIMX_CONTACTS.name, 1_000_000 + i * BATCH, BATCH // 4))
        upsert_vs_append(CLAIMX_CONTACTS, stored, fresh)

        stored = batch_of(CLAIMX_PROJECTS.name, 0, STORED_PROJECTS)
        fresh = []
        for i in range(REPEATS):
            updates = [{**r, "status": f"S{i}"} for r in stored[i * 100 : (i + 1) * 100]]
            fresh.append(updates + batch_of(CLAIMX_PROJECTS.name, 2_000_000 + i * 100, 100))
        upsert_vs_append(CLAIMX_PROJECTS, stored, fresh)

        # a whole flush of staged rows of all seven entity tables vs raw appends of the same rows
        flush_times, append_times = [], []
        for i in range(3):
            rows = entity_rows(3_000_000 + i * BATCH, BATCH // 5)
            for spec in ENTITY_TABLES:
                lakehouse.staging.stage_many(spec, rows[spec.name])  # not timed
            started = time.perf_counter()
            results = lakehouse.flush_all(list(ENTITY_TABLES))
            flush_times.append(time.perf_counter() - started)
            assert all(r.status.value in ("flushed", "empty") for r in results), results
            frames = {spec.name: spec.to_frame(rows[spec.name]) for spec in ENTITY_TABLES}
            started = time.perf_counter()
            for spec in ENTITY_TABLES:
                target = lakehouse.writer(
                    TableSpec(f"{spec.name}_rawall", spec.schema, spec.key, spec.partition)
                )
                write_deltalake(target.table(), frames[spec.name], mode="append")
            append_times.append(time.perf_counter() - started)
        total_rows = sum(len(v) for v in entity_rows(0, BATCH // 5).values())
        flush_s, append_s = statistics.median(flush_times[1:]), statistics.median(append_times[1:])
        report.append((f"(a) raw appends to 7 tables, {total_rows:,} rows", append_s))
        report.append((f"(c) flush of 7 staged tables, {total_rows:,} rows", flush_s))
        ratios.append(("flush/append, 7 entity tables", flush_s / append_s))

        for label, seconds in report:
            print(f"{label:<62} {seconds * 1000:8.0f} ms")
        for label, ratio in ratios:
            print(f"ratio {label}: {ratio:.2f}x")
        runtime.close()
    finally:
        azurite.stop()
    print(f"total {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
