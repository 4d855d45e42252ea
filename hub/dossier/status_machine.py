"""The dossier status machine (TrangThaiHoSo, as on the national portal).

Legal transitions (current -> allowed next statuses)::

    1 NEW                            -> 2, 3, 7
    2 RECEIVED                       -> 2, 4, 5, 6, 7, 8, 9
    4 PROCESSING                     -> 4, 5, 6, 7, 8, 9
    5 SUPPLEMENT_REQUESTED           -> 4, 5, 7, 8
    6 FINANCIAL_OBLIGATION_REQUESTED -> 4, 6, 7, 8
    8 PROCESSING_STOPPED             -> 10
    9 DONE                           -> 10
    3 NOT_RECEIVED, 7 WITHDRAWN, 10 RESULT_RETURNED: terminal

A repeated 2, 4, 5 or 6 is a new step at the same status and is legal. The first update seen for a
dossier may carry any status. Nothing leaves a terminal status, and no illegal transition happens,
except through an audited ``Correction``, which may set any status and is recorded as ``CORRECTED``.
An update older than the last applied one (compared to the second, the precision partners stamp) is
``STALE``: recorded by the caller, never applied (this holds for corrections too, and the state's time never
goes backwards).

One machine for every source (``Source``): a partner's or the hub's ``dossier.status`` (``STEP``), the status
the provincial system's ``dossier.sync`` reports (``SYNC``) and an operator's correction. They differ in one
point only: a sync that restates the dossier's current status is the record being amended (Quảng Nam Điều 13.2:
amendments keep the dossier code and its history), applied at any status, terminal ones included; it moves
nothing. Everything else — which moves are legal, terminal statuses, staleness — is the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Final

from hub.errors import StatusTransitionError

RULE: Final = "status-transition"


class DossierStatus(IntEnum):
    """Dossier status codes 1..10."""

    NEW = 1
    RECEIVED = 2
    NOT_RECEIVED = 3
    PROCESSING = 4
    SUPPLEMENT_REQUESTED = 5
    FINANCIAL_OBLIGATION_REQUESTED = 6
    WITHDRAWN = 7
    PROCESSING_STOPPED = 8
    DONE = 9
    RESULT_RETURNED = 10


S = DossierStatus
TRANSITIONS: Final[MappingProxyType[DossierStatus, frozenset[DossierStatus]]] = MappingProxyType(
    {
        S.NEW: frozenset({S.RECEIVED, S.NOT_RECEIVED, S.WITHDRAWN}),
        S.RECEIVED: frozenset(
            {S.RECEIVED, S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FINANCIAL_OBLIGATION_REQUESTED}
            | {S.WITHDRAWN, S.PROCESSING_STOPPED, S.DONE}
        ),
        S.NOT_RECEIVED: frozenset(),
        S.PROCESSING: frozenset(
            {S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FINANCIAL_OBLIGATION_REQUESTED}
            | {S.WITHDRAWN, S.PROCESSING_STOPPED, S.DONE}
        ),
        S.SUPPLEMENT_REQUESTED: frozenset({S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.WITHDRAWN, S.PROCESSING_STOPPED}),
        S.FINANCIAL_OBLIGATION_REQUESTED: frozenset(
            {S.PROCESSING, S.FINANCIAL_OBLIGATION_REQUESTED, S.WITHDRAWN, S.PROCESSING_STOPPED}
        ),
        S.WITHDRAWN: frozenset(),
        S.PROCESSING_STOPPED: frozenset({S.RESULT_RETURNED}),
        S.DONE: frozenset({S.RESULT_RETURNED}),
        S.RESULT_RETURNED: frozenset(),
    }
)
del S

TERMINAL: Final[frozenset[DossierStatus]] = frozenset(status for status, nxt in TRANSITIONS.items() if not nxt)


@dataclass(frozen=True, slots=True)
class DossierState:
    """A dossier's last applied status and the time of that update (timezone-aware)."""

    status: DossierStatus
    at: datetime


@dataclass(frozen=True, slots=True)
class Correction:
    """An operator's audited override: allows any target status, recorded as ``CORRECTED``. ``role`` and
    ``client`` (the operator's role and address) go to the audit log with it."""

    reason: str
    corrected_by: str
    role: str | None = None
    client: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a correction needs a non-empty reason")
        if not self.corrected_by.strip():
            raise ValueError("a correction needs the operator who made it (corrected_by)")


class Source(StrEnum):
    """Where an update comes from, as far as the machine cares (see the module docstring)."""

    STEP = "step"  # a dossier.status: a ministry, VBDLIS, the provincial system, or the hub itself
    SYNC = "sync"  # the status the provincial system's dossier.sync (its record of the dossier) reports


class Outcome(StrEnum):
    """What ``decide`` concluded about an update."""

    APPLIED = "applied"
    STALE = "stale"
    REJECTED = "rejected"
    CORRECTED = "corrected"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome, a readable reason, the state after the update (``None`` if not applied) and the rule
    broken (``status-transition`` for ``REJECTED``)."""

    outcome: Outcome
    reason: str
    new_state: DossierState | None
    rule: str | None = None

    def raise_if_rejected(self) -> Decision:
        """``self``, or ``StatusTransitionError(reason)`` if the update was rejected."""
        if self.outcome is Outcome.REJECTED:
            raise StatusTransitionError(self.reason)
        return self


def _label(status: DossierStatus) -> str:
    return f"{status.value} {status.name}"


def is_legal(current: DossierStatus | int, target: DossierStatus | int) -> bool:
    """Whether ``current -> target`` is a legal transition (without a correction)."""
    return DossierStatus(target) in TRANSITIONS[DossierStatus(current)]


def decide(
    current: DossierState | None,
    target: DossierStatus | int,
    at: datetime,
    correction: Correction | None = None,
    *,
    source: Source = Source.STEP,
) -> Decision:
    """Decide what a status update ``target`` at ``at`` from ``source`` does to a dossier in state ``current``.

    Raises ``ValueError`` for a status outside 1..10 or a naive ``at``.
    """
    target = DossierStatus(target)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the update time must be timezone-aware")
    new_state = DossierState(target, at if current is None else max(at, current.at))
    if current is None:
        if correction is not None:
            return Decision(Outcome.CORRECTED, _corrected(correction, None, target), new_state)
        return Decision(Outcome.APPLIED, f"first update seen: {_label(target)}", new_state)
    # Partners stamp times to the second (yyyyMMddHHmmss), so times within the same second are not "older".
    if at.replace(microsecond=0) < current.at.replace(microsecond=0):
        return Decision(
            Outcome.STALE,
            f"stale: update to {_label(target)} at {at.isoformat()} is older than the last applied update "
            f"at {current.at.isoformat()}; recorded, not applied",
            None,
        )
    if correction is not None:
        return Decision(Outcome.CORRECTED, _corrected(correction, current.status, target), new_state)
    if source is Source.SYNC and target is current.status:
        return Decision(Outcome.APPLIED, f"{_label(target)} restated by the dossier's record (amended)", new_state)
    if is_legal(current.status, target):
        return Decision(Outcome.APPLIED, f"{_label(current.status)} -> {_label(target)}", new_state)
    if current.status in TERMINAL:
        why = f"{_label(current.status)} is terminal; only an audited correction may change it"
    else:
        why = "not a legal transition"
    return Decision(Outcome.REJECTED, f"{RULE}: {_label(current.status)} -> {_label(target)}: {why}", None, RULE)


def _corrected(correction: Correction, source: DossierStatus | None, target: DossierStatus) -> str:
    start = _label(source) if source is not None else "(none)"
    return f"correction by {correction.corrected_by}: {start} -> {_label(target)}: {correction.reason}"
