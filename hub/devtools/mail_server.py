"""A local SMTP server that keeps what it receives: the mail relay of the demo and the tests (``aiosmtpd``).

Citizen notifications go out over real SMTP (``adapters.smtp``); this server is what they reach on loopback. It
speaks ESMTP with, as asked, STARTTLS (``tls``: a server ``SSLContext``; ``require_starttls``), TLS from the first
byte (``implicit_tls``) and AUTH PLAIN/LOGIN against ``users`` (only over TLS unless ``auth_require_tls=False``).
Every message accepted is kept (``messages()``, ``received()`` as JSON) with its envelope, whether it came over TLS
and who logged in; ``wait_for`` polls for one.

``fail("4xx" | "5xx", count=N)`` makes the next N recipients (every one without ``count``, until ``heal()``) be
answered ``451 4.3.0`` (try again later) or ``550 5.1.1`` (no such mailbox): what a relay that is busy, or refuses
the address, answers.

In a thread (``start``/``stop`` or a context manager), on a free port with ``port=0``::

    with MailServer() as mail:
        ...  # connector endpoint mail.url ("smtp://127.0.0.1:<port>"); mail.messages()[0].text
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

#: The demo's port (``hub demo``; shifted like the simulators' by ``--simulator-port-offset``).
DEFAULT_PORT = 9025
FAILURES = {
    "4xx": "451 4.3.0 Told to fail: try again later",
    "5xx": "550 5.1.1 Told to fail: no such mailbox",
}


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the server accepted, as it came (``data``: the DATA phase's bytes)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None
    at: datetime

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        """The plain-text body, decoded (quoted-printable or base64, any charset), with ``\n`` line ends."""
        body = self.message.get_body(("plain",))
        return "" if body is None else str(cast(EmailMessage, body).get_content()).replace("\r\n", "\n")

    def as_dict(self) -> dict[str, Any]:
        message = self.message
        return {
            "mail_from": self.mail_from, "rcpt_tos": list(self.rcpt_tos), "tls": self.tls, "login": self.login,
            "at": self.at.isoformat(), "from": str(message["From"] or ""), "to": str(message["To"] or ""),
            "subject": self.subject, "message_id": str(message["Message-ID"] or ""), "text": self.text,
        }  # fmt: skip


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        refusal = self.server._take_failure()
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        kept = ReceivedMail(
            mail_from=str(envelope.mail_from), rcpt_tos=tuple(envelope.rcpt_tos), data=bytes(envelope.content),
            tls=session.ssl is not None or self.server.implicit, login=login, at=datetime.now(UTC),
        )  # fmt: skip
        number = self.server._keep(kept)
        return f"250 2.0.0 OK: queued as LT{number:06d}"


class _Controller(Controller):
    """``Controller`` that learns the port the system picked when asked for port 0."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class MailServer:
    """An SMTP server on ``host:port`` in a thread (see the module docstring)."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        users: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
        auth_require_tls: bool = True,
    ) -> None:
        self.host = host
        self.users = dict(users or {})
        self.implicit = implicit_tls is not None
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._failure: tuple[str, int | None] | None = None
        self._running = False
        self._controller = _Controller(
            _Handler(self), hostname=host, port=port, ssl_context=implicit_tls, tls_context=tls,
            require_starttls=require_starttls, authenticator=self._authenticate if self.users else None,
            # aiosmtpd counts only STARTTLS as TLS: over implicit TLS the whole connection is encrypted already
            auth_require_tls=auth_require_tls and not self.implicit, auth_exclude_mechanism=["CRAM-MD5"],
            server_hostname="mail.lienthong.test",
        )  # fmt: skip

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def url(self) -> str:
        """The connector endpoint that reaches this server."""
        return f"{'smtps' if self.implicit else 'smtp'}://{self.host}:{self.port}"

    def start(self) -> MailServer:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop serving (a second call does nothing)."""
        if self._running:
            self._running = False
            self._controller.stop()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ what it received

    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def received(self) -> dict[str, Any]:
        """What was received, JSON-ready (the simulators' ``received()`` shape: one list)."""
        return {"messages": [m.as_dict() for m in self.messages()]}

    def wait_for(
        self, predicate: Callable[[ReceivedMail], bool] = lambda _: True, timeout_s: float = 10.0
    ) -> ReceivedMail:
        """The first message matching ``predicate``, polling until ``timeout_s``; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            for mail in self.messages():
                if predicate(mail):
                    return mail
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching mail within {timeout_s:g}s ({len(self.messages())} received)")
            time.sleep(0.05)

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._failure = None

    # ------------------------------------------------------------ failures

    def fail(self, mode: str, *, count: int | None = None) -> None:
        if mode not in FAILURES:
            raise ValueError(f"unknown failure mode {mode!r} (one of {', '.join(FAILURES)})")
        with self._lock:
            self._failure = (mode, count)

    def heal(self) -> None:
        with self._lock:
            self._failure = None

    def _take_failure(self) -> str | None:
        with self._lock:
            if self._failure is None:
                return None
            mode, count = self._failure
            if count is not None:
                if count <= 0:
                    self._failure = None
                    return None
                self._failure = (mode, count - 1)
            return FAILURES[mode]

    def _keep(self, mail: ReceivedMail) -> int:
        with self._lock:
            self._messages.append(mail)
            return len(self._messages)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        if user in self.users and self.users[user] == password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)
