"""The population database adapter (CSDL quốc gia về dân cư, SOAP): a zeep client built once from
``schemas/population-db.wsdl`` with its service address set to the connector's endpoint.

``lookup(CitizenLookup)`` maps the canonical request (``mappings.population_db.to_request``), calls
``TraCuuThongTinCongDan`` and maps the reply to a ``CitizenRecord``; the hub answers lookups synchronously
(``hub.flows.lookups``), so this is the path that matters. ``deliver`` sends the request the worker mapped from a
queued ``citizen.lookup`` (``mappings.population_db.to_request``) with the hub's integration code filled in; its
``sent`` is the SOAP envelope exactly as posted (captured where zeep serialises it, ``Transport.post_xml``).

Retry classification: timeouts (``LookupTimeoutError``), connection failures, HTTP 5xx/429, a ``soap:Server``
fault and a reply that is not SOAP → ``TransientDeliveryError``; a ``soap:Client`` fault, HTTP 4xx and a reply
that cannot be mapped → ``PermanentDeliveryError``. Messages are masked (they may echo a personal ID).
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from typing import Any

import requests
import zeep
import zeep.exceptions
from zeep.helpers import serialize_object
from zeep.transports import Transport
from zeep.wsdl.utils import etree_to_string

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.http import RETRYABLE_STATUS
from hub.errors import MappingError
from hub.logs import mask_ids
from hub.packets.citizen import CitizenLookup, CitizenRecord
from mappings.population_db import KIND, NAMESPACE, OPERATION, from_reply, strip_none, to_request

BINDING = f"{{{NAMESPACE}}}DanCuBinding"
DEFAULT_INTEGRATION_CODE = "LIENTHONG"


class LookupTimeoutError(TransientDeliveryError):
    """The population DB did not answer within the timeout."""


class _RecordingTransport(Transport):
    """zeep's transport, keeping the SOAP envelope it last posted from each thread (zeep's documented hook for
    the serialisation of a request), so the message log gets the exact bytes that left the hub."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._sent = threading.local()

    def post_xml(self, address: str, envelope: Any, headers: dict[str, str]) -> Any:
        message = etree_to_string(envelope)
        self._sent.message = message
        return self.post(address, message, headers)

    def last_sent(self) -> bytes:
        """The envelope this thread posted last (b"" before any)."""
        return getattr(self._sent, "message", b"")


def wsdl_path() -> str:
    return str(resources.files("schemas").joinpath("population-db.wsdl"))


class PopulationDbAdapter(Adapter):
    """One population DB endpoint; the zeep client (WSDL parsed once) is shared between threads."""

    partner_format = KIND

    def __init__(
        self,
        endpoint: str,
        *,
        integration_code: str = DEFAULT_INTEGRATION_CODE,
        timeout_s: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        self.endpoint = endpoint
        self.integration_code = integration_code
        self.timeout_s = timeout_s
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max_connections, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._transport = _RecordingTransport(session=session, timeout=timeout_s, operation_timeout=timeout_s)
        self.client = zeep.Client(wsdl_path(), transport=self._transport)
        self.service = self.client.create_service(BINDING, endpoint)

    def __repr__(self) -> str:
        return f"PopulationDbAdapter({self.endpoint!r})"

    # ------------------------------------------------------------ the call

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """``TraCuuThongTinCongDan`` with ``request``; the reply as a plain dict, or a delivery error."""
        where = f"the population DB at {self.endpoint}"
        try:
            reply = getattr(self.service, OPERATION)(**request)
        except requests.Timeout:
            raise LookupTimeoutError(f"{where} did not answer within {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}") from None
        except zeep.exceptions.Fault as exc:
            code = str(exc.code or "")
            message = mask_ids(f"{where} answered a SOAP fault {code}: {exc.message}")
            if code.endswith("Client"):
                raise PermanentDeliveryError(message, status=500) from None
            raise TransientDeliveryError(message, status=500) from None
        except zeep.exceptions.TransportError as exc:
            detail = f"{where} answered HTTP {exc.status_code}"
            if 200 <= exc.status_code < 300:
                raise TransientDeliveryError(f"{where} answered a malformed reply (HTTP {exc.status_code})") from None
            if exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500:
                raise TransientDeliveryError(detail, status=exc.status_code) from None
            raise PermanentDeliveryError(detail, status=exc.status_code) from None
        except (zeep.exceptions.Error, ValueError) as exc:  # XMLSyntaxError, unexpected elements, …
            raise TransientDeliveryError(f"{where} answered a malformed reply: {type(exc).__name__}") from None
        return strip_none(json.loads(json.dumps(serialize_object(reply, dict), default=str)))

    def lookup(self, lookup: CitizenLookup) -> CitizenRecord:
        """Map, call, map back; raises a delivery error (see the module's classification)."""
        return self._answer(lookup, self.call(to_request(lookup, integration_code=self.integration_code)))

    def _answer(self, lookup: CitizenLookup, reply: dict[str, Any]) -> CitizenRecord:
        """The reply mapped back, checked to answer ``lookup``."""
        try:
            record = from_reply(reply)
        except MappingError as exc:
            raise PermanentDeliveryError(mask_ids(f"cannot map the population DB's reply: {exc}")) from None
        if record.request_id != lookup.request_id:
            raise PermanentDeliveryError(
                f"the population DB answered request {record.request_id}, not {lookup.request_id}"
            )
        return record

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        model = request.model
        mapped = request.mapped("the population DB")
        if not isinstance(model, CitizenLookup) or not isinstance(mapped, dict):
            raise PermanentDeliveryError(f"the population DB takes citizen.lookup, not {request.message_type}")
        record = self._answer(model, self.call({**mapped, "MaTichHop": self.integration_code}))
        sent = self._transport.last_sent()
        return DeliveryReceipt.for_body(f"{OPERATION} result={record.result.value}", sent, "text/xml; charset=utf-8")

    def close(self) -> None:
        self._transport.session.close()
