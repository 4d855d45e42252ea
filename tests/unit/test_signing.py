"""Envelope signing and verification: the policy, tampering, trust, and signature-wrapping attempts."""

from __future__ import annotations

import base64
import copy
import datetime as dt

import pytest
from lxml import etree

from hub import packets
from hub.errors import EnvelopeInvalidError, KeyMaterialError, RejectedError, SignatureRejectedError
from hub.security import keys
from hub.security.envelope import ENVELOPE_NAMESPACE, SIGNATURE_TAG, EnvelopeHeader, build_envelope
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore, sign_payload

E = f"{{{ENVELOPE_NAMESPACE}}}"
P = f"{{{packets.PACKET_NAMESPACE}}}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SENDER, RECEIVER, MINISTRY = "000.00.00.H12", "000.00.00.H00", "000.00.00.G10"


def _payload(message_type: str = "dossier.status") -> etree._Element:
    return packets.to_element(packets.example(message_type))


def _signed(party, message_type: str = "dossier.status", **header) -> bytes:
    h = EnvelopeHeader(sender=header.pop("sender", SENDER), receiver=RECEIVER, message_type=message_type, **header)
    return etree.tostring(sign_payload(party.signer, h, _payload(message_type)))


def _reject(verifier: EnvelopeVerifier, data: bytes) -> RejectedError:
    with pytest.raises(RejectedError) as exc:
        verifier.verify(data)
    return exc.value


@pytest.mark.parametrize("message_type", sorted(packets.PACKET_TYPES))
def test_every_type_signs_and_verifies(pki, message_type: str) -> None:
    data = _signed(pki.province, message_type)
    verified = EnvelopeVerifier(pki.trust()).verify(data)
    assert verified.header.message_type == message_type
    assert verified.header.sender == SENDER
    assert verified.signer == "province"
    assert verified.payload.tag == f"{P}{packets.packet_type(message_type).root}"


def test_ecdsa_p256_signature_verifies(pki) -> None:
    data = _signed(pki.ministry, sender=MINISTRY)
    assert b"ecdsa-sha256" in data
    assert EnvelopeVerifier(pki.trust()).verify(data).signer == "ministry"


def test_signature_uses_the_pinned_algorithms(pki) -> None:
    root = etree.fromstring(_signed(pki.province))
    sig = root[-1]
    assert sig.tag == SIGNATURE_TAG
    alg = {el.tag.split("}")[1]: el.get("Algorithm") for el in sig.iter() if el.get("Algorithm")}
    assert alg["CanonicalizationMethod"] == "http://www.w3.org/2001/10/xml-exc-c14n#"
    assert alg["SignatureMethod"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert alg["DigestMethod"] == "http://www.w3.org/2001/04/xmlenc#sha256"
    assert sig.find(f"{DS}SignedInfo/{DS}Reference").get("URI") == ""


def test_header_dossier_code_and_user_are_carried(pki) -> None:
    code = packets.example("dossier.status").dossier_code
    data = _signed(pki.province, dossier_code=code, user_id="canbo.01")
    header = EnvelopeVerifier(pki.trust()).verify(data).header
    assert header.dossier_code == code and header.user_id == "canbo.01"


def test_header_dossier_code_must_match_body(pki) -> None:
    data = _signed(pki.province, dossier_code="000.00.00.H12-251124-0001")
    err = _reject(EnvelopeVerifier(pki.trust()), data)
    assert isinstance(err, EnvelopeInvalidError)
    assert err.issues[0].rule == "dossier-code-matches-body"
    assert err.message_id  # every rejection names the message id


def _tamper_text(data: bytes, tag: str) -> bytes:
    root = etree.fromstring(data)
    el = next(root.iter(tag))
    el.text = el.text[:-1] + ("9" if el.text[-1] != "9" else "8")
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("tag", "rule"),
    [
        (f"{P}dossierCode", "signature-digest"),
        # another sender: the CA-issued certificate names the province, refused before the digest is computed
        (f"{E}sender", "certificate-subject"),
        (f"{E}messageType", "signature-digest"),
        (f"{E}createdAt", "signature-digest"),
    ],
    ids=["body", "header-sender", "header-type", "header-time"],
)
def test_any_changed_character_is_rejected(pki, tag: str, rule: str) -> None:
    data = _signed(pki.province)
    err = _reject(EnvelopeVerifier(pki.trust()), _tamper_text(data, tag))
    assert err.issues[0].rule == rule
    assert err.message_id


def test_tampered_signature_value_is_rejected(pki) -> None:
    root = etree.fromstring(_signed(pki.province))
    value = root.find(f"{SIGNATURE_TAG}/{DS}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    err = _reject(EnvelopeVerifier(pki.trust()), etree.tostring(root))
    assert err.issues[0].rule == "signature-value"


def test_unsigned_envelope_is_rejected(pki) -> None:
    h = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type="dossier.status")
    data = etree.tostring(build_envelope(h, _payload()))
    err = _reject(EnvelopeVerifier(pki.trust()), data)
    assert err.issues[0].rule == "signature-required"
    assert err.message_id == h.message_id


def test_two_signatures_are_rejected(pki) -> None:
    root = etree.fromstring(_signed(pki.province))
    root.append(copy.deepcopy(root[-1]))
    err = _reject(EnvelopeVerifier(pki.trust()), etree.tostring(root))
    assert err.issues[0].rule == "one-signature"


def test_signer_refuses_to_sign_twice(pki) -> None:
    root = etree.fromstring(_signed(pki.province))
    with pytest.raises(SignatureRejectedError):
        pki.province.signer.sign(root)


def test_certificate_from_another_ca_is_rejected(pki) -> None:
    err = _reject(EnvelopeVerifier(pki.trust()), _signed(pki.impostor))
    assert err.issues[0].rule == "certificate-trust"


def test_expired_certificate_is_rejected(pki) -> None:
    err = _reject(EnvelopeVerifier(pki.trust()), _signed(pki.expired))
    assert err.issues[0].rule == "certificate-validity"
    assert "expired" in err.issues[0].message


def test_swapped_keyinfo_certificate_is_rejected(pki) -> None:
    """A valid signature by the impostor, presented with the real province certificate."""
    root = etree.fromstring(_signed(pki.impostor))
    real = pki.province.certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    root.find(f".//{DS}X509Certificate").text = base64.b64encode(real.public_bytes(Encoding.DER)).decode()
    err = _reject(EnvelopeVerifier(pki.trust()), etree.tostring(root))
    assert err.issues[0].rule == "signature-value"


def test_pinned_sender_must_use_its_own_certificate(pki) -> None:
    trust = pki.trust()
    trust.pin(SENDER, pki.ministry.certificate)
    err = _reject(EnvelopeVerifier(trust), _signed(pki.province))
    assert err.issues[0].rule == "certificate-pinned"
    assert EnvelopeVerifier(trust).verify(_signed(pki.ministry)).trusted_as == "pinned for sender"


def test_a_ca_issued_certificate_signs_only_for_the_code_its_subject_names(pki, tmp_path) -> None:
    verifier = EnvelopeVerifier(pki.trust())
    assert keys.connector_code(pki.province.certificate) == SENDER
    verified = verifier.verify(_signed(pki.province))
    assert verified.trusted_as == f"issued by Lienthong Demo CA for {SENDER}"
    # the ministry's certificate names the ministry: it does not sign for the province, though the CA issued it
    err = _reject(verifier, _signed(pki.ministry, sender=SENDER))
    assert err.issues[0].rule == "certificate-subject"
    assert MINISTRY in err.issues[0].message and "/envelope/Signature" == err.issues[0].path
    # a CA-issued certificate that names no connector signs for nobody
    nameless = keys.issue_key("nameless", pki.ca_dir)
    err = _reject(verifier, _signed(type(pki.province)("nameless", nameless.key_path, nameless.cert_path)))
    assert err.issues[0].rule == "certificate-subject" and "no connector code" in err.issues[0].message


def test_a_certificate_pinned_for_another_connector_never_signs(pki) -> None:
    # The ministry's certificate names the province code (a CA mistake, or a stolen key): pinned for the ministry,
    # it signs for the ministry only, not for the unpinned province through the CA.
    ca_key = keys.load_private_key(pki.ca_dir / keys.CA_KEY_FILE)
    ca_cert = keys.load_certificate(pki.ca_cert)
    key = keys.load_private_key(pki.ministry.key_path)
    cert = keys.issue_certificate(key, "ministry", ca_key, ca_cert, code=SENDER)
    trust = pki.trust()
    trust.pin(MINISTRY, cert)
    signer = Signer(key, cert)
    header = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type="dossier.status")
    data = etree.tostring(sign_payload(signer, header, _payload()))
    err = _reject(EnvelopeVerifier(trust), data)
    assert err.issues[0].rule == "certificate-pinned-elsewhere" and MINISTRY in err.issues[0].message
    assert EnvelopeVerifier(pki.trust()).verify(data).trusted_as.startswith("issued by")  # unpinned: the CA rule


def test_pinned_certificate_needs_no_ca(pki) -> None:
    trust = TrustStore()
    trust.pin(SENDER, pki.impostor.certificate)
    assert EnvelopeVerifier(trust).verify(_signed(pki.impostor)).trusted_as == "pinned for sender"


def test_certificate_rotation_old_and_new_both_valid(pki) -> None:
    trust = TrustStore()
    trust.pin(SENDER, pki.province.certificate)
    trust.pin(SENDER, pki.ministry.certificate)
    verifier = EnvelopeVerifier(trust)
    assert verifier.verify(_signed(pki.province)).signer == "province"
    assert verifier.verify(_signed(pki.ministry)).signer == "ministry"


def test_verification_time_is_the_clock(pki) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 5)
    err = _reject(EnvelopeVerifier(pki.trust(), clock=lambda: future), _signed(pki.province))
    assert err.issues[0].rule == "certificate-validity"


@pytest.mark.parametrize("name", ["rsa1024", "p384"])
def test_weak_keys_cannot_sign(weak_keys, name: str) -> None:
    party = weak_keys[name]
    with pytest.raises(KeyMaterialError):
        Signer(keys.load_private_key(party.key_path), party.certificate)


def test_weak_key_signature_is_rejected_by_verifier(pki, weak_keys) -> None:
    """Signed with RSA-1024 by hand (the hub's Signer would refuse), then presented to the verifier."""
    import signxml

    party = weak_keys["rsa1024"]
    h = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type="dossier.status")
    signed = signxml.XMLSigner(
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=signxml.CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(build_envelope(h, _payload()), key=keys.load_private_key(party.key_path), cert=[party.certificate])
    err = _reject(EnvelopeVerifier(pki.trust()), etree.tostring(signed))
    assert err.issues[0].rule == "key-policy"


def test_certificate_must_match_key(pki) -> None:
    with pytest.raises(KeyMaterialError, match="does not belong"):
        Signer(keys.load_private_key(pki.province.key_path), pki.ministry.certificate)


def test_signature_wrapping_is_rejected(pki) -> None:
    """Classic XSW: keep the signed original inside, put a forged header/body in front."""
    victim = etree.fromstring(_signed(pki.province))
    forged = copy.deepcopy(victim)
    forged.find(f"{E}header/{E}receiver").text = "000.00.00.X99"
    forged.find(f".//{P}dossierCode").text = "000.00.00.H12-251123-9999"
    signature = forged[-1]
    forged.remove(signature)
    # Hide the signed original in the signature's Object, as XSW attacks do.
    obj = etree.SubElement(signature, f"{DS}Object")
    obj.append(copy.deepcopy(victim))
    obj[0].remove(obj[0][-1])
    forged.append(signature)
    with pytest.raises(RejectedError):
        EnvelopeVerifier(pki.trust()).verify(etree.tostring(forged))


def test_reference_to_an_id_is_rejected(pki) -> None:
    """A signature that covers only part of the envelope (URI="#...") does not pass."""
    import signxml

    h = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type="dossier.status")
    env = build_envelope(h, _payload())
    env.find(f"{E}body").set("Id", "body")
    signed = signxml.XMLSigner(c14n_algorithm=signxml.CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0).sign(
        env, key=pki.province.signer.private_key, cert=[pki.province.certificate], reference_uri="#body"
    )
    with pytest.raises(RejectedError) as exc:
        EnvelopeVerifier(pki.trust()).verify(etree.tostring(signed))
    assert exc.value.issues[0].rule in {"signature-coverage", "signature-transforms"}


def test_not_an_envelope_is_rejected(pki) -> None:
    err = _reject(EnvelopeVerifier(pki.trust()), packets.to_xml(packets.example("dossier.sync")))
    assert err.issues[0].rule == "envelope-root"


def test_invalid_payload_inside_a_valid_signature_is_rejected(pki) -> None:
    payload = _payload("dossier.status")
    payload.find(f"{P}dossierCode").text = "not-a-code"
    h = EnvelopeHeader(sender=SENDER, receiver=RECEIVER, message_type="dossier.status")
    data = etree.tostring(pki.province.signer.sign(build_envelope(h, payload)))
    err = _reject(EnvelopeVerifier(pki.trust()), data)
    assert isinstance(err, EnvelopeInvalidError)
    assert err.issues[0].path.startswith("/envelope/body")


def test_trust_store_from_folder_and_missing_path(pki, tmp_path) -> None:
    assert TrustStore.from_path(pki.ca_dir).anchors
    with pytest.raises(KeyMaterialError):
        TrustStore.from_path(tmp_path / "nope")
    with pytest.raises(KeyMaterialError):
        TrustStore.from_path(tmp_path)


def test_signer_is_loaded_once(pki) -> None:
    assert Signer.from_files(pki.province.key_path, pki.province.cert_path) is pki.province.signer
