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


def test_simulation_refused_in_production() -> None:
    with pytest.raises(ValueError, match="refused"):
        Settings(**BASE, ENVIRONMENT="production", SIMULATION_MODE="true")


@pytest.mark.parametrize("environment", ["prd", "uat", "prod-eu", "LIVE", "Production", "staging", "bench"])
def test_unknown_environment_refused_at_start(environment: str) -> None:
    """A look-alike is refused rather than guessed: ``prd`` with simulation on let loopback through."""
    with pytest.raises(ValueError, match="ENVIRONMENT must be one of development, test, production"):
        Settings(**BASE, ENVIRONMENT=environment)
    with pytest.raises(ValueError, match="ENVIRONMENT must be one of"):
        Settings(**BASE, ENVIRONMENT=environment, SIMULATION_MODE="true")


@pytest.mark.parametrize("environment", ["development", "test"])
def test_simulation_runs_in_development_and_test(environment: str) -> None:
    settings = Settings(
        **BASE, ENVIRONMENT=environment, SIMULATION_MODE="true", SIMULATOR_URL="http://127.0.0.1:9"
    )
    assert settings.simulation_mode and not settings.is_production


def test_non_positive_delay_rejected() -> None:
    with pytest.raises(ValueError):
        Settings(**BASE, RETRY_DELAYS_SECONDS="300,0")


def test_setting_names_are_the_aliases() -> None:
    names = setting_names()
    assert {"AzureWebJobsStorage", "XACT_EVENTHUB_NAME", "RETRY_DELAYS_SECONDS", "AZURE_CLIENT_ID"} <= names
    assert ConfigError.__mro__[1] is ValueError


IDENTITY_STORAGE = {
    "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net/",
    "AzureWebJobsStorage__tableServiceUri": "https://st.table.core.windows.net/",
    "AzureWebJobsStorage__queueServiceUri": "https://st.queue.core.windows.net/",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
}


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_settings_are_absent(blank: str) -> None:
    """Every setting, left blank, takes its default instead of the blank value."""
    names = setting_names() - IDENTITY_STORAGE.keys()
    settings = Settings(**IDENTITY_STORAGE, **dict.fromkeys(names, blank))
    assert settings == Settings(**IDENTITY_STORAGE)
    assert settings.storage_connection_string is None
    assert settings.environment == "development"
    assert settings.retry_delays_seconds == (300, 600, 1200, 2400)


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_environment_variables_are_absent(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    for name in setting_names() - IDENTITY_STORAGE.keys():
        monkeypatch.setenv(name, blank)
    for name, value in IDENTITY_STORAGE.items():
        monkeypatch.setenv(name, value)
    assert Settings() == Settings(**IDENTITY_STORAGE)


def test_blank_connection_string_from_the_environment_yields_to_identity_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Terraform app's AzureWebJobsStorage="" next to the identity-based settings."""
    monkeypatch.setenv("AzureWebJobsStorage", "")
    for name, value in IDENTITY_STORAGE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    settings = Settings()
    assert settings.storage_connection_string is None
    assert settings.storage_blob_service_uri == IDENTITY_STORAGE["AzureWebJobsStorage__blobServiceUri"]
    assert settings.managed_identity_client_id == "00000000-0000-0000-0000-000000000001"


def test_blank_storage_settings_do_not_count_as_configured() -> None:
    blanks = dict.fromkeys(["AzureWebJobsStorage", *IDENTITY_STORAGE], " ")
    with pytest.raises(ValueError, match="state storage is not configured"):
        Settings(**blanks)


def test_blank_client_id_alias_yields_to_the_other_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blank name of a setting does not hide another name of it, given directly or by environment."""
    settings = Settings(**{**IDENTITY_STORAGE, "AzureWebJobsStorage__clientId": ""}, AZURE_CLIENT_ID="abc")
    assert settings.managed_identity_client_id == "abc"
    for name, value in IDENTITY_STORAGE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AzureWebJobsStorage__clientId", " ")
    monkeypatch.setenv("AZURE_CLIENT_ID", "def")
    assert Settings().managed_identity_client_id == "def"
