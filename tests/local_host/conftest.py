"""Fixtures: LocalHost instances on the session Azurite, each on its own task hub."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from local_host import LocalHost
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import HOST_KEY, START, MakeHost


@pytest.fixture(autouse=True)
def reset_calls() -> Iterator[None]:
    apps.calls.clear()
    yield
    apps.calls.clear()


@pytest.fixture
def make_host(make_local_host: Callable[..., Awaitable[LocalHost]]) -> MakeHost:
    async def make(app: Any = apps.app, **kwargs: Any) -> LocalHost:
        return await make_local_host(app, start=START, host_keys=(HOST_KEY,), **kwargs)

    return make


@pytest.fixture
async def host(make_host: MakeHost) -> LocalHost:
    return await make_host()
