"""Email over SMTP with the standard library (``smtplib``): any relay a province runs, one connection per message.

The connector's endpoint names the relay: ``smtp://host[:587]`` — upgraded with STARTTLS (RFC 3207) as
``starttls`` says: ``required`` (the default: a relay that does not offer it is refused), ``optional`` or ``none``
(clear text, a trusted local relay) — or ``smtps://host[:465]`` (TLS from the first byte). With credentials the
hub logs in (AUTH, RFC 4954), never in clear unless ``starttls`` is ``none``; the credentials are the connector's
``endpoint.credentials``, never part of the URL. The relay's certificate is checked
against ``ca_file`` (PEM), else the system's trust store.

``send`` speaks MAIL / RCPT / DATA itself (not ``sendmail``) to keep the relay's answer to DATA (``250 … queued
as …``) for the delivery's record. Retry classification (the worker retries transient errors, dead-letters
permanent ones):

- transient: the relay unreachable, timing out or hanging up; any 4xx reply (RFC 5321 §4.2.1: "transient
  negative completion", e.g. 421, 450, 451, 452); a TLS handshake that breaks off;
- permanent: any 5xx reply (550 no such mailbox, 554 refused, 535 authentication failed, …); no STARTTLS where it
  is required; AUTH not offered where credentials are given; a certificate that does not verify.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Literal
from urllib.parse import urlsplit

from adapters.base import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from hub.security.credentials import redact_url, url_has_userinfo

StartTls = Literal["required", "optional", "none"]
STARTTLS_MODES: tuple[str, ...] = ("required", "optional", "none")
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    """Where and how to hand mail over. ``password`` is never part of ``repr``."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: StartTls = "required"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout_s: float = 10.0

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpRelay({scheme}://{self.host}:{self.port}, starttls={self.starttls}, user={self.username!r})"

    @property
    def where(self) -> str:
        return f"the SMTP relay {self.host}:{self.port}"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        starttls: str = "required",
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
    ) -> SmtpRelay:
        """The relay of an ``smtp://`` or ``smtps://`` URL; ``ValueError`` for anything else. Credentials come from
        ``username``/``password`` (the connector's ``endpoint.credentials``), never from the URL: a URL is shown
        in listings and messages, so one with ``user:password@`` is refused (the connector spec refuses it too,
        ``endpoint-url-userinfo``), and no message here repeats it."""
        if url_has_userinfo(url):
            raise ValueError(f"{redact_url(url)} carries user information: give the relay's login as "
                             "endpoint.credentials, never in the URL")  # fmt: skip
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{redact_url(url)!r} is not an smtp:// or smtps:// URL with a host")
        if starttls not in STARTTLS_MODES:
            raise ValueError(f"starttls must be one of {', '.join(STARTTLS_MODES)}, not {starttls!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            starttls=starttls,  # type: ignore[arg-type]  # checked above
            username=username or None,
            password=password or None,
            ca_file=ca_file or None,
            timeout_s=timeout_s,
        )

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def classify_reply(code: int, text: str, where: str) -> DeliveryError:
    """An SMTP reply that is not a success: 4xx transient, anything else permanent."""
    detail = f"{where} answered {code} {text}".strip()
    if 400 <= code < 500:
        return TransientDeliveryError(detail, status=code)
    return PermanentDeliveryError(detail, status=code)


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply).replace("\n", " ")[:300]


def _open(relay: SmtpRelay) -> smtplib.SMTP:
    """A connection to the relay, greeted, upgraded to TLS as configured, logged in when credentials are given."""
    if relay.implicit_tls:
        conn: smtplib.SMTP = smtplib.SMTP_SSL(
            relay.host, relay.port, timeout=relay.timeout_s, context=relay.tls_context()
        )
    else:
        conn = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_s)
    try:
        conn.ehlo()
        secure = relay.implicit_tls
        if not secure and relay.starttls != "none":
            if conn.has_extn("starttls"):
                conn.starttls(context=relay.tls_context())
                conn.ehlo()
                secure = True
            elif relay.starttls == "required":
                raise PermanentDeliveryError(f"{relay.where} does not offer STARTTLS (starttls: required)")
        if relay.username:
            if not secure and relay.starttls != "none":
                raise PermanentDeliveryError(f"{relay.where}: refusing to send credentials without TLS")
            if not conn.has_extn("auth"):
                raise PermanentDeliveryError(f"{relay.where} does not offer AUTH, but credentials are configured")
            conn.login(relay.username, relay.password or "")
    except BaseException:
        _close(conn)
        raise
    return conn


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def _classified(relay: SmtpRelay, exc: BaseException) -> DeliveryError:
    """What an exception of ``smtplib``, ``ssl`` or the socket means for the retry policy."""
    where = relay.where
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        code, text = min(replies, key=lambda r: r[0]) if replies else (550, b"recipient refused")
        return classify_reply(code, _text(text), where)
    if isinstance(exc, smtplib.SMTPResponseException):  # SMTPAuthenticationError, SMTPDataError, SMTPSenderRefused…
        return classify_reply(exc.smtp_code, _text(exc.smtp_error), where)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentDeliveryError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"{where}: its certificate does not verify: {exc.verify_message}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientDeliveryError(f"timed out talking to {where}")
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError | ssl.SSLError | OSError):
        return TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}: {exc}")
    return TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc}")


def send(relay: SmtpRelay, message: EmailMessage, sender: str, recipient: str) -> tuple[bytes, str]:
    """Hand ``message`` to the relay for ``recipient`` (envelope sender ``sender``); returns the bytes sent (CRLF
    lines, as the DATA phase carried them before dot-stuffing) and the relay's answer to DATA. Raises
    ``TransientDeliveryError`` or ``PermanentDeliveryError`` (see the module docstring)."""
    data = message.as_bytes(policy=SMTP_POLICY)
    try:
        conn = _open(relay)
        try:
            code, reply = conn.mail(sender)
            if code != 250:
                raise classify_reply(code, _text(reply), relay.where)
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                raise classify_reply(code, _text(reply), relay.where)
            code, reply = conn.data(data)
            if code != 250:
                raise classify_reply(code, _text(reply), relay.where)
        finally:
            _close(conn)
    except Exception as exc:
        raise _classified(relay, exc) from None
    return data, f"{code} {_text(reply)}"


def probe(relay: SmtpRelay) -> str:
    """Greet the relay (and upgrade and log in as ``send`` would), then leave: what ``hub connector check`` says of
    an SMTP endpoint. Raises ``TransientDeliveryError`` / ``PermanentDeliveryError`` like ``send``."""
    try:
        conn = _open(relay)
        try:
            features = sorted(k.upper() for k in conn.esmtp_features)
            tls = "TLS" if isinstance(conn.sock, ssl.SSLSocket) else "clear"
            code, _ = conn.noop()
        finally:
            _close(conn)
    except Exception as exc:
        raise _classified(relay, exc) from None
    return f"{relay.where} answered {code} over {tls} (ESMTP {', '.join(features) or 'none'})"
