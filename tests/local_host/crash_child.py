"""A local-host process for the crash tests, run as ``python -m tests.local_host.crash_child``.

It runs one scenario against the given storage and task hub; ``LOCAL_HOST_KILL_AT`` (see
``local_host.killpoints``) makes it SIGKILL itself at a named point. Scenarios:

* ``orchestrations``: chains, fan-outs, sub-orchestrations and timers, run until idle.
* ``eventhub``: the ``ledger`` hub's partition 0 offered whole (``--events N``), in batches of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from local_host import LocalHost, VirtualClock
from tests.local_host import local_host_apps as apps

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
ORCHESTRATIONS = {"chain": None, "fan_out": ["a", "b", "c"], "parent": None, "sleeper": 40}


def orchestration_ids(copies: int, only: str | None = None) -> dict[str, tuple[str, object]]:
    """Instance id -> (orchestrator, input) of the ``orchestrations`` scenario."""
    return {
        f"{name}-{n}": (name, value)
        for n in range(copies)
        for name, value in ORCHESTRATIONS.items()
        if only in (None, name)
    }


def event_hub_settings(namespace: str) -> dict[str, str]:
    return {"CLAIMS_HUB": "claims", "EventHubConnection": f"Endpoint=sb://{namespace}/"}


def event_source(count: int) -> list[str]:
    return [json.dumps({"n": n}) for n in range(count)]


async def run(args: argparse.Namespace) -> None:
    if args.scenario == "orchestrations":
        host = LocalHost(
            apps.app,
            connection_string=args.connection,
            settings_env={},
            clock=VirtualClock(START),
            task_hub=args.hub,
        )
        await host.start()
        for instance_id, (name, value) in orchestration_ids(args.copies, args.only).items():
            await host.start_orchestration(name, value, instance_id=instance_id)
        await host.run_until_idle()
    else:
        root: Path | None = args.app_root
        if root is None:
            raise SystemExit("the eventhub scenario needs --app-root")
        root.mkdir(parents=True, exist_ok=True)
        (root / "host.json").write_text(json.dumps({"extensions": {"eventHubs": {"maxEventBatchSize": 3}}}))
        host = LocalHost(
            apps.eh_app,
            connection_string=args.connection,
            settings_env=event_hub_settings(args.namespace),
            clock=VirtualClock(START),
            task_hub=args.hub,
            app_root=root,
        )
        await host.start()
        await host.deliver_partition("ledger", "0", event_source(args.events))
    await host.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["orchestrations", "eventhub"])
    parser.add_argument("--connection", required=True)
    parser.add_argument("--hub", required=True)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--only", choices=sorted(ORCHESTRATIONS))
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--namespace", default="localhost")
    parser.add_argument("--app-root", type=Path, help="where the eventhub scenario writes its host.json")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
