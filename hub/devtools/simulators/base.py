"""What every partner simulator shares: a real HTTP server on 127.0.0.1 that remembers what it received and can
be told to fail.

Control protocol (every simulator):

- ``GET /_received`` → JSON of what the simulator received (its own shape, see each simulator);
- ``POST /_control {"mode": M, "seconds": N | "count": N, "delay_ms": D, "status": S}`` makes the next ``count``
  protocol requests (or every one for ``seconds``; without either, until told ``{"mode": "ok"}``) fail with
  mode ``M``:

  ========== ============================================================================
  ``down``      the connection is reset before any answer (the partner is unreachable)
  ``slow``      answered normally after ``delay_ms`` (default 2000 ms)
  ``5xx``       HTTP ``status`` (default 503) with a JSON error
  ``4xx``       HTTP ``status`` (default 400) with a JSON error
  ``malformed`` HTTP 200 with a body that is not what the protocol promises
  ``ok``        heal: answer normally again
  ========== ============================================================================

- ``POST /_reset`` forgets what was received and heals.

The same is available in Python: ``sim.fail("5xx", count=2)``, ``sim.heal()``, ``sim.received()``.
Servers use ``TCP_NODELAY`` (like ``hub.devtools.sink``) and HTTP/1.1 keep-alive, and run in a daemon thread
(``start()``/``stop()``, or as a context manager) or in the foreground (``serve_forever()``).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar, TypedDict, Unpack

from hub.devtools.partner_http import PartnerRequestHandler

FAILURE_MODES = ("down", "slow", "5xx", "4xx", "malformed", "ok")
DEFAULT_SLOW_MS = 2000.0


class FailureOptions(TypedDict, total=False):
    """How long and how a failure mode applies (see ``FailureControl.set``)."""

    seconds: float | None
    count: int | None
    delay_ms: float | None
    status: int | None


@dataclass
class Failure:
    """What the next protocol request should suffer (``None``: answer normally)."""

    mode: str
    status: int = 0
    delay_s: float = 0.0


class FailureControl:
    """The simulator's current failure mode, for a number of requests or a period."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.mode = "ok"
        self.status = 0
        self.delay_s = 0.0
        self.count: int | None = None
        self.until: float | None = None
        self.failed = 0

    def set(
        self,
        mode: str,
        *,
        seconds: float | None = None,
        count: int | None = None,
        delay_ms: float | None = None,
        status: int | None = None,
    ) -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r} (one of {', '.join(FAILURE_MODES)})")
        with self._lock:
            self.mode = mode
            self.count = None if count is None else int(count)
            self.until = None if seconds is None else self._clock() + float(seconds)
            default_status = {"5xx": 503, "4xx": 400}.get(mode, 0)
            self.status = int(status) if status else default_status
            slow_ms = DEFAULT_SLOW_MS if delay_ms is None and mode == "slow" else (delay_ms or 0.0)
            self.delay_s = float(slow_ms) / 1000

    def take(self) -> Failure | None:
        """The failure to apply to this request (consuming one of ``count``), or ``None``."""
        with self._lock:
            if self.mode == "ok":
                return None
            if self.until is not None and self._clock() > self.until:
                self.mode = "ok"
                return None
            if self.count is not None:
                if self.count <= 0:
                    self.mode = "ok"
                    return None
                self.count -= 1
            self.failed += 1
            return Failure(self.mode, self.status, self.delay_s)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"mode": self.mode, "count": self.count, "failed": self.failed}


class SimulatorHandler(PartnerRequestHandler):
    """Dispatches ``/_control``, ``/_received`` and ``/_reset``, applies the failure mode, and hands protocol
    requests to the server's ``handle_get``/``handle_post``."""

    server: SimulatorServer

    # ------------------------------------------------------------ replies

    def reply(self, status: int, body: bytes | dict | list, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_body(status, data, content_type)

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP reset, as an unreachable partner would."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        self.connection.close()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:  # the connection was reset on purpose ("down")
            pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # ------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/_received":
            self.reply(200, self.server.received())
            return
        if self._apply_failure():
            return
        self.server.handle_get(self, path)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path == "/_control":
            try:
                command = json.loads(body or b"{}")
                self.server.failures.set(
                    str(command.get("mode", "ok")),
                    seconds=command.get("seconds"),
                    count=command.get("count"),
                    delay_ms=command.get("delay_ms"),
                    status=command.get("status"),
                )
                self.server.control(command)
            except (ValueError, TypeError, AttributeError) as exc:
                self.reply(400, {"error": str(exc)})
                return
            self.reply(200, {"ok": True, **self.server.failures.describe()})
            return
        if path == "/_reset":
            self.server.reset()
            self.reply(200, {"ok": True})
            return
        if not path.startswith("/_") and self._apply_failure():  # /_… paths are the test's, never failed
            return
        self.server.handle_post(self, path, body)

    def _apply_failure(self) -> bool:
        """Apply the current failure mode; True when the request has been dealt with (failed)."""
        failure = self.server.failures.take()
        if failure is None:
            return False
        if failure.mode == "down":
            self._reset_connection()
            return True
        if failure.mode == "slow":
            time.sleep(failure.delay_s)
            return False  # then answer normally
        if failure.mode == "malformed":
            self.reply(200, b"<html><body>Service Unavailable</body", "application/json")
            return True
        self.reply(failure.status, {"error": f"told to fail with HTTP {failure.status}"})
        return True


class SimulatorServer(ThreadingHTTPServer):
    """Base class of the partner simulators; subclasses implement ``handle_post``/``handle_get``,
    ``received`` and ``reset``."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    name: ClassVar[str] = "simulator"
    #: The protocol path the hub delivers to (joined to the base URL in ``url``).
    path: ClassVar[str] = "/"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), SimulatorHandler)
        self.lock = threading.RLock()
        self.failures = FailureControl()
        self._thread: threading.Thread | None = None

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away, or a reset on purpose: quiet
            super().handle_error(request, client_address)

    # ------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL the hub's connector endpoint points at."""
        return self.base_url + self.path

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimulatorServer:
        """Serve in a daemon thread (returns ``self``)."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sim-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ failure control in Python

    def fail(self, mode: str, **options: Unpack[FailureOptions]) -> None:
        self.failures.set(mode, **options)

    def heal(self) -> None:
        self.failures.set("ok")

    # ------------------------------------------------------------ to implement

    def control(self, command: dict[str, Any]) -> None:
        """Simulator-specific keys of a ``/_control`` command (the failure keys are already applied)."""

    def received(self) -> dict[str, Any]:
        raise NotImplementedError

    def reset(self) -> None:
        self.heal()

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        handler.reply(404, {"error": f"no GET {path}"})

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        handler.reply(404, {"error": f"no POST {path}"})
