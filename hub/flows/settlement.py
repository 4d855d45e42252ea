"""Settling a payment the platform reports paid: the same effect, once, whichever way the news came — a verified
``CONFIRM`` callback (``hub.flows.payments``) or a reconciliation ``QUERY`` answering ``TrangThaiGD`` "1"
(``hub.flows.reconcile``; TH-PQ:52-72 runs its CONFIRM handler on the QUERY's fields the same way).

``settle``: a payment already confirmed is a duplicate (nothing happens; with another bank transaction it is
refused, ``already-confirmed``); otherwise the receipt is fetched and checked (``hub.flows.receipts.obtain_receipt``:
the receipt rule), the hub-signed ``payment.receipt`` (the document and its verification) routed to the requester
and ``dossier.status`` 4 (6 → 4: processing resumes after the financial obligation) to the connectors that receive
statuses, then the row marked paid. Their message ids derive from the reference, so a settlement repeated after a
crash, or racing another, routes nothing twice; the row is marked last, so a crash before it leaves the payment
open for the next CONFIRM or reconciliation.

A receipt that breaks the receipt rule (unsigned where the profile says signed, signed by anyone but the
connector's ``receipt_signers``, altered…) **holds** the payment: nothing is routed (no receipt, no 6 → 4), the
payment row becomes ``receipt-rejected`` with the confirmation's transaction (reconciliation no longer asks about
it: a bad receipt is not fixed by asking again), and a refusal of kind ``payment.receipt`` names the rule for
operators (``GET /api/v1/partner-refusals``, the console's rejected payment confirmations) — in one transaction,
once. The payment itself did happen, so the confirmation is not refused: the platform is answered "00" (the rule
in ``X-Lienthong-Rule``). A repeated confirmation of a held payment fetches and checks the receipt again (nothing
else: no second refusal row) — so once the platform re-issues a correctly signed receipt, or the intermediary's
new certificate is registered, the platform's resent confirmation settles it; otherwise the dossier waits at 6
for a person (an operator's audited status correction).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from adapters.base import Adapter
from hub.errors import DocumentSignatureRejected, PaymentRefusedError, RejectedError
from hub.flows.receipts import ReceiptContext, obtain_receipt
from hub.packets.dossier import DossierStatusUpdate, Step
from hub.packets.payment import PaymentRequest, ReceiptVerification
from hub.security.envelope import EnvelopeHeader
from hub.security.signed_documents import DocumentSignature
from hub.store import flow_records
from mappings import payment as pm

if TYPE_CHECKING:
    from hub.registry.core import Connector
    from hub.runtime import Runtime

log = logging.getLogger(__name__)

ID_NAMESPACE = uuid.UUID("6f1c4e2a-9b1d-4c55-8a3e-1d2b3c4d5e6f")
RESUMED_STATUS = 4


def receipt_message_id(reference: str) -> str:
    """The message id of a reference's ``payment.receipt`` (the same on every settlement of it)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"payment.receipt:{reference}"))


def status_message_id(reference: str) -> str:
    """The message id of the ``dossier.status`` 4 a payment's settlement routes."""
    return str(uuid.uuid5(ID_NAMESPACE, f"dossier.status:{reference}"))


@dataclass(frozen=True)
class Settled:
    """What ``settle`` did: ``duplicate`` (the payment was settled or held before: nothing done) or not, the
    ``payment.receipt``'s message id, and ``held``: the receipt rule that holds the payment (nothing routed)."""

    reference: str
    duplicate: bool
    receipt_message_id: str
    held: str | None = None


class Settlement:
    """One per process (the API's ``PaymentCallbacks``, a worker's reconciliation): adapters built per connector
    configuration, the runtime's acceptor to route what a settlement sends."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._adapters: dict[str, tuple[object, Adapter]] = {}
        self._lock = threading.Lock()

    def adapter(self, code: str) -> Adapter | None:
        """The adapter of the routed connector ``code`` (rebuilt when its configuration changed), or ``None``."""
        from hub.runtime import adapter_for

        cfg = self.runtime.routing.destinations.get(code)
        if cfg is None:
            return None
        with self._lock:
            known = self._adapters.get(code)
            if known is not None and known[0] == cfg:  # pydantic equality: rebuilt only when it changed
                return known[1]
            adapter = adapter_for(cfg, self.runtime.store)
            if known is not None:
                known[1].close()
            self._adapters[code] = (cfg, adapter)
            return adapter

    def close(self) -> None:
        with self._lock:
            for _, adapter in self._adapters.values():
                adapter.close()
            self._adapters.clear()

    # ------------------------------------------------------------ settle

    def settle(
        self, connector: Connector, payment: flow_records.Payment, confirm: Mapping[str, Any], *, digest: str
    ) -> Settled:
        """Settle ``payment`` with a verified confirmation's fields (``CONFIRM`` names: MaLoi "00", MaThamChieu,
        SoTien checked by the caller, MaGiaoDich, MaNganHang, ThoiGianGD, ThongTinGiaoDich). Raises
        ``PaymentRefusedError`` (``already-confirmed``) and ``ReceiptRejected`` (``receipt-unavailable``: try again
        later); a receipt that breaks the receipt rule holds the payment (``Settled.held``)."""
        receipt_id = receipt_message_id(payment.reference)
        transaction = str(confirm.get("MaGiaoDich") or "")
        if payment.confirmed_at is not None:
            return self._duplicate(payment, transaction, receipt_id)
        if payment.state == flow_records.RECEIPT_HELD:  # checked again (fixed meanwhile?), for its own transaction
            same_transaction(payment, transaction)
        adapter = self.adapter(connector.code)
        context = ReceiptContext(connector, adapter, payment, confirm, lambda: self.original_request(payment))
        try:
            receipt = obtain_receipt(context)
        except DocumentSignatureRejected as held:
            return self._hold(connector, payment, confirm, held, digest=digest)
        self._route(payment, confirm, receipt.document, receipt.verification)
        first = flow_records.confirm_payment(
            self.runtime.store.engine,
            payment.reference,
            bank_transaction_id=transaction,
            receipt_message_id=receipt_id,
            confirm_digest=digest,
            confirm_time=str(confirm.get("ThoiGianGD") or ""),
        )
        if not first:  # another settlement (a concurrent CONFIRM, reconciliation) marked it in the meantime
            fresh = flow_records.payment(self.runtime.store.engine, payment.reference)
            return self._duplicate(fresh or payment, transaction, receipt_id)
        log.info("payment settled connector=%s dossier_code=%s", connector.code, payment.dossier_code)
        return Settled(payment.reference, False, receipt_id)

    def _hold(
        self,
        connector: Connector,
        payment: flow_records.Payment,
        confirm: Mapping[str, Any],
        held: DocumentSignatureRejected,
        *,
        digest: str,
    ) -> Settled:
        """The receipt breaks the receipt rule: hold the payment (see the module), once."""
        report = held.report if isinstance(held.report, DocumentSignature) else None
        transaction = str(confirm.get("MaGiaoDich") or "")
        first = flow_records.hold_payment(
            self.runtime.store.engine,
            payment.reference,
            rule=held.rule,
            reason=str(held),
            receipt_digest=report.sha256 if report is not None else flow_records.digest(b""),
            bank_transaction_id=transaction,
            confirm_digest=digest,
            confirm_time=str(confirm.get("ThoiGianGD") or ""),
        )
        receipt_id = receipt_message_id(payment.reference)
        if not first:  # held before (a repeated confirmation), or settled by a concurrent settlement meanwhile
            fresh = flow_records.payment(self.runtime.store.engine, payment.reference) or payment
            settled = self._duplicate(fresh, transaction, receipt_id)
            return settled if fresh.confirmed_at is not None else replace(settled, held=held.rule)
        log.warning("payment held: its receipt breaks the receipt rule connector=%s dossier_code=%s rule=%s: %s",
                    connector.code, payment.dossier_code, held.rule, held)  # fmt: skip
        return Settled(payment.reference, False, receipt_id, held=held.rule)

    @staticmethod
    def _duplicate(payment: flow_records.Payment, transaction: str, receipt_id: str) -> Settled:
        same_transaction(payment, transaction)
        return Settled(payment.reference, True, receipt_id)

    def original_request(self, payment: flow_records.Payment) -> PaymentRequest | None:
        """The canonical ``payment.request`` the payment was initiated for, read back from the message log."""
        from hub import packets
        from hub.security.envelope import body_payload
        from hub.xmlparse import parse_xml

        envelope = flow_records.request_envelope(self.runtime.store.engine, payment.message_id)
        if envelope is None:
            return None
        model = packets.read_validated("payment.request", body_payload(parse_xml(envelope, strip_comments=True)))
        return model if isinstance(model, PaymentRequest) else None

    def requester(self, payment: flow_records.Payment) -> str:
        """Who asked for the payment: the sender of its ``payment.request``."""
        if payment.requester:
            return payment.requester
        trace = self.runtime.store.trace(payment.message_id)
        return trace.sender if trace is not None else self.runtime.settings.hub_code

    def _route(
        self,
        payment: flow_records.Payment,
        confirm: Mapping[str, Any],
        document: bytes,
        verification: ReceiptVerification | None,
    ) -> None:
        """Route the hub-signed payment.receipt and (for a payment, not a refund) the 6 → 4 dossier.status."""
        route(self.runtime, payment, confirm, document, self.requester(payment), verification=verification)


def same_transaction(payment: flow_records.Payment, transaction: str) -> None:
    """``already-confirmed`` when ``payment`` was confirmed (or held) with another bank transaction."""
    if payment.bank_transaction_id and transaction and payment.bank_transaction_id != transaction:
        why = f"{payment.reference} was confirmed with transaction {payment.bank_transaction_id}"
        raise PaymentRefusedError("conflict", pm.OTHER_ERRORS, "already-confirmed", why, payment.reference)


def route(
    runtime: Runtime,
    payment: flow_records.Payment,
    confirm: Mapping[str, Any],
    document: bytes,
    requester: str,
    *,
    verification: ReceiptVerification | None = None,
) -> str:
    """Route a confirmation's ``payment.receipt`` — the document and what was proved about its signature — (and,
    for a payment, ``dossier.status`` 4); its message id."""
    hub_code = runtime.settings.hub_code
    canonical = pm.receipt_from_confirm(
        confirm, dossier_code=payment.dossier_code, signed_receipt=document, verification=verification
    )
    receipt_id = receipt_message_id(payment.reference)
    routed: list[tuple[str, str, str, Any]] = [(receipt_id, "payment.receipt", requester, canonical)]
    if payment.kind != "refund":
        status = DossierStatusUpdate(
            dossier_code=payment.dossier_code,
            status=RESUMED_STATUS,
            step=Step(
                actor="Lienthong", title="Thanh toán", content=f"Đã nhận biên lai thanh toán {payment.reference}"
            ),
            at=canonical.paid_at,
            source_system=hub_code,
        )
        routed.append((status_message_id(payment.reference), "dossier.status", hub_code, status))
    for message_id, message_type, receiver, model in routed:
        header = EnvelopeHeader(
            message_id=message_id,
            correlation_id=payment.message_id,
            sender=hub_code,
            receiver=receiver,
            message_type=message_type,
            dossier_code=payment.dossier_code,
        )
        try:
            runtime.inject(header, model)
        except RejectedError as exc:  # e.g. no route, or the status machine refuses 4 here
            log.warning("message_id=%s %s not routed: %s", message_id, message_type, exc)
    return receipt_id
