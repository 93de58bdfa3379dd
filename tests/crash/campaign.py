"""The crash campaign: ``claimsflow run`` in a real child process, SIGKILLed at named points and at
seeded random instants, then the same command again until it finishes; every table, file and dead
letter must equal an uninterrupted run's.

``python -m tests.crash.campaign [--seeds N] [--events N] [--kills-per-run N]`` runs the full form
and prints kill points x seeds survived; ``tests/crash/test_crash_campaign.py`` runs a short form.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from claimsflow.azurite import REPO_ROOT, Azurite
from shared.lake.reader import read_delta
from shared.runtime import LAKE_TABLES
from shared.storage import AZURITE_BLOB_URL_VARIABLE, parse_connection_string

START = "2026-12-01T09:00:00+00:00"
# Columns that say when this process did something (its virtual time), not what happened: a run
# that was killed and resumed does the same work at later virtual times.
PROCESSING_TIME_COLUMNS = frozenset(
    {"created_at", "created_date", "downloaded_at", "failed_at", "last_enriched_at", "expires_at"}
)
# An entity row's provenance: which event last refreshed it. By the ClaimX decision that a project
# found in the per-process cache stores nothing more, that is whichever event fetched the export,
# which the cache (empty after a restart, and raced by parallel orchestrations) decides; the
# row's data do not depend on it.
PROVENANCE_COLUMNS = frozenset({"trace_id", "updated_at"})
NAMED_POINTS = (
    "ingest-claimed",
    "instance-started",
    "episode-committed",
    "activity-finished",
    "file-put",
    "block-staged",
    "transfer-committed",
    "batch-processed",
    "checkpoint-written",
    "clock-written",
    "delta-committed",
    "compaction-optimized",
)
KILLED = -signal.SIGKILL
HUNG = 124  # the exit code a run gets when it did not end within the campaign's timeout


@dataclass
class Outcome:
    """What a run leaves behind, minus processing times."""

    tables: dict[str, list[tuple[Any, ...]]]
    files: dict[str, str]
    dead_letters: dict[str, tuple[str, str, str, int]]
    report: dict[str, Any] = field(repr=False, default_factory=dict)

    def differences(self, other: Outcome) -> list[str]:
        found = []
        for name in sorted(set(self.tables) | set(other.tables)):
            mine, theirs = self.tables.get(name, []), other.tables.get(name, [])
            if mine != theirs:
                extra, missing = set(theirs) - set(mine), set(mine) - set(theirs)
                found.append(f"{name}: {len(missing)} rows missing, {len(extra)} unexpected")
        if self.files != other.files:
            missing = set(self.files) - set(other.files)
            extra = set(other.files) - set(self.files)
            changed = {p for p in set(self.files) & set(other.files) if self.files[p] != other.files[p]}
            found.append(f"files: {len(missing)} missing, {len(extra)} unexpected, {len(changed)} changed")
        if self.dead_letters != other.dead_letters:
            found.append(f"dead letters: {len(self.dead_letters)} expected, {len(other.dead_letters)} found")
        return found


def read_outcome(report: dict[str, Any], run_name: str) -> Outcome:
    options = report["storage_options"]
    blob_endpoint = urlsplit(parse_connection_string(report["storage_connection_string"])["BlobEndpoint"])
    os.environ[AZURITE_BLOB_URL_VARIABLE] = (
        f"{blob_endpoint.scheme}://{blob_endpoint.netloc}"  # emulator mode
    )
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for name, info in report["tables"].items():
        frame = read_delta(info["uri"], options)
        ignored = PROCESSING_TIME_COLUMNS | (PROVENANCE_COLUMNS if LAKE_TABLES.spec(name).version else set())
        frame = frame.drop([c for c in frame.columns if c in ignored])
        tables[name] = sorted(tuple(row) for row in frame.iter_rows())
    blobs = BlobServiceClient.from_connection_string(report["storage_connection_string"])
    files: dict[str, str] = {}
    for domain, place in report["files"].items():
        container = blobs.get_container_client(place["container"])
        for blob in container.list_blobs(name_starts_with=place["prefix"]):
            digest = hashlib.sha256(container.download_blob(blob.name).readall()).hexdigest()
            files[f"{domain}/{blob.name.removeprefix(place['prefix'])}"] = digest
    letters = TableServiceClient.from_connection_string(report["storage_connection_string"]).get_table_client(
        f"run{run_name}deadletters"
    )
    dead_letters = {
        str(e["id"]): (str(e["stage"]), str(e["reason"]), str(e["category"]), int(e["retry_count"]))
        for e in letters.list_entities()
    }
    return Outcome(tables, files, dead_letters, report)


@dataclass
class Campaign:
    """Runs share one Azurite (the storage they are given, never killed) and one set of inputs."""

    azurite: Azurite
    events: int = 40
    seed: int = 7
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="crash-campaign-")))
    passes: dict[str, int] = field(default_factory=dict)  # how often the reference run passed each point

    def args(self, run_name: str) -> list[str]:
        report = self.workdir / f"{run_name}.json"
        return [
            "run",
            "--generate",
            str(self.events),
            "--seed",
            str(self.seed),
            "--start",
            START,
            "--run-name",
            run_name,
            "--report",
            str(report),
        ]

    def env(self) -> dict[str, str]:
        """1 MB blocks, so the 1.5 MB files of the generated traffic are uploaded in blocks; the
        children's temporary files (what a killed one leaves) inside the campaign's folder."""
        temp = self.workdir / "tmp"
        temp.mkdir(exist_ok=True)
        return {
            **os.environ,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "PYTHONPATH": str(REPO_ROOT),
            "TMPDIR": str(temp),
            "TRANSFER_BLOCK_SIZE_MB": "1",
        }

    def run(
        self,
        run_name: str,
        *,
        kill_at: str | None = None,
        kill_after: float | None = None,
        count_passes: Path | None = None,
        timeout: float = 600,
    ) -> int:
        """One child process; returns its exit code (``KILLED`` when SIGKILL ended it)."""
        command = [sys.executable, "-m", "tests.crash.child"]
        if kill_at:
            command += ["--kill-at", kill_at]
        elif count_passes:
            command += ["--count-passes", str(count_passes)]
        command += ["--", *self.args(run_name)]
        out = (self.workdir / f"{run_name}.log").open("ab")
        child = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            code = child.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            code = child.wait() if kill_after is not None else HUNG
            child.wait()
        out.close()
        return code

    def outcome(self, run_name: str) -> Outcome:
        report = json.loads((self.workdir / f"{run_name}.json").read_text())
        return read_outcome(report, run_name)

    def reference(self) -> tuple[Outcome, float]:
        """The uninterrupted run, which also counts how often it passes each point (``passes``)."""
        started = time.monotonic()
        counts = self.workdir / "passes.json"
        code = self.run("reference", count_passes=counts)
        if code != 0:
            raise AssertionError(f"the uninterrupted run failed ({code}); see {self.workdir}/reference.log")
        self.passes = {point: int(n) for point, n in json.loads(counts.read_text()).items()}
        return self.outcome("reference"), time.monotonic() - started

    def survive(
        self, run_name: str, kills: Sequence[tuple[str | None, float | None]], reference: Outcome
    ) -> list[str]:
        """Kill the run as ``kills`` say (a named point, or a delay in seconds), then run it to its
        end; returns what differs from the reference (nothing: survived)."""
        problems = []
        for point, delay in kills:
            code = self.run(run_name, kill_at=point, kill_after=delay)
            if code == HUNG:
                problems.append(f"a run with kill point {point} hung; see {self.workdir}/{run_name}.log")
                continue
            if code not in (KILLED, 0):
                problems.append(f"a killed run's process ended {code}, not by SIGKILL")
            if code == 0:  # it finished before the kill: the rest of the plan has nothing to do
                if point is not None:
                    problems.append(f"{point} was never reached")
                break
        code = self.run(run_name)
        if code != 0:
            return [*problems, f"the resumed run exited {code}; see {self.workdir}/{run_name}.log"]
        outcome = self.outcome(run_name)
        invariants = outcome.report["invariants"]
        if not invariants["ok"]:
            problems.append(f"invariants violated: {invariants['violations'][:3]}")
        return problems + reference.differences(outcome)


@contextmanager
def campaign_azurite() -> Iterator[Azurite]:
    azurite = Azurite.start()
    try:
        yield azurite
    finally:
        azurite.stop()


def spread(passes: int, count: int) -> list[int]:
    """``count`` passes of a point spread from its first to its last (fewer when it has fewer)."""
    if passes < 1 or count < 1:
        return []
    if count == 1:
        return [1]
    return sorted({1 + round(k * (passes - 1) / (count - 1)) for k in range(count)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seeds", type=int, default=3, help="kills per point (first to last pass), and random runs"
    )
    parser.add_argument("--events", type=int, default=60, help="generated events per hub")
    parser.add_argument("--kills-per-run", type=int, default=3, help="random kills before a run may finish")
    args = parser.parse_args(argv)
    survived = runs = 0
    failures: list[str] = []

    def report(label: str, problems: list[str]) -> None:
        nonlocal survived, runs
        runs += 1
        survived += not problems
        failures.extend(f"{label}: {problem}" for problem in problems)
        print(f"{label}: {'; '.join(problems) or 'survived'}", flush=True)

    with campaign_azurite() as azurite:
        campaign = Campaign(azurite, events=args.events)
        reference, duration = campaign.reference()
        rows = sum(map(len, reference.tables.values()))
        print(
            f"reference run: {duration:.0f} s, {rows} rows, {len(reference.files)} files, "
            f"{len(reference.dead_letters)} dead letters"
        )
        for point in NAMED_POINTS:
            if not campaign.passes.get(point):
                report(point, ["the uninterrupted run never passes it"])
            for n in spread(campaign.passes.get(point, 0), args.seeds):
                name = f"{point.replace('-', '')}{n}"[:32]
                report(f"{point}:{n}", campaign.survive(name, [(f"{point}:{n}", None)], reference))
        for seed in range(1, args.seeds + 1):
            rng = random.Random(seed)
            kills = [(None, rng.uniform(1.0, duration)) for _ in range(args.kills_per_run)]
            delays = ", ".join(f"{delay:.1f} s" for _, delay in kills)
            report(
                f"random seed {seed} (kills after {delays})",
                campaign.survive(f"random{seed}", kills, reference),
            )
    print(
        f"\n{survived} of {runs} runs survived: {len(NAMED_POINTS)} kill points x up to {args.seeds} passes "
        f"each (first to last), and {args.seeds} seeds of {args.kills_per_run} kills at random instants"
    )
    for failure in failures:
        print(f"  FAILED {failure}")
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
