"""Citizen notifications (Đắk Nông QĐ 04/2019/QĐ-UBND Điều 12, ``../shared/seeds/003_…txt:254-274``): what a
dossier update tells its applicant, and the Vietnamese text it is told in.

Điều 12.2.a names the moments: at intake (the agency has the dossier; when it will be checked and processed), at the
completeness check (complete: when the result is expected; incomplete: why, and what to supplement or correct)
and at the result (ready: how and when to collect it; not resolved: why). Điều 12.2.b names the channels: email and
SMS among others. As events (``Event``), by the status the update reports (TrangThaiHoSo, PARTNER-FORMATS §1
TH-SEED:610-619): 1 ``intake``, 2 ``received``, 3 ``not_received``, 5 ``supplement``, 8 ``stopped``, 9 ``result``.

- ``notice_of_sync`` / ``notice_of_status`` (the outbound mappings of the ``notification`` kind): a ``Notice``, the
  facts of one update that a notification may tell. A ``dossier.status`` names no applicant: the adapter completes
  it (``complete``) from the dossier's latest ``dossier.sync``.
- ``refusal(notice, channel)``: why this channel must not be used (the applicant declined — ``Applicant.notify`` /
  ``notify_channels`` —, or gave no address for it), ``None`` when it may.
- ``Templates``: the shipped Jinja2 templates (``templates/notifications/<event>.<channel>.txt.j2``) with a
  province's overrides (from its connector folder, ``ConnectorSpec.templates``); ``render`` gives the text. An email
  template's first line is the subject, the body follows a blank line.

No personal ID in a notification: the templates are handed only the names listed in ``CONTEXT_NAMES`` (never the
personal or old ID), and every rendered text is scrubbed (``scrub``): the applicant's IDs, and any free-standing
run of 9 or 12 digits (an ID a ministry's free-text reason may quote), keep only their last 4 digits — as the logs
mask them (DOMAIN §5). Pure: templates are compiled from text, nothing is read but the shipped files.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from hub.errors import MappingError, NotificationTemplateError
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from mappings import OutboundMapping, register_outbound

KIND = "notification"
CHANNELS = ("email", "sms")
TEMPLATE_DIR = Path(__file__).with_name("templates") / "notifications"
TEMPLATE_SUFFIX = ".txt.j2"
#: Asia/Ho_Chi_Minh: UTC+7 all year (no daylight saving since 1975); times are told to the applicant in it.
LOCAL_TIME = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")


class Event(StrEnum):
    """A moment Điều 12.2.a says the applicant is told of."""

    INTAKE = "intake"  # Tiếp nhận hồ sơ: the agency has the dossier
    RECEIVED = "received"  # Kiểm tra hồ sơ: complete and valid, the result's expected date
    NOT_RECEIVED = "not_received"  # Kiểm tra hồ sơ: not accepted, and why
    SUPPLEMENT = "supplement"  # Kiểm tra hồ sơ: incomplete, what to supplement or correct
    STOPPED = "stopped"  # Trả kết quả: not resolved, and why
    RESULT = "result"  # Trả kết quả: the result, when and how to collect it


#: The status an update reports → the event it is (TrangThaiHoSo codes, PARTNER-FORMATS §1 TH-SEED:610-619).
EVENT_OF_STATUS: Mapping[int, Event] = MappingProxyType(
    {1: Event.INTAKE, 2: Event.RECEIVED, 3: Event.NOT_RECEIVED, 5: Event.SUPPLEMENT, 8: Event.STOPPED, 9: Event.RESULT}
)
DEFAULT_EVENTS = ",".join(Event)
#: The events told once per dossier (and connector), however often the update is reported again or by whom: a
#: ministry's 9 and the province's sync restating it are one result. A supplement is told once per request
#: (its request time, to the second): a dossier may be sent back for supplements more than once.
ONCE_PER_DOSSIER: frozenset[Event] = frozenset(
    {Event.INTAKE, Event.RECEIVED, Event.NOT_RECEIVED, Event.STOPPED, Event.RESULT}
)
#: Every template name: ``<event>.<channel>``.
TEMPLATE_NAMES: frozenset[str] = frozenset(f"{event}.{channel}" for event in Event for channel in CHANNELS)
#: The names a template may use; nothing else about the applicant or the dossier is handed to it.
CONTEXT_NAMES = (
    "dossier_code", "procedure_name", "unit_name", "applicant_name", "event", "status", "channel", "event_time",
    "due_date", "new_due_date", "reason", "result_by_post", "results",
)  # fmt: skip
_ID_RUN = re.compile(r"(?<!\d)(?:\d{12}|\d{9})(?!\d)")


def parse_events(text: str) -> frozenset[Event]:
    """A profile's ``events`` value (comma-separated event names) as events; ``MappingError`` names an unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in {event.value for event in Event}]
    if unknown:
        raise MappingError(f"unknown notification event(s) {', '.join(unknown)} (known: {DEFAULT_EVENTS})")
    return frozenset(Event(name) for name in names)


@functools.lru_cache(maxsize=256)
def connector_events(profile: str | None, events: str | None) -> frozenset[Event]:
    """The events a notification connector notifies: its ``events`` value, else its profile's default (every
    event); none for a value that does not parse (the spec refuses one: ``notification-events``)."""
    if events is None:
        from mappings import profiles

        try:
            value = profiles.get_profile(profile or "").values.get("events")
        except profiles.UnknownProfileError:
            value = None
        events = DEFAULT_EVENTS if value is None or value.default is None else value.default
    try:
        return parse_events(events)
    except MappingError:
        return frozenset()


def event_of(model: BaseModel | None) -> Event | None:
    """The event a ``dossier.sync`` or ``dossier.status`` is, ``None`` for any other packet or status."""
    if not isinstance(model, DossierSync | DossierStatusUpdate):
        return None
    return EVENT_OF_STATUS.get(int(model.status))


# ---------------------------------------------------------------------------------------------- the facts told


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach the applicant and what they agreed to. ``ids`` are their personal and old ID numbers, kept only
    so that ``scrub`` can make sure no notification carries them."""

    name: str
    email: str | None = None
    phone: str | None = None
    notify: bool | None = None
    channels: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """What one dossier update may tell its applicant (the outbound mapping's result for a ``notification``
    connector). ``at`` is when the update happened (for a supplement, when it was requested: a notification is sent
    once per request; the other events once per dossier, ``ONCE_PER_DOSSIER``); ``None`` when the packet does not
    say (the timeline then records the time the status machine gave the update)."""

    dossier_code: str
    status: int
    event: Event | None
    at: datetime | None = None
    reason: str | None = None
    due_at: datetime | None = None
    new_due_at: datetime | None = None
    procedure_name: str | None = None
    unit_name: str | None = None
    result_by_post: bool | None = None
    results: tuple[str, ...] = ()
    applicant: Contact | None = None  # None: a dossier.status, completed from the dossier's latest dossier.sync


def contact_of(sync: DossierSync) -> Contact:
    applicant = sync.applicant
    ids = tuple(i for i in (applicant.personal_id, applicant.old_id) if i)
    return Contact(
        name=applicant.name, email=applicant.email, phone=applicant.phone, notify=applicant.notify,
        channels=tuple(dict.fromkeys(applicant.notify_channels)), ids=ids,
    )  # fmt: skip


def _sync_moment(sync: DossierSync) -> tuple[datetime | None, str | None, datetime | None]:
    """When the status a ``dossier.sync`` reports happened, the reason it gives (its ``statusReason``, the why of a
    3, 5 or 8, else its note), and a new due date."""
    status = int(sync.status)
    reason = (sync.status_reason or sync.note) if status in (3, 5, 8) else None
    waiting = [s for s in sync.supplements if s.received_at is None]  # the request not answered yet
    supplement = max(waiting, key=lambda s: s.requested_at or datetime.min.replace(tzinfo=UTC), default=None)
    if status == 5 and supplement is not None:
        return supplement.requested_at, supplement.content or reason, supplement.new_due_at
    at = {1: sync.submitted_at, 2: sync.received_at, 3: sync.rejected_at, 9: sync.finished_at}.get(status)
    return at, reason, None


def notice_of_sync(model: BaseModel) -> Notice:
    """The ``Notice`` of a ``dossier.sync`` (the applicant's contact included)."""
    if not isinstance(model, DossierSync):
        raise MappingError(f"a dossier.sync notice needs a DossierSync, not {type(model).__name__}")
    at, reason, new_due_at = _sync_moment(model)
    return Notice(
        dossier_code=model.dossier_code, status=int(model.status), event=event_of(model), at=at, reason=reason,
        due_at=model.due_at, new_due_at=new_due_at, procedure_name=model.procedure_name,
        unit_name=model.receiving_unit_name, result_by_post=model.result_by_post,
        results=tuple(r.name for r in model.results), applicant=contact_of(model),
    )  # fmt: skip


def notice_of_status(model: BaseModel) -> Notice:
    """The ``Notice`` of a ``dossier.status``: the step's content is the reason (what to supplement, why not
    accepted or stopped); a finished step's attachments are the results. No applicant: see ``complete``."""
    if not isinstance(model, DossierStatusUpdate):
        raise MappingError(f"a dossier.status notice needs a DossierStatusUpdate, not {type(model).__name__}")
    status = int(model.status)
    reason = getattr(model, "reason", None) or model.step.content  # a first-class reason where the packet has one
    results = tuple(a.name for a in model.attachments) if status == 9 else ()
    return Notice(
        dossier_code=model.dossier_code, status=status, event=event_of(model), at=model.at, reason=reason,
        new_due_at=model.new_due_at, results=results,
    )  # fmt: skip


def complete(notice: Notice, sync: DossierSync | None) -> Notice:
    """``notice`` with what the dossier's latest ``dossier.sync`` says and the update does not (the applicant,
    procedure, unit, due date, delivery by post, results); unchanged without one."""
    if sync is None:
        return notice
    return replace(
        notice,
        applicant=notice.applicant or contact_of(sync),
        procedure_name=notice.procedure_name or sync.procedure_name,
        unit_name=notice.unit_name or sync.receiving_unit_name,
        due_at=notice.due_at or sync.due_at,
        result_by_post=sync.result_by_post if notice.result_by_post is None else notice.result_by_post,
        results=notice.results or (tuple(r.name for r in sync.results) if notice.status == 9 else ()),
    )


def recipient(notice: Notice, channel: str) -> str | None:
    """The applicant's address on ``channel`` (email address or phone number), ``None`` when none is known."""
    contact = notice.applicant
    if contact is None:
        return None
    return contact.email if channel == "email" else contact.phone


def refusal(notice: Notice, channel: str) -> str | None:
    """Why the applicant must not be told on ``channel`` (their opt-out, or no address for it); ``None``: go ahead."""
    contact = notice.applicant
    if contact is None:
        return "no dossier.sync of this dossier is known: no applicant to notify"
    if contact.notify is False:
        return "the applicant declined notifications (applicant notify=false)"
    if contact.channels and channel not in contact.channels:
        return f"the applicant accepts notifications by {', '.join(contact.channels)} only, not {channel}"
    if recipient(notice, channel) is None:
        return f"the applicant gave no {'email address' if channel == 'email' else 'phone number'}"
    return None


def masked_recipient(address: str) -> str:
    """An address as the timeline shows it: ``n***@example.vn``, ``*******678``."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return "*" * max(len(address) - 3, 0) + address[-3:]


# ---------------------------------------------------------------------------------------------- the text


@dataclass(frozen=True, slots=True)
class Rendered:
    """A notification's text: ``subject`` (email only, else ``""``) and ``text``."""

    subject: str
    text: str


def scrub(text: str, ids: Iterable[str] = ()) -> str:
    """``text`` with the applicant's ``ids`` and any free-standing 9- or 12-digit run masked to its last 4 digits."""
    for value in ids:
        if value:
            text = text.replace(value, _mask(value))
    return _ID_RUN.sub(lambda m: _mask(m.group(0)), text)


def _mask(value: str) -> str:
    return "*" * (len(value) - 4) + value[-4:]


def strip_diacritics(text: str) -> str:
    """Vietnamese without its diacritics (``Hồ sơ đã nhận`` → ``Ho so da nhan``), for SMS gateways that take
    unaccented text only."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def _local(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(LOCAL_TIME).strftime("%H:%M ngày %d/%m/%Y")


def context(notice: Notice, channel: str) -> dict[str, Any]:
    """Everything a template is given (``CONTEXT_NAMES``): never an ID number."""
    return {
        "dossier_code": notice.dossier_code,
        "procedure_name": notice.procedure_name,
        "unit_name": notice.unit_name,
        "applicant_name": notice.applicant.name if notice.applicant else None,
        "event": str(notice.event) if notice.event else None,
        "status": notice.status,
        "channel": channel,
        "event_time": _local(notice.at),
        "due_date": _local(notice.due_at),
        "new_due_date": _local(notice.new_due_at),
        "reason": None if notice.reason is None else notice.reason.strip().rstrip(".") or None,
        "result_by_post": notice.result_by_post,
        "results": list(notice.results),
    }


def _environment() -> SandboxedEnvironment:
    # Plain text, not HTML: nothing to escape. Sandboxed: a province's template reaches no Python internals.
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )


@functools.cache
def default_template(name: str) -> str:
    """The shipped text of template ``name`` (``intake.email``)."""
    if name not in TEMPLATE_NAMES:
        raise NotificationTemplateError(name, f"no such template (known: {', '.join(sorted(TEMPLATE_NAMES))})")
    return (TEMPLATE_DIR / f"{name}{TEMPLATE_SUFFIX}").read_text(encoding="utf-8")


def template_name(file_name: str) -> str | None:
    """The template a file in a connector folder overrides (``intake.sms.txt.j2`` → ``intake.sms``), else ``None``."""
    if not file_name.endswith(TEMPLATE_SUFFIX):
        return None
    name = file_name[: -len(TEMPLATE_SUFFIX)]
    return name if name in TEMPLATE_NAMES else None


class Templates:
    """The shipped templates with a province's ``overrides`` (template name → Jinja2 text), compiled once;
    ``NotificationTemplateError`` for an unknown name or a text that does not compile."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        environment = _environment()
        self.overridden = frozenset(overrides or {})
        self._compiled: dict[str, jinja2.Template] = {}
        for name in sorted(TEMPLATE_NAMES | self.overridden):
            if name not in TEMPLATE_NAMES:
                raise NotificationTemplateError(name, f"no such template (known: {', '.join(sorted(TEMPLATE_NAMES))})")
            text = (overrides or {}).get(name) or default_template(name)
            try:
                self._compiled[name] = environment.from_string(text)
            except jinja2.TemplateSyntaxError as exc:
                raise NotificationTemplateError(name, f"line {exc.lineno}: {exc.message}") from None

    def render(self, notice: Notice, channel: str, *, unaccented: bool = False) -> Rendered:
        """The text of ``notice`` on ``channel``, scrubbed of ID numbers (``scrub``); an email's first line is its
        subject; an SMS is one line. ``unaccented``: without Vietnamese diacritics."""
        if notice.event is None:
            raise MappingError(f"status {notice.status} is not an event the applicant is notified of")
        name = f"{notice.event}.{channel}"
        try:
            raw = self._compiled[name].render(context(notice, channel))
        except jinja2.TemplateError as exc:  # StrictUndefined: a name the hub does not give templates
            raise NotificationTemplateError(name, str(exc)) from None
        text = scrub(raw, notice.applicant.ids if notice.applicant else ())
        if unaccented:
            text = strip_diacritics(text)
        if channel != "email":
            return Rendered("", " ".join(text.split()))
        lines = text.strip().splitlines()
        subject = lines[0].strip() if lines else ""
        if not subject:
            raise NotificationTemplateError(name, "renders no subject (an email template's first line is its subject)")
        return Rendered(subject, "\n".join(lines[1:]).strip("\n") + "\n")


def sample_notice(event: Event) -> Notice:
    """A notice of every field, for checking templates (``hub connector check``)."""
    at = datetime(2025, 11, 24, 2, 30, tzinfo=UTC)
    return Notice(
        dossier_code="000.00.00.H12-251124-0001", status=next(s for s, e in EVENT_OF_STATUS.items() if e is event),
        event=event, at=at, reason="Bổ sung bản vẽ mặt cắt công trình", due_at=at + timedelta(days=15),
        new_due_at=at + timedelta(days=18), procedure_name="Cấp giấy phép xây dựng",
        unit_name="Bộ phận Một cửa tỉnh", result_by_post=False, results=("Giấy phép xây dựng",),
        applicant=Contact("Nguyễn Văn An", "an@example.vn", "0912345678", ids=("001099012345",)),
    )  # fmt: skip


OUTBOUND_SYNC = register_outbound(OutboundMapping(KIND, "dossier.sync", notice_of_sync))
OUTBOUND_STATUS = register_outbound(OutboundMapping(KIND, "dossier.status", notice_of_status))
