"""The SOAP 1.1 entry for legacy ministry software: ``POST /soap/exchange``, WSDL at ``GET /soap/exchange?wsdl``.

Document/literal, described by ``schemas/exchange.wsdl``. ``SubmitEnvelope`` carries the signed hub envelope as
base64 (the exact signed bytes, untouched by the SOAP toolkit) and feeds the same pipeline as
``POST /api/v1/messages``; ``GetMessageStatus`` answers a message's status and trace summary. The API key is the
``ApiKey`` SOAP header (within the first 64 KiB) or the HTTP ``X-Api-Key`` header, checked before the request is
parsed; requests are then parsed with the hardened parser. Errors are
SOAP faults (HTTP 500 as SOAP 1.1 requires): ``soap:Client`` for refused requests, ``soap:Server`` for hub
failures, with ``detail/Problem`` holding the HTTP-equivalent status, the message id and every {path, rule, message}.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from lxml import etree

from hub.api.dependencies import hub_of
from hub.api.problems import STORE_DOWN, ApiProblem, from_rejection, store_unavailable
from hub.config import Settings
from hub.errors import Issue, RejectedError
from hub.services import Caller, HubService
from hub.xmlparse import XmlLimits, make_parser, make_pull_parser, parse_xml

log = logging.getLogger(__name__)

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
EX_NS = "urn:lienthong:exchange:1"
_S = f"{{{SOAP_NS}}}"
_X = f"{{{EX_NS}}}"
SOAP_PATH = "/soap/exchange"
SOAP_MEDIA_TYPE = "text/xml; charset=utf-8"
KEY_PEEK_BYTES = 64 * 1024  # a SOAP header ApiKey further into the request than this is not looked for
PEEK_SLICE_BYTES = 2048

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def wsdl_template() -> bytes:
    return resources.files("schemas").joinpath("exchange.wsdl").read_bytes()


def wsdl_for(location: str) -> bytes:
    """The WSDL with its ``soap:address`` pointing at ``location``."""
    root = etree.fromstring(wsdl_template(), parser=make_parser())
    for address in root.iter(f"{{{WSDL_SOAP_NS}}}address"):
        address.set("location", location)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _soap_envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(f"{_S}Envelope", nsmap={"soap": SOAP_NS, "ex": EX_NS})
    etree.SubElement(envelope, f"{_S}Body").append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _text(parent: etree._Element, name: str, value: object) -> None:
    etree.SubElement(parent, f"{_X}{name}").text = str(value)


def fault(problem: ApiProblem) -> Response:
    """A SOAP 1.1 fault for a problem: soap:Client for refusals (4xx), soap:Server otherwise."""
    client = problem.status < 500
    el = etree.Element(f"{_S}Fault", nsmap={"soap": SOAP_NS})
    etree.SubElement(el, "faultcode").text = "soap:Client" if client else "soap:Server"
    etree.SubElement(el, "faultstring").text = problem.detail
    detail = etree.SubElement(el, "detail")
    body = etree.SubElement(detail, f"{_X}Problem", nsmap={"ex": EX_NS})
    _text(body, "Status", problem.status)
    _text(body, "Title", problem.title)
    if problem.message_id:
        _text(body, "MessageId", problem.message_id)
    for issue in problem.errors:
        error = etree.SubElement(body, f"{_X}Error")
        _text(error, "Path", issue.path)
        _text(error, "Rule", issue.rule)
        _text(error, "Message", issue.message)
    return Response(_soap_envelope(el), status_code=500, media_type=SOAP_MEDIA_TYPE, headers=problem.headers)


def _iso(value: datetime) -> str:
    return value.isoformat()


def _submit(hub: HubService, caller: Caller, operation: etree._Element) -> etree._Element:
    encoded = operation.findtext(f"{_X}SignedEnvelope")
    if encoded is None:
        raise ApiProblem(
            "malformed",
            "SubmitEnvelopeRequest needs a SignedEnvelope element",
            [Issue("/Body/SubmitEnvelopeRequest/SignedEnvelope", "soap-request", "missing")],
        )
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiProblem(
            "malformed",
            "SignedEnvelope is not valid base64",
            [Issue("/Body/SubmitEnvelopeRequest/SignedEnvelope", "base64", "not valid base64")],
        ) from None
    accepted = hub.submit(caller, data, "soap")
    out = etree.Element(f"{_X}SubmitEnvelopeResponse", nsmap={"ex": EX_NS})
    _text(out, "MessageId", accepted.message_id)
    _text(out, "Status", accepted.status)
    _text(out, "Duplicate", "true" if accepted.duplicate else "false")
    for destination in accepted.destinations:
        _text(out, "Destination", destination)
    return out


def _status(hub: HubService, caller: Caller, operation: etree._Element) -> etree._Element:
    message_id = (operation.findtext(f"{_X}MessageId") or "").strip()
    if not message_id:
        raise ApiProblem(
            "malformed",
            "GetMessageStatusRequest needs a MessageId",
            [Issue("/Body/GetMessageStatusRequest/MessageId", "soap-request", "missing")],
        )
    trace = hub.store.trace(message_id, None if caller.is_staff else caller.code)
    if trace is None:
        raise ApiProblem(
            "not-found",
            f"no message {message_id} is known",
            [Issue("/Body/GetMessageStatusRequest/MessageId", "unknown-message", "unknown message id")],
            message_id=message_id,
        )
    out = etree.Element(f"{_X}GetMessageStatusResponse", nsmap={"ex": EX_NS})
    _text(out, "MessageId", trace.message_id)
    _text(out, "Sender", trace.sender)
    _text(out, "MessageType", trace.message_type)
    if trace.dossier_code:
        _text(out, "DossierCode", trace.dossier_code)
    _text(out, "ReceivedAt", _iso(trace.received_at))
    _text(out, "Status", trace.status)
    for d in trace.deliveries:
        el = etree.SubElement(out, f"{_X}Delivery")
        _text(el, "Destination", d.destination)
        _text(el, "State", d.state.value)
        _text(el, "Attempts", d.attempts)
        if d.last_error:
            _text(el, "LastError", d.last_error)
        if d.delivered_at:
            _text(el, "DeliveredAt", _iso(d.delivered_at))
    for e in trace.events:
        el = etree.SubElement(out, f"{_X}Event")
        _text(el, "State", e.state)
        _text(el, "At", _iso(e.at))
        if e.destination:
            _text(el, "Destination", e.destination)
        if e.attempt is not None:
            _text(el, "Attempt", e.attempt)
        if e.detail:
            _text(el, "Detail", e.detail)
    return out


OPERATIONS = {f"{_X}SubmitEnvelopeRequest": _submit, f"{_X}GetMessageStatusRequest": _status}


def soap_body_limit(settings: Settings) -> int:
    """The largest SOAP request: base64 grows the envelope by 4/3; room is left for the SOAP wrapping."""
    return settings.max_message_bytes * 4 // 3 + 64 * 1024


class KeyPeek:
    """Finds the ``soap:Header/ex:ApiKey`` of a request as its body streams in, so that the caller is
    authenticated before the document is parsed (an unauthenticated request costs at most ``KEY_PEEK_BYTES``
    of incremental parsing, and its tree is never built)."""

    def __init__(self) -> None:
        self._parser: etree.XMLPullParser | None = make_pull_parser()
        self._seen = 0
        self._depth = 0
        self.key: str | None = None
        self.done = False

    def feed(self, chunk: bytes) -> bool:
        """Read one more chunk; True once the key is found or known to be absent (then feed no more)."""
        parser = self._parser
        if parser is None:  # decided already
            return True
        view = memoryview(chunk)
        while not self.done and view and self._seen < KEY_PEEK_BYTES:
            # Small slices: the parser stops soon after the header, not at the end of whatever arrived.
            part, view = view[: min(PEEK_SLICE_BYTES, KEY_PEEK_BYTES - self._seen)], view[PEEK_SLICE_BYTES:]
            self._seen += len(part)
            try:
                parser.feed(bytes(part))
                self.done = any(self._decides(event, el) for event, el in parser.read_events())
            except etree.XMLSyntaxError:  # the full parse, once authenticated, names the fault
                self.done = True
        self.done = self.done or self._seen >= KEY_PEEK_BYTES
        if self.done:
            self._parser = None  # drop the partial tree now
        return self.done

    def _decides(self, event: str, el: etree._Element) -> bool:
        if event == "start":
            self._depth += 1
            if self._depth == 1:  # anything but a SOAP envelope has no SOAP header
                return el.tag != f"{_S}Envelope"
            return self._depth == 2 and el.tag == f"{_S}Body"
        self._depth -= 1
        parent = el.getparent()
        if self._depth == 2 and el.tag == f"{_X}ApiKey" and parent is not None and parent.tag == f"{_S}Header":
            self.key = el.text or ""
            return True
        return self._depth == 1 and el.tag == f"{_S}Header"


async def authenticated_body(request: Request, hub: HubService) -> tuple[Caller, bytes]:
    """The caller (SOAP header ApiKey, else the X-Api-Key header), authenticated before the rest of the body is
    read, and then the body. An unknown or missing key is refused without reading or parsing the rest."""
    chunks: list[bytes] = []
    peek = KeyPeek()
    stream = request.stream().__aiter__()
    async for chunk in stream:
        chunks.append(chunk)
        if peek.feed(chunk):
            break
    key = (peek.key or "").strip() or request.headers.get("x-api-key")
    caller = await run_in_threadpool(hub.authenticate, key)
    async for chunk in stream:  # the body limit is kept by hub.api.limits.BodyLimits
        chunks.append(chunk)
    return caller, b"".join(chunks)


def handle(hub: HubService, body: bytes, caller: Caller, limits: XmlLimits) -> etree._Element:
    """Parse an authenticated caller's SOAP request (hardened) and dispatch; raise ``ApiProblem``/``RejectedError``."""
    root = parse_xml(body, limits)
    if root.tag != f"{_S}Envelope":
        raise ApiProblem(
            "malformed", "not a SOAP 1.1 envelope", [Issue("/", "soap-envelope", f"root must be {{{SOAP_NS}}}Envelope")]
        )
    soap_body = root.find(f"{_S}Body")
    operations = [] if soap_body is None else [c for c in soap_body if isinstance(c.tag, str)]
    if len(operations) != 1 or operations[0].tag not in OPERATIONS:
        found = operations[0].tag if operations else "nothing"
        raise ApiProblem(
            "malformed",
            f"unknown SOAP operation {found}",
            [Issue("/Body", "soap-operation", "expected SubmitEnvelopeRequest or GetMessageStatusRequest")],
        )
    return OPERATIONS[operations[0].tag](hub, caller, operations[0])


@router.get(SOAP_PATH)
def get_wsdl(request: Request) -> Response:
    if not any(k.lower() == "wsdl" for k in request.query_params):
        raise ApiProblem("not-found", "the SOAP service is at POST /soap/exchange; its WSDL at ?wsdl")
    return Response(wsdl_for(service_location(hub_of(request).settings)), media_type=SOAP_MEDIA_TYPE)


def service_location(settings: Settings) -> str:
    """The WSDL's ``soap:address``: from configuration, never from the request (a forged Host header would
    otherwise send the next client's envelopes and API key elsewhere)."""
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host  # noqa: S104 (a wildcard bind is no address to publish)
    base = settings.public_url or f"http://{host}:{settings.api_port}"
    return base.rstrip("/") + SOAP_PATH


@router.post(SOAP_PATH)
async def soap_exchange(request: Request) -> Response:
    hub = hub_of(request)
    settings = hub.settings
    limits = XmlLimits(max_bytes=soap_body_limit(settings), max_depth=settings.max_xml_depth)
    try:
        caller, body = await authenticated_body(request, hub)
        result = await run_in_threadpool(handle, hub, body, caller, limits)
    except ApiProblem as exc:
        return fault(exc)
    except RejectedError as exc:
        return fault(from_rejection(exc))
    except STORE_DOWN as exc:
        log.warning("store unavailable on a SOAP request: %s", exc)
        return fault(store_unavailable(exc))
    except Exception:
        log.exception("SOAP request failed")
        return fault(ApiProblem("internal", "the hub failed to handle this request; it was logged"))
    return Response(_soap_envelope(result), media_type=SOAP_MEDIA_TYPE)


__all__ = ["router"]
