"""What the store takes and gives back: frozen dataclasses, no ORM objects, no open connections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from hub.store.schema import DeliveryState

if TYPE_CHECKING:
    from hub.dossier.status_machine import Decision

AcceptOutcome = Literal["accepted", "duplicate", "conflict", "rejected"]
XML = "application/xml"  # the media type of the hub-signed envelope


class Delivered(NamedTuple):
    """One successful delivery to record (an item of ``Store.record_delivered_many``).

    ``outbound`` is the hub-signed envelope (non-repudiation); ``sent`` the bytes the partner actually received
    when they differ from it (e.g. a JSON body), with their media type ``sent_type``."""

    delivery_id: int
    outbound: bytes
    detail: str = ""
    sent: bytes | None = None
    sent_type: str | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The dossier status a submission reports (a ``dossier.status``), run through the status machine as the
    submission is accepted: ``at`` is timezone-aware, ``source`` names who reported it (the sender)."""

    dossier_code: str
    status: int
    at: datetime
    source: str
    #: What the step said beyond its status (actor, due dates, files…), kept on the timeline (JSON-ready).
    detail: Mapping[str, Any] | None = None
    #: An operator's ``hub.dossier.status_machine.Correction``: decided as such, and audited in the same transaction.
    correction: Any = None
    #: When a sync's record was written (its envelope's ``createdAt``): how its staleness is judged; ``None``: ``at``.
    reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SyncReport:
    """The status a ``dossier.sync`` reports (the provincial system is the dossier's system of record): run through
    the status machine like every update (``Source.SYNC``: restating the current status is an amendment, applied);
    ``submitted_at`` and ``channel`` are kept on the dossier for the intake deadline."""

    dossier_code: str
    status: int
    at: datetime
    source: str
    submitted_at: datetime | None = None
    channel: int | None = None
    due_at: datetime | None = None  # the due date it carries (NgayHenTra): the dossier's current one from then on
    #: What the timeline keeps of it beside the status (the rejection date and reason…), JSON-ready.
    detail: Mapping[str, Any] | None = None
    #: When the record was written (the envelope's ``createdAt``): a sync's age for the status machine.
    reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """One inbound envelope to accept (the argument of ``Store.accept`` / an item of ``Store.accept_many``).

    With ``status``, the update goes through the status machine in the same transaction (see
    ``Store.accept_many``)."""

    sender: str
    message_id: str
    message_type: str
    receiver: str
    envelope: bytes
    destinations: tuple[str, ...] = ()
    correlation_id: str | None = None
    dossier_code: str | None = None
    actor: str | None = None
    status: StatusUpdate | None = None
    sync: SyncReport | None = None
    warnings: tuple[str, ...] = ()  # advice recorded as ``warning`` events (a procedure the catalogue lacks)
    #: The ``destinations`` that tell the applicant (notification connectors): not queued an amendment (a status
    #: restated, ``Decision.amendment``), which the applicant was told of when it was set.
    notifiers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Any iterable of destinations, each kept once, in order.
        object.__setattr__(self, "destinations", _unique(self.destinations))

    @classmethod
    def coerce(cls, item: Submission | Mapping[str, Any]) -> Submission:
        """Take a ``Submission`` as is, or build one from a mapping with the same keys."""
        return item if isinstance(item, Submission) else cls(**item)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What became of one submission.

    ``outcome`` is ``accepted`` (stored now), ``duplicate`` (same sender, id and bytes were stored before; nothing
    was inserted) or ``conflict`` (same sender and id with other bytes; nothing was inserted). ``status`` is the
    stored message's current status (see ``message_status``); ``message_pk``, ``delivery_ids`` and
    ``received_at`` describe the stored (original) message; ``digest`` is the SHA-256 of the submitted bytes and
    ``stored_digest`` that of the stored ones.

    For a submission with a ``status``: ``decision`` is the status machine's (``None`` for a duplicate or
    conflict, whose update was decided when it was first accepted); ``rejected`` means the update was an illegal
    transition: it is on the dossier's timeline, but the message was not stored (``message_pk`` is ``None``,
    ``stored_digest`` empty) and nothing was queued; a ``stale`` update is stored without deliveries.
    """

    outcome: AcceptOutcome
    sender: str
    message_id: str
    digest: str
    stored_digest: str
    status: str
    message_pk: int | None
    delivery_ids: tuple[int, ...]
    received_at: datetime
    decision: Decision | None = None
    #: The destinations of ``delivery_ids``, in their order (for a new message: those queued after the decision).
    destinations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """One (message, destination) delivery with the inbound envelope bytes: what a worker or the relay needs."""

    delivery_id: int
    message_pk: int
    message_id: str
    sender: str
    receiver: str
    message_type: str
    correlation_id: str | None
    dossier_code: str | None
    destination: str
    envelope: bytes
    attempts: int
    state: DeliveryState
    generation: int  # the publication a queue message must carry to be attempted (see ``Store.retry_now``)


@dataclass(frozen=True, slots=True)
class DeliveryView(PendingDelivery):
    """A delivery with everything the store knows about it (``Store.delivery``)."""

    last_error: str | None
    next_attempt_at: datetime | None
    published_at: datetime | None
    queued_at: datetime
    delivered_at: datetime | None
    outbound: bytes | None
    outbound_digest: str | None
    updated_at: datetime
    sent: bytes | None = None  # what the partner received: the stored sent bytes, else ``outbound``
    sent_type: str | None = None  # their media type (``application/xml`` for the envelope); None until delivered


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery given up on, waiting for an operator (or replayed by one)."""

    id: int
    delivery_id: int
    message_pk: int
    message_id: str
    sender: str
    destination: str
    dossier_code: str | None
    message_type: str
    reason: str
    last_error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replayed_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One step of a message's history."""

    state: str
    destination: str | None
    attempt: int | None
    detail: str
    actor: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """Where one destination of a message stands (part of a ``MessageTrace``)."""

    delivery_id: int
    destination: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    published_at: datetime | None
    delivered_at: datetime | None
    outbound_digest: str | None
    sent_digest: str | None = None  # SHA-256 of what the partner received (the envelope's when it took that)
    sent_type: str | None = None  # its media type (``application/xml`` for the envelope); None until delivered


_Sent = TypeVar("_Sent", bytes, str)


def sent_as(sent: _Sent | None, sent_type: str | None, outbound: _Sent | None) -> tuple[_Sent | None, str | None]:
    """What a partner received (or its digest) and its media type: the stored sent value, else the envelope's."""
    if sent is not None:
        return sent, sent_type or XML
    return outbound, None if outbound is None else XML


@dataclass(frozen=True, slots=True)
class MessageTrace:
    """A message from the log (without its bytes), its events in order and its deliveries."""

    message_pk: int
    sender: str
    message_id: str
    correlation_id: str | None
    message_type: str
    receiver: str
    dossier_code: str | None
    digest: str
    received_at: datetime
    status: str
    events: tuple[TraceEvent, ...] = field(default=())
    deliveries: tuple[DeliveryStatus, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One status update of a dossier, whatever became of it (``outcome``: applied, stale, rejected or corrected;
    ``synced`` on entries a ``dossier.sync`` left before syncs ran through the status machine), or a citizen
    notification about one (``notified``, ``notify_skipped``: ``hub.store.notifications``)."""

    id: int
    dossier_code: str
    message_id: str | None
    status: int
    at: datetime
    outcome: str
    reason: str
    source: str
    recorded_at: datetime
    #: The step's details as the update carried them (``StatusUpdate.detail``), ``None`` for none.
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DossierParty:
    """What the message log says of one connector and one dossier: whether any message about the dossier is
    logged (``known``), and whether the connector sent one or was routed one (``party``)."""

    known: bool
    party: bool


@dataclass(frozen=True, slots=True)
class DossierRecord:
    """A dossier's current state: the last applied status, the time of that update, and when it was applied."""

    code: str
    status: int
    status_at: datetime
    applied_at: datetime
    submitted_at: datetime | None = None
    channel: int | None = None
    due_at: datetime | None = None  # the current due date (``hub.store.due_dates``)
    due_set_at: datetime | None = None  # the time of the report that set it


@dataclass(frozen=True, slots=True)
class IntakeDossier:
    """A dossier whose latest reported status is 1 (new), with when it was submitted (``Store.dossiers_at_intake``)."""

    dossier_code: str
    submitted_at: datetime
    channel: int | None
    source: str | None


@dataclass(frozen=True, slots=True)
class DestinationStats:
    """Delivery counts of one destination (``Store.queue_overview``)."""

    destination: str
    queued: int
    delivering: int
    retrying: int
    delivered: int
    dead: int
    oldest_pending_age_s: float | None
    delivered_last_60s: int

    @property
    def pending(self) -> int:
        """Deliveries not yet delivered nor dead."""
        return self.queued + self.delivering + self.retrying

    @property
    def rate_per_s(self) -> float:
        """Deliveries per second over the last minute."""
        return self.delivered_last_60s / 60.0


def message_status(states: Sequence[str]) -> str:
    """One word for a message from its deliveries' states.

    No deliveries: ``accepted``. Any delivery still pending: the least advanced pending state (``retrying``,
    then ``delivering``, then ``queued``). Otherwise ``delivered`` when all were delivered, else ``dead``.
    """
    if not states:
        return "accepted"
    present = set(states)
    for state in (DeliveryState.RETRYING, DeliveryState.QUEUED, DeliveryState.DELIVERING):
        if state in present:
            return state.value
    if present == {DeliveryState.DELIVERED}:
        return DeliveryState.DELIVERED.value
    return DeliveryState.DEAD.value


@dataclass(frozen=True, slots=True)
class PartnerActivity:
    """Attempts to one destination over a recent window (``Store.partner_activity``: deliveries and synchronous
    lookups), the last success and failure ever recorded, and when attempts succeeded again after the latest
    failure (``recovered_at``): what the operator page derives a partner's state from."""

    destination: str
    delivered: int
    failed: int
    rejected: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    recovered_at: datetime | None = None

    @property
    def attempts(self) -> int:
        return self.delivered + self.failed

    @property
    def error_rate(self) -> float | None:
        """Failed attempts / attempts in the window (``None`` without attempts)."""
        return None if not self.attempts else self.failed / self.attempts
