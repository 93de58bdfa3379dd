"""The ops commands on a real local run: `claimsflow run --generate 300` with the sample faults on the
session Azurite, then every command as a user types it (`--run-name`), the `--json` output checked
against what storage holds. One run serves the module; the tests that change state come last."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import function_app
from claimsflow.azurite import Azurite
from claimsflow.cli import app
from claimsflow.ops.target import APP_KEY_VARIABLE, NO_SIMULATOR
from claimsflow.run import run_environment
from local_host import LocalHost, VirtualClock
from shared.config import Settings
from shared.runtime import Runtime, reset_runtime

pytestmark = pytest.mark.e2e

BROKEN = 120  # orchestrations that fail: more than one page of the management API (100)


class LocalRunUnderTest:
    def __init__(self, azurite: Azurite, run_name: str, report: dict[str, Any]) -> None:
        self.connection_string = azurite.connection_string
        self.run_name = run_name
        self.report = report

    def env(self) -> dict[str, str]:
        return run_environment(self.connection_string, NO_SIMULATOR, self.run_name)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Any:
        wide = {"COLUMNS": "200"} | (env or {})  # tables for people fold at the terminal's width
        result = CliRunner().invoke(app, [*args, "--run-name", self.run_name], env=wide)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def runtime(self) -> Runtime:
        return Runtime(Settings(**self.env()))  # type: ignore[arg-type]


async def start_broken_orchestrations(connection_string: str, env: dict[str, str]) -> list[str]:
    """A deployment bug: attachment orchestrations started with an input they cannot read fail."""
    host = LocalHost(
        function_app.app,
        connection_string=connection_string,
        settings_env=env,
        clock=VirtualClock(datetime.now(UTC)),
    )
    await host.start()
    try:
        ids = [
            await host.start_orchestration(
                "xact_attachment_orchestrator", {"unexpected": n}, instance_id=f"broken-{n:03d}"
            )
            for n in range(BROKEN)
        ]
        await host.run_until_idle()
        return ids
    finally:
        await host.stop()


@pytest.fixture(scope="module")
def local_run(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRunUnderTest]:
    saved = os.environ.get("AzureWebJobsStorage")
    os.environ["AzureWebJobsStorage"] = azurite.connection_string
    run_name = f"ops{uuid.uuid4().hex[:8]}"
    report_path = tmp_path_factory.mktemp("ops") / "report.json"
    try:
        result = CliRunner().invoke(
            app, ["run", "--generate", "300", "--run-name", run_name, "--report", str(report_path)]
        )
        assert result.exit_code == 0, result.output
        under_test = LocalRunUnderTest(azurite, run_name, json.loads(report_path.read_text()))
        asyncio.run(start_broken_orchestrations(azurite.connection_string, under_test.env()))
        yield under_test
    finally:
        reset_runtime()
        if saved is None:
            os.environ.pop("AzureWebJobsStorage", None)
        else:
            os.environ["AzureWebJobsStorage"] = saved


def test_every_failed_instance_is_listed_past_the_first_page(local_run: LocalRunUnderTest) -> None:
    failed = local_run.json("instances", "list", "--status", "failed")
    assert sorted(i["instance_id"] for i in failed) == [f"broken-{n:03d}" for n in range(BROKEN)]
    assert local_run.report["orchestrations"]["failed"] == 0  # the run itself failed nothing
    first = failed[0]
    assert set(first) >= {
        "instance_id",
        "name",
        "runtime_status",
        "created_at",
        "last_updated_at",
        "custom_status",
    }
    assert first["runtime_status"] == "Failed" and first["name"] == "xact_attachment_orchestrator"


def test_every_instance_is_listed(local_run: LocalRunUnderTest) -> None:
    everything = local_run.json("instances", "list")
    orchestrations = local_run.report["orchestrations"]
    assert len(everything) == orchestrations["completed"] + orchestrations["failed"] + BROKEN
    assert len(everything) > 100
    assert len({i["instance_id"] for i in everything}) == len(everything)
    prefix = local_run.json("instances", "list", "--prefix", "broken-01")
    assert sorted(i["instance_id"] for i in prefix) == [f"broken-{n:03d}" for n in range(10, 20)]


def test_every_dead_letter_is_listed(local_run: LocalRunUnderTest) -> None:
    listed = local_run.json("dlq", "list")
    runtime = local_run.runtime()
    try:
        stored = {letter.id: letter for letter in runtime.dead_letters.iter()}
    finally:
        runtime.close()
    assert len(listed) == local_run.report["dead_letters"] == len(stored)
    assert {d["id"] for d in listed} == set(stored)
    for item in listed:
        assert set(item) >= {
            "id",
            "domain",
            "stage",
            "reason",
            "category",
            "trace_id",
            "media_id",
            "retry_count",
            "status",
        }
        assert item["retry_count"] == stored[item["id"]].retry_count
    exhausted = local_run.json("dlq", "list", "--stage", "xact_transfer", "--reason", "exhausted")
    assert exhausted and all(d["reason"] == "exhausted" and d["retry_count"] == 4 for d in exhausted)
    assert {"xact_ingest", "xact_transfer"} <= {d["stage"] for d in listed}


def exhausted_letter(local_run: LocalRunUnderTest) -> dict[str, Any]:
    letters = local_run.json(
        "dlq", "list", "--stage", "xact_transfer", "--reason", "exhausted", "--status", "open"
    )
    return sorted(letters, key=lambda d: d["id"])[0]


def test_history_of_an_exhausted_attachment_shows_the_four_retry_timers(local_run: LocalRunUnderTest) -> None:
    letter = exhausted_letter(local_run)
    history = local_run.json("instances", "history", letter["instance_id"])
    steps = history["timeline"]
    attempts = [s for s in steps if s["kind"] == "activity" and s["name"] == "xact_transfer"]
    assert [(s["attempt"], s["outcome"], s["category"]) for s in attempts] == [
        (n, "failed", "transient") for n in range(1, 6)
    ]
    timers = [s for s in steps if s["kind"] == "retry timer"]
    assert [t["wait_seconds"] for t in timers] == [300, 600, 1200, 2400]
    fired = [s for s in steps if s["kind"] == "timer fired"]
    assert [f["fire_at"] for f in fired] == [t["fire_at"] for t in timers]
    assert [f["at"][:19] for f in fired] == [t["fire_at"][:19] for t in timers]  # fired when due
    assert steps[-1] == {"at": steps[-1]["at"], "kind": "ended", "outcome": "Completed"}

    people = local_run.cli("instances", "history", letter["instance_id"]).stdout
    assert "retry timer" in people and "wait 40 min" in people

    lines = local_run.cli("instances", "history", letter["instance_id"], "--jsonl").stdout.splitlines()
    assert sum(json.loads(line)["EventType"] == "TimerFired" for line in lines) == 4


def test_tables_show_filters_rows(local_run: LocalRunUnderTest) -> None:
    rows = local_run.json(
        "tables", "show", "xact_attachments_failed", "--where", "status = 'exhausted'", "--limit", "500"
    )
    exhausted = local_run.json("dlq", "list", "--reason", "exhausted")
    assert sorted(r["media_id"] for r in rows) == sorted(d["media_id"] for d in exhausted)
    assert len(local_run.json("tables", "show", "xact_events", "--limit", "5")) == 5


def test_the_app_url_target_reads_the_same_instances(local_run: LocalRunUnderTest) -> None:
    """The deployed-app path (management API over HTTP with a key) against a local host's webhook."""

    async def listing(key: str) -> tuple[Any, Any]:
        host = LocalHost(
            function_app.app,
            connection_string=local_run.connection_string,
            settings_env=local_run.env(),
            clock=VirtualClock(datetime.now(UTC)),
            host_keys=["the-master-key"],
        )
        await host.start()
        try:
            origin = host.base_url.split("/runtime/")[0]
            env = local_run.env() | {APP_KEY_VARIABLE: key}
            args = ["instances", "list", "--status", "failed", "--app-url", origin, "--json"]
            return await asyncio.to_thread(CliRunner().invoke, app, args, env=env), origin
        finally:
            await host.stop()

    result, _ = asyncio.run(listing("the-master-key"))
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == BROKEN
    refused, _ = asyncio.run(listing("a-wrong-key"))
    assert refused.exit_code == 2
    assert "401" in refused.output


def test_trace_tells_a_claimx_story_from_a_media_id_or_a_dead_letter(local_run: LocalRunUnderTest) -> None:
    [uploaded] = local_run.json("tables", "show", "claimx_attachments", "--limit", "1")
    story = local_run.json("trace", str(uploaded["media_id"]))
    assert (story["domain"], story["trace_id"]) == ("claimx", uploaded["trace_id"])
    assert f"claimx-{story['trace_id']}" in [i["instance_id"] for i in story["instances"]]
    assert [r["trace_id"] for r in story["rows"]["claimx_events"]["delta"]] == [story["trace_id"]]
    assert str(uploaded["media_id"]) in {
        str(r["media_id"]) for r in story["rows"]["claimx_attachments"]["delta"]
    }
    assert story["files"] and all(f["exists"] and f["size"] == uploaded["bytes"] for f in story["files"])
    assert story["dedup_latch"]["state"] == "done"

    letters = [d for d in local_run.json("dlq", "list", "--domain", "claimx") if d["trace_id"]]
    assert letters, "the generated ClaimX traffic dead-letters some events"
    from_letter = local_run.json("trace", letters[0]["id"])
    assert (from_letter["domain"], from_letter["trace_id"]) == ("claimx", letters[0]["trace_id"])
    assert letters[0]["id"] in [d["id"] for d in from_letter["dead_letters"]]


def test_replay_after_the_fault_is_removed_then_trace_tells_the_story(
    local_run: LocalRunUnderTest, tmp_path: Path
) -> None:
    letter = exhausted_letter(local_run)
    [result] = local_run.json("dlq", "replay", letter["id"])  # no --world: the source answers now
    assert result["outcome"] == "started"
    assert result["instance_id"] == f"{letter['instance_id']}:replay1"
    assert result["runtime_status"] == "Completed"

    [row] = local_run.json(
        "tables", "show", "xact_attachments", "--where", f"media_id = '{letter['media_id']}'"
    )
    assert row["bytes_downloaded"] > 0
    [again] = local_run.json("dlq", "replay", letter["id"])
    assert again["outcome"] == "already_replayed"

    story = local_run.json("trace", letter["trace_id"])
    assert story["dedup_latch"]["state"] == "done"
    ids = [i["instance_id"] for i in story["instances"]]
    assert f"xact-{story['event_id']}" in ids and result["instance_id"] in ids
    assert letter["instance_id"] in ids
    [dead] = [d for d in story["dead_letters"] if d["id"] == letter["id"]]
    assert dead["status"] == "replayed"
    uploaded = {r["media_id"] for r in story["rows"]["xact_attachments"]["delta"]}
    assert letter["media_id"] in uploaded
    assert [r["trace_id"] for r in story["rows"]["xact_events"]["delta"]] == [letter["trace_id"]]
    assert story["files"] and all(f["exists"] and f["size"] > 0 for f in story["files"])
    assert len(story["files"]) == len(uploaded)
    # any id of the event leads to the same story
    assert local_run.json("trace", letter["media_id"])["trace_id"] == letter["trace_id"]
    assert local_run.json("trace", story["event_id"])["trace_id"] == letter["trace_id"]

    people = local_run.cli("trace", letter["trace_id"]).stdout
    assert letter["trace_id"] in people and "replayed" in people


def test_restart_terminate_and_purge(local_run: LocalRunUnderTest) -> None:
    [restarted] = local_run.json("instances", "restart", "broken-000")
    assert restarted["status"] == 202 and restarted["new_instance_id"] not in (None, "broken-000")
    [stopped] = local_run.json("instances", "terminate", restarted["new_instance_id"], "--reason", "test")
    assert stopped["status"] == 202
    assert local_run.json("instances", "show", restarted["new_instance_id"])["runtime_status"] == "Terminated"

    assert local_run.json("instances", "purge", "broken-001") == [{"instance_id": "broken-001", "purged": 1}]
    purged = local_run.json(
        "instances", "purge", "--since", "1d", "--status", "failed", "--slice-hours", "2", "--yes"
    )
    assert purged["instances_deleted"] == BROKEN - 1
    assert local_run.json("instances", "list", "--status", "failed") == []
    assert (
        local_run.json("instances", "list", "--status", "terminated")[0]["instance_id"]
        == restarted["new_instance_id"]
    )
