"""The crash campaign's short form: ``claimsflow run`` in a real child process, SIGKILLed once at each
named point and twice at seeded random instants, then run again with the same command; every
table, file and dead letter equals an uninterrupted run's and the invariants hold. The full form
is ``scripts/crash-campaign.sh``."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from claimsflow.azurite import Azurite
from tests.crash.campaign import KILLED, NAMED_POINTS, Campaign, Outcome

pytestmark = pytest.mark.e2e

EVENTS = 20


@pytest.fixture(scope="module")
def campaign(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Campaign, Outcome, float]]:
    made = Campaign(azurite, events=EVENTS, workdir=tmp_path_factory.mktemp("crash-campaign"))
    reference, duration = made.reference()
    # the traffic exercises both domains, files and failures (20 events name no ClaimX task)
    assert reference.files and reference.dead_letters
    assert all(
        reference.tables[name] for name in ("xact_events", "xact_attachments_failed", "claimx_projects")
    )
    yield made, reference, duration


@pytest.mark.parametrize("point", NAMED_POINTS)
def test_a_kill_at_a_named_point_loses_and_doubles_nothing(
    campaign: tuple[Campaign, Outcome, float], point: str
) -> None:
    runner, reference, _ = campaign
    assert runner.survive(f"k{point.replace('-', '')}", [(point, None)], reference) == []


def test_kills_at_random_instants_lose_and_double_nothing(campaign: tuple[Campaign, Outcome, float]) -> None:
    runner, reference, duration = campaign
    rng = random.Random(20261201)
    kills = [(None, rng.uniform(1.0, duration)) for _ in range(2)]
    assert runner.survive("krandom", kills, reference) == []


def test_a_named_point_that_is_never_reached_is_reported(campaign: tuple[Campaign, Outcome, float]) -> None:
    """Guards the campaign itself: a kill point that never fires must not pass as survived."""
    runner, reference, _ = campaign
    problems = runner.survive("kunreached", [("ingest-claimed:1000", None)], reference)
    assert problems == ["ingest-claimed:1000 was never reached"]
    assert runner.run("kunreached2", kill_at="ingest-claimed") == KILLED
