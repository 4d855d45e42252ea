"""One status machine for every source: the same moves are legal, the same are refused, whoever reports them —
a partner's dossier.status (a ministry, the land registration software VBDLIS through its mapping, the provincial
system), the status the provincial system's dossier.sync reports, the hub's own status (payment 6 → 4) — and only
an operator's correction gets past a terminal status. A sync differs in one point: restating the dossier's status
is an amendment of its record, applied (Quảng Nam Điều 13.2)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from hub.dossier.status_machine import (
    TERMINAL,
    Correction,
    DossierState,
    DossierStatus,
    Outcome,
    Source,
    decide,
)
from mappings import profiles, vbdlis

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
PAIRS = list(itertools.product(range(1, 11), repeat=2))


def state(status: int) -> DossierState:
    return DossierState(DossierStatus(status), T0)


@pytest.mark.parametrize("source", list(Source))
def test_after_a_result_returned_nothing_follows_whoever_reports_it(source: Source) -> None:
    for target in range(1, 10):
        decision = decide(state(10), target, LATER, source=source)
        assert decision.outcome is Outcome.REJECTED, (source, target)
        assert decision.rule == "status-transition" and decision.new_state is None
        assert "10 RESULT_RETURNED is terminal; only an audited correction may change it" in decision.reason


@pytest.mark.parametrize("source", list(Source))
def test_done_goes_only_to_result_returned(source: Source) -> None:
    outcomes = {t: decide(state(9), t, LATER, source=source).outcome for t in range(1, 11)}
    allowed = {10} | ({9} if source is Source.SYNC else set())  # a sync restating 9 amends the record
    assert {t for t, o in outcomes.items() if o is Outcome.APPLIED} == allowed
    assert {t for t, o in outcomes.items() if o is Outcome.REJECTED} == set(range(1, 11)) - allowed


@pytest.mark.parametrize(("current", "target"), [(a, b) for a, b in PAIRS if a != b])
def test_a_sync_moves_the_dossier_exactly_as_a_status_update_does(current: int, target: int) -> None:
    step = decide(state(current), target, LATER, source=Source.STEP)
    sync = decide(state(current), target, LATER, source=Source.SYNC)
    assert (sync.outcome, sync.new_state, sync.rule) == (step.outcome, step.new_state, step.rule)


@pytest.mark.parametrize("status", list(DossierStatus))
def test_a_sync_restating_the_status_amends_the_record_at_any_status(status: DossierStatus) -> None:
    decision = decide(state(status), status, LATER, source=Source.SYNC)
    assert decision.outcome is Outcome.APPLIED
    assert decision.new_state == DossierState(status, LATER)
    assert "restated by the dossier's record (amended)" in decision.reason
    repeated = decide(state(status), status, LATER, source=Source.STEP)  # a step repeating it is a transition
    assert repeated.outcome is (Outcome.APPLIED if status in (2, 4, 5, 6) else Outcome.REJECTED)


@pytest.mark.parametrize("source", list(Source))
def test_an_older_update_is_stale_from_every_source(source: Source) -> None:
    later = DossierState(DossierStatus.PROCESSING, LATER)
    assert decide(later, 9, T0, source=source).outcome is Outcome.STALE
    assert decide(later, 4, T0, source=source).outcome is Outcome.STALE  # a restated status too


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_only_a_correction_leaves_a_terminal_status(terminal: int) -> None:
    fix = Correction(reason="kết quả trả nhầm", corrected_by="nguyen.van.a", role="operator", client="10.0.0.5")
    for source in Source:
        assert decide(state(terminal), 4, LATER, source=source).outcome is Outcome.REJECTED
    decision = decide(state(terminal), 4, LATER, fix)
    assert decision.outcome is Outcome.CORRECTED and decision.new_state == DossierState(DossierStatus(4), LATER)
    assert f"correction by nguyen.van.a: {terminal} {DossierStatus(terminal).name} -> 4 PROCESSING" in decision.reason


def test_the_acceptance_sequence_sync_10_then_a_ministry_4_then_a_correction() -> None:
    synced = decide(None, 10, T0, source=Source.SYNC)
    assert synced.outcome is Outcome.APPLIED
    ministry = decide(synced.new_state, 4, LATER)
    assert ministry.outcome is Outcome.REJECTED and ministry.rule == "status-transition"
    fix = Correction(reason="the ministry is still processing", corrected_by="nguyen.van.a")
    corrected = decide(synced.new_state, 4, LATER, fix)
    assert corrected.outcome is Outcome.CORRECTED and corrected.new_state.status is DossierStatus.PROCESSING
    assert decide(corrected.new_state, 9, LATER + timedelta(minutes=1)).outcome is Outcome.APPLIED  # life goes on


def test_the_hubs_own_payment_status_follows_the_same_rules() -> None:
    """``hub.flows.payments`` reports 6 → 4 once paid: applied from 6, refused after a result returned."""
    assert decide(state(6), 4, LATER).outcome is Outcome.APPLIED
    assert decide(state(10), 4, LATER).outcome is Outcome.REJECTED


# ------------------------------------------------------------------ VBDLIS (PARTNER-FORMATS §5, TH-BR *Handler.cs)

SETTINGS = vbdlis.StepSettings.from_profile(profiles.resolve(profiles.get_profile(vbdlis.PROFILE), {}))
DOSSIER = "000.00.00.H12-260302-0042"
BODIES = {
    "KetThucHoSo": {"SoBienNhan": DOSSIER, "NgayKetThuc": "2026-03-02T10:00:00", "MaCanBoXuLy": "cb.tnmt.07",
                    "TrangThaiKetThuc": 0},
    "YeuCauCapNhatHoSo": {"SoBienNhan": DOSSIER, "MaCanBoXuLy": "cb.tnmt.07", "GhiChu": "Cập nhật thông tin"},
    "GuiKetQuaThue": {"SoBienNhan": DOSSIER, "NguoiXuLy": "cb.thue.02", "NgayCoKetQuaThue": "2026-03-02T10:00:00"},
    "ChuyenHoSo": {"SoBienNhan": DOSSIER, "MaCanBoChuyen": "cb.motcua.03", "MaCanBoNhan": "cb.tnmt.07",
                   "MaTrangThai": "2", "NgayChuyen": "2026-03-02T10:00:00"},
}  # fmt: skip


def vbdlis_decision(action: str, current: int, **changes: object) -> tuple[Outcome, bool]:
    """The machine's outcome for the step mapped at ``current``, and whether a TH guard kept the status (the route
    answers such a step "recorded, status kept", not as a conflict)."""
    step = vbdlis.map_step(action, {**BODIES[action], **changes}, unit="000.00.00.G10", received_at=LATER,
                           current=current, settings=SETTINGS)  # fmt: skip
    return decide(DossierState(DossierStatus(current), T0), step.update.status, step.update.at).outcome, step.kept


@pytest.mark.parametrize(
    ("action", "refused_from"),
    [
        ("KetThucHoSo", {5, 6, 9}),  # 5/6 must return to 4 first; 9 → 9 is a second finish
        ("YeuCauCapNhatHoSo", {4, 5, 6, 9}),  # → 2 only from 2
        ("GuiKetQuaThue", {5}),  # → 6 (profile value); at 9 and 10 TH keeps the status (recorded, not a conflict)
    ],
)
def test_the_known_vbdlis_conflicts_are_refused_by_the_one_machine(action: str, refused_from: set[int]) -> None:
    for current in (2, 4, 5, 6, 9):
        outcome, kept = vbdlis_decision(action, current)
        conflict = outcome is Outcome.REJECTED and not kept
        assert conflict == (current in refused_from), (action, current, outcome, kept)


def test_a_vbdlis_step_after_a_synced_result_is_refused() -> None:
    """After 10 the TH guards keep the status: the step is recorded, the dossier does not move."""
    for action in ("ChuyenHoSo", "KetThucHoSo", "GuiKetQuaThue"):
        assert vbdlis_decision(action, 10) == (Outcome.REJECTED, True), action
    assert vbdlis_decision("YeuCauCapNhatHoSo", 10) == (Outcome.REJECTED, False)  # → 2: a conflict


def test_a_vbdlis_finish_without_a_result_sets_the_profile_status_with_its_reason() -> None:
    """KetThucHoSo with TrangThaiKetThuc ≠ 0 (returned or withdrawn, §5): 9 as TH sets it, or the deployment's
    ``ended_status`` — 8 stopped needs GhiChu as its reason, which the update carries."""
    body = {**BODIES["KetThucHoSo"], "TrangThaiKetThuc": 1, "GhiChu": "Công dân rút hồ sơ"}
    default = vbdlis.map_step("KetThucHoSo", body, unit="000.00.00.G10", received_at=LATER, current=4,
                              settings=SETTINGS)  # fmt: skip
    assert (default.update.status, default.update.reason, default.update.finish_kind) == (9, None, 1)
    for ended in ("7", "8"):
        chosen = vbdlis.StepSettings.from_profile(
            profiles.resolve(profiles.get_profile(vbdlis.PROFILE), {"ended_status": ended})
        )
        step = vbdlis.map_step("KetThucHoSo", body, unit="000.00.00.G10", received_at=LATER, current=4,
                               settings=chosen)  # fmt: skip
        assert (step.update.status, step.update.reason) == (int(ended), "Công dân rút hồ sơ")
        assert decide(state(4), step.update.status, step.update.at).outcome is Outcome.APPLIED
