"""The provincial system simulator (one-stop system + provincial portal).

It receives the hub's signed envelopes at ``POST /inbox`` (see ``hub.devtools.simulators.envelopes.EnvelopeInbox``:
signature checked against ``trust`` when given, deduplicated on ``X-Message-Id``, kept for ``GET /_received``),
and sends its own envelopes to the hub, signed with its key: ``submit(model)`` (or the module-level ``send``
helper for envelope bytes already signed).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from hub.devtools.simulators.envelopes import PartnerSystem, SendResult, send, signed_envelope

__all__ = ["ProvincialSimulator", "send"]


class ProvincialSimulator(PartnerSystem):
    """The provincial system on 127.0.0.1: an envelope inbox, and a sender of its own signed envelopes."""

    name: ClassVar[str] = "provincial"
    default_code: ClassVar[str] = "000.00.00.H12"

    def envelope(self, model: BaseModel, *, message_id: str | None = None, correlation_id: str = "") -> bytes:
        """``model`` in an envelope from this system to the hub, signed with its key."""
        if self.signer is None:
            raise RuntimeError("the provincial simulator was given no signing key")
        return signed_envelope(
            self.signer,
            sender=self.code,
            receiver=self.hub_code,
            payload=model,
            message_id=message_id,
            correlation_id=correlation_id,
        )

    def submit(self, model: BaseModel, *, message_id: str | None = None) -> SendResult:
        """Sign ``model`` and POST it to the hub's ``/api/v1/messages``."""
        if self.hub_url is None or self.api_key is None:
            raise RuntimeError("the provincial simulator was given no hub URL or API key")
        return send(self.envelope(model, message_id=message_id), self.api_key, self.hub_url)
