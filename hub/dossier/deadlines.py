"""The intake deadline: an online dossier must be answered within **8 working hours** of submission (Cà Mau
Điều 24.1.a, Quảng Nam Điều 12.4, Tiền Giang Điều 16.1.a; DOMAIN.md §5).

``WorkingCalendar`` counts working time: working days (Mon–Fri by default), working hours of each day
(07:30–11:30 and 13:30–17:00 by default, the lunch break is not counted), in a time zone (Asia/Ho_Chi_Minh),
minus a list of holidays. All functions take and give timezone-aware datetimes; results are in UTC.

- ``calendar.working_hours_between(start, end)`` → working hours (float) from ``start`` to ``end``;
- ``calendar.deadline(submitted_at, hours=8)`` → the instant the ``hours``-th working hour ends;
- ``calendar_from_settings(settings)`` → the calendar configured by ``LIENTHONG_WORKING_DAYS``,
  ``LIENTHONG_WORKING_HOURS``, ``LIENTHONG_HOLIDAYS``, ``LIENTHONG_CALENDAR_TIMEZONE``.

The store's ``Store.overdue_intake(now, deadline_of)`` lists dossiers still at status 1 past their deadline.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = "07:30-11:30,13:30-17:00"
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
INTAKE_HOURS = 8.0


def parse_days(text: str) -> frozenset[int]:
    """``Mon-Fri`` / ``mon,tue,sat`` / ``0-4`` → weekday numbers (Monday = 0)."""

    def day(token: str) -> int:
        token = token.strip().lower()
        if token.isdigit() and 0 <= int(token) <= 6:
            return int(token)
        if token[:3] in DAY_NAMES:
            return DAY_NAMES.index(token[:3])
        raise ValueError(f"unknown weekday {token!r} (Mon…Sun or 0…6)")

    days: set[int] = set()
    for part in (p for p in text.split(",") if p.strip()):
        if "-" in part:
            first, last = (day(t) for t in part.split("-", 1))
            if last < first:
                raise ValueError(f"weekday range {part.strip()!r} runs backwards")
            days.update(range(first, last + 1))
        else:
            days.add(day(part))
    if not days:
        raise ValueError("no working days given")
    return frozenset(days)


def parse_hours(text: str) -> tuple[tuple[dt.time, dt.time], ...]:
    """``07:30-11:30,13:30-17:00`` → ordered, non-overlapping (start, end) periods of a working day."""
    periods = []
    for part in (p for p in text.split(",") if p.strip()):
        found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", part)
        if not found:
            raise ValueError(f"working period {part.strip()!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        start, end = dt.time(h1, m1), dt.time(h2, m2)
        if end <= start:
            raise ValueError(f"working period {part.strip()!r} ends before it starts")
        periods.append((start, end))
    periods.sort()
    for (_, end), (start, _) in itertools.pairwise(periods):
        if start < end:
            raise ValueError(f"working periods overlap: {text!r}")
    if not periods:
        raise ValueError("no working hours given")
    return tuple(periods)


def parse_holidays(text: str | Iterable[dt.date]) -> frozenset[dt.date]:
    if not isinstance(text, str):
        return frozenset(text)
    return frozenset(dt.date.fromisoformat(p.strip()) for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class WorkingCalendar:
    """Working days, hours of a working day and holidays, in one time zone."""

    days: frozenset[int] = frozenset(range(5))
    hours: tuple[tuple[dt.time, dt.time], ...] = field(default_factory=lambda: parse_hours(DEFAULT_HOURS))
    holidays: frozenset[dt.date] = frozenset()
    timezone: str = DEFAULT_TIMEZONE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: dt.date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def hours_per_day(self) -> float:
        return sum(_seconds(start, end) for start, end in self.hours) / 3600

    def _periods(self, start_day: dt.date, *, backwards: bool = False) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Working periods (local, aware) day by day from ``start_day`` (never more than ~30 years)."""
        zone = self.zone
        step = dt.timedelta(days=-1 if backwards else 1)
        day = start_day
        for _ in range(366 * 30):
            if self.is_working_day(day):
                periods = [
                    (dt.datetime.combine(day, a, zone), dt.datetime.combine(day, b, zone)) for a, b in self.hours
                ]
                yield from reversed(periods) if backwards else periods
            day += step
        raise ValueError("the calendar has no working time in 30 years (every day a holiday?)")

    def working_hours_between(self, start: dt.datetime, end: dt.datetime) -> float:
        """Working hours from ``start`` to ``end`` (negative when ``end`` is before ``start``)."""
        _aware(start, "start")
        _aware(end, "end")
        if end < start:
            return -self.working_hours_between(end, start)
        local_start, local_end = start.astimezone(self.zone), end.astimezone(self.zone)
        total = 0.0
        for a, b in self._periods(local_start.date()):
            if a >= local_end:
                break
            lo, hi = max(a, local_start), min(b, local_end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total / 3600

    def deadline(self, submitted_at: dt.datetime, hours: float = INTAKE_HOURS) -> dt.datetime:
        """When ``hours`` working hours after ``submitted_at`` have passed (UTC). A submission outside working
        hours starts counting at the next working period."""
        _aware(submitted_at, "submitted_at")
        if hours < 0:
            raise ValueError("hours must not be negative")
        local = submitted_at.astimezone(self.zone)
        left = hours * 3600
        for a, b in self._periods(local.date()):
            if b <= local:
                continue
            begin = max(a, local)
            available = (b - begin).total_seconds()
            if left <= available:
                return (begin + dt.timedelta(seconds=left)).astimezone(dt.UTC)
            left -= available
        raise AssertionError("unreachable")  # pragma: no cover - _periods raises first

    def is_overdue(self, submitted_at: dt.datetime, now: dt.datetime, hours: float = INTAKE_HOURS) -> bool:
        return now >= self.deadline(submitted_at, hours)


def _seconds(a: dt.time, b: dt.time) -> float:
    return (dt.datetime.combine(dt.date.min, b) - dt.datetime.combine(dt.date.min, a)).total_seconds()


def _aware(value: dt.datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def calendar_from_settings(settings) -> WorkingCalendar:
    """The calendar configured in ``Settings`` (see the module docstring)."""
    return WorkingCalendar(
        days=parse_days(settings.working_days),
        hours=parse_hours(settings.working_hours),
        holidays=parse_holidays(settings.holidays),
        timezone=settings.calendar_timezone,
    )


@dataclass(frozen=True)
class OverdueDossier:
    """A dossier still at status 1 (new) past its intake deadline."""

    dossier_code: str
    submitted_at: dt.datetime
    deadline: dt.datetime
    overdue_hours: float  # working hours past the deadline
    channel: int | None
    source: str | None


def overdue_intake(store, settings, now: dt.datetime | None = None) -> list[OverdueDossier]:
    """Dossiers still at status 1 whose ``intake_deadline_hours`` working hours since submission have passed,
    most overdue first."""
    calendar = calendar_from_settings(settings)
    hours = settings.intake_deadline_hours
    now = now or dt.datetime.now(dt.UTC)
    found = []
    for row in store.dossiers_at_intake():
        due = calendar.deadline(row.submitted_at, hours)
        if now >= due:
            found.append(
                OverdueDossier(
                    dossier_code=row.dossier_code,
                    submitted_at=row.submitted_at,
                    deadline=due,
                    overdue_hours=round(calendar.working_hours_between(due, now), 2),
                    channel=row.channel,
                    source=row.source,
                )
            )
    found.sort(key=lambda d: (d.deadline, d.dossier_code))
    return found
