"""The working calendar (weekends, lunch break, Vietnam's public holidays from the ``holidays`` package, the days
the government moves, from configuration) and the two deadline queries: dossiers still at status 1 past 8 working
hours (online submissions only) and dossiers past their current due date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub.config import Settings
from hub.dossier.deadlines import (
    CalendarConfigError,
    WorkingCalendar,
    calendar_from_settings,
    overdue_intake,
    overdue_processing,
    parse_days,
    parse_hours,
)
from hub.store import StatusUpdate, Store, SyncReport

pytestmark = pytest.mark.unit

VN = dt.timezone(dt.timedelta(hours=7))
PLAIN = WorkingCalendar(country=None)  # Mon–Fri, 07:30–11:30 and 13:30–17:00, Asia/Ho_Chi_Minh, no holidays
CAL = WorkingCalendar()  # the same with Vietnam's public holidays (the default)


def local(day: int, hour: int, minute: int = 0, month: int = 12, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=VN)  # 2026-12-07 is a Monday, no holiday that week


def utc(*args: int) -> dt.datetime:
    return local(*args).astimezone(dt.UTC)


def test_a_working_day_has_seven_and_a_half_hours_without_the_lunch_break() -> None:
    assert CAL.hours_per_day() == 7.5
    assert CAL.working_hours_between(local(7, 7, 30), local(7, 17)) == 7.5
    assert CAL.working_hours_between(local(7, 11), local(7, 14)) == 1.0  # 11:00–11:30 + 13:30–14:00
    assert CAL.working_hours_between(local(7, 12), local(7, 13)) == 0.0  # lunch
    assert CAL.working_hours_between(local(7, 17), local(7, 7, 30)) == -7.5


def test_deadline_crosses_days_and_skips_the_lunch_break() -> None:
    # Monday 08:00 + 8 h: 3.5 h to 11:30, 3.5 h to 17:00, then 1 h on Tuesday morning.
    assert CAL.deadline(local(7, 8)) == utc(8, 8, 30)
    # Monday 11:00 + 1 h = 14:00 (the lunch break does not count).
    assert CAL.deadline(local(7, 11), hours=1) == utc(7, 14)
    # Submitted in the evening: counting starts at 07:30 the next working day.
    assert CAL.deadline(local(7, 20), hours=8) == utc(9, 8)


def test_weekends_are_off() -> None:
    friday = local(11, 15)  # Friday 15:00: 2 h that day, then 4 h + 2 h on Monday
    assert CAL.deadline(friday) == utc(14, 15, 30)
    assert CAL.working_hours_between(local(12, 9), local(13, 16)) == 0.0  # Saturday to Sunday
    assert CAL.working_hours_between(friday, local(14, 7, 30)) == 2.0


def test_tet_2026_and_2_september_are_off_by_default() -> None:
    """The holidays package knows Vietnam's public holidays: Tết 2026 is Monday 16 to Friday 20 February, National
    Day 1–2 September (with 31 August off in exchange for Saturday 22 August worked)."""
    tet = [dt.date(2026, 2, d) for d in range(16, 21)]
    assert not any(CAL.is_working_day(d) for d in tet)
    assert all(PLAIN.is_working_day(d) for d in tet)  # without the package they would be worked
    assert not CAL.is_working_day(dt.date(2026, 9, 2)) and not CAL.is_working_day(dt.date(2026, 9, 1))
    assert CAL.is_working_day(dt.date(2026, 2, 23)) and CAL.is_working_day(dt.date(2026, 9, 3))
    assert not CAL.is_working_day(dt.date(2026, 8, 31)) and CAL.is_working_day(dt.date(2026, 8, 22))  # a Saturday
    days = {d.day: d for d in CAL.year(2026)}
    assert "Tết" in days[dt.date(2026, 2, 17)].name and not days[dt.date(2026, 2, 17)].working
    assert "Quốc khánh" in days[dt.date(2026, 9, 2)].name and days[dt.date(2026, 9, 2)].source == "VN"
    assert days[dt.date(2026, 8, 22)].working


def test_a_dossier_submitted_online_before_tet_is_due_after_it() -> None:
    # Friday 13 February 2026, 15:00: 2 working hours that day; the weekend and Tết (16–20) are off, the next
    # weekend too; the other 6 hours on Monday 23 February: 07:30–11:30 and 13:30–15:30.
    submitted = local(13, 15, month=2)
    assert CAL.deadline(submitted) == utc(23, 15, 30, 2)
    assert CAL.working_hours_between(submitted, local(22, 23, month=2)) == 2.0
    assert PLAIN.deadline(submitted) == utc(16, 15, 30, 2)  # a calendar without the holidays gets it wrong


def test_configured_days_off_and_working_saturdays() -> None:
    saturday = dt.date(2026, 12, 12)
    moved = WorkingCalendar(holidays=frozenset({dt.date(2026, 12, 8)}), working_days=frozenset({saturday}),
                            labels={saturday: "Làm bù cho ngày 08/12"})  # fmt: skip
    assert not moved.is_working_day(dt.date(2026, 12, 8)) and moved.is_working_day(saturday)
    # Monday 08:00 + 8 h: 7 h on Monday, Tuesday off, 1 h on Wednesday.
    assert moved.deadline(local(7, 8)) == utc(9, 8, 30)
    # Friday 15:00 + 8 h: 2 h on Friday, 6 h on the Saturday worked (07:30–11:30, 13:30–15:30).
    assert moved.deadline(local(11, 15)) == utc(12, 15, 30)
    listed = {d.day: d for d in moved.year(2026)}
    assert listed[saturday].working and listed[saturday].name == "Làm bù cho ngày 08/12"
    assert listed[dt.date(2026, 12, 8)].source == "configured" and not listed[dt.date(2026, 12, 8)].working
    # configuration wins over the package: 2 September worked, Saturday 22 August off after all
    swapped = WorkingCalendar(working_days=frozenset({dt.date(2026, 9, 2)}), holidays=frozenset({dt.date(2026, 8, 22)}))
    assert swapped.is_working_day(dt.date(2026, 9, 2)) and not swapped.is_working_day(dt.date(2026, 8, 22))
    with pytest.raises(CalendarConfigError, match="2026-12-08"):
        WorkingCalendar(holidays=frozenset({dt.date(2026, 12, 8)}), working_days=frozenset({dt.date(2026, 12, 8)}))


def test_calendar_from_settings_and_its_file(tmp_path: Path) -> None:
    settings = Settings(working_days="Mon-Sat", working_hours="08:00-12:00", holidays="2026-12-08, 2026-12-09")
    cal = calendar_from_settings(settings)
    assert cal.days == frozenset(range(6)) and cal.hours_per_day() == 4 and cal.country == "VN"
    assert cal.deadline(local(7, 8)) == utc(10, 12)  # Mon 4 h, Tue/Wed off, Thu 4 h
    assert parse_days("mon,wed,5") == {0, 2, 5}
    with pytest.raises(ValueError):
        parse_hours("11:00-10:00")
    with pytest.raises(ValueError):
        parse_hours("07:30-12:00,11:00-17:00")
    with pytest.raises(ValueError):
        CAL.deadline(dt.datetime(2026, 12, 7, 8))  # naive
    with pytest.raises(CalendarConfigError, match="LIENTHONG_EXTRA_WORKING_DAYS"):
        calendar_from_settings(Settings(extra_working_days="12/12/2026"))
    assert calendar_from_settings(Settings(holidays_country="")).is_working_day(dt.date(2026, 9, 2))

    file = tmp_path / "calendar.yaml"
    file.write_text("days_off:\n  2026-12-31: Nghỉ bù Tết Dương lịch\nworking_days:\n  2027-01-09: Làm bù\n",
                    encoding="utf-8")  # fmt: skip
    from_file = calendar_from_settings(Settings(calendar_file=file, extra_working_days="2026-12-12"))
    assert not from_file.is_working_day(dt.date(2026, 12, 31))
    assert from_file.is_working_day(dt.date(2027, 1, 9)) and from_file.is_working_day(dt.date(2026, 12, 12))
    assert {d.day: d.name for d in from_file.year(2026)}[dt.date(2026, 12, 31)] == "Nghỉ bù Tết Dương lịch"
    file.write_text("days_off: [2026-12-31]\n", encoding="utf-8")
    with pytest.raises(CalendarConfigError, match="map dates"):
        calendar_from_settings(Settings(calendar_file=file))
    with pytest.raises(CalendarConfigError, match="cannot read"):
        calendar_from_settings(Settings(calendar_file=tmp_path / "missing.yaml"))


def _sync(store: Store, message_id: str, code: str, status: int, at: dt.datetime, channel: int | None = 2,
          submitted: dt.datetime | None = None, due: dt.datetime | None = None) -> None:  # fmt: skip
    store.accept_many([{
        "sender": "000.00.00.H12", "message_id": message_id, "message_type": "dossier.sync",
        "receiver": "000.00.00.H00", "dossier_code": code, "envelope": message_id.encode(),
        "destinations": ["000.00.00.G01"],
        "sync": SyncReport(code, status, at, "000.00.00.H12", submitted_at=submitted or at, channel=channel,
                           due_at=due),
    }])  # fmt: skip


def _status(store: Store, message_id: str, code: str, status: int, at: dt.datetime, **detail: object) -> None:
    store.accept_many([{
        "sender": "000.00.00.G10", "message_id": message_id, "message_type": "dossier.status",
        "receiver": "000.00.00.H00", "dossier_code": code, "envelope": message_id.encode(), "destinations": [],
        "status": StatusUpdate(code, status, at, "000.00.00.G10", detail or None),
    }])  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    opened.migrate()
    yield opened
    opened.close()


def test_overdue_intake_lists_online_dossiers_still_at_status_1(store: Store) -> None:
    settings = Settings()
    monday = local(7, 8)
    _sync(store, "m1", "000.00.00.H12-261207-0001", 1, monday)  # still new: overdue Tuesday 08:30
    _sync(store, "m2", "000.00.00.H12-261207-0002", 1, monday)
    _sync(store, "m3", "000.00.00.H12-261207-0002", 2, local(7, 9))  # received in time
    _sync(store, "m4", "000.00.00.H12-261207-0003", 1, monday, channel=1)  # in person: not an online intake
    _sync(store, "m5", "000.00.00.H12-261207-0004", 1, local(8, 8))  # submitted Tuesday: not yet
    _sync(store, "m6", "000.00.00.H12-261207-0005", 1, monday)
    _status(store, "s1", "000.00.00.H12-261207-0005", 2, local(7, 10))  # a dossier.status moves it on (1 → 2)
    _sync(store, "m7", "000.00.00.H12-261207-0006", 1, monday, channel=3)  # postal: not online either
    _sync(store, "m1", "000.00.00.H12-261207-0001", 1, monday)  # a resend is recorded once

    at_intake = {d.dossier_code for d in store.dossiers_at_intake(exclude_channels=())}
    assert at_intake == {"000.00.00.H12-261207-0001", "000.00.00.H12-261207-0003", "000.00.00.H12-261207-0004",
                         "000.00.00.H12-261207-0006"}  # fmt: skip
    assert overdue_intake(store, settings, now=local(8, 8, 29)) == []
    (late,) = overdue_intake(store, settings, now=utc(8, 10))
    assert late.dossier_code == "000.00.00.H12-261207-0001"
    assert late.deadline == utc(8, 8, 30) and late.overdue_hours == 1.5
    assert (late.channel, late.source) == (2, "000.00.00.H12")
    timeline = store.timeline("000.00.00.H12-261207-0001")
    assert [(e.status, e.outcome) for e in timeline] == [(1, "applied")]  # a sync runs through the status machine
    # configurable: postal submissions counted too
    both = overdue_intake(store, Settings(intake_alert_channels="2,3"), now=utc(8, 10))
    assert [d.dossier_code for d in both] == ["000.00.00.H12-261207-0001", "000.00.00.H12-261207-0006"]


def test_overdue_intake_counts_no_public_holiday(store: Store) -> None:
    """Submitted online on the Friday before Tết 2026: not overdue during Tết, overdue after 8 working hours."""
    code = "000.00.00.H12-260213-0001"
    _sync(store, "t1", code, 1, local(13, 15, month=2))
    assert overdue_intake(store, Settings(), now=utc(20, 16, 0, 2)) == []
    assert overdue_intake(store, Settings(), now=utc(23, 15, 29, 2)) == []
    (late,) = overdue_intake(store, Settings(), now=utc(23, 16, 30, 2))
    assert late.deadline == utc(23, 15, 30, 2) and late.overdue_hours == 1.0


def test_overdue_processing_uses_the_current_due_date(store: Store) -> None:
    """A dossier past its due date and not finished is overdue; a supplement received with a new due date moves it
    (the timeline keeps the date it replaced); 9/10 (and a dossier waiting for a supplement) are left out."""
    code, done, waiting = "000.00.00.H12-261207-0011", "000.00.00.H12-261207-0012", "000.00.00.H12-261207-0013"
    due = utc(10, 17)
    for c in (code, done, waiting):
        _sync(store, f"sync-{c}", c, 2, local(7, 9), due=due)
    _status(store, "p1", code, 4, local(7, 10))
    _status(store, "p2", done, 4, local(7, 10))
    _status(store, "p3", done, 9, local(9, 10))
    _status(store, "p4", waiting, 5, local(8, 10))
    assert store.due_date(code) == (due, local(7, 9))
    assert overdue_processing(store, Settings(), now=utc(10, 16)) == []
    (late,) = overdue_processing(store, Settings(), now=utc(11, 9))
    assert (late.dossier_code, late.status, late.due_at, late.overdue_hours) == (code, 4, due, 1.5)
    assert late.source == "000.00.00.G10"
    # the brief's rule alone (only 9/10 left out): the dossier waiting for its supplement shows too
    strict = overdue_processing(store, Settings(overdue_excluded_statuses="9,10"), now=utc(11, 9))
    assert [d.dossier_code for d in strict] == [code, waiting]

    # supplement requested, then received with a new due date: no longer overdue, until the new date passes
    new_due = utc(17, 17)
    _status(store, "p5", code, 5, local(11, 8), step={"actor": "Trần Thị Bình", "content": "Bổ sung bản vẽ"})
    _status(store, "p6", code, 4, local(11, 10), new_due_at="2026-12-17T10:00:00Z")
    assert store.due_date(code)[0] == new_due
    assert overdue_processing(store, Settings(), now=utc(17, 16)) == []
    assert [d.dossier_code for d in overdue_processing(store, Settings(), now=utc(18, 8))] == [code]
    received = next(e for e in store.timeline(code) if e.message_id == "p6")
    assert received.detail == {"new_due_at": "2026-12-17T10:00:00Z", "previous_due_at": "2026-12-10T10:00:00Z"}
    # an older report does not move it back
    _sync(store, "late-sync", code, 2, local(7, 9, 30), due=due)
    assert store.due_date(code)[0] == new_due
    # a later sync from the system of record does
    _sync(store, "new-sync", code, 4, local(11, 11), due=utc(18, 17))
    assert store.due_date(code) == (utc(18, 17), local(11, 11))
