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
StatusCode list is published: the map is the deployment's, marked unsourced).

Message ids derive from the connector and the ``$oid`` (and, for the status 10, from the order too), and the
envelopes are accepted through the normal pipeline before the cursor moves, so a crash in between makes the next
poll resend envelopes the store answers as duplicates: nothing is routed twice.

Run by ``hub postal-poll`` (once, or every ``--every`` seconds).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.errors import MappingError, RejectedError
from hub.packets.dossier import DossierStatusUpdate, Step
from hub.packets.postal import Direction, PostalState
from hub.security.envelope import EnvelopeHeader
from hub.store import flow_records, postal_orders
from mappings import postal as vp

if TYPE_CHECKING:
    from adapters.postal import PostalAdapter
    from hub.packets.postal import PostalStatus
    from hub.runtime import Runtime

log = logging.getLogger(__name__)

ID_NAMESPACE = uuid.UUID("0b3f2d6e-5a4c-4f1e-9c7d-2e8a1b6c3d50")
STATUS_TYPE = "postal.status"
DOSSIER_STATUS_TYPE = "dossier.status"
#: TrangThaiHoSo 10, Đã trả kết quả (TH-SEED:610-619): the result reached the citizen.
RESULT_RETURNED = 10


@dataclass
class PollResult:
    connector: str
    seen: int = 0
    emitted: list[str] = field(default_factory=list)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    #: message ids of the dossier.status 10 routed for delivered results
    returned: list[str] = field(default_factory=list)


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
        """Emit each new tracking event of ``connector`` once, then move its cursor past them."""
        adapter = self.adapters[connector]
        size = page_size or adapter.options.page_size
        result = PollResult(connector)
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
                try:
                    status = self._status(connector, doc, adapter)
                    self._emit(message_id, status)
                    self._returned(connector, status, result)
                except (MappingError, RejectedError) as exc:
                    result.errors.append(f"event {oid}: {exc}")
                    log.warning("postal event not emitted connector=%s event=%s: %s", connector, oid, exc)
                claims.append((oid, str(doc.get("OrderNumber", ""))[:100], str(doc.get("StatusCode", ""))[:32],
                               message_id))  # fmt: skip
            new = flow_records.claim_postal_events(self.store.engine, connector, claims, new_last)
            result.emitted.extend(event_message_id(connector, e) for e in new)
            result.skipped += len(claims) - len(new)
            last_id = new_last
            if len(docs) < size:
                break
        return result

    def _status(self, connector: str, doc: dict[str, Any], adapter: PostalAdapter) -> PostalStatus:
        """The document as ``postal.status``, with the direction and COD amount of the hub's record of the order."""
        status = vp.status_from_doc(doc, adapter.options.status_map)
        item = doc.get("ItemCode")
        order = (
            postal_orders.find_order(self.store.engine, connector, item_code=str(item))
            if item
            else postal_orders.find_order(self.store.engine, connector, dossier_code=status.dossier_code)
        )
        if order is None or order.dossier_code != status.dossier_code:
            return status
        return status.model_copy(update={"direction": Direction(order.direction), "cod_amount": order.cod_amount})

    def _emit(self, message_id: str, status: PostalStatus) -> None:
        header = EnvelopeHeader(
            message_id=message_id,
            sender=self.hub_code,
            receiver=self.hub_code,
            message_type=STATUS_TYPE,
            dossier_code=status.dossier_code,
        )
        self.runtime.inject(header, status)

    def _returned(self, connector: str, status: PostalStatus, result: PollResult) -> None:
        """A result delivery reported delivered: the order is recorded delivered and the dossier moves to 10
        (reported to every connector that receives dossier.status — the national portal, the province)."""
        if status.state is not PostalState.DELIVERED or status.direction is not Direction.DELIVERY:
            return
        item = status.order_number
        postal_orders.set_state(self.store.engine, connector, item, postal_orders.DELIVERED)
        cod = f"; thu hộ (COD) {status.cod_amount:,} đồng".replace(",", ".") if status.cod_amount else ""
        office = f" tại bưu cục {status.post_office}" if status.post_office else ""
        update = DossierStatusUpdate(
            dossier_code=status.dossier_code,
            status=RESULT_RETURNED,
            step=Step(
                actor="Bưu chính công ích (VNPost)",
                title="Trả kết quả qua dịch vụ bưu chính công ích",
                content=f"Đã phát kết quả cho người nhận{office}, mã vận đơn {item}{cod}: {status.message}"[:4000],
            ),
            at=status.at,
            source_system=self.hub_code,
        )
        message_id = returned_message_id(connector, item)
        header = EnvelopeHeader(
            message_id=message_id,
            sender=self.hub_code,
            receiver=self.hub_code,
            message_type=DOSSIER_STATUS_TYPE,
            dossier_code=status.dossier_code,
        )
        try:
            self.runtime.inject(header, update)
        except RejectedError as exc:  # e.g. the dossier is not at 9 (done): the status machine refuses 10
            result.errors.append(f"{status.dossier_code}: status {RESULT_RETURNED} not routed: {exc}")
            log.warning("dossier %s: status 10 after delivery %s not routed: %s", status.dossier_code, item, exc)
            return
        result.returned.append(message_id)

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
