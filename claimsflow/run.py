"""``claimsflow run``: the whole pipeline (XACT and ClaimX) on a laptop, start to settled.

Storage is the account in ``AzureWebJobsStorage`` when it answers, else the Azurite an earlier run
left running, else an Azurite started for the run (and left running, so the report's connection
string and storage options open the results). The local host runs ``function_app.app``; the
simulator answers for the allowlisted attachment hosts and the ClaimX API. Each hub's lines form
one Event Hub partition, each line with a fixed enqueued time, delivered from the checkpoint on in
batches of ``maxEventBatchSize``.

A run is resumable: everything it keeps is named after its run name, and what it started with
is recorded in the state account (:mod:`claimsflow.runs`). The same command with the same name on
the same storage, after the process was killed at any instant, delivers what was not checkpointed,
continues the orchestrations from their histories, fires the timers that are due and flushes what
is staged, ending with the tables and files an uninterrupted run gives. With ``redeliver`` each
batch comes again after a restart (fresh memory, pending work resumed from storage).
"""

from __future__ import annotations

import asyncio
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

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient
from deltalake.exceptions import TableNotFoundError

from claimsflow.azurite import REPO_ROOT, Azurite
from claimsflow.claimx_samples import generate as generate_claimx
from claimsflow.local_settings import sample_values
from claimsflow.runs import RunRecord, RunStore, fingerprint, new_start
from claimsflow.samples import default_world, generate
from shared import metrics
from shared.config import Settings
from shared.lake.reader import count_rows
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
    seed: int | None = None
    start: datetime | None = None


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


def run_storage() -> tuple[str, bool]:
    """The run's storage (connection string, and whether this run started it): the account in
    ``AzureWebJobsStorage`` when it answers, else the Azurite an earlier run left running (which
    holds that run's state, so a killed run resumes), else a new one."""
    connection_string = os.environ.get("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    if storage_answers(connection_string):
        return connection_string, False
    if AZURITE_PID_FILE.exists():
        recorded = str(json.loads(AZURITE_PID_FILE.read_text())["connection_string"])
        if storage_answers(recorded):
            return recorded, False
    return start_run_azurite().connection_string, True


def start_run_azurite() -> Azurite:
    """A new Azurite for runs; a recorded one that no longer answers is stopped first."""
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
    """The embedded local default settings for one run: the sample's, where the caller's environment
    does not set them (``TRANSFER_BLOCK_SIZE_MB=1 claimsflow run ...``), and the ones the run owns.
    Everything the run keeps is named after ``run_name``: the task hub (and so the state tables and
    containers), the lake container with the Delta tables and the attachment files, so a run of the
    same name finds it all again."""
    lake = f"abfss://lake{run_name}@devstoreaccount1.dfs.core.windows.net"
    defaults = sample_values() | {
        "LAKE_TABLES_URI": f"{lake}/Tables",
        "XACT_ATTACHMENTS_URI": f"{lake}/Files/xact/attachments",
        "CLAIMX_ATTACHMENTS_URI": f"{lake}/Files/claimx/attachments",
    }
    return (
        defaults
        | {key: os.environ[key] for key in defaults if key in os.environ}
        | {
            "AzureWebJobsStorage": connection_string,
            "ENVIRONMENT": "development",
            "SIMULATION_MODE": "true",
            "SIMULATOR_URL": simulator_url,
            "TASKHUB_NAME": f"run{run_name}",
            # Event Hub checkpoints are kept per namespace, hub and consumer group: one namespace a run.
            "EventHubConnection": defaults["EventHubConnection"].replace(
                "sb://localhost", f"sb://run{run_name}.localhost"
            ),
            "CLAIMX_API_TOKEN": SIMULATED_CLAIMX_TOKEN,
            "CLAIMX_API_RETRY_BACKOFF_SECONDS": "0.05",
        }
    )


async def run_pipeline(options: RunOptions) -> dict[str, Any]:
    from claimsflow.simulator import AttachmentSimulator

    connection_string, started_azurite = run_storage()
    run_name = fresh_run_name() if options.run_name is None else check_run_name(options.run_name)
    runs = RunStore(connection_string)
    record = runs.record(run_name)
    if record is None:
        default_start, default_seed = new_start()
        started_at = options.start or default_start
        seed = default_seed if options.seed is None else options.seed
    else:
        started_at, seed = record.started_at, record.seed
        if (options.seed is not None and options.seed != seed) or (
            options.start and options.start != started_at
        ):
            raise RunError(
                f"run {run_name!r} was started with --seed {seed} --start {started_at.isoformat()}; "
                "give the same options to resume it, or another --run-name"
            )
    if options.xact_events is not None or options.claimx_events is not None:
        xact = read_event_lines(options.xact_events) if options.xact_events else []
        claimx = read_event_lines(options.claimx_events) if options.claimx_events else []
        world = merge_worlds(None, options.world)
    else:
        xact = generate(options.generate or 0, seed=seed, now=started_at)
        claimx, claimx_world = generate_claimx(options.generate or 0, seed=seed, now=started_at)
        world = merge_worlds(merge_worlds(default_world(), claimx_world), options.world)
    inputs = fingerprint([("xact", xact), ("claimx", claimx)], world)
    if record is None:
        runs.save_record(RunRecord(run_name, started_at, seed, inputs))
    elif record.inputs_sha256 != inputs:
        raise RunError(
            f"run {run_name!r} was started with other events or another world; "
            "give the same options to resume it, or another --run-name"
        )

    metrics.reset()
    started = time.monotonic()

    async def keep_fault_usage(usage: list[int]) -> None:
        await runs.save_fault_usage(run_name, usage)

    simulator = AttachmentSimulator(
        world, fault_usage=runs.fault_usage(run_name), on_faults_used=keep_fault_usage
    )
    async with simulator:
        env = run_environment(connection_string, simulator.url, run_name)
        with environment(env):
            settings = Settings()
            deliveries = [(settings.xact_eventhub_name, xact), (settings.claimx_eventhub_name, claimx)]
            try:
                outcome = await _drive(settings, env, deliveries, options.redeliver, simulator, started_at)
                return _report(
                    run_name,
                    settings,
                    outcome,
                    elapsed=time.monotonic() - started,
                    azurite_started=started_azurite,
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


async def _flush_everything(host: LocalHost, patience: float = 120.0) -> int:
    """Fire the real flush timer until staging is empty, as the 15-second schedule would. A flush
    skips a table whose lease another holder has (a flush killed in an earlier run holds it until it
    expires, in real time), so while staging does not shrink the next tick waits a second."""
    from shared.runtime import get_runtime

    deadline = time.monotonic() + patience
    staged: int | None = None
    runs = 0
    while True:
        await _fire(host, "lakehouse_flush")
        runs += 1
        runtime = get_runtime()
        left = sum(runtime.staging.count(spec) for spec in runtime.tables)
        if left == 0:
            return runs
        if time.monotonic() > deadline:
            raise RunError(f"staging still holds {left} rows after {runs} flushes and {patience:.0f} s")
        if staged is not None and left >= staged:
            await asyncio.sleep(1.0)
        staged = left


async def _drive(
    settings: Settings,
    env: dict[str, str],
    deliveries: list[tuple[str, list[str]]],
    redeliver: bool,
    simulator: AttachmentSimulator,
    started_at: datetime,
) -> DriveOutcome:
    """Offer each hub's lines as one partition (every line with a fixed enqueued time) and let the
    host deliver them from the checkpoint on, then run everything to its end and flush."""
    import function_app
    from claimsflow.invariants import check_run
    from local_host import EventData, LocalHost, VirtualClock
    from shared.runtime import get_runtime

    storage = StorageFactory(settings)
    for uri in (settings.lake_tables_uri, settings.xact_attachments_uri, settings.claimx_attachments_uri):
        location = LakeLocation.parse(uri)
        with suppress(ResourceExistsError):
            storage.lake_blob_service(location).create_container(location.container)

    clock = VirtualClock(started_at)  # a resumed run's host moves it on to the latest time stored
    simulator.clock = clock.now  # links the simulator signs follow the app's clock
    reset_runtime()

    def new_host() -> LocalHost:
        return LocalHost(
            function_app.app,
            connection_string=settings.storage_connection_string,
            settings_env=env,
            clock=clock,
        )

    host = new_host()
    await host.start()
    try:
        for hub, bodies in deliveries:
            events = [
                EventData(body, enqueued_time=started_at + timedelta(milliseconds=n))
                for n, body in enumerate(bodies)
            ]
            if not redeliver:
                await host.deliver_partition(hub, "0", events)
                await host.run_until_idle()
                continue
            batch = host_batch_size()  # --redeliver: every batch twice, around a restart
            for offset in range(0, len(events), batch):
                chunk = bodies[offset : offset + batch]
                times = [started_at + timedelta(milliseconds=n) for n in range(offset, offset + len(chunk))]
                await host.deliver_event_hub(hub, chunk, enqueued_times=times)
                # The restart: this process's memory is gone (dedup cache, in-flight work); a new
                # host resumes from what storage holds, and the Event Hub delivers the batch again.
                await host.stop()
                await get_runtime().aclose()
                reset_runtime()
                host = new_host()
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
            rows = count_rows(location.uri, options)
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
