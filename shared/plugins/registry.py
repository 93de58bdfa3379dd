"""The plugin hook: small, explicit, ordered by priority (reference §4.1).

Only the enrichment-complete stage has a caller today. A plugin that raises is recorded as a
failed result and the next plugin still runs; a plugin may terminate the pipeline for its event
(XACT then creates no download tasks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Stage(StrEnum):
    ENRICHMENT_COMPLETE = "enrichment_complete"


class Domain(StrEnum):
    XACT = "verisk"
    CLAIMX = "claimx"


@dataclass(frozen=True, slots=True)
class PluginContext:
    domain: Domain
    stage: Stage
    event_id: str
    event_type: str
    data: Mapping[str, Any]
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class PluginResult:
    plugin: str
    succeeded: bool = True
    terminate: bool = False
    reason: str | None = None


class Plugin(Protocol):
    name: str
    priority: int
    domains: frozenset[Domain]
    stages: frozenset[Stage]

    def execute(self, context: PluginContext) -> PluginResult: ...


@dataclass(frozen=True, slots=True)
class PluginRun:
    results: tuple[PluginResult, ...] = ()
    terminated: bool = False
    reason: str | None = None


@dataclass(slots=True)
class PluginRegistry:
    plugins: list[Plugin] = field(default_factory=list)

    def register(self, plugin: Plugin) -> None:
        self.plugins.append(plugin)
        self.plugins.sort(key=lambda p: p.priority)

    def applicable(self, context: PluginContext) -> Iterable[Plugin]:
        for plugin in self.plugins:
            if plugin.domains and context.domain not in plugin.domains:
                continue
            if plugin.stages and context.stage not in plugin.stages:
                continue
            yield plugin

    def run(self, context: PluginContext) -> PluginRun:
        results: list[PluginResult] = []
        for plugin in self.applicable(context):
            try:
                result = plugin.execute(context)
            except Exception as exc:
                log.exception(
                    "plugin %s failed; continuing", plugin.name, extra={"event_id": context.event_id}
                )
                results.append(PluginResult(plugin.name, succeeded=False, reason=f"{type(exc).__name__}"))
                continue
            results.append(result)
            if result.terminate:
                return PluginRun(tuple(results), terminated=True, reason=result.reason or plugin.name)
        return PluginRun(tuple(results))


def default_registry() -> PluginRegistry:
    """The plugins this deployment runs (none are shipped for XACT yet)."""
    return PluginRegistry()
