"""The 8-working-hour intake rule: the working calendar (weekends, lunch break, holidays, crossing days) and the
store query of dossiers still at status 1 past their deadline."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub.config import Settings
from hub.dossier.deadlines import WorkingCalendar, calendar_from_settings, overdue_intake, parse_days, parse_hours
from hub.store import StatusUpdate, Store, SyncReport

VN = dt.timezone(dt.timedelta(hours=7))
CAL = WorkingCalendar()  # Mon–Fri, 07:30–11:30 and 13:30–17:00, Asia/Ho_Chi_Minh


def local(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=VN)  # 2026-11-23 is a Monday


def test_a_working_day_has_seven_and_a_half_hours_without_the_lunch_break() -> None:
    assert CAL.hours_per_day() == 7.5
    assert CAL.working_hours_between(local(23, 7, 30), local(23, 17)) == 7.5
    assert CAL.working_hours_between(local(23, 11), local(23, 14)) == 1.0  # 11:00–11:30 + 13:30–14:00
    assert CAL.working_hours_between(local(23, 12), local(23, 13)) == 0.0  # lunch
    assert CAL.working_hours_between(local(23, 17), local(23, 7, 30)) == -7.5


def test_deadline_crosses_days_and_skips_the_lunch_break() -> None:
    # Monday 08:00 + 8 h: 3.5 h to 11:30, 3.5 h to 17:00, then 1 h on Tuesday morning.
    assert CAL.deadline(local(23, 8)) == local(24, 8, 30).astimezone(dt.UTC)
    # Monday 11:00 + 1 h = 14:00 (the lunch break does not count).
    assert CAL.deadline(local(23, 11), hours=1) == local(23, 14).astimezone(dt.UTC)
    # Submitted in the evening: counting starts at 07:30 the next working day.
    assert CAL.deadline(local(23, 20), hours=8) == local(25, 8).astimezone(dt.UTC)


def test_weekends_are_off() -> None:
    friday = local(27, 15)  # Friday 15:00: 2 h that day, then 4 h + 2 h on Monday
    assert CAL.deadline(friday) == local(30, 15, 30).astimezone(dt.UTC)
    assert CAL.working_hours_between(local(28, 9), local(29, 16)) == 0.0  # Saturday to Sunday
    assert CAL.working_hours_between(friday, local(30, 7, 30)) == 2.0


def test_holidays_are_off() -> None:
    holiday = WorkingCalendar(holidays=frozenset({dt.date(2026, 11, 24)}))
    assert holiday.deadline(local(23, 8)) == local(25, 8, 30).astimezone(dt.UTC)
    assert holiday.working_hours_between(local(24, 7), local(24, 18)) == 0.0


def test_calendar_from_settings() -> None:
    settings = Settings(working_days="Mon-Sat", working_hours="08:00-12:00", holidays="2026-11-24, 2026-11-25")
    cal = calendar_from_settings(settings)
    assert cal.days == frozenset(range(6)) and cal.hours_per_day() == 4
    assert cal.deadline(local(23, 8)) == local(26, 12).astimezone(dt.UTC)  # Mon 4 h, Tue/Wed off, Thu 4 h
    assert parse_days("mon,wed,5") == {0, 2, 5}
    with pytest.raises(ValueError):
        parse_hours("11:00-10:00")
    with pytest.raises(ValueError):
        parse_hours("07:30-12:00,11:00-17:00")
    with pytest.raises(ValueError):
        CAL.deadline(dt.datetime(2026, 11, 23, 8))  # naive


def _sync(store: Store, message_id: str, code: str, status: int, at: dt.datetime, channel: int | None = 2,
          submitted: dt.datetime | None = None) -> None:  # fmt: skip
    store.accept_many([{
        "sender": "000.00.00.H12", "message_id": message_id, "message_type": "dossier.sync",
        "receiver": "000.00.00.H00", "dossier_code": code, "envelope": message_id.encode(),
        "destinations": ["000.00.00.G01"],
        "sync": SyncReport(code, status, at, "000.00.00.H12", submitted_at=submitted or at, channel=channel),
    }])  # fmt: skip


def test_overdue_intake_lists_dossiers_still_at_status_1(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    settings = Settings()
    monday = local(23, 8)
    _sync(store, "m1", "000.00.00.H12-261123-0001", 1, monday)  # still new: overdue Tuesday 08:30
    _sync(store, "m2", "000.00.00.H12-261123-0002", 1, monday)
    _sync(store, "m3", "000.00.00.H12-261123-0002", 2, local(23, 9))  # received in time
    _sync(store, "m4", "000.00.00.H12-261123-0003", 1, monday, channel=1)  # in person: not an online intake
    _sync(store, "m5", "000.00.00.H12-261123-0004", 1, local(24, 8))  # submitted Tuesday: not yet
    _sync(store, "m6", "000.00.00.H12-261123-0005", 1, monday)
    store.accept_many([{  # a dossier.status moves it on (through the status machine): no longer at intake
        "sender": "000.00.00.G10", "message_id": "s1", "message_type": "dossier.status", "receiver": "000.00.00.H00",
        "dossier_code": "000.00.00.H12-261123-0005", "envelope": b"s1", "destinations": [],
        "status": StatusUpdate("000.00.00.H12-261123-0005", 2, local(23, 10), "000.00.00.G10"),
    }])  # fmt: skip
    _sync(store, "m1", "000.00.00.H12-261123-0001", 1, monday)  # a resend is recorded once

    at_intake = {d.dossier_code for d in store.dossiers_at_intake()}
    assert at_intake == {"000.00.00.H12-261123-0001", "000.00.00.H12-261123-0004"}
    assert overdue_intake(store, settings, now=local(24, 8, 29)) == []
    (late,) = overdue_intake(store, settings, now=local(24, 10).astimezone(dt.UTC))
    assert late.dossier_code == "000.00.00.H12-261123-0001"
    assert late.deadline == local(24, 8, 30).astimezone(dt.UTC) and late.overdue_hours == 1.5
    assert (late.channel, late.source) == (2, "000.00.00.H12")
    timeline = store.timeline("000.00.00.H12-261123-0001")
    assert [(e.status, e.outcome) for e in timeline] == [(1, "applied")]  # a sync runs through the status machine
    store.close()
