"""Local Functions host for claimsflow: Event Hub, timer and HTTP triggers, Durable orchestrations
on the real SDK replay with state in Azurite, the Durable HTTP management API, on a virtual clock.

Parts: :mod:`.history` (events and actions), :mod:`.orchestration` (an instance and its episodes),
:mod:`.scheduler` (the worker), :mod:`.persistence` (one atomic write per episode),
:mod:`.management` and :mod:`.http_api` (the management API), :mod:`.eventhubs`,
:mod:`.http_triggers`, :mod:`.invocation` and :mod:`.host` (the triggers and the host itself).
"""

from __future__ import annotations

from .clock import VirtualClock
from .eventhubs import Checkpoint, EventData
from .history import EventType
from .host import LocalHost
from .hostconfig import HostConfig
from .indexing import IndexingError, RetryPolicy
from .invocation import DeliveryOutcome
from .management import InstanceStatus
from .persistence import InstanceQuery

__all__ = [
    "Checkpoint",
    "DeliveryOutcome",
    "EventData",
    "EventType",
    "HostConfig",
    "IndexingError",
    "InstanceQuery",
    "InstanceStatus",
    "LocalHost",
    "RetryPolicy",
    "VirtualClock",
]
