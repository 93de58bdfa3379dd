"""The shipped XACT status notification plugin and the deployment's plugins.yaml."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plugins import CONFIG_FILE, PLUGIN_KINDS, configured_plugins
from plugins.xact_status import XactStatusNotification
from shared.config import ConfigError
from shared.domains import Domain
from shared.plugins.context import PluginContext, Stage
from shared.plugins.loader import load_plugins

pytestmark = pytest.mark.unit

FNOL = "firstNoticeOfLossReceived"


def fnol_context(event_type: str = FNOL) -> PluginContext:
    data = {"trace_id": "t-7", "assignment_id": "A9", "status_subtype": event_type}
    return PluginContext(Domain.XACT, Stage.ENRICHMENT_COMPLETE, "t-7", event_type, data)


def test_the_shipped_configuration_loads_and_runs_nothing_by_default() -> None:
    assert CONFIG_FILE.exists()
    assert configured_plugins().plugins == []


def test_enabled_it_logs_the_message_for_its_statuses_only(caplog: pytest.LogCaptureFixture) -> None:
    document = {
        "plugins": [
            {
                "name": "fnol",
                "kind": "xact_status_notification",
                "config": {"messages": {FNOL: "FNOL for $assignment_id ($trace_id) $unknown"}},
            }
        ]
    }
    registry = load_plugins(document, PLUGIN_KINDS)
    with caplog.at_level(logging.INFO, logger="claimsflow.plugins"):
        run = registry.run(fnol_context())
        other = registry.run(fnol_context("documentsReceived"))
    assert run.actions_run == 1 and other.results == ()
    assert [r.getMessage() for r in caplog.records] == ["FNOL for A9 (t-7) $unknown"]


def test_a_configuration_without_messages_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  - {name: x, kind: xact_status_notification, config: {messages: 3}}\n")
    with pytest.raises(ConfigError, match=r"config\.messages must map"):
        configured_plugins(config)


def test_the_plugin_applies_to_xact_at_enrichment() -> None:
    plugin = XactStatusNotification("n", 1, {FNOL: "m"})
    assert plugin.domains == frozenset({Domain.XACT})
    assert plugin.stages == frozenset({Stage.ENRICHMENT_COMPLETE})
