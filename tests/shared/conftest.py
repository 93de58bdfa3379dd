"""Fixtures shared by the tests of ``shared/``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.config import Settings
from shared.lake.lakehouse import Lakehouse
from shared.lake.staging import StagingTable
from shared.pool import IoPool
from shared.runtime import LAKE_TABLES
from shared.storage import StorageFactory


@pytest.fixture
def make_lakehouse(
    make_settings: Callable[..., Settings], unique: Callable[[str], str], io_pool: IoPool
) -> Callable[..., Lakehouse]:
    """Lakehouses on fresh settings (task hub, lake) with their own staging table and lease container."""

    def make(**overrides: Any) -> Lakehouse:
        settings = make_settings(**overrides)
        storage = StorageFactory(settings)
        staging = StagingTable(storage.table_service(), io_pool, table_name=unique("stg"))
        lakehouse = Lakehouse(
            settings,
            storage,
            tables=LAKE_TABLES,
            staging=staging,
            pool=io_pool,
            lock_container=unique("locks"),
        )
        return lakehouse

    return make
