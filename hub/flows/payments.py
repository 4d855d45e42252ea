"""F3: the payment platform's ``CONFIRM`` callback (``POST /api/v1/callbacks/payment/{connector}``).

The hub accepts a confirmation only when all of these hold, in this order (the rule recorded when not):

1. ``{connector}`` is a registered, enabled ``payment`` connector with ``endpoint.credentials``
   (``username`` = the hub's partner code ``MaDoiTac``, ``password`` = the partner secret) — ``unknown-connector``;
2. the body is a JSON ``CONFIRM`` for that partner code — ``malformed`` / ``partner-code``;
3. ``MaXacThuc`` is the SHA-256 over the CONFIRM fields and the secret (``mappings.payment``) — ``checksum``;
4. ``MaThamChieu`` is a reference the hub initiated with this connector — ``unknown-reference``;
5. ``MaLoi`` is ``00`` — ``payment-failed`` (recorded; nothing is routed);
6. ``SoTien`` equals the requested amount — ``amount-mismatch``;
7. ``BienLai`` (base64) is a receipt signed with XML-DSig by a certificate registered on the connector, whose
   reference and amount are the confirmation's — ``receipt-unsigned`` / ``receipt-signer`` / ``receipt-signature`` /
   ``receipt-mismatch``.

Refunds (Tiền Giang Điều 17.4) go the same path: the province sends a ``payment.request`` of kind ``refund`` naming
the paid ``original_reference``; the adapter sends ``REFUND``; the platform's ``CONFIRM_REFUND`` callback (same URL)
passes the same checks, with a refund reference the hub sent (``unknown-reference``), and also:

8. ``MaThamChieuGoc`` is a payment of this connector the hub saw confirmed — ``unknown-original-reference``; it is
   the one the refund request named, for the same dossier — ``original-mismatch``;
9. this refund and the refunds confirmed before it do not exceed what was paid — ``refund-exceeds-paid``;
10. the receipt is a refund receipt (``LoaiGiaoDich`` ``HOAN_TIEN``) of that original reference — ``receipt-mismatch``.

An accepted refund routes a hub-signed ``payment.receipt`` with ``kind`` ``refund`` to the requester (no status
update: the dossier is not resumed) and marks the row ``refunded``; a repeated CONFIRM_REFUND is idempotent.

Refusals are answered 4xx with ``MaLoi``. A callback refused by rules 1–3 never authenticated: it is refused before
any store write and only counted (``lienthong_callbacks_refused_total{connector, reason}``), so junk posted
to the callback URL costs no rows; refusals from rule 4 on are rows in ``partner_refusals``
(``GET /api/v1/partner-refusals``).
An accepted confirmation routes two hub-signed envelopes through the normal pipeline (store, queue, worker):
``payment.receipt`` (with the bank-signed receipt) to the connectors that receive it — the provincial system —
and ``dossier.status`` 4 (processing resumes after the financial obligation, 6 → 4) to those that receive
``dossier.status`` — the national portal. Their message ids derive from the reference, so a repeated CONFIRM
(same bank transaction) is answered ``00`` again and routes nothing new.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from hub.errors import MappingError, ReceiptRejected, RejectedError
from hub.errors import PaymentRefusedError as Refused
from hub.flows.receipts import receipt_fields, verify_receipt
from hub.metrics import CALLBACKS_REFUSED
from hub.packets.dossier import DossierStatusUpdate, Step
from hub.security.envelope import EnvelopeHeader
from hub.store import flow_records
from mappings import payment as pm

if TYPE_CHECKING:
    from hub.registry.core import Connector
    from hub.services import HubService

log = logging.getLogger(__name__)

ID_NAMESPACE = uuid.UUID("6f1c4e2a-9b1d-4c55-8a3e-1d2b3c4d5e6f")
RESUMED_STATUS = 4


class PaymentCallbacks:
    """One per API process (see ``hub.api.dependencies.payment_service``)."""

    def __init__(self, hub: HubService) -> None:
        self.hub = hub
        # check-then-confirm of refunds (rule 9) in one process; a second API process could race it
        self._refund_lock = threading.Lock()

    # ------------------------------------------------------------ the callback

    def confirm(self, code: str, body: bytes) -> dict[str, Any]:
        """Check and act on one CONFIRM; returns the JSON answer. A refusal is raised (``PaymentRefusedError``:
        its ``kind``, rule and the platform's ``MaLoi`` code); one that fails authentication (rules 1–3) is only
        counted (``lienthong_callbacks_refused_total``), so anonymous junk costs no store write, and one of an
        authenticated callback is recorded as a row (``GET /api/v1/partner-refusals``)."""
        connector = self.hub.registry.get(code)
        try:
            message = self._authenticated(code, connector, body)
        except Refused as refused:
            label = "unknown" if connector is None else code  # codes in the URL are the caller's: bound the labels
            CALLBACKS_REFUSED.labels(connector=label, reason=refused.rule).inc()
            log.warning("payment callback refused before authentication connector=%s rule=%s", code[:64], refused.rule)
            raise
        assert connector is not None  # authenticated
        try:
            return self._confirm(connector, message, body)
        except Refused as refused:
            flow_records.record_refusal(
                self.hub.store.engine,
                connector=code[:64],
                kind="payment.refund" if message["LoaiBanTin"] == pm.CONFIRM_REFUND else "payment.confirm",
                rule=refused.rule,
                reason=refused.reason,
                payload=body,
                reference=refused.reference,
            )
            log.warning("payment CONFIRM refused connector=%s rule=%s: %s", code, refused.rule, refused.reason)
            raise

    @staticmethod
    def _authenticated(code: str, connector: Connector | None, body: bytes) -> dict[str, Any]:
        """Rules 1–3: the CONFIRM the connector's partner secret vouches for; nothing is written to the store."""
        if connector is None or not connector.enabled or str(connector.kind) != "payment":
            raise Refused("not-found", "02", "unknown-connector", f"{code!r} is not an enabled payment connector")
        endpoint = connector.spec.endpoint
        credentials = None if endpoint is None else endpoint.credentials
        if credentials is None:
            raise Refused(
                "unavailable", "99", "unknown-connector", f"payment connector {code} has no endpoint.credentials"
            )
        try:
            message = json.loads(body)
            if not isinstance(message, dict) or message.get("LoaiBanTin") not in (pm.CONFIRM, pm.CONFIRM_REFUND):
                raise ValueError("not a CONFIRM")
        except ValueError:
            raise Refused(
                "malformed", "02", "malformed", "the body is not a JSON CONFIRM or CONFIRM_REFUND message"
            ) from None
        reference = message.get("MaThamChieu") if isinstance(message.get("MaThamChieu"), str) else None
        if message.get("MaDoiTac") != credentials.username:
            raise Refused(
                "malformed", "02", "partner-code", f"MaDoiTac {message.get('MaDoiTac')!r} is not ours", reference
            )
        if not pm.checksum_ok(message, credentials.password.get_secret_value()):
            raise Refused(
                "unauthenticated",
                "01",
                "checksum",
                "MaXacThuc does not match the message and the partner secret",
                reference,
            )
        return message

    def _confirm(self, connector: Connector, message: dict[str, Any], body: bytes) -> dict[str, Any]:
        """Rules 4–7 (and 8–10 for a refund) of an authenticated CONFIRM."""
        code = connector.code
        refund = message["LoaiBanTin"] == pm.CONFIRM_REFUND
        reference = message.get("MaThamChieu") if isinstance(message.get("MaThamChieu"), str) else None
        payment = None if reference is None else flow_records.payment(self.hub.store.engine, reference)
        if payment is None or payment.connector != code or (payment.kind == "refund") != refund:
            what = "refund" if refund else "payment"
            raise Refused(
                "not-found", "04", "unknown-reference", f"no {what} {reference!r} was initiated with {code}", reference
            )
        if message.get("MaLoi") != pm.SUCCESS:
            raise Refused(
                "declined", "00", "payment-failed", f"the platform reports MaLoi {message.get('MaLoi')!r}", reference
            )
        try:
            amount = pm.amount_of(message)
        except MappingError as exc:
            raise Refused("malformed", "02", "malformed", str(exc), reference) from None
        if amount != payment.amount:
            why = f"SoTien {amount} differs from the requested {payment.amount} VND"
            raise Refused("malformed", "02", "amount-mismatch", why, reference)
        if refund:
            with self._refund_lock:
                return self._confirm_refund(connector, payment, message, body)
        receipt = self._verified_receipt(connector, message, payment.reference, amount)
        duplicate = self._duplicate(payment, message)
        if duplicate is not None:
            return duplicate
        receipt_id = self._route(payment, message, receipt)
        flow_records.confirm_payment(
            self.hub.store.engine, payment.reference, bank_transaction_id=str(message.get("MaGiaoDich", "")),
            receipt_message_id=receipt_id, confirm_digest=flow_records.digest(body),
        )  # fmt: skip
        log.info("payment confirmed connector=%s dossier_code=%s", code, payment.dossier_code)
        return {"MaLoi": pm.SUCCESS, "MoTaLoi": "Thành công", "MaThamChieu": reference}

    def _confirm_refund(
        self, connector: Connector, refund: flow_records.Payment, message: dict[str, Any], body: bytes
    ) -> dict[str, Any]:
        """Rules 8–10 and the rest of a CONFIRM_REFUND whose checksum, reference and amount were checked."""
        engine, reference, amount = self.hub.store.engine, refund.reference, refund.amount
        original_ref = message.get("MaThamChieuGoc")
        original = flow_records.payment(engine, original_ref) if isinstance(original_ref, str) else None
        if (
            original is None
            or original.kind != "payment"
            or original.connector != connector.code
            or original.confirmed_at is None
        ):
            why = f"MaThamChieuGoc {original_ref!r} is no payment confirmed through {connector.code}"
            raise Refused("not-found", "04", "unknown-original-reference", why, reference)
        if original.reference != refund.original_reference or original.dossier_code != refund.dossier_code:
            why = f"the refund {reference} was requested for {refund.original_reference}, not {original.reference}"
            raise Refused("malformed", "02", "original-mismatch", why, reference)
        refunded = flow_records.refunded_total(engine, original.reference, excluding=reference)
        if refunded + amount > original.amount:
            why = f"refunding {amount} VND after {refunded} VND exceeds the {original.amount} VND paid"
            raise Refused("malformed", "02", "refund-exceeds-paid", why, reference)
        receipt = self._verified_receipt(connector, message, reference, amount, original=original.reference)
        duplicate = self._duplicate(refund, message)
        if duplicate is not None:
            return duplicate
        receipt_id = self._route(refund, message, receipt)
        flow_records.confirm_payment(
            engine, reference, bank_transaction_id=str(message.get("MaGiaoDich", "")), receipt_message_id=receipt_id,
            confirm_digest=flow_records.digest(body), state="refunded",
        )  # fmt: skip
        log.info("refund confirmed connector=%s dossier_code=%s", connector.code, refund.dossier_code)
        return {"MaLoi": pm.SUCCESS, "MoTaLoi": "Thành công", "MaThamChieu": reference}

    def _verified_receipt(
        self, connector: Connector, message: dict[str, Any], reference: str, amount: int, original: str | None = None
    ) -> bytes:
        """The bank-signed receipt bytes of a confirmation (rule 7; rule 10 with ``original``)."""
        try:
            receipt = base64.b64decode(str(message.get("BienLai", "")), validate=True)
        except (binascii.Error, ValueError):
            raise Refused("malformed", "02", "receipt-unsigned", "BienLai is not base64", reference) from None
        certificates = [info.certificate for info in connector.certificates]
        try:
            signed = verify_receipt(receipt, certificates)
        except ReceiptRejected as exc:
            raise Refused("malformed", "02", exc.rule, exc.detail, reference) from None
        fields = receipt_fields(signed)
        if fields.get("MaThamChieu") != reference or fields.get("SoTien") != str(amount):
            why = "the receipt's reference or amount differ from the CONFIRM"
            raise Refused("malformed", "02", "receipt-mismatch", why, reference)
        expected = (None, None) if original is None else (pm.REFUND_RECEIPT, original)
        if (fields.get("LoaiGiaoDich"), fields.get("MaThamChieuGoc")) != expected:
            why = "the receipt is not a refund receipt of " + original if original else "the receipt is a refund's"
            raise Refused("malformed", "02", "receipt-mismatch", why, reference)
        return receipt

    @staticmethod
    def _duplicate(payment: flow_records.Payment, message: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to a repeated confirmation (idempotent), None for a first one; another transaction: 409."""
        if payment.confirmed_at is None:
            return None
        transaction = str(message.get("MaGiaoDich", ""))
        if payment.bank_transaction_id != transaction:
            why = f"{payment.reference} was confirmed with transaction {payment.bank_transaction_id}"
            raise Refused("conflict", "03", "already-confirmed", why, payment.reference)
        return {"MaLoi": pm.SUCCESS, "MoTaLoi": "Đã xử lý trước đó", "MaThamChieu": payment.reference,
                "duplicate": True}  # fmt: skip

    def _route(self, payment: flow_records.Payment, confirm: dict[str, Any], receipt: bytes) -> str:
        """Route the hub-signed payment.receipt and (for a payment, not a refund) the 6 → 4 dossier.status; returns
        the receipt's message id."""
        hub_code = self.hub.settings.hub_code
        requester = payment.requester
        if not requester:
            trace = self.hub.store.trace(payment.message_id)
            requester = trace.sender if trace is not None else hub_code
        canonical = pm.receipt_from_confirm(confirm, dossier_code=payment.dossier_code, signed_receipt=receipt)
        receipt_id = str(uuid.uuid5(ID_NAMESPACE, f"payment.receipt:{payment.reference}"))
        status_id = str(uuid.uuid5(ID_NAMESPACE, f"dossier.status:{payment.reference}"))
        status = DossierStatusUpdate(
            dossier_code=payment.dossier_code,
            status=RESUMED_STATUS,
            step=Step(
                actor="Lienthong", title="Thanh toán", content=f"Đã nhận biên lai thanh toán {payment.reference}"
            ),
            at=canonical.paid_at,
            source_system=hub_code,
        )
        routed: list[tuple[str, str, str, Any]] = [(receipt_id, "payment.receipt", requester, canonical)]
        if payment.kind != "refund":
            routed.append((status_id, "dossier.status", hub_code, status))
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
                self.hub.runtime.inject(header, model)
            except RejectedError as exc:  # e.g. no route, or the status machine refuses 4 here
                log.warning("message_id=%s %s not routed: %s", message_id, message_type, exc)
        return receipt_id
