"""The process's one runtime: every dependency built once and reused by every invocation (clients
are expensive), and shared by ingest, activities and timers alike.

Functions call :func:`get_runtime`. The composition root (``function_app.py``) hands over the
concrete plugins with :func:`use_plugins`; the local host and tests call :func:`reset_runtime`
after changing the environment. Loop-bound async clients are kept per event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceExistsError

from shared.claimx.tables import CLAIMX_TABLES
from shared.clock import utc_now
from shared.config import Settings, get_settings
from shared.lake.lakehouse import Lakehouse
from shared.lake.staging import StagingTable
from shared.lake.tables import TableCatalog
from shared.plugins.registry import PluginRegistry
from shared.pool import IoPool
from shared.state.deadletter import DeadLetterStore
from shared.state.dedup import LATCH_SHARDS, DedupLatch
from shared.state.failures import FailureLedger
from shared.storage import StorageFactory
from shared.xact.tables import XACT_TABLES

if TYPE_CHECKING:
    import aiohttp
    from azure.data.tables import TableClient

    from shared.claimx.services import ClaimXServices
    from shared.transfer.stores import AttachmentStore
    from shared.transfer.urls import UrlPolicy

LAKE_TABLES = TableCatalog((*XACT_TABLES, *CLAIMX_TABLES))


class Runtime:
    def __init__(self, settings: Settings, *, plugins: PluginRegistry | None = None) -> None:
        self.settings = settings
        self.storage = StorageFactory(settings)
        self.pool = IoPool()
        self.tables = LAKE_TABLES
        self.plugins = plugins if plugins is not None else PluginRegistry()
        self._sessions: dict[int, aiohttp.ClientSession] = {}
        self._stores: dict[tuple[int, str], AttachmentStore] = {}

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
            shards=min(self.settings.table_shards, LATCH_SHARDS),
            cache_size=self.settings.dedup_cache_size,
            pool=self.pool,
            now=utc_now,
        )

    @cached_property
    def ingest_failures(self) -> FailureLedger:
        return FailureLedger(
            self._table(self.settings.state_table("ingestfailures")),
            shards=self.settings.table_shards,
            pool=self.pool,
        )

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        container = self.storage.blob_service().get_container_client(
            self.settings.state_container("deadletters")
        )
        return DeadLetterStore(  # no call to storage here: the blob fallback must work with Tables down
            self.storage.table_service().get_table_client(self.settings.state_table("deadletters")),
            container,
            shards=self.settings.table_shards,
        )

    @cached_property
    def staging(self) -> StagingTable:
        return StagingTable(
            self.storage.table_service(),
            self.pool,
            table_name=self.settings.state_table("staging"),
            shards=self.settings.table_shards,
        )

    @cached_property
    def lakehouse(self) -> Lakehouse:
        return Lakehouse(
            self.settings, self.storage, tables=self.tables, staging=self.staging, pool=self.pool
        )

    @cached_property
    def url_policy(self) -> UrlPolicy:
        from shared.transfer.urls import UrlPolicy

        return UrlPolicy.from_settings(self.settings)

    def http_session(self) -> aiohttp.ClientSession:
        from shared.transfer.http import create_session

        key = id(asyncio.get_running_loop())
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = self._sessions[key] = create_session(self.settings, policy=self.url_policy)
        return session

    def attachment_store(self, uri: str | None = None) -> AttachmentStore:
        """The store for ``uri`` (default ``XACT_ATTACHMENTS_URI``), one per event loop."""
        from shared.transfer.stores import open_attachment_store

        uri = uri or self.settings.xact_attachments_uri
        key = (id(asyncio.get_running_loop()), uri)
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = open_attachment_store(self.settings, self.storage, uri)
        return store

    @cached_property
    def claimx(self) -> ClaimXServices:
        """ClaimX's per-process parts: API client, circuit breaker, project cache."""
        from shared.claimx.services import ClaimXServices

        return ClaimXServices(self.settings)

    async def aclose(self) -> None:
        """Close the clients bound to the running loop."""
        loop = id(asyncio.get_running_loop())
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()
        for key in [key for key in self._stores if key[0] == loop]:
            await self._stores.pop(key).close()
        if "claimx" in self.__dict__:
            await self.claimx.aclose()

    def close(self) -> None:
        """Write what the dedup latch still queues, then stop the blocking-I/O pool (the process is
        done with this runtime)."""
        try:
            if "dedup" in self.__dict__:
                self.dedup.close()
        finally:
            self.pool.shutdown()


_runtime: Runtime | None = None
_plugin_source: Callable[[], PluginRegistry] = PluginRegistry


def use_plugins(source: Callable[[], PluginRegistry]) -> None:
    """Called once by the composition root: where the runtime gets its plugins."""
    global _plugin_source
    _plugin_source = source


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings(), plugins=_plugin_source())
    return _runtime


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Install ``runtime`` (or clear it so the next call reads the environment again)."""
    global _runtime
    get_settings.cache_clear()
    previous, _runtime = _runtime, runtime
    if previous is not None and previous is not runtime:
        previous.close()
