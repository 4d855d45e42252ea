"""The national portal adapter (Cổng DVCQG): log in and call ``POST {adapter URL}`` with the record the worker
mapped (``OutboundRequest.payload``, a ``mappings.national_portal.PortalRecord``).

``DeliveryReceipt.sent`` is the JSON body of the call that succeeded exactly as posted, byte for byte, except
that the value of its ``"session"`` member (the token, a secret) reads ``"***"``; the message log keeps it
beside the hub-signed envelope.

- Session: ``POST {login URL} {username, password}`` → ``{session, expires_in}``; the token is cached and
  renewed shortly before it expires, or at once when the portal answers ``INVALID_SESSION`` (then the call is
  made again, once).
- ``DongBoHoSoMC``: a dossier not known to be on the portal is inserted (``isUpdating`` ``"False"``); when the
  portal answers "already exists" the same delivery switches to an update (``"True"``). Dossiers this adapter
  has synced are updated directly; an update the portal answers "not found" switches to an insert.
- Retry classification: timeouts, connection failures, HTTP 5xx/429, a reply that is not JSON, the portal's
  internal error, a failed login and a progress update for a dossier not yet on the portal →
  ``TransientDeliveryError``; validation errors and other refusals of the content, and HTTP 4xx →
  ``PermanentDeliveryError`` carrying the portal's code and message.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.credentials import RenewingToken
from adapters.http import classify_status, partner_pool, request_text
from hub.logs import mask_ids
from mappings.national_portal import (
    ALREADY_EXISTS,
    INTERNAL_ERROR,
    INVALID_SESSION,
    KIND,
    NOT_FOUND,
    OK,
    SERVICE_LOOKUP,
    SERVICE_PROGRESS,
    SERVICE_SYNC,
    PortalRecord,
)

#: Codes worth retrying later; any other non-zero code refuses the content.
TRANSIENT_CODES = frozenset({INTERNAL_ERROR})

KNOWN_DOSSIERS_KEPT = 10_000


class PortalError(Exception):
    """A non-zero ``error_code`` answer (raised inside the adapter, turned into a delivery error). The portal's
    message may echo a record's values: anything shaped like a personal ID is masked (it ends up in logs)."""

    def __init__(self, code: int, message: str, field: str | None = None) -> None:
        message = mask_ids(message)
        super().__init__(f"error_code {code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field


class NationalPortalAdapter(Adapter):
    """One national portal endpoint; safe to share between the worker's threads.

    ``endpoint`` is the portal's adapter URL (every call is POSTed there); ``login_url`` defaults to ``login``
    next to it. ``madonvi`` is the calling unit's code; by default the agency code that prefixes each dossier code.
    """

    partner_format = KIND

    def __init__(
        self,
        endpoint: str,
        *,
        username: str,
        password: str,
        madonvi: str | None = None,
        login_url: str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 8,
        renew_margin_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.login_url = login_url or urljoin(endpoint, "login")
        self.madonvi = madonvi
        self._username = username
        self._password = password
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)
        self._session = RenewingToken(self._login, renew_margin_s=renew_margin_s, clock=clock)
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_lock = threading.Lock()

    def __repr__(self) -> str:  # never the password or the session token
        return f"NationalPortalAdapter({self.endpoint!r}, username={self._username!r})"

    # ------------------------------------------------------------ HTTP

    def _post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._exchange(url, _json(payload))

    def _exchange(self, url: str, body: bytes) -> dict[str, Any]:
        status, text = request_text(
            self._pool, "POST", url, where=f"the national portal at {url}", body=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )  # fmt: skip
        classify_status(status, text)  # raises on HTTP errors (5xx/429 transient, 4xx permanent)
        try:
            answer = json.loads(text)
            if not isinstance(answer, dict) or not isinstance(answer.get("error_code"), int):
                raise ValueError("no error_code")
        except ValueError:
            raise TransientDeliveryError(
                f"the national portal answered HTTP {status} with a malformed reply: {text[:120]!r}",
                status=status,
            ) from None
        return answer

    # ------------------------------------------------------------ session

    @property
    def logins(self) -> int:
        return self._session.fetched

    def _login(self) -> tuple[str, float]:
        answer = self._post(self.login_url, {"username": self._username, "password": self._password})
        token = answer.get("session")
        if answer["error_code"] != OK or not isinstance(token, str) or not token:
            raise TransientDeliveryError(
                f"national portal login refused for {self._username!r}: error_code {answer['error_code']}: "
                f"{answer.get('message', '')}"
            )
        expires_in = answer.get("expires_in")
        ttl = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 600.0
        return token, ttl

    def session(self) -> str:
        """The cached session token, logging in first when there is none or it is about to expire."""
        return self._session.get()

    # ------------------------------------------------------------ calls

    def call(self, service: str, data: Any, *, madonvi: str, is_updating: bool | None = None) -> dict[str, Any]:
        """One portal call with session handling; returns the answer (``error_code`` 0) or raises ``PortalError``
        (the portal's refusal) or a delivery error (transport)."""
        return self._call(service, data, madonvi=madonvi, is_updating=is_updating)[0]

    def _call(
        self, service: str, data: Any, *, madonvi: str, is_updating: bool | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """``call``, and the body that got that answer exactly as posted, its session token blanked out."""
        request = portal_request(service, data, madonvi=madonvi, is_updating=is_updating)
        for attempt in range(2):
            token = self.session()
            body = _json({"session": token, **request})
            answer = self._exchange(self.endpoint, body)
            if answer["error_code"] == INVALID_SESSION and attempt == 0:
                self._session.drop(token)
                continue
            break
        code = answer["error_code"]
        if code == INVALID_SESSION:
            raise TransientDeliveryError("the national portal refused a fresh session: " + str(answer.get("message")))
        if code != OK:
            raise PortalError(code, str(answer.get("message", "")), answer.get("field"))
        # The same bytes, but for the token: a secret the log must not keep (it stays the first member).
        return answer, body.replace(json.dumps(token).encode(), _BLANKED_TOKEN, 1)

    def lookup(self, dossier_code: str, *, madonvi: str | None = None) -> dict[str, Any] | None:
        """``TraCuuHoSo``: the portal's record of a dossier (with its progress), or ``None`` if it has none."""
        try:
            answer = self.call(SERVICE_LOOKUP, {"MaHoSo": dossier_code}, madonvi=madonvi or _unit_of(dossier_code))
        except PortalError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise PermanentDeliveryError(f"national portal refused {SERVICE_LOOKUP}: {exc}") from None
        return answer.get("data")

    def _known_dossier(self, code: str) -> bool:
        with self._known_lock:
            return code in self._known

    def _remember(self, code: str) -> None:
        with self._known_lock:
            self._known[code] = None
            self._known.move_to_end(code)
            while len(self._known) > KNOWN_DOSSIERS_KEPT:
                self._known.popitem(last=False)

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        mapped = request.mapped("the national portal")
        if not isinstance(mapped, PortalRecord):
            raise PermanentDeliveryError(f"the national portal takes a PortalRecord, not {type(mapped).__name__}")
        service, record = mapped
        code = record["MaHoSo"]
        madonvi = self.madonvi or _unit_of(code)
        updating: bool | None = None
        switched = ""
        try:
            if service == SERVICE_SYNC:
                updating = self._known_dossier(code)
                try:
                    answer, sent = self._call(service, [record], madonvi=madonvi, is_updating=updating)
                except PortalError as exc:
                    if (exc.code, updating) not in ((ALREADY_EXISTS, False), (NOT_FOUND, True)):
                        raise
                    switched = f" (switched from {'update' if updating else 'insert'}: {exc.message})"
                    updating = not updating
                    answer, sent = self._call(service, [record], madonvi=madonvi, is_updating=updating)
                self._remember(code)
            else:
                answer, sent = self._call(service, [record], madonvi=madonvi)
        except PortalError as exc:
            where = f"national portal refused {service} for {code}: {exc}"
            if exc.code in TRANSIENT_CODES or (service == SERVICE_PROGRESS and exc.code == NOT_FOUND):
                raise TransientDeliveryError(where) from None
            raise PermanentDeliveryError(where) from None
        flag = "" if updating is None else f" isUpdating={'True' if updating else 'False'}"
        return DeliveryReceipt.for_body(f"{service}{flag} error_code=0 {answer.get('message', '')}{switched}", sent)

    def close(self) -> None:
        self._pool.clear()


_BLANKED_TOKEN = b'"***"'  # what the message log keeps in place of the session token


def portal_request(service: str, data: Any, *, madonvi: str, is_updating: bool | None = None) -> dict[str, Any]:
    """A portal call's body without its session token."""
    request: dict[str, Any] = {"madonvi": madonvi, "service": service}
    if is_updating is not None:
        request["isUpdating"] = "True" if is_updating else "False"
    request["data"] = data
    return request


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def _unit_of(dossier_code: str) -> str:
    """The agency code a dossier code starts with (``<agency code>-<YYMMDD>-<NNNN>``)."""
    return dossier_code.rsplit("-", 2)[0]
