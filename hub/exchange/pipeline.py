"""Accepting a message: verify → validate (and map) → route → status machine, dedupe and commit → publish
(outbox pattern).

The hub answers "accepted" only after the message and its deliveries are committed to the store. Publishing
to the broker comes after the commit; a delivery whose publish was not confirmed stays ``unpublished`` in the
store and the relay (``Relay``) publishes it again, so a crash between the two loses nothing.

In the API the commit does not publish at all: it hands the committed deliveries to the process's publisher
thread (``Acceptor.handoff``, ``hub.exchange.publisher``) and the request is answered, so intake never waits for
the broker, nor stalls while it is down (the relay, in that thread, publishes what was dropped meanwhile). The
other callers (CLI, the benchmark's direct path, the hub's own messages outside the API, tests) publish in the
commit, as before. The relay claims the rows it publishes (``Store.claim_unpublished``), so the relays of all the
API and worker processes do not publish the same delivery while its claim holds (at least once, rarely twice).

**Inbound mapping.** A sender whose connector maps a type to a profile other than ``canonical`` (e.g. a ministry
with ``mapping: {dossier.status: ministry-steps}``) may put its own format in the envelope body (``<BuocXuLy>``).
The signature is verified over the envelope exactly as received; the body is validated by the profile's converter
(``mappings``) instead of the canonical XSD, and converted to the canonical packet — once: the check hands that
model to routing and the status machine (``Acceptor.payload_check``). The message log keeps the envelope exactly
as received (non-repudiation); no canonical copy is stored. The worker, in another process, builds the outbound
envelope from that stored envelope and maps its body with the same pure converter (``mappings.inbound_for_root``),
so what is delivered is the canonical form, and the signed outbound it sends is recorded with the delivery. A
canonical body is always accepted too.

**Dossier status.** Every accepted ``dossier.status`` (canonical or mapped) and the status every ``dossier.sync``
reports go through the one status machine in the same store transaction as their acceptance and land on the
dossier's timeline: an applied update is routed; a stale one (older than the last applied) is stored but not
routed; an illegal transition is refused (``StatusTransitionError``, rule ``status-transition``, naming the
message id), stored nowhere but on the timeline, and nothing is queued. A sync that restates the dossier's status
is an amendment of its record, applied (and so is 9 restated with new results by the sender that set it): queued
for every destination but the notification connectors (``Checked.notifiers``), whose applicant was told of that
status already. A sync is as old as its record (the envelope's ``createdAt``). A status time more than
``status_time_ahead_s`` ahead of the hub's clock is refused before anything is decided (``status-time-future``).
A resend of an accepted message is a duplicate and is not decided again.
An operator's correction (``hub.services.corrections``) is a ``dossier.status`` the hub injects with the
``Correction``: decided as such, audited, and routed like any applied update.

**Citizen notifications.** A ``notification`` connector receives ``dossier.sync`` and ``dossier.status`` like any
destination, but is queued only the updates its applicant is told of (``RoutingTable.notifying``: intake, the
completeness check, the result — ``mappings.notification``); its deliveries are retried and dead-lettered like
the others. A stale or refused update queues nothing, so it notifies no one.

**Procedure warnings.** A ``dossier.sync`` naming a procedure the national portal's procedure catalogue does not list
(``hub catalogue sync``; the codes cached by ``hub.store.catalogue.KnownProcedures``, re-read every minute) is
accepted all the same, with a ``procedure-unknown`` warning in its answer (``Accepted.warnings``) and a ``warning``
event on its history. While the catalogue is empty (never synced) nothing is warned about.

**The hub's own messages** (payment receipts, the status updates that follow a payment, postal tracking events)
enter through ``Acceptor.inject``: validated, routed, committed and published like the rest, but signed there and
not verified again — the hub does not check the signature it has just made.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from lxml import etree
from pydantic import BaseModel

import mappings
from broker.base import Broker, BrokerError, BrokerUnavailable, OutboundMessage
from hub import packets
from hub.dossier.status_machine import Correction
from hub.errors import (
    ConflictError,
    EnvelopeInvalidError,
    Issue,
    NoRouteError,
    PacketInvalidError,
    RejectedError,
    StatusTransitionError,
    StoreUnavailableError,
)
from hub.exchange.routing import RoutingTable
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.security.envelope import (
    DEFAULT_FRESHNESS,
    EnvelopeHeader,
    Freshness,
    PayloadCheck,
    body_payload,
    build_envelope,
    validate_envelope,
)
from hub.security.signing import EnvelopeVerifier, Signer
from hub.store import PendingDelivery, StatusUpdate, Store, SyncReport
from hub.store.catalogue import KnownProcedures
from hub.store.deliveries import GENERATION_HEADER

log = logging.getLogger(__name__)

STATUS_TYPE = "dossier.status"
SYNC_TYPE = "dossier.sync"
STATUS_TIME_FUTURE = "status-time-future"
#: How far ahead of the hub's clock a status time may be (clock skew), by default: ``LIENTHONG_STATUS_TIME_AHEAD_S``.
DEFAULT_STATUS_TIME_AHEAD_S = 300.0

# Called with the verified header before routing; raises ``RejectedError`` (e.g. ``AccessDeniedError``) to refuse.
Authorizer = Callable[[EnvelopeHeader], None]
# Called after ``Authorizer`` with the verified header and the canonical packet its body was decoded to (``None``
# when it was not): the checks that need the body (dossier ownership); raises ``RejectedError`` to refuse.
BodyAuthorizer = Callable[[EnvelopeHeader, BaseModel | None], None]
# The mapping profile the sender of this header uses for its message type (``canonical`` by default).
ProfileResolver = Callable[[EnvelopeHeader], str]


@dataclass(frozen=True, slots=True)
class Checked:
    """An envelope that passed verification (or was built by the hub itself, ``Acceptor.inject``), validation
    (through its profile), authorization and routing; ``header`` is the signed one.

    ``canonical`` is the canonical packet model of the body (mapped when ``profile`` is not ``canonical``);
    it is kept for the type the pipeline itself reads (``dossier.status``), else ``None``."""

    header: EnvelopeHeader
    destinations: tuple[str, ...]
    profile: str = mappings.CANONICAL
    canonical: BaseModel | None = None
    sync: SyncReport | None = None  # the status a canonical dossier.sync reports (run through the status machine)
    warnings: tuple[Issue, ...] = ()  # accepted all the same: a procedure the catalogue does not list
    correction: Correction | None = None  # an operator's correction the hub injects (``Acceptor.inject``)
    notifiers: tuple[str, ...] = ()  # the notification connectors among ``destinations`` (not told an amendment)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a sender: the message id, its status, and whether this was a resend."""

    message_id: str
    status: str
    destinations: tuple[str, ...]
    duplicate: bool = False
    status_update: str | None = None  # for a new dossier.status or sync: "applied", "stale" or "corrected"
    warnings: tuple[Issue, ...] = ()  # advice for the sender (``procedure-unknown``); on the message's events too


class Handoff(Protocol):
    """Where an acceptor hands committed deliveries to be published by another thread (``hub.exchange.publisher``)
    instead of publishing them itself."""

    def offer(self, outbound: Sequence[OutboundMessage]) -> bool:
        """Take them for publishing without blocking; ``False``: not taken (the relay publishes them later)."""
        ...


def outbound_for(pending: PendingDelivery) -> OutboundMessage:
    """The queue message for a stored delivery (the inbound envelope; the worker maps and signs it), naming the
    delivery's generation once "retry now" raised it (``hub.store.deliveries.GENERATION_HEADER``)."""
    headers = {"message_type": pending.message_type, "sender": pending.sender}
    if pending.generation:
        headers[GENERATION_HEADER] = str(pending.generation)
    return OutboundMessage(
        destination=pending.destination,
        message_id=pending.message_id,
        body=pending.envelope,
        headers=headers,
        delivery_id=pending.delivery_id,
    )


class Acceptor:
    """The front half of the pipeline, shared by the API, the SOAP entry, the hub's own messages (``inject``)
    and the benchmark; one per process, built by ``hub.runtime.Runtime.acceptor``. Thread-safe.

    ``track_status`` (default on): run every ``dossier.status`` through the status machine as it is accepted.
    ``defer_marks``: record the broker's confirmations in the next batch's transaction instead of one of their
    own (one store transaction per batch instead of two); ``flush`` records what is left. Until then the
    deliveries look unpublished, which is safe: the relay only republishes after its grace period, and the
    worker skips a delivery it has already made.

    ``handoff`` (``None`` by default): publish nothing here but give the committed deliveries to it (the API's
    publisher thread, which reports the broker's confirmations back through ``note_published``), so a commit never
    waits for the broker. Without it, ``commit`` publishes them itself (the CLI, the benchmark's direct path, the
    tests)."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        routing: RoutingTable,
        verifier: EnvelopeVerifier,
        *,
        track_status: bool = True,
        defer_marks: bool = False,
        status_time_ahead_s: float = DEFAULT_STATUS_TIME_AHEAD_S,
    ) -> None:
        self.store = store
        self.status_time_ahead_s = status_time_ahead_s
        self.broker = broker
        self.routing = routing
        self.verifier = verifier
        self.track_status = track_status
        self.defer_marks = defer_marks
        self.handoff: Handoff | None = None
        #: The procedure catalogue's codes (cached): a dossier.sync naming another gets a warning, not a refusal.
        self.known_procedures = KnownProcedures(store.catalogue_procedure_codes)
        self._confirmed: list[int] = []  # published and confirmed, not yet marked in the store
        # One commit at a time: request threads (group commit) and the hub's own messages share the deferred marks.
        self._commit_lock = threading.RLock()
        # Held only to take or add deferred marks: the publisher thread adds them while a commit runs.
        self._marks_lock = threading.Lock()
        routing.declare(broker)

    def note_published(self, delivery_ids: Sequence[int]) -> None:
        """The broker confirmed these deliveries: mark them published now, or with the next commit (``defer_marks``)."""
        if not delivery_ids:
            return
        if self.defer_marks:
            with self._marks_lock:
                self._confirmed.extend(delivery_ids)
        else:
            self.store.mark_published(delivery_ids)

    def _take_marks(self) -> list[int]:
        with self._marks_lock:
            confirmed, self._confirmed = self._confirmed, []
            return confirmed

    def _give_back_marks(self, confirmed: list[int]) -> None:
        """A transaction that was to record them failed: keep them for the next one."""
        with self._marks_lock:
            self._confirmed[:0] = confirmed

    def flush(self) -> None:
        """Mark the confirmed deliveries that ``defer_marks`` is still holding."""
        confirmed = self._take_marks()
        if not confirmed:
            return
        try:
            self.store.mark_published(confirmed)
        except BaseException:
            self._give_back_marks(confirmed)
            raise

    @staticmethod
    def payload_check(profile: ProfileResolver | None, decoded: list[BaseModel] | None = None) -> PayloadCheck:
        """The body validation for ``verify``: the canonical packet, or the sender's profile format.

        The body is decoded (and a partner format mapped) once, here; ``decoded`` receives the canonical model so
        that routing and the status machine read it instead of decoding the same body again."""

        def check(header: EnvelopeHeader, payload: etree._Element) -> list[Issue]:
            name = mappings.CANONICAL if profile is None else profile(header)
            mapping = mappings.inbound_mapping(name, header.message_type)
            if mapping is None and name != mappings.CANONICAL and name not in mappings.profile_names():
                return [
                    Issue(
                        "/",
                        "mapping-profile",
                        f"the sender's mapping profile {name!r} for {header.message_type} is unknown to the hub",
                    )
                ]
            if mapping is not None and payload.tag == mapping.root:
                issues, model = mapping.decode(payload)
            else:
                issues, model = packets.decode_element(header.message_type, payload)
            if model is None:
                return issues
            code = getattr(model, "dossier_code", header.dossier_code)
            if mapping is not None and header.dossier_code is not None and code != header.dossier_code:
                return [  # a canonical body's code is compared by validate_envelope; a mapped one's only here
                    Issue(
                        "/envelope/header/dossierCode",
                        "dossier-code-matches-body",
                        f"header names dossier {header.dossier_code} but the body is about {code}",
                    )
                ]
            if decoded is not None:
                decoded.append(model)
            return []

        return check

    def check(
        self,
        data: bytes,
        authorize: Authorizer | None = None,
        profile: ProfileResolver | None = None,
        *,
        parsed: etree._Element | None = None,
        authorize_body: BodyAuthorizer | None = None,
        freshness: Freshness = DEFAULT_FRESHNESS,
    ) -> Checked:
        """Verify (body through the sender's ``profile``), authorize (the header, then the decoded body), check
        ``createdAt`` against the sender's ``freshness`` window and route one envelope without storing it; raise
        ``RejectedError`` with the reason. ``parsed``: ``data`` already parsed, handed over (see
        ``EnvelopeVerifier.verify``)."""
        decoded: list[BaseModel] = []
        verified = self.verifier.verify(data, self.payload_check(profile, decoded), parsed=parsed)
        header = verified.header
        model = decoded[0] if decoded else None
        try:
            if authorize is not None:
                authorize(header)
            if authorize_body is not None:
                authorize_body(header, model)
        except RejectedError as exc:
            exc.message_id = exc.message_id or header.message_id
            raise
        freshness.check(header, self.verifier.clock())
        name = mappings.CANONICAL if profile is None else profile(header)
        return self._route(header, verified.payload, name, model)

    def inject(
        self, header: EnvelopeHeader, payload: etree._Element, signer: Signer, *, correction: Correction | None = None
    ) -> Accepted:
        """Accept a message the hub itself creates (payment receipts, postal events, status updates): validated
        against its packet schema, routed, committed and published like any accepted message, then answered the
        same way (duplicates, conflicts); raise ``RejectedError`` when it is invalid, unrouted or refused.
        ``correction``: the ``dossier.status`` reports an operator's correction, decided and audited as such in the
        transaction that stores it.

        The hub signs it here with ``signer`` and stores that envelope; it does not verify its own signature again.
        """
        envelope = build_envelope(header, payload)
        decoded: list[BaseModel] = []
        signed_header, issues = validate_envelope(envelope, self.payload_check(None, decoded))
        if issues:
            raise EnvelopeInvalidError("envelope content is invalid", issues, message_id=header.message_id)
        model = decoded[0] if decoded else None
        checked = self._route(signed_header, body_payload(envelope), mappings.CANONICAL, model)
        if correction is not None:
            if checked.canonical is None:
                raise ValueError("a correction is carried by a dossier.status (with status tracking on)")
            checked = replace(checked, correction=correction)
        data = etree.tostring(signer.sign_in_place(envelope))
        result = self.commit([(checked, data)])[0]
        if isinstance(result, RejectedError):
            raise result
        return result

    def _route(self, header: EnvelopeHeader, payload: etree._Element, profile: str, model: BaseModel | None) -> Checked:
        """Route a verified (or hub-built) message; ``model`` is its body as decoded by the check (or ``None``)."""
        destinations = self.routing.destinations_for(header.message_type, header.sender)
        if not destinations:
            raise NoRouteError(
                f"no destination receives {header.message_type} from {header.sender}",
                [Issue("/envelope/header/messageType", "no-route", f"no route for {header.message_type}")],
                message_id=header.message_id,
            )
        # Citizen notifications (Đắk Nông Điều 12): a notification connector gets only the updates it tells of.
        destinations = self.routing.notifying(destinations, model)
        canonical = model if self.track_status and header.message_type == STATUS_TYPE else None
        sync = _sync_report(model, header) if self.track_status else None
        if self.track_status:
            self._check_status_time(header, canonical, sync)
        return Checked(header, destinations, profile, canonical, sync, self._warnings(model),
                       notifiers=self.routing.notifiers(destinations))  # fmt: skip

    def _check_status_time(self, header: EnvelopeHeader, step: BaseModel | None, sync: SyncReport | None) -> None:
        """Refuse a status dated more than ``status_time_ahead_s`` ahead of the hub's clock (``status-time-future``):
        once applied, such a time would make every later update stale until that moment came. Every source alike:
        a partner's or the hub's ``dossier.status`` and the status time a ``dossier.sync`` reports."""
        if isinstance(step, DossierStatusUpdate):
            at, path = step.at, "/envelope/body/at"
        elif sync is not None:
            at, path = sync.at, f"/envelope/body/{_SYNC_TIME_FIELD.get(sync.status, 'status')}"
        else:
            return
        limit = self.verifier.clock() + timedelta(seconds=self.status_time_ahead_s)
        if at > limit:
            message = (f"the status time {at.isoformat()} is more than {self.status_time_ahead_s:g} s ahead of the "
                       "hub's clock: check the sender's clock and time zone")  # fmt: skip
            raise PacketInvalidError(message, [Issue(path, STATUS_TIME_FUTURE, message)], message_id=header.message_id)

    def _warnings(self, model: BaseModel | None) -> tuple[Issue, ...]:
        """What the sender is told without a refusal: a dossier.sync naming a procedure the (non-empty) procedure
        catalogue does not list (``hub.store.catalogue``; an empty catalogue warns about nothing)."""
        if not isinstance(model, DossierSync):
            return ()
        warning = self.known_procedures.warning(model.procedure_code)
        return () if warning is None else (warning,)

    def accept(
        self, data: bytes, authorize: Authorizer | None = None, profile: ProfileResolver | None = None
    ) -> Accepted:
        """Accept one envelope; see ``accept_many``."""
        result = self.accept_many([data], authorize, profile)[0]
        if isinstance(result, RejectedError):
            raise result
        return result

    def accept_many(
        self,
        items: Sequence[bytes],
        authorize: Authorizer | None = None,
        profile: ProfileResolver | None = None,
    ) -> list[Accepted | RejectedError]:
        """Accept a batch: one store transaction and one confirmed publish for all that pass the checks.

        ``authorize`` (optional) sees each verified header before routing and may refuse it by raising.
        ``profile`` (optional) names the mapping profile of each header's sender and type (default: every
        body must be canonical)."""
        checked: list[tuple[int, Checked, bytes]] = []
        results: list[Accepted | RejectedError | None] = [None] * len(items)
        for index, data in enumerate(items):
            try:
                item = self.check(data, authorize, profile)
            except RejectedError as exc:
                log.info("rejected message_id=%s rule=%s %s", exc.message_id, exc.issues[0].rule, exc)
                results[index] = exc
                continue
            checked.append((index, item, data))
        for (index, _, _), result in zip(checked, self.commit([(c, data) for _, c, data in checked]), strict=True):
            results[index] = result
        return [r for r in results if r is not None]

    def commit(self, checked: Sequence[tuple[Checked, bytes]]) -> list[Accepted | RejectedError]:
        """Store checked envelopes in one transaction, then publish their deliveries with one confirmed batch."""
        if not checked:
            return []
        with self._commit_lock:
            return self._commit(checked)

    def _commit(self, checked: Sequence[tuple[Checked, bytes]]) -> list[Accepted | RejectedError]:
        results: list[Accepted | RejectedError] = []
        if checked:
            rows = [
                {
                    "sender": c.header.sender,
                    "message_id": c.header.message_id,
                    "correlation_id": c.header.correlation_id,
                    "message_type": c.header.message_type,
                    "receiver": c.header.receiver,
                    "dossier_code": c.header.dossier_code or _dossier_code(c.canonical) or _dossier_code(c.sync),
                    "envelope": data,
                    "destinations": c.destinations,
                    "status": _status_update(c),
                    "sync": c.sync,
                    "warnings": tuple(f"{w.message} [{w.rule}]" for w in c.warnings),
                    "notifiers": c.notifiers,
                }
                for c, data in checked
            ]
            confirmed = self._take_marks()
            try:
                stored = self.store.accept_many(rows, published=confirmed)
            except BaseException:
                self._give_back_marks(confirmed)
                raise
            outbound: list[OutboundMessage] = []
            for (item, data), res in zip(checked, stored, strict=True):
                header = item.header
                if res.outcome == "conflict":
                    results.append(
                        ConflictError(
                            f"message {header.message_id} from {header.sender} was already accepted with other content",
                            [Issue("/envelope/header/messageId", "idempotency-conflict", "same id, different content")],
                            message_id=header.message_id,
                        )
                    )
                    continue
                if res.outcome == "rejected":
                    reason = res.decision.reason if res.decision is not None else "illegal status transition"
                    log.info("rejected message_id=%s rule=status-transition %s", header.message_id, reason)
                    results.append(
                        StatusTransitionError(
                            f"dossier {_dossier_code(item.canonical) or _dossier_code(item.sync)}: {reason}",
                            [Issue("/envelope/body/status", "status-transition", reason)],
                            message_id=header.message_id,
                        )
                    )
                    continue
                duplicate = res.outcome == "duplicate"
                decided = None if res.decision is None else str(res.decision.outcome)
                destinations = res.destinations  # as queued: none for a stale update, no notifier for an amendment
                results.append(
                    Accepted(header.message_id, res.status, destinations, duplicate, decided, item.warnings)
                )
                if not duplicate:
                    outbound.extend(
                        OutboundMessage(
                            destination=destination,
                            message_id=header.message_id,
                            body=data,
                            headers={"message_type": header.message_type, "sender": header.sender},
                            delivery_id=delivery_id,
                        )
                        for destination, delivery_id in zip(destinations, res.delivery_ids, strict=True)
                    )
            self._publish(outbound)
        return results

    def _publish(self, outbound: list[OutboundMessage]) -> None:
        if not outbound:
            return
        if self.handoff is not None:
            # Not taken (queue full, broker down): committed all the same, the relay publishes them later.
            self.handoff.offer(outbound)
            return
        try:
            self.broker.publish(outbound)
        except BrokerError as exc:
            # Committed but not confirmed: the relay will publish these again.
            log.warning("publish failed for %d deliveries, the relay will retry: %s", len(outbound), exc)
            return
        self.note_published([m.delivery_id for m in outbound if m.delivery_id is not None])


class GroupCommitter:
    """Checks and commits the envelopes of many concurrent requests together (group commit).

    A request hands over its envelope and the check to run on it (``Acceptor.check``: verify, validate, map,
    route). Everything waiting is checked, then all that passed are stored in one transaction and published
    with one confirmed batch: under load many requests share one transaction and one confirm round trip, and a
    lone request waits for nothing but its own. A request is answered only after its commit.

    Two ways in, one per kind of caller:

    * ``submit_async``, from an event loop (the REST API): the requests that arrive in the same turn of the loop
      are checked on the loop's own thread, right after it, and handed to the loop-commit thread, which commits
      together what every turn handed over while it was busy with the previous commit;
    * ``submit``, from threads (the SOAP entry): a committer thread checks and commits them.

    Either way the checks run one at a time in one thread, not in the request threads: the same CPU work spread
    over several busy threads costs about twice the CPU, as they hand the GIL back and forth at every lxml and
    OpenSSL call (measured on the benchmark machine).

    The loop must stay free to answer everyone else (``/healthz``, the operator page), so three things never run
    on it: the commit (on PostgreSQL a network round trip and a WAL flush, tens of milliseconds for a large
    batch, during which the loop checks the next turn's envelopes), an envelope larger than ``loop_max_bytes``
    (its checks cost milliseconds per 100 KB; it goes to the committer thread), and more than about
    ``budget_s`` of checking in one turn (the rest waits for the next turn). Commits stay in the order the
    turns were checked: one thread makes them, one at a time (``Acceptor.commit`` holds a lock).
    """

    def __init__(
        self,
        acceptor: Acceptor,
        *,
        max_batch: int = 128,
        timeout_s: float = 30.0,
        loop_max_bytes: int = 64 * 1024,
        budget_s: float = 0.02,
    ) -> None:
        self.acceptor = acceptor
        acceptor.defer_marks = True  # flushed below whenever the queue runs dry
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.loop_max_bytes = loop_max_bytes
        self.budget_s = budget_s
        self._queue: queue.Queue[tuple[Callable[[], Checked], bytes, Future] | None] = queue.Queue()
        self._on_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[], Checked], bytes, Any]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()
        #: What the loops checked, waiting for the loop-commit thread: (loop, [(checked, data, asyncio future)]).
        self._checked: queue.Queue[tuple[asyncio.AbstractEventLoop, list[tuple[Checked, bytes, Any]]] | None]
        self._checked = queue.Queue()
        self._closing_lock = threading.Lock()  # orders the loops' hand-overs against close()'s stop marker
        self._loop_thread = threading.Thread(target=self._commit_checked, name="loop-commit", daemon=True)
        self._loop_thread.start()

    def submit(self, check: Callable[[], Checked], data: bytes) -> Future:
        """Queue ``data`` with the ``check`` (an ``Acceptor.check`` call) that turns it into a ``Checked``; the
        future holds its ``Accepted``, or the ``RejectedError`` the check or the commit ended with."""
        done: Future = Future()
        self._queue.put((check, data, done))
        return done

    async def submit_async(self, check: Callable[[], Checked], data: bytes) -> Accepted | RejectedError:
        """``submit`` on the running event loop: the outcome once this turn of the loop's group is committed;
        an envelope larger than ``loop_max_bytes`` is checked and committed by the committer thread instead."""
        if len(data) > self.loop_max_bytes:
            return await asyncio.wrap_future(self.submit(check, data))
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        waiting = self._on_loop.setdefault(loop, [])
        waiting.append((check, data, done))
        if len(waiting) == 1:
            loop.call_soon(self._run_on_loop, loop)
        return await done

    def _run_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._on_loop.pop(loop, [])
        taken, checked = self._check(waiting[: self.max_batch], budget_s=self.budget_s)
        if checked:
            with self._closing_lock:  # nothing is handed over after close() told the thread to stop
                if not self._stop.is_set() and self._loop_thread.is_alive():
                    self._checked.put((loop, checked))
                    checked = []
            _settle_all(self._commit(checked))  # nobody would take them: committed here, as before
        if taken < len(waiting):  # nothing else ran on this thread meanwhile: no request was added
            self._on_loop[loop] = waiting[taken:]
            loop.call_soon(self._run_on_loop, loop)

    def _commit_checked(self) -> None:
        """The loop-commit thread: commit in one transaction what the loops checked meanwhile (at most
        ``2 * max_batch`` envelopes, or one turn's), then hand each request its outcome on its own loop's thread;
        return at ``close()``'s stop marker, which nothing follows."""
        held: tuple[asyncio.AbstractEventLoop, list[tuple[Checked, bytes, Any]]] | None = None
        while True:
            first = held if held is not None else self._checked.get()
            held = None
            if first is None:
                return
            turns, size, stop = [first], len(first[1]), False
            while True:
                try:
                    turn = self._checked.get_nowait()
                except queue.Empty:
                    break
                if turn is None:
                    stop = True
                    break
                if size + len(turn[1]) > 2 * self.max_batch:
                    held = turn  # the next commit's first turn
                    break
                turns.append(turn)
                size += len(turn[1])
            self._commit_turns(turns)
            if stop:
                return

    def _commit_turns(self, turns: list[tuple[asyncio.AbstractEventLoop, list[tuple[Checked, bytes, Any]]]]) -> None:
        try:
            outcomes = self._commit([item for _, checked in turns for item in checked])
        except BaseException as exc:  # a bug must not end the thread: every later request would wait forever
            log.exception("loop commit failed")
            outcomes = [(done, None, exc) for _, checked in turns for _, _, done in checked]
        start = 0
        for loop, checked in turns:
            settled = outcomes[start : start + len(checked)]
            start += len(checked)
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the loop is closed: nobody waits for these answers any more
                log.warning("event loop closed before %d commits were answered", len(settled))

    def _run(self) -> None:
        pending: list[tuple[Callable[[], Checked], bytes, Future]] = []
        while not self._stop.is_set():
            if not pending:
                try:
                    first = self._queue.get(timeout=0.2)
                except queue.Empty:
                    self._flush_marks()
                    continue
                if first is None:  # close() wakes the thread: stop now, not at the next timeout
                    continue
                pending = [first]
            while len(pending) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    pending.append(item)
            # Within the budget here too: the loop-commit thread's commits wait for this one's (one at a time).
            pending = pending[self.process(pending, budget_s=self.budget_s) :]

    def process(
        self, batch: Sequence[tuple[Callable[[], Checked], bytes, Any]], *, budget_s: float | None = None
    ) -> int:
        """Check the items of ``batch`` in order and commit those that pass in one transaction, in the calling
        thread; each item's future (``concurrent.futures`` or ``asyncio``) gets its outcome. With ``budget_s``,
        stop checking once that much time is spent (after one item at least). Returns how many items were taken."""
        taken, checked = self._check(batch, budget_s=budget_s)
        _settle_all(self._commit(checked))
        return taken

    def _check(
        self, batch: Sequence[tuple[Callable[[], Checked], bytes, Any]], *, budget_s: float | None = None
    ) -> tuple[int, list[tuple[Checked, bytes, Any]]]:
        """Run the checks of ``batch`` in order, within ``budget_s``; a rejected item's future gets its refusal at
        once. Returns how many items were taken and those that passed, with their data and futures."""
        started = time.perf_counter()
        checked: list[tuple[Checked, bytes, Any]] = []
        taken = 0
        for check, data, done in batch:
            taken += 1
            try:
                checked.append((check(), data, done))
            except RejectedError as exc:
                _settle(done, exc)
            except Exception as exc:  # e.g. the registry's store is down
                _settle(done, error=exc)
            if budget_s is not None and time.perf_counter() - started >= budget_s:
                break
        return taken, checked

    def _commit(self, checked: Sequence[tuple[Checked, bytes, Any]]) -> list[tuple[Any, object, BaseException | None]]:
        """Commit ``checked`` in one transaction; each future with its result or its error, not yet settled."""
        if not checked:
            return []
        try:
            results = self.acceptor.commit([(item, data) for item, data, _ in checked])
        except StoreUnavailableError as exc:  # the store is down: every waiting request is told so (503)
            return [
                (done, None, StoreUnavailableError(str(exc), message_id=item.header.message_id))
                for item, _, done in checked
            ]
        except Exception as exc:  # every waiting request gets the error
            return [(done, None, exc) for _, _, done in checked]
        if len(results) != len(checked):  # a bug in the commit: no request may go unanswered
            error = RuntimeError(f"commit answered {len(results)} of {len(checked)} envelopes")
            return [(done, None, error) for _, _, done in checked]
        return [(done, result, None) for (_, _, done), result in zip(checked, results, strict=True)]

    def _flush_marks(self) -> None:
        try:
            self.acceptor.flush()
        except Exception as exc:  # the store is down; the relay republishes, the worker skips duplicates
            log.warning("could not record broker confirmations: %s", exc)

    def close(self) -> None:
        with self._closing_lock:  # from now on a loop commits what it checked itself
            self._stop.set()
            self._checked.put(None)  # the loop-commit thread stops once what was handed over is committed
        self._queue.put(None)  # wake the thread waiting for work
        self._thread.join(timeout=5)
        self._loop_thread.join(timeout=5)
        if self._loop_thread.is_alive():
            log.warning("the loop-commit thread is still committing after 5 s; closing all the same")
        self._flush_marks()


def _settle_all(outcomes: Sequence[tuple[Any, object, BaseException | None]]) -> None:
    for done, result, error in outcomes:
        _settle(done, result, error)


def _settle(done: Any, result: object = None, error: BaseException | None = None) -> None:
    """Give a request's future its outcome, unless the request gave up waiting (its future is cancelled, maybe
    by another thread in the meantime: an awaited ``submit`` future is cancelled from the loop's thread)."""
    if done.done():
        return
    try:
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)
    except (InvalidStateError, asyncio.InvalidStateError):
        pass


def _dossier_code(model: BaseModel | SyncReport | None) -> str | None:
    return getattr(model, "dossier_code", None)


#: The ``dossier.sync`` element holding the time of the status it reports (else the envelope's ``createdAt``).
_SYNC_TIME_FIELD = {1: "submittedAt", 2: "receivedAt", 3: "rejectedAt", 9: "finishedAt", 10: "returnedAt"}


def _sync_report(model: BaseModel | None, header: EnvelopeHeader) -> SyncReport | None:
    """The status, submission time and channel a canonical ``dossier.sync`` reports, read from the model the check
    decoded (``None`` for anything else). The time its status refers to is the matching time field (the rejection
    date for 3), else the envelope's creation time; the record's own time (its age for the status machine) is the
    envelope's creation time."""
    if not isinstance(model, DossierSync):
        return None
    status = int(model.status)
    at = {1: model.submitted_at, 2: model.received_at, 3: model.rejected_at, 9: model.finished_at,
          10: model.returned_at}.get(status)  # fmt: skip
    detail = {"rejected_at": model.rejected_at.isoformat() if model.rejected_at else None,
              "reason": model.status_reason}  # fmt: skip
    return SyncReport(
        dossier_code=model.dossier_code,
        status=status,
        at=at or header.created_at,
        source=header.sender,
        submitted_at=model.submitted_at,
        channel=int(model.channel),
        due_at=model.due_at,
        detail={k: v for k, v in detail.items() if v is not None} or None,
        reported_at=header.created_at,
    )


def _status_update(item: Checked) -> StatusUpdate | None:
    model = item.canonical
    if not isinstance(model, DossierStatusUpdate):
        return None
    return StatusUpdate(model.dossier_code, int(model.status), model.at, item.header.sender, step_detail(model),
                        item.correction)  # fmt: skip


#: What the timeline keeps of a ``dossier.status`` beside its code, status, time and source.
_DETAIL_EXCLUDED = frozenset({"dossier_code", "status", "at", "source_system"})


def step_detail(model: DossierStatusUpdate) -> dict[str, Any] | None:
    """The step's details for the timeline (officers, due dates, pause, how it ended, files), empty ones left out."""
    detail = model.model_dump(mode="json", exclude_none=True, exclude=set(_DETAIL_EXCLUDED))
    if not detail.get("attachments"):
        detail.pop("attachments", None)
    return detail or None


class Relay:
    """Publishes deliveries that were committed but never confirmed by the broker (outbox relay).

    Every API and worker process runs one, so each batch is first claimed in the store
    (``Store.claim_unpublished``: one short transaction), published outside it, then marked published: two relays
    do not publish the same delivery while its claim holds. A relay that dies between claim and mark (or a publish
    that outlasts the lease) leaves a claim that runs out after ``lease_s``; then another relay publishes those
    deliveries again (at least once, rarely twice: the worker skips what it has delivered already). A batch is
    published per destination: one the broker cannot route (its connector was removed) keeps its claim until the
    lease runs out, so it neither holds back the others nor is tried again at every turn.

    ``grace_s``: only deliveries committed that long ago, as younger ones are still on their
    way through the publisher that accepted them."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        grace_s: float = 10.0,
        every_s: float = 5.0,
        batch: int = 500,
        lease_s: float = 60.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.grace_s = grace_s
        self.every_s = every_s
        self.batch = batch
        self.lease_s = lease_s
        self._last = 0.0

    def run_once(self) -> int:
        """Claim, publish and mark one batch (at most ``batch``) of the pending deliveries older than the grace
        period, one destination at a time; return how many were published. An unavailable broker releases the
        claims not yet published and raises ``BrokerUnavailable``; a destination the broker refuses (unroutable)
        is logged and left claimed (see the class docstring)."""
        pending = self.store.claim_unpublished(older_than_s=self.grace_s, limit=self.batch, lease_s=self.lease_s)
        if not pending:
            return 0
        by_destination: dict[str, list[PendingDelivery]] = {}
        for item in pending:
            by_destination.setdefault(item.destination, []).append(item)
        marked: set[int] = set()
        for destination, group in by_destination.items():
            ids = [p.delivery_id for p in group]
            try:
                self.broker.publish([outbound_for(p) for p in group])
            except BrokerUnavailable:
                self._release([p.delivery_id for p in pending if p.delivery_id not in marked])
                raise
            except BrokerError as exc:  # this destination only: kept claimed until the lease runs out
                log.warning("relay cannot publish %d deliveries to %s for now: %s", len(group), destination, exc)
                continue
            self.store.mark_published(ids)
            marked.update(ids)
        if marked:
            log.info("relay published %d pending deliveries", len(marked))
        return len(marked)

    def _release(self, ids: list[int]) -> None:
        try:
            self.store.release_claims(ids)
        except Exception as exc:  # the lease runs out by itself
            log.warning("relay could not release its claims: %s", exc)

    def maybe_run(self) -> int:
        """``run_once`` at most every ``every_s`` seconds."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return 0
        self._last = now
        try:
            return self.run_once()
        except BrokerError as exc:
            log.warning("relay could not publish: %s", exc)
            return 0
        except StoreUnavailableError as exc:  # the next run tries again
            log.warning("relay could not read the outbox: %s", exc)
            return 0
