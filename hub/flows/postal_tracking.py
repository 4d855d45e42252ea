"""F4: poll each postal connector's tracking feed and emit one hub-signed ``postal.status`` per new event to the
connectors that receive it (the provincial system), never twice for the same event.

The cursor (the feed's last id) is kept per connector in ``postal_cursors``; each emitted event is a row in
``postal_events`` (unique per connector and event id). The envelope's message id derives from the connector and
the event id and is accepted through the normal pipeline before the cursor moves, so a crash in between makes the
next poll resend an envelope the store answers as a duplicate: nothing is routed twice.

Run by ``hub postal-poll`` (once, or every ``--every`` seconds).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from lxml import etree

from hub import packets
from hub.errors import RejectedError
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore, sign_payload
from hub.store import partners
from mappings.postal import PostalMappingError, status_from_event

log = logging.getLogger(__name__)

ID_NAMESPACE = uuid.UUID("0b3f2d6e-5a4c-4f1e-9c7d-2e8a1b6c3d50")
STATUS_TYPE = "postal.status"


@dataclass
class PollResult:
    connector: str
    seen: int = 0
    emitted: list[str] = field(default_factory=list)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def event_message_id(connector: str, event_id: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{connector}:{event_id}"))


class PostalTracker:
    """Polls postal connectors; ``adapters`` maps connector code → ``PostalAdapter``."""

    def __init__(self, store, broker, routing, signer: Signer, hub_code: str, adapters: dict) -> None:
        from hub.exchange.pipeline import Acceptor

        self.store = store
        self.hub_code = hub_code
        self.signer = signer
        self.adapters = adapters
        trust = TrustStore()
        trust.pin(hub_code, signer.certificate)
        self.acceptor = Acceptor(store, broker, routing, EnvelopeVerifier(trust))

    def poll(self, connector: str, *, limit: int = 100, max_pages: int = 50) -> PollResult:
        adapter = self.adapters[connector]
        result = PollResult(connector)
        last_id = partners.postal_cursor(self.store.engine, connector)
        for _ in range(max_pages):
            items, new_last = adapter.tracking(last_id, limit)
            if not items:
                break
            claims = []
            for item in items:
                result.seen += 1
                event_id = int(item["id"])
                message_id = event_message_id(connector, event_id)
                try:
                    status = status_from_event(item)
                    self._emit(message_id, status)
                except (PostalMappingError, RejectedError) as exc:
                    result.errors.append(f"event {event_id}: {exc}")
                    log.warning("postal event not emitted connector=%s event=%s: %s", connector, event_id, exc)
                claims.append((event_id, str(item.get("orderNumber", "")), str(item.get("statusCode", "")), message_id))
            new = partners.claim_postal_events(self.store.engine, connector, claims, new_last)
            result.emitted.extend(event_message_id(connector, e) for e in new)
            result.skipped += len(claims) - len(new)
            last_id = new_last
            if len(items) < limit:
                break
        return result

    def _emit(self, message_id: str, status) -> None:
        header = EnvelopeHeader(
            message_id=message_id,
            sender=self.hub_code,
            receiver=self.hub_code,
            message_type=STATUS_TYPE,
            dossier_code=status.dossier_code,
        )
        data = etree.tostring(sign_payload(self.signer, header, packets.to_element(status)))
        self.acceptor.accept(data)

    def poll_all(self) -> list[PollResult]:
        """Poll every connector; a connector that cannot be read is reported in its result's ``errors``."""
        from adapters.base import DeliveryError

        results = []
        for code in sorted(self.adapters):
            try:
                results.append(self.poll(code))
            except DeliveryError as exc:
                log.warning("postal tracking feed unreadable connector=%s: %s", code, exc)
                results.append(PollResult(code, errors=[str(exc)]))
        return results


def tracker_for(runtime) -> PostalTracker:
    """A tracker over every postal connector of the runtime's routing table."""
    from hub.runtime import adapter_for, hub_signer

    adapters = {code: adapter_for(cfg) for code, cfg in runtime.routing.destinations.items() if cfg.kind == "postal"}
    return PostalTracker(
        runtime.store,
        runtime.broker,
        runtime.routing,
        hub_signer(runtime.settings),
        runtime.settings.hub_code,
        adapters,
    )
