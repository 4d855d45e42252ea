"""Email over real SMTP: the notification email channel (``adapters.smtp``) against the local mail server
(``hub.devtools.mail_server``, aiosmtpd) on 127.0.0.1 — plain, STARTTLS with AUTH, TLS from the first byte — and
the retry classification of a relay that fails (4xx transient, 5xx permanent, unreachable transient)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.base import OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.notification import EmailChannel
from adapters.smtp import SmtpRelay, probe, send
from hub.devtools.mail_server import MailServer
from mappings import notification as n
from tests.support import free_port

USER, PASSWORD = "lienthong", "relay-secret"
SENDER = "motcua@daknong.gov.vn"


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    ca_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and a certificate for 127.0.0.1 signed by it: the relay's TLS, trusted through ``tls_ca_file``."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("Relay test CA")).issuer_name(_name("Relay test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "relay.pem").write_bytes(cert.public_bytes(pem))
    (folder / "relay.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "relay.pem", folder / "relay.key")
    return Tls(context, folder / "ca.pem")


def message(text: str = "Cơ quan đã nhận được hồ sơ 000.00.00.H12-251124-0001.") -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = f"Một cửa <{SENDER}>", "an@example.vn", "Đã nhận hồ sơ"
    mail.set_content(text, charset="utf-8", cte="quoted-printable")
    return mail


def relay(server: MailServer, **kw: object) -> SmtpRelay:
    return SmtpRelay.from_url(server.url, timeout_s=5, **kw)  # type: ignore[arg-type]


def test_a_message_reaches_the_relay_in_clear_when_told_it_is_trusted() -> None:
    with MailServer() as server:
        sent, answer = send(relay(server, starttls="none"), message(), SENDER, "an@example.vn")
        (mail,) = server.messages()
    assert answer.startswith("250 ") and "queued as LT000001" in answer
    assert mail.mail_from == SENDER and mail.rcpt_tos == ("an@example.vn",) and not mail.tls and mail.login is None
    assert mail.subject == "Đã nhận hồ sơ"
    assert mail.text.strip() == "Cơ quan đã nhận được hồ sơ 000.00.00.H12-251124-0001."
    assert sent.replace(b"\r\n", b"\n").strip() == mail.data.replace(b"\r\n", b"\n").strip()


def test_starttls_and_auth(tls: Tls) -> None:
    with MailServer(tls=tls.server, require_starttls=True, users={USER: PASSWORD}) as server:
        good = relay(server, username=USER, password=PASSWORD, ca_file=str(tls.ca_file))
        send(good, message(), SENDER, "an@example.vn")
        (mail,) = server.messages()
        assert mail.tls and mail.login == USER
        assert "over TLS" in probe(good) and "AUTH" in probe(good)
        with pytest.raises(PermanentDeliveryError, match="535") as wrong:  # RFC 4954: authentication failed
            send(relay(server, username=USER, password="wrong", ca_file=str(tls.ca_file)), message(), SENDER, "x@y.vn")
        assert wrong.value.status == 535
        with pytest.raises(PermanentDeliveryError, match="certificate does not verify"):  # the system's trust store
            send(relay(server, username=USER, password=PASSWORD), message(), SENDER, "an@example.vn")
        assert len(server.messages()) == 1


def test_credentials_never_travel_in_clear() -> None:
    with MailServer(users={USER: PASSWORD}, auth_require_tls=False) as server:
        with pytest.raises(PermanentDeliveryError, match="does not offer STARTTLS"):
            send(relay(server, username=USER, password=PASSWORD), message(), SENDER, "an@example.vn")
        with pytest.raises(PermanentDeliveryError, match="without TLS"):
            send(relay(server, starttls="optional", username=USER, password=PASSWORD), message(), SENDER, "a@b.vn")
        assert server.messages() == []


def test_tls_from_the_first_byte(tls: Tls) -> None:
    with MailServer(implicit_tls=tls.server, users={USER: PASSWORD}) as server:
        assert server.url.startswith("smtps://")
        send(relay(server, username=USER, password=PASSWORD, ca_file=str(tls.ca_file)), message(), SENDER, "a@b.vn")
        (mail,) = server.messages()
    assert mail.tls and mail.login == USER


@pytest.mark.parametrize(
    ("mode", "error", "code"), [("4xx", TransientDeliveryError, 451), ("5xx", PermanentDeliveryError, 550)]
)
def test_a_failing_relay_is_classified_for_the_retry_policy(mode: str, error: type, code: int) -> None:
    with MailServer() as server:
        server.fail(mode, count=1)
        with pytest.raises(error) as caught:
            send(relay(server, starttls="none"), message(), SENDER, "an@example.vn")
        assert caught.value.status == code and str(code) in str(caught.value)
        if mode == "4xx":
            assert not isinstance(caught.value, PermanentDeliveryError)
        send(relay(server, starttls="none"), message(), SENDER, "an@example.vn")  # healed after one
        assert len(server.messages()) == 1


def test_an_unreachable_relay_is_transient() -> None:
    closed = SmtpRelay.from_url(f"smtp://127.0.0.1:{free_port()}", starttls="none", timeout_s=2)
    with pytest.raises(TransientDeliveryError, match="cannot reach"):
        send(closed, message(), SENDER, "an@example.vn")


def test_the_email_channel_sends_the_rendered_notice() -> None:
    notice = n.sample_notice(n.Event.SUPPLEMENT)
    rendered = n.Templates().render(notice, "email")
    request = OutboundRequest("000.00.00.G21", "m-1", "dossier.status", b"")
    with MailServer() as server:
        channel = EmailChannel(relay(server, starttls="none"), f"Một cửa tỉnh <{SENDER}>", reply_to="hotro@x.vn")
        sent, sent_type, answer = channel.send(request, notice, "an@example.vn", rendered)
        (mail,) = server.messages()
    assert sent.replace(b"\r\n", b"\n").strip() == mail.data.replace(b"\r\n", b"\n").strip()  # kept in the log
    assert sent_type == "message/rfc822" and answer.startswith("SMTP 250")
    parsed = mail.message
    assert parsed["Subject"] == rendered.subject and parsed["To"] == "Nguyễn Văn An <an@example.vn>"
    assert parsed["Message-ID"] == "<m-1.supplement.000.00.00.G21@daknong.gov.vn>"
    assert parsed["Auto-Submitted"] == "auto-generated" and parsed["Reply-To"] == "hotro@x.vn"
    assert mail.text == rendered.text and "Bổ sung bản vẽ mặt cắt công trình" in mail.text


def test_the_relay_logs_in_with_the_connectors_credentials_never_with_its_urls() -> None:
    """``smtp://user:password@host`` is not a way to give the login (the spec refuses it, ``endpoint-url-userinfo``):
    ``SmtpRelay.from_url`` takes none from the URL and refuses one that carries any, and neither its message nor
    the adapter registry's (a connector stored before the rule: ``UnusableAdapter``) shows the password."""
    from adapters.registry import UnusableAdapter, build_adapter
    from hub.exchange.routing import DestinationConfig

    with MailServer(users={USER: PASSWORD}, auth_require_tls=False) as server:
        host = server.url.split("://", 1)[1]
        with pytest.raises(ValueError, match=r"endpoint\.credentials") as refused:
            SmtpRelay.from_url(f"smtp://{USER}:{PASSWORD}@{host}", starttls="none")
        assert PASSWORD not in str(refused.value) and USER not in str(refused.value)
        cleartext = relay(server, starttls="none", username=USER, password=PASSWORD)
        send(cleartext, message(), SENDER, "an@example.vn")  # the login given as credentials
        (mail,) = server.messages()
        assert mail.login == USER and PASSWORD not in repr(cleartext)

        legacy = DestinationConfig(endpoint=f"smtp://{USER}:{PASSWORD}@{host}", transport="smtp", kind="notification",
                                   profile="notification/email-smtp",
                                   profile_values={"from_address": SENDER, "starttls": "none"})  # fmt: skip
        adapter = build_adapter(legacy)
        assert isinstance(adapter, UnusableAdapter)
        assert f"smtp://***@{host}" in adapter.reason and PASSWORD not in adapter.reason
