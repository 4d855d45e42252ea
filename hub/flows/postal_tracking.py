"""F4: read each postal connector's tracking feed (VNPost, profile ``vnpost/ngsp``) and emit one hub-signed
``postal.status`` per new event to the connectors that receive it (the provincial system), never twice for the
same event; a result delivery that VNPost reports delivered moves the dossier to status 10 (Đã trả kết quả) on the
connectors that receive ``dossier.status`` — the national portal, through its normal path.

VNPost pages its feed by the last document's ``_id.$oid`` (GET ``?pagesize=N&lastId=<oid>``, PARTNER-FORMATS §4;
OC-SDK MStatus; OC-VP:340-419). The cursor (that ``$oid``) is kept per connector in ``postal_cursors``; each
emitted event is a row in ``postal_events`` (unique per connector and ``$oid``). A document names its order by
OrderNumber (the dossier code) and ItemCode; the hub's record of that order (``hub.store.postal_orders``, written
when the order was placed) gives what the feed does not: the direction (pickup of the dossier, or delivery of the
result) and the COD amount, which the ``postal.status`` carries (collected when the state is ``delivered``).
VNPost's StatusCode is kept as sent and mapped to the canonical state by the profile's ``status_map`` (no
StatusCode list is published: the map is the deployment's, marked unsourced); EventTime is read in the profile's
``event_time`` unit (unsourced too), an implausible one refused (``vnpost-event-time``). An order VNPost reports
delivered, returned or cancelled is final in the hub's record: its dossier and direction may take a new order.

Status 10 is kept until the status machine decides it (``hub.store.postal_orders`` ``handover``): the first
report of a delivered result tries it at once; refused because the dossier is not done yet (not at 8 or 9), it stays
``pending`` and is tried again at each later poll once the dossier's status allows 10; it ends ``applied``,
``stale`` (older than the dossier's last update: never applied) or ``refused`` (the dossier is at a status nothing
but a correction leaves: 3, 7, or 10 already). Only the applied ones count as ``returned``.

Message ids derive from the connector and the ``$oid`` (and, for the status 10, from the order too), and the
envelopes are accepted through the normal pipeline before the cursor moves, so a crash in between makes the next
poll resend envelopes the store answers as duplicates: nothing is routed twice.

Run by ``hub postal-poll`` (once, or every ``--every`` seconds).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.dossier.status_machine import TERMINAL, DossierStatus, is_legal
from hub.errors import ConflictError, MappingError, RejectedError, StatusTransitionError
from hub.packets.dossier import DossierStatusUpdate, Step
from hub.packets.postal import Direction, PostalState
from hub.security.envelope import EnvelopeHeader
from hub.store import flow_records, postal_orders
from mappings import postal as vp

if TYPE_CHECKING:
    from adapters.postal import PostalAdapter
    from hub.packets.postal import PostalStatus
    from hub.runtime import Runtime
    from hub.store.postal_orders import PostalOrderRecord

log = logging.getLogger(__name__)

ID_NAMESPACE = uuid.UUID("0b3f2d6e-5a4c-4f1e-9c7d-2e8a1b6c3d50")
STATUS_TYPE = "postal.status"
DOSSIER_STATUS_TYPE = "dossier.status"
#: TrangThaiHoSo 10, Đã trả kết quả (TH-SEED:610-619): the result reached the citizen.
RESULT_RETURNED = 10
ACTOR, STEP_TITLE = "Bưu chính công ích (VNPost)", "Trả kết quả qua dịch vụ bưu chính công ích"
#: The tracking states that end an order in the hub's record (its dossier and direction free for a new order).
FINAL_STATES = {
    PostalState.DELIVERED: postal_orders.DELIVERED,
    PostalState.RETURNED: postal_orders.RETURNED,
    PostalState.CANCELLED: postal_orders.CANCELLED,
}


@dataclass
class PollResult:
    connector: str
    seen: int = 0
    emitted: list[str] = field(default_factory=list)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    #: message ids of the dossier.status 10 applied (and routed) for delivered results
    returned: list[str] = field(default_factory=list)
    #: ItemCodes of delivered results whose status 10 waits for the dossier (tried again at the next poll)
    pending: list[str] = field(default_factory=list)


def event_message_id(connector: str, event_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{connector}:{event_id}"))


def returned_message_id(connector: str, item_code: str) -> str:
    """The id of the dossier.status 10 for a delivered result: one per order, whichever event says it first."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{connector}:{item_code}:{DOSSIER_STATUS_TYPE}:{RESULT_RETURNED}"))


class PostalTracker:
    """Polls postal connectors; ``adapters`` maps connector code → ``PostalAdapter``. Events enter the pipeline
    through ``runtime.inject``: the hub signs them and does not verify its own signature again."""

    def __init__(self, runtime: Runtime, adapters: dict[str, PostalAdapter]) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.hub_code = runtime.settings.hub_code
        self.adapters = adapters

    def poll(self, connector: str, *, page_size: int | None = None, max_pages: int = 50) -> PollResult:
        """Try the status 10s still pending, then emit each new tracking event of ``connector`` once and move its
        cursor past them."""
        adapter = self.adapters[connector]
        size = page_size or adapter.options.page_size
        result = PollResult(connector)
        self._retry_handovers(connector, result)
        last_id = flow_records.postal_cursor(self.store.engine, connector)
        for _ in range(max_pages):
            docs, new_last = adapter.tracking(last_id, size)
            if not docs or new_last is None:
                break
            claims = []
            for doc in docs:
                result.seen += 1
                oid = vp.doc_id(doc)
                message_id = event_message_id(connector, oid)
                self._event(connector, doc, adapter, message_id, result)
                claims.append((oid, str(doc.get("OrderNumber", ""))[:100], str(doc.get("StatusCode", ""))[:32],
                               message_id))  # fmt: skip
            new = flow_records.claim_postal_events(self.store.engine, connector, claims, new_last)
            result.emitted.extend(event_message_id(connector, e) for e in new)
            result.skipped += len(claims) - len(new)
            last_id = new_last
            if len(docs) < size:
                break
        result.pending = [o.item_code for o in postal_orders.pending_handovers(self.store.engine, connector)]
        return result

    def _event(
        self, connector: str, doc: dict[str, Any], adapter: PostalAdapter, message_id: str, result: PollResult
    ) -> None:
        """One document: its postal.status emitted, the order's final state recorded, a delivered result's 10."""
        oid = vp.doc_id(doc)
        try:
            status, order = self._status(connector, doc, adapter)
        except MappingError as exc:
            result.errors.append(f"event {oid}: {exc}")
            log.warning("postal event not emitted connector=%s event=%s: %s", connector, oid, exc)
            return
        try:
            self._emit(message_id, status)
        except RejectedError as exc:  # the order's own record and its status 10 do not depend on the province
            result.errors.append(f"event {oid}: {exc}")
            log.warning("postal event not emitted connector=%s event=%s: %s", connector, oid, exc)
        if order is None or status.state not in FINAL_STATES:
            return
        postal_orders.set_state(self.store.engine, connector, order.item_code, FINAL_STATES[status.state])
        if status.state is PostalState.DELIVERED and status.direction is Direction.DELIVERY:
            self._returned(connector, order, status, result)

    def _status(
        self, connector: str, doc: dict[str, Any], adapter: PostalAdapter
    ) -> tuple[PostalStatus, PostalOrderRecord | None]:
        """The document as ``postal.status``, with the direction and COD amount of the hub's record of the order
        (returned too: ``None`` when the hub has none)."""
        status = vp.status_from_doc(doc, adapter.options.status_map, adapter.options.event_time)
        item = doc.get("ItemCode")
        order = (
            postal_orders.find_order(self.store.engine, connector, item_code=str(item))
            if item
            else postal_orders.find_order(self.store.engine, connector, dossier_code=status.dossier_code)
        )
        if order is None or order.dossier_code != status.dossier_code:
            return status, None
        update = {"direction": Direction(order.direction), "cod_amount": order.cod_amount}
        return status.model_copy(update=update), order

    def _emit(self, message_id: str, status: PostalStatus) -> None:
        header = EnvelopeHeader(
            message_id=message_id,
            sender=self.hub_code,
            receiver=self.hub_code,
            message_type=STATUS_TYPE,
            dossier_code=status.dossier_code,
        )
        self.runtime.inject(header, status)

    def _returned(self, connector: str, order: PostalOrderRecord, status: PostalStatus, result: PollResult) -> None:
        """A result delivery reported delivered: the dossier's status 10 kept pending, then tried (reported to
        every connector that receives dossier.status — the national portal, the province)."""
        item = order.item_code
        cod = f"; thu hộ (COD) {status.cod_amount:,} đồng".replace(",", ".") if status.cod_amount else ""
        office = f" tại bưu cục {status.post_office}" if status.post_office else ""
        note = f"Đã phát kết quả cho người nhận{office}, mã vận đơn {item}{cod}: {status.message}"[:4000]
        held = postal_orders.hold_handover(self.store.engine, connector, item, at=status.at, note=note)
        if held == postal_orders.PENDING:
            self._hand_over(connector, order.dossier_code, item, status.at, note, result)

    def _retry_handovers(self, connector: str, result: PollResult) -> None:
        """The status 10s still pending: tried again once the dossier's status allows 10 (8 or 9, or none yet),
        settled ``refused`` once it is at a status only a correction leaves; else left waiting, untried (a refusal
        would be one more line on the dossier's timeline at every poll)."""
        for order in postal_orders.pending_handovers(self.store.engine, connector):
            assert order.handover_at is not None and order.handover_note is not None
            stored = self._stored(returned_message_id(connector, order.item_code))
            if stored is not None:  # an earlier poll stopped between storing the 10 and recording what it did
                postal_orders.settle_handover(self.store.engine, connector, order.item_code, stored)
                continue
            current = flow_records.dossier_status(self.store.engine, order.dossier_code)
            if current is not None and DossierStatus(current) in TERMINAL:
                reason = f"the dossier is at {current}, which only an operator's correction leaves: 10 not applied"
                self._settle(connector, order.dossier_code, order.item_code, postal_orders.REFUSED, reason, result)
            elif current is None or is_legal(current, RESULT_RETURNED):
                self._hand_over(connector, order.dossier_code, order.item_code, order.handover_at,
                                order.handover_note, result)  # fmt: skip

    def _hand_over(
        self, connector: str, dossier_code: str, item: str, at: datetime, note: str, result: PollResult
    ) -> None:
        """Inject the dossier.status 10 and record what the status machine made of it."""
        step = Step(actor=ACTOR, title=STEP_TITLE, content=note)
        update = DossierStatusUpdate(
            dossier_code=dossier_code, status=RESULT_RETURNED, step=step, at=at, source_system=self.hub_code
        )
        message_id = returned_message_id(connector, item)
        header = EnvelopeHeader(
            message_id=message_id,
            sender=self.hub_code,
            receiver=self.hub_code,
            message_type=DOSSIER_STATUS_TYPE,
            dossier_code=dossier_code,
        )
        try:
            accepted = self.runtime.inject(header, update)
        except StatusTransitionError as exc:
            current = flow_records.dossier_status(self.store.engine, dossier_code)
            if current is not None and DossierStatus(current) in TERMINAL:
                self._settle(connector, dossier_code, item, postal_orders.REFUSED, str(exc), result)
            else:  # not done yet (e.g. still processing): tried again once the dossier is at 8 or 9
                self._wait(connector, dossier_code, item, str(exc), result)
            return
        except ConflictError:  # stored before under a former createdAt: an earlier poll stopped before recording it
            stored = self._stored(message_id) or postal_orders.APPLIED
            postal_orders.settle_handover(self.store.engine, connector, item, stored)
            return
        except RejectedError as exc:  # no route for dossier.status, …: a configuration the operator may fix
            self._wait(connector, dossier_code, item, str(exc), result)
            return
        if accepted.status_update == "stale" or (accepted.duplicate and not accepted.destinations):
            reason = "older than the dossier's last update: recorded, not applied"
            self._settle(connector, dossier_code, item, postal_orders.STALE, reason, result)
            return
        postal_orders.settle_handover(self.store.engine, connector, item, postal_orders.APPLIED)
        if not accepted.duplicate:  # a duplicate was applied by an earlier poll that stopped before recording it
            result.returned.append(message_id)

    def _stored(self, message_id: str) -> str | None:
        """What became of the hub's status 10 ``message_id`` if the store holds it: ``applied`` (queued to its
        receivers) or ``stale`` (stored without deliveries); ``None`` when it was never stored."""
        trace = self.store.trace(message_id, self.hub_code)
        if trace is None:
            return None
        return postal_orders.APPLIED if trace.deliveries else postal_orders.STALE

    def _wait(self, connector: str, dossier_code: str, item: str, reason: str, result: PollResult) -> None:
        postal_orders.settle_handover(self.store.engine, connector, item, postal_orders.PENDING, reason)
        result.errors.append(f"{dossier_code}: status {RESULT_RETURNED} waits (tried again at the next poll): {reason}")
        log.warning("dossier %s: status 10 after delivery %s waits: %s", dossier_code, item, reason)

    def _settle(
        self, connector: str, dossier_code: str, item: str, state: str, reason: str, result: PollResult
    ) -> None:
        postal_orders.settle_handover(self.store.engine, connector, item, state, reason)
        result.errors.append(f"{dossier_code}: status {RESULT_RETURNED} {state}: {reason}")
        log.warning("dossier %s: status 10 after delivery %s %s: %s", dossier_code, item, state, reason)

    def poll_all(self) -> list[PollResult]:
        """Poll every connector; a connector that cannot be read is reported in its result's ``errors``."""
        from adapters.base import DeliveryError

        results = []
        for code in sorted(self.adapters):
            try:
                results.append(self.poll(code))
            except DeliveryError as exc:
                log.warning("postal tracking feed unreadable connector=%s: %s", code, exc)
                results.append(PollResult(code, errors=[str(exc)]))
        return results


def tracker_for(runtime: Runtime) -> PostalTracker:
    """A tracker over every postal connector of the runtime's routing table that can be called (one without the
    ``vnpost/ngsp`` profile cannot)."""
    from adapters.postal import PostalAdapter

    adapters = {
        code: adapter
        for code, adapter in runtime.adapters().items()
        if runtime.routing.destinations[code].kind == "postal" and isinstance(adapter, PostalAdapter)
    }
    return PostalTracker(runtime, adapters)
