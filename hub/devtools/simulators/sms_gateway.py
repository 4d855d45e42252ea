"""The SMS gateway simulator: the hub's own SMS protocol (profile ``notification/sms-http``; no public source
describes a Vietnamese SMS gateway's interface, so this is ours, with the profile's default field names).

- ``POST /sms`` with ``Authorization: Bearer <token>`` (401 otherwise) and a JSON object ``{to, text, sender?,
  reference?}``: ``to`` a phone number (``+?`` 8–15 digits), ``text`` non-empty (at most 1000 characters: a long
  SMS of several parts); any other field, or a missing or malformed one, is 400 ``{status: "rejected", error}``.
  Accepted: 200 ``{status: "accepted", id}``; the same ``reference`` again is answered with the first message's
  ``id`` and not sent twice (a resent notification reaches the phone once).

``GET /_received`` → ``{"messages": [{id, to, text, sender, reference, at}]}``; the failure modes of every
simulator apply (``/_control``).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from typing import Any, ClassVar

from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer

DEFAULT_TOKEN = "lienthong-sms-demo-token"  # noqa: S105 - the simulator's demo credential
FIELDS = frozenset({"to", "text", "sender", "reference"})
MAX_TEXT = 1000
_PHONE = re.compile(r"\+?[0-9]{8,15}")


class SmsGatewaySimulator(SimulatorServer):
    name: ClassVar[str] = "sms_gateway"
    path: ClassVar[str] = "/sms"

    def __init__(self, port: int = 0, *, token: str | None = DEFAULT_TOKEN) -> None:
        super().__init__(port)
        self.token = token
        self._data_lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return {"messages": [dict(m) for m in self.messages]}

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self.messages.clear()

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        if path != self.path:
            handler.reply(404, {"error": f"no POST {path}"})
            return
        if self.token is not None and handler.headers.get("Authorization") != f"Bearer {self.token}":
            handler.reply(401, {"status": "rejected", "error": "missing or wrong bearer token"})
            return
        try:
            data = json.loads(body)
        except ValueError:
            handler.reply(400, {"status": "rejected", "error": "the body is not JSON"})
            return
        error = _problem(data)
        if error is not None:
            handler.reply(400, {"status": "rejected", "error": error})
            return
        with self._data_lock:
            reference = data.get("reference")
            earlier = next((m for m in self.messages if reference and m["reference"] == reference), None)
            if earlier is None:
                earlier = {"id": f"SMS-{len(self.messages) + 1:06d}", "to": data["to"], "text": data["text"],
                           "sender": data.get("sender"), "reference": reference,
                           "at": datetime.now(UTC).isoformat()}  # fmt: skip
                self.messages.append(earlier)
        handler.reply(200, {"status": "accepted", "id": earlier["id"]})


def _problem(data: object) -> str | None:
    """What is wrong with a request body, ``None`` when nothing is."""
    if not isinstance(data, dict):
        return "the body is not a JSON object"
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}"
    to, text = data.get("to"), data.get("text")
    if not isinstance(to, str) or not _PHONE.fullmatch(to):
        return "'to' must be a phone number"
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return f"'text' must be 1 to {MAX_TEXT} characters"
    for name in ("sender", "reference"):
        if name in data and not isinstance(data[name], str):
            return f"'{name}' must be a string"
    return None
