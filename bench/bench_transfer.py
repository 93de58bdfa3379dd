"""Attachment transfer benchmarks, each against a raw baseline measured in the same run.

1. Throughput: ``transfer_attachment`` (URL policy, expiry, type checks, redirect-aware GET,
   sha256, staged 8 MB blocks two in flight, conditional commit) vs a raw aiohttp GET →
   ``stage_block`` (8 MB, two in flight) → ``commit_block_list`` copy of the same file from the
   same simulator into the same Azurite. Target: ratio ≥ 0.8.
2. Memory: peak RSS growth of one 200 MB transfer, in a fresh child process (RSS before the
   transfer vs ``ru_maxrss`` after). Target: < 64 MB.

The simulator runs in its own process (its body cache warmed first), so neither its CPU nor its
memory counts against the client. Azurite caps the absolute MB/s; only the ratio says something
about our code.

Run: ``.venv/bin/python bench/bench_transfer.py [--size-mb 100] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from azure.storage.blob import BlobBlock  # noqa: E402

from claimsflow.azurite import Azurite  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.storage import LakeLocation, StorageFactory  # noqa: E402
from shared.transfer.attachment import TransferRequest, transfer_attachment  # noqa: E402
from shared.transfer.http import create_session  # noqa: E402
from shared.transfer.stores import BlobAttachmentStore  # noqa: E402
from shared.transfer.urls import UrlPolicy  # noqa: E402

MIB = 1024 * 1024
HOST = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
BLOCK = 8 * MIB
IN_FLIGHT = 2


def settings_for(connection_string: str, sim_url: str, container: str) -> Settings:
    return Settings(
        AzureWebJobsStorage=connection_string,
        ENVIRONMENT="test",
        SIMULATION_MODE="true",
        SIMULATOR_URL=sim_url,
        TRANSFER_BLOCK_SIZE_MB=BLOCK // MIB,
        XACT_ATTACHMENTS_URI=f"abfss://{container}@devstoreaccount1.dfs.core.windows.net/Files/attachments",
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def raw_copy(store: BlobAttachmentStore, sim_url: str, path: str, size: int, blob_name: str) -> None:
    """The baseline: plain aiohttp GET, 8 MB blocks two in flight, one Put Block List.

    It borrows the store's container client only so both sides use the same storage connection pool.
    """
    blob = store._container.get_blob_client(store.name(blob_name))
    ids: list[str] = []
    pending: set[asyncio.Task[Any]] = set()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim_url}{path}?size={size}", headers={"Host": HOST}) as response,
    ):
        buffer = bytearray()
        async for chunk in response.content.iter_chunked(MIB):
            buffer += chunk
            if len(buffer) >= BLOCK:
                ids.append(f"{len(ids):08d}")
                if len(pending) >= IN_FLIGHT:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.add(asyncio.create_task(blob.stage_block(ids[-1], bytes(buffer[:BLOCK]))))
                del buffer[:BLOCK]
        if buffer:
            ids.append(f"{len(ids):08d}")
            pending.add(asyncio.create_task(blob.stage_block(ids[-1], bytes(buffer))))
        if pending:
            await asyncio.wait(pending)
    await blob.commit_block_list([BlobBlock(i) for i in ids])


async def ours(settings: Settings, path: str, size: int, blob_path: str, store: BlobAttachmentStore) -> None:
    policy = UrlPolicy.from_settings(settings)
    async with create_session(settings, policy=policy) as session:
        result = await transfer_attachment(
            TransferRequest(f"https://{HOST}{path}?size={size}", blob_path),
            session=session,
            store=store,
            policy=policy,
            settings=settings,
            now=datetime.now(UTC),
        )
    assert result.bytes_written == size and not result.already_present


async def warm(sim_url: str, path: str, size: int) -> None:
    """Make the simulator generate (and cache on disk) the body once, outside the measurement."""
    async with aiohttp.ClientSession() as session, session.get(f"{sim_url}{path}?size={size}") as response:
        async for _ in response.content.iter_chunked(4 * MIB):
            pass


async def throughput(azurite: Azurite, sim_url: str, size_mb: int, repeats: int) -> float:
    size = size_mb * MIB
    path = f"/bench/throughput-{size_mb}.mp4"
    await warm(sim_url, path, size)
    container = f"bench{uuid.uuid4().hex[:10]}"
    settings = settings_for(azurite.connection_string, sim_url, container)
    location = LakeLocation.parse(settings.xact_attachments_uri)
    with StorageFactory(settings).lake_blob_service(location) as service:
        service.create_container(container)
    store = BlobAttachmentStore.from_settings(settings, StorageFactory(settings))
    raw_times, our_times = [], []
    try:
        for rep in range(repeats):
            # Alternate the order so neither side always runs on a warmer Azurite.
            order = ("raw", "ours") if rep % 2 == 0 else ("ours", "raw")
            for kind in order:
                started = time.perf_counter()
                if kind == "raw":
                    await raw_copy(store, sim_url, path, size, f"raw/{rep}.mp4")
                    raw_times.append(time.perf_counter() - started)
                else:
                    await ours(settings, path, size, f"ours/{rep}.mp4", store)
                    our_times.append(time.perf_counter() - started)
    finally:
        await store.close()
    raw_t, our_t = statistics.median(raw_times), statistics.median(our_times)
    print(f"  raw copy        : {size_mb / raw_t:7.1f} MB/s  (median of {repeats}: {raw_t:.2f} s)")
    print(f"  transfer        : {size_mb / our_t:7.1f} MB/s  (median of {repeats}: {our_t:.2f} s)")
    return raw_t / our_t


def child_memory(args: argparse.Namespace) -> None:
    """In a fresh process: RSS growth of one transfer (or raw copy) of ``size_mb``."""
    settings = settings_for(args.connection_string, args.sim_url, args.container)
    size = args.size_mb * MIB
    path = f"/bench/memory-{args.size_mb}.mp4"

    async def run() -> dict[str, float]:
        store = BlobAttachmentStore.from_settings(settings, StorageFactory(settings))
        # Warm imports, pools and SDK code paths with a small transfer first.
        await ours(settings, "/bench/warmup.pdf", 2 * BLOCK + 5, f"warm/{args.kind}.pdf", store)
        before = rss_mb()
        peak_before = peak_rss_mb()
        if args.kind == "ours":
            await ours(settings, path, size, "memory/ours.mp4", store)
        else:
            await raw_copy(store, args.sim_url, path, size, "memory/raw.mp4")
        await store.close()
        return {"before": before, "peak_before": peak_before, "peak_after": peak_rss_mb()}

    print(json.dumps(asyncio.run(run())))


def memory(azurite: Azurite, sim_url: str, size_mb: int, kind: str) -> float:
    container = f"mem{uuid.uuid4().hex[:10]}"
    settings = settings_for(azurite.connection_string, sim_url, container)
    location = LakeLocation.parse(settings.xact_attachments_uri)
    with StorageFactory(settings).lake_blob_service(location) as service:
        service.create_container(container)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child-memory",
            kind,
            "--sim-url",
            sim_url,
            "--connection-string",
            azurite.connection_string,
            "--container",
            container,
            "--size-mb",
            str(size_mb),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth = figures["peak_after"] - figures["before"]
    print(
        f"  {kind:<15} : RSS {figures['before']:.0f} MB before, "
        f"high-water {figures['peak_after']:.0f} MB after → growth {growth:.1f} MB"
    )
    return float(growth)


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "claimsflow.simulator", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError("the attachment simulator did not start")
    return process, url


def main() -> int:
    parser = argparse.ArgumentParser(description="attachment transfer benchmarks")
    parser.add_argument("--size-mb", type=int, default=100, help="file size for the throughput ratio")
    parser.add_argument("--memory-mb", type=int, default=200, help="file size for the memory figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-memory", choices=("ours", "raw"))
    parser.add_argument("--sim-url")
    parser.add_argument("--connection-string")
    parser.add_argument("--container")
    args = parser.parse_args()
    if args.child_memory:
        args.kind = args.child_memory
        child_memory(args)
        return 0

    azurite = Azurite.start()
    simulator, sim_url = start_simulator()
    try:
        print(f"transfer throughput, {args.size_mb} MB file, simulator → Azurite, 8 MB blocks × 2 in flight")
        ratio = asyncio.run(throughput(azurite, sim_url, args.size_mb, args.repeats))
        asyncio.run(warm(sim_url, f"/bench/memory-{args.memory_mb}.mp4", args.memory_mb * MIB))
        print(f"peak memory growth, {args.memory_mb} MB file (fresh process each)")
        growth = memory(azurite, sim_url, args.memory_mb, "ours")
        memory(azurite, sim_url, args.memory_mb, "raw")
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        azurite.stop()
    ok_ratio, ok_memory = ratio >= 0.8, growth < 64
    verdict = {True: "PASS", False: "FAIL"}
    print(f"RESULT throughput ratio transfer/raw = {ratio:.2f} (target >= 0.8): {verdict[ok_ratio]}")
    size = args.memory_mb
    print(f"RESULT peak RSS growth at {size} MB = {growth:.1f} MB (target < 64 MB): {verdict[ok_memory]}")
    return 0 if ok_ratio and ok_memory else 1


if __name__ == "__main__":
    raise SystemExit(main())
