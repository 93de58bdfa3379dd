"""ClaimX enrichment benchmark: events/s through the handlers vs raw API calls, on one simulator.

The simulator serves 200 projects with 5 media each. Measured in the same run (medians):

a. raw: for each PROJECT_FILE_ADDED event, the two requests its enrichment needs (the project
   export and its media by id) with a bare aiohttp session, 20 in flight: the ceiling;
b. ours: the same events through :class:`Handlers` (circuit breaker, semaphore, per-process
   project cache, file events of one project sharing one media call, rows built for every table),
   20 in flight, a fresh cache per repetition.

Prints events/s of both and the ratio b/a. Run: ``.venv/bin/python bench/bench_claimx_enrich.py``
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from claimsflow.claimx_samples import media_item, project_export
from claimsflow.simulator import AttachmentSimulator
from shared.claimx.api import ClaimXApi
from shared.claimx.circuit import CircuitBreaker
from shared.claimx.handlers import Handlers, MediaLookup, ProjectCache
from shared.config import Settings
from shared.transfer.urls import UrlPolicy

PROJECTS = 200
MEDIA_PER_PROJECT = 5
IN_FLIGHT = 20
REPEATS = 5
AT = "2026-11-01T12:00:00+00:00"
API = "https://www.claimxperience.com/service/cxedirest"


def world() -> dict[str, Any]:
    projects = {str(p): project_export(p) for p in range(1, PROJECTS + 1)}
    media = {
        str(p): [media_item(p * 100 + m, name=f"m{m}.jpg") for m in range(MEDIA_PER_PROJECT)]
        for p in range(1, PROJECTS + 1)
    }
    return {"claimx": {"projects": projects, "media": media}}


def events() -> list[dict[str, Any]]:
    out = []
    for m in range(MEDIA_PER_PROJECT):
        for p in range(1, PROJECTS + 1):
            out.append(
                {
                    "trace_id": f"t{p}-{m}",
                    "event_type": "PROJECT_FILE_ADDED",
                    "project_id": str(p),
                    "media_id": str(p * 100 + m),
                    "ingested_at": AT,
                }
            )
    return out


async def bounded(items: list[dict[str, Any]], work: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(item: dict[str, Any]) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


async def main() -> None:
    async with AttachmentSimulator(world()) as sim:
        settings = Settings(
            AzureWebJobsStorage="UseDevelopmentStorage=true",
            ENVIRONMENT="test",
            SIMULATION_MODE="true",
            SIMULATOR_URL=sim.url,
            CLAIMX_API_TOKEN="YmVuY2g6YmVuY2g=",
        )
        batch = events()
        headers = {"Host": "www.claimxperience.com", "Authorization": "Basic YmVuY2g6YmVuY2g="}
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as raw:

            async def raw_event(event: dict[str, Any]) -> None:
                base = sim.url + API.split("www.claimxperience.com", 1)[1]
                pid = event["project_id"]
                for url, params in (
                    (f"{base}/export/project/{pid}", None),
                    (f"{base}/export/project/{pid}/media", {"mediaIds": event["media_id"]}),
                ):
                    async with raw.get(url, params=params, headers=headers) as response:
                        assert response.status == 200
                        await response.json()

            raw_times = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                await bounded(batch, raw_event)
                raw_times.append(time.perf_counter() - started)

        api = ClaimXApi.open(settings, CircuitBreaker("claimx_api"))
        ours_times, calls = [], 0
        for _ in range(REPEATS):
            handlers = Handlers(api, ProjectCache(900), MediaLookup(api), UrlPolicy.from_settings(settings))
            before = api.requests
            rows = 0

            async def enrich(event: dict[str, Any], handlers: Handlers = handlers) -> None:
                nonlocal rows
                result = await handlers.enrich(event)
                if result.fetched_project:
                    handlers.projects.remember(result.fetched_project)
                rows += sum(len(r) for r in result.rows.values())

            started = time.perf_counter()
            await bounded(batch, enrich)
            ours_times.append(time.perf_counter() - started)
            calls = api.requests - before
        await api.close()

    raw_rate = len(batch) / statistics.median(raw_times)
    ours_rate = len(batch) / statistics.median(ours_times)
    print(f"events: {len(batch):,} PROJECT_FILE_ADDED over {PROJECTS} projects; {IN_FLIGHT} in flight")
    print(
        f"(a) raw API calls (2 per event):          {raw_rate:8.0f} events/s  ({2 * len(batch):,} requests)"
    )
    print(f"(b) handlers (breaker, cache, batching):  {ours_rate:8.0f} events/s  ({calls:,} requests)")
    print(f"    rows built by the handlers: {rows:,}")
    print(f"ratio handlers/raw: {ours_rate / raw_rate:.2f}x  ({datetime.now(UTC):%Y-%m-%d})")


if __name__ == "__main__":
    asyncio.run(main())
