"""Local Functions host for claimsflow: Event Hub and timer triggers, Durable orchestrations on the
real SDK replay with state in Azurite, the Durable HTTP management API, on a virtual clock."""

from __future__ import annotations

from .clock import VirtualClock
from .engine import InstanceStatus
from .history import EventType
from .host import LocalHost
from .indexing import IndexingError, RetryPolicy
from .invocation import DeliveryOutcome

__all__ = [
    "DeliveryOutcome",
    "EventType",
    "IndexingError",
    "InstanceStatus",
    "LocalHost",
    "RetryPolicy",
    "VirtualClock",
]
