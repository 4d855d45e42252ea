"""The national Payment Platform's messages, protocol (a) of PARTNER-FORMATS §3 (profile ``paygov/1.0.6``): pure
builders, parsers and checksums.

Every message is a JSON object with ``LoaiBanTin`` (``INIT``, ``QUERY``, ``GET_BILL`` from the province;
``CONFIRM`` from the platform) and ``MaXacThuc`` = lower-case hex SHA-256 over the message's fields joined by
``|`` with the partner's secret appended, the fields in the order of ``CHECKSUM_FIELDS`` (OC-PU:62-68, 158-195;
TH-PS:51-55, 126-132, 188; TH-PCH:43-46). A field that is absent counts as the empty string. ``MaLoi`` ``"00"``
is success. Times are ``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh.

Types as sourced: INIT's ``SoTien`` is a string (OC-PI:1429; TH-PI:14), the CONFIRM's an integer (OC-PI:1612;
TH-PC:17). The CONFIRM carries no receipt (OC-PI:1602-1621; TH-PC:13-23): the e-receipt is fetched afterwards
with ``GET_BILL``. A CONFIRM is answered (always HTTP 200, OC-PA:293-306) with ``MaLoi`` "00" "Thành công" or
"99" "Các lỗi khác", ``MoTaLoi``, ``MaDoiTac``, ``MaThamChieu``, ``ThoiGianGD`` and the CONFIRM's ``MaXacThuc``
echoed (OC-PU:169-180; OC-PI:1676-1687; TH-PCH:126-131). QUERY (TH-PC:45-59) is sent with the INIT's
``ThoiGianGD`` (TH-PQ:45) and answered with the CONFIRM's fields, ``MoTaLoi`` and ``TrangThaiGD`` "1" paid,
"3" pending, "4" failed (TH-PC:26-44; TH-PQ:48-51); GET_BILL with the CONFIRM's ``ThoiGianGD`` (OC-PI:2295-2296).

Refunds (Tiền Giang Điều 17.4) are the hub's OWN protocol — no public source describes one: ``REFUND`` for a paid
reference (``MaThamChieuGoc``) under a refund reference of the hub (``MaThamChieu``), answered by a
``CONFIRM_REFUND`` callback carrying a bank-signed XML receipt (``BienLai``, ``LoaiGiaoDich`` ``HOAN_TIEN``). Their
field orders in ``CHECKSUM_FIELDS`` are ours (the INIT/CONFIRM style), to be replaced by the platform's when it
publishes one.

The outbound mapping (``to_platform``) builds what the canonical ``payment.request`` says; what the connector's
profile decides (version, language, bank and beneficiary defaults, fee kinds…) and what names the caller and the
moment (``MaDoiTac``, ``ThoiGianGD``, ``Ip``) are left ``None`` for ``stamp``, which the adapter calls when it sends.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from hub.errors import MappingError
from hub.packets.payment import PaymentReceipt, PaymentRequest, ReceiptVerification
from mappings import OutboundMapping, register_outbound

PROFILE = "paygov/1.0.6"
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SUCCESS = "00"  # MaLoi (OC-PI:1392-1393; TH-PCH:126-131)
OTHER_ERRORS = "99"  # the CONFIRM answer's only other code, "Các lỗi khác" (OC-PI:1681, 1685)
ANSWER_TEXT = {SUCCESS: "Thành công", OTHER_ERRORS: "Các lỗi khác"}  # OC-PI:1678-1686

INIT, QUERY, GET_BILL, CONFIRM = "INIT", "QUERY", "GET_BILL", "CONFIRM"
REFUND, CONFIRM_REFUND = "REFUND", "CONFIRM_REFUND"  # ours (no public source)
REFUND_RECEIPT = "HOAN_TIEN"  # LoaiGiaoDich of a refund's receipt (ours)

#: TrangThaiGD of a QUERY reply (TH-PQ:48-51).
PAID, PENDING, FAILED = "1", "3", "4"

CHECKSUM_FIELDS: dict[str, tuple[str, ...]] = {
    INIT: (
        "LoaiBanTin",
        "PhienBan",
        "MaDoiTac",
        "MaThamChieu",
        "SoTien",
        "LoaiHinhThanhToan",
        "MaKenhThanhToan",
        "MaThietBi",
        "NgonNgu",
        "MaTienTe",
        "MaNganHang",
        "ThongTinGiaoDich",
        "ThoiGianGD",
        "Ip",
    ),  # OC-PU:158-166; TH-PS:126-132
    QUERY: ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD"),  # TH-PS:188
    GET_BILL: ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD"),  # OC-PU:62-68; TH-PS:52-53
    CONFIRM: (
        "LoaiBanTin",
        "MaLoi",
        "MaDoiTac",
        "MaThamChieu",
        "SoTien",
        "MaTienTe",
        "MaGiaoDich",
        "MaNganHang",
        "ThoiGianGD",
        "ThongTinGiaoDich",
    ),  # OC-PU:182-188; TH-PCH:43-46
    # Ours (no source gives refunds): see the module docstring.
    REFUND: ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "MaThamChieuGoc", "SoTien", "ThoiGianGD", "LyDo"),
    CONFIRM_REFUND: (
        "LoaiBanTin",
        "MaLoi",
        "MaDoiTac",
        "MaThamChieu",
        "MaThamChieuGoc",
        "SoTien",
        "MaTienTe",
        "MaGiaoDich",
        "MaNganHang",
        "ThoiGianGD",
        "ThongTinGiaoDich",
    ),
}

#: The sourced default of each profile value ``stamp`` reads (``mappings/profiles/paygov/1.0.6.yaml`` has them with
#: their sources); a caller without profile settings gets these.
DEFAULTS: dict[str, str] = {
    "version": "1.0.6",
    "language": "vi-VN",
    "payment_type": "PAY",
    "channel": "1",
    "device": "1",
    "bank_code": "PAYMENT",
    "service_kind": "2",
    "dvc_code_suffix": ".01",
    "unit_name": "",
    "beneficiary_account": "",
    "beneficiary_bank": "",
    "beneficiary_name": "",
    "fee_kind": "1",
    "ip": "",
}


def local_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("pass a timezone-aware datetime")
    return at.astimezone(LOCAL_TZ).strftime("%Y%m%d%H%M%S")


def from_local_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=LOCAL_TZ).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):  # OverflowError: year 1 local is before year 1 in UTC
        raise MappingError(f"ThoiGianGD {text!r} is not yyyyMMddHHmmss") from None


def checksum_input(message: Mapping[str, Any], secret: str) -> str:
    """The string that is hashed: the message's checksum fields, then the secret, joined by ``|``."""
    kind = message.get("LoaiBanTin")
    fields = CHECKSUM_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise MappingError(f"unknown LoaiBanTin {kind!r}")
    return "|".join([*("" if message.get(f) is None else str(message[f]) for f in fields), secret])


def checksum(message: Mapping[str, Any], secret: str) -> str:
    """``MaXacThuc`` of a message (SHA-256 hex)."""
    return hashlib.sha256(checksum_input(message, secret).encode("utf-8")).hexdigest()


def sign(message: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """The message with its ``MaXacThuc``."""
    return {**{k: v for k, v in message.items() if k != "MaXacThuc"}, "MaXacThuc": checksum(message, secret)}


def checksum_ok(message: Mapping[str, Any], secret: str) -> bool:
    given = message.get("MaXacThuc")
    if not isinstance(given, str):
        return False
    try:
        expected = checksum(message, secret)
    except MappingError:
        return False
    return hmac.compare_digest(given.lower(), expected)


# ---------------------------------------------------------------------------------------------- INIT, REFUND


def _money(value: int) -> str:
    return str(value)


def init_message(request: PaymentRequest) -> dict[str, Any]:
    """``INIT`` for a canonical ``payment.request`` (OC-PI:1422-1598; TH-PI:10-100), the profile's and the call's
    values left ``None`` (``stamp``). Fine and treasury fields are sent empty, as both sources do for fees."""
    payer, description = request.payer, request.description or f"Thanh toan ho so {request.dossier_code}"
    beneficiary = request.beneficiary
    bill: dict[str, Any] = {
        "MaDichVu": None,
        "MaDVC": request.service_code,
        "TenDVC": request.service_name or request.procedure_name or "",  # TH: TenDVC = TenTTHC (TH-PS:112)
        "MaTTHC": request.procedure_code,
        "TenTTHC": request.procedure_name or "",
        "MaDonVi": request.agency_code,
        "TenDonVi": request.agency_name,
        "MaHoSo": request.dossier_code,
        "TKThuHuong": beneficiary.account if beneficiary else None,
        "MaNHThuHuong": beneficiary.bank_code if beneficiary else None,
        "TenTKThuHuong": beneficiary.account_name if beneficiary else None,
        **dict.fromkeys(FINE_FIELDS, ""),
        "NoiDungThanhToan": description,
        "HoTenNguoiNop": payer.name,
        "SoCMNDNguoiNop": payer.personal_id or NO_ID,
        "DiaChiNguoiNop": payer.address or "",
        "HuyenNguoiNop": payer.district or "",
        "TinhNguoiNop": payer.province or "",
        "PhiLePhi": [
            {
                "LoaiPhiLePhi": None if line.kind is None else str(line.kind),
                "MaPhiLePhi": line.code,
                "TenPhiLePhi": line.name,
                "SoTien": _money(line.amount),
            }
            for line in request.fee_lines
        ],
        "DSKhoanNop": [{"NoiDung": description, "SoTien": _money(request.amount)}],  # OC-PI:1586-1592; TH-PS:92
    }
    return {
        "LoaiBanTin": INIT,
        "PhienBan": None,
        "MaDoiTac": None,
        "MaThamChieu": request.reference,
        "SoTien": _money(request.amount),
        "LoaiHinhThanhToan": None,
        "MaKenhThanhToan": None,
        "MaThietBi": None,
        "NgonNgu": None,
        "MaTienTe": request.currency,
        "MaNganHang": None,
        "ThongTinGiaoDich": description,
        "ThoiGianGD": None,
        "Ip": None,
        "ThongTinBienLai": bill,
    }


#: SoCMNDNguoiNop of a payer without an ID number: the placeholder TH sends (TH-PS:121); OC requires it ("bb").
NO_ID = "000000000"

#: Fine and treasury fields of ThongTinBienLai, empty for fees (OC-PI:1569-1578; TH-PI:52-62).
FINE_FIELDS = (
    "MaLoaiHinhThuPhat",
    "TenLoaiHinhThuPhat",
    "MaCoQuanQD",
    "TenCoQuanQD",
    "KhoBac",
    "NgayQD",
    "SoQD",
    "ThoiGianViPham",
    "DiaDiemViPham",
    "TenNguoiViPham",
    "TaiKhoanThuNSNN",
)


def refund_message(request: PaymentRequest) -> dict[str, Any]:
    """``REFUND`` (ours) for a ``payment.request`` of kind ``refund``; ``PhienBan``, ``MaDoiTac``, ``ThoiGianGD``
    left for ``stamp``."""
    if request.kind != "refund" or request.original_reference is None:
        raise MappingError(f"payment.request {request.reference} is not a refund")
    return {
        "LoaiBanTin": REFUND,
        "PhienBan": None,
        "MaDoiTac": None,
        "MaThamChieu": request.reference,
        "MaThamChieuGoc": request.original_reference,
        "SoTien": request.amount,
        "ThoiGianGD": None,
        "LyDo": request.description or f"Hoan tien ho so {request.dossier_code}",
        "MaHoSo": request.dossier_code,
        "PhiLePhi": [{"MaPhiLePhi": x.code, "TenPhiLePhi": x.name, "SoTien": x.amount} for x in request.fee_lines],
    }


def to_platform(request: BaseModel) -> dict[str, Any]:
    """The outbound mapping of ``payment.request``: ``INIT``, or ``REFUND`` for a request of kind ``refund``."""
    if not isinstance(request, PaymentRequest):
        raise TypeError(f"the payment platform takes payment.request, not {type(request).__name__}")
    if request.kind == "refund":
        return refund_message(request)
    return init_message(request)


def stamp(
    message: Mapping[str, Any],
    *,
    partner_code: str,
    at: datetime,
    settings: Mapping[str, str] | None = None,
    ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The message as the caller sends it at ``at``: ``MaDoiTac``, ``ThoiGianGD``, and every value the mapping left
    ``None`` for the connector's profile ``settings`` (``DEFAULTS`` for those it does not set); ``ip`` is this host's
    address, used when the profile's ``ip`` is empty."""
    values = {**DEFAULTS, **(settings or {})}

    def fill(target: dict[str, Any], key: str, value: str) -> None:
        if key in target and target[key] is None:
            target[key] = value

    out = {**message, "MaDoiTac": partner_code, "ThoiGianGD": local_time(at)}
    for key, name in (
        ("PhienBan", "version"),
        ("LoaiHinhThanhToan", "payment_type"),
        ("MaKenhThanhToan", "channel"),
        ("MaThietBi", "device"),
        ("NgonNgu", "language"),
        ("MaNganHang", "bank_code"),
    ):
        fill(out, key, values[name])
    fill(out, "Ip", values["ip"] or ip)
    bill = out.get("ThongTinBienLai")
    if isinstance(bill, Mapping):
        bill = out["ThongTinBienLai"] = dict(bill)
        fill(bill, "MaDichVu", values["service_kind"])
        fill(bill, "MaDVC", f"{bill.get('MaTTHC') or ''}{values['dvc_code_suffix']}")
        fill(bill, "TenDonVi", values["unit_name"])
        fill(bill, "TKThuHuong", values["beneficiary_account"])
        fill(bill, "MaNHThuHuong", values["beneficiary_bank"])
        fill(bill, "TenTKThuHuong", values["beneficiary_name"])
        lines = [dict(line) for line in bill.get("PhiLePhi") or []]
        for line in lines:
            fill(line, "LoaiPhiLePhi", values["fee_kind"])
        bill["PhiLePhi"] = lines
    return out


# ---------------------------------------------------------------------------------------------- QUERY, GET_BILL


def query_message(kind: str, *, partner_code: str, reference: str, at: str, version: str = "1.0.6") -> dict[str, Any]:
    """``QUERY`` or ``GET_BILL`` for a reference; ``at`` is the ``ThoiGianGD`` the sources send: the INIT's for a
    QUERY (TH-PQ:45), the CONFIRM's for GET_BILL (OC-PI:2295-2296)."""
    if kind not in (QUERY, GET_BILL):
        raise ValueError(f"not a query kind: {kind}")
    return {
        "LoaiBanTin": kind,
        "PhienBan": version,
        "MaDoiTac": partner_code,
        "MaThamChieu": reference,
        "ThoiGianGD": at,
    }


@dataclass(frozen=True)
class QueryResult:
    """A QUERY reply: ``state`` is ``paid`` ("1"), ``pending`` ("3"), ``failed`` ("4") or ``unknown`` (another
    value, or none); ``confirm`` the reply's CONFIRM fields (what a paid QUERY settles with, as TH-PQ:52-72 does)."""

    state: str
    trang_thai: str | None
    confirm: dict[str, Any]


QUERY_STATES = {PAID: "paid", PENDING: "pending", FAILED: "failed"}


def query_result(reply: Mapping[str, Any]) -> QueryResult:
    """Read a QUERY reply (``MaLoi`` "00" already checked by the caller)."""
    code = reply.get("TrangThaiGD")
    text = None if code is None else str(code)
    confirm = {name: reply.get(name) for name in CHECKSUM_FIELDS[CONFIRM]}
    confirm["LoaiBanTin"], confirm["MaLoi"] = CONFIRM, SUCCESS if text == PAID else str(reply.get("MaLoi", ""))
    return QueryResult(QUERY_STATES.get(text or "", "unknown"), text, confirm)


# ---------------------------------------------------------------------------------------------- CONFIRM


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
    """``CONFIRM`` as the platform sends it (OC-PI:1602-1621; TH-PC:13-23), without ``MaXacThuc``: ``SoTien`` an
    integer, no receipt; with ``original_reference`` the ``CONFIRM_REFUND`` (ours) of a refund of that reference."""
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


def confirm_answer(message: Mapping[str, Any], *, code: str, partner_code: str | None = None) -> dict[str, Any]:
    """The answer to a CONFIRM: ``MaLoi`` ``code`` ("00"/"99"), its ``MoTaLoi``, ``MaDoiTac`` (ours when known),
    ``MaThamChieu``, ``ThoiGianGD`` and ``MaXacThuc`` echoed from the CONFIRM (OC-PU:169-180; OC-PI:1676-1687;
    TH-PCH:126-131)."""

    def text(name: str) -> str:
        value = message.get(name)
        return value if isinstance(value, str) else "" if value is None else str(value)

    return {
        "MaLoi": code,
        "MoTaLoi": ANSWER_TEXT.get(code, ANSWER_TEXT[OTHER_ERRORS]),
        "MaDoiTac": partner_code if partner_code is not None else text("MaDoiTac"),
        "MaThamChieu": text("MaThamChieu"),
        "ThoiGianGD": text("ThoiGianGD"),
        "MaXacThuc": text("MaXacThuc"),
    }


def receipt_document(confirm: Mapping[str, Any], dossier_code: str) -> bytes:
    """A refund's bank receipt (``<BienLai>``, ours), unsigned (the bank signs it, XML-DSig enveloped)."""
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


def amount_of(message: Mapping[str, Any]) -> int:
    """``SoTien`` as whole đồng: an integer (the CONFIRM's type) or a string of digits (the INIT's)."""
    value = message.get("SoTien")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MappingError(f"SoTien {value!r} is not an amount")
    try:
        return int(value)
    except ValueError:
        raise MappingError(f"SoTien {value!r} is not an amount") from None


def receipt_signed(profile: str | None, values: Mapping[str, str]) -> bool:
    """Whether a payment connector speaking ``profile`` (``None``: ``paygov/1.0.6``) with ``values`` says its
    receipts are signed: its ``receipt_signed`` value, else the profile's default (no such value: yes, the receipt
    rule as the regulations state it — Quảng Nam Điều 14.3, Tiền Giang Điều 17.5, Ninh Thuận Điều 18.2)."""
    from mappings import profiles

    try:
        known = profiles.get_profile(profile or PROFILE).values.get("receipt_signed")
    except MappingError:
        return True
    given = values.get("receipt_signed") if profile else None
    text = given if given is not None else (known.default if known is not None else None)
    return str(text or "true").strip().lower() != "false"


def receipt_from_confirm(
    confirm: Mapping[str, Any],
    *,
    dossier_code: str,
    signed_receipt: bytes,
    bank_transaction_id: str | None = None,
    verification: ReceiptVerification | None = None,
) -> PaymentReceipt:
    """The canonical ``payment.receipt`` for a verified ``CONFIRM`` (or ``CONFIRM_REFUND``: kind ``refund``), the
    receipt document's bytes and what was proved about its signature."""
    refund = confirm.get("LoaiBanTin") == CONFIRM_REFUND
    return PaymentReceipt(
        reference=str(confirm["MaThamChieu"]),
        dossier_code=dossier_code,
        bank_transaction_id=bank_transaction_id or str(confirm["MaGiaoDich"]),
        bank_code=str(confirm["MaNganHang"]),
        amount=amount_of(confirm),
        paid_at=from_local_time(str(confirm["ThoiGianGD"])),
        result_code=str(confirm["MaLoi"]),
        signed_receipt=signed_receipt,
        kind="refund" if refund else "payment",
        original_reference=str(confirm["MaThamChieuGoc"]) if refund else None,
        verification=verification,
    )


KIND = "payment"
OUTBOUND = register_outbound(OutboundMapping(KIND, "payment.request", to_platform))
