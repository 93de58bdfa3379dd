"""One storage factory: clients for the state account and the lake, and Delta ``storage_options``.

Locally everything points at Azurite (a connection string with an account key); in Azure the
state account is reached through identity-based service URIs and the lake (ADLS Gen2 or
OneLake) with the app's managed identity. Nothing else in the code builds a storage client.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

from shared.config import ConfigError, Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential

# The public, well-known Azurite development key (not a secret).
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EMULATOR_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={EMULATOR_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
STORAGE_SCOPE = "https://storage.azure.com/.default"
ONELAKE_HOST = "onelake.dfs.fabric.microsoft.com"
AZURITE_BLOB_URL_VARIABLE = "AZURITE_BLOB_STORAGE_URL"
_ENV_LOCK = threading.Lock()


def parse_connection_string(value: str) -> dict[str, str]:
    """Key/value pairs of a storage connection string (``UseDevelopmentStorage=true`` expanded)."""
    if value.strip().lower().rstrip(";") == "usedevelopmentstorage=true":
        value = EMULATOR_CONNECTION_STRING
    pairs = (part.split("=", 1) for part in value.split(";") if "=" in part)
    return {key.strip(): val.strip() for key, val in pairs}


@dataclass(frozen=True, slots=True)
class LakeLocation:
    """An ``abfss://container@account.dfs.../path`` URI, split into its parts."""

    container: str
    account_host: str
    path: str

    @classmethod
    def parse(cls, uri: str) -> LakeLocation:
        parts = urlsplit(uri)
        if parts.scheme not in ("abfss", "abfs") or "@" not in parts.netloc:
            raise ConfigError(f"lake URI must be abfss://<container>@<account host>/<path>, got {uri!r}")
        container, host = parts.netloc.split("@", 1)
        return cls(container=container, account_host=host.lower(), path=parts.path.strip("/"))

    @property
    def account(self) -> str:
        return self.account_host.split(".", 1)[0]

    @property
    def is_onelake(self) -> bool:
        return self.account_host == ONELAKE_HOST

    def child(self, name: str) -> LakeLocation:
        return LakeLocation(self.container, self.account_host, f"{self.path}/{name}".strip("/"))

    @property
    def uri(self) -> str:
        return f"abfss://{self.container}@{self.account_host}/{self.path}"

    @property
    def blob_account_url(self) -> str:
        """The Blob endpoint of this account (OneLake's blob endpoint for Fabric)."""
        if self.is_onelake:
            return "https://onelake.blob.fabric.microsoft.com"
        return f"https://{self.account}.blob.core.windows.net"

    @property
    def dfs_account_url(self) -> str:
        return f"https://{self.account_host}"


class StorageFactory:
    """Builds every storage client from the settings; one instance per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn = (
            parse_connection_string(settings.storage_connection_string)
            if settings.storage_connection_string
            else None
        )

    # -- emulator detection -------------------------------------------------------------
    @property
    def uses_account_key(self) -> bool:
        """True when the state account is reached with a key (Azurite or a dev account)."""
        return self._conn is not None and "AccountKey" in self._conn

    @property
    def emulator_blob_base(self) -> str | None:
        """``http://host:port`` of Azurite's blob service, when the state account is Azurite."""
        if not self._conn or self._conn.get("AccountName") != EMULATOR_ACCOUNT:
            return None
        endpoint = self._conn.get("BlobEndpoint", "http://127.0.0.1:10000/devstoreaccount1")
        parts = urlsplit(endpoint)
        return f"{parts.scheme}://{parts.netloc}"

    # -- credentials --------------------------------------------------------------------
    @cached_property
    def credential(self) -> TokenCredential:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        client_id = self._settings.managed_identity_client_id
        if self._settings.storage_credential == "managedidentity":
            return ManagedIdentityCredential(client_id=client_id)
        return DefaultAzureCredential(managed_identity_client_id=client_id)

    @cached_property
    def async_credential(self) -> AsyncTokenCredential:
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        client_id = self._settings.managed_identity_client_id
        if self._settings.storage_credential == "managedidentity":
            return ManagedIdentityCredential(client_id=client_id)
        return DefaultAzureCredential(managed_identity_client_id=client_id)

    # -- state account (dedup, staging, dead letters, leases) -----------------------------
    def table_service(self, **client_options: Any) -> TableServiceClient:
        """``client_options`` go to the SDK client (e.g. ``retry_total=0`` for a quick probe)."""
        if self._settings.storage_connection_string:
            return TableServiceClient.from_connection_string(
                self._settings.storage_connection_string, **client_options
            )
        assert self._settings.storage_table_service_uri
        return TableServiceClient(
            self._settings.storage_table_service_uri, credential=self.credential, **client_options
        )

    def blob_service(self, **client_options: Any) -> BlobServiceClient:
        if self._settings.storage_connection_string:
            return BlobServiceClient.from_connection_string(
                self._settings.storage_connection_string, **client_options
            )
        assert self._settings.storage_blob_service_uri
        return BlobServiceClient(
            self._settings.storage_blob_service_uri, credential=self.credential, **client_options
        )

    # -- lake (attachments and Delta tables) ----------------------------------------------
    def _lake_endpoint(self, location: LakeLocation) -> tuple[str, AzureNamedKeyCredential | None]:
        """Azurite serves every account on one port under ``/<account>``, with the well-known key."""
        base = self.emulator_blob_base
        if base is not None:
            return f"{base}/{location.account}", AzureNamedKeyCredential(location.account, EMULATOR_KEY)
        return location.blob_account_url, None

    def lake_blob_service(self, location: LakeLocation, **client_options: Any) -> BlobServiceClient:
        url, key = self._lake_endpoint(location)
        return BlobServiceClient(
            url, credential=key if key is not None else self.credential, **client_options
        )

    def async_lake_blob_service(self, location: LakeLocation) -> AsyncBlobServiceClient:
        url, key = self._lake_endpoint(location)
        return AsyncBlobServiceClient(url, credential=key if key is not None else self.async_credential)

    def delta_storage_options(self, location: LakeLocation) -> dict[str, str]:
        """``storage_options`` for deltalake and polars for a table under ``location``.

        On Azurite, object_store must run in emulator mode: Azurite ignores the ``startFrom``
        listing parameter that object_store otherwise relies on, and commits after version 0
        fail. Emulator mode reads the endpoint only from ``AZURITE_BLOB_STORAGE_URL`` (no option
        exists), so this sets it for the process; one Azurite per process is the rule.
        """
        base = self.emulator_blob_base
        if base is not None:
            with _ENV_LOCK:
                current = os.environ.get(AZURITE_BLOB_URL_VARIABLE)
                if current not in (None, base):
                    raise ConfigError(f"{AZURITE_BLOB_URL_VARIABLE} is {current}, but storage is at {base}")
                os.environ[AZURITE_BLOB_URL_VARIABLE] = base
            return {"use_emulator": "true", "account_name": location.account, "account_key": EMULATOR_KEY}
        token = self.credential.get_token(STORAGE_SCOPE).token
        options = {"bearer_token": token}
        if location.is_onelake:
            options["use_fabric_endpoint"] = "true"
        return options
