"""The population database (CSDL quốc gia về dân cư, C06): what both of its connector profiles share.

``c06/lgsp`` (``adapters.population_db_lgsp``, through the provincial LGSP gateway, as the sources reach it) and
``c06/direct`` (``adapters.population_db_direct``, SOAP with zeep from ``schemas/population-db.wsdl``) differ in
how the SOAP envelope travels; the request and the reply are the same (``mappings.population_db``,
PARTNER-FORMATS.md §2). ``population_db_adapter`` picks one from the connector's profile (no profile: ``c06/direct``
with its sourced defaults).

``lookup(CitizenLookup)`` maps the lookup with the connector's profile values and officer table, calls
``TraCuuThongTinCongDan`` and maps the reply to a ``citizen.record`` (``not_found`` when it holds no ``CongDan``);
the hub answers lookups synchronously (``hub.flows.lookups``), so this is the path that matters. ``deliver`` does the
same for a queued ``citizen.lookup``; its ``sent`` is the SOAP envelope exactly as posted.

Officers (profile value ``officers_file``, OC-QL2:96-125, 180-188): a JSON file mapping the hub's officer ids to
``{"MaCanBo": …, "keyName": …, "keyPass": …}``; ``MaCanBo`` is sent for the officer and, through the LGSP, the
``AuthHash`` header = Base64 of ``keyName:keyPass`` (OC-API@49227ecd:553). An officer the file does not list is
refused (OpenCPS refuses an unmapped officer, OC-QL2:180-188). Without the file ``MaCanBo`` is the officer id.

Retry classification (no C06 error list is public, PARTNER-FORMATS §2): timeouts (``LookupTimeoutError``),
connection failures, HTTP 5xx/429, a ``soap:Server`` fault and a reply that is not a SOAP envelope are transient;
a ``soap:Client`` fault, other HTTP 4xx and a reply that cannot be mapped are permanent; a token the LGSP refuses
is ``TokenRefusedError`` (transient: the credentials may be fixed). Messages are masked (they may echo an ID).
"""

from __future__ import annotations

import base64
import json
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.http import RETRYABLE_STATUS, partner_pool
from hub.errors import LienthongError, MappingError
from hub.logs import mask_ids
from hub.packets.citizen import CitizenLookup, CitizenRecord
from hub.xmlparse import parse_xml
from mappings.population_db import KIND, OPERATION, RequestOptions, from_reply, reply_citizens, soap_fault, to_request
from mappings.profiles import ProfileSettings, ProfileValueError

DEFAULT_PROFILE = "c06/direct"


class LookupTimeoutError(TransientDeliveryError):
    """The population DB did not answer within the timeout."""


class TokenRefusedError(TransientDeliveryError):
    """The LGSP refused to issue a token, or refused the one it issued: its credentials or ``lgspaccesstoken``
    values need fixing (transient: they may be fixed while the message waits)."""


@dataclass(frozen=True, slots=True)
class Officer:
    """An officer as the population DB knows them: ``MaCanBo`` and the ``AuthHash`` header (``None``: not sent)."""

    code: str
    auth_hash: str | None = None

    def __repr__(self) -> str:  # the hash is a credential
        return f"Officer({self.code!r})"


def load_officers(path: str) -> dict[str, Officer] | None:
    """The profile's ``officers_file`` (``None`` when unset): officer id → ``Officer``; ``ProfileValueError`` when it
    cannot be read or an entry lacks ``MaCanBo``."""
    if not path.strip():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileValueError(f"officers_file: cannot read {path}: {exc}", ("officers_file",)) from None
    if not isinstance(data, Mapping):
        raise ProfileValueError("officers_file: must hold an object {officerId: {MaCanBo, keyName, keyPass}}",
                                ("officers_file",))  # fmt: skip
    officers: dict[str, Officer] = {}
    for officer_id, entry in data.items():
        code = entry.get("MaCanBo") if isinstance(entry, Mapping) else None
        if not isinstance(code, str) or not code.strip():
            raise ProfileValueError(f"officers_file: officer {officer_id!r} has no MaCanBo", ("officers_file",))
        name, password = entry.get("keyName"), entry.get("keyPass")
        auth_hash = None
        if name and password:  # OC-QL2:116-121: Base64("keyName:keyPass")
            auth_hash = base64.b64encode(f"{name}:{password}".encode()).decode("ascii")
        officers[str(officer_id)] = Officer(code.strip(), auth_hash)
    return officers


def read_envelope(status: int, data: bytes, where: str) -> etree._Element:
    """The SOAP envelope of an answer, or the delivery error it means: a fault by its code (``Client`` permanent,
    else transient), then the HTTP status (5xx/429 transient, other 4xx permanent), a 2xx that is no XML transient."""
    try:
        envelope: etree._Element | None = parse_xml(data)
    except LienthongError:
        envelope = None
    fault = soap_fault(envelope) if envelope is not None else None
    if fault is not None:
        code, text = fault
        message = mask_ids(f"{where} answered a SOAP fault {code}: {text}")
        if code.endswith("Client"):
            raise PermanentDeliveryError(message, status=status)
        raise TransientDeliveryError(message, status=status)
    if not 200 <= status < 300:
        detail = mask_ids(f"{where} answered HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
        if status in RETRYABLE_STATUS or status >= 500:
            raise TransientDeliveryError(detail, status=status)
        raise PermanentDeliveryError(detail, status=status)
    if envelope is None:
        raise TransientDeliveryError(f"{where} answered HTTP {status} with a reply that is not XML", status=status)
    return envelope


class PopulationDbAdapter(Adapter):
    """One population DB connector: the request mapped with its profile's values, the reply read as sourced; the
    transport (``exchange``) is the profile's. Safe to share between threads."""

    partner_format = KIND
    where = "the population DB"
    sent_type = "application/xml"  # the media type the envelope is posted as

    def __init__(self, endpoint: str, settings: ProfileSettings, *, timeout_s: float, max_connections: int) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.timeout_s = timeout_s
        self.options = RequestOptions.from_profile(settings)
        self.officers = load_officers(settings.get("officers_file", ""))
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r}, {self.settings.profile.ref})"

    # ------------------------------------------------------------ the call

    def officer(self, officer_id: str) -> Officer:
        """The officer as the population DB knows them (the profile's officer table, else their id)."""
        if self.officers is None:
            return Officer(officer_id)
        found = self.officers.get(officer_id)
        if found is None:
            raise PermanentDeliveryError(f"officer {officer_id} has no MaCanBo in the connector's officers_file")
        return found

    def request_for(self, lookup: CitizenLookup) -> tuple[dict[str, Any], Officer]:
        """The request the connector sends for ``lookup`` and the officer it is sent for."""
        officer = self.officer(lookup.officer_id)
        try:
            return to_request(lookup, self.options, officer_code=officer.code), officer
        except MappingError as exc:
            raise PermanentDeliveryError(mask_ids(f"cannot map the lookup for {self.where}: {exc}")) from None

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """One POST: (HTTP status, body); a timeout is ``LookupTimeoutError``, an unreachable partner transient."""
        try:
            response = self._pool.request("POST", url, body=body, headers=dict(headers))
        except Urllib3Timeout:
            raise LookupTimeoutError(f"{self.where} did not answer within {self.timeout_s:g} s") from None
        except Urllib3Error as exc:
            raise TransientDeliveryError(f"cannot reach {self.where}: {type(exc).__name__}") from None
        return response.status, response.data

    @abstractmethod
    def exchange(self, request: dict[str, Any], officer: Officer) -> tuple[list[dict[str, Any]], bytes]:
        """Send ``request`` for ``officer``: the reply's ``CongDan`` elements and the body exactly as posted."""

    def citizens(self, envelope: etree._Element) -> list[dict[str, Any]]:
        """The ``CongDan`` elements of a reply envelope (a reply that is no sourced reply: permanent)."""
        try:
            return reply_citizens(envelope)
        except MappingError as exc:
            raise PermanentDeliveryError(mask_ids(f"cannot read {self.where}'s reply: {exc}")) from None

    def _answer(self, lookup: CitizenLookup) -> tuple[CitizenRecord, bytes]:
        request, officer = self.request_for(lookup)
        citizens, sent = self.exchange(request, officer)
        try:
            return from_reply(citizens, lookup), sent
        except MappingError as exc:
            raise PermanentDeliveryError(mask_ids(f"cannot map {self.where}'s reply: {exc}")) from None

    def lookup(self, lookup: CitizenLookup) -> CitizenRecord:
        """Map, call, map back; raises a delivery error (see the module's classification)."""
        return self._answer(lookup)[0]

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        """A queued ``citizen.lookup``: the worker mapped it with the sourced defaults (``request.payload``); it is
        mapped again from the same packet with this connector's profile values and officer before it is sent."""
        request.mapped(self.where)
        model = request.model
        if not isinstance(model, CitizenLookup):
            raise PermanentDeliveryError(f"{self.where} takes citizen.lookup, not {request.message_type}")
        record, sent = self._answer(model)
        return DeliveryReceipt.for_body(f"{OPERATION} result={record.result.value}", sent, self.sent_type)

    def close(self) -> None:
        self._pool.clear()


def population_db_adapter(
    endpoint: str,
    settings: ProfileSettings,
    *,
    credentials: Any = None,
    timeout_s: float,
    max_connections: int,
) -> PopulationDbAdapter:
    """The adapter of a population DB connector's profile (``c06/lgsp``: ``credentials`` = the LGSP's AccessKey as
    ``username`` and SecretKey as ``password``). ``ProfileValueError`` for values it cannot use, ``ValueError`` for
    a profile that is not a population DB one."""
    name = settings.profile.name
    if name == "c06/lgsp":
        from adapters.population_db_lgsp import LgspPopulationDbAdapter

        if credentials is None:
            raise ProfileValueError(
                "c06/lgsp needs endpoint.credentials: the LGSP's AccessKey (username) and SecretKey (password)",
                ("credentials",),
            )
        return LgspPopulationDbAdapter(
            endpoint, settings, access_key=credentials.username, secret_key=credentials.password.get_secret_value(),
            timeout_s=timeout_s, max_connections=max_connections,
        )  # fmt: skip
    if name == "c06/direct":
        from adapters.population_db_direct import DirectPopulationDbAdapter

        return DirectPopulationDbAdapter(endpoint, settings, timeout_s=timeout_s, max_connections=max_connections)
    raise ValueError(f"{settings.profile.ref} is not a population DB profile")


__all__ = [
    "DEFAULT_PROFILE",
    "LookupTimeoutError",
    "Officer",
    "PopulationDbAdapter",
    "TokenRefusedError",
    "population_db_adapter",
    "read_envelope",
]
