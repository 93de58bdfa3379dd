"""XACT status notification: a log line, with the event's fields, when an event of a chosen status
arrives (for example to alert a team when a first notice of loss comes in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from string import Template

from shared.domains import Domain
from shared.plugins.actions import LogAction
from shared.plugins.context import PluginContext, Stage
from shared.plugins.loader import PluginSettings
from shared.plugins.registry import PluginResult


@dataclass(frozen=True, slots=True)
class XactStatusNotification:
    """``messages`` maps a status subtype to a message; ``$assignment_id``, ``$trace_id`` and the
    other fields of the enrichment context are filled in."""

    name: str
    priority: int
    messages: Mapping[str, str]
    domains: frozenset[Domain] = frozenset({Domain.XACT})
    stages: frozenset[Stage] = frozenset({Stage.ENRICHMENT_COMPLETE})
    event_types: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: PluginSettings) -> XactStatusNotification:
        messages = settings.config.get("messages")
        if not isinstance(messages, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in messages.items()
        ):
            raise ValueError("config.messages must map status subtypes to message texts")
        return cls(settings.name, settings.priority, dict(messages), event_types=frozenset(messages))

    def execute(self, context: PluginContext) -> PluginResult:
        fields = {key: str(value) for key, value in context.data.items()}
        message = Template(self.messages[context.event_type]).safe_substitute(fields)
        return PluginResult(self.name, actions=(LogAction(message),))
