"""Which hosts a link a partner sends may make the hub call (a result document's URL): an allow-list per connector,
checked before any name is resolved, and the addresses a name resolves to, checked before connecting.

A partner's link is a request the hub makes on the partner's behalf (server-side request forgery): without a check,
a ministry — or anyone holding VBDLIS's security code, its only authentication (PARTNER-FORMATS §5, TH-BV:3) —
could make the workers GET the hub's own services, the cloud metadata address or the provincial network, and learn
from the reasons operators see whether they answer. So:

- the link's host must match one of the connector's patterns (``HostAllowList``): ``host``, ``host:port``,
  ``*.domain`` (any name below the domain, not the domain itself) or ``*.domain:port``; an IP address as
  ``10.0.0.7`` or ``[fd00::7]:8443``. No pattern: nothing is fetched;
- a name that resolves to an address that is not public (loopback, private, link-local, carrier-grade NAT,
  multicast, reserved, unspecified; ``is_internal``) is refused unless the pattern it matched names that host
  exactly and was written by an admin (``explicit``): a wildcard or a default never opens an internal address;
- the connection goes to an address that was checked (``adapters.documents``: the next one only when one cannot be
  connected to): the name is resolved once, so a DNS answer that changes between the check and the connection
  (DNS rebinding) changes nothing. TLS still verifies the certificate for the name (SNI and hostname check), and
  the request carries the name in ``Host``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443}
#: One DNS label (RFC 1123), lower case.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PATTERN = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:\[\]/]+)(?::(?P<port>[0-9]{1,5}))?")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) → the addresses it resolves to``; ``OSError`` when it does not resolve.
Resolver = Callable[[str, int], Sequence[str]]


class HostPatternError(ValueError):
    """A ``result_hosts`` item that is not ``host``, ``host:port``, ``*.domain`` or ``*.domain:port``."""


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One allowed host: ``host`` lower case (an IPv6 address without brackets; a wildcard keeps its ``*.``),
    ``port`` ``None`` for any port. ``explicit``: written by an admin (not derived from the connector's endpoint)."""

    host: str
    port: int | None = None
    explicit: bool = True

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    @property
    def names_exactly(self) -> bool:
        """Whether this pattern opens internal addresses to the host it names: written by an admin, not a wildcard."""
        return self.explicit and not self.wildcard

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            return host.endswith(self.host[1:])  # "*.gov.vn" → ".gov.vn": a name below it, never the domain itself
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def _normal(host: str) -> str:
    """A host as patterns compare it: lower case, no root dot; an IP address in its one canonical text."""
    host = host.strip().lower().rstrip(".")
    literal = ip_literal(host)
    return host if literal is None else str(literal)


def parse_host_pattern(text: str, *, explicit: bool = True) -> HostPattern:
    """A ``result_hosts`` item as a pattern; ``HostPatternError`` saying why it is not one."""
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise HostPatternError(f"{text!r} is not host, host:port, *.domain or *.domain:port")
    host, port_text = match["host"], match["port"]
    port = int(port_text) if port_text else None
    if port is not None and not 1 <= port <= 65535:
        raise HostPatternError(f"{text!r}: the port must be 1-65535")
    if host.startswith("["):
        try:
            return HostPattern(str(ipaddress.IPv6Address(host[1:-1])), port, explicit)  # canonical, as _normal
        except ValueError:
            raise HostPatternError(f"{text!r}: {host} is not an IPv6 address") from None
    host = _normal(host)
    name = host[2:] if host.startswith("*.") else host
    if not _NAME.fullmatch(name) or (host.startswith("*.") and "." not in name):
        raise HostPatternError(
            f"{text!r}: not a host name or IP address (a wildcard is *.domain with at least two labels, e.g. "
            "*.tnmt.gov.vn; * alone would allow any host)"
        )
    return HostPattern(host, port, explicit)


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """The hosts a connector's links may point at (empty: none)."""

    patterns: tuple[HostPattern, ...] = ()

    @classmethod
    def of(cls, items: Sequence[str], *, explicit: bool = True) -> HostAllowList:
        return cls(tuple(parse_host_pattern(item, explicit=explicit) for item in items))

    def match(self, host: str, port: int) -> HostPattern | None:
        """The pattern that lets ``host:port`` through, one naming it exactly first; ``None`` when none does."""
        host = _normal(host)
        found = [p for p in self.patterns if p.matches(host, port)]
        return next((p for p in found if p.names_exactly), found[0] if found else None)

    def __str__(self) -> str:
        return ", ".join(map(str, self.patterns)) or "none"


def is_internal(address: IpAddress) -> bool:
    """Whether ``address`` is not a public unicast address: loopback, private, link-local (cloud metadata at
    169.254.169.254), carrier-grade NAT, multicast, reserved, unspecified; an IPv4-mapped IPv6 address as its IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def ip_literal(host: str) -> IpAddress | None:
    """``host`` as an IP address when it is one (``urlsplit(...).hostname`` strips IPv6 brackets)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection (the system's resolver), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


__all__ = [
    "DEFAULT_PORTS",
    "HostAllowList",
    "HostPattern",
    "HostPatternError",
    "Resolver",
    "ip_literal",
    "is_internal",
    "parse_host_pattern",
    "resolve",
]
