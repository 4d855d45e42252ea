"""Signed results (issue 16.5; Quảng Nam Điều 16.3: results carry the competent agency's digital signature): before
a finished ``dossier.status`` (status 9) is delivered anywhere, each result document attached to it is fetched and
its signature checked against the certificates registered on the sending connector as ``result_signers``.

Where: in the worker, on the delivery's own call path (a pool thread, or the worker loop's default executor for
an ``async_capable`` adapter), as a wrapper around each adapter of a destination that receives ``dossier.status``
(``guard``, applied by ``hub.runtime.Runtime.adapters``) — not at intake, which answers the ministry from the
event loop and must not wait for another server, and not in the worker's main thread, which maps and records
for every destination. The update itself was accepted and run through the status machine as usual; only its
forwarding waits for the check.

What is checked (a connector without ``result_signers`` is not: nothing registered, nothing to check against):

* a PDF (``%PDF-``) with pyHanko (``hub.security.pdf_signatures``); a signed XML document (``<``) with the hub's
  XML-DSig verifier (``hub.security.signed_documents.inspect_xml``); anything else is ``result-not-a-pdf``;
* the trust rule is ``TrustStore``'s with only the connector's ``result_signers`` pinned for its code: the result
  must be signed by one of those certificates — the agency's own, registered like its envelope certificates, not
  any certificate a CA issued (a CA issues certificates to every agency; a result is the competent agency's);
* an attachment's declared ``sha256`` must be the fetched bytes' (``result-digest-mismatch``);
* before that, its link must point at a host the sender's connector allows (``result_hosts``; by default the host
  of its own endpoint URL, none without one), and at no internal address unless ``result_hosts`` names that host
  (``adapters.link_hosts``): else ``result-host-not-allowed``, and nothing is requested — a link is a request the
  hub makes for the partner (server-side request forgery).

A document that fails is held: the delivery becomes a dead letter whose reason is the rule (``result-unsigned``,
``result-signature-invalid``, ``result-signer-not-registered``, ``result-not-a-pdf``, ``result-too-large``,
``result-unavailable``, ``result-digest-mismatch``, ``result-host-not-allowed``), shown on the operator page and by
``GET /api/v1/dead-letters``; nothing reaches the partner. Replaying it checks again — once the agency has fixed the
document, or its new certificate is registered, the replay delivers; an unsigned result is never forwarded. A
document host that is down or slow is a transient failure: the delivery is retried with the destination's
backoff (not counted against the destination's circuit breaker), and once retries are exhausted it is held as
``result-unavailable``. Each destination checks for itself (a finished dossier has two or three destinations).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import cast

from cryptography import x509

from adapters.base import (
    Adapter,
    DeliveryReceipt,
    OutboundRequest,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from adapters.documents import DocumentTooLargeError, HostNotAllowedError, document_pool, fetch_document, shown
from adapters.link_hosts import HostAllowList
from hub import packets
from hub.exchange.routing import RoutingTable
from hub.packets.dossier import DossierStatusUpdate
from hub.security import pdf_signatures
from hub.security.envelope import body_payload
from hub.security.signed_documents import (
    DEFAULT_MAX_BYTES,
    DIGEST_MISMATCH,
    HOST_NOT_ALLOWED,
    NOT_A_PDF,
    TOO_LARGE,
    UNAVAILABLE,
    DocumentSignature,
    blank,
    failed,
    inspect_xml,
    registered,
    rule,
)
from hub.xmlparse import parse_xml

log = logging.getLogger(__name__)

PURPOSE = "result"
STATUS_TYPE = "dossier.status"
FINISHED = 9  # "done" (DOMAIN.md §2): the update that carries the results
DEFAULT_TIMEOUT_S = 30.0

#: The certificates registered to sign results for a connector code (``Registry.result_signers``).
SignersOf = Callable[[str], Sequence[x509.Certificate]]
#: The hosts a connector's result links may point at (``Registry.result_hosts``).
HostsOf = Callable[[str], HostAllowList]


def _no_hosts(code: str) -> HostAllowList:
    return HostAllowList()


def document_format(data: bytes) -> str:
    """``pdf``, ``xml`` or ``unknown``, from the first bytes (a link's name or media type is not trusted)."""
    if pdf_signatures.PDF_MAGIC in data[: pdf_signatures.HEADER_WINDOW]:
        return "pdf"
    return "xml" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") else "unknown"


@dataclass
class ResultCheck:
    """Checks the result documents of the finished updates of connectors with ``result_signers``."""

    signers_of: SignersOf
    #: Where each sender's result links may point (none by default: every link is held).
    hosts_of: HostsOf = _no_hosts
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        self._pool = document_pool(timeout_s=self.timeout_s)

    def verify(self, data: bytes, signer: str, certificates: Sequence[x509.Certificate]) -> DocumentSignature:
        """The report on one fetched document signed for ``signer`` by one of ``certificates``."""
        trust = registered(signer, tuple(certificates))
        fmt = document_format(data)
        if fmt == "pdf":
            return pdf_signatures.inspect_pdf(data, trust=trust, signer=signer, purpose=PURPOSE,
                                              max_bytes=self.max_bytes)  # fmt: skip
        if fmt == "xml":
            return inspect_xml(data, trust=trust, signer=signer, purpose=PURPOSE, max_bytes=self.max_bytes)
        report = blank(data, purpose=PURPOSE, signer=signer, fmt=fmt)
        return failed(report, NOT_A_PDF, "neither a PDF nor an XML document")

    def update_of(self, request: OutboundRequest) -> DossierStatusUpdate | None:
        """The finished update with results that ``request`` delivers, if it is one from a connector with
        ``result_signers`` (else ``None``: nothing to check)."""
        if request.message_type != STATUS_TYPE or not request.sender or not self.signers_of(request.sender):
            return None
        model = request.model
        if not isinstance(model, DossierStatusUpdate):  # an envelope partner: the hub-signed canonical envelope
            payload = body_payload(parse_xml(request.body, strip_comments=True))
            model = packets.read_validated(STATUS_TYPE, payload)
        if not isinstance(model, DossierStatusUpdate) or int(model.status) != FINISHED or not model.attachments:
            return None
        return model

    def check(self, request: OutboundRequest) -> list[DocumentSignature]:
        """Fetch and verify every result of ``request``'s update (nothing when it has none to check); raise a
        ``DeliveryError`` whose ``rule`` names the first failure. Blocking: call it from a thread."""
        update = self.update_of(request)
        if update is None:
            return []
        certificates = self.signers_of(request.sender)
        hosts = self.hosts_of(request.sender)
        reports = []
        for attachment in update.attachments:
            url = str(attachment.url)
            data = self._fetch(url, hosts)
            digest = hashlib.sha256(data).hexdigest()
            if attachment.sha256 and attachment.sha256.lower() != digest:
                raise PermanentDeliveryError(
                    f"result {attachment.name!r} at {shown(url)}: SHA-256 {digest} is not the {attachment.sha256} "
                    "the update names", rule=rule(PURPOSE, DIGEST_MISMATCH),
                )  # fmt: skip
            report = self.verify(data, request.sender, certificates)
            if not report.valid:
                assert report.rule is not None
                raise PermanentDeliveryError(
                    f"result {attachment.name!r} at {shown(url)} held: {report.reason}", rule=report.rule
                )
            log.info("message_id=%s destination=%s result %s signed by %s (%s)", request.message_id,
                     request.destination, shown(url), report.signer_name, report.trusted_as,
                     extra={"dossier_code": update.dossier_code})  # fmt: skip
            reports.append(report)
        return reports

    def _fetch(self, url: str, hosts: HostAllowList) -> bytes:
        try:
            return fetch_document(self._pool, url, max_bytes=self.max_bytes, timeout_s=self.timeout_s, hosts=hosts)
        except HostNotAllowedError as exc:
            raise PermanentDeliveryError(f"result held: {exc}", rule=rule(PURPOSE, HOST_NOT_ALLOWED)) from None
        except DocumentTooLargeError as exc:
            raise PermanentDeliveryError(f"result held: {exc}", rule=rule(PURPOSE, TOO_LARGE)) from None
        except PermanentDeliveryError as exc:
            raise PermanentDeliveryError(f"result held: {exc}", status=exc.status,
                                         rule=rule(PURPOSE, UNAVAILABLE)) from None  # fmt: skip
        except TransientDeliveryError as exc:
            raise TransientDeliveryError(f"result not fetched yet: {exc}", status=exc.status,
                                         rule=rule(PURPOSE, UNAVAILABLE)) from None  # fmt: skip

    def close(self) -> None:
        self._pool.clear()


class ResultCheckedAdapter(Adapter):
    """A destination's adapter behind the result check: a finished update is delivered only once its results are
    verified (``ResultCheck.check``); everything else goes straight through. ``async_capable`` and
    ``partner_format`` are the wrapped adapter's (``guard`` builds the subclass that says so)."""

    def __init__(self, inner: Adapter, check: ResultCheck) -> None:
        self.inner = inner
        self.check = check

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        self.check.check(request)
        return self.inner.deliver(request)

    async def deliver_async(self, request: OutboundRequest) -> DeliveryReceipt:
        if request.message_type == STATUS_TYPE:  # the registry read, fetching and pyHanko block: off the loop
            await asyncio.to_thread(self.check.check, request)
        return await self.inner.deliver_async(request)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


@cache
def _checked_class(async_capable: bool, partner_format: str | None) -> type[ResultCheckedAdapter]:
    attributes = {"async_capable": async_capable, "partner_format": partner_format}
    return cast("type[ResultCheckedAdapter]", type("ResultCheckedAdapter", (ResultCheckedAdapter,), attributes))


def guard(adapters: Mapping[str, Adapter], routing: RoutingTable, check: ResultCheck) -> dict[str, Adapter]:
    """``adapters`` with those of the destinations routed ``dossier.status`` behind ``check``."""
    receiving = {d for route in routing.routes if route.type == STATUS_TYPE for d in route.to}
    guarded: dict[str, Adapter] = {}
    for code, adapter in adapters.items():
        if code in receiving:
            adapter = _checked_class(adapter.async_capable, adapter.partner_format)(adapter, check)
        guarded[code] = adapter
    return guarded


__all__ = ["PURPOSE", "ResultCheck", "ResultCheckedAdapter", "document_format", "guard"]
