"""The ``notification`` connector kind: tell a dossier's applicant what became of it (Đắk Nông QĐ 04/2019/QĐ-UBND
Điều 12), by email over SMTP (``adapters.smtp``, profile ``notification/email-smtp``) or SMS through an HTTP gateway
(``adapters.sms``, profile ``notification/sms-http``).

The worker hands the adapter the ``Notice`` the outbound mapping made of a routed ``dossier.sync`` or
``dossier.status`` (``mappings.notification``); the adapter then, for one delivery:

1. leaves alone an event the connector does not notify (its profile's ``events``);
2. completes a ``dossier.status``'s notice from the dossier's latest ``dossier.sync`` (``NotificationHooks.dossier``:
   the applicant's contact and consent, the procedure, the due date);
3. sends nothing twice (``NotificationHooks.already``): intake, received, not received, stopped and result are told
   once per dossier — whoever reports them, at whatever time (a ministry's 9 then the province's sync restating
   it) — and a supplement once per request (its request time, to the second); a delivery redelivered after a crash
   finds the first notification on the dossier's timeline. (An update that only restates the dossier's status is
   not even queued for a notification connector: ``hub.store.intake``);
4. honours the applicant's opt-out and channels, and a missing address (``mappings.notification.refusal``):
   recorded on the timeline as ``notify_skipped``, nothing sent;
5. renders the connector's templates (the shipped ones, or the province's from its connector folder), scrubbed of
   ID numbers, and sends — a failure raises the channel's transient or permanent error, so the worker retries it
   like any delivery and dead-letters it to the operator page;
6. records the notification on the timeline (``notified``, the recipient masked) and returns the exact bytes sent
   (the MIME message, or the gateway's JSON body) for the message log.

What it needs of the hub comes through ``NotificationHooks`` (built by the composition root, ``hub.runtime``):
adapters never import the store. The store down while 2 or 3 read it raises ``StoreUnavailableError`` as it is
(nothing was sent): the worker gives the delivery back and waits the outage out, no attempt counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, Protocol

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.sms import SmsGateway
from adapters.smtp import SmtpRelay
from adapters.smtp import send as smtp_send
from hub.errors import MappingError, StoreUnavailableError
from hub.packets.dossier import DossierSync
from mappings.notification import (
    KIND,
    ONCE_PER_DOSSIER,
    Event,
    Notice,
    Rendered,
    Templates,
    complete,
    masked_recipient,
    parse_events,
    recipient,
    refusal,
)

log = logging.getLogger(__name__)

NOTIFIED = "notified"
SKIPPED = "notify_skipped"
CHANNEL_OF_PROFILE = {"notification/email-smtp": "email", "notification/sms-http": "sms"}


@dataclass(frozen=True, slots=True)
class DossierNote:
    """A notification as the dossier's timeline records it: the update it is about (``status``, ``at``: ``None``
    when the update does not say — the store then takes the time the status machine gave that update, never the
    clock's), ``outcome`` (``notified`` or ``notify_skipped``), a readable ``reason`` and the details (channel,
    event, masked recipient, template). ``once``: told once per dossier (``ONCE_PER_DOSSIER``), else once per
    update time (a supplement request)."""

    dossier_code: str
    status: int
    at: datetime | None
    outcome: str
    reason: str
    message_id: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    once: bool = True


class NotificationHooks(Protocol):
    """What the notification adapter needs of the hub (``hub.runtime`` builds it on the process's store)."""

    def dossier(self, dossier_code: str) -> DossierSync | None:
        """The dossier's latest accepted ``dossier.sync``, ``None`` when none is known."""
        ...

    def already(self, connector: str, note: DossierNote) -> bool:
        """Whether ``connector`` already told (or skipped) this: the same dossier and status when ``note.once``,
        else the same dossier, status and time to the second (or the same message)."""
        ...

    def record(self, connector: str, note: DossierNote) -> None:
        """Put ``note`` on the dossier's timeline (source: ``connector``)."""
        ...


class Channel(Protocol):
    """One way of reaching the applicant: sends ``rendered`` and returns the bytes sent, their media type and the
    partner's answer; raises ``TransientDeliveryError`` / ``PermanentDeliveryError``."""

    name: str

    def send(
        self, request: OutboundRequest, notice: Notice, address: str, rendered: Rendered
    ) -> tuple[bytes, str, str]: ...

    def close(self) -> None: ...


_ID_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class EmailChannel:
    """Email through an SMTP relay: one MIME message (UTF-8, quoted-printable) per notification. Its
    ``Message-ID`` is derived from the hub's message id and the connector, so a resend is recognisable."""

    name = "email"

    def __init__(self, relay: SmtpRelay, from_address: str, reply_to: str = "") -> None:
        self.relay = relay
        self.from_address = from_address
        self.reply_to = reply_to
        self.sender = parseaddr(from_address)[1]
        if "@" not in self.sender:
            raise ValueError(f"from_address {from_address!r} holds no email address")

    def message(self, request: OutboundRequest, notice: Notice, address: str, rendered: Rendered) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = formataddr((notice.applicant.name if notice.applicant else "", address))
        message["Subject"] = rendered.subject
        message["Date"] = formatdate(usegmt=True)
        domain = self.sender.rpartition("@")[2]
        ident = _ID_SAFE.sub("-", f"{request.message_id}.{notice.event}.{request.destination}")
        message["Message-ID"] = f"<{ident}@{domain}>"
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        message["X-Lienthong-Dossier"] = notice.dossier_code
        message.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
        return message

    def send(
        self, request: OutboundRequest, notice: Notice, address: str, rendered: Rendered
    ) -> tuple[bytes, str, str]:
        sent, answer = smtp_send(self.relay, self.message(request, notice, address, rendered), self.sender, address)
        return sent, "message/rfc822", f"SMTP {answer}"

    def close(self) -> None:
        pass


class SmsChannel:
    """SMS through the HTTP gateway: the rendered text in one JSON POST."""

    name = "sms"

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def send(
        self, request: OutboundRequest, notice: Notice, address: str, rendered: Rendered
    ) -> tuple[bytes, str, str]:
        sent, answer = self.gateway.send(address, rendered.text, request.message_id)
        return sent, "application/json", answer

    def close(self) -> None:
        self.gateway.close()


class NotificationAdapter(Adapter):
    """One notification connector: its channel, templates and events (see the module docstring)."""

    partner_format = KIND

    def __init__(
        self,
        channel: Channel,
        templates: Templates | None = None,
        *,
        events: frozenset[Event] | None = None,
        unaccented: bool = False,
        hooks: NotificationHooks | None = None,
    ) -> None:
        self.channel = channel
        self.templates = templates or Templates()
        self.events = frozenset(Event) if events is None else events
        self.unaccented = unaccented
        self.hooks = hooks

    def __repr__(self) -> str:
        return f"NotificationAdapter({self.channel.name})"

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        notice = request.mapped("a notification connector")
        if not isinstance(notice, Notice):
            raise PermanentDeliveryError(f"a notification connector takes a dossier update, not {request.message_type}")
        channel = self.channel.name
        if notice.event is None or notice.event not in self.events:
            return DeliveryReceipt(200, f"status {notice.status} is not notified by this connector: nothing sent")
        if notice.applicant is None and self.hooks is not None:
            notice = complete(notice, self._hook("read the dossier's applicant", self.hooks.dossier,
                                                 notice.dossier_code))  # fmt: skip
        note = DossierNote(
            notice.dossier_code, notice.status, notice.at, NOTIFIED, "", request.message_id,
            {"channel": channel, "event": str(notice.event), "template": f"{notice.event}.{channel}"},
            once=notice.event in ONCE_PER_DOSSIER,
        )  # fmt: skip
        if self.hooks is not None:
            if self._hook("read the dossier's timeline", self.hooks.already, request.destination, note):
                return DeliveryReceipt(
                    200, f"{notice.event} already notified by {channel} for this dossier"
                    f"{'' if note.once else ' and request'}: not sent again"
                )
        why = refusal(notice, channel)
        if why is not None:
            self._record(request, _note(note, SKIPPED, f"{notice.event} by {channel} not sent: {why}"))
            return DeliveryReceipt(200, f"not sent: {why}")
        address = recipient(notice, channel)
        assert address is not None  # refusal() said there is one
        try:
            rendered = self.templates.render(notice, channel, unaccented=self.unaccented)
        except MappingError as exc:  # a province's template that does not render: fix it, then replay
            raise PermanentDeliveryError(str(exc)) from None
        sent, sent_type, answer = self.channel.send(request, notice, address, rendered)
        shown = masked_recipient(address)
        self._record(request, _note(note, NOTIFIED, f"{notice.event} sent by {channel} to {shown}", recipient=shown))
        return DeliveryReceipt.for_body(f"{notice.event} by {channel} to {shown}: {answer}", sent, sent_type)

    def _hook(self, what: str, hook: Any, *args: Any) -> Any:
        """A hook's answer (nothing was sent yet). The store being unavailable is raised as it is: an outage, which
        the worker waits out and then delivers again — not the channel's failure (no attempt counted against the
        connector, no dead letter once its retries run out); any other error is worth a retry."""
        try:
            return hook(*args)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise TransientDeliveryError(f"cannot {what}: {type(exc).__name__}: {exc}") from None

    def _record(self, request: OutboundRequest, note: DossierNote) -> None:
        """Put the note on the timeline; once sent, a failure to record is logged, not a reason to send again."""
        if self.hooks is None:
            return
        try:
            self.hooks.record(request.destination, note)
        except Exception:
            log.exception("message_id=%s could not record the notification on dossier %s's timeline",
                          request.message_id, note.dossier_code)  # fmt: skip

    def close(self) -> None:
        self.channel.close()


def _note(note: DossierNote, outcome: str, reason: str, **detail: Any) -> DossierNote:
    return replace(note, outcome=outcome, reason=reason, detail={**note.detail, **detail})


def channel_for(
    profile: str,
    values: Mapping[str, str],
    endpoint: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
    max_connections: int = 4,
) -> Channel:
    """The channel a ``notification/*`` profile names, configured by its resolved ``values``; ``ValueError`` when
    the endpoint or a value cannot be used."""
    channel = CHANNEL_OF_PROFILE.get(profile)
    if channel == "email":
        relay = SmtpRelay.from_url(endpoint, starttls=values.get("starttls", "required"), username=username,
                                   password=password, ca_file=values.get("tls_ca_file") or None,
                                   timeout_s=timeout_s)  # fmt: skip
        return EmailChannel(relay, values["from_address"], values.get("reply_to", ""))
    if channel == "sms":
        from adapters.sms import SmsProtocol

        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"an SMS gateway is reached over http(s), not {endpoint!r}")
        return SmsChannel(SmsGateway(endpoint, SmsProtocol.from_values(values), token=password, timeout_s=timeout_s,
                                     max_connections=max_connections))  # fmt: skip
    raise ValueError(f"{profile!r} is not a notification profile (known: {', '.join(CHANNEL_OF_PROFILE)})")


def notification_adapter(
    profile: str,
    values: Mapping[str, str],
    endpoint: str,
    *,
    templates: Mapping[str, str] | None = None,
    hooks: NotificationHooks | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
    max_connections: int = 4,
) -> NotificationAdapter:
    """A connector's adapter from its profile, resolved values, endpoint and template overrides; ``ValueError`` (or
    a ``MappingError``) when they cannot be used."""
    channel = channel_for(profile, values, endpoint, username=username, password=password, timeout_s=timeout_s,
                          max_connections=max_connections)  # fmt: skip
    return NotificationAdapter(
        channel,
        Templates(templates),
        events=parse_events(values.get("events", ",".join(Event))),
        unaccented=values.get("unaccented", "false").strip().lower() == "true",
        hooks=hooks,
    )
