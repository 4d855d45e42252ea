"""The payment platform simulator (trung gian thanh toán): JSON messages on ``POST /api``, a simulated payer,
and the ``CONFIRM`` callback with a bank-signed receipt.

- ``POST /api`` with ``LoaiBanTin``:
  - ``INIT`` → ``{MaLoi: "00", MaThamChieu, UrlThanhToan, MaXacThuc}``; the same reference again with the same
    amount is answered the same, with another amount ``MaLoi`` ``"03"``;
  - ``QUERY`` → ``{MaLoi: "00", MaThamChieu, SoTien, TrangThai: "CHUA_THANH_TOAN" | "DA_THANH_TOAN", MaGiaoDich}``;
  - ``GET_BILL`` → ``{MaLoi: "00", BienLai: <base64 bank-signed receipt>}`` once paid (``"04"`` before).
  Every request's ``MaXacThuc`` is checked with the partner's secret (``"01"`` when wrong); an unknown partner is
  ``"02"``, an unknown reference ``"04"``. Answers carry their own ``MaXacThuc`` over ``MaLoi|MaThamChieu|secret``.
  - ``REFUND`` (Tiền Giang Điều 17.4; the field order is ours, ``mappings.payment``) → ``{MaLoi: "00", MaThamChieu}``
    for a refund reference of a paid ``MaThamChieuGoc`` of the same partner (``"04"`` when unknown or unpaid), an
    amount not above what was paid less what was refunded already (``"03"``); the same REFUND again is answered
    the same, the reference reused otherwise ``"03"``.
- ``POST /_pay {MaThamChieu}``: the payer pays. The platform POSTs ``CONFIRM`` (``MaXacThuc`` over the CONFIRM
  fields, ``BienLai`` = the receipt signed by the bank's key, base64) to ``callback_url`` and answers
  ``{status, answer}`` — the hub's reply. Test knobs in the same body: ``SoTien`` (confirm another amount),
  ``forge_checksum: true``, ``signer: "impostor"`` (a bank key nobody registered), ``reference`` (confirm a
  reference the hub never asked for), ``repeat: N`` (send the same CONFIRM N times).
- ``POST /_refund {MaThamChieu}`` (a refund reference; ``/_pay`` does the same): the bank returns the money and
  POSTs ``CONFIRM_REFUND`` with ``MaThamChieuGoc`` and a bank-signed receipt (``LoaiGiaoDich`` ``HOAN_TIEN``); the
  same knobs, plus ``MaThamChieuGoc`` (name another original reference). It does not re-check the amount against
  what is left to refund: the hub must.

The bank key and certificate are made on first use (``hub.security.keys``, in ``key_dir``); ``bank_cert_pem`` is what
the hub's
payment connector registers. ``GET /_received`` → ``{"requests": [...], "payments": {ref: {...}}, "confirms":
[{MaThamChieu, status}]}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import requests

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.errors import MappingError
from hub.flows.receipts import sign_receipt
from hub.security import keys
from hub.security.signing import Signer
from mappings import payment as pm

DEFAULT_PARTNERS = {"LIENTHONG": "lienthong-payment-secret"}


def answer_checksum(answer: dict[str, Any], secret: str) -> str:
    return hashlib.sha256(f"{answer.get('MaLoi', '')}|{answer.get('MaThamChieu', '')}|{secret}".encode()).hexdigest()


class PaymentSimulator(SimulatorServer):
    """The payment platform on 127.0.0.1; ``url`` is the message endpoint (``/api``)."""

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
    ) -> None:
        super().__init__(port)
        self.partners = dict(DEFAULT_PARTNERS if partners is None else partners)
        self.callback_url = callback_url
        self.bank_code = bank_code
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._key_dir = key_dir
        self._keys_lock = threading.Lock()
        self._signers: tuple[Signer, Signer, str] | None = None
        self._data_lock = threading.Lock()
        self._clear()

    def _keys(self) -> tuple[Signer, Signer, str]:
        """The bank's signer, an impostor's, and the bank's certificate (PEM): made on first use (starting the
        simulator stays fast)."""
        with self._keys_lock:
            if self._signers is None:
                key_dir = self._key_dir
                if key_dir is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="lienthong-bank-")
                    key_dir = Path(self._tmp.name)
                bank = keys.issue_key("bank", Path(key_dir) / "bank", algorithm="ec")
                impostor = keys.issue_key("bank", Path(key_dir) / "impostor", algorithm="ec")
                self._signers = (
                    Signer.from_files(bank.key_path, bank.cert_path),
                    Signer.from_files(impostor.key_path, impostor.cert_path),
                    bank.cert_path.read_text(),
                )
            return self._signers

    @property
    def bank_signer(self) -> Signer:
        return self._keys()[0]

    @property
    def impostor_signer(self) -> Signer:
        return self._keys()[1]

    @property
    def bank_cert_pem(self) -> str:
        """The bank's certificate: what the hub's payment connector registers."""
        return self._keys()[2]

    def _clear(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.payments: dict[str, dict[str, Any]] = {}
        self.confirms: list[dict[str, Any]] = []

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def control(self, command: dict[str, Any]) -> None:
        if "callback_url" in command:
            self.callback_url = command["callback_url"]

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(
                json.dumps({"requests": self.requests, "payments": self.payments, "confirms": self.confirms})
            )

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()

    # ------------------------------------------------------------ protocol

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        try:
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            handler.reply(400, {"MaLoi": "99", "MoTaLoi": "Yêu cầu không phải JSON hợp lệ"})
            return
        if path in ("/_pay", "/_refund"):
            handler.reply(200, self.pay(message))
        elif path == self.path:
            handler.reply(200, self.answer(message))
        else:
            handler.reply(404, {"error": f"no POST {path}"})

    def _reply(self, secret: str, **answer: Any) -> dict[str, Any]:
        return {**answer, "MaXacThuc": answer_checksum(answer, secret)}

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        kind, partner = message.get("LoaiBanTin"), message.get("MaDoiTac")
        reference = message.get("MaThamChieu")
        with self._data_lock:
            self.requests.append({k: v for k, v in message.items() if k != "MaXacThuc"})
        secret = self.partners.get(partner) if isinstance(partner, str) else None
        if secret is None:
            return {"MaLoi": "02", "MoTaLoi": f"Đối tác không tồn tại: {partner!r}"}
        if kind not in (pm.INIT, pm.QUERY, pm.GET_BILL, pm.REFUND):
            return self._reply(secret, MaLoi="02", MaThamChieu=reference, MoTaLoi=f"LoaiBanTin không hỗ trợ: {kind!r}")
        if not pm.checksum_ok(message, secret):
            return self._reply(secret, MaLoi="01", MaThamChieu=reference, MoTaLoi="Sai mã xác thực")
        with self._data_lock:
            known = self.payments.get(reference) if isinstance(reference, str) else None
            if kind == pm.REFUND:
                return self._refund(message, secret, known)
            if kind == pm.INIT:
                if not isinstance(reference, str):
                    return self._reply(secret, MaLoi="02", MaThamChieu=reference, MoTaLoi="Thiếu MaThamChieu")
                try:
                    amount = pm.amount_of(message)
                except MappingError as exc:
                    return self._reply(secret, MaLoi="02", MaThamChieu=reference, MoTaLoi=str(exc))
                if known is not None and known["SoTien"] != amount:
                    return self._reply(secret, MaLoi="03", MaThamChieu=reference, MoTaLoi="Mã tham chiếu đã tồn tại")
                if known is None:
                    known = self.payments[reference] = {
                        "MaDoiTac": partner,
                        "SoTien": amount,
                        "MaHoSo": (message.get("ThongTinBienLai") or {}).get("MaHoSo", ""),
                        "ThongTinGiaoDich": message.get("ThongTinGiaoDich", ""),
                        "paid": False,
                        "MaGiaoDich": None,
                        "BienLai": None,
                    }
                url = f"{self.base_url}/pay/{reference}"
                return self._reply(secret, MaLoi=pm.SUCCESS, MaThamChieu=reference, UrlThanhToan=url)
            if known is None:
                return self._reply(secret, MaLoi="04", MaThamChieu=reference, MoTaLoi="Không tìm thấy giao dịch")
            if kind == pm.QUERY:
                state = "DA_THANH_TOAN" if known["paid"] else "CHUA_THANH_TOAN"
                return self._reply(secret, MaLoi=pm.SUCCESS, MaThamChieu=reference, SoTien=known["SoTien"],
                                   TrangThai=state, MaGiaoDich=known["MaGiaoDich"])  # fmt: skip
            if not known["paid"]:
                return self._reply(secret, MaLoi="04", MaThamChieu=reference, MoTaLoi="Chưa thanh toán")
            return self._reply(secret, MaLoi=pm.SUCCESS, MaThamChieu=reference, BienLai=known["BienLai"])

    def _refund(self, message: dict[str, Any], secret: str, known: dict[str, Any] | None) -> dict[str, Any]:
        """A checked REFUND (the data lock held)."""
        reference, original = message.get("MaThamChieu"), message.get("MaThamChieuGoc")
        paid = self.payments.get(original) if isinstance(original, str) else None
        if (
            not isinstance(reference, str)
            or paid is None
            or paid.get("kind") == "refund"
            or not paid["paid"]
            or paid["MaDoiTac"] != message.get("MaDoiTac")
        ):
            return self._reply(secret, MaLoi="04", MaThamChieu=reference, MoTaLoi="Không tìm thấy giao dịch gốc")
        try:
            amount = pm.amount_of(message)
        except MappingError as exc:
            return self._reply(secret, MaLoi="02", MaThamChieu=reference, MoTaLoi=str(exc))
        if known is not None:
            if known.get("MaThamChieuGoc") != original or known["SoTien"] != amount:
                return self._reply(secret, MaLoi="03", MaThamChieu=reference, MoTaLoi="Mã tham chiếu đã tồn tại")
            return self._reply(secret, MaLoi=pm.SUCCESS, MaThamChieu=reference)
        if amount <= 0 or amount > paid["SoTien"] - paid.get("DaHoan", 0):
            return self._reply(secret, MaLoi="03", MaThamChieu=reference, MoTaLoi="Số tiền hoàn vượt số đã thanh toán")
        self.payments[reference] = {
            "MaDoiTac": message["MaDoiTac"],
            "SoTien": amount,
            "MaHoSo": paid["MaHoSo"],
            "ThongTinGiaoDich": message.get("LyDo", ""),
            "paid": False,
            "MaGiaoDich": None,
            "BienLai": None,
            "kind": "refund",
            "MaThamChieuGoc": original,
        }
        return self._reply(secret, MaLoi=pm.SUCCESS, MaThamChieu=reference)

    # ------------------------------------------------------------ the payer pays (or the bank refunds)

    def pay(self, command: dict[str, Any]) -> dict[str, Any]:
        """The payer pays: build the CONFIRM (see ``confirmation``) and POST it to ``callback_url``."""
        message = self.confirmation(command)
        if "error" in message:
            return message
        results = [self._callback(message) for _ in range(int(command.get("repeat", 1)))]
        return results[-1] if len(results) == 1 else {"results": results}

    def confirmation(self, command: dict[str, Any]) -> dict[str, Any]:
        """The CONFIRM message (with ``MaXacThuc`` and ``BienLai``) for a payment of ``command["MaThamChieu"]``,
        marking it paid — a CONFIRM_REFUND when that is a refund reference; the knobs of ``/_pay`` apply."""
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
            confirm = pm.confirm_message(
                partner_code=partner,
                reference=str(command.get("reference") or reference),
                amount=amount,
                transaction_id=transaction_id,
                bank_code=self.bank_code,
                at=datetime.now(UTC).replace(microsecond=0),
                info=known["ThongTinGiaoDich"] if known else "",
                original_reference=original,
            )
            signer = self.impostor_signer if command.get("signer") == "impostor" else self.bank_signer
            receipt = sign_receipt(signer, pm.receipt_document(confirm, known["MaHoSo"] if known else ""))
            if known is not None and not command.get("reference"):
                if refund and not known["paid"] and known["MaThamChieuGoc"] in self.payments:
                    paid = self.payments[known["MaThamChieuGoc"]]
                    paid["DaHoan"] = paid.get("DaHoan", 0) + amount
                known.update(paid=True, MaGiaoDich=transaction_id, BienLai=base64.b64encode(receipt).decode())
        message = pm.sign(confirm, secret)
        if command.get("forge_checksum"):
            message["MaXacThuc"] = pm.checksum(confirm, "not-the-secret")
        message["BienLai"] = base64.b64encode(receipt).decode()
        return message

    def _callback(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self.callback_url:
            return {"status": None, "answer": "no callback_url set"}
        outcome: dict[str, Any]
        try:
            response = requests.post(self.callback_url, json=message, timeout=10)
        except requests.RequestException as exc:
            outcome = {"status": None, "answer": f"{type(exc).__name__}"}
        else:
            try:
                answer: Any = response.json()
            except ValueError:
                answer = response.text[:200]
            outcome = {"status": response.status_code, "answer": answer}
        with self._data_lock:
            self.confirms.append({"MaThamChieu": message["MaThamChieu"], **outcome})
        return outcome
