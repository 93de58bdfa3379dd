from __future__ import annotations

import pytest

from shared.config import ConfigError, Settings, setting_names

pytestmark = pytest.mark.unit

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_defaults_give_five_attempts() -> None:
    settings = Settings(**BASE)
    assert settings.retry_delays_seconds == (300, 600, 1200, 2400)
    assert settings.max_attempts == 5


def test_comma_separated_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "5, 10")
    monkeypatch.setenv("ALLOWED_ATTACHMENT_HOSTS", "Files.Example.com,other.example.com")
    settings = Settings()
    assert settings.retry_delays_seconds == (5, 10)
    assert settings.allowed_attachment_hosts == ("files.example.com", "other.example.com")


def test_unresolved_reference_fails_fast() -> None:
    with pytest.raises(ValueError, match="unresolved reference"):
        Settings(**BASE, LAKE_TABLES_URI="abfss://${WORKSPACE}@onelake.dfs.fabric.microsoft.com/x")


def test_missing_state_storage_fails_fast() -> None:
    with pytest.raises(ValueError, match="state storage is not configured"):
        Settings()


@pytest.mark.parametrize("environment", ["production", "prod-eu", "LIVE"])
def test_simulation_refused_in_production(environment: str) -> None:
    with pytest.raises(ValueError, match="refused"):
        Settings(**BASE, ENVIRONMENT=environment, SIMULATION_MODE="true")


def test_non_positive_delay_rejected() -> None:
    with pytest.raises(ValueError):
        Settings(**BASE, RETRY_DELAYS_SECONDS="300,0")


def test_setting_names_are_the_aliases() -> None:
    names = setting_names()
    assert {"AzureWebJobsStorage", "XACT_EVENTHUB_NAME", "RETRY_DELAYS_SECONDS", "AZURE_CLIENT_ID"} <= names
    assert ConfigError.__mro__[1] is ValueError
