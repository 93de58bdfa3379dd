"""Fixtures for the end-to-end tier."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError

import function_app
from claimsflow.azurite import Azurite
from claimsflow.local_settings import sample_values
from claimsflow.simulator import AttachmentSimulator
from local_host import LocalHost, VirtualClock
from shared.clock import install_clock, remove_clock
from shared.runtime import get_runtime, reset_runtime
from shared.storage import LakeLocation, StorageFactory
from shared.telemetry import json_log_handler
from tests.e2e.harness import CLAIMX_TOKEN, START, Pipeline


@pytest.fixture
async def make_pipeline(
    azurite: Azurite, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Pipeline]]]:
    """``await make_pipeline(world, **settings)``: the app on a fresh task hub and lake, simulator in
    front; ``settings`` override the app's settings (the local host keeps the real storage)."""
    started: list[Pipeline] = []
    clocks: list[VirtualClock] = []

    async def make(
        world: dict[str, Any] | None = None, *, lake: str | None = None, **overrides: str
    ) -> Pipeline:
        """``lake``: share another pipeline's lake container (the same tables and files); in
        ``overrides``, ``{simulator}`` stands for the simulator's URL."""
        clock = VirtualClock(START)
        simulator = AttachmentSimulator(world or {}, clock=clock.now)
        await simulator.start()
        lake = lake or unique("lake")
        env = (
            sample_values()
            | {
                "AzureWebJobsStorage": azurite.connection_string,
                "ENVIRONMENT": "test",
                "SIMULATION_MODE": "true",
                "SIMULATOR_URL": simulator.url,
                "TASKHUB_NAME": unique("hub"),
                "LAKE_TABLES_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Tables",
                "XACT_ATTACHMENTS_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Files/xact",
                "CLAIMX_ATTACHMENTS_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Files/claimx",
                "CLAIMX_API_TOKEN": CLAIMX_TOKEN,
                "CLAIMX_API_RETRY_BACKOFF_SECONDS": "0.001",
                "TRANSFER_BLOCK_SIZE_MB": "1",
            }
            | {key: value.replace("{simulator}", simulator.url) for key, value in overrides.items()}
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_runtime()
        settings = get_runtime().settings
        root = LakeLocation.parse(settings.lake_tables_uri)
        with contextlib.suppress(ResourceExistsError):
            StorageFactory(settings).lake_blob_service(root).create_container(root.container)
        install_clock(clock)
        clocks.append(clock)
        host = LocalHost(
            function_app.app, connection_string=azurite.connection_string, settings_env=env, clock=clock
        )
        await host.start()
        pipeline = Pipeline(settings, env, host, simulator, clock)
        started.append(pipeline)
        return pipeline

    yield make
    for pipeline in started:
        await pipeline.close()
    for clock in clocks:
        remove_clock(clock)
    reset_runtime()


@pytest.fixture
def every_log_line() -> Iterator[io.StringIO]:
    """Every record any logger emits, at every level, as the JSON lines a local run writes."""
    stream = io.StringIO()
    handler = json_log_handler(logging.DEBUG, stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
