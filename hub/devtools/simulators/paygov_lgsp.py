"""PayGov behind the provincial LGSP (protocol (b) of ``../shared/PARTNER-FORMATS.md`` §3, profile ``paygov/lgsp``),
strict as sourced (``mappings/profiles/paygov/lgsp.yaml`` names the sources):

- ``POST /paygov/order`` with ``Authorization: Bearer <token>`` and ``lgspaccesstoken`` (else HTTP 401): the
  order's ten fields, every one a string (OC-API:147), ``orderId`` ``<agency code>-<dossier code>-01``
  (OC-PI:1785), the checksum (OC-PT:208-224) → ``{data: {url}}`` (OC-API:200-206); a refusal
  ``{data: null, message}``.
- ``POST /paygov/receipt`` (the e-receipt call, OC-PF:1510-1568; the same headers) → ``{transactionReceipt: URL}``
  of ``GET /paygov/receipt/<transactionCode>.pdf`` (the PDF) for a paid order.
- ``POST /_pay {orderId}``: the payer pays; PayGov POSTs ``{orderId, errorCode "00", amount, orderInfo, requestCode,
  transactionNo, payDate, paygate, type, transactionCode, checksum}`` (OC-PT:177-187) to ``callback_url`` and
  answers ``{status, answer, issues}`` (the hub's answer must be ``{error_code: SUCCESSFUL | FAILED,
  error_message}``, OC-PU:139-144). Knobs: ``lose``, ``forge_checksum``, ``errorCode``, ``amount``.

``GET /_received`` → ``{"orders": {orderId: {...}}, "refused": [...], "receipts": [...], "callbacks": [...]}``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.devtools.simulators.payment import simple_pdf
from mappings import paygov_lgsp as pg

ORDER_FIELDS = (
    "partnerCode",
    "returnUrl",
    "orderId",
    "amount",
    "orderInfo",
    "requestCode",
    "ipAddress",
    "checksum",
    "accessKey",
    "serviceCode",
)  # OC-PI:1789-1809
RECEIPT_FIELDS = (
    "partnerCode",
    "accessKey",
    "payerId",
    "payerName",
    "payerAddress",
    "payerDistrict",
    "payerProvince",
    "docCode",
    "decisionDate",
    "procedureName",
    "paids",
    "otherInfo",
    "checksum",
)  # OC-PF:1555-1568
ORDER_ID = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}-.+-01$")  # OC-PI:1785, 1711-1712


class PayGovLgspSimulator(SimulatorServer):
    """PayGov via LGSP on 127.0.0.1; ``url`` is the LGSP base (``/paygov``)."""

    name: ClassVar[str] = "paygov_lgsp"
    path: ClassVar[str] = "/paygov"

    def __init__(
        self,
        port: int = 0,
        *,
        partner_code: str = "PAYGOV-DEMO",
        secret_key: str = "paygov-secret-key",  # noqa: S107 - the simulator's demo secrets
        access_key: str = "paygov-access-key",
        token: str = "lgsp-bearer-token",  # noqa: S107
        lgsp_access_token: str = "bGdzcC1hY2Nlc3MtdG9rZW4=",  # noqa: S107
        callback_url: str | None = None,
    ) -> None:
        super().__init__(port)
        self.partner_code, self.secret_key, self.access_key = partner_code, secret_key, access_key
        self.token, self.lgsp_access_token = token, lgsp_access_token
        self.callback_url = callback_url
        self._data_lock = threading.Lock()
        self._clear()

    def profile_values(self, return_url: str = "https://dichvucong.example.gov.vn/thanh-toan") -> dict[str, str]:
        """The ``paygov/lgsp`` profile values of a connector pointed at ``url``."""
        return {
            "order_url": "order",
            "receipt_url": "receipt",
            "access_key": self.access_key,
            "service_code": "DVC-DEMO",
            "return_url": return_url,
        }

    def _clear(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.refused: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []

    def control(self, command: dict[str, Any]) -> None:
        if "callback_url" in command:
            self.callback_url = command["callback_url"]

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(
                json.dumps(
                    {
                        "orders": self.orders,
                        "refused": self.refused,
                        "receipts": self.receipts,
                        "callbacks": self.callbacks,
                    }
                )
            )

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()

    def _authorized(self, handler: SimulatorHandler) -> bool:
        return (
            handler.headers.get("Authorization") == f"Bearer {self.token}"
            and handler.headers.get("lgspaccesstoken") == self.lgsp_access_token
        )

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        match = re.fullmatch(r"/paygov/receipt/(.+)\.pdf", path)
        with self._data_lock:
            order = next((o for o in self.orders.values() if match and o.get("transactionCode") == match[1]), None)
        if order is None:
            handler.reply(404, {"error": f"no GET {path}"})
            return
        handler.reply(
            200,
            simple_pdf(
                [
                    "BIEN LAI DIEN TU - PayGov (LGSP) simulator",
                    f"orderId: {order['orderId']}",
                    f"amount: {order['amount']} VND",
                    f"transactionNo: {order['transactionNo']}",
                ]
            ),
            "application/pdf",
        )

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        try:
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            handler.reply(400, {"data": None, "message": "not JSON"})
            return
        if path == "/_pay":
            handler.reply(200, self.pay(message))
        elif path not in ("/paygov/order", "/paygov/receipt"):
            handler.reply(404, {"error": f"no POST {path}"})
        elif not self._authorized(handler):
            handler.reply(401, {"data": None, "message": "Bearer token or lgspaccesstoken missing or wrong"})
        elif path == "/paygov/order":
            handler.reply(200, self.order(message))
        else:
            handler.reply(200, self.receipt(message))

    def _refuse(self, what: str, problems: list[str]) -> dict[str, Any]:
        with self._data_lock:
            self.refused.append({"call": what, "issues": problems})
        return {"data": None, "message": "; ".join(problems)}

    @staticmethod
    def _strings(message: dict[str, Any], names: tuple[str, ...]) -> list[str]:
        return [
            f"{n}: thiếu trường bắt buộc" if n not in message else f"{n}: phải là chuỗi (string)"
            for n in names
            if not isinstance(message.get(n), str)
        ]

    def order(self, message: dict[str, Any]) -> dict[str, Any]:
        problems = self._strings(message, ORDER_FIELDS)
        if not problems:
            if message["partnerCode"] != self.partner_code or message["accessKey"] != self.access_key:
                problems.append("partnerCode/accessKey: không hợp lệ")
            if not ORDER_ID.fullmatch(message["orderId"]):
                problems.append(f"orderId: {message['orderId']!r} không đúng dạng <mã đơn vị>-<mã hồ sơ>-01")
            if not message["amount"].isdigit():
                problems.append("amount: phải là số tiền nguyên")
            expected = pg.order_checksum(
                secret_key=self.secret_key,
                access_key=self.access_key,
                partner_code=self.partner_code,
                order_id=message["orderId"],
                request_code=message["requestCode"],
                amount=message["amount"],
            )
            if message["checksum"] != expected:
                problems.append("checksum: sai")
        if problems:
            return self._refuse("order", problems)
        with self._data_lock:
            self.orders[message["orderId"]] = {**message, "paid": False}
        return {"data": {"url": f"{self.base_url}/paygov/pay/{message['orderId']}"}}

    def receipt(self, message: dict[str, Any]) -> dict[str, Any]:
        problems = self._strings(message, RECEIPT_FIELDS)
        with self._data_lock:
            self.receipts.append({k: v for k, v in message.items() if k != "checksum"})
        if problems:
            return self._refuse("receipt", problems)
        order = (
            "payerId",
            "payerName",
            "payerAddress",
            "payerDistrict",
            "payerProvince",
            "docCode",
            "procedureName",
            "paids",
            "otherInfo",
            "decisionDate",
        )  # OC-PF:1542-1544
        expected = pg.sha256_hex(
            self.secret_key + self.partner_code + self.access_key + "".join(message[k] for k in order)
        )
        if message["checksum"] != expected:
            return self._refuse("receipt", ["checksum: sai"])
        try:
            codes = json.loads(base64.b64decode(message["paids"]))
        except ValueError:
            return self._refuse("receipt", ["paids: không đọc được"])
        with self._data_lock:
            paid = [o for o in self.orders.values() if o.get("paid") and o.get("transactionCode") in codes]
        if not paid:
            return self._refuse("receipt", ["paids: không có giao dịch đã thanh toán"])
        return {"transactionReceipt": f"{self.base_url}/paygov/receipt/{paid[0]['transactionCode']}.pdf"}

    def pay(self, command: dict[str, Any]) -> dict[str, Any]:
        """The payer pays an order: the callback (OC-PT:177-187), POSTed to ``callback_url`` unless lost."""
        with self._data_lock:
            order = self.orders.get(str(command.get("orderId")))
            if order is None:
                return {"error": f"unknown orderId {command.get('orderId')!r}"}
            if not order["paid"]:
                order.update(
                    paid=True,
                    transactionNo=f"PG{secrets.token_hex(5).upper()}",
                    transactionCode=f"TC{secrets.token_hex(5).upper()}",
                    payDate=datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
                )
            amount = str(command.get("amount", order["amount"]))
            callback = {
                "orderId": order["orderId"],
                "errorCode": str(command.get("errorCode", pg.PAID)),
                "amount": amount,
                "orderInfo": order["orderInfo"],
                "requestCode": order["requestCode"],
                "transactionNo": order["transactionNo"],
                "payDate": order["payDate"],
                "paygate": "PAYGOV",
                "type": "PAY",
                "transactionCode": order["transactionCode"],
            }
        secret = "not-the-secret" if command.get("forge_checksum") else self.secret_key
        callback["checksum"] = pg.order_checksum(
            secret_key=secret,
            access_key=self.access_key,
            partner_code=self.partner_code,
            order_id=callback["orderId"],
            request_code=callback["requestCode"],
            amount=amount,
        )
        if command.get("lose") or not self.callback_url:
            return {"status": None, "answer": "lost", "callback": callback}
        try:
            response = requests.post(self.callback_url, json=callback, timeout=10)
            answer: Any = response.json()
            status: int | None = response.status_code
        except (requests.RequestException, ValueError) as exc:
            answer, status = type(exc).__name__, None
        issues = []
        if status != 200:
            issues.append(f"HTTP {status}, not 200")
        if (
            not isinstance(answer, dict)
            or answer.get("error_code") not in (pg.SUCCESSFUL, pg.FAILED)
            or not isinstance(answer.get("error_message"), str)
        ):
            issues.append("the answer is not {error_code: SUCCESSFUL|FAILED, error_message}")
        outcome = {"status": status, "answer": answer, "issues": issues}
        with self._data_lock:
            self.callbacks.append({"orderId": callback["orderId"], **outcome})
        return outcome
