"""Readiness: can this instance reach what it needs? Used by the health route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError

from shared.config import ConfigError, get_settings
from shared.storage import StorageFactory


@dataclass(slots=True)
class HealthReport:
    status: str = "ready"
    checks: dict[str, bool] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def fail(self, check: str, reason: str) -> None:
        self.checks[check] = False
        self.reasons.append(reason)
        self.status = "not_ready"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks, "reasons": self.reasons}


def check_health() -> HealthReport:
    """Configuration valid, state tables and blobs reachable. No secrets in the answer."""
    report = HealthReport()
    try:
        settings = get_settings()
    except ConfigError:
        report.fail("configuration", "configuration_error")
        return report
    report.checks["configuration"] = True
    storage = StorageFactory(settings)
    probe = {"retry_total": 0, "connection_timeout": 3, "read_timeout": 5}
    try:
        next(iter(storage.table_service(**probe).list_tables(results_per_page=1)), None)
        report.checks["state_tables"] = True
    except AzureError:
        report.fail("state_tables", "state_tables_unreachable")
    try:
        storage.blob_service(**probe).get_account_information()
        report.checks["state_blobs"] = True
    except AzureError:
        report.fail("state_blobs", "state_blobs_unreachable")
    return report
