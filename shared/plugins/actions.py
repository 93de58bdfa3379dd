"""Actions: what a plugin asks the pipeline to do beyond its own decision. Each runs right after
its plugin, in order; one that raises fails its plugin's result, and the next plugin still runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from shared.plugins.context import PluginContext

log = logging.getLogger("claimsflow.plugins")


class PluginAction(Protocol):
    @property
    def kind(self) -> str: ...

    def run(self, context: PluginContext) -> None: ...


@dataclass(frozen=True, slots=True)
class LogAction:
    """A structured log line about the event (reaches Application Insights with its fields)."""

    message: str
    level: int = logging.INFO
    kind: str = "log"

    def run(self, context: PluginContext) -> None:
        log.log(
            self.level,
            self.message,
            extra={
                "domain": context.domain.value,
                "stage": context.stage.value,
                "event_id": context.event_id,
                "event_type": context.event_type,
            },
        )
