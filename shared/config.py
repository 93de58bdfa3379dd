"""The one settings object: every app setting the code reads, typed, validated at start.

Names are the app-setting names used in Azure, ``local.settings.json``, Bicep and Terraform, so
the parity check in ``tests/infra`` can compare them. Settings referenced only by bindings
(``%XACT_EVENTHUB_NAME%``) are read here too, so a misconfigured app fails fast in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_ALLOWED_ATTACHMENT_HOSTS: tuple[str, ...] = (
    "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com",
    "claimxperience.s3.amazonaws.com",
    "claimxperience.s3.us-east-1.amazonaws.com",
    "www.claimxperience.com",
    "claimxperience.com",
    "xactware-claimx-us-prod.s3.us-west-1.amazonaws.com",
)

_UNRESOLVED = re.compile(r"\$\{[^}]*\}")


class Environment(StrEnum):
    """Where the app runs. Exactly these names: a look-alike (``prd``, ``uat``) is refused rather
    than guessed, because simulation mode depends on it."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _without_blank(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings minus blank (empty or whitespace) values, which count as absent: a blank value never
    overrides a default or another name of the same setting. The Terraform app declares
    ``AzureWebJobsStorage`` blank only to keep the provider's keyless connection string out."""
    return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}


class _PresentEnvSettingsSource(EnvSettingsSource):
    """The environment minus blank variables, dropped before aliases are resolved."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.env_vars = _without_blank(self.env_vars)


class ConfigError(ValueError):
    """A setting is missing, malformed or unresolved; the app must not start."""


class AttachmentApi(StrEnum):
    BLOB = "blob"
    DFS = "dfs"


class Settings(BaseSettings):
    """All app settings. Field aliases are the exact setting names."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=False)

    environment: str = Field("development", alias="ENVIRONMENT")

    # State storage (dedup latch, staging, dead letters, flush/compaction leases) shares the host
    # storage account: a connection string locally, identity-based service URIs in Azure.
    storage_connection_string: str | None = Field(None, alias="AzureWebJobsStorage")
    storage_blob_service_uri: str | None = Field(None, alias="AzureWebJobsStorage__blobServiceUri")
    storage_table_service_uri: str | None = Field(None, alias="AzureWebJobsStorage__tableServiceUri")
    storage_queue_service_uri: str | None = Field(None, alias="AzureWebJobsStorage__queueServiceUri")
    storage_credential: str | None = Field(None, alias="AzureWebJobsStorage__credential")
    managed_identity_client_id: str | None = Field(
        None, validation_alias=AliasChoices("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID")
    )

    # Event Hubs (read by the trigger bindings through %NAME% references).
    eventhub_connection_string: str | None = Field(None, alias="EventHubConnection")
    eventhub_namespace: str | None = Field(None, alias="EventHubConnection__fullyQualifiedNamespace")
    xact_eventhub_name: str = Field("xactanalysis", alias="XACT_EVENTHUB_NAME")
    xact_consumer_group: str = Field("claimsflow-xact", alias="XACT_EVENTHUB_CONSUMER_GROUP")
    claimx_eventhub_name: str = Field("claimxperience", alias="CLAIMX_EVENTHUB_NAME")
    claimx_consumer_group: str = Field("claimsflow-claimx", alias="CLAIMX_EVENTHUB_CONSUMER_GROUP")

    # Durable task hub (host.json reads it as %TASKHUB_NAME%).
    taskhub_name: str = Field("claimsflow", alias="TASKHUB_NAME", pattern=r"^[A-Za-z][A-Za-z0-9]{2,44}$")

    # Lakehouse: Delta tables and attachment files.
    lake_tables_uri: str = Field(
        "abfss://lakehouse@devstoreaccount1.dfs.core.windows.net/Tables", alias="LAKE_TABLES_URI"
    )
    xact_attachments_uri: str = Field(
        "abfss://lakehouse@devstoreaccount1.dfs.core.windows.net/Files/xact/attachments",
        alias="XACT_ATTACHMENTS_URI",
    )
    claimx_attachments_uri: str = Field(
        "abfss://lakehouse@devstoreaccount1.dfs.core.windows.net/Files/claimx/attachments",
        alias="CLAIMX_ATTACHMENTS_URI",
    )
    attachment_api: AttachmentApi = Field(AttachmentApi.BLOB, alias="ATTACHMENT_API")

    # ClaimX REST API (one client per process).
    claimx_api_url: str = Field("https://www.claimxperience.com/service/cxedirest", alias="CLAIMX_API_URL")
    claimx_api_token: SecretStr | None = Field(None, alias="CLAIMX_API_TOKEN")
    claimx_api_timeout_seconds: float = Field(30, alias="CLAIMX_API_TIMEOUT_SECONDS", gt=0)
    claimx_api_concurrency: int = Field(20, alias="CLAIMX_API_CONCURRENCY", ge=1, le=500)
    claimx_api_rate_limit_per_second: float = Field(0, alias="CLAIMX_API_RATE_LIMIT_PER_SECOND", ge=0)
    claimx_api_retry_backoff_seconds: float = Field(1.0, alias="CLAIMX_API_RETRY_BACKOFF_SECONDS", ge=0)
    claimx_sender_username: str = Field("", alias="CLAIMX_SENDER_USERNAME")
    claimx_project_cache_ttl_seconds: int = Field(900, alias="CLAIMX_PROJECT_CACHE_TTL_SECONDS", ge=0)

    # ClaimX Eventhouse poller: off unless the cluster URL is set.
    claimx_eventhouse_cluster_url: str | None = Field(None, alias="CLAIMX_EVENTHOUSE_CLUSTER_URL")
    claimx_eventhouse_database: str = Field("", alias="CLAIMX_EVENTHOUSE_DATABASE")
    claimx_eventhouse_table: str = Field(
        "ClaimXEvents", alias="CLAIMX_EVENTHOUSE_TABLE", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
    )
    claimx_poll_schedule: str = Field("*/30 * * * * *", alias="CLAIMX_POLL_SCHEDULE")
    claimx_poll_batch_size: int = Field(1000, alias="CLAIMX_POLL_BATCH_SIZE", ge=1, le=50_000)

    # Behaviour.
    retry_delays_seconds: Annotated[tuple[int, ...], NoDecode] = Field(
        (300, 600, 1200, 2400), alias="RETRY_DELAYS_SECONDS"
    )
    dedup_ttl_seconds: int = Field(86_400, alias="DEDUP_TTL_SECONDS", gt=0)
    dedup_cache_size: int = Field(100_000, alias="DEDUP_CACHE_SIZE", gt=0)
    table_shards: int = Field(16, alias="STATE_TABLE_SHARDS", ge=1, le=256)
    allowed_attachment_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_ALLOWED_ATTACHMENT_HOSTS, alias="ALLOWED_ATTACHMENT_HOSTS"
    )
    simulation_mode: bool = Field(False, alias="SIMULATION_MODE")
    simulator_url: str | None = Field(None, alias="SIMULATOR_URL")
    transfer_block_size_mb: int = Field(8, alias="TRANSFER_BLOCK_SIZE_MB", ge=1, le=100)
    transfer_timeout_seconds: int = Field(300, alias="TRANSFER_TIMEOUT_SECONDS", gt=0)
    max_attachment_mb: int = Field(2048, alias="MAX_ATTACHMENT_MB", gt=0)

    # Timers.
    flush_schedule: str = Field("*/15 * * * * *", alias="FLUSH_SCHEDULE")
    compact_schedule: str = Field("0 17 * * * *", alias="COMPACT_SCHEDULE")
    flush_max_rows: int = Field(5000, alias="FLUSH_MAX_ROWS", gt=0)
    vacuum_retention_hours: int = Field(168, alias="VACUUM_RETENTION_HOURS", ge=0)
    instance_retention_days: int = Field(30, alias="INSTANCE_RETENTION_DAYS", ge=1)

    def __init__(self, **values: Any) -> None:
        super().__init__(**_without_blank(values))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _PresentEnvSettingsSource(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _reject_unresolved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and _UNRESOLVED.search(value):
                    raise ConfigError(f"setting {key} has an unresolved reference: {value!r}")
        return data

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        allowed = [e.value for e in Environment]
        if value not in allowed:
            allowed_text = ", ".join(allowed)
            raise ConfigError(f"ENVIRONMENT must be one of {allowed_text}, not {value!r}")
        return value

    @field_validator("retry_delays_seconds", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", "").split(",") if part]
        delays = tuple(int(v) for v in value)
        if any(d <= 0 for d in delays):
            raise ConfigError("RETRY_DELAYS_SECONDS must be positive integers")
        return delays

    @field_validator("allowed_attachment_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(h.lower() for h in value)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.simulation_mode and self.is_production:
            raise ConfigError("SIMULATION_MODE is refused when ENVIRONMENT is production")
        if not self.storage_connection_string and not (
            self.storage_blob_service_uri and self.storage_table_service_uri
        ):
            raise ConfigError(
                "state storage is not configured: set AzureWebJobsStorage, or "
                "AzureWebJobsStorage__blobServiceUri and AzureWebJobsStorage__tableServiceUri"
            )
        return self

    @property
    def is_production(self) -> bool:
        """Simulation mode runs only in development or test."""
        return self.environment == Environment.PRODUCTION

    def state_table(self, suffix: str) -> str:
        """Name of a state table (dedup, staging, dead letters), scoped like the task hub."""
        return f"{self.taskhub_name}{suffix}"

    def state_container(self, suffix: str) -> str:
        """Name of a state blob container (leases, large dead-letter payloads)."""
        return f"{self.taskhub_name.lower()}-{suffix}"

    @property
    def claimx_poller_enabled(self) -> bool:
        return bool(self.claimx_eventhouse_cluster_url)

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_seconds) + 1


def setting_names() -> frozenset[str]:
    """Every setting name the code reads (aliases of :class:`Settings`)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if field.alias:
            names.add(field.alias)
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices)
    return frozenset(names)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    try:
        return Settings()
    except ValueError as exc:  # pydantic wraps our ConfigError in a ValidationError
        raise ConfigError(str(exc)) from exc
