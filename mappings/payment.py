"""The payment platform's messages (trung gian thanh toán): checksums and builders, pure functions.

Every message is a JSON object with ``LoaiBanTin`` (``INIT``, ``QUERY``, ``GET_BILL``, ``CONFIRM``) and
``MaXacThuc`` = SHA-256 hex over the message's fields joined by ``|`` with the partner's secret appended, the
fields in the order of ``CHECKSUM_FIELDS``. A field that is absent counts as the empty string. ``MaLoi`` ``"00"``
is success. Amounts are whole đồng; times are ``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh.

Refunds (Tiền Giang Điều 17.4) go the same way: the hub sends ``REFUND`` for a paid reference (``MaThamChieuGoc``)
under a refund reference of its own (``MaThamChieu``), and the platform answers with a ``CONFIRM_REFUND`` callback
carrying a bank-signed receipt whose ``LoaiGiaoDich`` is ``HOAN_TIEN``. The issue gives no field order for these two
messages: the orders in ``CHECKSUM_FIELDS`` for ``REFUND`` and ``CONFIRM_REFUND`` are OURS (the INIT/CONFIRM style,
the original reference after the reference), to be replaced by the platform's when it publishes one.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from hub.errors import MappingError
from hub.packets.payment import PaymentReceipt, PaymentRequest
from mappings import OutboundMapping, register_outbound

VERSION = "1.0.0"
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SUCCESS = "00"

INIT, QUERY, GET_BILL, CONFIRM = "INIT", "QUERY", "GET_BILL", "CONFIRM"
REFUND, CONFIRM_REFUND = "REFUND", "CONFIRM_REFUND"
REFUND_RECEIPT = "HOAN_TIEN"  # LoaiGiaoDich of a refund's receipt (a payment's receipt has none)
CHECKSUM_FIELDS: dict[str, tuple[str, ...]] = {
    INIT: (
        "LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "SoTien", "LoaiHinhThanhToan", "MaKenhThanhToan",
        "MaThietBi", "NgonNgu", "MaTienTe", "MaNganHang", "ThongTinGiaoDich", "ThoiGianGD", "Ip",
    ),
    QUERY: ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD"),
    GET_BILL: ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD"),
    CONFIRM: (
        "LoaiBanTin", "MaLoi", "MaDoiTac", "MaThamChieu", "SoTien", "MaTienTe", "MaGiaoDich", "MaNganHang",
        "ThoiGianGD", "ThongTinGiaoDich",
    ),
    # Our orders (the issue gives none for refunds): see the module docstring.
    REFUND: ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "MaThamChieuGoc", "SoTien", "ThoiGianGD", "LyDo"),
    CONFIRM_REFUND: (
        "LoaiBanTin", "MaLoi", "MaDoiTac", "MaThamChieu", "MaThamChieuGoc", "SoTien", "MaTienTe", "MaGiaoDich",
        "MaNganHang", "ThoiGianGD", "ThongTinGiaoDich",
    ),
}  # fmt: skip


def local_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("pass a timezone-aware datetime")
    return at.astimezone(LOCAL_TZ).strftime("%Y%m%d%H%M%S")


def from_local_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=LOCAL_TZ).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):  # OverflowError: year 1 local is before year 1 in UTC
        raise MappingError(f"ThoiGianGD {text!r} is not yyyyMMddHHmmss") from None


def checksum_input(message: dict[str, Any], secret: str) -> str:
    """The string that is hashed: the message's checksum fields, then the secret, joined by ``|``."""
    kind = message.get("LoaiBanTin")
    fields = CHECKSUM_FIELDS.get(kind)  # type: ignore[arg-type]
    if fields is None:
        raise MappingError(f"unknown LoaiBanTin {kind!r}")
    return "|".join([*("" if message.get(f) is None else str(message[f]) for f in fields), secret])


def checksum(message: dict[str, Any], secret: str) -> str:
    """``MaXacThuc`` of a message (SHA-256 hex)."""
    return hashlib.sha256(checksum_input(message, secret).encode("utf-8")).hexdigest()


def sign(message: dict[str, Any], secret: str) -> dict[str, Any]:
    """The message with its ``MaXacThuc``."""
    return {**{k: v for k, v in message.items() if k != "MaXacThuc"}, "MaXacThuc": checksum(message, secret)}


def checksum_ok(message: dict[str, Any], secret: str) -> bool:
    given = message.get("MaXacThuc")
    if not isinstance(given, str):
        return False
    try:
        expected = checksum(message, secret)
    except MappingError:
        return False
    return hmac.compare_digest(given.lower(), expected)


# ---------------------------------------------------------------------------------------------- builders


def init_message(
    request: PaymentRequest,
    *,
    partner_code: str | None,
    at: datetime | None,
    ip: str = "127.0.0.1",
    bank_code: str = "",
) -> dict[str, Any]:
    """``INIT`` for a canonical ``payment.request`` (fee lines in ``ThongTinBienLai.PhiLePhi``); ``None`` for
    ``partner_code``/``at`` leaves ``MaDoiTac``/``ThoiGianGD`` for ``stamp``."""
    message: dict[str, Any] = {
        "LoaiBanTin": INIT,
        "PhienBan": VERSION,
        "MaDoiTac": partner_code,
        "MaThamChieu": request.reference,
        "SoTien": request.amount,
        "LoaiHinhThanhToan": "PAY",
        "MaKenhThanhToan": "1",
        "MaThietBi": "1",
        "NgonNgu": "vi",
        "MaTienTe": request.currency,
        "MaNganHang": bank_code,
        "ThongTinGiaoDich": request.description or f"Thanh toan ho so {request.dossier_code}",
        "ThoiGianGD": None if at is None else local_time(at),
        "Ip": ip,
        "ThongTinBienLai": {
            "MaHoSo": request.dossier_code,
            "MaTTHC": request.procedure_code,
            "MaDonVi": request.agency_code,
            "HoTenNguoiNop": request.payer.name,
            "SoCMNDNguoiNop": request.payer.personal_id or "",
            "SoDienThoaiNguoiNop": request.payer.phone or "",
            "PhiLePhi": [
                {"MaPhiLePhi": line.code, "TenPhiLePhi": line.name, "SoTien": line.amount} for line in request.fee_lines
            ],
        },
    }
    return message


def refund_message(request: PaymentRequest, *, partner_code: str | None, at: datetime | None) -> dict[str, Any]:
    """``REFUND`` for a canonical ``payment.request`` of kind ``refund`` (refunded lines in ``PhiLePhi``); ``None``
    for ``partner_code``/``at`` as for ``init_message``."""
    if request.kind != "refund" or request.original_reference is None:
        raise MappingError(f"payment.request {request.reference} is not a refund")
    return {
        "LoaiBanTin": REFUND,
        "PhienBan": VERSION,
        "MaDoiTac": partner_code,
        "MaThamChieu": request.reference,
        "MaThamChieuGoc": request.original_reference,
        "SoTien": request.amount,
        "ThoiGianGD": None if at is None else local_time(at),
        "LyDo": request.description or f"Hoan tien ho so {request.dossier_code}",
        "MaHoSo": request.dossier_code,
        "PhiLePhi": [{"MaPhiLePhi": x.code, "TenPhiLePhi": x.name, "SoTien": x.amount} for x in request.fee_lines],
    }


def to_platform(request: BaseModel) -> dict[str, Any]:
    """The outbound mapping of ``payment.request``: ``INIT``, or ``REFUND`` for a request of kind ``refund``, with
    ``MaDoiTac`` and ``ThoiGianGD`` left for the adapter (``stamp``), which calls with its partner code and clock."""
    if not isinstance(request, PaymentRequest):
        raise TypeError(f"the payment platform takes payment.request, not {type(request).__name__}")
    if request.kind == "refund":
        return refund_message(request, partner_code=None, at=None)
    return init_message(request, partner_code=None, at=None)


def stamp(message: dict[str, Any], *, partner_code: str, at: datetime) -> dict[str, Any]:
    """The message as the caller sends it at ``at``: ``MaDoiTac`` and ``ThoiGianGD`` filled in place."""
    return {**message, "MaDoiTac": partner_code, "ThoiGianGD": local_time(at)}


def query_message(kind: str, *, partner_code: str, reference: str, at: datetime) -> dict[str, Any]:
    """``QUERY`` or ``GET_BILL`` for a reference."""
    if kind not in (QUERY, GET_BILL):
        raise ValueError(f"not a query kind: {kind}")
    return {"LoaiBanTin": kind, "PhienBan": VERSION, "MaDoiTac": partner_code, "MaThamChieu": reference,
            "ThoiGianGD": local_time(at)}  # fmt: skip


def confirm_message(
    *,
    partner_code: str,
    reference: str,
    amount: int,
    transaction_id: str,
    bank_code: str,
    at: datetime,
    info: str = "",
    error_code: str = SUCCESS,
    original_reference: str | None = None,
) -> dict[str, Any]:
    """``CONFIRM`` as the platform sends it (without ``MaXacThuc`` and the receipt); with ``original_reference``
    the ``CONFIRM_REFUND`` of a refund of that paid reference."""
    message: dict[str, Any] = {
        "LoaiBanTin": CONFIRM if original_reference is None else CONFIRM_REFUND,
        "MaLoi": error_code,
        "MaDoiTac": partner_code,
        "MaThamChieu": reference,
        "SoTien": amount,
        "MaTienTe": "VND",
        "MaGiaoDich": transaction_id,
        "MaNganHang": bank_code,
        "ThoiGianGD": local_time(at),
        "ThongTinGiaoDich": info,
    }
    if original_reference is not None:
        message["MaThamChieuGoc"] = original_reference
    return message


def receipt_document(confirm: dict[str, Any], dossier_code: str) -> bytes:
    """The bank's receipt (``<BienLai>``) for a confirmation, unsigned (the bank signs it, XML-DSig enveloped)."""
    from lxml import etree

    root = etree.Element("BienLai")
    for name, value in (
        ("MaThamChieu", confirm["MaThamChieu"]),
        ("MaHoSo", dossier_code),
        ("SoTien", confirm["SoTien"]),
        ("MaTienTe", confirm.get("MaTienTe", "VND")),
        ("MaGiaoDich", confirm["MaGiaoDich"]),
        ("MaNganHang", confirm["MaNganHang"]),
        ("ThoiGianGD", confirm["ThoiGianGD"]),
    ):
        etree.SubElement(root, name).text = str(value)
    if confirm.get("LoaiBanTin") == CONFIRM_REFUND:
        etree.SubElement(root, "LoaiGiaoDich").text = REFUND_RECEIPT
        etree.SubElement(root, "MaThamChieuGoc").text = str(confirm["MaThamChieuGoc"])
    return etree.tostring(root, encoding="UTF-8")


def amount_of(message: dict[str, Any]) -> int:
    value = message.get("SoTien")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MappingError(f"SoTien {value!r} is not an amount")
    try:
        return int(value)
    except ValueError:
        raise MappingError(f"SoTien {value!r} is not an amount") from None


def receipt_from_confirm(confirm: dict[str, Any], *, dossier_code: str, signed_receipt: bytes) -> PaymentReceipt:
    """The canonical ``payment.receipt`` for a verified ``CONFIRM`` (or ``CONFIRM_REFUND``: kind ``refund``) and the
    bank-signed receipt bytes."""
    refund = confirm.get("LoaiBanTin") == CONFIRM_REFUND
    return PaymentReceipt(
        reference=str(confirm["MaThamChieu"]),
        dossier_code=dossier_code,
        bank_transaction_id=str(confirm["MaGiaoDich"]),
        bank_code=str(confirm["MaNganHang"]),
        amount=amount_of(confirm),
        paid_at=from_local_time(str(confirm["ThoiGianGD"])),
        result_code=str(confirm["MaLoi"]),
        signed_receipt=signed_receipt,
        kind="refund" if refund else "payment",
        original_reference=str(confirm["MaThamChieuGoc"]) if refund else None,
    )


KIND = "payment"
OUTBOUND = register_outbound(OutboundMapping(KIND, "payment.request", to_platform))
