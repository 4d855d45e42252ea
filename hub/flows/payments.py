"""F3: the payment platform's callback (``POST /api/v1/callbacks/payment/{connector}``), answered as the platform
expects — always HTTP 200 — in the format of the connector's profile.

**Protocol (a), ``paygov/1.0.6``** (and a payment connector without a profile): the ``CONFIRM`` as the platform
sends it (PARTNER-FORMATS §3, OC-PI:1602-1621; TH-PC:13-23: no receipt inside). Answered ``MaLoi`` "00" when
accepted (also for a repeated CONFIRM, which changes nothing), else "99" "Các lỗi khác", with ``MoTaLoi``, our
``MaDoiTac``, and the CONFIRM's ``MaThamChieu``, ``ThoiGianGD`` and ``MaXacThuc`` echoed (OC-PU:169-180;
OC-PI:1676-1687; TH-PCH:126-131). The checks, in this order (the rule recorded when one fails):

1. ``{connector}`` is a registered, enabled ``payment`` connector with ``endpoint.credentials`` (``username`` = the
   hub's ``MaDoiTac``, ``password`` = the partner secret) — ``unknown-connector``;
2. the body is a JSON ``CONFIRM`` (or the hub's own ``CONFIRM_REFUND``) for that partner code — ``malformed`` /
   ``partner-code``;
3. ``MaXacThuc`` is the SHA-256 over the CONFIRM fields and the secret (``mappings.payment``) — ``checksum``
   (TH-PCH:46 refuses it; OC-PI:1668-1670 has the refusal commented out);
4. ``MaThamChieu`` is a reference the hub initiated with this connector — ``unknown-reference``;
5. ``MaLoi`` is "00" — ``payment-failed`` (recorded, the payment marked failed, nothing routed);
6. ``SoTien`` equals the requested amount — ``amount-mismatch``;
7. the settlement (``hub.flows.settlement``): the e-receipt fetched (``receipt-unavailable`` when it cannot be:
   answered "99", and reconciliation tries again), and a payment confirmed before with another bank transaction —
   ``already-confirmed``.

The receipt rule (Quảng Nam Điều 14.3, Tiền Giang Điều 17.5, Ninh Thuận Điều 18.2; ``hub.flows.receipts``): a
receipt that is unsigned where the profile says signed, signed by anyone but the connector's ``receipt_signers``,
or altered **holds** the payment — no ``payment.receipt``, no 6 → 4, a ``payment.receipt`` refusal naming the rule
for operators — yet the CONFIRM is answered "00": the CONFIRM itself is authentic and correct and the payer's money
was taken, the answer acknowledges the message (OC stores the CONFIRM and fetches the receipt afterwards from the
stored one, OC-PI:2279-2364), and "99" would invite the platform to resend it (each resend meeting the same receipt)
or to treat a real payment as not received. The rule is in ``X-Lienthong-Rule`` all the same.

**Protocol (b), ``paygov/lgsp``**: PayGov's callback ``{orderId, errorCode, amount, transactionNo, payDate,
checksum, …}`` answered ``{error_code: "SUCCESSFUL" | "FAILED", error_message}`` (OC-PI:1699-1751), with the same
checks on its fields (the orderId the hub sent, errorCode "00", the amount, the checksum as the profile says).

Refunds (``CONFIRM_REFUND``, the hub's own protocol) are checked by ``hub.flows.refunds``.

A callback refused by rules 1–3 never authenticated: it is refused before any store write and only counted
(``lienthong_callbacks_refused_total{connector, reason}``), so junk posted to the callback URL costs no rows;
refusals from rule 4 on, and held receipts, are rows in ``partner_refusals`` (``GET /api/v1/partner-refusals``).
Every answer names the rule that refused it (or holds its receipt) in the ``X-Lienthong-Rule`` response header (for
operators; the platform reads the body).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.errors import MappingError, ReceiptRejected
from hub.errors import PaymentRefusedError as Refused
from hub.flows.refunds import RefundConfirmations
from hub.flows.settlement import Settled, Settlement
from hub.metrics import CALLBACKS_REFUSED
from hub.store import flow_records
from mappings import paygov_lgsp as pg
from mappings import payment as pm
from mappings import profiles

if TYPE_CHECKING:
    from hub.registry.core import Connector
    from hub.services import HubService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackAnswer:
    """The JSON answer to a callback (always HTTP 200) and the rule that refused it or holds its receipt
    (``None``: accepted and settled)."""

    body: dict[str, Any]
    rule: str | None = None


def connector_profile(connector: Connector | None) -> str:
    """The payment profile a connector speaks (``paygov/1.0.6`` without one)."""
    ref = None if connector is None else connector.spec.profile
    return pm.PROFILE if not ref else ref.split("@")[0]


class PaymentCallbacks:
    """One per API process (see ``hub.api.dependencies.payment_service``)."""

    def __init__(self, hub: HubService) -> None:
        self.hub = hub
        self.settlement = Settlement(hub.runtime)
        self.refunds = RefundConfirmations(self.settlement)

    def close(self) -> None:
        self.settlement.close()

    # ------------------------------------------------------------ the callback

    def confirm(self, code: str, body: bytes) -> CallbackAnswer:
        """Check and act on one callback; the answer in the connector's protocol."""
        connector = self.hub.registry.get(code)
        if connector_profile(connector) == pg.PROFILE:
            return self._paygov(code, connector, body)
        message = _json_object(body)
        try:
            authenticated = self._authenticated(code, connector, message)
        except Refused as refused:
            self._count(code, connector, refused)
            return CallbackAnswer(pm.confirm_answer(message or {}, code=pm.OTHER_ERRORS), refused.rule)
        assert connector is not None  # authenticated
        partner = _partner_code(connector)
        held = None
        try:
            if authenticated["LoaiBanTin"] == pm.CONFIRM_REFUND:
                self.refunds.confirm(connector, authenticated, body)
            else:
                held = self._confirm(connector, authenticated, body)
        except Refused as refused:
            kind = "payment.refund" if authenticated["LoaiBanTin"] == pm.CONFIRM_REFUND else "payment.confirm"
            self._record(code, kind, refused, body)
            answer = pm.confirm_answer(authenticated, code=pm.OTHER_ERRORS, partner_code=partner)
            return CallbackAnswer(answer, refused.rule)
        return CallbackAnswer(pm.confirm_answer(authenticated, code=pm.SUCCESS, partner_code=partner), held)

    def _count(self, code: str, connector: Connector | None, refused: Refused) -> None:
        label = "unknown" if connector is None else code  # codes in the URL are the caller's: bound the labels
        CALLBACKS_REFUSED.labels(connector=label, reason=refused.rule).inc()
        log.warning("payment callback refused before authentication connector=%s rule=%s", code[:64], refused.rule)

    def _record(self, code: str, kind: str, refused: Refused, body: bytes) -> None:
        flow_records.record_refusal(
            self.hub.store.engine,
            connector=code[:64],
            kind=kind,
            rule=refused.rule,
            reason=refused.reason,
            payload=body,
            reference=refused.reference,
        )
        log.warning("payment callback refused connector=%s rule=%s: %s", code, refused.rule, refused.reason)

    @staticmethod
    def _authenticated(code: str, connector: Connector | None, message: dict[str, Any] | None) -> dict[str, Any]:
        """Rules 1–3: the CONFIRM the connector's partner secret vouches for; nothing is written to the store."""
        partner, password = _keys(code, connector)
        if message is None or message.get("LoaiBanTin") not in (pm.CONFIRM, pm.CONFIRM_REFUND):
            raise Refused("malformed", pm.OTHER_ERRORS, "malformed", "the body is not a JSON CONFIRM message")
        reference = _text(message.get("MaThamChieu"))
        if message.get("MaDoiTac") != partner:
            why = f"MaDoiTac {message.get('MaDoiTac')!r} is not ours"
            raise Refused("malformed", pm.OTHER_ERRORS, "partner-code", why, reference)
        if not pm.checksum_ok(message, password):
            why = "MaXacThuc does not match the message and the partner secret"
            raise Refused("unauthenticated", pm.OTHER_ERRORS, "checksum", why, reference)
        return message

    def _confirm(self, connector: Connector, message: dict[str, Any], body: bytes) -> str | None:
        """Rules 4–7 of an authenticated CONFIRM; the receipt rule that holds the payment, if one does."""
        reference = _text(message.get("MaThamChieu"))
        payment = None if reference is None else flow_records.payment(self.hub.store.engine, reference)
        if payment is None or payment.connector != connector.code or payment.kind != "payment":
            why = f"no payment {reference!r} was initiated with {connector.code}"
            raise Refused("not-found", pm.OTHER_ERRORS, "unknown-reference", why, reference)
        if message.get("MaLoi") != pm.SUCCESS:
            flow_records.mark_failed(self.hub.store.engine, payment.reference)
            why = f"the platform reports MaLoi {message.get('MaLoi')!r}"
            raise Refused("declined", pm.OTHER_ERRORS, "payment-failed", why, reference)
        check_amount(message, payment)
        return settle(self.settlement, connector, payment, message, flow_records.digest(body)).held

    # ------------------------------------------------------------ protocol (b)

    def _paygov(self, code: str, connector: Connector | None, body: bytes) -> CallbackAnswer:
        """PayGov's callback (protocol (b)): the same checks on its own fields, answered ``{error_code, …}``."""
        try:
            partner, password = _keys(code, connector)
            assert connector is not None
            try:
                message = pg.callback_fields(body)
            except MappingError as exc:
                raise Refused("malformed", pg.FAILED, "malformed", str(exc)) from None
            try:
                settings = profiles.resolve(
                    profiles.get_profile(str(connector.spec.profile)), connector.spec.profile_values
                )
            except MappingError as exc:  # a profile value unset: the connector cannot check callbacks
                raise Refused("unavailable", pg.FAILED, "unknown-connector", f"{code}: {exc}") from None
            if settings.get("callback_checksum", "order") == "order" and not pg.callback_checksum_ok(
                message, secret_key=password, access_key=settings["access_key"], partner_code=partner
            ):
                raise Refused("unauthenticated", pg.FAILED, "checksum", "checksum does not match the callback")
        except Refused as refused:
            self._count(code, connector, refused)
            return CallbackAnswer(pg.callback_answer(False, refused.reason), refused.rule)
        try:
            held = self._paygov_confirm(connector, message, body)
        except Refused as refused:
            self._record(code, "payment.confirm", refused, body)
            return CallbackAnswer(pg.callback_answer(False, refused.reason), refused.rule)
        return CallbackAnswer(pg.callback_answer(True, "Confirm transaction"), held)  # OC-PI:1745

    def _paygov_confirm(self, connector: Connector, message: Mapping[str, Any], body: bytes) -> str | None:
        order = str(message["orderId"])
        payment = flow_records.payment_by_partner_reference(self.hub.store.engine, connector.code, order)
        if payment is None or payment.kind != "payment":
            why = f"no order {order!r} was sent to {connector.code}"
            raise Refused("not-found", pg.FAILED, "unknown-reference", why, None)
        if str(message.get("errorCode")) != pg.PAID:
            flow_records.mark_failed(self.hub.store.engine, payment.reference)
            why = f"PayGov reports errorCode {message.get('errorCode')!r}"
            raise Refused("declined", pg.FAILED, "payment-failed", why, payment.reference)
        confirm = paygov_confirm(message, payment)
        check_amount(confirm, payment)
        return settle(self.settlement, connector, payment, confirm, flow_records.digest(body)).held


def paygov_confirm(message: Mapping[str, Any], payment: flow_records.Payment) -> dict[str, Any]:
    """A PayGov callback's fields under the CONFIRM's names (what a settlement reads)."""
    when = str(message.get("payDate") or "")
    try:
        pm.from_local_time(when)
    except MappingError:  # payDate's format is not sourced: keep it when it is yyyyMMddHHmmss, else now
        when = pm.local_time(datetime.now(UTC))
    return {
        "LoaiBanTin": pm.CONFIRM,
        "MaLoi": pm.SUCCESS,
        "MaDoiTac": "",
        "MaThamChieu": payment.reference,
        "SoTien": message.get("amount"),
        "MaTienTe": "VND",
        "MaGiaoDich": str(message.get("transactionNo") or message.get("transactionCode") or ""),
        "MaNganHang": str(message.get("paygate") or "PAYGOV"),
        "ThoiGianGD": when,
        "ThongTinGiaoDich": str(message.get("orderInfo") or ""),
        "transactionCode": str(message.get("transactionCode") or ""),
    }


def check_amount(message: Mapping[str, Any], payment: flow_records.Payment) -> int:
    """Rule 6: ``SoTien`` is an amount and the requested one."""
    try:
        amount = pm.amount_of(message)
    except MappingError as exc:
        raise Refused("malformed", pm.OTHER_ERRORS, "malformed", str(exc), payment.reference) from None
    if amount != payment.amount:
        why = f"SoTien {amount} differs from the requested {payment.amount} VND"
        raise Refused("malformed", pm.OTHER_ERRORS, "amount-mismatch", why, payment.reference)
    return amount


def settle(
    settlement: Settlement, connector: Connector, payment: flow_records.Payment, confirm: Mapping[str, Any], digest: str
) -> Settled:
    """Rule 7: settle, a receipt that cannot be had (yet) refusing the callback with its rule (one that breaks the
    receipt rule holds the payment: ``Settled.held``)."""
    try:
        return settlement.settle(connector, payment, confirm, digest=digest)
    except ReceiptRejected as exc:
        raise Refused("unavailable", pm.OTHER_ERRORS, exc.rule, str(exc), payment.reference) from None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _partner_code(connector: Connector | None) -> str | None:
    endpoint = None if connector is None else connector.spec.endpoint
    return None if endpoint is None or endpoint.credentials is None else endpoint.credentials.username


def _keys(code: str, connector: Connector | None) -> tuple[str, str]:
    """Rule 1: the partner code and secret of an enabled payment connector."""
    if connector is None or not connector.enabled or str(connector.kind) != "payment":
        raise Refused(
            "not-found", pm.OTHER_ERRORS, "unknown-connector", f"{code!r} is not an enabled payment connector"
        )
    endpoint = connector.spec.endpoint
    if endpoint is None or endpoint.credentials is None:
        raise Refused(
            "unavailable", pm.OTHER_ERRORS, "unknown-connector", f"payment connector {code} has no endpoint.credentials"
        )
    return endpoint.credentials.username, endpoint.credentials.password.get_secret_value()
