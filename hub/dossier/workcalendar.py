"""The working calendar that deadlines are counted on: Vietnam's public holidays from the ``holidays`` package,
plus the days the government moves each year, from configuration.

A day is a working day when, in this order of precedence:

1. it is a configured working day (a Saturday the government decrees worked in exchange for a bridge day off) →
   working;
2. it is a configured day off (a compensatory day off the package does not know yet) → off;
3. the package lists it as a weekend day worked under a decree it knows (``weekend_workdays``) → working;
4. it is one of the country's public holidays (Tết, 30 April, 1 May, 2 September… and the package's substitute
   days) → off;
5. otherwise its weekday decides (Mon–Fri by default).

Configuration (``Settings``): ``LIENTHONG_HOLIDAYS_COUNTRY`` (``VN``; empty for none), ``LIENTHONG_HOLIDAYS``
(extra days off, ISO dates), ``LIENTHONG_EXTRA_WORKING_DAYS`` (weekend days worked, ISO dates) and
``LIENTHONG_CALENDAR_FILE``, a YAML file with labelled days (the usual place: one entry per decree)::

    days_off:
      2026-01-02: "Nghỉ bù Tết Dương lịch (làm bù thứ Bảy 10/01)"
    working_days:
      2026-01-10: "Làm bù cho ngày 02/01"

A date both off and worked in the configuration is refused (``CalendarConfigError``). Working hours of a day
(07:30–11:30 and 13:30–17:00 by default; the lunch break is not counted) and the time zone (Asia/Ho_Chi_Minh)
complete the calendar. All functions take and give timezone-aware datetimes; results are in UTC.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.errors import LienthongError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = "07:30-11:30,13:30-17:00"
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
DEFAULT_COUNTRY = "VN"
INTAKE_HOURS = 8.0  # the intake answer's deadline (DOMAIN.md §5), the default of ``deadline``
LANGUAGES = ("vi", "en_US")  # the languages the package names Vietnam's holidays in
CONFIGURED = "configured"  # the source of a day off or working day taken from the configuration
CONFIGURED_OFF_LABEL = "Ngày nghỉ theo cấu hình"
CONFIGURED_WORKING_LABEL = "Ngày làm việc theo cấu hình"
DECREED_WORKING_LABEL = "Ngày làm việc bù"


class CalendarConfigError(LienthongError, ValueError):
    """The working calendar's configuration cannot be used (a bad date, a day both off and worked, a bad file)."""


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


def parse_dates(text: str | Iterable[dt.date], what: str = "date") -> frozenset[dt.date]:
    """``2026-01-02, 2026-01-10`` (ISO dates, comma-separated) → dates; an iterable of dates as it is."""
    if not isinstance(text, str):
        return frozenset(text)
    found = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            found.add(dt.date.fromisoformat(part))
        except ValueError:
            raise CalendarConfigError(f"{what} {part!r} is not an ISO date (YYYY-MM-DD)") from None
    return frozenset(found)


parse_holidays = parse_dates  # the former name


@dataclass(frozen=True, slots=True)
class CalendarDay:
    """A day the calendar lists: a day off, or a weekend day worked; ``source`` is the country code (the
    ``holidays`` package) or ``configured``."""

    day: dt.date
    name: str
    source: str
    working: bool

    @property
    def weekday(self) -> str:
        return DAY_NAMES[self.day.weekday()].capitalize()


@lru_cache(maxsize=64)
def _country_year(country: str, year: int, language: str) -> tuple[tuple[tuple[dt.date, str], ...], frozenset[dt.date]]:
    """The package's public holidays of ``country`` in ``year`` (several names of one day joined) and the weekend
    days it knows to be worked that year; cached (the package computes lunar dates)."""
    import holidays

    try:
        days = holidays.country_holidays(country, years=year, language=language)
    except NotImplementedError:
        raise CalendarConfigError(f"the holidays package has no country {country!r}") from None
    names = tuple(sorted((day, "; ".join(days.get_list(day))) for day in days))
    worked = frozenset(d for d in getattr(days, "weekend_workdays", ()) if d.year == year)
    return names, worked


@dataclass(frozen=True)
class WorkingCalendar:
    """Working days, hours of a working day, the country's public holidays and the configured days moved, in one
    time zone (see the module docstring for the precedence)."""

    days: frozenset[int] = frozenset(range(5))
    hours: tuple[tuple[dt.time, dt.time], ...] = field(default_factory=lambda: parse_hours(DEFAULT_HOURS))
    #: Configured extra days off (compensatory days the government decrees), besides the country's holidays.
    holidays: frozenset[dt.date] = frozenset()
    timezone: str = DEFAULT_TIMEZONE
    #: Whose public holidays (the ``holidays`` package); ``None``: none.
    country: str | None = DEFAULT_COUNTRY
    #: Configured days worked although weekend or holiday (the Saturdays working days are moved to).
    working_days: frozenset[dt.date] = frozenset()
    #: Labels of configured days (from the calendar file).
    labels: Mapping[dt.date, str] = field(default_factory=dict, hash=False)
    language: str = "vi"

    def __post_init__(self) -> None:
        both = self.holidays & self.working_days
        if both:
            days = ", ".join(d.isoformat() for d in sorted(both))
            raise CalendarConfigError(f"configured both as a day off and as a working day: {days}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _country(self, year: int) -> tuple[dict[dt.date, str], frozenset[dt.date]]:
        if not self.country:
            return {}, frozenset()
        names, worked = _country_year(self.country, year, self.language)
        return dict(names), worked

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.working_days:
            return True
        if day in self.holidays:
            return False
        public, worked = self._country(day.year)
        if day in worked:
            return True
        if day in public:
            return False
        return day.weekday() in self.days

    def year(self, year: int) -> list[CalendarDay]:
        """The year's days off that are not plain weekends (public holidays, also those on a weekend, and
        configured days off) and its weekend days worked, in date order."""
        public, worked = self._country(year)
        source = self.country or ""
        listed: dict[dt.date, CalendarDay] = {}
        for day, name in public.items():
            listed[day] = CalendarDay(day, name, source, False)
        for day in worked:
            listed[day] = CalendarDay(day, self._swap_label(day, public), source, True)
        for day in self.holidays:
            if day.year == year:
                listed[day] = CalendarDay(day, self.labels.get(day, CONFIGURED_OFF_LABEL), CONFIGURED, False)
        for day in self.working_days:
            if day.year == year:
                listed[day] = CalendarDay(day, self.labels.get(day, CONFIGURED_WORKING_LABEL), CONFIGURED, True)
        return [listed[d] for d in sorted(listed)]

    def _swap_label(self, worked: dt.date, public: Mapping[dt.date, str]) -> str:
        """A decreed weekend day worked, named after the day off it pays for (the package names that one
        "… (thay cho ngày 22/08/2026)" / "… (substituted from 08/22/2026)")."""
        marks = (f"{worked:%d/%m/%Y}", f"{worked:%m/%d/%Y}")
        for day, name in sorted(public.items()):
            if any(mark in name for mark in marks):
                if self.language.startswith("en"):
                    return f"Working day in exchange for {day:%d/%m/%Y}"
                return f"Ngày làm bù cho ngày nghỉ {day:%d/%m/%Y}"
        return DECREED_WORKING_LABEL

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


def read_calendar_file(path: Path) -> tuple[dict[dt.date, str], dict[dt.date, str]]:
    """A calendar file's labelled ``days_off`` and ``working_days`` (see the module docstring)."""
    import yaml

    try:
        loaded: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise CalendarConfigError(f"cannot read the calendar file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CalendarConfigError(f"the calendar file {path} is not YAML: {exc}") from None
    if not isinstance(loaded, dict) or set(loaded) - {"days_off", "working_days"}:
        raise CalendarConfigError(f"the calendar file {path} takes only the maps days_off and working_days")
    return _labelled(loaded.get("days_off"), path, "days_off"), _labelled(loaded.get("working_days"), path,
                                                                          "working_days")  # fmt: skip


def _labelled(value: object, path: Path, key: str) -> dict[dt.date, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CalendarConfigError(f"{path}: {key} must map dates to labels")
    days: dict[dt.date, str] = {}
    for day, label in value.items():
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date | str):
            raise CalendarConfigError(f"{path}: {key}: {day!r} is not a date")
        try:
            parsed = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
        except ValueError:
            raise CalendarConfigError(f"{path}: {key}: {day!r} is not an ISO date (YYYY-MM-DD)") from None
        days[parsed] = "" if label is None else str(label).strip()
    return days


def calendar_from_settings(settings: Any) -> WorkingCalendar:
    """The calendar configured in ``Settings`` (see the module docstring); ``ValueError`` (``CalendarConfigError``
    among them) for settings that cannot be used."""
    off = dict.fromkeys(parse_dates(settings.holidays, "LIENTHONG_HOLIDAYS"), "")
    worked = dict.fromkeys(parse_dates(settings.extra_working_days, "LIENTHONG_EXTRA_WORKING_DAYS"), "")
    if settings.calendar_file is not None:
        file_off, file_worked = read_calendar_file(Path(settings.calendar_file))
        off.update(file_off)
        worked.update(file_worked)
    labels = {day: label for day, label in {**off, **worked}.items() if label}
    return WorkingCalendar(
        days=parse_days(settings.working_days),
        hours=parse_hours(settings.working_hours),
        holidays=frozenset(off),
        timezone=settings.calendar_timezone,
        country=settings.holidays_country.strip().upper() or None,
        working_days=frozenset(worked),
        labels=labels,
    )
