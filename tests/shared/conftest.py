"""Fixtures shared by the tests of ``shared/``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.config import Settings
from shared.lake.flush import Lakehouse
from shared.storage import StorageFactory


@pytest.fixture
def make_lakehouse(
    make_settings: Callable[..., Settings], unique: Callable[[str], str]
) -> Iterator[Callable[..., Lakehouse]]:
    """Lakehouses on fresh settings (task hub, lake) with their own staging table and lease container."""
    made: list[Lakehouse] = []

    def make(**overrides: Any) -> Lakehouse:
        settings = make_settings(**overrides)
        lakehouse = Lakehouse(
            settings, StorageFactory(settings), staging_table=unique("stg"), lock_container=unique("locks")
        )
        made.append(lakehouse)
        return lakehouse

    yield make
    for lakehouse in made:
        lakehouse.close()
