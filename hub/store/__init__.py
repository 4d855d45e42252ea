"""The durable store of the exchange core (SQLAlchemy Core + alembic migrations shipped in this package).

``Store(url)`` opens it (SQLite file by default, or PostgreSQL); ``Store.migrate()`` creates/upgrades the schema.
``Store`` (``facade.py``) delegates to the parts by concern: ``database``, ``intake``, ``dossiers``,
``deliveries``, ``dead_letters``, ``history``, ``traffic``, ``queries``; ``flow_records`` holds the partner flows'
records.
"""

from hub.store.database import DEFAULT_URL, MIGRATIONS_DIR, normalise_url
from hub.store.facade import Store
from hub.store.schema import DeliveryState, EventState
from hub.store.types import (
    AcceptOutcome,
    AcceptResult,
    DeadLetter,
    Delivered,
    DeliveryStatus,
    DeliveryView,
    DestinationStats,
    DossierParty,
    DossierRecord,
    IntakeDossier,
    MessageTrace,
    PartnerActivity,
    PendingDelivery,
    StatusUpdate,
    Submission,
    SyncReport,
    TimelineEntry,
    TraceEvent,
    message_status,
)

__all__ = [
    "DEFAULT_URL",
    "MIGRATIONS_DIR",
    "AcceptOutcome",
    "AcceptResult",
    "DeadLetter",
    "Delivered",
    "DeliveryState",
    "DeliveryStatus",
    "DeliveryView",
    "DestinationStats",
    "DossierParty",
    "DossierRecord",
    "EventState",
    "IntakeDossier",
    "MessageTrace",
    "PartnerActivity",
    "PendingDelivery",
    "StatusUpdate",
    "Store",
    "Submission",
    "SyncReport",
    "TimelineEntry",
    "TraceEvent",
    "message_status",
    "normalise_url",
]
