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
``STALE``: recorded by the caller, never applied, and the state's time never goes backwards. A correction is
never stale: it is the operator's decision now, applied at ``max(its time, the state's time)`` — so a dossier
whose last update was dated ahead is not locked.

One machine for every source (``Source``): a partner's or the hub's ``dossier.status`` (``STEP``), the status
the provincial system's ``dossier.sync`` reports (``SYNC``) and an operator's correction. Two amendments restate
the current status instead of moving it (Quảng Nam Điều 13.2: amendments keep the dossier code and its history),
both ``APPLIED`` with ``Decision.amendment`` set (the caller routes them again, but tells no applicant twice):

* a sync that restates the dossier's current status is the record being amended, at any status, terminal ones
  included;
* the sender that set 9 (``DossierState.set_by``) restating 9 with new result documents (``amends_result``: other
  than those it set 9 with): its result re-signed or replaced, e.g. after a result was held
  (``hub.exchange.results``). The same step sent again is still refused.

A sync's age is the time its record was written (the envelope's ``createdAt``, ``reported_at``), not the time of
the status it reports (the reception date of a 2 is weeks old when the record is amended): a record written
after the last applied update is judged against the machine like any update — restating the status is an
amendment, an earlier status is an illegal transition, refused (never a silent drop); a record written before it
is stale. Everything else — which moves are legal, terminal statuses — is the same for all.
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
    """A dossier's last applied status, the time of that update (timezone-aware) and who set that status (the
    sender whose update moved the dossier to it; an amendment restating it does not change it; ``None``: unknown)."""

    status: DossierStatus
    at: datetime
    set_by: str | None = None


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
    amendment: bool = False  # applied, restating the current status (see the module docstring): moves nothing

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
    sender: str | None = None,
    reported_at: datetime | None = None,
    amends_result: bool = False,
) -> Decision:
    """Decide what a status update ``target`` at ``at`` from ``source`` does to a dossier in state ``current``.

    ``sender``: who sends it (kept as ``DossierState.set_by`` when it moves the dossier); ``reported_at``: when a
    sync's record was written (its staleness; default ``at``); ``amends_result``: a step carrying result
    documents other than those the dossier's 9 was set with (the caller compares them). Raises ``ValueError`` for a
    status outside 1..10 or a naive ``at``.
    """
    target = DossierStatus(target)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the update time must be timezone-aware")
    if current is None:
        new_state = DossierState(target, at, sender)
        if correction is not None:
            return Decision(Outcome.CORRECTED, _corrected(correction, None, target), new_state)
        return Decision(Outcome.APPLIED, f"first update seen: {_label(target)}", new_state)
    moved = DossierState(target, max(at, current.at), sender)
    if correction is not None:  # the operator's decision now: never stale, applied after the last update
        return Decision(Outcome.CORRECTED, _corrected(correction, current.status, target), moved)
    # Partners stamp times to the second (yyyyMMddHHmmss), so times within the same second are not "older".
    age = at if reported_at is None or source is not Source.SYNC else reported_at
    if age.replace(microsecond=0) < current.at.replace(microsecond=0):
        what = "record written" if age is not at else "update to " + _label(target)
        return Decision(
            Outcome.STALE,
            f"stale: {what} at {age.isoformat()} is older than the last applied update at {current.at.isoformat()}"
            f"{'' if age is at else f' (reports {_label(target)})'}; recorded, not applied",
            None,
        )
    restated = DossierState(target, max(at, current.at), current.set_by)
    if source is Source.SYNC and target is current.status:
        return Decision(Outcome.APPLIED, f"{_label(target)} restated by the dossier's record (amended)", restated,
                        amendment=True)  # fmt: skip
    if (target is current.status is DossierStatus.DONE and amends_result and sender is not None
            and sender == current.set_by):  # fmt: skip
        return Decision(
            Outcome.APPLIED, f"{_label(target)} restated by {sender}, who set it, with new result documents (amended)",
            restated, amendment=True,
        )  # fmt: skip
    if is_legal(current.status, target):
        return Decision(Outcome.APPLIED, f"{_label(current.status)} -> {_label(target)}", moved)
    if current.status in TERMINAL:
        why = f"{_label(current.status)} is terminal; only an audited correction may change it"
    elif target is current.status is DossierStatus.DONE:
        why = "only the sender that set 9, with new result documents, may restate it"
    else:
        why = "not a legal transition"
    return Decision(Outcome.REJECTED, f"{RULE}: {_label(current.status)} -> {_label(target)}: {why}", None, RULE)


def _corrected(correction: Correction, source: DossierStatus | None, target: DossierStatus) -> str:
    start = _label(source) if source is not None else "(none)"
    return f"correction by {correction.corrected_by}: {start} -> {_label(target)}: {correction.reason}"
