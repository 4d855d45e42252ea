"""A dossier's supplement rounds (hồ sơ bổ sung), read from its timeline: what the national portal's
``DanhSachHoSoBoSung`` lists (TH-SI:187-203), so that it learns a due date moved lawfully (Quảng Nam Điều 13).

A round opens with a status update to 5 (supplement requested: who asked, what for, when) and closes with the next
update that takes the dossier elsewhere: back to 4 is the supplement received (when, what was noted, and the new
due date it brought with the one it replaced); 7 or 8 close it unanswered. A repeated 5 while a round is open is
the same request again. A received supplement with a new due date but no request on the timeline (the request
went unreported) is a round of its own. Only updates that changed the dossier count (applied or corrected; the
provincial system's ``dossier.sync`` lists its own supplements).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

SUPPLEMENT_REQUESTED = 5
PROCESSING = 4
COUNTED = ("applied", "corrected")


class TimelineLike(Protocol):
    """What a round is read from (``hub.store.TimelineEntry``)."""

    @property
    def message_id(self) -> str | None: ...
    @property
    def status(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def outcome(self) -> str: ...
    @property
    def detail(self) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class SupplementRound:
    """One supplement round; ``round_id`` is the id of the update that opened it (or closed it, without a request)."""

    round_id: str
    requested_at: datetime | None = None
    requested_by: str | None = None
    content: str | None = None
    received_at: datetime | None = None
    receipt_note: str | None = None
    previous_due_at: datetime | None = None
    new_due_at: datetime | None = None
    closed_status: int | None = None  # the status that closed it (4 received, 7 withdrawn, 8 stopped)

    @property
    def received(self) -> bool:
        return self.closed_status == PROCESSING


def utc_time(value: object) -> datetime | None:
    """A time as a timeline entry's JSON detail holds it (ISO 8601, ``Z`` for UTC; a naive one is UTC), else
    ``None`` (absent or unreadable: a detail is what a partner sent)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return utc_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _step(detail: Mapping[str, Any]) -> Mapping[str, Any]:
    step = detail.get("step")
    return step if isinstance(step, Mapping) else {}


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _round_id(entry: TimelineLike) -> str:
    return entry.message_id or f"BS-{entry.at.astimezone(UTC):%Y%m%d%H%M%S}"


def supplement_rounds(entries: Iterable[TimelineLike]) -> list[SupplementRound]:
    """The rounds of a dossier's timeline ``entries`` (any order; read in time order), oldest first."""
    counted = sorted((e for e in entries if e.outcome in COUNTED), key=lambda e: e.at)
    rounds: list[SupplementRound] = []
    open_round: SupplementRound | None = None
    for entry in counted:
        detail = entry.detail or {}
        if entry.status == SUPPLEMENT_REQUESTED:
            if open_round is None:
                step = _step(detail)
                open_round = SupplementRound(
                    round_id=_round_id(entry),
                    requested_at=entry.at,
                    requested_by=_text(step.get("actor")),
                    content=_text(step.get("content")),
                )
            continue
        new_due = utc_time(detail.get("new_due_at"))
        if open_round is None and not (entry.status == PROCESSING and new_due is not None):
            continue
        received = entry.status == PROCESSING
        closing = open_round or SupplementRound(round_id=_round_id(entry))
        rounds.append(
            replace(
                closing,
                closed_status=entry.status,
                received_at=entry.at if received else None,
                receipt_note=_text(_step(detail).get("content")) if received else None,
                previous_due_at=utc_time(detail.get("previous_due_at")) if received else None,
                new_due_at=new_due if received else None,
            )
        )
        open_round = None
    if open_round is not None:
        rounds.append(open_round)
    return rounds
