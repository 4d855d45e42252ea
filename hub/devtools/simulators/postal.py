"""The postal service simulator (bưu chính công ích, VNPost-style REST JSON).

- ``POST /api/oauth/token`` (form or JSON ``grant_type=client_credentials, client_id, client_secret``) →
  ``{access_token, token_type: "Bearer", expires_in}``; every other ``/api`` call needs ``Authorization: Bearer``
  (401 otherwise, or when the token expired: ``/_control {"expire_tokens": true}``, ``"token_ttl_s": N``).
- ``POST /api/orders`` (``CustomerCode``, ``OrderNumber``, ``Sender*``/``Receiver*``, ``CODAmount``,
  ``Description``, ``Direction``) → ``{Status: "OK", OrderNumber, ItemCode, TotalFee}``; the same order again is
  answered with the same ``ItemCode``; a missing field is 400 ``{Status: "ERROR", Message}``.
- ``POST /api/orders/cancel {OrderNumber, ItemCode}``; ``POST /api/price {SenderProvince, ReceiverProvince,
  CODAmount}`` → ``{TotalFee}``.
- ``GET /api/tracking?lastId=N&limit=M`` → ``{items: [{id, orderNumber, itemCode, statusCode, statusMessage,
  time}], lastId}`` — events with ``id > lastId``, oldest first.
- ``POST /_advance {ItemCode | OrderNumber, statusCode, statusMessage}`` adds a tracking event (a test's courier).

``GET /_received`` → ``{"orders": {ItemCode: order}, "events": [...], "tokens": n}``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from mappings.postal import local_time

DEFAULT_CLIENTS = {"lienthong": "lienthong-postal-secret"}
REQUIRED = (
    "CustomerCode", "OrderNumber", "SenderName", "SenderAddress", "SenderTel", "SenderProvince", "SenderDistrict",
    "ReceiverName", "ReceiverAddress", "ReceiverTel", "ReceiverProvince", "ReceiverDistrict",
)  # fmt: skip


class PostalSimulator(SimulatorServer):
    name: ClassVar[str] = "postal"
    path: ClassVar[str] = "/api"

    def __init__(self, port: int = 0, *, clients: dict[str, str] | None = None, token_ttl_s: float = 3600) -> None:
        super().__init__(port)
        self.clients = dict(DEFAULT_CLIENTS if clients is None else clients)
        self.token_ttl_s = token_ttl_s
        self._data_lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._clear()

    def _clear(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.token_count = 0

    def control(self, command: dict[str, Any]) -> None:
        with self._data_lock:
            if "token_ttl_s" in command:
                self.token_ttl_s = float(command["token_ttl_s"])
            if command.get("expire_tokens"):
                self._tokens.clear()

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(json.dumps({"orders": self.orders, "events": self.events, "tokens": self.token_count}))

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._tokens.clear()

    # ------------------------------------------------------------ helpers

    def _authorized(self, handler: SimulatorHandler) -> bool:
        token = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        with self._data_lock:
            expires = self._tokens.get(token)
            if expires is None or time.monotonic() > expires:
                self._tokens.pop(token, None)
                return False
            return True

    def _event(self, order: dict[str, Any], code: str, message: str) -> None:
        self.events.append(
            {
                "id": len(self.events) + 1,
                "orderNumber": order["OrderNumber"],
                "itemCode": order["ItemCode"],
                "statusCode": code,
                "statusMessage": message,
                "time": local_time(datetime.now(UTC)),
            }
        )

    # ------------------------------------------------------------ protocol

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        if path != "/api/tracking":
            handler.reply(404, {"error": f"no GET {path}"})
            return
        if not self._authorized(handler):
            handler.reply(401, {"Status": "ERROR", "Message": "invalid_token"})
            return
        query = parse_qs(handler.path.partition("?")[2])
        try:
            last_id = int(query.get("lastId", ["0"])[0])
            limit = max(1, min(500, int(query.get("limit", ["100"])[0])))
        except ValueError:
            handler.reply(400, {"Status": "ERROR", "Message": "lastId and limit are integers"})
            return
        with self._data_lock:
            items = [e for e in self.events if e["id"] > last_id][:limit]
        handler.reply(200, {"items": items, "lastId": items[-1]["id"] if items else last_id})

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path == "/api/oauth/token":
            handler.reply(*self._token(handler, body))
            return
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            handler.reply(400, {"Status": "ERROR", "Message": "JSON body expected"})
            return
        if path == "/_advance":
            handler.reply(*self._advance(data))
            return
        if not path.startswith("/api/"):
            handler.reply(404, {"error": f"no POST {path}"})
            return
        if not self._authorized(handler):
            handler.reply(401, {"Status": "ERROR", "Message": "invalid_token"})
            return
        if path == "/api/orders":
            handler.reply(*self._create(data))
        elif path == "/api/orders/cancel":
            handler.reply(*self._cancel(data))
        elif path == "/api/price":
            cod = int(data.get("CODAmount") or 0)
            same = data.get("SenderProvince") == data.get("ReceiverProvince")
            handler.reply(200, {"Status": "OK", "TotalFee": (22_000 if same else 35_000) + cod // 100})
        else:
            handler.reply(404, {"error": f"no POST {path}"})

    def _token(self, handler: SimulatorHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        if "json" in (handler.headers.get("Content-Type") or ""):
            try:
                form = {k: str(v) for k, v in json.loads(body).items()}
            except (ValueError, AttributeError):
                form = {}
        else:
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        expected = self.clients.get(form.get("client_id", ""))
        if expected is None or not secrets.compare_digest(expected, form.get("client_secret", "")):
            return 401, {"error": "invalid_client"}
        token = secrets.token_urlsafe(24)
        with self._data_lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            self.token_count += 1
            ttl = self.token_ttl_s
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": int(ttl)}

    def _create(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        missing = [f for f in REQUIRED if not data.get(f)]
        if missing:
            return 400, {"Status": "ERROR", "Message": f"Thiếu trường {', '.join(missing)}"}
        key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        with self._data_lock:
            for item_code, order in self.orders.items():
                if order["_key"] == key:
                    return 200, {"Status": "OK", "OrderNumber": order["OrderNumber"], "ItemCode": item_code,
                                 "TotalFee": order["TotalFee"]}  # fmt: skip
            item_code = f"EL{len(self.orders) + 100000001}VN"
            fee = 22_000 if data["SenderProvince"] == data["ReceiverProvince"] else 35_000
            order = {**data, "ItemCode": item_code, "TotalFee": fee, "State": "CREATED", "_key": key}
            self.orders[item_code] = order
            self._event(order, "ORDER_CREATED", "Đã tạo đơn hàng")
        return 200, {"Status": "OK", "OrderNumber": data["OrderNumber"], "ItemCode": item_code, "TotalFee": fee}

    def _find(self, data: dict[str, Any]) -> dict[str, Any] | None:
        if data.get("ItemCode") in self.orders:
            return self.orders[data["ItemCode"]]
        found = [o for o in self.orders.values() if o["OrderNumber"] == data.get("OrderNumber")]
        return found[-1] if found else None

    def _cancel(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._data_lock:
            order = self._find(data)
            if order is None:
                return 404, {"Status": "ERROR", "Message": "Không tìm thấy đơn hàng"}
            if order["State"] == "DELIVERED":
                return 409, {"Status": "ERROR", "Message": "Đơn hàng đã phát, không thể hủy"}
            order["State"] = "CANCELLED"
            self._event(order, "CANCELLED", "Đơn hàng đã hủy")
        return 200, {"Status": "OK", "ItemCode": order["ItemCode"]}

    def _advance(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._data_lock:
            order = self._find(data)
            if order is None:
                return 404, {"error": "unknown order"}
            code = str(data.get("statusCode", "DELIVERED"))
            order["State"] = code
            self._event(order, code, str(data.get("statusMessage") or code))
            return 200, {"ok": True, "id": self.events[-1]["id"]}
