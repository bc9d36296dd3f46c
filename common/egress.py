"""Where the system may send requests of its own: the webhook target policy (no SSRF).

A callback URL is refused when it carries credentials, is not http(s), or when its host resolves
to any address that is not publicly routable — loopback, private, link-local, CGNAT, multicast,
reserved, unspecified, or such an address embedded in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64) —
or to the API, broker or object store. Numeric host forms (2130706433, 0x7f.1, 127.1, 0177.0.0.1)
are resolved the way every socket resolves them, so they are judged by the address they name.

The API checks a URL when a job is submitted; the notifier checks again at send time and connects
to the very addresses it checked (a name that resolves elsewhere by then is judged again), so DNS
rebinding gains nothing. WEBHOOK_ALLOWED_NETWORKS lets chosen non-public networks through (a
receiver inside the operator's network; the tests' receiver on 127.0.0.1), except the system's own
endpoints.
"""

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[IPAddress]]

# Not flagged by `ipaddress` in every Python version, or worth naming on their own.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_URL_LENGTH = 2048


class UnsafeTarget(ValueError):
    """The URL may not be called; the message says why (and is safe to show the client)."""


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, as the socket layer would connect to it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeTarget(f"host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeTarget(f"host {host!r} does not resolve")
    return addresses


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_kind(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None if it is one."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return non_public_kind(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("carrier-grade NAT", address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not publicly routable", not address.is_global),
    )
    return next((kind for kind, flagged in checks if flagged), None)


@dataclass(frozen=True)
class EgressPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    # The system's own endpoints (address, port): never a webhook target, even where allowed.
    own_endpoints: frozenset[tuple[IPAddress, int]] = frozenset()
    resolver: Resolver = resolve

    @classmethod
    def build(
        cls, allowed_networks: str, own_endpoints: Iterable[tuple[str, int]], resolver: Resolver = resolve
    ) -> "EgressPolicy":
        """WEBHOOK_ALLOWED_NETWORKS as text, and the (host, port) of the system's own services,
        resolved here (`Settings.own_endpoints`)."""
        return cls(
            allowed_networks=parse_networks(allowed_networks),
            own_endpoints=frozenset(_resolved(own_endpoints, resolver)),
            resolver=resolver,
        )

    def check_address(self, address: IPAddress, port: int) -> None:
        embedded = _embedded_ipv4(address)
        for candidate in filter(None, (address, embedded)):
            if (candidate, port) in self.own_endpoints:
                raise UnsafeTarget(f"{candidate}:{port} is one of this system's own services")
        if any(
            address in network or (embedded is not None and embedded in network) for network in self.allowed_networks
        ):
            return
        kind = non_public_kind(address)
        if kind:
            shown = f"{embedded}, inside {address}" if embedded is not None else str(address)
            raise UnsafeTarget(f"it points to a {kind} address ({shown})")

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for host:port; every one must pass, or none is used."""
        addresses = self.resolver(host, port)
        for address in addresses:
            self.check_address(address, port)
        return addresses

    def check_url(self, url: str) -> str:
        """The URL, normalised, if a webhook may be sent to it; UnsafeTarget naming why not."""
        host, port, normalised = parse_callback_url(url)
        self.addresses(host, port)
        return normalised


def parse_callback_url(url: str) -> tuple[str, int, str]:
    """Syntax checks: http(s), a host, no credentials. Parsed as the HTTP client parses it."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"it is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise UnsafeTarget("it contains spaces or control characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UnsafeTarget("it is not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeTarget("only http and https URLs are called")
    if parsed.userinfo or "@" in (urlsplit(url).netloc or ""):
        raise UnsafeTarget("it carries credentials (user:password@); put them elsewhere")
    if not parsed.host:
        raise UnsafeTarget("it has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.host, port, str(parsed)


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in filter(None, (item.strip() for item in spec.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: {part!r} is not a network ({exc})") from None
    return tuple(networks)


def _resolved(endpoints: Iterable[tuple[str, int]], resolver: Resolver) -> Iterable[tuple[IPAddress, int]]:
    for host, port in endpoints:
        try:
            for address in resolver(host, port):
                yield address, port
        except UnsafeTarget:
            continue  # a name that does not resolve here cannot be reached from here either
