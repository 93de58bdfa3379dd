"""The one HTTP client factory, the simulation router and the validated redirect-following GET.

Every outgoing request passes two client middlewares: a TLS guard (verification cannot be turned
off, not even per request) and, when a :class:`UrlPolicy` is given, a policy guard that checks
the real URL. In simulation mode (never in production) a router then sends requests for the
allowlisted hosts to the loopback simulator, keeping path, query and ``Host``; it runs after the
checks, so validation always sees the URL the world would see.

Names are resolved by :class:`PinnedResolver`: every address DNS returns is checked against the
policy, and the connection goes to exactly the addresses it returned (a second lookup, which a
rebinding DNS could answer differently, never happens between check and connect). TLS is still
verified against the host name.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from shared.config import ConfigError
from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.redact import redact_url
from shared.transfer.urls import LOOPBACK_HOSTS, UrlPolicy

if TYPE_CHECKING:
    from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType

    from shared.config import Settings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_MAX_HOPS = 5
CONNECT_TIMEOUT_SECONDS = 30
SOCK_READ_TIMEOUT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class SimulationRouter:
    """Sends requests for ``hosts`` to the loopback ``target`` (the attachment simulator)."""

    target: str
    hosts: frozenset[str]

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        if parts.scheme not in ("http", "https") or (parts.hostname or "") not in LOOPBACK_HOSTS:
            raise ConfigError("SIMULATOR_URL must be a loopback http(s) URL")

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulationRouter | None:
        """A router in simulation mode; ``None`` otherwise. Refused outright in production."""
        if not settings.simulation_mode:
            return None
        if settings.is_production:
            raise ConfigError("SIMULATION_MODE is refused when the environment is production")
        if not settings.simulator_url:
            raise ConfigError("SIMULATION_MODE needs SIMULATOR_URL")
        return cls(settings.simulator_url.rstrip("/"), frozenset(settings.allowed_attachment_hosts))

    def route(self, url: URL) -> URL | None:
        """The simulator URL for ``url`` (same path and query), or ``None`` when not routed."""
        if (url.host or "").lower().rstrip(".") not in self.hosts:
            return None
        base = URL(self.target)
        return url.with_scheme(base.scheme).with_host(base.host or "127.0.0.1").with_port(base.port)


def _tls_guard() -> ClientMiddlewareType:
    async def middleware(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        verify = request.ssl
        if verify is False or (
            isinstance(verify, ssl.SSLContext)
            and (verify.verify_mode == ssl.CERT_NONE or not verify.check_hostname)
        ):
            raise ClassifiedError(Failure.of(ErrorCategory.PERMANENT, "TLS verification cannot be disabled"))
        return await handler(request)

    return middleware


def _policy_guard(policy: UrlPolicy) -> ClientMiddlewareType:
    async def middleware(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        policy.check(str(request.url))
        return await handler(request)

    return middleware


def _router_middleware(router: SimulationRouter) -> ClientMiddlewareType:
    async def middleware(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        routed = router.route(request.url)
        if routed is not None:
            # The Host header was set from the real URL when the request was built; only the
            # connection target changes.
            request.url = routed
        return await handler(request)

    return middleware


def _host_headers_middleware(host_headers: Mapping[str, Mapping[str, str]]) -> ClientMiddlewareType:
    hosts = {host.lower().rstrip("."): dict(headers) for host, headers in host_headers.items()}

    async def middleware(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        extra = hosts.get((request.url.host or "").lower().rstrip("."))
        if extra:
            request.headers.update(extra)
        return await handler(request)

    return middleware


class PinnedResolver(AbstractResolver):
    """Resolves a name, then refuses it if any address it resolves to is not allowed (private,
    loopback, link-local, reserved: :meth:`UrlPolicy.address_allowed`). aiohttp connects to the
    addresses returned here and caches them, so what was checked is what is connected to."""

    def __init__(self, policy: UrlPolicy, dns: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._dns = dns if dns is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._dns.resolve(host, port, family)
        refused = [answer["host"] for answer in answers if not self._policy.address_allowed(answer["host"])]
        if refused or not answers:
            reason = f"resolves to {refused[0]}, not a public address" if refused else "resolves to nothing"
            raise ClassifiedError(Failure.of(ErrorCategory.PERMANENT, f"host {host!r} {reason}"))
        return answers

    async def close(self) -> None:
        await self._dns.close()


def create_session(
    settings: Settings,
    *,
    policy: UrlPolicy | None = None,
    router: SimulationRouter | None = None,
    limit: int = 100,
    limit_per_host: int = 10,
    host_headers: Mapping[str, Mapping[str, str]] | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = SOCK_READ_TIMEOUT_SECONDS,
    dns: AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """The HTTP client for outside sources: verified TLS, resolved addresses checked and pinned,
    bounded pool, connect and per-read timeouts.

    ``router`` defaults to the settings' simulation router (``None`` outside simulation mode);
    addresses are checked against ``policy`` (default: the settings'); ``dns`` is the resolver
    asked first (the system's by default). ``host_headers`` adds headers (credentials) to
    requests for exactly those hosts, decided on the real URL of every request, so a redirect to
    another host never carries them. The whole-transfer deadline is the caller's
    (``TRANSFER_TIMEOUT_SECONDS``); here only the connect and per-read timeouts are set, so a long
    healthy stream is not cut.
    """
    if router is None:
        router = SimulationRouter.from_settings(settings)
    middlewares: list[ClientMiddlewareType] = [_tls_guard()]
    if policy is not None:
        middlewares.append(_policy_guard(policy))
    if host_headers:
        middlewares.append(_host_headers_middleware(host_headers))
    if router is not None:
        middlewares.append(_router_middleware(router))
    resolver = PinnedResolver(policy if policy is not None else UrlPolicy.from_settings(settings), dns)
    connector = aiohttp.TCPConnector(
        ssl=ssl.create_default_context(),
        limit=limit,
        limit_per_host=limit_per_host,
        ttl_dns_cache=60,
        resolver=resolver,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        middlewares=tuple(middlewares),
        trust_env=False,
        auto_decompress=False,
        raise_for_status=False,
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """An open response and the real URL it came from (after redirects)."""

    response: aiohttp.ClientResponse
    url: str
    hops: int


@asynccontextmanager
async def get_following_redirects(
    session: aiohttp.ClientSession,
    url: str,
    *,
    policy: UrlPolicy,
    headers: Mapping[str, str] | None = None,
    max_hops: int = DEFAULT_MAX_HOPS,
    check_hop: Callable[[str], None] | None = None,
) -> AsyncIterator[Fetched]:
    """GET ``url``, following redirects by hand: each hop is validated before any request to it.

    ``check_hop`` adds per-hop rules (e.g. presigned expiry). A relative ``Location`` resolves
    against the real URL of the hop. A redirect without ``Location`` is returned as is.
    """
    current = url
    for hop in range(max_hops + 1):
        policy.check(current)
        if check_hop is not None:
            check_hop(current)
        response = await session.get(URL(current, encoded=True), headers=headers, allow_redirects=False)
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            try:
                yield Fetched(response, current, hop)
            except BaseException:
                response.close()
                raise
            response.release()
            return
        response.release()
        target = urljoin(current, location)
        try:
            policy.check(target)
        except ClassifiedError as exc:
            raise ClassifiedError(
                Failure.of(
                    ErrorCategory.PERMANENT, f"redirect hop {hop + 1} from {redact_url(current)}: {exc}"
                )
            ) from None
        current = target
    raise ClassifiedError(
        Failure.of(ErrorCategory.PERMANENT, f"more than {max_hops} redirects from {redact_url(url)}")
    )
