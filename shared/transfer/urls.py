"""SSRF-safe URL validation for attachment sources (docs/architecture.md, section 7), applied
to every redirect hop.

No DNS resolution here on purpose: resolving here and connecting later is open to rebinding, so
this decision rests on the exact host name (allowlist) and on IP literals (always blocked ranges).
The addresses a name resolves to are checked where the connection is made, by the HTTP client's
resolver (:class:`shared.transfer.http.PinnedResolver`), with :meth:`UrlPolicy.address_allowed`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.redact import redact_url

if TYPE_CHECKING:
    from shared.config import Settings

BLOCKED_HOSTS = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "127.0.0.1",
        "0.0.0.0",
        "::1",
        "::",
        "169.254.169.254",
        "fd00:ec2::254",
        "metadata",
        "metadata.google.internal",
        "metadata.aws.internal",
        "metadata.azure.com",
        "instance-data",
    }
)

BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "ff00::/8",
    )
)

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_SIM_SUFFIX = "-simulation"
_SIM_PREFIX = "pcesdopodappv1_"
_DANGEROUS_QUERY = re.compile(r"(?i)\b(file|dict|gopher|ftp|tftp|ldap|jar)://")
# Hosts that only look like names: decimal (2130706433), hex (0x7f.1) or octal (0177.0.0.1) IPv4 forms.
_NUMERIC_HOST = re.compile(r"(?i)^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*$")


def _reject(reason: str, url: str) -> ClassifiedError:
    return ClassifiedError(Failure.of(ErrorCategory.PERMANENT, f"URL rejected: {reason}: {redact_url(url)}"))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_address(host: str) -> bool:
    """True unless ``host`` is an IP address on the public internet: private, loopback,
    link-local, ULA, shared, documentation, multicast and reserved ranges are blocked, and so is
    an IPv6 address that carries a blocked IPv4 one. Anything that is not an address is blocked."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and blocked_address(str(embedded)):
            return True
    if any(address in net for net in BLOCKED_NETWORKS if net.version == address.version):
        return True
    return not address.is_global


def blocked_ip(host: str) -> bool:
    """True when ``host`` is an IP literal in a private, loopback, link-local, ULA or special range."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return blocked_address(host)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return bool(_NUMERIC_HOST.match(host))
    return True


def is_simulation_host(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.endswith(_SIM_SUFFIX) or host.startswith(_SIM_PREFIX)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which attachment URLs may be fetched: exact allowlisted hosts over https, nothing internal.

    ``simulation`` (never together with ``production``) additionally permits loopback and
    ``*-simulation`` hosts over http, for the local simulator.
    """

    allowed_hosts: frozenset[str]
    simulation: bool = False
    production: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls.of(
            settings.allowed_attachment_hosts,
            simulation=settings.simulation_mode,
            production=settings.is_production,
        )

    @classmethod
    def of(
        cls, hosts: tuple[str, ...] | frozenset[str], *, simulation: bool = False, production: bool = False
    ) -> UrlPolicy:
        return cls(
            frozenset(h.strip().lower().rstrip(".") for h in hosts if h.strip()), simulation, production
        )

    @property
    def simulation_allowed(self) -> bool:
        return self.simulation and not self.production

    def address_allowed(self, address: str) -> bool:
        """May a connection go to this resolved address? Public ones only; loopback too in
        simulation mode (development and test only)."""
        if not blocked_address(address):
            return True
        if not self.simulation_allowed:
            return False
        try:
            return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def is_allowed(self, url: str) -> bool:
        try:
            self.check(url)
        except ClassifiedError:
            return False
        return True

    def check(self, url: str) -> None:
        """Raise a PERMANENT :class:`ClassifiedError` (redacted message) unless ``url`` may be fetched."""
        if not url or not url.strip():
            raise _reject("empty URL", "")
        if any(ch in url for ch in " \r\n\t\x00\\"):
            raise _reject("control characters, backslash or whitespace in URL", url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _reject("unparseable URL", url) from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise _reject(f"scheme {scheme or '(none)'!r} is not allowed", url)
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise _reject("credentials in URL are not allowed", url)
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise _reject("no host", url)
        path = unquote(unquote(parts.path))
        if ".." in path.replace("\\", "/").split("/"):
            raise _reject("'..' in path", url)
        if _DANGEROUS_QUERY.search(unquote(parts.query)):
            raise _reject("nested URL scheme in query", url)

        simulated = self.simulation_allowed and is_simulation_host(host)
        if not simulated:
            if host in BLOCKED_HOSTS:
                raise _reject(f"host {host!r} is blocked", url)
            if blocked_ip(host):
                raise _reject(f"host {host!r} is a private or link-local address", url)
            if is_ip_literal(host):
                raise _reject(f"IP literal host {host!r} is not allowed", url)
            if host not in self.allowed_hosts:
                raise _reject(f"host {host!r} is not in the attachment allowlist", url)
            if scheme != "https":
                raise _reject("must be HTTPS", url)
            if port not in (None, 443):
                raise _reject(f"port {port} is not allowed", url)
