"""The plugin registry: order, applicability, actions, failures and termination."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from shared.domains import Domain
from shared.plugins.actions import LogAction
from shared.plugins.context import PluginContext, Stage
from shared.plugins.registry import PluginRegistry, PluginResult

pytestmark = pytest.mark.unit


@dataclass
class RecordingAction:
    """An action that writes down the events it ran for (the behaviour under test is ordering)."""

    ran: list[str]
    label: str
    fail: bool = False
    kind: str = "record"

    def run(self, context: PluginContext) -> None:
        if self.fail:
            raise RuntimeError("action failed")
        self.ran.append(f"{self.label}:{context.event_id}")


@dataclass
class StubPlugin:
    name: str
    priority: int
    ran: list[str]
    domains: frozenset[Domain] = frozenset()
    stages: frozenset[Stage] = frozenset()
    event_types: frozenset[str] = frozenset()
    terminate: bool = False
    explode: bool = False
    actions: tuple[RecordingAction, ...] = field(default=())

    def execute(self, context: PluginContext) -> PluginResult:
        self.ran.append(self.name)
        if self.explode:
            raise ValueError("plugin bug")
        return PluginResult(
            self.name,
            terminate=self.terminate,
            reason="stop" if self.terminate else None,
            actions=self.actions,
        )


def context(domain: Domain = Domain.XACT, event_type: str = "documentsReceived") -> PluginContext:
    return PluginContext(domain, Stage.ENRICHMENT_COMPLETE, "t-1", event_type, {"assignment_id": "A1"})


def test_plugins_run_by_priority_with_their_actions_after_each() -> None:
    ran: list[str] = []
    registry = PluginRegistry()
    registry.register(StubPlugin("late", 90, ran, actions=(RecordingAction(ran, "late-action"),)))
    registry.register(StubPlugin("early", 10, ran, actions=(RecordingAction(ran, "early-action"),)))
    run = registry.run(context())
    assert ran == ["early", "early-action:t-1", "late", "late-action:t-1"]
    assert run.actions_run == 2 and not run.terminated
    assert [r.plugin for r in run.results] == ["early", "late"]


def test_domains_stages_and_event_types_select_plugins() -> None:
    ran: list[str] = []
    registry = PluginRegistry()
    registry.register(StubPlugin("claimx-only", 1, ran, domains=frozenset({Domain.CLAIMX})))
    registry.register(StubPlugin("fnol-only", 2, ran, event_types=frozenset({"firstNoticeOfLossReceived"})))
    registry.register(StubPlugin("all", 3, ran))
    registry.run(context())
    registry.run(context(event_type="firstNoticeOfLossReceived"))
    registry.run(context(domain=Domain.CLAIMX))
    assert ran == ["all", "fnol-only", "all", "claimx-only", "all"]


def test_a_failing_plugin_or_action_is_recorded_and_the_next_plugin_runs() -> None:
    ran: list[str] = []
    registry = PluginRegistry()
    registry.register(StubPlugin("broken", 1, ran, explode=True))
    registry.register(StubPlugin("broken-action", 2, ran, actions=(RecordingAction(ran, "x", fail=True),)))
    registry.register(StubPlugin("fine", 3, ran))
    run = registry.run(context())
    assert [(r.plugin, r.succeeded) for r in run.results] == [
        ("broken", False),
        ("broken-action", False),
        ("fine", True),
    ]
    assert run.results[0].reason == "ValueError"


def test_termination_stops_later_plugins() -> None:
    ran: list[str] = []
    registry = PluginRegistry()
    registry.register(StubPlugin("gate", 1, ran, terminate=True))
    registry.register(StubPlugin("never", 2, ran))
    run = registry.run(context())
    assert ran == ["gate"]
    assert run.terminated and run.reason == "stop"


def test_log_action_logs_with_the_event_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="claimsflow.plugins"):
        LogAction("hello").run(context())
    [record] = caplog.records
    assert record.getMessage() == "hello"
    assert (record.domain, record.event_id, record.event_type) == ("xact", "t-1", "documentsReceived")
