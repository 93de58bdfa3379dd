"""Fixtures: LocalHost instances on the session Azurite, each on its own task hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from claimsflow.azurite import Azurite
from local_host import LocalHost, VirtualClock
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import HOST_KEY, START, MakeHost


@pytest.fixture(autouse=True)
def reset_calls() -> Iterator[None]:
    apps.calls.clear()
    yield
    apps.calls.clear()


@pytest.fixture
async def make_host(azurite: Azurite, unique: Callable[[str], str]) -> AsyncIterator[MakeHost]:
    hosts: list[LocalHost] = []
    default_hub = unique("hub")

    async def make(app: Any = apps.app, *, task_hub: str | None = None, **kwargs: Any) -> LocalHost:
        kwargs.setdefault("clock", VirtualClock(START))
        kwargs.setdefault("settings_env", {})
        host = LocalHost(
            app,
            connection_string=azurite.connection_string,
            task_hub=task_hub or default_hub,
            host_keys=(HOST_KEY,),
            **kwargs,
        )
        await host.start()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        await host.stop()


@pytest.fixture
async def host(make_host: MakeHost) -> LocalHost:
    return await make_host()
