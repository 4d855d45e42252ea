"""Interoperability with another XML-DSig implementation: Debian's ``xmlsec1``.

``make test`` installs xmlsec1 when it is missing; without it these tests skip (or fail on CI).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from hub import packets
from hub.errors import RejectedError
from hub.security import keys
from hub.security.envelope import EnvelopeHeader, build_envelope
from hub.security.signing import EnvelopeVerifier, sign_payload
from tests.support import REQUIRE_SERVICES

XMLSEC1 = shutil.which("xmlsec1")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        XMLSEC1 is None and not REQUIRE_SERVICES, reason="xmlsec1 is not installed (make test installs it)"
    ),
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
TEMPLATE = f"""<ds:Signature xmlns:ds="{DS_NS}">
  <ds:SignedInfo>
    <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
    <ds:SignatureMethod Algorithm="{{method}}"/>
    <ds:Reference URI="">
      <ds:Transforms>
        <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
        <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      </ds:Transforms>
      <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <ds:DigestValue/>
    </ds:Reference>
  </ds:SignedInfo>
  <ds:SignatureValue/>
  <ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>
</ds:Signature>"""
METHODS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ec": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}


def _xmlsec1(*args: str) -> subprocess.CompletedProcess[str]:
    assert XMLSEC1, "xmlsec1 is required on CI"
    return subprocess.run([XMLSEC1, *args], capture_output=True, text=True, timeout=60)


def _header(message_type: str, sender: str = "000.00.00.H12") -> EnvelopeHeader:
    return EnvelopeHeader(sender=sender, receiver="000.00.00.H00", message_type=message_type)


@pytest.mark.parametrize("message_type", ["dossier.sync", "payment.receipt"])
def test_xmlsec1_verifies_what_the_hub_signs(pki, tmp_path: Path, message_type: str) -> None:
    signed = sign_payload(pki.province.signer, _header(message_type), packets.to_element(packets.example(message_type)))
    path = tmp_path / "envelope.xml"
    path.write_bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
    result = _xmlsec1("--verify", "--trusted-pem", str(pki.ca_cert), str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr


def test_xmlsec1_rejects_a_tampered_hub_envelope(pki, tmp_path: Path) -> None:
    signed = sign_payload(
        pki.province.signer, _header("dossier.status"), packets.to_element(packets.example("dossier.status"))
    )
    data = etree.tostring(signed).replace(b"000.00.00.H00", b"000.00.00.H01", 1)
    path = tmp_path / "tampered.xml"
    path.write_bytes(data)
    assert _xmlsec1("--verify", "--trusted-pem", str(pki.ca_cert), str(path)).returncode != 0


@pytest.mark.parametrize("party_name", ["province", "ministry"])
def test_hub_verifies_what_xmlsec1_signs(pki, tmp_path: Path, party_name: str) -> None:
    party = getattr(pki, party_name)
    algorithm = "ec" if party_name == "ministry" else "rsa"
    # Each party signs as the connector its CA-issued certificate names (the CA trust rule).
    header = _header("dossier.status", sender=keys.connector_code(party.certificate) or "")
    envelope = build_envelope(header, packets.to_element(packets.example("dossier.status")))
    envelope.append(etree.fromstring(TEMPLATE.replace("{method}", METHODS[algorithm])))
    template = tmp_path / "template.xml"
    template.write_bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))
    out = tmp_path / "signed.xml"
    result = _xmlsec1(
        "--sign", "--privkey-pem", f"{party.key_path},{party.cert_path}", "--output", str(out), str(template)
    )
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    verified = EnvelopeVerifier(pki.trust()).verify(data)
    assert verified.signer == party_name
    assert verified.header.message_type == "dossier.status"
    with pytest.raises(RejectedError):
        EnvelopeVerifier(pki.trust()).verify(data.replace(b"000.00.00.H00", b"000.00.00.H01", 1))
