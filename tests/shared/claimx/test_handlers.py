"""Handlers against the simulated ClaimX API: media batching (ids or the whole list), the project
cache, minimal rows on a cache hit, task templates and links, video selection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from claimsflow.claimx_samples import claimx_body, media_item, project_export, task_assignment, video_report
from claimsflow.simulator import AttachmentSimulator
from shared.claimx.api import ClaimXApi
from shared.claimx.circuit import CircuitBreaker
from shared.claimx.events import ClaimXEvent, parse_claimx_body
from shared.claimx.handlers import Enrichment, Handlers, MediaLookup, ProjectCache
from shared.clock import install_clock, remove_clock
from shared.config import Settings
from shared.errors import ClassifiedError, ErrorCategory
from shared.transfer.urls import UrlPolicy


class HandClock:
    """A clock the test moves by hand."""

    def __init__(self, now: list[datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now[0]


pytestmark = pytest.mark.unit

PID = 5395115
AT = "2026-02-14T15:04:05Z"


def event(event_type: str, pid: int = PID, **ids: Any) -> dict[str, Any]:
    parsed = parse_claimx_body(claimx_body(event_type, pid, AT, **ids), enqueued_at=datetime.now(UTC))
    assert isinstance(parsed, ClaimXEvent)
    return parsed.to_dict()


def default_world() -> dict[str, Any]:
    return {
        "claimx": {
            "projects": {str(PID): project_export(PID)},
            "media": {str(PID): [media_item(n, name=f"m{n}.jpg") for n in range(1, 11)]},
            "tasks": {"41": task_assignment(41, PID), "42": {**task_assignment(42, PID), "customTask": {}}},
            "video": {str(PID): video_report(PID, 91, others=2)},
        }
    }


MakeHandlers = Callable[..., Awaitable[tuple[Handlers, AttachmentSimulator]]]


@pytest.fixture
async def make_handlers() -> AsyncIterator[MakeHandlers]:
    made: list[tuple[Handlers, AttachmentSimulator]] = []

    async def make(
        world: dict[str, Any] | None = None, cache_ttl: int = 900
    ) -> tuple[Handlers, AttachmentSimulator]:
        sim = AttachmentSimulator(world or default_world())
        await sim.start()
        settings = Settings(
            AzureWebJobsStorage="UseDevelopmentStorage=true",
            ENVIRONMENT="test",
            SIMULATION_MODE="true",
            SIMULATOR_URL=sim.url,
        )
        api = ClaimXApi.open(settings, CircuitBreaker("claimx_api"))
        handlers = Handlers(api, ProjectCache(cache_ttl), MediaLookup(api), UrlPolicy.from_settings(settings))
        made.append((handlers, sim))
        return handlers, sim

    yield make
    for handlers, sim in made:
        await handlers.api.close()
        await sim.stop()


def api_calls(sim: AttachmentSimulator) -> list[str]:
    return [f"{r.path}?{r.query}" if r.query else r.path for r in sim.requests]


async def test_few_media_events_ask_by_id_many_fetch_the_whole_list(make_handlers: MakeHandlers) -> None:
    handlers, sim = await make_handlers(cache_ttl=0)
    few = await asyncio.gather(*(handlers.enrich(event("PROJECT_FILE_ADDED", mediaId=n)) for n in (3, 1, 2)))
    media_calls = [c for c in api_calls(sim) if c.split("?")[0].endswith("/media")]
    assert media_calls == [f"/service/cxedirest/export/project/{PID}/media?mediaIds=1,2,3"]
    assert [r.rows["claimx_attachment_metadata"][0]["media_id"] for r in few] == ["3", "1", "2"]

    sim.requests.clear()
    many = await asyncio.gather(
        *(handlers.enrich(event("PROJECT_FILE_ADDED", mediaId=n)) for n in range(1, 8))
    )
    media_calls = [c for c in api_calls(sim) if c.split("?")[0].endswith("/media")]
    assert media_calls == [f"/service/cxedirest/export/project/{PID}/media"]
    assert sorted(r.downloads[0]["media_id"] for r in many) == [str(n) for n in range(1, 8)]
    assert {r.downloads[0]["blob_path"] for r in many} == {f"{PID}/media/{n}_m{n}.jpg" for n in range(1, 8)}


async def test_a_media_id_missing_from_the_answer_is_permanent(make_handlers: MakeHandlers) -> None:
    handlers, _ = await make_handlers()
    with pytest.raises(ClassifiedError) as error:
        await handlers.enrich(event("PROJECT_FILE_ADDED", mediaId=99))
    assert error.value.failure.category is ErrorCategory.PERMANENT


async def test_concurrent_events_of_one_project_share_one_export_call(make_handlers: MakeHandlers) -> None:
    handlers, sim = await make_handlers()
    results = await asyncio.gather(*(handlers.enrich(event("PROJECT_CREATED")) for _ in range(4)))
    assert api_calls(sim).count(f"/service/cxedirest/export/project/{PID}") == 1
    assert all(len(r.rows["claimx_projects"]) == 1 for r in results)


async def test_a_cache_hit_stores_nothing_more_but_the_events_own_values(make_handlers: MakeHandlers) -> None:
    handlers, sim = await make_handlers()
    first = await handlers.enrich(event("PROJECT_CREATED"))
    assert first.fetched_project == str(PID)
    handlers.projects.remember(str(PID))  # the activity does this once the rows are staged
    sim.requests.clear()
    created = await handlers.enrich(event("PROJECT_CREATED"))
    mfn = await handlers.enrich(event("PROJECT_MFN_ADDED", masterFileName="MFN-2"))
    joined = await handlers.enrich(event("POLICYHOLDER_JOINED"))
    assert sim.requests == []
    assert created.rows == {}
    at = datetime(2026, 2, 14, 15, 4, 5, tzinfo=UTC)
    assert mfn.rows["claimx_projects"] == [
        {
            "project_id": str(PID),
            "master_file_name": "MFN-2",
            "trace_id": mfn_trace(),
            "created_at": at,
            "updated_at": at,
        }
    ]
    [row] = joined.rows["claimx_projects"]
    assert row["policyholder_joined_at"] == at and "project_number" not in row


def mfn_trace() -> str:
    return str(event("PROJECT_MFN_ADDED", masterFileName="MFN-2")["trace_id"])


async def test_the_cache_expires_on_the_clock(make_handlers: MakeHandlers) -> None:
    now = [datetime(2026, 11, 23, tzinfo=UTC)]
    clock = HandClock(now)
    install_clock(clock)
    try:
        handlers, _ = await make_handlers(cache_ttl=60)
        await handlers.enrich(event("PROJECT_CREATED"))
        handlers.projects.remember(str(PID))
        assert str(PID) in handlers.projects
        now[0] = datetime(2026, 11, 23, 0, 1, 1, tzinfo=UTC)
        assert str(PID) not in handlers.projects
        again = await handlers.enrich(event("PROJECT_CREATED"))
        assert len(again.rows["claimx_projects"]) == 1
    finally:
        remove_clock(clock)


async def test_task_rows_template_link_and_link_contact(make_handlers: MakeHandlers) -> None:
    handlers, _ = await make_handlers()
    result = await handlers.enrich(event("CUSTOM_TASK_COMPLETED", taskAssignmentId=41))
    assert result.rows["claimx_tasks"][0]["assignment_id"] == "41"
    assert result.rows["claimx_tasks"][0]["stp_enabled"] is True
    assert result.rows["claimx_task_templates"][0]["task_id"] == "27019"
    assert result.rows["claimx_task_templates"][0]["allow_resubmit"] is True
    [link] = result.rows["claimx_external_links"]
    assert (link["link_id"], link["assignment_id"]) == ("410", "41")
    assert "secret41" not in link["url"]
    holder = [c for c in result.rows["claimx_contacts"] if c.get("task_assignment_id") == "41"]
    assert [(c["contact_email"], c["contact_type"], c["is_primary_contact"]) for c in holder] == [
        (f"holder{PID}@example.com", "POLICYHOLDER", False)
    ]
    no_template = await handlers.enrich(event("CUSTOM_TASK_ASSIGNED", taskAssignmentId=42))
    assert "claimx_task_templates" not in no_template.rows


async def test_a_non_numeric_task_id_is_permanent_without_a_call(make_handlers: MakeHandlers) -> None:
    handlers, sim = await make_handlers()
    with pytest.raises(ClassifiedError) as error:
        await handlers.enrich(event("CUSTOM_TASK_ASSIGNED", taskAssignmentId="T-1"))
    assert error.value.failure.category is ErrorCategory.PERMANENT
    assert sim.requests == []


async def test_video_picks_the_projects_item_else_the_first(make_handlers: MakeHandlers) -> None:
    handlers, _ = await make_handlers()
    result = await handlers.enrich(event("VIDEO_COLLABORATION_COMPLETED", videoCollaborationId=91))
    [row] = result.rows["claimx_video_collab"]
    assert (row["video_collaboration_id"], row["claim_id"], row["claim_rep_full_name"]) == (
        "91",
        str(PID),
        "Sam Roe",
    )
    assert row["total_time_seconds"] == "612.5"

    other = {
        "claimx": {"projects": {"7": project_export(7)}, "video": {"7": {"data": [{"id": 5, "claimId": 8}]}}}
    }
    handlers, _ = await make_handlers(other)
    [row] = (await handlers.enrich(event("VIDEO_COLLABORATION_INVITE_SENT", pid=7))).rows[
        "claimx_video_collab"
    ]
    assert (row["video_collaboration_id"], row["claim_id"]) == ("5", "8")

    empty = {"claimx": {"projects": {"7": project_export(7)}}}
    handlers, _ = await make_handlers(empty)
    result = await handlers.enrich(event("VIDEO_COLLABORATION_INVITE_SENT", pid=7))
    assert set(result.rows) == {"claimx_projects", "claimx_contacts"}


async def test_xa_autolink_failure_calls_nothing(make_handlers: MakeHandlers) -> None:
    handlers, sim = await make_handlers()
    result = await handlers.enrich(event("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL"))
    assert sim.requests == []
    [row] = result.rows["claimx_projects"]
    assert row["xa_autolink_fail"] is True and "master_file_name" not in row


def test_enrichment_skips_missing_rows() -> None:
    result = Enrichment()
    result.add("t", {"a": 1}, None)
    assert result.rows == {"t": [{"a": 1}]}
    assert json.dumps(result.rows)
