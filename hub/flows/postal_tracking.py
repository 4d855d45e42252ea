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
from typing import TYPE_CHECKING, cast

from hub.errors import MappingError, RejectedError
from hub.security.envelope import EnvelopeHeader
from hub.store import flow_records
from mappings.postal import status_from_event

if TYPE_CHECKING:
    from adapters.postal import PostalAdapter
    from hub.packets.postal import PostalStatus
    from hub.runtime import Runtime

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
    """Polls postal connectors; ``adapters`` maps connector code → ``PostalAdapter``. Events enter the pipeline
    through ``runtime.inject``: the hub signs them and does not verify its own signature again."""

    def __init__(self, runtime: Runtime, adapters: dict[str, PostalAdapter]) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.hub_code = runtime.settings.hub_code
        self.adapters = adapters

    def poll(self, connector: str, *, limit: int = 100, max_pages: int = 50) -> PollResult:
        """Emit each new tracking event of ``connector`` once, then move its cursor past them."""
        adapter = self.adapters[connector]
        result = PollResult(connector)
        last_id = flow_records.postal_cursor(self.store.engine, connector)
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
                except (MappingError, RejectedError) as exc:
                    result.errors.append(f"event {event_id}: {exc}")
                    log.warning("postal event not emitted connector=%s event=%s: %s", connector, event_id, exc)
                claims.append((event_id, str(item.get("orderNumber", "")), str(item.get("statusCode", "")), message_id))
            new = flow_records.claim_postal_events(self.store.engine, connector, claims, new_last)
            result.emitted.extend(event_message_id(connector, e) for e in new)
            result.skipped += len(claims) - len(new)
            last_id = new_last
            if len(items) < limit:
                break
        return result

    def _emit(self, message_id: str, status: PostalStatus) -> None:
        header = EnvelopeHeader(
            message_id=message_id,
            sender=self.hub_code,
            receiver=self.hub_code,
            message_type=STATUS_TYPE,
            dossier_code=status.dossier_code,
        )
        self.runtime.inject(header, status)

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


def tracker_for(runtime: Runtime) -> PostalTracker:
    """A tracker over every postal connector of the runtime's routing table."""
    adapters = {
        code: cast("PostalAdapter", adapter)
        for code, adapter in runtime.adapters().items()
        if runtime.routing.destinations[code].kind == "postal"
    }
    return PostalTracker(runtime, adapters)
