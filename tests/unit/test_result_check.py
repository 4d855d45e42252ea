"""The result check in front of a destination's adapter (``hub.exchange.results``), in process: which adapters it
wraps, what it lets through, and the rule a held update's error carries (the fetch is replaced by the document)."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, PermanentDeliveryError
from hub import packets
from hub.devtools.pdf_documents import DemoPdfKeys, demo_pdf_keys, minimal_pdf, signed_result_pdf
from hub.errors import SpecInvalidError
from hub.exchange.results import ResultCheck, ResultCheckedAdapter, guard
from hub.exchange.routing import DestinationConfig, Route, RoutingTable
from hub.packets.dossier import Attachment, DossierStatusUpdate
from hub.registry import ConnectorSpec, parse_spec
from hub.security.envelope import EnvelopeHeader, build_envelope

MINISTRY, PROVINCE, PORTAL, POSTAL = "000.00.00.G10", "000.00.00.H12", "000.00.00.G22", "000.00.00.G40"
URL = "https://tnmt.example.gov.vn/kq/1.pdf"


class Recorder(Adapter):
    """An envelope partner that records what it was handed."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.closed = False

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        self.delivered.append(request.message_id)
        return DeliveryReceipt(200)

    def close(self) -> None:
        self.closed = True


class PortalLike(Recorder):
    async_capable = True
    partner_format = "dvcqg"


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> DemoPdfKeys:
    return demo_pdf_keys(tmp_path_factory.mktemp("keys"), agency_code=MINISTRY)


def finished(status: int = 9, attachments: int = 1) -> DossierStatusUpdate:
    base = packets.example("dossier.status")
    assert isinstance(base, DossierStatusUpdate)
    files = [Attachment(name=f"GCN {i}", url=URL) for i in range(attachments)]
    return base.model_copy(update={"status": status, "attachments": files, "source_system": MINISTRY})


def request(update: DossierStatusUpdate, *, sender: str = MINISTRY, as_model: bool = False) -> OutboundRequest:
    header = EnvelopeHeader(sender="000.00.00.H00", receiver=PROVINCE, message_type="dossier.status",
                            dossier_code=update.dossier_code)  # fmt: skip
    envelope = etree.tostring(build_envelope(header, packets.to_element(update)))
    return OutboundRequest(PROVINCE, header.message_id, "dossier.status", envelope, sender=sender,
                           model=update if as_model else None)  # fmt: skip


def checker(signers: DemoPdfKeys, served: bytes) -> ResultCheck:
    check = ResultCheck(lambda code: (signers.agency.certificate,) if code == MINISTRY else ())
    check._fetch = lambda url, hosts: served  # type: ignore[method-assign]
    return check


def test_guard_wraps_the_receivers_of_dossier_status_keeping_what_the_worker_reads(signers: DemoPdfKeys) -> None:
    destinations = {code: DestinationConfig(endpoint="http://127.0.0.1:1/") for code in (PROVINCE, PORTAL, POSTAL)}
    routing = RoutingTable(destinations, [Route(type="dossier.status", to=(PROVINCE, PORTAL)),
                                          Route(type="postal.order", to=(POSTAL,))])  # fmt: skip
    inner = {PROVINCE: Recorder(), PORTAL: PortalLike(), POSTAL: Recorder()}
    guarded = guard(inner, routing, checker(signers, b""))
    assert guarded[POSTAL] is inner[POSTAL]
    province, portal = guarded[PROVINCE], guarded[PORTAL]
    assert isinstance(province, ResultCheckedAdapter) and isinstance(portal, ResultCheckedAdapter)
    assert (province.async_capable, province.partner_format) == (False, None)
    assert (portal.async_capable, portal.partner_format) == (True, "dvcqg")
    portal.close()
    assert inner[PORTAL].closed


@pytest.mark.parametrize("as_model", [False, True], ids=["envelope partner", "partner format"])
def test_a_finished_update_goes_only_with_a_result_the_agency_signed(signers: DemoPdfKeys, as_model: bool) -> None:
    inner = Recorder()
    good = ResultCheckedAdapter(inner, checker(signers, signed_result_pdf("x", signers.agency)))
    good.deliver(request(finished(), as_model=as_model))
    assert len(inner.delivered) == 1
    for served, rule in ((minimal_pdf("x"), "result-unsigned"),
                         (signed_result_pdf("x", signers.other), "result-signer-not-registered")):  # fmt: skip
        held = ResultCheckedAdapter(inner, checker(signers, served))
        with pytest.raises(PermanentDeliveryError) as refused:
            held.deliver(request(finished(), as_model=as_model))
        assert refused.value.rule == rule and "held" in str(refused.value)
    assert len(inner.delivered) == 1


def test_what_is_not_a_finished_update_with_results_from_a_registered_signer_passes_unchecked(
    signers: DemoPdfKeys,
) -> None:
    inner = Recorder()
    adapter = ResultCheckedAdapter(inner, checker(signers, b"not even a PDF"))  # would be held if it were fetched
    adapter.deliver(request(finished(status=4)))
    adapter.deliver(request(finished(attachments=0)))
    adapter.deliver(request(finished(), sender="000.00.00.G11"))  # no result_signers registered
    sync = OutboundRequest(PROVINCE, "m-1", "dossier.sync", b"<x/>", sender=MINISTRY)
    adapter.deliver(sync)
    assert len(inner.delivered) == 4


def test_a_declared_digest_must_match(signers: DemoPdfKeys) -> None:
    document = signed_result_pdf("x", signers.agency)
    update = finished().model_copy(update={"attachments": [Attachment(name="GCN", url=URL, sha256="a" * 64)]})
    with pytest.raises(PermanentDeliveryError) as refused:
        ResultCheckedAdapter(Recorder(), checker(signers, document)).deliver(request(update))
    assert refused.value.rule == "result-digest-mismatch"


def test_result_signers_are_read_and_checked_like_certificates(signers: DemoPdfKeys) -> None:
    base = {"code": MINISTRY, "name": "Land registration", "kind": "ministry", "sends": ["dossier.status"]}
    spec = parse_spec({**base, "result_signers": [signers.agency.cert_pem, signers.agency.cert_pem]})
    assert spec.result_signers == (signers.agency.cert_pem,)  # read once, as PEM
    assert ConnectorSpec.from_stored(spec.stored(), (), True).result_signers == spec.result_signers
    with pytest.raises(SpecInvalidError) as refused:
        parse_spec({**base, "result_signers": ["certs/agency.pem"]})  # a file path, and no folder to read it in
    assert [i.path for i in refused.value.issues] == ["result_signers[0]"]
