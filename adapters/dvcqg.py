"""The real national portal (Cổng DVCQG), as the sources call it: profiles ``dvcqg/opencps`` and ``dvcqg/proxy``.

Every constant comes from the connector's profile values (``mappings.profiles``), so a new province's deviation
is a YAML edit; every behaviour cites ``PARTNER-FORMATS.md`` §1.

``dvcqg/opencps`` (``DvcqgOpenCpsAdapter``), as VietOpenCPS calls the portal:

- Headers on every call, login included: ``Accept``/``Content-Type: application/json``, ``Charset: utf-8``,
  ``dstcode`` (OC-DV:1102, 1690, 1863).
- Login: ``POST endpoint + auth_endpoint {username, password}`` → ``{session, error_code}``; no expiry is read,
  the token is kept and reused (OC-DV:1067-1072, 1087-1088, 1130). The sources never log in again; this adapter
  does so, once per call, only when a call's answer says the session is bad — HTTP 401 or 403, or an
  ``error_code`` listed in the profile's ``session_codes`` (unsourced, empty by default).
- Calls: ``POST endpoint + integration_endpoint`` with ``session``, ``madonvi``, ``service`` and the service's
  parameters at top level; only DongBoHoSoMC and CapNhatTienDoHoSoMC carry a ``data`` list (OC-DV:1670-1676,
  1988-1995).
- DongBoHoSoMC: ``TraCuuHoSo {mahoso}`` first; a non-empty ``result`` means the dossier is on the portal, so
  ``isUpdating`` is ``"True"`` (OC-DV:2124-2137). An insert refused with the profile's "already exists" answer
  (``already_exists_codes``/``already_exists_text``, TH-SS:497-510) is sent once more as an update: the lookup
  may lag an insert, or two syncs raced. ``MaDoiTuong`` left empty by the mapping is looked up with
  ``TraCuuTechID {provider, mstorcmnd}`` → ``result[0].TECHNICALID`` (OC-DV:2937-2953), only for a dossier of
  the profile's ``techid_channels`` (the online channel "2", TH-SS:275-278); else it stays ``""``.

``dvcqg/proxy`` (``DvcqgProxyAdapter``), as the Thanh Hóa code calls its provincial proxy: one URL per operation
(``insert_url``, ``update_url``, ``progress_url``), the body a bare JSON array of records, no session, the reply
``{error_code, message}`` (TH-SS:57-70; TH-SI:31-35); an insert answered with an ``already_exists_codes`` code
("3"/"-3") whose message contains ``already_exists_text`` ("đã tồn tại") is sent again to the update URL
(TH-SS:497-510).

Both: ``error_code`` is read as a string or a number (OC-DV:2142, 1130; OC-DV23:1577; TH-SI:33); the profile's
``error_code`` table says which codes mean success ("0", "00"). Any other code is the portal refusing: retried
when the profile lists it in ``transient_codes`` (no source lists any), else permanent. Only the record services
and login answer ``error_code``; lookups and the catalogue answer ``result`` only (OC-DV:1933-1944, 2937-2953),
so there a reply with ``result`` and no ``error_code`` is an answer. Any other reply that is not a JSON object
with an ``error_code`` is transient (a proxy or portal hiccup); HTTP 5xx/429 transient, other 4xx
permanent. ``DonViXuLy`` left empty by the mapping is the profile's ``unit_name``; ``TrangThaiHoSo`` and the progress
record's ``TrangThai`` go through the profile's ``status_map`` (per deployment, OC-DV:1220-1244, 507-524); a
synced dossier's reason for status 3, 7 or 8 goes after the text of the profile's ``status_reason_field``
(unsourced; ``GhiChu`` by default).

A supplement step (``mappings.dvcqg.DvcqgCalls``) is two calls in order, its progress record then the dossier's
refreshed ``DongBoHoSoMC`` record (as above); a refusal of either fails the delivery. No source says the portal
drops a progress record sent twice (unsourced: taken as kept twice), so a call it accepted is kept in the store
(``steps``: ``hub.store.delivery_steps``) and a retry or replay of the delivery sends only the calls left — the
refreshed record, read anew. The receipt still carries both bodies. Without ``steps`` (an adapter built outside a
hub process) a retry makes both calls again.
A supplement listed without ``TrangThaiBoSung`` gets the profile's ``supplement_requested_state`` or
``supplement_received_state`` (unsourced codes).

``DeliveryReceipt.sent`` is the body of the call that delivered, byte for byte, the session token read ``"***"``;
for two calls, both bodies, one per line (``application/x-ndjson``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from adapters.base import (
    AcceptedSteps,
    Adapter,
    DeliveryReceipt,
    OutboundRequest,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from adapters.http import classify_status, partner_pool, request_text
from hub.logs import mask_ids
from mappings.dvcqg import (
    KIND,
    REASON_FIELDS,
    SERVICE_LOOKUP,
    SERVICE_PROGRESS,
    SERVICE_SYNC,
    SERVICE_TECHID,
    DvcqgCall,
    DvcqgCalls,
    error_code_text,
    is_success,
    joined,
)
from mappings.profiles import ProfileSettings, ProfileValueError

log = logging.getLogger(__name__)

#: HTTP answers this adapter reads as "the session is bad" (no source says how the portal answers one).
SESSION_STATUSES = frozenset({401, 403})
_BLANKED_TOKEN = b'"***"'


class PortalRefusal(Exception):
    """The portal answered with an ``error_code`` other than success. Its message may echo a record's values:
    anything shaped like a personal ID is masked (it ends up in logs)."""

    def __init__(self, code: str, message: str) -> None:
        message = mask_ids(message)
        super().__init__(f"error_code {code}: {message}")
        self.code = code
        self.message = message


class LoginRefused(TransientDeliveryError):
    """The portal answered the login, refusing it (not a transport failure): transient for deliveries (the account
    may be fixed), reported as such by the catalogue. ``reason`` is the answer: ``error_code <code>: <message>``."""

    def __init__(self, username: str, reason: str) -> None:
        super().__init__(f"national portal login refused for {username!r}: {reason}")
        self.reason = reason


class SessionRejected(Exception):
    """A call's answer says the session is bad (HTTP 401/403 or a profile ``session_codes`` code)."""


def _codes(text: str) -> frozenset[str]:
    return frozenset(c.strip() for c in text.split(",") if c.strip())


def status_map(text: str) -> dict[str, str]:
    """The profile's ``status_map`` (``"5:9,6:9,8:9"``): hub status code → the deployment's TrangThaiHoSo
    (OC-DV:1220-1244; TH-SS:267-270). ``ProfileValueError`` for a pair that is not ``<code>:<code>``."""
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        hub_code, sep, portal_code = (part.strip() for part in item.partition(":"))
        if not sep or not hub_code or not portal_code:
            raise ProfileValueError(f"status_map: {item!r} is not <hub code>:<portal code>", ("status_map",))
        pairs[hub_code] = portal_code
    return pairs


def url_for(endpoint: str, value: str) -> str:
    """A profile's endpoint value as a URL: absolute as given, else a path after the connector's ``endpoint``."""
    if value.startswith(("http://", "https://")):
        return value
    if not value:
        return endpoint
    return endpoint.rstrip("/") + "/" + value.lstrip("/")


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


class _DvcqgAdapter(Adapter):
    """What both variants share: headers, the answer's ``error_code``, the refusal classification."""

    partner_format = KIND

    def __init__(
        self,
        endpoint: str,
        settings: ProfileSettings,
        *,
        timeout_s: float,
        max_connections: int,
        steps: AcceptedSteps | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self._steps = steps
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)
        success = settings.profile.codes.get("error_code")
        self._success: Mapping[str, str] = success.values if success else {"0": "success"}
        self._transient = _codes(settings.get("transient_codes", ""))
        self._status_map = status_map(settings.get("status_map", ""))
        self._reason_field = settings.get("status_reason_field", "")
        if self._reason_field and self._reason_field not in REASON_FIELDS:
            known = ", ".join(REASON_FIELDS)
            raise ProfileValueError(f"status_reason_field: {self._reason_field!r} is not one of {known}",
                                    ("status_reason_field",))  # fmt: skip
        self._exists_codes = _codes(settings.get("already_exists_codes", ""))
        self._exists_text = settings.get("already_exists_text", "")

    def headers(self) -> dict[str, str]:
        """Every call's headers (OC-DV:1102, 1690, 1863): JSON, ``Charset: utf-8`` and ``dstcode`` when set."""
        headers = {"Accept": "application/json", "Content-Type": "application/json", "Charset": "utf-8"}
        dstcode = self.settings.get("dstcode", "")
        if dstcode:
            headers["dstcode"] = dstcode
        return headers

    def _exchange(self, url: str, body: bytes, *, answers_result: bool = False) -> tuple[int, dict[str, Any]]:
        """POST ``body``; (HTTP status, the JSON answer with ``error_code`` as text). 401/403 are returned for the
        caller to decide; other HTTP errors and malformed replies raise. ``answers_result``: a lookup or catalogue
        call, whose answer is ``result`` only — the sources read nothing else there (OC-DV:1933-1944, 1988-1995,
        2937-2953) — so a reply with ``result`` and no ``error_code`` is an answer (its ``error_code`` ``None``)."""
        status, text = request_text(
            self._pool, "POST", url, where="the national portal", body=body, headers=self.headers()
        )
        if status in SESSION_STATUSES:
            return status, {}
        classify_status(status, text)  # raises on HTTP errors (5xx/429 transient, 4xx permanent)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise TransientDeliveryError(
                f"the national portal answered HTTP {status} with a malformed reply: {text[:120]!r}", status=status
            )
        code = error_code_text(answer.get("error_code"))
        if code is None and not (answers_result and "result" in answer and answer.get("error_code") is None):
            raise TransientDeliveryError(
                f"the national portal answered HTTP {status} with a malformed reply: {text[:120]!r}", status=status
            )
        return status, {**answer, "error_code": code}

    def succeeded(self, answer: Mapping[str, Any]) -> bool:
        """Whether ``answer`` is a success: its ``error_code`` means success, or it has none (a ``result``-only
        answer, taken by ``_exchange`` for lookups and catalogue calls only)."""
        code = answer.get("error_code")
        return code is None or is_success(str(code), self._success)

    def _already_exists(self, exc: PortalRefusal) -> bool:
        """An insert refused because the portal has the dossier: a profile ``already_exists_codes`` code ("3"/"-3")
        and a message containing ``already_exists_text`` ("đã tồn tại") (TH-SS:497-510)."""
        return exc.code in self._exists_codes and bool(self._exists_text) and self._exists_text in exc.message

    def _refused(self, service: str, dossier: str, exc: PortalRefusal) -> Exception:
        where = f"national portal refused {service} for {dossier}: {exc}"
        return TransientDeliveryError(where) if exc.code in self._transient else PermanentDeliveryError(where)

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        """Every call of ``request`` in order; of several, each but the last is kept once the portal accepts it, and
        skipped (its kept summary and bytes in the receipt) when an earlier attempt of the delivery had it accepted."""
        calls = self._unpacked(request)
        done: list[tuple[str, bytes]] = []
        for index, call in enumerate(calls):
            step = f"{index + 1}:{call[0]}"
            kept = self._accepted(request, step) if index < len(calls) - 1 else None
            if kept is not None:
                done.append((f"{kept[0]} (accepted on an earlier attempt: not sent again)", kept[1]))
                continue
            summary, sent = self._deliver_one(*call)
            if index < len(calls) - 1:
                self._keep(request, step, summary, sent)
            done.append((summary, sent))
        return self._receipt(done)

    def _deliver_one(self, service: str, code: str, record: dict[str, Any]) -> tuple[str, bytes]:
        """One call of the delivery, as the variant makes it: its summary and the bytes sent."""
        raise NotImplementedError

    def _accepted(self, request: OutboundRequest, step: str) -> tuple[str, bytes] | None:
        """What an earlier attempt of this delivery kept of ``step``. A store that cannot say is a transient failure:
        sending the call again could make the portal keep it twice."""
        if self._steps is None:
            return None
        try:
            return self._steps.done(request.sender, request.message_id, request.destination, step)
        except Exception as exc:  # the store's errors: the adapter does not import the store
            reason = f"cannot read whether {step} was accepted before: {type(exc).__name__}"
            raise TransientDeliveryError(reason) from None

    def _keep(self, request: OutboundRequest, step: str, summary: str, sent: bytes) -> None:
        """Keep that the portal accepted ``step``. Not kept (the store failing now): the delivery goes on, and only a
        retry of it would send the call again."""
        if self._steps is None:
            return
        try:
            self._steps.record(request.sender, request.message_id, request.destination, step, summary, sent)
        except Exception as exc:
            log.warning("message_id=%s destination=%s %s accepted, but not kept (%s): a retry would send it again",
                        request.message_id, request.destination, step, type(exc).__name__)  # fmt: skip

    def _unpacked(self, request: OutboundRequest) -> list[tuple[str, str, dict[str, Any]]]:
        """The mapped calls of ``request``, in order (one, or a supplement step's two, ``DvcqgCalls``): each
        one's service, the dossier code and the record (profile values filled)."""
        mapped = request.mapped("the national portal")
        calls = mapped.calls if isinstance(mapped, DvcqgCalls) else (mapped,)
        unpacked = []
        for call in calls:
            if not isinstance(call, DvcqgCall):
                raise PermanentDeliveryError(f"the national portal takes a DvcqgCall, not {type(call).__name__}")
            record = self._place_reason(call.record, call.status_reason)
            unpacked.append((call.service, str(record["MaHoSo"]), self._fill(record)))
        return unpacked

    @staticmethod
    def _summary(what: str, answer: Mapping[str, Any]) -> str:
        """What was done, the portal's code and its message (ids masked)."""
        return f"{what} error_code={answer['error_code']} {mask_ids(str(answer.get('message', '')))}".rstrip()

    @staticmethod
    def _receipt(done: list[tuple[str, bytes]]) -> DeliveryReceipt:
        """The receipt of the accepted calls: their summaries; the body of each, one per line when there are two
        (a supplement step: its progress record, then the dossier's record)."""
        summary = "; ".join(what for what, _ in done)
        if len(done) == 1:
            return DeliveryReceipt.for_body(summary, done[0][1])
        return DeliveryReceipt.for_body(summary, b"\n".join(sent for _, sent in done), "application/x-ndjson")

    def _place_reason(self, record: dict[str, Any], reason: str) -> dict[str, Any]:
        """The sync's reason (status 3, 7, 8) after the text of the profile's ``status_reason_field`` (unsourced:
        no source names the portal field for it; empty: not sent)."""
        if not reason or not self._reason_field:
            return record
        return {**record, self._reason_field: joined(str(record.get(self._reason_field) or ""), reason)}

    def _fill(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with what only the profile knows: ``DonViXuLy`` = the unit's name (OC-DV:222), the
        deployment's status code — the dossier record's ``TrangThaiHoSo`` and the progress record's ``TrangThai``
        through the same mapping, as OpenCPS maps both (OC-DV:1220-1244, 507-524)."""
        if "DonViXuLy" in record and not record["DonViXuLy"]:
            record = {**record, "DonViXuLy": self.settings.get("unit_name", "")}
        supplements = record.get("DanhSachHoSoBoSung")
        if isinstance(supplements, list) and any(not item.get("TrangThaiBoSung") for item in supplements):
            record = {**record, "DanhSachHoSoBoSung": [self._supplement_state(item) for item in supplements]}
        for key in ("TrangThaiHoSo", "TrangThai"):
            status = record.get(key)
            if isinstance(status, str) and status in self._status_map:
                record = {**record, key: self._status_map[status]}
        return record

    def _supplement_state(self, item: dict[str, Any]) -> dict[str, Any]:
        """A supplement without ``TrangThaiBoSung`` gets the profile's code for requested or received (no source
        lists the codes: ``supplement_requested_state``/``supplement_received_state``, unsourced)."""
        if item.get("TrangThaiBoSung"):
            return item
        key = "supplement_received_state" if item.get("NgayTiepNhanBoSung") else "supplement_requested_state"
        return {**item, "TrangThaiBoSung": self.settings.get(key, "")}

    def close(self) -> None:
        self._pool.clear()


class DvcqgOpenCpsAdapter(_DvcqgAdapter):
    """Profile ``dvcqg/opencps``: session API, one integration endpoint; safe to share between threads."""

    def __init__(
        self,
        endpoint: str,
        settings: ProfileSettings,
        *,
        username: str,
        password: str,
        timeout_s: float = 10.0,
        max_connections: int = 8,
        steps: AcceptedSteps | None = None,
    ) -> None:
        super().__init__(endpoint, settings, timeout_s=timeout_s, max_connections=max_connections, steps=steps)
        self.auth_url = url_for(endpoint, settings["auth_endpoint"])
        self.integration_url = url_for(endpoint, settings["integration_endpoint"])
        self.share_url = url_for(endpoint, settings["share_endpoint"])
        self.madonvi = settings["madonvi"]
        self._username = username
        self._password = password
        self._session_codes = _codes(settings.get("session_codes", ""))
        self._token: str | None = None
        self._lock = threading.Lock()
        self.logins = 0

    def __repr__(self) -> str:  # never the password or the session token
        return f"DvcqgOpenCpsAdapter({self.endpoint!r}, username={self._username!r})"

    # ------------------------------------------------------------ session

    def _login(self) -> str:
        """``{username, password}`` → ``{session, error_code}`` (OC-DV:1087-1088, 1130)."""
        status, answer = self._exchange(self.auth_url, _json({"username": self._username, "password": self._password}))
        token = answer.get("session")
        if status in SESSION_STATUSES or not self.succeeded(answer) or not isinstance(token, str) or not token:
            code = answer.get("error_code", f"HTTP {status}")
            raise LoginRefused(self._username, f"error_code {code}: {mask_ids(str(answer.get('message', '')))}")
        self.logins += 1
        return token

    def session(self) -> str:
        """The kept session token; logs in when there is none (the token has no expiry, OC-DV:1067-1072)."""
        with self._lock:
            if self._token is None:
                self._token = self._login()
            return self._token

    def _drop(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    # ------------------------------------------------------------ calls

    def request_body(self, service: str, params: Mapping[str, Any], token: str) -> dict[str, Any]:
        """A call's body: session, madonvi, service, then the parameters at top level (OC-DV:1670-1676)."""
        return {"session": token, "madonvi": self.madonvi, "service": service, **params}

    def call(
        self, service: str, params: Mapping[str, Any], *, url: str | None = None, answers_result: bool = False
    ) -> dict[str, Any]:
        """One portal call; the answer (success) or ``PortalRefusal``. ``answers_result``: a lookup or catalogue
        service, answered ``result`` without ``error_code`` (``_exchange``)."""
        return self._call(service, params, url=url, answers_result=answers_result)[0]

    def _call(
        self, service: str, params: Mapping[str, Any], *, url: str | None = None, answers_result: bool = False
    ) -> tuple[dict[str, Any], bytes]:
        for attempt in range(2):
            token = self.session()
            body = _json(self.request_body(service, params, token))
            try:
                status, answer = self._exchange(url or self.integration_url, body, answers_result=answers_result)
                if status in SESSION_STATUSES or answer.get("error_code") in self._session_codes:
                    raise SessionRejected(f"HTTP {status}" if not answer else f"error_code {answer['error_code']}")
            except SessionRejected as exc:
                self._drop(token)
                if attempt == 0:
                    continue
                raise TransientDeliveryError(f"the national portal refused a fresh session: {exc}") from None
            if not self.succeeded(answer):
                raise PortalRefusal(str(answer["error_code"]), str(answer.get("message", "")))
            # the same bytes, but for the token: a secret the log must not keep (it is the first member)
            return answer, body.replace(json.dumps(token).encode(), _BLANKED_TOKEN, 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def lookup(self, dossier_code: str) -> list[Any]:
        """``TraCuuHoSo {mahoso}`` (lower-case key) → its ``result`` array. OpenCPS reads only ``result``: anything
        but a non-empty one — an empty or missing ``result``, any ``error_code`` — means "not on the portal", and
        the record is inserted (OC-DV:1933-1944, 1988-1995, 2124-2137). Transport failures still raise."""
        try:
            answer = self.call(SERVICE_LOOKUP, {"mahoso": dossier_code}, answers_result=True)
        except PortalRefusal:
            return []
        result = answer.get("result")
        return result if isinstance(result, list) else []

    def tech_id(self, id_number: str) -> str:
        """The portal account (TechID) of the person with ``id_number``: ``TraCuuTechID {provider, mstorcmnd}``
        → ``result[0].TECHNICALID`` (OC-DV:2937-2953); ``""`` when the portal knows none or refuses."""
        params = {"provider": self.settings.get("techid_provider", "wso2is"), "mstorcmnd": id_number}
        try:
            answer = self.call(SERVICE_TECHID, params, answers_result=True)
        except PortalRefusal:
            return ""
        result = answer.get("result")
        first = result[0] if isinstance(result, list) and result else None
        found = first.get("TECHNICALID") if isinstance(first, dict) else None
        return str(found) if isinstance(found, str | int) and not isinstance(found, bool) else ""

    def _looks_up_tech_id(self, record: Mapping[str, Any]) -> bool:
        """Whether the applicant's portal account is looked up: the profile's ``techid_lookup`` is on and the
        dossier came through one of its ``techid_channels`` (TH: the online channel "2" only, TH-SS:275-278) — no
        personal ID goes to TraCuuTechID for any other channel."""
        channels = _codes(self.settings.get("techid_channels", "2"))
        return self.settings.get("techid_lookup", "1") == "1" and str(record.get("KenhThucHien", "")) in channels

    def _deliver_one(self, service: str, code: str, record: dict[str, Any]) -> tuple[str, bytes]:
        flag = ""
        try:
            if service == SERVICE_SYNC:
                if not record.get("MaDoiTuong") and record.get("SoGiayToChuHoSo") and self._looks_up_tech_id(record):
                    record = {**record, "MaDoiTuong": self.tech_id(str(record["SoGiayToChuHoSo"]))}
                updating = "True" if self.lookup(code) else "False"  # OC-DV:2124-2137
                flag = f" isUpdating={updating}"
                try:
                    answer, sent = self._call(service, {"isUpdating": updating, "data": [record]})
                except PortalRefusal as exc:
                    # TraCuuHoSo may lag an insert, or two syncs raced: the "already exists" answer turns the
                    # insert into an update, once (TH-SS:497-510, the profile's already_exists_* values)
                    if updating == "True" or not self._already_exists(exc):
                        raise
                    answer, sent = self._call(service, {"isUpdating": "True", "data": [record]})
                    flag = f" isUpdating=True (the insert answered: {exc.message})"
            else:
                answer, sent = self._call(service, {"data": [record]})
        except PortalRefusal as exc:
            raise self._refused(service, code, exc) from None
        return self._summary(service + flag, answer), sent


class DvcqgProxyAdapter(_DvcqgAdapter):
    """Profile ``dvcqg/proxy``: a provincial proxy, one URL per operation, bare JSON arrays, no session."""

    def __init__(
        self,
        endpoint: str,
        settings: ProfileSettings,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 8,
        steps: AcceptedSteps | None = None,
    ) -> None:
        super().__init__(endpoint, settings, timeout_s=timeout_s, max_connections=max_connections, steps=steps)
        self.insert_url = url_for(endpoint, settings["insert_url"])
        self.update_url = url_for(endpoint, settings["update_url"])
        self.progress_url = url_for(endpoint, settings["progress_url"])

    def __repr__(self) -> str:
        return f"DvcqgProxyAdapter({self.endpoint!r})"

    def _post(self, url: str, records: list[dict[str, Any]]) -> tuple[dict[str, Any], bytes]:
        body = _json(records)  # a bare JSON array (TH-SS:57-70)
        status, answer = self._exchange(url, body)
        if status in SESSION_STATUSES:
            raise PermanentDeliveryError(f"the national portal's proxy answered HTTP {status}", status=status)
        if not self.succeeded(answer):
            raise PortalRefusal(answer["error_code"], str(answer.get("message", "")))
        return answer, body

    def _deliver_one(self, service: str, code: str, record: dict[str, Any]) -> tuple[str, bytes]:
        how = ""
        try:
            if service == SERVICE_SYNC:
                try:
                    answer, sent = self._post(self.insert_url, [record])
                    how = " insert"
                except PortalRefusal as exc:
                    if not self._already_exists(exc):
                        raise
                    answer, sent = self._post(self.update_url, [record])
                    how = f" update (the insert answered: {exc.message})"
            elif service == SERVICE_PROGRESS:
                answer, sent = self._post(self.progress_url, [record])
            else:
                raise PermanentDeliveryError(f"the national portal's proxy has no URL for {service}")
        except PortalRefusal as exc:
            raise self._refused(service, code, exc) from None
        return self._summary(service + how, answer), sent
