"""The hub's one-profile XML-DSig (``hub.security.dsig``) held to signxml, the reference implementation, both ways,
and to the edge cases a hand-written verifier must get right (signature tail text, comments, prefix lists)."""

from __future__ import annotations

import base64

import pytest
import signxml
from lxml import etree

from hub import packets
from hub.errors import DsigError
from hub.security import dsig
from hub.security.envelope import EnvelopeHeader, build_envelope
from hub.security.signing import EnvelopeVerifier
from hub.xmlparse import parser

DS = "{http://www.w3.org/2000/09/xmldsig#}"
E = "{urn:lienthong:envelope:1}"
EXC = signxml.CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
SENDER, RECEIVER = "000.00.00.H12", "000.00.00.H00"


def _envelope(message_type: str = "dossier.status") -> etree._Element:
    header = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type=message_type)
    return build_envelope(header, packets.to_element(packets.example(message_type)))


def _party(pki, name: str):
    return getattr(pki, name)


def _reparse(root: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(root), parser=parser())


@pytest.mark.parametrize("name", ["province", "ministry"])  # RSA-2048 and ECDSA P-256
def test_signxml_verifies_what_dsig_signs(pki, name: str) -> None:
    party = _party(pki, name)
    signed = dsig.sign_enveloped(_envelope(), party.signer.private_key, [party.certificate])
    data = etree.tostring(signed)
    result = signxml.XMLVerifier().verify(data, x509_cert=party.certificate)
    ours = dsig.verify_enveloped(_reparse(signed), party.certificate, parser())
    assert result.signed_data == ours.signed_c14n


@pytest.mark.parametrize("name", ["province", "ministry"])
def test_dsig_verifies_what_signxml_signs(pki, name: str) -> None:
    party = _party(pki, name)
    method = "ecdsa-sha256" if name == "ministry" else "rsa-sha256"
    signed = signxml.XMLSigner(signature_algorithm=method, digest_algorithm="sha256", c14n_algorithm=EXC).sign(
        _envelope(), key=party.signer.private_key, cert=[party.certificate]
    )
    result = dsig.verify_enveloped(_reparse(signed), party.certificate, parser())
    assert result.signed.tag == f"{E}envelope"
    assert result.signed.find(f"{DS}Signature") is None  # the signed tree never holds the signature


def test_pretty_printed_signed_envelope_keeps_its_whitespace(pki) -> None:
    """Text after the signature belongs to the signed content (the enveloped transform removes the element only)."""
    party = pki.province
    signed = dsig.sign_enveloped(_envelope(), party.signer.private_key, [party.certificate])
    root = _reparse(signed)
    root[-2].tail = "\n  "
    root[-1].tail = "\n"  # added after signing: changes the signed content
    with pytest.raises(DsigError) as exc:
        dsig.verify_enveloped(root, party.certificate, parser())
    assert exc.value.rule == "signature-digest"
    unsigned = _envelope()
    unsigned[-1].tail = "\n"  # present before signing: the signature goes after it, this tail is kept
    signed = dsig.sign_enveloped(unsigned, party.signer.private_key, [party.certificate])
    signed[-1].tail = signed[-2].tail
    signed[-2].tail = None
    assert signxml.XMLVerifier().verify(etree.tostring(signed), x509_cert=party.certificate)
    dsig.verify_enveloped(_reparse(signed), party.certificate, parser())


def test_a_comment_slipped_into_signed_text_is_never_read(pki) -> None:
    """C14N drops comments, so the digest still matches; the returned tree has the text as signed."""
    party = pki.province
    data = etree.tostring(dsig.sign_enveloped(_envelope(), party.signer.private_key, [party.certificate]))
    tampered = data.replace(b"<env:sender>000.00", b"<env:sender>000.00<!-- x -->")
    assert tampered != data
    root = etree.fromstring(tampered, parser=parser())
    assert root.findtext(f"{E}header/{E}sender") == "000.00"  # what a naive reader of the received tree sees
    result = dsig.verify_enveloped(root, party.certificate, parser())
    assert result.signed.findtext(f"{E}header/{E}sender") == SENDER


def test_inclusive_namespace_prefix_list_is_honoured(pki) -> None:
    party = pki.province
    signed = signxml.XMLSigner(signature_algorithm="rsa-sha256", digest_algorithm="sha256", c14n_algorithm=EXC).sign(
        _envelope(), key=party.signer.private_key, cert=[party.certificate], inclusive_ns_prefixes=["p"]
    )
    assert b"InclusiveNamespaces" in etree.tostring(signed)
    dsig.verify_enveloped(_reparse(signed), party.certificate, parser())


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (
            lambda s: s.find(f"{DS}SignedInfo/{DS}SignatureMethod").set("Algorithm", dsig.ECDSA_SHA256),
            "signature-algorithm",
        ),
        (lambda s: s.find(f"{DS}SignedInfo/{DS}Reference").set("URI", "#x"), "signature-value"),
        (lambda s: s.find(f"{DS}SignedInfo").append(etree.Element(f"{DS}Reference")), "signature-reference"),
        (lambda s: s.remove(s.find(f"{DS}SignatureValue")), "signature-policy"),
        (lambda s: setattr(s.find(f"{DS}SignatureValue"), "text", "not base64!"), "signature-policy"),
    ],
)
def test_signatures_outside_the_profile_or_altered_are_refused(pki, change, rule: str) -> None:
    party = pki.province
    root = _reparse(dsig.sign_enveloped(_envelope(), party.signer.private_key, [party.certificate]))
    change(root[-1])
    with pytest.raises(DsigError) as exc:
        dsig.verify_enveloped(root, party.certificate, parser())
    assert exc.value.rule == rule


def test_a_short_ecdsa_value_is_refused_not_crashed(pki) -> None:
    party = pki.ministry
    root = _reparse(dsig.sign_enveloped(_envelope(), party.signer.private_key, [party.certificate]))
    value = root.find(f"{DS}Signature/{DS}SignatureValue")
    value.text = base64.b64encode(base64.b64decode(value.text)[:40]).decode()
    with pytest.raises(DsigError) as exc:
        dsig.verify_enveloped(root, party.certificate, parser())
    assert exc.value.rule == "signature-value"


def test_verifying_a_callers_element_leaves_it_signed(pki) -> None:
    """The verifier detaches the signature of its own copy, never of an element it was handed."""
    root = _reparse(pki.province.signer.sign(_envelope()))
    before = etree.tostring(root)
    EnvelopeVerifier(pki.trust()).verify(root)
    assert etree.tostring(root) == before


def test_signer_sign_leaves_the_unsigned_envelope_alone(pki) -> None:
    unsigned = _envelope()
    signed = pki.province.signer.sign(unsigned)
    assert signed[-1].tag == f"{DS}Signature"
    assert unsigned.find(f"{DS}Signature") is None


def test_the_worker_reads_a_queued_envelope_as_its_signature_saw_it(pki) -> None:
    """A comment slipped into a signed header field after signing does not break the digest (C14N drops
    comments); it must not cut the field short when the worker builds the outbound envelope either."""
    from hub.exchange.worker import OutboundBuilder

    header = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type="dossier.status", message_id="id-0001-abcd")
    signed = pki.province.signer.sign(build_envelope(header, packets.to_element(packets.example("dossier.status"))))
    data = etree.tostring(signed).replace(b"id-0001-abcd", b"id-0001<!-- x -->-abcd", 1)
    assert b"<!-- x -->" in data
    EnvelopeVerifier(pki.trust()).verify(data)  # still verifies: the comment is outside what is signed
    outbound_header, outbound = OutboundBuilder(pki.ministry.signer, RECEIVER).build(data, "000.00.00.G22")
    assert outbound_header.message_id == "id-0001-abcd"
    assert b"<!--" not in outbound
