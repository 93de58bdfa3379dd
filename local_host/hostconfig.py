"""The parts of an app root's ``host.json`` the local host obeys, with the host's defaults."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .indexing import IndexingError, parse_timespan, resolve_setting

# The Durable extension's default for both limits is 10 per processor.
_DEFAULT_CONCURRENCY = 10 * (os.cpu_count() or 1)
# Flex Consumption and Premium default; host.json normally says.
DEFAULT_FUNCTION_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class HostConfig:
    max_concurrent_activities: int = _DEFAULT_CONCURRENCY
    max_concurrent_orchestrators: int = _DEFAULT_CONCURRENCY
    function_timeout: timedelta | None = DEFAULT_FUNCTION_TIMEOUT  # None: unlimited ("-1")
    max_event_batch_size: int = 100
    partition_count: int = 4
    hub_name: str | None = None  # as written; may hold %SETTING% references
    route_prefix: str = "api"

    @classmethod
    def load(cls, app_root: Path | None) -> HostConfig:
        """Read ``<app_root>/host.json``; without an app root (or file) the defaults apply."""
        if app_root is None or not (app_root / "host.json").is_file():
            return cls()
        path = app_root / "host.json"
        try:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise IndexingError(f"{path}: {exc}") from exc
        extensions = document.get("extensions") or {}
        durable = extensions.get("durableTask") or {}
        event_hubs = extensions.get("eventHubs") or {}
        http = extensions.get("http") or {}
        storage = durable.get("storageProvider") or {}
        defaults = cls()
        hub_name = durable.get("hubName")
        timeout_text = document.get("functionTimeout")
        timeout = defaults.function_timeout
        if timeout_text is not None:
            timeout = None if str(timeout_text).strip() == "-1" else parse_timespan(str(timeout_text))
        return cls(
            max_concurrent_activities=int(
                durable.get("maxConcurrentActivityFunctions", defaults.max_concurrent_activities)
            ),
            max_concurrent_orchestrators=int(
                durable.get("maxConcurrentOrchestratorFunctions", defaults.max_concurrent_orchestrators)
            ),
            function_timeout=timeout,
            max_event_batch_size=int(event_hubs.get("maxEventBatchSize", defaults.max_event_batch_size)),
            partition_count=int(storage.get("partitionCount", defaults.partition_count)),
            hub_name=str(hub_name) if hub_name else None,
            route_prefix=str(http.get("routePrefix", defaults.route_prefix)).strip("/"),
        )

    def task_hub(self, settings: Mapping[str, str]) -> str | None:
        """``hubName`` with its ``%SETTING%`` references resolved, as the host does."""
        return resolve_setting(self.hub_name, settings, where="host.json hubName") if self.hub_name else None
