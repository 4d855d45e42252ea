"""The connector registry: connectors stored in the hub's database, their API keys, certificates and audit log.

What it produces for the rest of the hub: the routing table (``routing_table``), the trust store with every
connector's certificates pinned for its code (``trust_store``), caller authentication (``authenticate``) and
the deny-by-default access check of an envelope header (``authorize``) and of a dossier packet's body against its
sender (``authorize_dossier``: dossier ownership).

API keys look like ``lt_<8 hex id>_<token_urlsafe(32)>``. The id part is not secret: it is stored and indexed
(``api_key_prefix``) so a lookup is one indexed read, followed by a constant-time compare of the hash.
Hash choice: salted SHA-256, not scrypt — the key carries 256 random bits, so a slow KDF adds no protection
against guessing and would cost milliseconds on every API request.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from adapters.link_hosts import HostAllowList
from hub.dossier.refunds import RULE as REFUND_RULE
from hub.dossier.refunds import refund_refusal
from hub.errors import CertificateError, Issue, SpecInvalidError, UnknownConnectorError
from hub.exchange.pipeline import STATUS_TYPE, SYNC_TYPE
from hub.exchange.routing import DestinationConfig, Route, RoutingTable
from hub.packets.dossier import DossierStatusUpdate
from hub.packets.payment import PaymentRequest
from hub.registry.spec import ConnectorSpec, certificate_from_pem, certificate_pem
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import TrustStore
from hub.store import DossierParty, Store
from hub.store import audit as audit_log
from hub.store.schema import connector_certificates, connectors, registry_audit

API_KEY_PREFIX = "lt_"
_KEY_ID_HEX = 8  # characters of the non-secret key id
_PREFIX_LEN = len(API_KEY_PREFIX) + _KEY_ID_HEX  # "lt_" + id: what is stored in api_key_prefix
SYSTEM_ACTOR = "system"


# ---------------------------------------------------------------- API keys


def new_api_key() -> tuple[str, str, str]:
    """A new key: ``(plaintext, prefix, hash)``. Only the prefix (non-secret id) and the hash are stored."""
    prefix = f"{API_KEY_PREFIX}{secrets.token_hex(_KEY_ID_HEX // 2)}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_api_key(key)


def hash_api_key(key: str, salt: bytes | None = None) -> str:
    """``sha256$<salt hex>$<digest hex>`` of the whole key with a per-key random salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    return f"sha256${salt.hex()}${hashlib.sha256(salt + key.encode()).hexdigest()}"


def api_key_prefix(key: str) -> str | None:
    """The stored, non-secret id part of a well-formed key (``lt_xxxxxxxx``), else ``None``."""
    if len(key) < _PREFIX_LEN + 2 or not key.startswith(API_KEY_PREFIX) or key[_PREFIX_LEN] != "_":
        return None
    return key[:_PREFIX_LEN]


def api_key_matches(key: str, stored: str) -> bool:
    """Constant-time check of ``key`` against a stored ``hash_api_key`` value."""
    try:
        algorithm, salt_hex, _digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if algorithm != "sha256":
        return False
    return hmac.compare_digest(hash_api_key(key, salt).encode(), stored.encode())


# ---------------------------------------------------------------- what the registry gives back


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A certificate registered for a connector (active while ``removed_at`` is ``None``)."""

    fingerprint: str
    pem: str
    subject: str
    not_before: datetime
    not_after: datetime
    added_at: datetime
    removed_at: datetime | None = None

    def days_left(self, at: datetime | None = None) -> int:
        return (self.not_after - (at or Store.now())).days

    @property
    def certificate(self) -> x509.Certificate:
        return _load_pem(self.pem)

    def summary(self) -> dict[str, Any]:
        """What the audit log and ``show`` record of a certificate (not the PEM)."""
        return {"fingerprint": self.fingerprint, "subject": self.subject, "not_after": self.not_after.isoformat()}


@dataclass(frozen=True, slots=True)
class Connector:
    """A registered connector: its spec (with the active certificates), state and key id (never the key)."""

    code: str
    kind: str
    name: str
    spec: ConnectorSpec
    enabled: bool
    api_key_prefix: str | None
    created_at: datetime
    updated_at: datetime
    certificates: tuple[CertificateInfo, ...] = ()

    @property
    def sends(self) -> tuple[str, ...]:
        return self.spec.sends

    @property
    def receives(self) -> tuple[str, ...]:
        return self.spec.receives

    @property
    def endpoint(self) -> str | None:
        return self.spec.endpoint.url if self.spec.endpoint else None

    def destination(self) -> DestinationConfig | None:
        """How the hub delivers to this connector, or ``None`` for a push-only partner (no endpoint)."""
        spec = self.spec
        if spec.endpoint is None:
            return None
        return DestinationConfig(
            endpoint=spec.endpoint.url,
            transport=spec.endpoint.transport,
            kind=spec.kind,
            credentials=spec.endpoint.credentials,
            retry_delays_s=tuple(spec.retry.delays_s),
            jitter=spec.retry.jitter,
            concurrency=spec.concurrency,
            timeout_s=spec.timeout_s,
            circuit_failures=spec.circuit.failures,
            circuit_cooldown_s=spec.circuit.cooldown_s,
            profile=spec.profile,
            profile_values=dict(spec.profile_values),
            templates=dict(spec.templates),
        )

    def cert_expiry_days(self, at: datetime | None = None) -> int | None:
        """Days until the soonest active certificate expires (``None`` without certificates)."""
        return min((c.days_left(at) for c in self.certificates), default=None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for the API and the audit log): no API key, no hash, certificates summarised."""
        return {
            "code": self.code,
            "kind": self.kind,
            "name": self.name,
            "enabled": self.enabled,
            "api_key_id": self.api_key_prefix,
            "spec": self.spec.public(),
            "certificates": [c.summary() for c in self.certificates],
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One registry change: who did what to which connector, with the state before and after."""

    id: int
    actor: str
    action: str
    code: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


def _audit_state(connector: Connector | None) -> dict[str, Any] | None:
    if connector is None:
        return None
    state = connector.as_dict()
    del state["created_at"], state["updated_at"]
    return state


# ---------------------------------------------------------------- the registry


PARTIES_KEPT = 100_000  # known (connector, dossier) parties kept in memory per process (a few MB)


@dataclass
class Registry:
    """Connectors in the hub's store. Thread-safe like the store: every public method is one transaction."""

    store: Store
    hub_code: str = ""  # the hub's own agency code (default: ``LIENTHONG_HUB_CODE``)
    #: How long a connector read for the hot path (``authenticate``, ``authorize``) is reused. Changes made
    #: through this instance apply at once; other processes see them within this many seconds.
    cache_ttl_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.hub_code:
            from hub.config import get_settings

            self.hub_code = get_settings().hub_code
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()
        # (connector, dossier) pairs known to be parties. Only the positive answer is kept: the message log is
        # append-only, so a party stays one, and a connector's repeated updates of a dossier skip the store read.
        self._parties: OrderedDict[tuple[str, str], None] = OrderedDict()

    def _cached(self, kind: str, key: str, load: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get((kind, key))
        if hit is not None and now - hit[0] < self.cache_ttl_s:
            return hit[1]
        value = load()
        with self._cache_lock:
            self._cache[(kind, key)] = (now, value)
        return value

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.store.transaction() as conn:
            yield conn
        with self._cache_lock:
            self._cache.clear()

    def _read(self) -> AbstractContextManager[Connection]:
        return self.store.transaction(readonly=True)

    # ------------------------------------------------------------ changes

    def add(self, spec: ConnectorSpec, *, actor: str) -> tuple[Connector, str | None]:
        """Register ``spec``, or update the connector with its code to match it.

        Returns the connector and, when it was created, its new API key in plaintext — the only time it is
        ever available. An update keeps the key; its certificates become exactly the spec's (new ones added,
        missing ones removed), and ``enabled`` follows the spec. An update that changes nothing is not audited.
        Raises ``SpecInvalidError`` for a code that is the hub's own or collides with another connector's, or a
        certificate registered for another connector (``_refusals``).
        """
        now = self.store.now()
        with self._write() as conn:
            before = self._get(conn, spec.code, lock=True)
            issues = self._refusals(conn, spec, new=before is None)
            if issues:
                raise SpecInvalidError(f"connector {spec.code} cannot be registered", issues)
            key: str | None = None
            values = {"kind": spec.kind, "name": spec.name, "spec": spec.stored(), "enabled": spec.enabled}
            if before is None:
                key, prefix, hashed = new_api_key()
                conn.execute(
                    connectors.insert().values(
                        code=spec.code, api_key_hash=hashed, api_key_prefix=prefix, created_at=now, updated_at=now,
                        **values,
                    )
                )  # fmt: skip
            else:
                conn.execute(connectors.update().where(connectors.c.code == spec.code).values(**values))
            self._sync_certificates(conn, spec.code, spec.certificates, now)
            after = self._require(conn, spec.code)
            if before is None:
                self._audit(conn, actor, "create", spec.code, None, after, now)
            elif _audit_state(before) != _audit_state(after):
                conn.execute(connectors.update().where(connectors.c.code == spec.code).values(updated_at=now))
                after = self._require(conn, spec.code)
                self._audit(conn, actor, "update", spec.code, before, after, now)
        return after, key

    def rotate_key(self, code: str, *, actor: str) -> str:
        """Replace the connector's API key; the old one stops working at once. Returns the new key (shown once)."""
        now = self.store.now()
        with self._write() as conn:
            before = self._require(conn, code, lock=True)
            key, prefix, hashed = new_api_key()
            conn.execute(
                connectors.update()
                .where(connectors.c.code == code)
                .values(api_key_hash=hashed, api_key_prefix=prefix, updated_at=now)
            )
            self._audit(
                conn, actor, "rotate-key", code, {"api_key_id": before.api_key_prefix}, {"api_key_id": prefix}, now
            )
        return key

    def disable(self, code: str, *, actor: str) -> Connector:
        """Stop the connector: its key no longer authenticates and nothing is routed to it."""
        return self._set_enabled(code, False, actor)

    def enable(self, code: str, *, actor: str) -> Connector:
        return self._set_enabled(code, True, actor)

    def _set_enabled(self, code: str, enabled: bool, actor: str) -> Connector:
        now = self.store.now()
        with self._write() as conn:
            before = self._require(conn, code, lock=True)
            if before.enabled == enabled:
                return before
            conn.execute(connectors.update().where(connectors.c.code == code).values(enabled=enabled, updated_at=now))
            after = self._require(conn, code)
            self._audit(conn, actor, "enable" if enabled else "disable", code, before, after, now)
        return after

    def add_certificate(self, code: str, pem: str | bytes, *, actor: str) -> CertificateInfo:
        """Register one more certificate for ``code`` (rotation: old and new are both valid until the old one
        is removed). Raises ``CertificateError`` for a certificate that cannot be loaded or breaks the key policy."""
        cert = certificate_from_pem(pem)
        now = self.store.now()
        with self._write() as conn:
            before = self._require(conn, code, lock=True)
            owners = self._owners_of(conn, _fingerprint(cert), code)
            if owners:
                raise CertificateError(
                    f"certificate {_fingerprint(cert)} is registered for {', '.join(owners)}: one connector, "
                    "its own certificates",
                    "certificate-pinned-elsewhere",
                )
            self._sync_certificates(conn, code, [*(c.pem for c in before.certificates), certificate_pem(cert)], now)
            after = self._require(conn, code)
            if _audit_state(before) != _audit_state(after):
                conn.execute(connectors.update().where(connectors.c.code == code).values(updated_at=now))
                self._audit(conn, actor, "add-certificate", code, before, after, now)
        return next(c for c in after.certificates if c.fingerprint == _fingerprint(cert))

    def remove_certificate(self, code: str, pem_or_fingerprint: str | bytes, *, actor: str) -> bool:
        """Retire one certificate of ``code`` (by PEM or SHA-256 fingerprint); ``False`` if it was not active."""
        target = _fingerprint_of(pem_or_fingerprint)
        now = self.store.now()
        with self._write() as conn:
            before = self._require(conn, code, lock=True)
            if target not in {c.fingerprint for c in before.certificates}:
                return False
            self._sync_certificates(conn, code, [c.pem for c in before.certificates if c.fingerprint != target], now)
            conn.execute(connectors.update().where(connectors.c.code == code).values(updated_at=now))
            after = self._require(conn, code)
            self._audit(conn, actor, "remove-certificate", code, before, after, now)
        return True

    # ------------------------------------------------------------ reads

    def get(self, code: str) -> Connector | None:
        with self._read() as conn:
            return self._get(conn, code)

    def require(self, code: str) -> Connector:
        """``get`` that raises ``UnknownConnectorError``."""
        with self._read() as conn:
            return self._require(conn, code)

    def list(self, *, enabled_only: bool = False) -> builtins.list[Connector]:
        """Every connector, by code."""
        with self._read() as conn:
            return self._load(conn, enabled_only=enabled_only)

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(connectors)).scalar_one())

    def authenticate(self, api_key: str | None) -> Connector | None:
        """The enabled connector owning ``api_key``, else ``None`` (unknown, malformed, rotated or disabled)."""
        prefix = api_key_prefix(api_key or "")
        if prefix is None:
            return None

        def load() -> tuple[str, Connector | None] | None:
            with self._read() as conn:
                row = conn.execute(
                    sa.select(connectors.c.code, connectors.c.api_key_hash, connectors.c.enabled).where(
                        connectors.c.api_key_prefix == prefix
                    )
                ).first()
                if row is None or not row.api_key_hash:
                    return None
                return row.api_key_hash, (self._get(conn, row.code) if row.enabled else None)

        found = self._cached("key", prefix, load)
        if found is None or not api_key_matches(api_key or "", found[0]):
            return None
        return found[1]

    def audit(self, code: str | None = None, *, limit: int | None = None) -> builtins.list[AuditEntry]:
        """Registry changes, oldest first (of one connector, or all); ``limit`` keeps the newest ones."""
        query = sa.select(registry_audit).order_by(registry_audit.c.id.desc())
        if code is not None:
            query = query.where(registry_audit.c.code == code)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [AuditEntry(r.id, r.actor, r.action, r.code, r.before, r.after, r.at) for r in reversed(rows)]

    # ------------------------------------------------------------ what the hub derives from it

    def routing_table(self) -> RoutingTable:
        """Message type + sender → destinations: every enabled connector with an endpoint that receives the
        type (a sender never gets its own message back: ``RoutingTable.destinations_for`` drops it); and every
        enabled connector's registered unit (``RoutingTable.units``, what the worker tells partners)."""
        destinations: dict[str, DestinationConfig] = {}
        routes: builtins.list[Route] = []
        units: dict[str, str] = {}
        for connector in self.list(enabled_only=True):
            units[connector.code] = connector.spec.registered_unit
            config = connector.destination()
            if config is None:
                continue
            destinations[connector.code] = config
            routes.extend(Route(type=t, sender="*", to=(connector.code,)) for t in connector.receives)
        return RoutingTable(destinations, routes, units)

    def result_signers(self, code: str) -> tuple[x509.Certificate, ...]:
        """The certificates registered to sign the results of enabled connector ``code`` (``result_signers``);
        read at most every ``cache_ttl_s`` (the worker asks for every finished update it delivers)."""

        def load() -> tuple[x509.Certificate, ...]:
            connector = self.get(code)
            if connector is None or not connector.enabled:
                return ()
            return tuple(_load_pem(pem) for pem in connector.spec.result_signers)

        return self._cached("result-signers", code, load)

    def result_hosts(self, code: str) -> HostAllowList:
        """Where the result links of enabled connector ``code`` may point (``ConnectorSpec.result_host_list``:
        its ``result_hosts``, else its endpoint's host); nowhere for an unknown or disabled one. Cached like
        ``result_signers``."""

        def load() -> HostAllowList:
            connector = self.get(code)
            if connector is None or not connector.enabled:
                return HostAllowList()
            return connector.spec.result_host_list()

        return self._cached("result-hosts", code, load)

    def trust_store(self, anchors: TrustStore | Iterable[x509.Certificate] | None = None) -> TrustStore:
        """``anchors`` (CA certificates, or a trust store whose anchors and pins are kept) with every connector's
        active certificates pinned for its code; the rule they are checked by is ``TrustStore``'s."""
        trust = anchors.copy() if isinstance(anchors, TrustStore) else TrustStore()
        if not isinstance(anchors, TrustStore):
            for cert in anchors or ():
                trust.add(cert)
        for connector in self.list():
            for info in connector.certificates:
                trust.pin(connector.code, info.certificate)
        return trust

    def authorize(self, connector: Connector, header: EnvelopeHeader) -> builtins.list[Issue]:
        """Deny by default: every reason the authenticated ``connector`` may not send this envelope ([] = allowed).

        Rules: ``connector-disabled``; ``sender-is-caller`` (the header's sender is the caller's own code);
        ``type-not-granted`` (the type is in its ``sends``); ``receiver-accepts-type`` (the receiver is the
        hub itself or an enabled connector that receives the type).
        """
        issues: builtins.list[Issue] = []
        if not connector.enabled:
            issues.append(Issue("/", "connector-disabled", f"connector {connector.code} is disabled"))
        if header.sender != connector.code:
            issues.append(
                Issue(
                    "/envelope/header/sender",
                    "sender-is-caller",
                    f"the envelope's sender {header.sender!r} is not the authenticated connector {connector.code!r}",
                )
            )
        if header.message_type not in connector.sends:
            granted = ", ".join(connector.sends) or "nothing"
            issues.append(
                Issue(
                    "/envelope/header/messageType",
                    "type-not-granted",
                    f"connector {connector.code} may not send {header.message_type!r} (granted: {granted})",
                )
            )
        if header.receiver != self.hub_code:
            receiver = (
                connector
                if header.receiver == connector.code
                else self._cached("code", header.receiver, lambda: self.get(header.receiver))
            )
            if receiver is None or not receiver.enabled or header.message_type not in receiver.receives:
                why = (
                    "is not a registered connector"
                    if receiver is None
                    else "is disabled"
                    if not receiver.enabled
                    else f"does not receive {header.message_type!r}"
                )
                issues.append(
                    Issue(
                        "/envelope/header/receiver",
                        "receiver-accepts-type",
                        f"receiver {header.receiver!r} {why}; address the hub ({self.hub_code}) or a connector "
                        "that receives this type",
                    )
                )
        return issues

    def authorize_dossier(
        self, connector: Connector, header: EnvelopeHeader, body: BaseModel | None
    ) -> builtins.list[Issue]:
        """Dossier ownership: every reason ``connector`` may not send this ``dossier.status`` or ``dossier.sync``
        body ([] = allowed; other types, and bodies that could not be decoded, are not its business).

        Rules: ``source-is-sender`` (a ``dossier.status``'s ``sourceSystem`` is the sender's registered unit, so a
        connector cannot speak for another agency); ``dossier-not-yours`` (the sender is party to the dossier: the
        registry names it the handling system (``handles``), or it sent or was routed a message about it; the first
        ``dossier.sync`` of a dossier nothing is logged about makes a ``provincial`` sender a party). Costs one
        indexed store read unless ``handles`` decides. The message is the same whether the dossier exists or not.
        A ``payment.request`` of kind ``refund`` for a resolved dossier (status 9 or 10) is refused
        (``refund-dossier-resolved``, Tiền Giang Điều 17.4).
        """
        code = getattr(body, "dossier_code", None)
        if isinstance(body, PaymentRequest) and body.kind == "refund":
            return self._refund_issues(body)
        if header.message_type not in (STATUS_TYPE, SYNC_TYPE) or not isinstance(code, str):
            return []
        issues: builtins.list[Issue] = []
        unit = connector.spec.registered_unit
        if isinstance(body, DossierStatusUpdate) and body.source_system != unit:
            issues.append(
                Issue(
                    "/envelope/body/sourceSystem",
                    "source-is-sender",
                    f"sourceSystem {body.source_system!r} is not the sender's registered unit {unit!r}",
                )
            )
        found = self._party(connector, code)
        if not found.party:
            creates = header.message_type == SYNC_TYPE and connector.kind == "provincial" and not found.known
            if not creates:
                issues.append(
                    Issue(
                        "/envelope/body/dossierCode",
                        "dossier-not-yours",
                        f"{connector.code} is not party to dossier {code}: it has not sent or been routed a message "
                        "about it, and the registry does not name it the handling system",
                    )
                )
        return issues

    def _refund_issues(self, body: PaymentRequest) -> builtins.list[Issue]:
        """A refund of a resolved dossier's fees is refused (Tiền Giang Điều 17.4; ``hub.dossier.refunds``)."""
        record = self.store.dossier(body.dossier_code)
        why = refund_refusal(body.dossier_code, None if record is None else record.status)
        return [] if why is None else [Issue("/envelope/body/dossierCode", REFUND_RULE, why)]

    def is_party(self, connector: Connector, dossier_code: str) -> bool:
        """Whether ``connector`` is party to the dossier: the registry names it the handling system (``handles``),
        or it sent or was routed a message about it (one indexed store read)."""
        return self._party(connector, dossier_code).party

    def _party(self, connector: Connector, dossier_code: str) -> DossierParty:
        if connector.spec.handles_dossier(dossier_code):
            return DossierParty(known=True, party=True)
        key = (connector.code, dossier_code)
        with self._cache_lock:
            if key in self._parties:
                self._parties.move_to_end(key)
                return DossierParty(known=True, party=True)
        found = self.store.dossier_party(dossier_code, connector.code)
        if found.party:
            with self._cache_lock:
                self._parties[key] = None
                while len(self._parties) > PARTIES_KEPT:
                    self._parties.popitem(last=False)
        return found

    # ------------------------------------------------------------ internals

    def _refusals(self, conn: Connection, spec: ConnectorSpec, *, new: bool) -> builtins.list[Issue]:
        """Why ``spec`` cannot be registered: one connector, one code, its own certificates.

        Rules: ``code-is-hub`` (the hub's own code, compared without case and surrounding blanks: the hub's
        messages carry it); ``code-collides`` (a new code equal to a registered one but for case or blanks);
        ``certificate-pinned-elsewhere`` (a certificate active for another connector)."""
        issues: builtins.list[Issue] = []
        folded = spec.code.strip().casefold()
        if folded == self.hub_code.strip().casefold():
            issues.append(Issue("code", "code-is-hub", f"{spec.code!r} is the hub's own code ({self.hub_code})"))
        elif new:
            clash = [c for c in conn.execute(sa.select(connectors.c.code)).scalars() if c.strip().casefold() == folded]
            if clash:
                issues.append(
                    Issue("code", "code-collides", f"{spec.code!r} collides with registered connector {clash[0]!r}")
                )
        for index, pem in enumerate(spec.certificates):
            fingerprint = _fingerprint(_load_pem(pem))
            owners = self._owners_of(conn, fingerprint, spec.code)
            if owners:
                issues.append(
                    Issue(
                        f"certificates[{index}]", "certificate-pinned-elsewhere",
                        f"certificate {fingerprint} is registered for {', '.join(owners)}: one connector, its own "
                        "certificates",
                    )
                )  # fmt: skip
        return issues

    @staticmethod
    def _owners_of(conn: Connection, fingerprint: str, code: str) -> builtins.list[str]:
        """The other connectors for which the certificate with ``fingerprint`` is active."""
        query = sa.select(connector_certificates.c.code).where(
            connector_certificates.c.fingerprint == fingerprint,
            connector_certificates.c.removed_at.is_(None),
            connector_certificates.c.code != code,
        )
        return sorted(set(conn.execute(query).scalars()))

    def _get(self, conn: Connection, code: str, *, lock: bool = False) -> Connector | None:
        found = self._load(conn, code=code, lock=lock)
        return found[0] if found else None

    def _require(self, conn: Connection, code: str, *, lock: bool = False) -> Connector:
        found = self._get(conn, code, lock=lock)
        if found is None:
            raise UnknownConnectorError(code)
        return found

    def _load(
        self, conn: Connection, *, code: str | None = None, enabled_only: bool = False, lock: bool = False
    ) -> builtins.list[Connector]:
        query = sa.select(connectors).order_by(connectors.c.code)
        certs = sa.select(connector_certificates).where(connector_certificates.c.removed_at.is_(None))
        if code is not None:
            query = query.where(connectors.c.code == code)
            certs = certs.where(connector_certificates.c.code == code)
        if enabled_only:
            query = query.where(connectors.c.enabled.is_(True))
        if lock and self.store.dialect == "postgresql":
            query = query.with_for_update()
        rows = conn.execute(query).all()
        if not rows:
            return []
        by_code: dict[str, builtins.list[CertificateInfo]] = {}
        for c in conn.execute(certs.order_by(connector_certificates.c.id)).all():
            by_code.setdefault(c.code, []).append(
                CertificateInfo(
                    c.fingerprint, c.pem, _subject(c.pem), c.not_before, c.not_after, c.added_at, c.removed_at
                )
            )
        result = []
        for r in rows:
            infos = tuple(by_code.get(r.code, ()))
            spec = ConnectorSpec.from_stored(r.spec, [i.pem for i in infos], r.enabled)
            result.append(
                Connector(r.code, r.kind, r.name, spec, r.enabled, r.api_key_prefix, r.created_at, r.updated_at, infos)
            )
        return result

    def _sync_certificates(self, conn: Connection, code: str, pems: Iterable[str], now: datetime) -> None:
        """Make ``pems`` exactly the active certificates of ``code``."""
        wanted: dict[str, x509.Certificate] = {}
        for pem in pems:
            cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
            wanted.setdefault(_fingerprint(cert), cert)
        active = {
            r.fingerprint: r.id
            for r in conn.execute(
                sa.select(connector_certificates.c.id, connector_certificates.c.fingerprint).where(
                    connector_certificates.c.code == code, connector_certificates.c.removed_at.is_(None)
                )
            )
        }
        gone = [row_id for fp, row_id in active.items() if fp not in wanted]
        if gone:
            conn.execute(
                connector_certificates.update().where(connector_certificates.c.id.in_(gone)).values(removed_at=now)
            )
        new = [
            {
                "code": code,
                "fingerprint": fp,
                "pem": certificate_pem(cert),
                "not_before": cert.not_valid_before_utc,
                "not_after": cert.not_valid_after_utc,
                "added_at": now,
            }
            for fp, cert in wanted.items()
            if fp not in active
        ]
        if new:
            conn.execute(connector_certificates.insert(), new)

    @staticmethod
    def _audit(
        conn: Connection,
        actor: str,
        action: str,
        code: str,
        before: Connector | Mapping[str, Any] | None,
        after: Connector | Mapping[str, Any] | None,
        at: datetime,
    ) -> None:
        def state(value: Connector | Mapping[str, Any] | None) -> dict[str, Any] | None:
            return _audit_state(value) if isinstance(value, Connector) or value is None else dict(value)

        old, new = state(before), state(after)
        conn.execute(
            registry_audit.insert().values(
                actor=actor or SYSTEM_ACTOR, action=action, code=code, before=old, after=new, at=at
            )
        )
        # the audit view's row, in the same transaction: registry_audit keeps the full before/after for
        # ``hub connector audit``, the audit log what changed
        audit_log.record(conn, actor=actor or SYSTEM_ACTOR, action=f"registry.{action.replace('-', '_')}", subject=code,
                         detail=_what_changed(old, new), at=at)  # fmt: skip


def _what_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The audit log's ``detail`` of a registry change: the names of the fields it changed (not their values: a
    spec may hold an endpoint's credentials reference, certificates are summarised in ``registry_audit``)."""
    if before is None or after is None:
        return None
    flat_before = {**before.get("spec", {}), **{k: v for k, v in before.items() if k != "spec"}}
    flat_after = {**after.get("spec", {}), **{k: v for k, v in after.items() if k != "spec"}}
    changed = sorted(k for k in flat_before.keys() | flat_after.keys() if flat_before.get(k) != flat_after.get(k))
    return {"changed": changed} if changed else None


def _fingerprint(cert: x509.Certificate) -> str:
    from hub.security import keys

    return keys.fingerprint(cert)


def _fingerprint_of(value: str | bytes) -> str:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if "-----BEGIN" in text:
        try:
            return _fingerprint(x509.load_pem_x509_certificate(text.encode("ascii")))
        except ValueError:
            raise CertificateError("not a PEM certificate") from None
    return text.strip().lower().replace(":", "")


@lru_cache(maxsize=1024)
def _load_pem(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _subject(pem: str) -> str:
    from hub.security import keys

    return keys.common_name(_load_pem(pem))
