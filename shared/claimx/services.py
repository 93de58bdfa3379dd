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
from shared.config import Settings
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

    async def aclose(self) -> None:
        clients = self._clients.pop(id(asyncio.get_running_loop()), None)
        if clients is not None:
            await clients.api.close()
            await clients.downloads.close()
