"""View models of the operator page, built from the store and the registry.

Plain dataclasses and pure functions (``partner_state``, ``queue_rows``, ``partner_rows``, ``mask_payload``…) so
they are unit-tested without a server; ``snapshot()`` reads everything the live panels show in one go, and the
``/metrics`` gauges (``hub.console.metrics``) are computed from the same snapshot, so the page and the alerts
never disagree.

A partner's state comes from the store (``Store.partner_activity``: the event log's delivery attempts and the
synchronous lookups of ``citizen_lookups``), not from the circuit breakers (those live inside each ``hub worker``
process): over the last ``partner_window_s`` seconds,

- **down**: at least ``DOWN_FAILURES`` failed attempts that were not 4xx rejections, and no success;
- **degraded**: some failures (error rate >= ``DEGRADED_RATE``), 4xx rejections, or deliveries waiting to retry;
- **idle**: no attempt in the window and nothing waiting;
- **healthy**: otherwise, or once attempts succeed again after the latest failure: the row then says when it
  recovered (``recovered_at``), and the failures before no longer drive its state;
- **push_only**: a registered connector without an endpoint (it only sends to the hub), nothing delivered to it.

Rejected payment confirmations (and held receipts) are the rows of ``partner_refusals`` (``GET
/api/v1/partner-refusals``); the intake deadlines are ``hub.dossier.deadlines.overdue_intake`` on the configured
working calendar, the dossiers past their current due date ``hub.dossier.deadlines.overdue_processing``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lxml import etree

from hub.config import Settings
from hub.dossier.deadlines import overdue_intake, overdue_processing
from hub.dossier.validators import mask_personal_id
from hub.logs import mask_ids
from hub.services import HubService
from hub.store import DeadLetter, DestinationStats, MessageTrace, PartnerActivity, TimelineEntry, flow_records

try:
    from zoneinfo import ZoneInfo

    LOCAL_TZ: timezone | Any = ZoneInfo("Asia/Ho_Chi_Minh")
except Exception:  # no tz database on this machine: Vietnam has no daylight saving, UTC+7 all year
    LOCAL_TZ = timezone(timedelta(hours=7), "ICT")

log = logging.getLogger(__name__)

DOWN_FAILURES = 3
DEGRADED_RATE = 0.2
CERT_WARN_DAYS = 30
DEAD_SHOWN = 200  # dead letters listed on the page (the oldest); the count is the true total, the rest paged elsewhere
PREVIEW_CHARS = 1800
PAYLOAD_CHARS = 20_000  # a traced message's masked payload on the page (the download has all of it)
NATIONAL_PORTAL_KIND = "national_portal"
SYNC_TYPE = "dossier.sync"
PAYMENTS_SHOWN = 20
STATES = ("healthy", "degraded", "down", "idle", "push_only")


def local(at: datetime | None) -> str:
    """A time as operators read it: Asia/Ho_Chi_Minh, day first."""
    if at is None:
        return "–"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M:%S")


# ---------------------------------------------------------------------------------------------- queues


@dataclass(frozen=True)
class QueueRow:
    destination: str
    name: str
    ready: int
    in_flight: int
    retrying: int
    dead: int
    delivered: int
    oldest_age_s: float | None
    rate_per_min: float
    too_old: bool

    @property
    def pending(self) -> int:
        return self.ready + self.in_flight + self.retrying

    @property
    def alert(self) -> bool:
        """Stands out on the page: dead letters waiting, or an old message still waiting."""
        return self.dead > 0 or self.too_old


def queue_rows(stats: Iterable[DestinationStats], names: Mapping[str, str], warn_age_s: float) -> list[QueueRow]:
    """One row per destination, the ones that need attention first."""
    rows = [
        QueueRow(
            destination=s.destination,
            name=names.get(s.destination, ""),
            ready=s.queued,
            in_flight=s.delivering,
            retrying=s.retrying,
            dead=s.dead,
            delivered=s.delivered,
            oldest_age_s=s.oldest_pending_age_s,
            rate_per_min=round(s.delivered_last_60s, 1),  # delivered in the last 60 s = per minute
            too_old=s.oldest_pending_age_s is not None and s.oldest_pending_age_s > warn_age_s,
        )
        for s in stats
    ]
    return sorted(rows, key=lambda r: (not r.alert, r.destination))


# ---------------------------------------------------------------------------------------------- partners


def partner_state(activity: PartnerActivity | None, pending: int = 0, retrying: int = 0) -> str:
    """healthy / degraded / down / idle from recent attempts (see the module docstring)."""
    if activity is None or activity.attempts == 0:
        return "degraded" if retrying else "idle" if not pending else "healthy"
    if activity.recovered_at is not None:  # the latest attempts succeed: the failures before are history
        return "degraded" if retrying else "healthy"
    transient = activity.failed - activity.rejected
    if activity.delivered == 0 and transient >= DOWN_FAILURES:
        return "down"
    rate = activity.error_rate or 0.0
    if rate >= DEGRADED_RATE or activity.rejected or retrying:
        return "degraded"
    return "healthy"


@dataclass(frozen=True)
class PartnerRow:
    code: str
    name: str
    kind: str
    enabled: bool
    state: str
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    error_rate: float | None
    attempts: int
    cert_days: int | None
    recovered_at: datetime | None = None  # attempts succeed again since then, after failures in the window

    @property
    def cert_warn(self) -> bool:
        return self.cert_days is not None and self.cert_days < CERT_WARN_DAYS

    @property
    def alert(self) -> bool:
        return self.state == "down" or self.cert_warn

    @property
    def error_pct(self) -> str:
        return "–" if self.error_rate is None else f"{self.error_rate * 100:.0f} %"


def partner_rows(
    connectors: Iterable[Any],
    activities: Iterable[PartnerActivity],
    stats: Iterable[DestinationStats],
    now: datetime | None = None,
) -> list[PartnerRow]:
    """One row per registered connector, plus destinations seen in the store without a registered connector
    (a routing-file hub); down partners and expiring certificates first."""
    by_dest = {a.destination: a for a in activities}
    queues = {s.destination: s for s in stats}
    rows: dict[str, PartnerRow] = {}
    known = {c.code: c for c in connectors}
    for code in sorted(set(known) | set(by_dest) | set(queues)):
        connector = known.get(code)
        activity = by_dest.get(code)
        queue = queues.get(code)
        error = None if activity is None or activity.last_error is None else mask_ids(activity.last_error)
        state = partner_state(activity, 0 if queue is None else queue.pending, 0 if queue is None else queue.retrying)
        if state == "idle" and connector is not None and getattr(connector, "endpoint", None) is None:
            state = "push_only"
        rows[code] = PartnerRow(
            code=code,
            name="" if connector is None else connector.name,
            kind="" if connector is None else str(connector.kind),
            enabled=True if connector is None else bool(connector.enabled),
            state=state,
            last_success_at=None if activity is None else activity.last_success_at,
            last_failure_at=None if activity is None else activity.last_failure_at,
            last_error=error,
            error_rate=None if activity is None else activity.error_rate,
            attempts=0 if activity is None else activity.attempts,
            cert_days=None if connector is None else connector.cert_expiry_days(now),
            recovered_at=None if activity is None or not activity.failed else activity.recovered_at,
        )
    order = {"down": 0, "degraded": 1, "healthy": 2, "idle": 3, "push_only": 4}
    return sorted(rows.values(), key=lambda r: (not r.alert, order[r.state], r.code))


# ---------------------------------------------------------------------------------------------- masking

# Elements holding a person's name or identifiers, by local name. ``name`` is a person's name only under these
# parents (a fee item or a document has a ``name`` too).
NAME_ELEMENTS = frozenset({"fullName", "familyName", "middleName", "givenName", "HoTen", "HoTenNguoiNop", "hoTen"})
PERSON_PARENTS = frozenset({"applicant", "payer", "sender", "receiver", "citizen", "householdHead", "recipient"})
ID_ELEMENTS = frozenset({"personalId", "idNumber", "SoDinhDanh", "SoCMND", "soDinhDanh", "CCCD"})
CONTACT_ELEMENTS = frozenset({"phone", "email", "SoDienThoai"})
ACCOUNT_ELEMENTS = frozenset({"portalAccountId", "oldId", "MaDoiTuong"})  # ids of a person, not of a dossier
ADDRESS_ELEMENTS = frozenset({"address", "detail", "DiaChi", "ChiTiet"})  # where a person lives
BIRTH_ELEMENTS = frozenset({"birthDate", "NgaySinh", "NgayThangNam"})  # kept to the year


def mask_name(text: str) -> str:
    """Each word down to its first letter: ``Nguyễn Văn An`` → ``N***** V** A*``."""
    return " ".join(word[:1] + "*" * (len(word) - 1) for word in text.split())


def _local_name(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def mask_element(root: etree._Element) -> etree._Element:
    """Mask personal data in place (names, personal IDs and account ids, phone, e-mail, addresses; a birth date
    down to its year) and return ``root``."""
    for el in root.iter():
        if not isinstance(el.tag, str) or el.text is None or not el.text.strip():
            continue
        name = _local_name(el)
        parent = el.getparent()
        text = el.text.strip()
        if name in NAME_ELEMENTS or (name == "name" and parent is not None and _local_name(parent) in PERSON_PARENTS):
            el.text = mask_name(text)
        elif name in ID_ELEMENTS or name in CONTACT_ELEMENTS or name in ACCOUNT_ELEMENTS:
            el.text = mask_personal_id(text)
        elif name in ADDRESS_ELEMENTS:
            el.text = mask_name(text)
        elif name in BIRTH_ELEMENTS:
            el.text = text[:4] + re.sub(r"\d", "*", text[4:]) if text[:4].isdigit() else "****"
    return root


def mask_payload(envelope: bytes | None, limit: int = PREVIEW_CHARS) -> str:
    """The envelope's payload, pretty-printed, personal data masked, cut to ``limit`` characters."""
    if not envelope:
        return ""
    from hub.security.envelope import body_payload
    from hub.xmlparse import parse_xml

    try:
        root = parse_xml(envelope)
        try:
            payload = body_payload(root)
        except Exception:
            payload = root
        payload = etree.fromstring(etree.tostring(payload))  # a copy: never touch the stored bytes' tree
        for el in payload.iter():  # drop signatures from the preview
            if _local_name(el) == "Signature" and el.getparent() is not None:
                el.getparent().remove(el)
        etree.cleanup_namespaces(payload)
        text = etree.tostring(mask_element(payload), pretty_print=True, encoding="unicode")
    except Exception:  # not XML we can read: show masked text, never the raw bytes' personal data
        text = envelope.decode("utf-8", "replace")
        text = re.sub(r"(?s)<([\w:]*(?:Name|HoTen)[^>]*)>([^<]*)<", lambda m: f"<{m[1]}>{mask_name(m[2])}<", text)
    text = mask_ids(text)
    return text if len(text) <= limit else text[:limit] + "\n…"


# ---------------------------------------------------------------------------------------------- dead letters


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    message_id: str
    destination: str
    destination_name: str
    dossier_code: str | None
    message_type: str
    reason: str
    last_error: str
    attempts: int
    created_at: datetime
    preview: str


def dead_letter_rows(
    items: Iterable[DeadLetter], names: Mapping[str, str], previews: Mapping[int, str]
) -> list[DeadLetterRow]:
    return [
        DeadLetterRow(
            id=d.id,
            message_id=d.message_id,
            destination=d.destination,
            destination_name=names.get(d.destination, ""),
            dossier_code=d.dossier_code,
            message_type=d.message_type,
            reason=d.reason,
            last_error=mask_ids(d.last_error),
            attempts=d.attempts,
            created_at=d.created_at,
            preview=previews.get(d.delivery_id, ""),
        )
        for d in items
    ]


# ---------------------------------------------------------------------------------------------- deadlines


@dataclass(frozen=True)
class OverdueRow:
    dossier_code: str
    submitted_at: datetime | None
    due_at: datetime | None
    overdue_s: float | None
    overdue_hours: float | None = None  # working hours past the deadline


@dataclass(frozen=True)
class ProcessingRow:
    """A dossier past its current due date and not finished (``overdue_processing``)."""

    dossier_code: str
    due_at: datetime
    status: int | None
    overdue_hours: float  # working hours past the due date


@dataclass(frozen=True)
class SyncLag:
    portal: bool  # a national portal connector is registered
    waiting: int
    oldest_at: datetime | None
    lag_s: float | None


@dataclass(frozen=True)
class CatalogueAge:
    """The procedure catalogue on the panels: its counts, its last successful sync and age, the latest error;
    ``stale`` when never synced or older than ``max_age_s`` (``LIENTHONG_CATALOGUE_MAX_AGE_DAYS``)."""

    procedures: int
    units: int
    fields: int
    synced_at: datetime | None
    age_s: float | None
    max_age_s: float
    last_error: str | None
    running_since: datetime | None

    @property
    def never(self) -> bool:
        return self.synced_at is None

    @property
    def stale(self) -> bool:
        return self.age_s is None or self.age_s > self.max_age_s

    @property
    def max_age_days(self) -> str:
        return f"{self.max_age_s / 86400:g}"


def catalogue_age(store: Any, now: datetime, max_age_days: float) -> CatalogueAge:
    """The catalogue's age at ``now`` (``Store.catalogue_status``)."""
    status = store.catalogue_status()
    running = status.latest.started_at if status.running and status.latest is not None else None
    return CatalogueAge(status.procedures, status.units, status.fields, status.synced_at, status.age_s(now),
                        max_age_days * 86400.0, status.last_error, running)  # fmt: skip


@dataclass(frozen=True)
class PaymentRow:
    """A payment (or refund) confirmation the hub refused (a ``partner_refusals`` row)."""

    id: int
    connector: str
    kind: str
    reference: str | None
    dossier_code: str | None
    rule: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Deadlines:
    overdue: list[OverdueRow]
    sync: SyncLag
    payments: list[PaymentRow]  # the latest PAYMENTS_SHOWN
    payments_by_connector: dict[str, int] = field(default_factory=dict)  # all of them, per payment connector
    overdue_error: str | None = None  # why the intake deadlines could not be computed (the calendar settings)
    catalogue: CatalogueAge | None = None  # the procedure catalogue's age
    processing: list[ProcessingRow] = field(default_factory=list)  # past their due date, not finished

    @property
    def payments_total(self) -> int:
        return sum(self.payments_by_connector.values())

    @property
    def overdue_available(self) -> bool:
        return self.overdue_error is None


def _pick(item: Any, *names: str) -> Any:
    for name in names:
        value = item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)
        if value is not None:
            return value
    return None


def _as_dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _as_dt(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def overdue_rows(items: Iterable[Any], now: datetime) -> list[OverdueRow]:
    """Rows from what the deadline query returns (objects or mappings with a dossier code and times)."""
    rows = []
    for item in items:
        code = _pick(item, "dossier_code", "code")
        if code is None:
            continue
        submitted = _as_dt(_pick(item, "submitted_at", "status_at", "received_at", "at", "since"))
        due = _as_dt(_pick(item, "due_at", "deadline", "deadline_at"))
        overdue = _pick(item, "overdue_s", "overdue_seconds")
        if overdue is None and due is not None:
            overdue = max((now - due).total_seconds(), 0.0)
        hours = _pick(item, "overdue_hours")
        rows.append(
            OverdueRow(
                str(code),
                submitted,
                due,
                None if overdue is None else float(overdue),
                None if hours is None else float(hours),
            )
        )
    return rows


def payment_rows(store: Any) -> list[PaymentRow]:
    """The latest ``PAYMENTS_SHOWN`` refused payment confirmations."""
    return [
        PaymentRow(r["id"], r["connector"], r["kind"], r["reference"], r["dossier_code"], r["rule"],
                   mask_ids(r["reason"]), r["at"])
        for r in flow_records.payment_refusals(store.engine, limit=PAYMENTS_SHOWN)
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- the snapshot


@dataclass
class Snapshot:
    """Everything the live panels show, read at ``now``."""

    now: datetime
    queues: list[QueueRow]
    partners: list[PartnerRow]
    dead_letters: list[DeadLetterRow]
    deadlines: Deadlines
    window_s: float
    warn_age_s: float = 900.0

    @property
    def dead_total(self) -> int:
        return sum(q.dead for q in self.queues)

    @property
    def pending_total(self) -> int:
        return sum(q.pending for q in self.queues)

    @property
    def down_total(self) -> int:
        return sum(1 for p in self.partners if p.state == "down")

    @property
    def overdue_total(self) -> int:
        return len(self.deadlines.overdue)


def deadlines(store: Any, connectors: Sequence[Any], now: datetime, settings: Settings | None = None) -> Deadlines:
    settings = settings or Settings()
    overdue: list[OverdueRow] = []
    processing: list[ProcessingRow] = []
    error = None
    try:
        overdue = overdue_rows(overdue_intake(store, settings, now), now)
        processing = [ProcessingRow(p.dossier_code, p.due_at, p.status, p.overdue_hours)
                      for p in overdue_processing(store, settings, now)]  # fmt: skip
    except (ValueError, LookupError) as exc:  # bad calendar settings or an unknown time zone: said on the page
        log.warning("deadlines: %s", exc)
        error = str(exc)
    portals = [c.code for c in connectors if str(c.kind) == NATIONAL_PORTAL_KIND]
    waiting, oldest = store.oldest_undelivered(portals, SYNC_TYPE) if portals else (0, None)
    sync = SyncLag(bool(portals), waiting, oldest, None if oldest is None else (now - oldest).total_seconds())
    counts = flow_records.payment_refusal_counts(store.engine)
    catalogue = catalogue_age(store, now, settings.catalogue_max_age_days)
    return Deadlines(overdue, sync, payment_rows(store), counts, error, catalogue, processing)


def snapshot(store: Any, registry: Any, *, window_s: float, warn_age_s: float, now: datetime | None = None,
             dead_limit: int | None = None, previews: bool = True, settings: Any = None) -> Snapshot:  # fmt: skip
    """Read the live panels' figures from the store and the registry."""
    now = now or datetime.now(UTC)
    connectors = list(registry.list()) if registry is not None else []
    names = {c.code: c.name for c in connectors}
    stats = store.queue_overview()
    activity = store.partner_activity(window_s)
    dead = store.dead_letters(limit=dead_limit or DEAD_SHOWN)
    shown: dict[int, str] = {}
    for d in dead if previews else ():
        view = store.delivery(d.delivery_id)
        shown[d.delivery_id] = mask_payload(None if view is None else view.envelope)
    return Snapshot(
        now=now,
        queues=queue_rows(stats, names, warn_age_s),
        partners=partner_rows(connectors, activity, stats, now),
        dead_letters=dead_letter_rows(dead, names, shown),
        deadlines=deadlines(store, connectors, now, settings),
        window_s=window_s,
        warn_age_s=warn_age_s,
    )


def hub_snapshot(hub: HubService, *, previews: bool = True) -> Snapshot:
    """``snapshot`` with the hub's own store, registry and settings: the page and the ``/metrics`` gauges read
    the same figures the same way."""
    settings = hub.settings
    return snapshot(
        hub.store,
        hub.registry,
        window_s=settings.partner_window_s,
        warn_age_s=settings.queue_age_warn_s,
        previews=previews,
        settings=settings,
    )


# ---------------------------------------------------------------------------------------------- search


def due_moved(detail: Any) -> tuple[datetime, datetime] | None:
    """(replaced, new) due date of a timeline entry that moved the dossier's, else ``None`` (the page shows it)."""
    from hub.store.due_dates import due_change

    return due_change(detail)


@dataclass
class SearchResult:
    query: str
    trace: MessageTrace | None = None
    dossier_code: str | None = None
    dossier_status: int | None = None
    dossier_due_at: datetime | None = None  # the current due date (``hub.store.due_dates``)
    timeline: list[TimelineEntry] = field(default_factory=list)
    messages: list[MessageTrace] = field(default_factory=list)
    payload: str = ""  # the traced message's payload, masked (its view is audited)

    @property
    def found(self) -> bool:
        return self.trace is not None or bool(self.timeline) or bool(self.messages)


def search(store: Any, query: str) -> SearchResult:
    """A message id → its trace and masked payload (and its dossier's timeline); a dossier code → the dossier's
    timeline and messages (and the trace of its latest message)."""
    query = query.strip()
    result = SearchResult(query)
    if not query:
        return result
    result.trace = store.trace(query)
    code = result.trace.dossier_code if result.trace is not None else query
    if code:
        result.timeline = store.timeline(code)
        result.messages = store.dossier_messages(code)
        record = store.dossier(code)
        result.dossier_status = None if record is None else record.status
        result.dossier_due_at = store.due_date(code)[0]
        if result.timeline or result.messages or record is not None:
            result.dossier_code = code
        if result.trace is None and result.messages:
            latest = result.messages[-1]
            result.trace = store.trace(latest.message_id, latest.sender)
    if result.trace is not None:
        stored = store.message_envelope(result.trace.message_id, result.trace.sender)
        result.payload = "" if stored is None else mask_payload(stored.envelope, limit=PAYLOAD_CHARS)
    return result
