"""The trust view (``/console/trust``): every certificate the hub's trust rests on, with the days left.

- the hub's own signing certificate (``hub.runtime.hub_certificate_path``): every partner verifies it;
- every connector's registered certificates (``connector_certificates``, through the registry): only those sign
  for the connector (``hub.security.signing.TrustStore``); a connector without any is trusted through an anchor;
- the trust anchors: the CA certificates of ``LIENTHONG_TRUST_DIR`` (the demo CA without it).

Levels use the alert rules' thresholds (``deploy/prometheus/alerts.yml``: fewer than 30 days left is a warning,
fewer than 7 critical), so the page and the alerts turn at the same moment; an expired certificate is
``expired``. The alerts read ``/metrics``: the hub's certificate, each connector's soonest one and each anchor
(``hub.metrics.certificate_families``, ``trust_anchor_families``). Pure functions over certificates and
connectors, unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from hub.errors import KeyMaterialError
from hub.security import keys

WARNING_DAYS = 30
CRITICAL_DAYS = 7
LEVELS = ("expired", "critical", "warning", "ok")  # most urgent first


def level(not_after: datetime, now: datetime) -> str:
    """``expired`` / ``critical`` (fewer than 7 days left) / ``warning`` (fewer than 30) / ``ok``."""
    left = not_after - now
    if left <= timedelta(0):
        return "expired"
    if left < timedelta(days=CRITICAL_DAYS):
        return "critical"
    if left < timedelta(days=WARNING_DAYS):
        return "warning"
    return "ok"


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days left (negative once expired), as the partners panel counts them."""
    return (not_after - now).days


@dataclass(frozen=True)
class CertRow:
    """One certificate: whose it is, what it is, and how long it has left."""

    owner: str  # the connector's code, the hub's code, or the CA's name
    owner_name: str
    subject: str
    serial: str  # hex
    fingerprint: str  # SHA-256, hex
    not_before: datetime
    not_after: datetime
    days_left: int
    level: str

    @property
    def alert(self) -> bool:
        return self.level != "ok"


def cert_row(cert: x509.Certificate, now: datetime, *, owner: str, owner_name: str = "") -> CertRow:
    not_after = cert.not_valid_after_utc
    return CertRow(
        owner=owner,
        owner_name=owner_name,
        subject=cert.subject.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        fingerprint=keys.fingerprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=not_after,
        days_left=days_left(not_after, now),
        level=level(not_after, now),
    )


@dataclass(frozen=True)
class TrustView:
    now: datetime
    hub: CertRow | None
    hub_error: str | None  # why the hub's certificate could not be read
    connectors: list[CertRow]
    unpinned: list[tuple[str, str]]  # connectors without a certificate (code, name): trusted through an anchor
    anchors: list[CertRow]
    counts: dict[str, int] = field(default_factory=dict)  # certificates per level

    @property
    def worst(self) -> str:
        return next((name for name in LEVELS if self.counts.get(name)), "ok")


def connector_rows(connectors: Iterable[Any], now: datetime) -> tuple[list[CertRow], list[tuple[str, str]]]:
    """Every active certificate of every connector (most urgent first), and the connectors without one."""
    rows, unpinned = [], []
    for connector in connectors:
        if not connector.certificates:
            unpinned.append((connector.code, connector.name))
        for info in connector.certificates:
            rows.append(cert_row(info.certificate, now, owner=connector.code, owner_name=connector.name))
    return sorted(rows, key=lambda r: (r.not_after, r.owner)), sorted(unpinned)


def trust_view(
    hub_certificate: Path, hub_code: str, connectors: Iterable[Any], anchors: Sequence[x509.Certificate],
    now: datetime | None = None,
) -> TrustView:  # fmt: skip
    """The view of the hub's certificate (read from ``hub_certificate``), the connectors' and the anchors'."""
    now = now or datetime.now(UTC)
    hub, error = None, None
    try:
        hub = cert_row(keys.load_certificate(hub_certificate), now, owner=hub_code)
    except (KeyMaterialError, ValueError, OSError) as exc:  # no key yet (a worker creates the demo one), unreadable
        error = f"{hub_certificate}: {exc}"
    rows, unpinned = connector_rows(connectors, now)
    anchor_rows = sorted(
        (cert_row(cert, now, owner=keys.common_name(cert)) for cert in anchors), key=lambda r: (r.not_after, r.owner)
    )
    counts: dict[str, int] = {}
    for row in [*([hub] if hub else []), *rows, *anchor_rows]:
        counts[row.level] = counts.get(row.level, 0) + 1
    return TrustView(now, hub, error, rows, unpinned, anchor_rows, counts)


def anchor_expiries(anchors: Iterable[x509.Certificate]) -> list[tuple[str, str, datetime]]:
    """Each anchor's name, fingerprint and expiry: ``lienthong_trust_anchor_expiry_timestamp_seconds``."""
    return [(keys.common_name(c), keys.fingerprint(c), c.not_valid_after_utc) for c in anchors]


def hub_trust_view(hub: Any) -> TrustView:
    """``trust_view`` of a running hub (a ``HubService``): its certificate file, its registry, its anchors."""
    from hub.runtime import hub_certificate_path

    connectors = [] if hub.registry is None else hub.registry.list()
    anchors = hub.runtime.trust().anchors
    return trust_view(hub_certificate_path(hub.settings), hub.settings.hub_code, connectors, anchors)
