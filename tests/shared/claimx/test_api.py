"""The ClaimX API client against the simulator over loopback HTTP: every endpoint, the Basic
credential only on ClaimX hosts, the status table, the local retry and the circuit breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claimsflow.claimx_samples import media_item, project_export, task_assignment, video_report
from claimsflow.simulator import AttachmentSimulator
from shared.claimx.api import ClaimXApi, classify_api_status
from shared.claimx.circuit import CircuitBreaker, CircuitOpenError, CircuitState
from shared.config import Settings
from shared.errors import ClassifiedError, ErrorCategory

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TOKEN = "dXNlcjpwYXNz"
PID = 5395115


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def world(**extra: Any) -> dict[str, Any]:
    return {
        "claimx": {
            "projects": {str(PID): project_export(PID)},
            "media": {str(PID): [media_item(1, signed_at=T0), media_item(2, name="b.png", signed_at=T0)]},
            "tasks": {"5486872": task_assignment(5486872, PID)},
            "video": {str(PID): video_report(PID, 4242)},
        },
        **extra,
    }


MakeApi = Callable[..., Awaitable[tuple[ClaimXApi, AttachmentSimulator]]]


@pytest.fixture
async def make_api() -> AsyncIterator[MakeApi]:
    opened: list[tuple[ClaimXApi, AttachmentSimulator]] = []

    async def make(
        world_: dict[str, Any] | None = None, **settings: Any
    ) -> tuple[ClaimXApi, AttachmentSimulator]:
        clock = Clock()
        sim = AttachmentSimulator(world_ if world_ is not None else world(), clock=clock)
        await sim.start()
        values = {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "ENVIRONMENT": "test",
            "SIMULATION_MODE": "true",
            "SIMULATOR_URL": sim.url,
            "CLAIMX_API_TOKEN": TOKEN,
            "CLAIMX_API_RETRY_BACKOFF_SECONDS": "0.001",
            **settings,
        }
        api = ClaimXApi.open(
            Settings(**values), CircuitBreaker("claimx_api", clock=clock, jitter=lambda: 0.0)
        )
        opened.append((api, sim))
        return api, sim

    yield make
    for api, sim in opened:
        await api.close()
        await sim.stop()


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (200, None),
        (201, None),
        (204, None),
        (401, ErrorCategory.AUTH),
        (403, ErrorCategory.PERMANENT),
        (404, ErrorCategory.PERMANENT),
        (400, ErrorCategory.PERMANENT),
        (429, ErrorCategory.TRANSIENT),
        (500, ErrorCategory.TRANSIENT),
        (503, ErrorCategory.TRANSIENT),
        (302, ErrorCategory.TRANSIENT),
        (600, ErrorCategory.TRANSIENT),
    ],
)
def test_status_table(status: int, category: ErrorCategory | None) -> None:
    assert classify_api_status(status) is category


async def test_every_endpoint(make_api: MakeApi) -> None:
    api, sim = await make_api()
    project = await api.project(str(PID))
    assert project["project"]["projectId"] == PID and project["companyName"] == "Carrier Mutual"
    assert [m["mediaID"] for m in await api.media(str(PID))] == [1, 2]
    assert [m["mediaID"] for m in await api.media(str(PID), ["2", "99"])] == [2]
    assert await api.media(str(PID), ["99"]) == []
    assert (await api.task_assignment("5486872"))["assignmentId"] == 5486872
    assert [v["claimId"] for v in await api.video_collaboration(str(PID))] == [PID + 1, PID]
    assert [t["assignmentId"] for t in await api.custom_tasks_report(str(PID))] == [5486872]
    assert await api.contacts(str(PID)) == []
    assert await api.conversations(str(PID)) == []
    assert await api.project_id_for_claim(project["project"]["projectNumber"]) == str(PID)
    assert await api.project_id_for_claim("NO-SUCH-CLAIM") is None
    assert await api.create_task(str(PID), task_name="Cabinet", task_id=27019) == {"success": True}
    [action] = sim.claimx.actions
    assert action["type"] == "CUSTOM_TASK_ASSIGN_EXTERNAL_LINK"
    assert action["data"]["customTaskId"] == 27019 and action["projectId"] == PID
    task_request = next(r for r in sim.requests if "/customTasks/" in r.path)
    assert task_request.query == "full=true"
    assert {r.authorization for r in sim.requests} == {f"Basic {TOKEN}"}
    assert {r.host for r in sim.requests} == {"www.claimxperience.com"}


async def test_unwrapped_project_answer(make_api: MakeApi) -> None:
    api, _ = await make_api({"claimx": {"projects": {"7": project_export(7, wrapped=False)}}})
    assert (await api.project("7"))["project"]["projectId"] == 7


async def test_429_and_503_are_retried_locally_to_success(make_api: MakeApi) -> None:
    api, sim = await make_api(world(faults=[{"path_contains": "/export/project/", "statuses": [429, 503]}]))
    assert (await api.project(str(PID)))["project"]["projectId"] == PID
    assert [r.status for r in sim.requests] == [429, 503, 200]
    assert api.breaker.state is CircuitState.CLOSED


async def test_transient_after_three_tries(make_api: MakeApi) -> None:
    api, sim = await make_api(
        world(faults=[{"path_contains": "/export/", "statuses": [503], "repeat": True}])
    )
    with pytest.raises(ClassifiedError) as error:
        await api.project(str(PID))
    assert error.value.failure.category is ErrorCategory.TRANSIENT
    assert error.value.failure.http_status == 503
    assert len(sim.requests) == 3


@pytest.mark.parametrize(("status", "category"), [(401, ErrorCategory.AUTH), (403, ErrorCategory.PERMANENT)])
async def test_auth_and_permanent_answers_are_not_retried_here(
    make_api: MakeApi, status: int, category: ErrorCategory
) -> None:
    api, sim = await make_api(world(faults=[{"path_contains": "/export/", "statuses": [status]}]))
    with pytest.raises(ClassifiedError) as error:
        await api.project(str(PID))
    assert error.value.failure.category is category
    assert TOKEN not in error.value.failure.message
    assert len(sim.requests) == 1


async def test_unknown_project_is_permanent_404(make_api: MakeApi) -> None:
    api, sim = await make_api()
    with pytest.raises(ClassifiedError) as error:
        await api.project("1")
    assert (error.value.failure.category, error.value.failure.http_status) == (ErrorCategory.PERMANENT, 404)
    assert len(sim.requests) == 1


async def test_five_failures_open_the_circuit_then_it_closes_after_two_trial_successes(
    make_api: MakeApi,
) -> None:
    api, sim = await make_api(world(faults=[{"path_contains": "/export/", "statuses": [503] * 5}]))
    clock = api.breaker.clock
    assert isinstance(clock, Clock)
    with pytest.raises(ClassifiedError):
        await api.project(str(PID))  # three failures
    with pytest.raises(CircuitOpenError) as refused:
        await api.project(str(PID))  # two more open the circuit; the third try is refused
    assert refused.value.retry_at == T0 + timedelta(seconds=60)
    assert len(sim.requests) == 5
    with pytest.raises(CircuitOpenError):
        await api.task_assignment("5486872")
    assert len(sim.requests) == 5  # refused without a request
    clock.now = T0 + timedelta(seconds=60)
    await api.project(str(PID))
    assert api.breaker.state is CircuitState.HALF_OPEN
    await api.media(str(PID))
    assert api.breaker.state is CircuitState.CLOSED
    assert len(sim.requests) == 7


async def test_rate_limit_is_off_by_default_and_on_when_configured(make_api: MakeApi) -> None:
    plain, _ = await make_api()
    paced, _ = await make_api(CLAIMX_API_RATE_LIMIT_PER_SECOND="50")
    assert plain._limiter is None
    assert paced._limiter is not None and paced._limiter.max_rate == 50
    for _ in range(3):
        await paced.project(str(PID))
    assert paced.requests == 3
