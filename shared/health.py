"""Liveness and readiness. Liveness says only that the worker answers (safe to expose without a
key). Readiness says whether this instance can do its work: configuration valid, the state account's
tables and blobs reachable, the Delta location reachable, and any check a domain registers (the
ClaimX API circuit, for one). Answers carry check names and reasons, never settings or errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError

from shared.config import ConfigError, Settings, get_settings
from shared.storage import LakeLocation, StorageFactory

PROBE = {"retry_total": 0, "connection_timeout": 3, "read_timeout": 5}

# A readiness check a domain adds: returns None when fine, else a short reason (``circuit_open``).
ReadinessCheck = Callable[[Settings], str | None]
_extra_checks: dict[str, ReadinessCheck] = {}


def register_readiness_check(name: str, check: ReadinessCheck) -> None:
    """Add a named check to readiness (registering a name again replaces it)."""
    _extra_checks[name] = check


def remove_readiness_check(name: str) -> None:
    _extra_checks.pop(name, None)


@dataclass(slots=True)
class HealthReport:
    status: str = "ready"
    checks: dict[str, bool] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def passed(self, check: str) -> None:
        self.checks[check] = True

    def fail(self, check: str, reason: str) -> None:
        self.checks[check] = False
        self.reasons.append(reason)
        self.status = "not_ready"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks, "reasons": self.reasons}


def liveness() -> dict[str, str]:
    return {"status": "alive"}


def check_readiness(settings: Settings | None = None) -> HealthReport:
    """Every check runs (one failing does not hide another); no secret reaches the answer."""
    report = HealthReport()
    try:
        settings = settings or get_settings()
    except ConfigError:
        report.fail("configuration", "configuration_error")
        return report
    report.passed("configuration")
    storage = StorageFactory(settings)
    try:
        next(iter(storage.table_service(**PROBE).list_tables(results_per_page=1)), None)
        report.passed("state_tables")
    except AzureError:
        report.fail("state_tables", "state_tables_unreachable")
    try:
        storage.blob_service(**PROBE).get_account_information()
        report.passed("state_blobs")
    except AzureError:
        report.fail("state_blobs", "state_blobs_unreachable")
    try:
        lake = LakeLocation.parse(settings.lake_tables_uri)
        container = storage.lake_blob_service(lake, **PROBE).get_container_client(lake.container)
        next(iter(container.list_blobs(name_starts_with=lake.path, results_per_page=1)), None)
        report.passed("delta_location")
    except (AzureError, ConfigError):
        report.fail("delta_location", "delta_location_unreachable")
    for name, check in _extra_checks.items():
        try:
            reason = check(settings)
        except Exception:
            reason = f"{name}_check_failed"
        if reason is None:
            report.passed(name)
        else:
            report.fail(name, reason)
    return report
