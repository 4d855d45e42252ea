"""The VNPost simulator (bưu chính công ích), strict about the formats of PARTNER-FORMATS.md §4 — written from the
fact sheet, not from the hub's mapping, so an order the hub gets wrong is refused as VNPost would refuse it.

NGSP (the default; OC-SDK IToken/IOrder, OC-VP:561-615):

- ``POST /ngsp/token`` with ``Authorization: Basic base64(consumer_key:secret)`` and the form
  ``grant_type=client_credentials`` → ``{access_token, token_type, expires_in}``; credentials in the form, a JSON
  body or a wrong key are refused (401/400).
- Every other call needs ``Authorization: <token_type> <access_token>`` (or, with ``auth="access_token"``, the
  header ``access_token``, TH-VS:38-41; with ``auth="bearer"``, ``Bearer``) — 401 otherwise or once expired
  (``/_control {"expire_tokens": true}``, ``"token_ttl_s": N``).
- ``POST /ngsp/order``: the order of the sheet's table (OC-VM:14-51; OC-SDK MOrder; TH-VR:9-30). Refused with
  ``{Status: 102, Message}`` (our code: VNPost's refusal codes are not published) when a required string is missing
  or empty (CustomerCode, OrderNumber, Sender/Receiver Name/Address/Tel), a province or district is not an integer
  (a string code included), CODAmount is not a number, a field is not one of the sheet's, the CustomerCode is not
  the simulator's, the ItemCode is missing (``require_item_code``) or serves another order. Created:
  ``{Status: 100, Message}`` (an Integer as in OC-SDK MResult; ``"100"`` with ``status_as_text``, TH-VS:48); the
  same OrderNumber and ItemCode again: ``{Status: 101, Message}`` (TH accepts 101, TH-VH:80-98; its meaning here —
  already there — is ours). Creating an order adds a tracking event (StatusCode 1).
- ``GET /ngsp/cancel?CustomerCode=&OrderNumber=`` → the same shape; a POST is 405.
- ``GET /ngsp/tracking?pagesize=N&lastId=<$oid>`` → ``{_embedded: {"rh:doc": [{_id: {$oid}, CustomerCode,
  OrderNumber, ItemCode, StatusCode, StatusMessage, EventTime, POSID, Notes}]}, _size, _total_pages, _returned}``
  (OC-SDK MStatus/MRhDoc; OC-VP:340-419): documents after ``lastId`` in ``$oid`` order; no ``_embedded`` when
  there are none (OpenCPS checks it for null). A ``lastId`` that is not 24 hex digits, or no integer ``pagesize``,
  is 400.
- ``POST /ngsp/price`` — UNSOURCED (no public source): ``{CustomerCode, Sender/ReceiverProvince,
  Sender/ReceiverDistrict, CODAmount, Weight}`` → ``{Status: 100, Message, TotalFee}``.

LGSP (``lgsp=True``; OC-VP:171-182): the same operations at ``/lgsp?service=<token|order|cancel|tracking|price>``
with ``Bearer``; the token is still asked with Basic at ``/lgsp/token``.

Test hooks: ``POST /_advance {ItemCode | OrderNumber, StatusCode, StatusMessage, POSID, Notes[, EventTime]}`` adds a
tracking event (a courier; StatusCode 4 = delivered, 7 = cancelled in this simulator: codes VNPost does not
publish, the same guesses as profile ``vnpost/ngsp``'s default ``status_map``; EventTime as given, else now in
epoch milliseconds). ``GET /_received`` → ``{"orders": {ItemCode: order}, "events": [...], "cancels": [...],
"refused": [...], "repeats": [orders posted again], "tokens": n}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import threading
import time
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer

DEFAULT_CONSUMERS = {"lienthong": "lienthong-vnpost-secret"}
DEFAULT_CUSTOMER = "KH-LIENTHONG-01"
#: Where the operations are (the sources configure them per deployment: no public paths).
PATHS = {"token": "/ngsp/token", "order": "/ngsp/order", "cancel": "/ngsp/cancel", "tracking": "/ngsp/tracking",
         "price": "/ngsp/price"}  # fmt: skip
LGSP_PATH, LGSP_TOKEN_PATH = "/lgsp", "/lgsp/token"
CREATED, ACCEPTED, REFUSED = 100, 101, 102  # 100 OC-SDK/TH; 101 TH; 102 ours (no refusal code is published)
CODE_CREATED, CODE_DELIVERED, CODE_CANCELLED = 1, 4, 7  # this simulator's StatusCodes (unsourced)
POS_ID = "550000"  # the post office the simulator's events name

#: The order's fields and JSON types per the sheet's table (PARTNER-FORMATS §4: OC-VM:14-51, OC-SDK MOrder,
#: TH-VR:9-30). "string!" = required, non-empty.
ORDER_TYPES: dict[str, str] = {
    "CustomerCode": "string!", "OrderNumber": "string!", "ItemCode": "string", "CODAmount": "number",
    "SenderProvince": "integer!", "SenderDistrict": "integer!", "ReceiverProvince": "integer!",
    "ReceiverDistrict": "integer!", "SenderName": "string!", "SenderAddress": "string!", "SenderTel": "string!",
    "ReceiverName": "string!", "ReceiverAddress": "string!", "ReceiverTel": "string!", "SenderEmail": "string",
    "ReceiverEmail": "string", "SenderDesc": "string", "Description": "string", "FlagConfig": "integer",
}  # fmt: skip
_OID = re.compile(r"^[0-9a-fA-F]{24}$")


def order_issues(order: object, *, require_item_code: bool = True) -> list[str]:
    """Every reason VNPost refuses ``order`` per the sheet: missing, empty or ill-typed fields, unknown fields."""
    if not isinstance(order, dict):
        return ["the order is not a JSON object"]
    issues = [f"{name}: không thuộc đơn hàng (unknown field)" for name in order if name not in ORDER_TYPES]
    for name, kind in ORDER_TYPES.items():
        required = kind.endswith("!") or (name == "ItemCode" and require_item_code)
        value = order.get(name)
        if value is None:
            if required:
                issues.append(f"{name}: bắt buộc (required)")
            continue
        base = kind.rstrip("!")
        if base == "string" and not isinstance(value, str):
            issues.append(f"{name}: phải là chuỗi (a string), not {type(value).__name__}")
        elif base == "string" and required and not value.strip():
            issues.append(f"{name}: bắt buộc (required), empty")
        elif base == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            issues.append(f"{name}: phải là số nguyên (an integer VNPost code), not {type(value).__name__} {value!r}")
        elif base == "integer" and value < (1 if name.endswith("Province") else 0):
            issues.append(f"{name}: {value} is not a VNPost code")
        elif base == "number" and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            issues.append(f"{name}: phải là số tiền (a number >= 0), not {value!r}")
    return issues


class PostalSimulator(SimulatorServer):
    name: ClassVar[str] = "postal"
    path: ClassVar[str] = ""

    def __init__(
        self,
        port: int = 0,
        *,
        consumers: dict[str, str] | None = None,
        customers: tuple[str, ...] = (DEFAULT_CUSTOMER,),
        token_ttl_s: float = 3600,
        token_type: str = "Bearer",  # noqa: S107 - the token's type (OC-SDK MToken token_type), no secret
        auth: str = "token_type",
        lgsp: bool = False,
        require_item_code: bool = True,
        status_as_text: bool = False,
    ) -> None:
        super().__init__(port)
        self.consumers = dict(DEFAULT_CONSUMERS if consumers is None else consumers)
        self.customers = frozenset(customers)
        self.token_ttl_s = token_ttl_s
        self.token_type = token_type
        self.auth = "bearer" if lgsp else auth
        self.lgsp = lgsp
        self.require_item_code = require_item_code
        self.status_as_text = status_as_text
        self._data_lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._oid_prefix = secrets.token_hex(5)
        self._oid_counter = 0
        self._clear()

    def _clear(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.repeats: list[dict[str, Any]] = []  # orders posted again (same OrderNumber and ItemCode): Status 101
        self.token_count = 0

    # ------------------------------------------------------------ addresses (the profile values to use)

    @property
    def profile_values(self) -> dict[str, str]:
        """The ``vnpost/ngsp`` values that reach this simulator (the connector's ``endpoint.url`` = ``url``)."""
        if self.lgsp:
            return {"token_path": self.base_url + LGSP_TOKEN_PATH, "order_path": "order", "cancel_path": "cancel",
                    "tracking_path": "tracking", "price_path": "price", "auth_header": "bearer",
                    "service_query": "1"}  # fmt: skip
        values = {f"{op}_path": path for op, path in PATHS.items()}
        return {**values, "auth_header": self.auth}

    @property
    def url(self) -> str:
        return self.base_url + (LGSP_PATH if self.lgsp else "")

    # ------------------------------------------------------------ control

    def control(self, command: dict[str, Any]) -> None:
        with self._data_lock:
            if "token_ttl_s" in command:
                self.token_ttl_s = float(command["token_ttl_s"])
            if command.get("expire_tokens"):
                self._tokens.clear()
            if "status_as_text" in command:
                self.status_as_text = bool(command["status_as_text"])

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(json.dumps({"orders": self.orders, "events": self.events, "cancels": self.cancels,
                                          "refused": self.refused, "repeats": self.repeats,
                                          "tokens": self.token_count}))  # fmt: skip

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self._clear()
            self._tokens.clear()

    # ------------------------------------------------------------ helpers

    def _answer(self, status: int, message: str) -> dict[str, Any]:
        """``{Status, Message}`` (OC-SDK MResult: an Integer; TH reads a string, TH-VS:48)."""
        return {"Status": str(status) if self.status_as_text else status, "Message": message}

    def _authorized(self, handler: SimulatorHandler) -> bool:
        if self.auth == "access_token":
            token = (handler.headers.get("access_token") or "").strip()
        else:
            scheme, _, token = (handler.headers.get("Authorization") or "").strip().partition(" ")
            expected = "Bearer" if self.auth == "bearer" else self.token_type
            if scheme != expected:
                return False
        with self._data_lock:
            expires = self._tokens.get(token.strip())
            if expires is None or time.monotonic() > expires:
                self._tokens.pop(token.strip(), None)
                return False
            return True

    def _oid(self) -> str:
        """A MongoDB ObjectId's hex (4-byte seconds, 5 random bytes, 3-byte counter): increasing in this feed."""
        self._oid_counter += 1
        return f"{int(time.time()):08x}{self._oid_prefix}{self._oid_counter:06x}"

    def _event(
        self, order: dict[str, Any], code: int, message: str, pos: str = POS_ID, notes: str = "", at: Any = None
    ) -> str:
        oid = self._oid()
        self.events.append(
            {
                "_id": {"$oid": oid},
                "CustomerCode": order["CustomerCode"],
                "OrderNumber": order["OrderNumber"],
                "ItemCode": order.get("ItemCode") or "",
                "StatusCode": code,
                "StatusMessage": message,
                "EventTime": int(time.time() * 1000) if at is None else at,
                "POSID": pos,
                "Notes": notes,
            }
        )
        return oid

    def _operation(self, handler: SimulatorHandler, path: str) -> str | None:
        if self.lgsp:
            if path == LGSP_TOKEN_PATH:
                return "token"
            if path != LGSP_PATH:
                return None
            service = parse_qs(urlsplit(handler.path).query).get("service", [""])[0]
            return service if service in PATHS else None
        return next((op for op, p in PATHS.items() if p == path), None)

    def _query(self, handler: SimulatorHandler) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query, keep_blank_values=True).items()}

    # ------------------------------------------------------------ protocol

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        op = self._operation(handler, path)
        if op not in ("cancel", "tracking"):
            handler.reply(405 if op else 404, {"error": f"no GET {path}" + (f" ({op})" if op else "")})
            return
        if not self._authorized(handler):
            handler.reply(401, {"error": "invalid_token"})
            return
        query = self._query(handler)
        if self.lgsp:
            query.pop("service", None)  # the LGSP operation, not a parameter of it
        if op == "cancel":
            handler.reply(200, self._cancel(query))
        else:
            handler.reply(*self._tracking(query))

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path == "/_advance":
            handler.reply(*self._advance(body))
            return
        op = self._operation(handler, path)
        if op is None or op in ("cancel", "tracking"):
            handler.reply(405 if op else 404, {"error": f"no POST {path}" + (f" ({op}: GET)" if op else "")})
            return
        if op == "token":
            handler.reply(*self._token(handler, body))
            return
        if not self._authorized(handler):
            handler.reply(401, {"error": "invalid_token"})
            return
        if "application/json" not in (handler.headers.get("Content-Type") or ""):
            handler.reply(415, {"error": "application/json expected"})
            return
        try:
            data = json.loads(body or b"null")
        except ValueError:
            handler.reply(400, {"error": "JSON body expected"})
            return
        handler.reply(200, self._create(data) if op == "order" else self._price(data))

    def _token(self, handler: SimulatorHandler, body: bytes) -> tuple[int, dict[str, Any]]:
        """OC-SDK IToken; OC-VP:561-615: Basic consumer_key:secret, form grant_type=client_credentials."""
        if "application/x-www-form-urlencoded" not in (handler.headers.get("Content-Type") or ""):
            return 400, {"error": "invalid_request", "error_description": "a form body is expected"}
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        scheme, _, encoded = (handler.headers.get("Authorization") or "").partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key, secret = "", ""
        expected = self.consumers.get(key)
        if scheme != "Basic" or expected is None or not secrets.compare_digest(expected, secret):
            return 401, {"error": "invalid_client"}
        token = secrets.token_urlsafe(24)
        with self._data_lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            self.token_count += 1
            ttl = self.token_ttl_s
        return 200, {"access_token": token, "token_type": self.token_type, "expires_in": int(ttl)}

    def _refuse(self, what: str, detail: Any, message: str) -> dict[str, Any]:
        self.refused.append({"what": what, "body": detail, "message": message})
        return self._answer(REFUSED, message)

    def _create(self, data: Any) -> dict[str, Any]:
        issues = order_issues(data, require_item_code=self.require_item_code)
        with self._data_lock:
            if issues:
                return self._refuse("order", data, "Dữ liệu không hợp lệ: " + "; ".join(issues))
            if data["CustomerCode"] not in self.customers:
                return self._refuse("order", data, f"Mã khách hàng {data['CustomerCode']} không tồn tại")
            key = data.get("ItemCode") or f"{data['OrderNumber']}#{len(self.orders) + 1}"
            known = self.orders.get(key)
            if known is not None:
                if known["OrderNumber"] != data["OrderNumber"]:
                    return self._refuse("order", data, f"Mã vận đơn {key} đã dùng cho đơn {known['OrderNumber']}")
                self.repeats.append(data)
                return self._answer(ACCEPTED, f"Đơn hàng {data['OrderNumber']} đã tồn tại")
            self.orders[key] = {**data, "State": "CREATED"}
            self._event(data, CODE_CREATED, "Đã tiếp nhận đơn hàng")
        return self._answer(CREATED, "Tạo đơn hàng thành công")

    def _cancel(self, query: dict[str, str]) -> dict[str, Any]:
        """GET ?CustomerCode=&OrderNumber= (PARTNER-FORMATS §4): the newest standing order of that OrderNumber."""
        with self._data_lock:
            self.cancels.append(dict(query))
            if set(query) - {"CustomerCode", "OrderNumber"} or not query.get("OrderNumber"):
                return self._refuse("cancel", query, "Cần CustomerCode và OrderNumber")
            if query.get("CustomerCode") not in self.customers:
                return self._refuse("cancel", query, f"Mã khách hàng {query.get('CustomerCode')} không tồn tại")
            standing = [o for o in self.orders.values()
                        if o["OrderNumber"] == query["OrderNumber"] and o["State"] != "CANCELLED"]  # fmt: skip
            if not standing:
                return self._refuse("cancel", query, "Không tìm thấy đơn hàng")
            order = standing[-1]
            if order["State"] == "DELIVERED":
                return self._refuse("cancel", query, "Đơn hàng đã phát, không thể hủy")
            order["State"] = "CANCELLED"
            self._event(order, CODE_CANCELLED, "Đơn hàng đã hủy")
        return self._answer(CREATED, "Hủy đơn hàng thành công")

    def _tracking(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """OC-SDK MStatus/MRhDoc (RESTHeart): documents after ``lastId`` in ``$oid`` order."""
        size_text, last = query.get("pagesize", ""), query.get("lastId")
        if not re.fullmatch(r"[0-9]{1,4}", size_text) or not 1 <= int(size_text) <= 1000:
            return 400, {"error": "pagesize must be an integer 1..1000"}
        if last is not None and not _OID.match(last):
            return 400, {"error": f"lastId {last!r} is not an ObjectId (24 hex digits)"}
        size = int(size_text)
        with self._data_lock:
            after = [e for e in self.events if last is None or e["_id"]["$oid"] > last.lower()]
            total = len(self.events)
            page = json.loads(json.dumps(after[:size]))
        answer: dict[str, Any] = {"_size": total, "_total_pages": math.ceil(total / size), "_returned": len(page)}
        if page:
            answer["_embedded"] = {"rh:doc": page}
        return 200, answer

    def _price(self, data: Any) -> dict[str, Any]:
        """UNSOURCED: no public source gives VNPost's price quote; ours takes the areas, COD and weight."""
        fields = ("SenderProvince", "SenderDistrict", "ReceiverProvince", "ReceiverDistrict", "CODAmount", "Weight")
        if not isinstance(data, dict) or any(isinstance(data.get(f), bool) or not isinstance(data.get(f), int | float)
                                             for f in fields):  # fmt: skip
            with self._data_lock:
                return self._refuse("price", data, f"Cần {', '.join(fields)} (số)")
        same = data["SenderProvince"] == data["ReceiverProvince"]
        fee = (22_000 if same else 35_000) + int(data["Weight"]) // 500 * 5_000 + int(data["CODAmount"]) // 100
        return {**self._answer(CREATED, "Thành công"), "TotalFee": fee}

    def _advance(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            data = json.loads(body or b"{}")
            code = data.get("StatusCode", CODE_DELIVERED)
            if isinstance(code, bool) or not isinstance(code, int):
                raise ValueError
        except (ValueError, AttributeError):
            return 400, {"error": "a JSON object with an integer StatusCode"}
        with self._data_lock:
            found = [o for k, o in self.orders.items()
                     if k == data.get("ItemCode") or o["OrderNumber"] == data.get("OrderNumber")]  # fmt: skip
            if not found:
                return 404, {"error": "unknown order"}
            order = found[-1]
            if code == CODE_DELIVERED:
                order["State"] = "DELIVERED"
            oid = self._event(order, code, str(data.get("StatusMessage") or code), str(data.get("POSID") or POS_ID),
                              str(data.get("Notes") or ""), data.get("EventTime"))  # fmt: skip
        return 200, {"ok": True, "$oid": oid}
