"""Durable work items per attachment: the real app on the local host, counted from the histories.

A work item is what the Durable extension dispatches: an orchestrator episode (one
``OrchestratorStarted`` in a history) or an activity execution (one ``TaskScheduled``). Per
attachment: its sub-orchestration's episodes and activities, plus the parent's episodes that took
in a child's completion (the fan-in). Per event, apart: the parent's own start and enrichment.
Target: at most 4 work items per uploaded attachment.

Run: .venv/bin/python bench/bench_work_items.py [events] [attachments per event]
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from claimsflow.azurite import Azurite
from claimsflow.run import environment, run_environment
from claimsflow.simulator import AttachmentSimulator
from local_host import EventData, EventType, LocalHost, VirtualClock
from shared.ids import attachment_instance_id, event_id, media_id, xact_instance_id
from shared.runtime import get_runtime, reset_runtime

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
S3 = "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"


def body(trace_id: str, urls: list[str]) -> str:
    data = {"assignmentId": "A1", "attachments": urls}
    return json.dumps(
        {
            "type": "verisk.claims.property.xn.documentsReceived",
            "version": 1,
            "utcDateTime": "2026-12-01T08:00:00Z",
            "traceId": trace_id,
            "data": json.dumps(data),
        }
    )


def counts(history: list[dict[str, object]]) -> tuple[int, int]:
    episodes = sum(1 for e in history if e["EventType"] == EventType.OrchestratorStarted)
    activities = sum(1 for e in history if e["EventType"] == EventType.TaskScheduled)
    return episodes, activities


async def measure(azurite: Azurite, events: int, per_event: int) -> None:
    import function_app

    stamp = START.strftime("%Y%m%dT%H%M%SZ")
    traffic = {
        f"trace-{n}": [
            f"{S3}/exports/A1/e{n}/f{k}.pdf?X-Amz-Date={stamp}&X-Amz-Expires=604800&size=5000"
            for k in range(per_event)
        ]
        for n in range(events)
    }
    async with AttachmentSimulator() as simulator:
        env = run_environment(azurite.connection_string, simulator.url, "workitems")
        with environment(env):
            reset_runtime()
            host = LocalHost(
                function_app.app,
                connection_string=azurite.connection_string,
                settings_env=env,
                clock=VirtualClock(START),
            )
            await host.start()
            files = get_runtime().settings.xact_attachments_uri
            container = files.split("//", 1)[1].split("@", 1)[0]
            get_runtime().storage.blob_service().create_container(container)
            await host.deliver_partition(
                "xactanalysis", "0", [EventData(body(t, u)) for t, u in traffic.items()]
            )
            await host.run_until_idle()
            parent_items = fan_in = child_items = attachments = 0
            for trace_id, urls in traffic.items():
                parent = xact_instance_id(event_id(trace_id))
                episodes, activities = counts(await host.get_history(parent))
                parent_items += episodes + activities
                fan_in += episodes - 2  # the start and the enrich result; the rest took in children
                for url in urls:
                    child = attachment_instance_id(parent, media_id(trace_id, url))
                    status = await host.get_status(child)
                    assert status is not None and '"uploaded"' in str(status.output), status
                    child_episodes, child_activities = counts(await host.get_history(child))
                    child_items += child_episodes + child_activities
                    attachments += 1
            await host.stop()
            await get_runtime().aclose()
            reset_runtime()
    per_attachment = (child_items + fan_in) / attachments
    print(f"{events} events x {per_event} attachments, all uploaded")
    print(
        f"work items per attachment: {per_attachment:.2f} "
        f"(sub-orchestration {child_items / attachments:.2f}, "
        f"parent fan-in {fan_in / attachments:.2f}); target <= 4"
    )
    print(
        f"per event besides: {(parent_items - fan_in) / events:.2f} (the parent's start and its enrichment)"
    )


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    per_event = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    azurite = Azurite.start()
    try:
        asyncio.run(measure(azurite, events, per_event))
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
