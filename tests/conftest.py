"""Test-wide fixtures: one Azurite per session, settings and storage factories bound to it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from claimsflow.azurite import Azurite
from shared.config import Settings
from shared.storage import StorageFactory


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    instance = Azurite.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique, Azure-name-safe identifiers so tests sharing one Azurite never collide."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def make_settings(azurite: Azurite, unique: Callable[[str], str]) -> Callable[..., Settings]:
    """Settings bound to the session Azurite, with a fresh lake container per call."""

    def make(**overrides: Any) -> Settings:
        lake = unique("lake")
        values: dict[str, Any] = {
            "AzureWebJobsStorage": azurite.connection_string,
            "ENVIRONMENT": "test",
            "TASKHUB_NAME": unique("hub"),
            "LAKE_TABLES_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Tables",
            "XACT_ATTACHMENTS_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Files/xact/attachments",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def storage(make_settings: Callable[..., Settings]) -> StorageFactory:
    return StorageFactory(make_settings())
