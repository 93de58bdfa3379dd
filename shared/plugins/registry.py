"""The plugin registry: plugins run in priority order (lower first) for the stages, domains and
event types they declare; each plugin's actions run right after it.

A plugin or action that raises is recorded as a failed result and the next plugin still runs; a
plugin may end the pipeline for its event (XACT then creates no download tasks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shared.domains import Domain
from shared.plugins.actions import PluginAction
from shared.plugins.context import PluginContext, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PluginResult:
    plugin: str
    succeeded: bool = True
    terminate: bool = False
    reason: str | None = None
    actions: tuple[PluginAction, ...] = ()


class Plugin(Protocol):
    """Empty ``domains``, ``stages`` or ``event_types`` mean all of them."""

    @property
    def name(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def domains(self) -> frozenset[Domain]: ...
    @property
    def stages(self) -> frozenset[Stage]: ...
    @property
    def event_types(self) -> frozenset[str]: ...

    def execute(self, context: PluginContext) -> PluginResult: ...


@dataclass(frozen=True, slots=True)
class PluginRun:
    results: tuple[PluginResult, ...] = ()
    actions_run: int = 0
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
            if plugin.event_types and context.event_type not in plugin.event_types:
                continue
            yield plugin

    def run(self, context: PluginContext) -> PluginRun:
        results: list[PluginResult] = []
        actions_run = 0
        for plugin in self.applicable(context):
            try:
                result = plugin.execute(context)
                for action in result.actions:
                    action.run(context)
                    actions_run += 1
            except Exception as exc:
                log.exception(
                    "plugin %s failed; continuing", plugin.name, extra={"event_id": context.event_id}
                )
                results.append(PluginResult(plugin.name, succeeded=False, reason=f"{type(exc).__name__}"))
                continue
            results.append(result)
            if result.terminate:
                reason = result.reason or plugin.name
                return PluginRun(tuple(results), actions_run, terminated=True, reason=reason)
        return PluginRun(tuple(results), actions_run)
