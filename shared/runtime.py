"""Per-process dependencies, built once and reused by every invocation (clients are expensive).

Functions call :func:`get_runtime`; the local host and tests call :func:`reset_runtime` after
changing the environment. Loop-bound async clients are kept per event loop.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceExistsError

from shared.config import AttachmentApi, Settings, get_settings
from shared.state.deadletter import DeadLetterStore
from shared.state.dedup import DedupLatch
from shared.storage import StorageFactory

if TYPE_CHECKING:
    import aiohttp
    from azure.data.tables import TableClient

    from shared.lake.staging import StagingTable
    from shared.plugins.registry import PluginRegistry
    from shared.transfer.stores import AttachmentStore
    from shared.transfer.urls import UrlPolicy


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = StorageFactory(settings)
        self._sessions: dict[int, aiohttp.ClientSession] = {}
        self._stores: dict[int, AttachmentStore] = {}

    def _table(self, name: str) -> TableClient:
        service = self.storage.table_service()
        try:
            return service.create_table(name)
        except ResourceExistsError:
            return service.get_table_client(name)

    @cached_property
    def dedup(self) -> DedupLatch:
        return DedupLatch(
            self._table(self.settings.state_table("dedup")),
            ttl=timedelta(seconds=self.settings.dedup_ttl_seconds),
            shards=self.settings.table_shards,
            cache_size=self.settings.dedup_cache_size,
        )

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        container = self.storage.blob_service().get_container_client(
            self.settings.state_container("deadletters")
        )
        return DeadLetterStore(
            self._table(self.settings.state_table("deadletters")),
            container,
            shards=self.settings.table_shards,
        )

    @cached_property
    def staging(self) -> StagingTable:
        from shared.lake.staging import StagingTable

        return StagingTable(
            service=self.storage.table_service(),
            shards=self.settings.table_shards,
            table_name=self.settings.state_table("staging"),
        )

    @cached_property
    def url_policy(self) -> UrlPolicy:
        from shared.transfer.urls import UrlPolicy

        return UrlPolicy.from_settings(self.settings)

    @cached_property
    def plugins(self) -> PluginRegistry:
        from shared.plugins.registry import default_registry

        return default_registry()

    def http_session(self) -> aiohttp.ClientSession:
        from shared.transfer.http import create_session

        key = id(asyncio.get_running_loop())
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = self._sessions[key] = create_session(self.settings, policy=self.url_policy)
        return session

    def attachment_store(self) -> AttachmentStore:
        from shared.transfer.stores import BlobAttachmentStore, DataLakeAttachmentStore

        key = id(asyncio.get_running_loop())
        store = self._stores.get(key)
        if store is None:
            if self.settings.attachment_api is AttachmentApi.DFS:
                store = DataLakeAttachmentStore.from_settings(self.settings, self.storage)
            else:
                store = BlobAttachmentStore.from_settings(self.settings, self.storage)
            self._stores[key] = store
        return store

    async def aclose(self) -> None:
        """Close the clients bound to the running loop."""
        key = id(asyncio.get_running_loop())
        session = self._sessions.pop(key, None)
        if session is not None:
            await session.close()
        store = self._stores.pop(key, None)
        if store is not None:
            await store.close()


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Install ``runtime`` (or clear it so the next call reads the environment again)."""
    global _runtime
    get_settings.cache_clear()
    _runtime = runtime
