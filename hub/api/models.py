"""The API's response models, built from the store's own types so each shape is written once.

``out_model`` copies a store dataclass's fields (minus internal ones such as ``message_pk``) into a pydantic
model named for the OpenAPI document; ``overrides`` re-type a field (enums are plain strings on the wire) or add
one the dataclass derives (a property such as ``pending``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, get_type_hints

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from hub.logs import mask_personal
from hub.store import DeadLetter, DeliveryStatus, DestinationStats, MessageTrace, TimelineEntry, TraceEvent
from hub.store.message_log import LoggedMessage

EXAMPLE_ID = "7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60"


def out_model(
    source: type,
    name: str,
    *,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> type[BaseModel]:
    """A response model with ``source``'s fields, read from its attributes (``Model.model_validate(row)``)."""
    hints = get_type_hints(source)
    overrides = dict(overrides or {})
    skipped = set(exclude)
    names = list(fields) if fields is not None else [f.name for f in dataclasses.fields(source)]
    names += [n for n in overrides if n not in names]
    definitions: dict[str, Any] = {n: (overrides.get(n, hints.get(n)), ...) for n in names if n not in skipped}
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(from_attributes=True), **definitions)
    return model


class WarningOut(BaseModel):
    """Advice about an accepted message (it was accepted all the same)."""

    path: str = Field(description="Where in the envelope, e.g. /envelope/body/procedureCode")
    rule: str = Field(description="`procedure-unknown`: the dossier names a procedure the catalogue does not list")
    message: str


class AcceptedOut(BaseModel):
    message_id: str
    status: str = Field(description="queued, delivering, retrying, delivered, dead (or accepted: no destinations)")
    duplicate: bool = Field(False, description="True when this id and content were accepted before")
    destinations: list[str] = Field(default_factory=list)
    status_update: str | None = Field(
        None,
        description="For a new dossier.status or dossier.sync: `applied`, or `stale` (older than the dossier's last "
        "applied update: recorded on its timeline, not routed). An illegal transition is refused with 422 "
        "(rule `status-transition`).",
    )
    warnings: list[WarningOut] = Field(
        default_factory=list,
        description="Advice, not a refusal: a dossier.sync naming a procedure the national portal's procedure "
        "catalogue does not list (rule `procedure-unknown`; none while the catalogue has never been synced). Also "
        "recorded as a `warning` event of the message.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"message_id": EXAMPLE_ID, "status": "queued", "duplicate": False, "destinations": ["000.00.00.H12"]},
                {"message_id": EXAMPLE_ID, "status": "queued", "duplicate": False, "destinations": ["000.00.00.G22"],
                 "warnings": [{"path": "/envelope/body/procedureCode", "rule": "procedure-unknown",
                               "message": "procedure 1.009994 is not in the national portal's procedure catalogue "
                                          "(hub catalogue sync)"}]},
            ]
        }
    }


#: Free text a partner may have written (errors, event details): personal IDs masked in every answer.
MaskedText = Annotated[str, AfterValidator(mask_personal)]

EventOut = out_model(TraceEvent, "EventOut", overrides={"detail": MaskedText})
DeliveryOut = out_model(
    DeliveryStatus,
    "DeliveryOut",
    exclude={"outbound_digest"},
    overrides={"state": str, "last_error": MaskedText | None},
)
TraceOut = out_model(
    MessageTrace,
    "TraceOut",
    fields=(
        "message_id sender correlation_id message_type receiver dossier_code digest received_at status events "
        "deliveries"
    ).split(),
    overrides={
        "digest": Annotated[str, Field(description="SHA-256 (hex) of the envelope as received")],
        "events": list[EventOut],  # type: ignore[valid-type]
        "deliveries": list[DeliveryOut],  # type: ignore[valid-type]
    },
)
TimelineEntryOut = out_model(
    TimelineEntry,
    "TimelineEntryOut",
    fields="status at outcome reason source message_id recorded_at detail".split(),
    overrides={
        "outcome": Annotated[
            str,
            Field(
                description="applied, stale, rejected or corrected (an operator's correction: detail names "
                "corrected_by, reason, status_before); synced on entries a dossier.sync left before syncs went "
                "through the status machine; notified or notify_skipped for a citizen notification about the update "
                "(source: the notification connector)"
            ),
        ],
        "detail": Annotated[
            dict[str, Any] | None,
            Field(
                description="What the step said beyond its status, as in the dossier.status packet (snake_case): "
                "step {actor, title, department, content, handed_to, partner_state, sent_back}, step_due, "
                "partner_step, step_limit, new_due_at, paused, finish_kind, reason, corrects, attachments [{name, "
                "url, sha256, file_type, copies, originals}]; empty ones left out; null when none. A dossier.sync's "
                "entry holds reported_by, its due_at, rejected_at and reason; an entry that moved the dossier's due "
                "date holds the one it replaced, previous_due_at"
            ),
        ],
    },
)
QueueOut = out_model(
    DestinationStats,
    "QueueOut",
    fields="destination queued delivering retrying delivered dead pending oldest_pending_age_s rate_per_s".split(),
    overrides={"pending": int, "rate_per_s": float},
)
DeadLetterOut = out_model(DeadLetter, "DeadLetterOut", exclude={"message_pk"}, overrides={"last_error": MaskedText})


DossierMessageOut = out_model(
    MessageTrace,
    "DossierMessageOut",
    fields="message_id sender message_type received_at status".split(),
    overrides={"deliveries": list[DeliveryOut]},  # type: ignore[valid-type]
)


class DossierOut(BaseModel):
    dossier_code: str
    status: int | None = Field(description="The last applied status (1–10), null before the first one")
    status_at: datetime | None
    due_at: datetime | None = Field(
        None,
        description="The current due date (NgayHenTra): the dossier.sync's, moved by a supplement received with a new "
        "one (the update that moved it keeps the date it replaced in its detail, previous_due_at)",
    )
    updates: list[TimelineEntryOut]  # type: ignore[valid-type]
    messages: list[DossierMessageOut]  # type: ignore[valid-type]


LoggedMessageOut = out_model(
    LoggedMessage,
    "LoggedMessageOut",
    exclude={"message_pk"},
    overrides={
        "status": Annotated[str, Field(description="accepted, queued, delivering, retrying, delivered or dead")],
        "destinations": Annotated[list[str], Field(description="The destinations it was routed to")],
    },
)


class MessageLogOut(BaseModel):
    """A page of the message log, newest first."""

    items: list[LoggedMessageOut]  # type: ignore[valid-type]
    total: int = Field(description="How many messages match the filters (a lower bound when total_exact is false)")
    total_exact: bool = Field(True, description="False when counting stopped at the cap (100,000)")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class ReplayOut(BaseModel):
    dead_letter_id: int
    message_id: str
    destination: str
    replayed_by: str
    status: str = "queued"


class ConnectorOut(BaseModel):
    code: str
    name: str
    kind: str
    enabled: bool
    sends: list[str]
    receives: list[str]

    @classmethod
    def of(cls, connector: Any, **extra: Any) -> ConnectorOut:
        """The answer for a registered connector (``Registry`` entry)."""
        return cls(
            code=connector.code,
            name=connector.name,
            kind=str(connector.kind),
            enabled=connector.enabled,
            sends=list(connector.spec.sends),
            receives=list(connector.spec.receives),
            **extra,
        )


class ConnectorCreatedOut(ConnectorOut):
    api_key: str | None = Field(None, description="Shown once: store it now, the hub keeps only its hash")


class LookupAuditOut(BaseModel):
    id: int
    at: datetime
    requester: str
    message_id: str | None
    request_id: str | None
    officer_id: str | None
    dossier_code: str | None
    procedure_code: str | None
    purpose: str | None
    subject: str | None
    source: str | None
    result: str
    detail: str
    fields: list[str] | None
    record_digest: str | None
    duration_ms: int | None


class RefusalOut(BaseModel):
    id: int
    at: datetime
    connector: str
    kind: str
    reference: str | None
    rule: str
    reason: str
    payload_digest: str
