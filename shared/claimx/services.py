"""ClaimX's per-process parts, built once: the circuit breaker and the project cache for the
process, the API client, the media session and the media lookup for each event loop (aiohttp
sessions belong to one loop; in Azure there is one)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from shared.claimx.api import ApiSettings, ClaimXApi, claimx_session
from shared.claimx.circuit import CircuitBreaker
from shared.claimx.handlers import Handlers, MediaLookup, ProjectCache
from shared.claimx.poller import ClaimXPoller, CursorStore, HandOn, KustoEventSource, Runner
from shared.config import Settings
from shared.storage import StorageFactory
from shared.transfer.urls import UrlPolicy

MEDIA_CONNECTIONS = 50


@dataclass(slots=True)
class _LoopClients:
    api: ClaimXApi
    media: MediaLookup
    downloads: aiohttp.ClientSession


class ClaimXServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.breaker = CircuitBreaker("claimx_api")
        self.projects = ProjectCache(settings.claimx_project_cache_ttl_seconds)
        self.url_policy = UrlPolicy.from_settings(settings)
        self._clients: dict[int, _LoopClients] = {}
        self._events: KustoEventSource | None = None

    def _loop_clients(self) -> _LoopClients:
        key = id(asyncio.get_running_loop())
        clients = self._clients.get(key)
        if clients is None or clients.api.session.closed:
            api = ClaimXApi.open(self.settings, self.breaker)
            downloads = claimx_session(
                self.settings,
                ApiSettings.from_settings(self.settings),
                policy=self.url_policy,
                limit=MEDIA_CONNECTIONS,
            )
            clients = self._clients[key] = _LoopClients(api, MediaLookup(api), downloads)
        return clients

    def api(self) -> ClaimXApi:
        return self._loop_clients().api

    def download_session(self) -> aiohttp.ClientSession:
        """Media downloads: the credential goes to ClaimX hosts only, every hop is checked."""
        return self._loop_clients().downloads

    def handlers(self) -> Handlers:
        clients = self._loop_clients()
        return Handlers(clients.api, self.projects, clients.media, self.url_policy)

    def poller(self, storage: StorageFactory, *, hand_on: HandOn, run: Runner) -> ClaimXPoller:
        """The Eventhouse poller (``CLAIMX_EVENTHOUSE_CLUSTER_URL`` must be set); its Kusto client
        is built once per process. A loopback URL in simulation mode is queried without a token."""
        settings = self.settings
        if self._events is None:
            url = settings.claimx_eventhouse_cluster_url
            if not url:
                raise ValueError("the ClaimX poller is off: CLAIMX_EVENTHOUSE_CLUSTER_URL is not set")
            local = self.url_policy.simulation_allowed and url.startswith("http://127.0.0.1:")
            self._events = KustoEventSource.open(
                url,
                settings.claimx_eventhouse_database,
                settings.claimx_eventhouse_table,
                local=local,
                credential=None if local else storage.credential,
            )
        container = storage.blob_service().get_container_client(settings.state_container("pollers"))
        return ClaimXPoller(
            self._events, CursorStore(container), hand_on, run, batch_size=settings.claimx_poll_batch_size
        )

    async def aclose(self) -> None:
        clients = self._clients.pop(id(asyncio.get_running_loop()), None)
        if clients is not None:
            await clients.api.close()
            await clients.downloads.close()
