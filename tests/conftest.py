"""Test-wide fixtures: one Azurite per session, settings and storage factories bound to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from claimsflow.azurite import Azurite
from local_host import LocalHost, VirtualClock
from shared.config import Settings
from shared.pool import IoPool
from shared.runtime import Runtime
from shared.storage import StorageFactory


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    instance = Azurite.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def io_pool() -> Iterator[IoPool]:
    """The tests' blocking-I/O pool (the app has one per process, in its runtime)."""
    pool = IoPool()
    yield pool
    pool.shutdown()


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
def make_runtime(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Runtime]]:
    """``make_runtime(settings=None, **overrides)``: runtimes (a process's dependencies), closed after
    the test. Two runtimes on the same settings are two processes sharing one storage account."""
    made: list[Runtime] = []

    def make(settings: Settings | None = None, **overrides: Any) -> Runtime:
        runtime = Runtime(settings or make_settings(**overrides))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


@pytest.fixture
def storage(make_settings: Callable[..., Settings]) -> StorageFactory:
    return StorageFactory(make_settings())


@pytest.fixture
async def make_local_host(
    azurite: Azurite, unique: Callable[[str], str]
) -> AsyncIterator[Callable[..., Awaitable[LocalHost]]]:
    """``await make_local_host(app, start=...)``: a started LocalHost on the session Azurite. Hosts
    made in one test share a task hub, so a second one is the first one restarted."""
    hosts: list[LocalHost] = []
    task_hub = unique("hub")

    async def make(
        app: Any, *, start: datetime, clock: VirtualClock | None = None, **kwargs: Any
    ) -> LocalHost:
        kwargs.setdefault("settings_env", {})
        kwargs.setdefault("task_hub", task_hub)
        host = LocalHost(
            app, connection_string=azurite.connection_string, clock=clock or VirtualClock(start), **kwargs
        )
        await host.start()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        await host.stop()


@pytest.fixture(scope="session")
def otel_metrics() -> Iterator[Any]:
    """A real OpenTelemetry SDK meter provider for the whole session (the process can have one),
    read in memory: what Azure Monitor's exporter would receive."""
    from opentelemetry import metrics as otel
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    otel.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield reader


def exported_points(reader: Any) -> list[tuple[str, dict[str, Any], Any]]:
    """(metric name, attributes, point) for everything the reader collected."""
    data = reader.get_metrics_data()
    points: list[tuple[str, dict[str, Any], Any]] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points += [(metric.name, dict(p.attributes or {}), p) for p in metric.data.data_points]
    return points
