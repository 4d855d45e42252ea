"""VNPost (bưu chính công ích) as the connector's profile ``vnpost/ngsp`` says (PARTNER-FORMATS.md §4).

- Token: POST ``token_path`` with ``Authorization: Basic base64(consumer_key:secret)`` and the form
  ``grant_type=client_credentials`` → ``{access_token, token_type, expires_in}`` (OC-SDK IToken/MToken;
  OC-VP:561-615); cached, renewed shortly before it expires or at once on a 401/403. Calls carry it as the
  profile's ``auth_header`` says: ``Authorization: <token_type> <access_token>`` (the NGSP SDK), ``Bearer`` (the
  LGSP variant, whose calls go to ``endpoint?service=<operation>``, OC-VP:171-182) or ``access_token`` (TH-VS:38-41).
- Order: POST ``order_path`` with the order ``mappings.postal.order_body`` builds from the worker's draft — the
  customer's CustomerCode, the caller-assigned ItemCode (the ``postal.order``'s own, else the next unused code of
  the profile's pool, kept in the store through ``AdapterContext.postal_orders``), VNPost's integer area codes.
  Answer ``{Status, Message}``: 100 created, 101 accepted (TH); any other Status is a refusal, with its message.
- Cancel: GET ``cancel_path?CustomerCode=&OrderNumber=``; price quote (unsourced): POST ``price_path``; tracking:
  GET ``tracking_path?pagesize=N&lastId=<$oid>``, paged from the last document's ``_id.$oid``.

``DeliveryReceipt.sent`` is the order's JSON body exactly as posted (the token travels in a header, not in it).

Once VNPost accepted an order it is delivered, whatever happens next: the order book's record of it
(``created``, with the message it was posted for) is written after the answer, and a failure to write it is
logged, not raised — raised, the worker would retry the delivery and post the same OrderNumber/ItemCode again; the
worker's own delivered record then keeps the delivery from being sent twice. A message whose order the book
records accepted (a redelivery after the worker could not record it) is answered from the book, not posted again.

Retry classification: timeouts, connection failures, HTTP 5xx/429, a token refused (an operator may fix the
credentials), an answer that is not the sourced shape, and an empty ItemCode pool → ``TransientDeliveryError``;
a ``Status`` other than 100/101, HTTP 4xx, an area code VNPost's tables lack, an ItemCode another order used →
``PermanentDeliveryError``. The store down while an ItemCode is assigned (before the order is posted) is raised as
``StoreUnavailableError``: the worker gives the delivery back and waits the outage out.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.credentials import RenewingToken
from adapters.http import classify_status, partner_pool, request_text
from hub.errors import ItemCodeError, MappingError
from hub.logs import mask_ids
from hub.packets.postal import PostalOrder
from mappings import postal as vp
from mappings.profiles import ProfileSettings

log = logging.getLogger(__name__)

TOKEN_STATUSES = frozenset({401, 403})  # the token is no longer accepted: fetch another, call once more


class PostalOrders(Protocol):
    """Where the adapter gets an order's ItemCode and records what VNPost took (``hub.store.postal_orders``
    ``OrderBook``, passed in by the composition root)."""

    def item_code(
        self, connector: str, *, dossier_code: str, direction: str, cod_amount: int, given: str | None,
        pool: Sequence[str],
    ) -> str: ...  # fmt: skip
    def created(self, connector: str, item_code: str, message_id: str | None = None) -> None: ...
    def accepted(self, connector: str, message_id: str) -> str | None: ...  # the ItemCode accepted for it
    def cancelled(self, connector: str, item_code: str) -> None: ...


#: An order in one of these states no longer stands: the next order of its dossier and direction takes a new code.
FINAL_STATES = frozenset({"delivered", "returned", "cancelled"})


class InMemoryOrders:
    """``PostalOrders`` in this process only (tools and tests without a store): same rules, nothing durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}  # (connector, item code) -> order

    def item_code(
        self, connector: str, *, dossier_code: str, direction: str, cod_amount: int, given: str | None,
        pool: Sequence[str],
    ) -> str:  # fmt: skip
        key = f"{dossier_code}:{direction}"
        with self._lock:
            for (conn, code), order in self.orders.items():
                if conn == connector and order["key"] == key and order["state"] not in FINAL_STATES:
                    if given and given != code:
                        raise ItemCodeError("item-code-in-use", f"{key} already has order {code}, not {given}")
                    return code
            used = {code for conn, code in self.orders if conn == connector}
            if given and given in used:
                raise ItemCodeError("item-code-in-use", f"ItemCode {given} was used")
            free = [given] if given else [c for c in pool if c not in used]
            if not free:
                raise ItemCodeError("item-code-pool-empty", f"every ItemCode of {connector}'s pool is used")
            self.orders[(connector, free[0])] = {"key": key, "state": "assigned", "cod": cod_amount}
            return free[0]

    def created(self, connector: str, item_code: str, message_id: str | None = None) -> None:
        with self._lock:
            order = self.orders.get((connector, item_code))
            if order is not None and order["state"] in ("assigned", "created"):
                order["state"] = "created"
                if message_id is not None:
                    order["posted_by"] = message_id

    def accepted(self, connector: str, message_id: str) -> str | None:
        with self._lock:
            return next((code for (conn, code), order in self.orders.items()
                         if conn == connector and order.get("posted_by") == message_id), None)  # fmt: skip

    def cancelled(self, connector: str, item_code: str) -> None:
        with self._lock:
            if (connector, item_code) in self.orders:
                self.orders[(connector, item_code)]["state"] = "cancelled"


def url_for(endpoint: str, value: str) -> str:
    """A profile's path value as a URL: absolute as given, else a path after the connector's endpoint."""
    if value.startswith(("http://", "https://")):
        return value
    return endpoint.rstrip("/") + "/" + value.lstrip("/") if value else endpoint


class PostalAdapter(Adapter):
    """One VNPost connector (profile ``vnpost/ngsp``); safe to share between threads."""

    partner_format = vp.KIND

    def __init__(
        self,
        endpoint: str,
        settings: ProfileSettings,
        *,
        consumer_key: str,
        secret: str,
        orders: PostalOrders | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        renew_margin_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.options = vp.VnpostOptions.from_settings(settings)
        self.token_url = self._url(self.options.token_path, service=False)
        self._basic = "Basic " + base64.b64encode(f"{consumer_key}:{secret}".encode()).decode("ascii")
        self._consumer_key = consumer_key
        self.orders: PostalOrders = orders if orders is not None else InMemoryOrders()
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)
        self._token = RenewingToken(self._fetch_token, renew_margin_s=renew_margin_s, clock=clock)

    def __repr__(self) -> str:
        return f"PostalAdapter({self.endpoint!r}, consumer_key={self._consumer_key!r})"

    @property
    def customer_code(self) -> str:
        return self.options.customer_code

    # ------------------------------------------------------------ HTTP

    def _url(self, path: str, query: str = "", *, service: bool = True) -> str:
        """``path``'s URL with ``query``; on the LGSP variant ``endpoint?service=<path>&query`` (OC-VP:171-182)."""
        if service and self.options.service_query:
            return f"{self.endpoint}?service={path}" + (f"&{query}" if query else "")
        return url_for(self.endpoint, path) + (f"?{query}" if query else "")

    def _request(self, method: str, url: str, **kw: Any) -> tuple[int, Any, str]:
        status, text = request_text(self._pool, method, url, where=f"VNPost at {self.endpoint}", **kw)
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        return status, data, text

    @property
    def tokens_fetched(self) -> int:
        return self._token.fetched

    def token(self) -> str:
        """The cached token header value, fetching a token first when there is none or it is about to expire."""
        return self._token.get()

    def _fetch_token(self) -> tuple[str, float]:
        status, data, text = self._request(
            "POST",
            self.token_url,
            body=b"grant_type=client_credentials",
            headers={"Authorization": self._basic, "Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json", "Charset": "utf-8"},  # OC-VP:561-615
        )  # fmt: skip
        if status != 200 or not isinstance(data, dict) or not data.get("access_token"):
            raise TransientDeliveryError(f"VNPost refused a token: HTTP {status} {text[:120]}")
        access = str(data["access_token"])
        if self.options.auth_header == "token_type":
            token_type = data.get("token_type")
            if not isinstance(token_type, str) or not token_type.strip():
                raise TransientDeliveryError("VNPost's token answer has no token_type (OC-SDK MToken)")
            value = f"{token_type.strip()} {access}"
        elif self.options.auth_header == "bearer":
            value = f"Bearer {access}"
        else:
            value = access
        expires = data.get("expires_in")
        ttl = (
            float(expires)
            if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0
            else 300.0
        )
        return value, ttl

    def _auth(self, token: str) -> dict[str, str]:
        name = "access_token" if self.options.auth_header == "access_token" else "Authorization"
        return {name: token}

    def _call(self, method: str, url: str, body: bytes | None = None) -> tuple[dict[str, Any], str]:
        """One authorized call; a token refused (HTTP 401/403) is renewed and the call made once more."""
        for attempt in range(2):
            token = self.token()
            headers = {**self._auth(token), "Accept": "application/json"}
            kw: dict[str, Any] = {"headers": headers}
            if body is not None:
                headers["Content-Type"] = "application/json"
                kw["body"] = body
            status, data, text = self._request(method, url, **kw)
            if status in TOKEN_STATUSES and attempt == 0:
                self._token.drop(token)
                continue
            break
        if status in TOKEN_STATUSES:
            raise TransientDeliveryError(
                f"VNPost refused the token: HTTP {status} {mask_ids(text)[:120]}", status=status
            )
        classify_status(status, mask_ids(text))
        if not isinstance(data, dict):
            raise TransientDeliveryError(f"VNPost answered a malformed reply: {text[:80]!r}")
        return data, text

    def _answer(self, data: dict[str, Any], what: str) -> vp.OrderAnswer:
        answer = vp.order_status(data, self.options)
        if answer is None:
            raise TransientDeliveryError(f"VNPost answered {what} without a Status: {json.dumps(data)[:120]}")
        if not answer.accepted:
            raise PermanentDeliveryError(f"VNPost refused {what}: Status {answer.status} {mask_ids(answer.message)}")
        return answer

    # ------------------------------------------------------------ operations

    def item_code(self, connector: str, order: PostalOrder) -> str | None:
        """The order's ItemCode (``None`` when the profile sends none): its own, or the pool's next unused code."""
        if not self.options.send_item_code:
            return None
        try:
            return self.orders.item_code(
                connector, dossier_code=order.dossier_code, direction=order.direction.value,
                cod_amount=order.cod_amount, given=order.item_code, pool=self.options.item_codes,
            )  # fmt: skip
        except ItemCodeError as exc:
            if exc.rule == "item-code-pool-empty":
                raise TransientDeliveryError(str(exc)) from None
            raise PermanentDeliveryError(str(exc)) from None

    def order_body(self, connector: str, order: PostalOrder, draft: vp.OrderDraft) -> tuple[bytes, str | None]:
        """The order's JSON exactly as posted, and its ItemCode."""
        try:
            body = vp.order_body(draft, self.options, None)  # area codes first: no code is used for a bad order
            item = self.item_code(connector, order)
            body = vp.order_body(draft, self.options, item)
        except MappingError as exc:
            raise PermanentDeliveryError(f"the order of {order.dossier_code} cannot be sent to VNPost: {exc}") from None
        return json.dumps(body, ensure_ascii=False).encode(), item

    def _post(
        self, connector: str, order: PostalOrder, draft: vp.OrderDraft, message_id: str | None = None
    ) -> tuple[bytes, str | None, vp.OrderAnswer | None]:
        """Post the order, unless the order book says VNPost accepted it for ``message_id`` already (the answer is
        then ``None``). Once VNPost accepts, the order stands: see the module docstring."""
        if message_id is not None and self.options.send_item_code:
            item = self.orders.accepted(connector, message_id)  # a store failure here: nothing posted, retried
            if item is not None:
                try:
                    body = vp.order_body(draft, self.options, item)
                except MappingError as exc:
                    raise PermanentDeliveryError(f"order {order.dossier_code} cannot be rebuilt: {exc}") from None
                return json.dumps(body, ensure_ascii=False).encode(), item, None
        sent, item = self.order_body(connector, order, draft)
        data, _ = self._call("POST", self._url(self.options.order_path), sent)
        answer = self._answer(data, f"order {order.dossier_code}" + (f" ItemCode {item}" if item else ""))
        if item:
            try:
                self.orders.created(connector, item, message_id)
            except Exception as exc:  # whatever the book's failure: VNPost has the order, never post it again
                log.error(
                    "VNPost accepted order %s ItemCode %s (message %s) but the order book could not record it: %s; "
                    "delivered all the same, not posted again", order.dossier_code, item, message_id or "-",
                    mask_ids(str(exc))[:300],
                )  # fmt: skip
        return sent, item, answer

    def create(self, connector: str, order: PostalOrder) -> tuple[dict[str, Any], vp.OrderAnswer]:
        """Post ``order`` (outside the worker: tools, tests): the order as sent, and VNPost's answer."""
        sent, _, answer = self._post(connector, order, vp.to_order(order))
        assert answer is not None  # no message id: always posted
        return json.loads(sent), answer

    def cancel(self, connector: str, order_number: str, item_code: str | None = None) -> vp.OrderAnswer:
        """Cancel the order ``order_number`` (the dossier code): GET ``?CustomerCode=&OrderNumber=``."""
        query = vp.cancel_query(self.options.customer_code, order_number)
        data, _ = self._call("GET", self._url(self.options.cancel_path, query))
        answer = self._answer(data, f"the cancellation of {order_number}")
        if item_code:
            self.orders.cancelled(connector, item_code)
        return answer

    def quote(self, order: PostalOrder, weight_g: int = 0) -> int:
        """A price quote for ``order`` (whole đồng) — the call is UNSOURCED (profile value ``price_path``)."""
        if not self.options.price_path:
            raise PermanentDeliveryError("no price_path: VNPost's price quote has no public source; set the path")
        try:
            body = vp.price_body(vp.to_order(order), self.options, weight_g)
        except MappingError as exc:
            raise PermanentDeliveryError(f"no quote for {order.dossier_code}: {exc}") from None
        data, text = self._call("POST", self._url(self.options.price_path), json.dumps(body).encode())
        fee = data.get("TotalFee")
        if isinstance(fee, bool) or not isinstance(fee, int | float):
            raise TransientDeliveryError(f"VNPost's quote has no TotalFee: {text[:120]!r}")
        return int(fee)

    def tracking(self, last_id: str | None, page_size: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One tracking page after ``last_id`` (``None``: the first page) and the id to read the next one from."""
        query = vp.tracking_query(page_size or self.options.page_size, last_id)
        data, _ = self._call("GET", self._url(self.options.tracking_path, query))
        try:
            page = vp.tracking_page(data)
        except MappingError as exc:
            raise TransientDeliveryError(f"VNPost's tracking page is malformed: {exc}") from None
        return page.docs, vp.doc_id(page.docs[-1]) if page.docs else last_id

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        model = request.model
        draft = request.mapped("VNPost")
        if not isinstance(model, PostalOrder) or not isinstance(draft, vp.OrderDraft):
            raise PermanentDeliveryError(f"VNPost takes postal.order, not {request.message_type}")
        sent, item, answer = self._post(request.destination, model, draft, request.message_id)
        said = (
            "accepted before for this message (the order book): not posted again"
            if answer is None
            else f"Status {answer.status} {mask_ids(answer.message)[:80]}"
        )
        return DeliveryReceipt.for_body(
            f"order {model.direction.value} OrderNumber={model.dossier_code} ItemCode={item or '-'} "
            f"CODAmount={model.cod_amount} → {said}",
            sent,
        )

    def close(self) -> None:
        self._pool.clear()
