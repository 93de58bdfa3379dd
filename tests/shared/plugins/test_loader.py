"""Loading plugins from configuration: enabled entries only, settings passed through, and a bad
entry refused the way a bad setting is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from shared.config import ConfigError
from shared.domains import Domain
from shared.plugins.context import PluginContext, Stage
from shared.plugins.loader import PluginSettings, load_plugins
from shared.plugins.registry import PluginResult

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class EchoPlugin:
    name: str
    priority: int
    domains: frozenset[Domain]
    event_types: frozenset[str]
    greeting: str
    stages: frozenset[Stage] = frozenset()

    @classmethod
    def build(cls, settings: PluginSettings) -> EchoPlugin:
        return cls(
            settings.name,
            settings.priority,
            settings.domains,
            settings.event_types,
            settings.config["greeting"],
        )

    def execute(self, context: PluginContext) -> PluginResult:
        return PluginResult(self.name, reason=self.greeting)


KINDS = {"echo": EchoPlugin.build}


def test_enabled_entries_become_plugins_in_priority_order() -> None:
    document: dict[str, Any] = {
        "plugins": [
            {"name": "b", "kind": "echo", "priority": 20, "config": {"greeting": "hi b"}},
            {"name": "off", "kind": "echo", "enabled": False, "config": {"greeting": "never"}},
            {
                "name": "a",
                "kind": "echo",
                "priority": 5,
                "domains": ["verisk"],
                "event_types": ["x"],
                "config": {"greeting": "hi a"},
            },
        ]
    }
    registry = load_plugins(document, KINDS)
    assert [p.name for p in registry.plugins] == ["a", "b"]
    first = registry.plugins[0]
    assert isinstance(first, EchoPlugin)
    assert first.domains == frozenset({Domain.XACT})  # the replaced system's name still reads
    assert first.event_types == frozenset({"x"}) and first.greeting == "hi a"
    assert registry.plugins[1].priority == 20


def test_no_document_means_no_plugins() -> None:
    assert load_plugins(None, KINDS).plugins == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"plugins": [{"name": "x", "kind": "nope"}]}, "unknown kind 'nope'"),
        ({"plugins": [{"name": "x", "kind": "echo", "domains": ["kafka"]}]}, "'kafka' is not a valid Domain"),
        ({"plugins": [{"name": "x", "kind": "echo", "config": {}}]}, "plugin 'x': 'greeting'"),
        ({"plugins": [{"name": "x", "kind": "echo", "colour": "red"}]}, "plugin configuration is invalid"),
        ({"plugins": "everything"}, "plugin configuration is invalid"),
    ],
)
def test_bad_entries_stop_the_app(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_plugins(document, KINDS)
