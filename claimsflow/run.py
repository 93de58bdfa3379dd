"""``claimsflow run``: the whole pipeline (XACT and ClaimX) on a laptop, start to settled.

Storage is the account in ``AzureWebJobsStorage`` when it answers, else an Azurite started for
the run (left running afterwards so the report's connection string and storage options open the
results). The local host runs ``function_app.app``; the simulator answers for the allowlisted
attachment hosts and the ClaimX API. Each hub's lines are delivered in file order,
``maxEventBatchSize`` at a time, each line with its own fixed enqueued time; with
``redeliver`` each batch comes again after a restart (a new host process state: fresh
memory, pending work resumed from storage).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient
from deltalake.exceptions import TableNotFoundError

from claimsflow.azurite import REPO_ROOT, Azurite
from claimsflow.claimx_samples import generate as generate_claimx
from claimsflow.local_settings import sample_values
from claimsflow.samples import default_world, generate
from shared import metrics
from shared.clock import install_clock, remove_clock
from shared.config import Settings
from shared.runtime import reset_runtime
from shared.storage import LakeLocation, StorageFactory

if TYPE_CHECKING:
    from claimsflow.simulator import AttachmentSimulator
    from local_host import LocalHost

STATE_DIR = REPO_ROOT / ".claimsflow"
AZURITE_PID_FILE = STATE_DIR / "azurite.json"


RUN_NAME = re.compile(r"^[a-z0-9]{1,32}$")
SIMULATED_CLAIMX_TOKEN = "Y2xhaW1zZmxvdzpzaW11bGF0ZWQ="  # the simulator accepts any credential


class RunError(RuntimeError):
    """The run itself could not work (not a pipeline outcome: those are counted)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    xact_events: Path | None = None
    claimx_events: Path | None = None
    world: dict[str, Any] | None = None
    generate: int | None = None
    redeliver: bool = False
    run_name: str | None = None


def fresh_run_name() -> str:
    return f"{datetime.now(UTC):%m%d%H%M%S}{secrets.token_hex(2)}"


def check_run_name(name: str) -> str:
    """A run name becomes part of a task hub and container names: lower-case letters and digits."""
    if not RUN_NAME.match(name):
        raise RunError(f"run name {name!r} must be 1 to 32 lower-case letters or digits")
    return name


def read_event_lines(path: Path) -> list[str]:
    """One Event Hub body per line, exactly as written (blank lines are not events)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def merge_worlds(base: dict[str, Any] | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    """``extra`` over ``base``: its faults first (first match wins), its ClaimX answers per id."""
    base, extra = base or {}, extra or {}
    merged = {**base, **extra, "faults": list(extra.get("faults", [])) + list(base.get("faults", []))}
    if "claimx" in base or "claimx" in extra:
        sections = set(base.get("claimx", {})) | set(extra.get("claimx", {}))
        merged["claimx"] = {
            name: {**base.get("claimx", {}).get(name, {}), **extra.get("claimx", {}).get(name, {})}
            for name in sections
        }
    return merged


def host_batch_size() -> int:
    host = json.loads((REPO_ROOT / "host.json").read_text())
    return int(host["extensions"]["eventHubs"]["maxEventBatchSize"])


def storage_answers(connection_string: str) -> bool:
    try:
        client = BlobServiceClient.from_connection_string(
            connection_string, connection_timeout=2, read_timeout=5, retry_total=0
        )
        client.get_service_properties()
        return True
    except (AzureError, ValueError):
        return False


def start_run_azurite() -> Azurite:
    """A fresh Azurite for this run; the previous run's one (if any) is stopped first."""
    STATE_DIR.mkdir(exist_ok=True)
    if AZURITE_PID_FILE.exists():
        previous = json.loads(AZURITE_PID_FILE.read_text())
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(previous["pid"], signal.SIGTERM)
    location = STATE_DIR / f"azurite-{datetime.now(UTC):%Y%m%d%H%M%S}"
    location.mkdir(parents=True)
    # The well-known ports when they are free, so `UseDevelopmentStorage=true` tools open the results.
    azurite = Azurite.start(location=location, prefer_default_ports=True)
    assert azurite.process is not None
    AZURITE_PID_FILE.write_text(
        json.dumps({"pid": azurite.process.pid, "connection_string": azurite.connection_string})
    )
    return azurite


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_environment(connection_string: str, simulator_url: str, run_name: str) -> dict[str, str]:
    """The embedded local default settings for one run. Everything the run keeps is named after
    ``run_name``: the task hub (and so the state tables and containers), the lake container with
    the Delta tables and the attachment files, so a run of the same name finds it all again."""
    lake = f"abfss://lake{run_name}@devstoreaccount1.dfs.core.windows.net"
    return sample_values() | {
        "AzureWebJobsStorage": connection_string,
        "ENVIRONMENT": "development",
        "SIMULATION_MODE": "true",
        "SIMULATOR_URL": simulator_url,
        "TASKHUB_NAME": f"run{run_name}",
        "LAKE_TABLES_URI": os.environ.get("LAKE_TABLES_URI", f"{lake}/Tables"),
        "XACT_ATTACHMENTS_URI": os.environ.get("XACT_ATTACHMENTS_URI", f"{lake}/Files/xact/attachments"),
        "CLAIMX_ATTACHMENTS_URI": os.environ.get(
            "CLAIMX_ATTACHMENTS_URI", f"{lake}/Files/claimx/attachments"
        ),
        "CLAIMX_API_TOKEN": SIMULATED_CLAIMX_TOKEN,
        "CLAIMX_API_RETRY_BACKOFF_SECONDS": "0.05",
    }


async def run_pipeline(options: RunOptions) -> dict[str, Any]:
    from claimsflow.simulator import AttachmentSimulator

    if options.xact_events is not None or options.claimx_events is not None:
        xact = read_event_lines(options.xact_events) if options.xact_events else []
        claimx = read_event_lines(options.claimx_events) if options.claimx_events else []
        world = merge_worlds(None, options.world)
    else:
        seed = secrets.randbits(32)
        xact = generate(options.generate or 0, seed=seed)
        claimx, claimx_world = generate_claimx(options.generate or 0, seed=seed)
        world = merge_worlds(merge_worlds(default_world(), claimx_world), options.world)

    connection_string = os.environ.get("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    started_azurite: Azurite | None = None
    if not storage_answers(connection_string):
        started_azurite = start_run_azurite()
        connection_string = started_azurite.connection_string

    run_name = fresh_run_name() if options.run_name is None else check_run_name(options.run_name)
    metrics.reset()
    started = time.monotonic()
    async with AttachmentSimulator(world) as simulator:
        env = run_environment(connection_string, simulator.url, run_name)
        with environment(env):
            settings = Settings()
            deliveries = [(settings.xact_eventhub_name, xact), (settings.claimx_eventhub_name, claimx)]
            try:
                outcome = await _drive(settings, env, deliveries, options.redeliver, simulator)
                return _report(
                    run_name,
                    settings,
                    outcome,
                    elapsed=time.monotonic() - started,
                    azurite_started=started_azurite is not None,
                )
            finally:
                reset_runtime()  # the next use reads the restored environment


@dataclass(slots=True)
class DriveOutcome:
    completed: int
    failed: int
    flush_runs: int
    invariants: dict[str, Any]


async def _fire(host: LocalHost, function_name: str) -> None:
    outcome = await host.fire_timer(function_name)
    if not outcome.succeeded:
        raise RunError(f"{function_name} failed: {outcome.errors[-1] if outcome.errors else 'unknown'}")


async def _flush_everything(host: LocalHost, max_runs: int = 100) -> int:
    """Fire the real flush timer until staging is empty, as the 15-second schedule would."""
    from shared.runtime import get_runtime

    for run in range(1, max_runs + 1):
        await _fire(host, "lakehouse_flush")
        runtime = get_runtime()
        if not any(runtime.staging.count(spec) for spec in runtime.tables):
            return run
    raise RunError(f"staging still holds rows after {max_runs} flushes")


async def _drive(
    settings: Settings,
    env: dict[str, str],
    deliveries: list[tuple[str, list[str]]],
    redeliver: bool,
    simulator: AttachmentSimulator,
) -> DriveOutcome:
    """Deliver each hub's lines in batches; every line keeps one enqueued time (a redelivered batch
    carries the times the hub gave it first), then run everything to its end and flush."""
    import function_app
    from claimsflow.invariants import check_run
    from local_host import LocalHost, VirtualClock
    from shared.runtime import get_runtime

    storage = StorageFactory(settings)
    for uri in (settings.lake_tables_uri, settings.xact_attachments_uri, settings.claimx_attachments_uri):
        location = LakeLocation.parse(uri)
        with suppress(ResourceExistsError):
            storage.lake_blob_service(location).create_container(location.container)

    batch = host_batch_size()
    clock = VirtualClock(datetime.now(UTC))
    simulator.clock = clock.now  # links the simulator signs follow the app's clock
    install_clock(clock)
    reset_runtime()
    host = LocalHost(
        function_app.app,
        connection_string=settings.storage_connection_string,
        settings_env=env,
        clock=clock,
        app_root=REPO_ROOT,
    )
    await host.start()
    try:
        for hub, bodies in deliveries:
            enqueued = [clock.now() + timedelta(milliseconds=n) for n in range(len(bodies))]
            for offset in range(0, len(bodies), batch):
                chunk = [body.encode("utf-8") for body in bodies[offset : offset + batch]]
                times = enqueued[offset : offset + batch]
                await host.deliver_event_hub(hub, chunk, enqueued_times=times)
                if redeliver:
                    # The restart: this process's memory is gone (dedup cache, in-flight work); a new
                    # host resumes from what storage holds, and the Event Hub delivers the batch again.
                    await host.stop()
                    await get_runtime().aclose()
                    reset_runtime()
                    host = LocalHost(
                        function_app.app,
                        connection_string=settings.storage_connection_string,
                        settings_env=env,
                        clock=clock,
                        app_root=REPO_ROOT,
                    )
                    await host.start()
                    await host.deliver_event_hub(hub, chunk, enqueued_times=times)
                await host.run_until_idle()
        await host.run_until_idle()
        counts = await instance_counts(host)
        flushed = await _flush_everything(host)
        await _fire(host, "lakehouse_compact")
        runtime = get_runtime()
        for spec in runtime.tables:  # every table exists afterwards, empty ones too
            await runtime.pool.run(runtime.lakehouse.writer(spec).table)
        invariants = await check_run(host, get_runtime())
    finally:
        await host.stop()
        await get_runtime().aclose()
        remove_clock(clock)
    return DriveOutcome(
        completed=counts.get("Completed", 0),
        failed=counts.get("Failed", 0),
        flush_runs=flushed,
        invariants=invariants.to_dict(),
    )


async def instance_counts(host: LocalHost) -> Counter[str]:
    """Instances by runtime status, paging through the host's instance store."""
    from local_host import InstanceQuery

    counts: Counter[str] = Counter()
    token: str | None = None
    while True:
        statuses, token = await host.management.query(InstanceQuery(), page_size=500, continuation=token)
        counts.update(status.runtime_status for status in statuses)
        if not token:
            return counts


def event_counts(domain: str) -> dict[str, int]:
    counts = {
        key: int(metrics.EVENTS.total(domain=domain, outcome=outcome))
        for key, outcome in (
            ("accepted", "accepted"),
            ("duplicates", "duplicate"),
            ("skipped", "skipped"),
            ("invalid", "invalid"),
        )
    }
    return {"received": sum(counts.values()), **counts}


def attachment_counts(domain: str) -> dict[str, int]:
    def status(name: str) -> int:
        return int(metrics.ATTACHMENTS.total(domain=domain, status=name))

    return {
        "uploaded": status("uploaded"),
        "rejected": status("rejected"),
        "dead_lettered": status("failed_permanent") + status("exhausted"),
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and max (nearest rank), in seconds rounded to milliseconds; None when empty."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "max": round(ordered[-1], 3)}


def freshness_report() -> dict[str, Any]:
    """Event enqueued → Delta row visible, over every row the run flushed: on the virtual clock
    (what the metric reports; retries wait their real 5 to 40 minutes there) and on the wall clock."""
    return {
        "rows": len(metrics.FRESHNESS.values()),
        "virtual_seconds": percentiles(metrics.FRESHNESS.values()),
        "wall_seconds": percentiles(metrics.WALL_FRESHNESS.values()),
    }


def _report(
    run_name: str, settings: Settings, outcome: DriveOutcome, *, elapsed: float, azurite_started: bool
) -> dict[str, Any]:
    from shared.runtime import LAKE_TABLES, Runtime

    storage = StorageFactory(settings)
    tables_root = LakeLocation.parse(settings.lake_tables_uri)
    files_root = LakeLocation.parse(settings.xact_attachments_uri)
    claimx_root = LakeLocation.parse(settings.claimx_attachments_uri)
    options = storage.delta_storage_options(tables_root)
    tables: dict[str, Any] = {}
    for spec in LAKE_TABLES:
        location = tables_root.child(spec.name)
        try:
            rows = pl.scan_delta(location.uri, storage_options=options).select(pl.len()).collect().item()
        except TableNotFoundError:  # never created: nothing was staged for it
            rows = 0
        tables[spec.name] = {"uri": location.uri, "rows": int(rows)}
    runtime = Runtime(settings)
    try:
        dead_letters = len(runtime.dead_letters.list(limit=1_000_000))
    finally:
        runtime.close()
    domains = ("xact", "claimx")
    return {
        "run_name": run_name,
        "events": {domain: event_counts(domain) for domain in domains},
        "attachments": {domain: attachment_counts(domain) for domain in domains},
        "freshness": freshness_report(),
        "dead_letters": dead_letters,
        "orchestrations": {"completed": outcome.completed, "failed": outcome.failed},
        "flushes": outcome.flush_runs,
        "invariants": outcome.invariants,
        "tables": tables,
        "storage_options": options,
        "files": {
            "xact": {"container": files_root.container, "prefix": files_root.path + "/"},
            "claimx": {"container": claimx_root.container, "prefix": claimx_root.path + "/"},
        },
        "storage_connection_string": settings.storage_connection_string,
        "elapsed_seconds": round(elapsed, 2),
        "azurite_started_for_run": azurite_started,
    }
