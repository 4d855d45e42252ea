"""The population database called directly over SOAP 1.1 (profile ``c06/direct``), with zeep from
``schemas/population-db.wsdl``: the WSDL describes the request as the sources build it and the reply as they read
it (PARTNER-FORMATS.md §2), so zeep writes the envelope and reads the reply; this adapter posts it (``text/xml``,
the WSDL's empty ``SOAPAction``) through the same pool and error classification as the LGSP route.

The reply is parsed leniently (``zeep.Settings(strict=False)`` and ``xs:all`` in the WSDL): members in any order,
elements no source names ignored (real replies carry some, TH-CDD:8-13). An empty ``Body`` is "not found" as FE
reads it (FE:481-489), before zeep is asked (it has no element to read then).

``DeliveryReceipt.sent`` is the envelope zeep wrote, as posted.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import zeep
import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from adapters.population_db import Officer, PopulationDbAdapter, read_envelope
from mappings.population_db import NAMESPACE, OPERATION, strip_none
from mappings.profiles import ProfileSettings

BINDING = f"{{{NAMESPACE}}}DanCuBinding"


def wsdl_path() -> str:
    return str(resources.files("schemas").joinpath("population-db.wsdl"))


class DirectPopulationDbAdapter(PopulationDbAdapter):
    """The population DB at one SOAP endpoint; the zeep client (WSDL parsed once) is shared between threads."""

    where = "the population DB"
    sent_type = "text/xml; charset=utf-8"

    def __init__(
        self, endpoint: str, settings: ProfileSettings, *, timeout_s: float = 10.0, max_connections: int = 8
    ) -> None:
        super().__init__(endpoint, settings, timeout_s=timeout_s, max_connections=max_connections)
        self.client = zeep.Client(wsdl_path(), settings=zeep.Settings(strict=False))
        self.service = self.client.create_service(BINDING, endpoint)
        self.operation = self.service._binding._operations[OPERATION]

    def envelope(self, request: dict[str, Any]) -> bytes:
        """The SOAP envelope zeep writes for ``request`` (the WSDL's element order)."""
        try:
            element = self.client.create_message(self.service, OPERATION, **request)
        except (zeep.exceptions.Error, TypeError, ValueError) as exc:
            raise PermanentDeliveryError(f"the request does not fit the WSDL: {type(exc).__name__}") from None
        return etree.tostring(element, xml_declaration=True, encoding="UTF-8")

    def exchange(self, request: dict[str, Any], officer: Officer) -> tuple[list[dict[str, Any]], bytes]:
        body = self.envelope(request)
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{self.operation.soapaction or ""}"'}
        status, data = self.post(self.endpoint, body, headers)
        envelope = read_envelope(status, data, self.where)
        if not self.citizens(envelope):  # the Body's shape checked; no CongDan (or an empty Body): not found
            return [], body
        try:
            reply = self.operation.process_reply(envelope)
        except (zeep.exceptions.Error, etree.LxmlError, IndexError, ValueError) as exc:
            raise TransientDeliveryError(f"{self.where} answered a malformed reply: {type(exc).__name__}") from None
        people = serialize_object(reply, dict) if reply is not None else []
        people = [people] if isinstance(people, dict) else list(people or [])
        return [strip_none(p) for p in people if isinstance(p, dict)], body
