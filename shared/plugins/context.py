"""What a plugin sees: the stage it is called at and the event's context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.domains import Domain


class Stage(StrEnum):
    """Where in the pipeline plugins are called."""

    ENRICHMENT_COMPLETE = "enrichment_complete"


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a plugin sees of one event at one stage."""

    domain: Domain
    stage: Stage
    event_id: str
    event_type: str
    data: Mapping[str, Any]
    project_id: str | None = None
