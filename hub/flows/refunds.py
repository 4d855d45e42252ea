"""Refunds (Tiền Giang Điều 17.4) — the hub's OWN protocol, no public source describes one (PARTNER-FORMATS §3:
"REFUND/CONFIRM_REFUND unsourced"): the province sends a ``payment.request`` of kind ``refund`` naming the paid
``original_reference`` (refused at intake, and again by the adapter before it sends, once the dossier is resolved:
status 9 or 10, ``hub.dossier.refunds``); the adapter sends ``REFUND``; the platform's ``CONFIRM_REFUND`` callback
(the payment callback URL) carries a bank-signed XML receipt (``BienLai``). It passes the CONFIRM's rules 1–6
(``hub.flows.payments``), with a refund reference the hub sent (``unknown-reference``), and:

8. ``MaThamChieuGoc`` is a payment of this connector the hub saw confirmed — ``unknown-original-reference``; it is
   the one the refund request named, for the same dossier — ``original-mismatch``;
9. ``BienLai`` is a refund receipt (``LoaiGiaoDich`` ``HOAN_TIEN``) of that original reference, with the refund's
   reference and amount, signed by a certificate registered on the connector — ``receipt-unsigned`` /
   ``receipt-signer`` / ``receipt-signature`` / ``receipt-mismatch``;
10. this refund and those confirmed before it do not exceed what was paid — ``refund-exceeds-paid``: checked by the
    store in the refund's own transaction (``flow_records.confirm_refund``: a guarded update of the paid row's
    refunded total, and a check constraint), not under a lock of one process, so concurrent callbacks in any number
    of API processes cannot over-refund.

An accepted refund routes a hub-signed ``payment.receipt`` with ``kind`` ``refund`` to the requester (no status
update: the dossier is not resumed); a repeated CONFIRM_REFUND changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

from hub.errors import MappingError, ReceiptRejected, RefundExceedsPaidError
from hub.errors import PaymentRefusedError as Refused
from hub.flows.receipts import receipt_fields, verify_receipt
from hub.flows.settlement import Settlement, receipt_message_id, route
from hub.store import flow_records
from mappings import payment as pm

if TYPE_CHECKING:
    from hub.registry.core import Connector

log = logging.getLogger(__name__)


class RefundConfirmations:
    """Rules 4–10 of an authenticated ``CONFIRM_REFUND``."""

    def __init__(self, settlement: Settlement) -> None:
        self.settlement = settlement

    def confirm(self, connector: Connector, message: dict[str, Any], body: bytes) -> None:
        """Check and act on one authenticated CONFIRM_REFUND; ``PaymentRefusedError`` when it is refused."""
        engine = self.settlement.runtime.store.engine
        reference = message.get("MaThamChieu") if isinstance(message.get("MaThamChieu"), str) else None
        refund = None if reference is None else flow_records.payment(engine, reference)
        if refund is None or refund.connector != connector.code or refund.kind != "refund":
            why = f"no refund {reference!r} was initiated with {connector.code}"
            raise Refused("not-found", pm.OTHER_ERRORS, "unknown-reference", why, reference)
        if message.get("MaLoi") != pm.SUCCESS:
            flow_records.mark_failed(engine, refund.reference)
            why = f"the platform reports MaLoi {message.get('MaLoi')!r}"
            raise Refused("declined", pm.OTHER_ERRORS, "payment-failed", why, reference)
        try:
            amount = pm.amount_of(message)
        except MappingError as exc:
            raise Refused("malformed", pm.OTHER_ERRORS, "malformed", str(exc), reference) from None
        if amount != refund.amount:
            why = f"SoTien {amount} differs from the requested {refund.amount} VND"
            raise Refused("malformed", pm.OTHER_ERRORS, "amount-mismatch", why, reference)
        original = self._original(connector, refund, message)
        receipt = self._verified_receipt(connector, message, refund.reference, amount, original.reference)
        transaction = str(message.get("MaGiaoDich", ""))
        if refund.confirmed_at is not None:
            self._duplicate(refund, transaction)
            return
        try:
            first = flow_records.confirm_refund(
                engine,
                refund.reference,
                original.reference,
                amount,
                bank_transaction_id=transaction,
                receipt_message_id=receipt_message_id(refund.reference),
                confirm_digest=flow_records.digest(body),
            )
        except RefundExceedsPaidError:
            already = flow_records.refunded_total(engine, original.reference)
            why = f"refunding {amount} VND after {already} VND exceeds the {original.amount} VND paid"
            raise Refused("malformed", pm.OTHER_ERRORS, "refund-exceeds-paid", why, reference) from None
        if not first:  # a concurrent identical CONFIRM_REFUND confirmed it
            fresh = flow_records.payment(engine, refund.reference)
            self._duplicate(fresh or refund, transaction)
            return
        route(self.settlement.runtime, refund, message, receipt, self.settlement.requester(refund))
        log.info("refund confirmed connector=%s dossier_code=%s", connector.code, refund.dossier_code)

    @staticmethod
    def _duplicate(refund: flow_records.Payment, transaction: str) -> None:
        if refund.bank_transaction_id and refund.bank_transaction_id != transaction:
            why = f"{refund.reference} was confirmed with transaction {refund.bank_transaction_id}"
            raise Refused("conflict", pm.OTHER_ERRORS, "already-confirmed", why, refund.reference)

    def _original(
        self, connector: Connector, refund: flow_records.Payment, message: dict[str, Any]
    ) -> flow_records.Payment:
        """Rule 8: the paid payment the refund returns money from."""
        engine = self.settlement.runtime.store.engine
        original_ref = message.get("MaThamChieuGoc")
        original = flow_records.payment(engine, original_ref) if isinstance(original_ref, str) else None
        if (
            original is None
            or original.kind != "payment"
            or original.connector != connector.code
            or original.confirmed_at is None
        ):
            why = f"MaThamChieuGoc {original_ref!r} is no payment confirmed through {connector.code}"
            raise Refused("not-found", pm.OTHER_ERRORS, "unknown-original-reference", why, refund.reference)
        if original.reference != refund.original_reference or original.dossier_code != refund.dossier_code:
            why = (
                f"the refund {refund.reference} was requested for {refund.original_reference}, not {original.reference}"
            )
            raise Refused("malformed", pm.OTHER_ERRORS, "original-mismatch", why, refund.reference)
        return original

    @staticmethod
    def _verified_receipt(
        connector: Connector, message: dict[str, Any], reference: str, amount: int, original: str
    ) -> bytes:
        """Rule 9: the bank-signed refund receipt of the CONFIRM_REFUND."""
        try:
            receipt = base64.b64decode(str(message.get("BienLai", "")), validate=True)
        except (binascii.Error, ValueError):
            raise Refused(
                "malformed", pm.OTHER_ERRORS, "receipt-unsigned", "BienLai is not base64", reference
            ) from None
        certificates = [info.certificate for info in connector.certificates]
        try:
            signed = verify_receipt(receipt, certificates)
        except ReceiptRejected as exc:
            raise Refused("malformed", pm.OTHER_ERRORS, exc.rule, exc.detail, reference) from None
        fields = receipt_fields(signed)
        if fields.get("MaThamChieu") != reference or fields.get("SoTien") != str(amount):
            why = "the receipt's reference or amount differ from the CONFIRM_REFUND"
            raise Refused("malformed", pm.OTHER_ERRORS, "receipt-mismatch", why, reference)
        if (fields.get("LoaiGiaoDich"), fields.get("MaThamChieuGoc")) != (pm.REFUND_RECEIPT, original):
            why = f"the receipt is not a refund receipt of {original}"
            raise Refused("malformed", pm.OTHER_ERRORS, "receipt-mismatch", why, reference)
        return receipt
