"""The dossier status machine: every pair of statuses, stale updates, corrections."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.dossier.status_machine import (
    TERMINAL,
    Correction,
    Decision,
    DossierState,
    DossierStatus,
    Outcome,
    Source,
    decide,
    is_legal,
)
from hub.errors import StatusTransitionError

# The table from the brief, written out independently of the module under test.
LEGAL: dict[int, set[int]] = {
    1: {2, 3, 7},
    2: {2, 4, 5, 6, 7, 8, 9},  # 2 -> 2: a repeated status is a new step at the same status
    3: set(),
    4: {4, 5, 6, 7, 8, 9},
    5: {4, 5, 7, 8},
    6: {4, 6, 7, 8},
    7: set(),
    8: {10},
    9: {10},
    10: set(),
}
ALL_PAIRS = list(itertools.product(range(1, 11), repeat=2))
LEGAL_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in LEGAL[a]]
ILLEGAL_PAIRS = [(a, b) for a, b in ALL_PAIRS if b not in LEGAL[a]]

T0 = datetime(2025, 11, 23, 1, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)


def test_status_names_and_codes() -> None:
    assert [(s.value, s.name) for s in DossierStatus] == [
        (1, "NEW"),
        (2, "RECEIVED"),
        (3, "NOT_RECEIVED"),
        (4, "PROCESSING"),
        (5, "SUPPLEMENT_REQUESTED"),
        (6, "FINANCIAL_OBLIGATION_REQUESTED"),
        (7, "WITHDRAWN"),
        (8, "PROCESSING_STOPPED"),
        (9, "DONE"),
        (10, "RESULT_RETURNED"),
    ]
    assert {3, 7, 10} == set(TERMINAL)


def test_pair_counts() -> None:
    assert len(ALL_PAIRS) == 100
    assert len(LEGAL_PAIRS) == 3 + 7 + 6 + 4 + 4 + 1 + 1


@pytest.mark.parametrize(("current", "target"), LEGAL_PAIRS)
def test_legal_transition(current: int, target: int) -> None:
    assert is_legal(current, target)
    assert is_legal(DossierStatus(current), DossierStatus(target))
    decision = decide(DossierState(DossierStatus(current), T0), target, LATER)
    assert decision.outcome is Outcome.APPLIED
    assert decision.new_state == DossierState(DossierStatus(target), LATER)
    assert decision.rule is None
    assert decision.raise_if_rejected() is decision


@pytest.mark.parametrize(("current", "target"), ILLEGAL_PAIRS)
def test_illegal_transition(current: int, target: int) -> None:
    assert not is_legal(current, target)
    decision = decide(DossierState(DossierStatus(current), T0), target, LATER)
    assert decision.outcome is Outcome.REJECTED
    assert decision.new_state is None
    assert decision.rule == "status-transition"
    assert decision.reason.startswith("status-transition: ")
    assert f"{current} {DossierStatus(current).name} -> {target} {DossierStatus(target).name}" in decision.reason
    with pytest.raises(StatusTransitionError, match="status-transition"):
        decision.raise_if_rejected()


@pytest.mark.parametrize("terminal", [3, 7, 10])
def test_nothing_follows_a_terminal_status(terminal: int) -> None:
    for target in range(1, 11):
        decision = decide(DossierState(DossierStatus(terminal), T0), target, LATER)
        assert decision.outcome is Outcome.REJECTED
        assert "terminal" in decision.reason and "correction" in decision.reason


@pytest.mark.parametrize("status", list(DossierStatus))
def test_first_update_may_have_any_status(status: DossierStatus) -> None:
    decision = decide(None, int(status), T0)
    assert decision.outcome is Outcome.APPLIED
    assert decision.new_state == DossierState(status, T0)
    assert isinstance(decision.new_state.status, DossierStatus)


def test_supplement_and_financial_obligation_return_to_processing() -> None:
    state = DossierState(DossierStatus.PROCESSING, T0)
    for detour in (DossierStatus.SUPPLEMENT_REQUESTED, DossierStatus.FINANCIAL_OBLIGATION_REQUESTED):
        out = decide(state, detour, LATER)
        back = decide(out.new_state, DossierStatus.PROCESSING, LATER + timedelta(hours=1))
        assert (out.outcome, back.outcome) == (Outcome.APPLIED, Outcome.APPLIED)
        assert back.new_state.status is DossierStatus.PROCESSING


def test_a_full_happy_path() -> None:
    state = None
    at = T0
    for status in (1, 2, 4, 4, 6, 4, 9, 10):
        decision = decide(state, status, at)
        assert decision.outcome is Outcome.APPLIED, decision.reason
        state = decision.new_state
        at += timedelta(minutes=5)
    assert state == DossierState(DossierStatus.RESULT_RETURNED, at - timedelta(minutes=5))


def test_stale_update_is_recorded_not_applied() -> None:
    state = DossierState(DossierStatus.PROCESSING, LATER)
    decision = decide(state, DossierStatus.DONE, T0)  # a legal transition, but older than the state
    assert decision.outcome is Outcome.STALE
    assert decision.new_state is None
    assert "stale" in decision.reason and T0.isoformat() in decision.reason
    assert decision.raise_if_rejected() is decision  # stale is not an error


def test_stale_wins_over_illegal_but_a_correction_is_never_stale() -> None:
    """A correction is the operator's decision now: a dossier whose last update was dated ahead is not locked; it
    is applied after that update (the state's time never goes back)."""
    state = DossierState(DossierStatus.RESULT_RETURNED, LATER)
    assert decide(state, DossierStatus.NEW, T0).outcome is Outcome.STALE
    fix = Correction(reason="portal sent 10 by mistake", corrected_by="operator.lan")
    decision = decide(state, DossierStatus.PROCESSING, T0, fix)
    assert decision.outcome is Outcome.CORRECTED
    assert decision.new_state == DossierState(DossierStatus.PROCESSING, LATER)


def test_same_instant_is_not_stale() -> None:
    state = DossierState(DossierStatus.PROCESSING, T0)
    assert decide(state, DossierStatus.DONE, T0).outcome is Outcome.APPLIED


def test_staleness_compares_instants_across_timezones() -> None:
    state = DossierState(DossierStatus.PROCESSING, T0)  # 01:00 UTC
    hanoi = timezone(timedelta(hours=7))
    assert decide(state, 9, datetime(2025, 11, 23, 7, 59, tzinfo=hanoi)).outcome is Outcome.STALE  # 00:59 UTC
    assert decide(state, 9, datetime(2025, 11, 23, 8, 1, tzinfo=hanoi)).outcome is Outcome.APPLIED


@pytest.mark.parametrize("terminal", [3, 7, 10])
@pytest.mark.parametrize("target", range(1, 11))
def test_correction_on_terminal_status(terminal: int, target: int) -> None:
    fix = Correction(reason="ministry sent the wrong status", corrected_by="operator.lan")
    decision = decide(DossierState(DossierStatus(terminal), T0), target, LATER, fix)
    assert decision.outcome is Outcome.CORRECTED
    assert decision.new_state == DossierState(DossierStatus(target), LATER)
    assert "operator.lan" in decision.reason and "ministry sent the wrong status" in decision.reason
    assert f"{terminal} {DossierStatus(terminal).name} -> {target}" in decision.reason


def test_correction_is_recorded_as_such_even_for_a_legal_move() -> None:
    fix = Correction(reason="re-entered after outage", corrected_by="operator.lan")
    decision = decide(DossierState(DossierStatus.PROCESSING, T0), DossierStatus.DONE, LATER, fix)
    assert decision.outcome is Outcome.CORRECTED


@pytest.mark.parametrize(("reason", "by"), [("", "operator"), ("   ", "operator"), ("typo", ""), ("typo", " ")])
def test_correction_needs_a_reason_and_an_operator(reason: str, by: str) -> None:
    with pytest.raises(ValueError, match="correction"):
        Correction(reason=reason, corrected_by=by)


@pytest.mark.parametrize("bad", [0, 11, -1])
def test_unknown_status_codes_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        decide(None, bad, T0)
    with pytest.raises(ValueError):
        is_legal(4, bad)
    with pytest.raises(ValueError):
        is_legal(bad, 4)


def test_naive_update_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(None, 1, datetime(2025, 11, 23, 1, 0))  # naive on purpose


def test_decision_is_immutable() -> None:
    decision = decide(None, 1, T0)
    assert isinstance(decision, Decision)
    with pytest.raises(AttributeError):
        decision.outcome = Outcome.REJECTED  # type: ignore[misc]


def test_an_update_in_the_same_second_is_not_stale_and_time_never_goes_back() -> None:
    """Partners stamp whole seconds: a payment confirmed at 10:00:05 follows a sync made at 10:00:05.4."""
    current = DossierState(DossierStatus(6), datetime(2026, 11, 23, 10, 0, 5, 400000, tzinfo=UTC))
    decision = decide(current, 4, datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC))
    assert decision.outcome == Outcome.APPLIED
    assert decision.new_state.at == current.at
    older = decide(current, 4, datetime(2026, 11, 23, 10, 0, 4, tzinfo=UTC))
    assert older.outcome == Outcome.STALE


def test_a_sync_is_as_old_as_its_record_not_as_the_status_it_reports() -> None:
    """A province's record written after the last applied update is judged like any update (an earlier status is
    refused, not dropped); one written before it is stale, whatever the time of the status it reports."""
    state = DossierState(DossierStatus.PROCESSING, T0)
    received_long_ago = T0 - timedelta(days=3)
    amended = decide(state, DossierStatus.RECEIVED, received_long_ago, source=Source.SYNC, reported_at=LATER)
    assert amended.outcome is Outcome.REJECTED and "4 PROCESSING -> 2 RECEIVED" in amended.reason
    restated = decide(state, DossierStatus.PROCESSING, LATER, source=Source.SYNC, reported_at=LATER)
    assert restated.outcome is Outcome.APPLIED and restated.amendment
    old_record = decide(state, DossierStatus.PROCESSING, LATER, source=Source.SYNC,
                        reported_at=T0 - timedelta(minutes=1))  # fmt: skip
    assert old_record.outcome is Outcome.STALE and "record written" in old_record.reason
    # a step's age stays its own time
    assert decide(state, DossierStatus.DONE, received_long_ago, reported_at=LATER).outcome is Outcome.STALE


def test_only_the_sender_that_set_9_restates_it_with_result_documents() -> None:
    done = DossierState(DossierStatus.DONE, T0, set_by="ministry")
    again = decide(done, 9, LATER, sender="ministry", amends_result=True)
    assert again.outcome is Outcome.APPLIED and again.amendment
    assert again.new_state == DossierState(DossierStatus.DONE, LATER, "ministry")
    for sender, results in (("ministry", False), ("other", True), (None, True)):
        refused = decide(done, 9, LATER, sender=sender, amends_result=results)
        assert refused.outcome is Outcome.REJECTED and "only the sender that set 9" in refused.reason
    unknown = DossierState(DossierStatus.DONE, T0)  # nobody known to have set it
    assert decide(unknown, 9, LATER, sender="ministry", amends_result=True).outcome is Outcome.REJECTED
    moved = decide(DossierState(DossierStatus.PROCESSING, T0, "province"), 9, LATER, sender="ministry")
    assert moved.new_state is not None and moved.new_state.set_by == "ministry"
