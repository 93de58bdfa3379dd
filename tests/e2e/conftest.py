"""Fixtures for the end-to-end tier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import function_app
from claimsflow.azurite import Azurite
from claimsflow.local_settings import sample_values
from claimsflow.simulator import AttachmentSimulator
from local_host import LocalHost, VirtualClock
from shared.runtime import get_runtime, reset_runtime
from shared.storage import LakeLocation, StorageFactory
from tests.e2e.harness import START, Pipeline


@pytest.fixture
async def make_pipeline(
    azurite: Azurite, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Pipeline]]]:
    """``await make_pipeline(world, **settings)``: the app on a fresh task hub and lake, simulator in
    front; ``settings`` override the app's settings (the local host keeps the real storage)."""
    started: list[Pipeline] = []

    async def make(world: dict[str, Any] | None = None, **overrides: str) -> Pipeline:
        simulator = AttachmentSimulator(world or {})
        await simulator.start()
        lake = unique("lake")
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
                "TRANSFER_BLOCK_SIZE_MB": "1",
            }
            | overrides
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_runtime()
        settings = get_runtime().settings
        root = LakeLocation.parse(settings.lake_tables_uri)
        StorageFactory(settings).lake_blob_service(root).create_container(root.container)
        clock = VirtualClock(START)
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
    reset_runtime()
