"""The foundation walkthrough: every canonical packet type taken through example → validate → sign →
verify → tamper → reject, with real keys. It is what ``make demo`` runs until the partner flows exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hub import packets
from hub.errors import RejectedError
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore, sign_payload

PROVINCE_CODE = "000.00.00.H12"
HUB_CODE = "000.00.00.H00"


@dataclass(frozen=True)
class StepResult:
    """What happened to one message type."""

    message_type: str
    valid: bool
    signed_bytes: int
    verified_by: str
    tamper_rejected_with: str

    @property
    def ok(self) -> bool:
        return self.valid and bool(self.verified_by) and bool(self.tamper_rejected_with)


def ensure_keys(directory: Path, name: str, code: str) -> keys.IssuedKey | None:
    """Issue ``name``'s key for connector ``code`` in ``directory`` unless one naming that code is already there."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    if key.exists() and cert.exists() and keys.connector_code(keys.load_certificate(cert)) == code:
        return None
    return keys.issue_key(name, directory, code=code)


def tamper(signed: bytes) -> bytes:
    """Flip one character of the body's first text value."""
    root = etree.fromstring(signed)
    for el in root.iter(f"{{{packets.PACKET_NAMESPACE}}}*"):
        if el.text and el.text.strip():
            original = el.text
            el.text = original[:-1] + ("X" if original[-1] != "X" else "Y")
            return etree.tostring(root)
    raise ValueError("no text to tamper with")


def run(directory: Path) -> list[StepResult]:
    """Take every message type through the whole chain; return one result per type."""
    ensure_keys(directory, "province", PROVINCE_CODE)
    signer = Signer.from_files(directory / "province.key", directory / "province.pem")
    verifier = EnvelopeVerifier(TrustStore.from_path(directory / keys.CA_CERT_FILE))
    results = []
    for name in sorted(packets.PACKET_TYPES):
        payload_xml = packets.to_xml(packets.example(name))
        valid = not packets.validate_xml(name, payload_xml)
        header = EnvelopeHeader(sender=PROVINCE_CODE, receiver=HUB_CODE, message_type=name)
        signed = etree.tostring(sign_payload(signer, header, etree.fromstring(payload_xml)))
        verified = verifier.verify(signed)
        try:
            verifier.verify(tamper(signed))
            rejected = ""
        except RejectedError as exc:
            rejected = exc.issues[0].rule
        results.append(StepResult(name, valid, len(signed), verified.signer, rejected))
    return results
