"""SMS through an HTTP gateway: the hub's own JSON protocol (no public source describes a Vietnamese SMS gateway's
interface: profile ``notification/sms-http``, every field name configurable, all unsourced).

One ``POST`` of a JSON object per message to the endpoint URL: ``{to_field: phone, text_field: text, sender_field:
sender_id, reference_field: message id}`` (an empty field name leaves that field out), with the endpoint's
password in ``auth_header`` as ``"<auth_scheme> <password>"`` when credentials are given.

Retry classification (``adapters.http.classify_status``): unreachable, timeouts, 408/425/429/5xx → transient;
other 4xx → permanent. With ``accepted_field`` set, a 2xx answer must be JSON whose field holds one of
``accepted_values``: another value is the gateway refusing the message (permanent), a body that is not such JSON
is malformed (transient, as for the other partners).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from adapters.http import classify_status, partner_pool, request_text
from hub.logs import mask_ids

DEFAULT_ACCEPTED = ("accepted", "ok", "0", "00")


@dataclass(frozen=True, slots=True)
class SmsProtocol:
    """The field names and rules of one gateway (the ``notification/sms-http`` profile's values)."""

    to_field: str = "to"
    text_field: str = "text"
    sender_field: str = "sender"
    sender_id: str = ""
    reference_field: str = "reference"
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    accepted_field: str = ""
    accepted_values: tuple[str, ...] = DEFAULT_ACCEPTED

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> SmsProtocol:
        accepted = tuple(v.strip() for v in values.get("accepted_values", "").split(",") if v.strip())
        return cls(
            to_field=values.get("to_field", "to"),
            text_field=values.get("text_field", "text"),
            sender_field=values.get("sender_field", "sender"),
            sender_id=values.get("sender_id", ""),
            reference_field=values.get("reference_field", "reference"),
            auth_header=values.get("auth_header", "Authorization"),
            auth_scheme=values.get("auth_scheme", "Bearer"),
            accepted_field=values.get("accepted_field", ""),
            accepted_values=accepted or DEFAULT_ACCEPTED,
        )

    def body(self, phone: str, text: str, reference: str) -> dict[str, Any]:
        body: dict[str, Any] = {self.to_field: phone, self.text_field: text}
        if self.sender_field and self.sender_id:
            body[self.sender_field] = self.sender_id
        if self.reference_field:
            body[self.reference_field] = reference
        return body


class SmsGateway:
    """A keep-alive client of one gateway URL; safe to share between threads."""

    def __init__(
        self,
        url: str,
        protocol: SmsProtocol | None = None,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        self.url = url
        self.protocol = protocol or SmsProtocol()
        self._token = token
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=max_connections)

    def __repr__(self) -> str:
        return f"SmsGateway({self.url!r})"

    def send(self, phone: str, text: str, reference: str) -> tuple[bytes, str]:
        """Post one SMS; returns the JSON body exactly as posted and the gateway's answer (first 200 characters)."""
        protocol = self.protocol
        sent = json.dumps(protocol.body(phone, text, reference), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Message-Id": reference}
        if self._token:
            scheme = f"{protocol.auth_scheme} " if protocol.auth_scheme else ""
            headers[protocol.auth_header] = f"{scheme}{self._token}"
        status, answer = request_text(self._pool, "POST", self.url, where=f"the SMS gateway {self.url}", body=sent,
                                      headers=headers)  # fmt: skip
        classify_status(status, mask_ids(answer))
        if protocol.accepted_field:
            try:
                data = json.loads(answer)
            except ValueError:
                data = None
            if not isinstance(data, dict) or protocol.accepted_field not in data:
                raise TransientDeliveryError(f"the SMS gateway answered a malformed reply: {answer[:80]!r}")
            verdict = str(data[protocol.accepted_field])
            if verdict not in protocol.accepted_values:
                shown = mask_ids(answer)[:200]
                field = protocol.accepted_field
                raise PermanentDeliveryError(f"the SMS gateway refused it: {field}={verdict!r} {shown}")
        return sent, f"HTTP {status} {mask_ids(answer)[:200]}".strip()

    def close(self) -> None:
        self._pool.clear()
