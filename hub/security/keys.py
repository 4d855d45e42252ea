"""Keys and X.509 certificates: a demo CA, issuing partner certificates, and cached loading.

A CA-issued certificate signs for a connector only when its subject names the connector's code in the
``serialNumber`` attribute (OID 2.5.4.5, ``CONNECTOR_CODE_ATTRIBUTE``; see ``TrustStore``): ``issue_key(code=…)``.

Loading a PEM private key costs ~28 ms with OpenSSL 3 (it re-checks the RSA key), so every loader here
caches the resulting object by (path, mtime, size): callers may ask as often as they like.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hub.errors import KeyMaterialError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

#: The subject attribute that names the connector code a CA-issued certificate signs for. X.520's serialNumber is
#: the subject's registered identifier (not the certificate's serial number), as qualified certificates use it;
#: the common name stays a readable name (``signed by province``).
CONNECTOR_CODE_ATTRIBUTE = NameOID.SERIAL_NUMBER
CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.pem"
MIN_RSA_BITS = 2048
KEY_DIR_MODE = 0o700  # a key folder created by the hub is its owner's only: it holds private keys


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """Where ``issue_key`` wrote a key and its certificate."""

    key_path: Path
    cert_path: Path
    ca_cert_path: Path
    ca_created: bool
    certificate: x509.Certificate


def _new_private_key(algorithm: str) -> PrivateKey:
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    if algorithm == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise KeyMaterialError(f"unknown key algorithm {algorithm!r}: use 'rsa' (RSA-2048) or 'ec' (ECDSA P-256)")


def write_private_key(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """A KeyUsage extension with only the named usages switched on."""
    usages = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
              "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    return x509.KeyUsage(**{usage: allowed.get(usage, False) for usage in usages})


def _name(common_name: str, organisation: str, code: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if code is not None:
        attributes.append(x509.NameAttribute(CONNECTOR_CODE_ATTRIBUTE, code))
    return x509.Name(attributes)


def create_ca(directory: Path, *, common_name: str = "Lienthong Demo CA", days: int = 3650) -> x509.Certificate:
    """Create a self-signed demo CA (``ca.key``, ``ca.pem``) in ``directory`` and return its certificate."""
    directory.mkdir(mode=KEY_DIR_MODE, parents=True, exist_ok=True)
    # ECDSA P-256: made in microseconds where RSA-2048 takes ~0.1 s, and loaded without RSA's ~50 ms key check in
    # every process that issues from it (a demo CA is made for each new data folder: each demo, each test hub).
    key = _new_private_key("ec")
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name, "Lienthong demo")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private_key(directory / CA_KEY_FILE, key)
    write_certificate(directory / CA_CERT_FILE, cert)
    return cert


def issue_certificate(
    subject_key: PrivateKey,
    common_name: str,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 730,
    code: str | None = None,
) -> x509.Certificate:
    """Issue an end-entity signing certificate for ``subject_key`` under ``ca_cert``; ``code``: the connector code
    its subject names (``CONNECTOR_CODE_ATTRIBUTE``), without which it signs for nobody through the CA."""
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(minutes=5)
    not_after = not_after or now + dt.timedelta(days=days)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, "Lienthong partner", code))
        .issuer_name(ca_cert.subject)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, content_commitment=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def issue_key(
    name: str, directory: Path, *, algorithm: str = "rsa", days: int = 730, code: str | None = None
) -> IssuedKey:
    """Create ``NAME.key`` + ``NAME.pem`` in ``directory``, signed by the demo CA there (created if absent);
    ``code``: the connector code the certificate signs for through the CA (``issue_certificate``)."""
    if not name or any(ch in name for ch in "/\\\0") or name.startswith("."):
        raise KeyMaterialError(f"invalid key name {name!r}: use letters, digits, dots, dashes")
    if name == "ca":
        raise KeyMaterialError("the name 'ca' is reserved for the demo CA")
    directory.mkdir(mode=KEY_DIR_MODE, parents=True, exist_ok=True)
    ca_key_path, ca_cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    ca_created = False
    if not ca_cert_path.exists() or not ca_key_path.exists():
        if ca_cert_path.exists() != ca_key_path.exists():
            raise KeyMaterialError(f"{directory} holds only half of a CA ({CA_KEY_FILE} and {CA_CERT_FILE})")
        create_ca(directory)
        ca_created = True
    ca_key = load_private_key(ca_key_path)
    ca_cert = load_certificate(ca_cert_path)
    key = _new_private_key(algorithm)
    cert = issue_certificate(key, name, ca_key, ca_cert, days=days, code=code)
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    write_private_key(key_path, key)
    write_certificate(cert_path, cert)
    return IssuedKey(key_path, cert_path, ca_cert_path, ca_created, cert)


def _file_stamp(path: Path) -> tuple[str, int, int]:
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None
    return str(Path(path).resolve()), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=64)
def _load_private_key(stamp: tuple[str, int, int]) -> PrivateKey:
    data = Path(stamp[0]).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"{stamp[0]} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{stamp[0]}: only RSA and ECDSA keys are supported")
    return key


@lru_cache(maxsize=256)
def _load_certificates(stamp: tuple[str, int, int]) -> tuple[x509.Certificate, ...]:
    data = Path(stamp[0]).read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyMaterialError(f"{stamp[0]} holds no PEM certificate: {exc}") from None
    return tuple(certs)


def load_private_key(path: Path) -> PrivateKey:
    """Load a PEM private key once; later calls for the unchanged file return the same object."""
    return _load_private_key(_file_stamp(path))


def load_certificates(path: Path) -> tuple[x509.Certificate, ...]:
    """All certificates in a PEM file (leaf first for a chain file), cached like ``load_private_key``."""
    return _load_certificates(_file_stamp(path))


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file."""
    return load_certificates(path)[0]


def common_name(cert: x509.Certificate) -> str:
    """The certificate subject's CN, or the whole subject when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def connector_code(cert: x509.Certificate) -> str | None:
    """The connector code the subject names (``CONNECTOR_CODE_ATTRIBUTE``); ``None`` when it names none or several."""
    names = cert.subject.get_attributes_for_oid(CONNECTOR_CODE_ATTRIBUTE)
    return str(names[0].value) if len(names) == 1 else None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, hex, as operators compare them."""
    return cert.fingerprint(hashes.SHA256()).hex()
