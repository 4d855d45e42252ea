"""The payment platform simulator: the national Payment Platform's protocol (a) of ``../shared/PARTNER-FORMATS.md``
§3 (profile ``paygov/1.0.6``), strict as the real one would be (``payment_messages``), a simulated payer, and the
``CONFIRM`` callback shaped exactly as the sheet's.

- One URL per message kind (the connector's profile values name them): ``POST /api/init``, ``/api/query``,
  ``/api/get-bill``, ``/api/refund``; ``POST /api`` takes any kind (a connector without a profile). With
  ``token`` set, every call needs ``Authorization: Bearer <token>`` (TH-PS:58-59), else HTTP 401.
  - ``INIT`` (every field checked: ``payment_messages.init_issues``; ``MaXacThuc`` over the INIT fields) →
    ``{MaLoi: "00", UrlThanhToan}`` (OC-PI:1392-1393); the same reference again with the same amount is answered
    the same, with another amount refused;
  - ``QUERY`` → the CONFIRM's fields, ``MoTaLoi`` and ``TrangThaiGD`` "3" (not paid yet: the platform does not know
    the final state), "1" paid, "4" failed (TH-PC:26-44; TH-PQ:48-51);
  - ``GET_BILL`` → the e-receipt as a PDF (``application/pdf``, TH-PS:62-79) once paid, else ``{MaLoi: "99"}``.
    The PDF is signed with pyHanko (``receipt_pdf``) by the demo CA's ``payment-intermediary`` key (the receipt
    rule: Quảng Nam Điều 14.3), or — told so — by ``other-signer`` (a key the same CA issued, registered for
    nothing) or not at all; issued once per reference and signer (fetched again, the same bytes);
  - ``REFUND`` (the hub's own protocol, ``mappings.payment``) → ``{MaLoi: "00", MaThamChieu}`` for a refund
    reference of a paid ``MaThamChieuGoc`` of the same partner, an amount not above what was paid less what was
    refunded already; the same REFUND again is answered the same.
  A refusal is ``{MaLoi: "99", MoTaLoi}`` naming each problem (no other code is sourced; what the real platform
  answers a bad message is not known), HTTP 200.
- ``POST /_pay {MaThamChieu}``: the payer pays. The platform POSTs the ``CONFIRM`` — exactly the sheet's fields
  (OC-PI:1602-1621; TH-PC:13-23): ``SoTien`` an integer, no receipt — to ``callback_url`` and answers
  ``{status, answer, issues}``: the hub's reply and how it differs from what the platform expects
  (``payment_messages.answer_issues``). Knobs: ``SoTien`` (confirm another amount), ``forge_checksum: true``,
  ``reference`` (confirm a reference the hub never asked for), ``repeat: N`` (send the same CONFIRM N times),
  ``lose: true`` (paid, but the CONFIRM never reaches the hub: reconciliation's case), ``MaLoi`` (a failed
  payment: "4" to QUERY), ``receipt_signer`` (who signs this payment's e-receipt: ``intermediary``, ``other`` or
  ``none``; the default is ``receipt_signer``, set by ``/_control {"receipt_signer": …}``).
- ``POST /_refund {MaThamChieu}`` (a refund reference; ``/_pay`` does the same): the bank returns the money and
  POSTs ``CONFIRM_REFUND`` (ours) with ``MaThamChieuGoc`` and a bank-signed XML receipt (``LoaiGiaoDich``
  ``HOAN_TIEN``); the same knobs, plus ``MaThamChieuGoc`` (name another original reference) and ``signer:
  "impostor"`` (a bank key nobody registered). It does not re-check the amount against what is left to refund:
  the hub must.

The bank key and certificate (refund receipts) are made on first use (``hub.security.keys``, in ``key_dir``);
``bank_cert_pem`` is what the hub's payment connector registers as ``certificates``. The PDF signers are
``pdf_keys`` (``hub.devtools.pdf_documents.demo_pdf_keys``: the demo sets its own; otherwise made on first use in
``key_dir``/pdf); ``intermediary_cert_pem`` is what the connector registers as ``receipt_signers``.
``GET /_received`` → ``{"requests": [...], "refused": [...], "payments": {ref: {...}}, "confirms": [{MaThamChieu,
status, answer, issues}]}``.
"""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import requests

from hub.devtools.pdf_documents import DemoPdfKeys, PdfSigningKey, demo_pdf_keys, minimal_pdf, sign_pdf
from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.devtools.simulators.payment_messages import answer_issues, init_issues, query_issues
from hub.errors import MappingError
from hub.flows.receipts import sign_receipt
from hub.security import keys
from hub.security.signing import Signer
from mappings import payment as pm
from mappings.paygov_lgsp import strip_accents

DEFAULT_PARTNERS = {"LIENTHONG": "lienthong-payment-secret"}
#: The path of each message kind (what a connector's profile values ``init_url``… name, after ``/api``).
KIND_PATHS = {"init": pm.INIT, "query": pm.QUERY, "get-bill": pm.GET_BILL, "refund": pm.REFUND}
REFUSED = "99"
#: Who may sign an e-receipt: the registered intermediary, another key of the same CA, or nobody.
RECEIPT_SIGNERS = ("intermediary", "other", "none")


def simple_pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` (ASCII; diacritics stripped): the simulated e-receipt."""

    def literal(line: str) -> str:
        text = strip_accents(line).encode("ascii", "replace").decode()
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "".join(f"BT /F1 11 Tf 50 {780 - 18 * n} Td ({literal(line)}) Tj ET\n" for n, line in enumerate(lines))
    stream = content.encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


class PaymentSimulator(SimulatorServer):
    """The payment platform on 127.0.0.1; ``url`` is the message endpoint (``/api``; the kinds under it)."""

    name: ClassVar[str] = "payment"
    path: ClassVar[str] = "/api"

    def __init__(
        self,
        port: int = 0,
        *,
        partners: dict[str, str] | None = None,
        callback_url: str | None = None,
        key_dir: Path | None = None,
        bank_code: str = "VCBDEMO",
        token: str | None = None,
        pdf_keys: DemoPdfKeys | None = None,
        receipt_signer: str = "intermediary",
    ) -> None:
        super().__init__(port)
        if receipt_signer not in RECEIPT_SIGNERS:
            raise ValueError(f"receipt_signer must be one of {RECEIPT_SIGNERS}")
        self.receipt_signer = receipt_signer
        self._pdf_keys = pdf_keys
        self._bills: dict[tuple[str, str], bytes] = {}
        self.partners = dict(DEFAULT_PARTNERS if partners is None else partners)
        self.callback_url = callback_url
        self.bank_code = bank_code
        self.token = token
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._key_dir = key_dir
        self._keys_lock = threading.Lock()
        self._signers: tuple[Signer, Signer, str] | None = None
        self._data_lock = threading.RLock()
        self._clear()

    def profile_values(self) -> dict[str, str]:
        """The ``paygov/1.0.6`` profile values of a connector pointed at this simulator's ``url``."""
        return {"init_url": "init", "query_url": "query", "get_bill_url": "get-bill", "refund_url": "refund"}

    def _keys(self) -> tuple[Signer, Signer, str]:
        """The bank's signer, an impostor's, and the bank's certificate (PEM): made on first use (starting the
        simulator stays fast)."""
        with self._keys_lock:
            if self._signers is None:
                key_dir = self._base_dir()
                bank = keys.issue_key("bank", Path(key_dir) / "bank", algorithm="ec")
                impostor = keys.issue_key("bank", Path(key_dir) / "impostor", algorithm="ec")
                self._signers = (
                    Signer.from_files(bank.key_path, bank.cert_path),
                    Signer.from_files(impostor.key_path, impostor.cert_path),
                    bank.cert_path.read_text(),
                )
            return self._signers

    @property
    def pdf_keys(self) -> DemoPdfKeys:
        """The PDF signers of e-receipts (made on first use in ``key_dir``/pdf, or a temporary folder)."""
        with self._keys_lock:
            if self._pdf_keys is None:
                self._pdf_keys = demo_pdf_keys(self._base_dir() / "pdf")
            return self._pdf_keys

    @pdf_keys.setter
    def pdf_keys(self, value: DemoPdfKeys) -> None:
        with self._keys_lock:
            self._pdf_keys = value
            self._bills.clear()

    def _base_dir(self) -> Path:
        """``key_dir``, or a temporary folder kept until the simulator stops (the keys lock held)."""
        if self._key_dir is not None:
            return Path(self._key_dir)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lienthong-bank-")
        return Path(self._tmp.name)

    @property
    def intermediary_cert_pem(self) -> str:
        """The intermediary's certificate: what the hub's payment connector registers as ``receipt_signers``."""
        return self.pdf_keys.intermediary.cert_pem

    @property
    def bank_signer(self) -> Signer:
        return self._keys()[0]

    @property
    def impostor_signer(self) -> Signer:
        return self._keys()[1]

    @property
    def bank_cert_pem(self) -> str:
        """The bank's certificate: what the hub's payment connector registers (refund receipts)."""
        return self._keys()[2]

    def _clear(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.payments: dict[str, dict[str, Any]] = {}
        self.confirms: list[dict[str, Any]] = []

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def control(self, command: dict[str, Any]) -> None:
        if "callback_url" in command:
            self.callback_url = command["callback_url"]
        if command.get("receipt_signer") in RECEIPT_SIGNERS:
            self.receipt_signer = command["receipt_signer"]

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(
                json.dumps(
                    {
                        "requests": self.requests,
                        "refused": self.refused,
                        "payments": self.payments,
                        "confirms": self.confirms,
                    }
                )
            )

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._bills.clear()

    # ------------------------------------------------------------ protocol

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        try:
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            handler.reply(400, {"MaLoi": REFUSED, "MoTaLoi": "Yêu cầu không phải JSON hợp lệ"})
            return
        if path in ("/_pay", "/_refund"):
            handler.reply(200, self.pay(message))
            return
        kind = None if path == self.path else KIND_PATHS.get(path.removeprefix(self.path + "/"))
        if path != self.path and kind is None:
            handler.reply(404, {"error": f"no POST {path}"})
            return
        if self.token is not None and handler.headers.get("Authorization") != f"Bearer {self.token}":
            handler.reply(401, {"MaLoi": REFUSED, "MoTaLoi": "Thiếu hoặc sai mã truy cập (Bearer)"})
            return
        if kind == pm.GET_BILL or (kind is None and message.get("LoaiBanTin") == pm.GET_BILL):
            status, data, content_type = self.bill(message)
            handler.reply(status, data, content_type)
            return
        handler.reply(200, self.answer(message, kind))

    def _refuse(self, message: dict[str, Any], *problems: object) -> dict[str, Any]:
        text = "; ".join(str(p) for p in problems)
        with self._data_lock:
            self.refused.append(
                {
                    "LoaiBanTin": message.get("LoaiBanTin"),
                    "MaThamChieu": message.get("MaThamChieu"),
                    "issues": [str(p) for p in problems],
                }
            )
        return {"MaLoi": REFUSED, "MoTaLoi": f"Các lỗi khác: {text}"}

    def _checked(self, message: dict[str, Any], kind: str | None) -> tuple[str, str] | dict[str, Any]:
        """(kind, secret) of a message that may be answered, or the refusal."""
        with self._data_lock:
            self.requests.append({k: v for k, v in message.items() if k != "MaXacThuc"})
        given = message.get("LoaiBanTin")
        if kind is not None and given != kind:
            return self._refuse(message, f"LoaiBanTin {given!r} không gửi tới địa chỉ của {kind}")
        kind = kind or (given if isinstance(given, str) else "")
        if kind not in (pm.INIT, pm.QUERY, pm.GET_BILL, pm.REFUND):
            return self._refuse(message, f"LoaiBanTin không hỗ trợ: {given!r}")
        issues = init_issues(message) if kind == pm.INIT else [] if kind == pm.REFUND else query_issues(message, kind)
        if issues:
            return self._refuse(message, *issues)
        partner = message.get("MaDoiTac")
        secret = self.partners.get(partner) if isinstance(partner, str) else None
        if secret is None:
            return self._refuse(message, f"Đối tác không tồn tại: {partner!r}")
        if not pm.checksum_ok(message, secret):
            return self._refuse(message, "Sai mã xác thực (MaXacThuc)")
        return kind, secret

    def answer(self, message: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
        checked = self._checked(message, kind)
        if isinstance(checked, dict):
            return checked
        kind, _ = checked
        reference = str(message.get("MaThamChieu"))
        with self._data_lock:
            known = self.payments.get(reference)
            if kind == pm.REFUND:
                return self._refund(message, known)
            if kind == pm.INIT:
                return self._init(message, reference, known)
            if known is None or known["MaDoiTac"] != message["MaDoiTac"]:
                return self._refuse(message, f"Không tìm thấy giao dịch {reference}")
            return self._query_reply(known, reference)

    def _init(self, message: dict[str, Any], reference: str, known: dict[str, Any] | None) -> dict[str, Any]:
        """A checked INIT (the data lock held)."""
        amount = int(message["SoTien"])
        if known is not None and (known["SoTien"] != amount or known["MaDoiTac"] != message["MaDoiTac"]):
            return self._refuse(message, f"Mã tham chiếu {reference} đã tồn tại với số tiền khác")
        if known is None:
            self.payments[reference] = {
                "MaDoiTac": message["MaDoiTac"],
                "SoTien": amount,
                "MaHoSo": message["ThongTinBienLai"].get("MaHoSo", ""),
                "HoTenNguoiNop": message["ThongTinBienLai"].get("HoTenNguoiNop", ""),
                "ThongTinGiaoDich": message.get("ThongTinGiaoDich", ""),
                "ThoiGianKhoiTao": message["ThoiGianGD"],
                "TrangThaiGD": pm.PENDING,
                "paid": False,
                "MaGiaoDich": None,
                "ThoiGianGD": None,
                "MaLoi": None,
                "BienLai": None,
            }
        return {"MaLoi": pm.SUCCESS, "MoTaLoi": "Thành công", "UrlThanhToan": f"{self.base_url}/pay/{reference}"}

    def _query_reply(self, known: dict[str, Any], reference: str) -> dict[str, Any]:
        """QUERY's reply: the CONFIRM's fields, MoTaLoi and TrangThaiGD (TH-PC:26-44)."""
        secret = self.partners[known["MaDoiTac"]]
        reply = {
            "LoaiBanTin": pm.QUERY,
            "MaLoi": pm.SUCCESS,
            "MoTaLoi": "Thành công",
            "MaDoiTac": known["MaDoiTac"],
            "MaThamChieu": reference,
            "SoTien": known["SoTien"],
            "MaTienTe": "VND",
            "MaGiaoDich": known["MaGiaoDich"] or "",
            "MaNganHang": self.bank_code if known["paid"] else "",
            "ThoiGianGD": known["ThoiGianGD"] or known["ThoiGianKhoiTao"],
            "ThongTinGiaoDich": known["ThongTinGiaoDich"],
            "TrangThaiGD": known["TrangThaiGD"],
        }
        reply["MaXacThuc"] = pm.checksum({**reply, "LoaiBanTin": pm.CONFIRM}, secret)  # unsourced: ours
        return reply

    def bill(self, message: dict[str, Any]) -> tuple[int, bytes, str]:
        """GET_BILL: (HTTP status, body, content type): the PDF e-receipt of a paid reference."""
        checked = self._checked(message, pm.GET_BILL)
        if isinstance(checked, dict):
            return 200, json.dumps(checked, ensure_ascii=False).encode(), "application/json"
        reference = str(message.get("MaThamChieu"))
        with self._data_lock:
            known = self.payments.get(reference)
            if known is None or not known["paid"] or known.get("kind") == "refund":
                refusal = self._refuse(message, f"Giao dịch {reference} chưa thanh toán")
                return 200, json.dumps(refusal, ensure_ascii=False).encode(), "application/json"
            return 200, self.receipt_pdf(reference, known), "application/pdf"

    def receipt_pdf(self, reference: str, payment: dict[str, Any]) -> bytes:
        """The e-receipt of a paid reference: a one-page PDF signed with pyHanko by the payment's
        ``receipt_signer`` (this simulator's default unless ``/_pay`` named one), issued once per signer."""
        who = str(payment.get("receipt_signer") or self.receipt_signer)
        key = (reference, who)
        with self._data_lock:
            issued = self._bills.get(key)
        if issued is not None:
            return issued
        pdf = minimal_pdf(
            "Bien lai thu phi, le phi (dien tu) - Payment Platform simulator",
            [
                f"MaThamChieu: {reference}",
                f"MaHoSo: {payment['MaHoSo']}",
                f"Nguoi nop: {payment['HoTenNguoiNop']}",
                f"SoTien: {payment['SoTien']} VND",
                f"MaGiaoDich: {payment['MaGiaoDich']}  MaNganHang: {self.bank_code}",
                f"ThoiGianGD: {payment['ThoiGianGD']}",
            ],
        )
        signer = self._receipt_key(who)
        if signer is not None:  # pyHanko runs its own event loop: this is a server thread, none is running here
            pdf = sign_pdf(pdf, signer, field_name="KyBienLai", reason="Bien lai thu phi, le phi",
                           location=self.bank_code)  # fmt: skip
        with self._data_lock:
            return self._bills.setdefault(key, pdf)

    def _receipt_key(self, who: str) -> PdfSigningKey | None:
        keys_ = self.pdf_keys
        return {"intermediary": keys_.intermediary, "other": keys_.other}.get(who)

    def _refund(self, message: dict[str, Any], known: dict[str, Any] | None) -> dict[str, Any]:
        """A checked REFUND (ours; the data lock held)."""
        reference, original = message.get("MaThamChieu"), message.get("MaThamChieuGoc")
        paid = self.payments.get(original) if isinstance(original, str) else None
        if (
            not isinstance(reference, str)
            or paid is None
            or paid.get("kind") == "refund"
            or not paid["paid"]
            or paid["MaDoiTac"] != message.get("MaDoiTac")
        ):
            return self._refuse(message, "Không tìm thấy giao dịch gốc")
        try:
            amount = pm.amount_of(message)
        except MappingError as exc:
            return self._refuse(message, exc)
        if known is not None:
            if known.get("MaThamChieuGoc") != original or known["SoTien"] != amount:
                return self._refuse(message, "Mã tham chiếu đã tồn tại")
            return {"MaLoi": pm.SUCCESS, "MaThamChieu": reference}
        if amount <= 0 or amount > paid["SoTien"] - paid.get("DaHoan", 0):
            return self._refuse(message, "Số tiền hoàn vượt số đã thanh toán")
        self.payments[reference] = {
            "MaDoiTac": message["MaDoiTac"],
            "SoTien": amount,
            "MaHoSo": paid["MaHoSo"],
            "HoTenNguoiNop": paid["HoTenNguoiNop"],
            "ThongTinGiaoDich": message.get("LyDo", ""),
            "ThoiGianKhoiTao": message.get("ThoiGianGD"),
            "TrangThaiGD": pm.PENDING,
            "paid": False,
            "MaGiaoDich": None,
            "ThoiGianGD": None,
            "MaLoi": None,
            "BienLai": None,
            "kind": "refund",
            "MaThamChieuGoc": original,
        }
        return {"MaLoi": pm.SUCCESS, "MaThamChieu": reference}

    # ------------------------------------------------------------ the payer pays (or the bank refunds)

    def pay(self, command: dict[str, Any]) -> dict[str, Any]:
        """The payer pays: build the CONFIRM (``confirmation``) and POST it to ``callback_url`` (unless lost)."""
        message = self.confirmation(command)
        if "error" in message:
            return message
        if command.get("lose"):
            return {"status": None, "answer": "lost: the CONFIRM never reached the hub", "confirm": message}
        results = [self._callback(message) for _ in range(int(command.get("repeat", 1)))]
        return results[-1] if len(results) == 1 else {"results": results}

    def confirmation(self, command: dict[str, Any]) -> dict[str, Any]:
        """The CONFIRM message (with ``MaXacThuc``) for a payment of ``command["MaThamChieu"]``, marking it paid
        (or failed, with ``MaLoi``) — a CONFIRM_REFUND with a bank-signed ``BienLai`` when that is a refund
        reference; the knobs of ``/_pay`` apply."""
        reference = command.get("MaThamChieu")
        with self._data_lock:
            known = self.payments.get(reference) if isinstance(reference, str) else None
            if known is None and not command.get("reference"):
                return {"error": f"unknown MaThamChieu {reference!r}"}
            partner = known["MaDoiTac"] if known else next(iter(self.partners))
            secret = self.partners[partner]
            transaction_id = (
                known["MaGiaoDich"] if known and known["MaGiaoDich"] else "FT" + secrets.token_hex(6).upper()
            )
            amount = int(command.get("SoTien", known["SoTien"] if known else 1000))
            refund = known is not None and known.get("kind") == "refund"
            original = str(command.get("MaThamChieuGoc") or known["MaThamChieuGoc"]) if refund and known else None
            error_code = str(command.get("MaLoi", pm.SUCCESS))
            at = datetime.now(UTC).replace(microsecond=0)
            confirm = pm.confirm_message(
                partner_code=partner,
                reference=str(command.get("reference") or reference),
                amount=amount,
                transaction_id=transaction_id,
                bank_code=self.bank_code,
                at=at,
                info=known["ThongTinGiaoDich"] if known else "",
                error_code=error_code,
                original_reference=original,
            )
            receipt = None
            if refund and known is not None:
                signer = self.impostor_signer if command.get("signer") == "impostor" else self.bank_signer
                receipt = sign_receipt(signer, pm.receipt_document(confirm, known["MaHoSo"]))
            if known is not None and command.get("receipt_signer") in RECEIPT_SIGNERS:
                known["receipt_signer"] = command["receipt_signer"]
            if known is not None and not command.get("reference"):
                if refund and not known["paid"] and known["MaThamChieuGoc"] in self.payments:
                    paid = self.payments[known["MaThamChieuGoc"]]
                    paid["DaHoan"] = paid.get("DaHoan", 0) + amount
                if error_code == pm.SUCCESS:
                    known.update(
                        paid=True,
                        TrangThaiGD=pm.PAID,
                        MaGiaoDich=transaction_id,
                        ThoiGianGD=known["ThoiGianGD"] or confirm["ThoiGianGD"],
                        MaLoi=error_code,
                    )
                    confirm["ThoiGianGD"] = known["ThoiGianGD"]  # a repeated CONFIRM is identical
                else:
                    known.update(TrangThaiGD=pm.FAILED, MaLoi=error_code)
        message = pm.sign(confirm, secret)
        if command.get("forge_checksum"):
            message["MaXacThuc"] = pm.checksum(confirm, "not-the-secret")
        if receipt is not None:
            message["BienLai"] = base64.b64encode(receipt).decode()
        return message

    def _callback(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self.callback_url:
            return {"status": None, "answer": "no callback_url set"}
        outcome: dict[str, Any]
        try:
            response = requests.post(self.callback_url, json=message, timeout=10)
        except requests.RequestException as exc:
            outcome = {"status": None, "answer": f"{type(exc).__name__}", "issues": []}
        else:
            try:
                answer: Any = response.json()
            except ValueError:
                answer = response.text[:200]
            issues = [str(i) for i in answer_issues(answer, message, response.status_code)]
            outcome = {
                "status": response.status_code,
                "answer": answer,
                "issues": issues,
                "rule": response.headers.get("X-Lienthong-Rule"),
            }
        with self._data_lock:
            self.confirms.append({"MaThamChieu": message["MaThamChieu"], **outcome})
        return outcome
