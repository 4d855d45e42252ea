"""The two deadlines operators are alerted about, counted on the working calendar (``hub.dossier.workcalendar``:
Vietnam's public holidays from the ``holidays`` package plus the days the government moves, from configuration).

- **Intake** (``overdue_intake``): an online dossier must be answered within **8 working hours** of submission
  (Cà Mau Điều 24.1.a, Quảng Nam Điều 12.4, Tiền Giang Điều 16.1.a; DOMAIN.md §5): dossiers still at status 1 past
  that. Only the channels of ``LIENTHONG_INTAKE_ALERT_CHANNELS`` count (default ``2``, online: the rule is about
  online submissions; ``1`` in person, ``3`` postal).
- **Processing** (``overdue_processing``): a dossier past its current due date (NgayHenTra, moved by a supplement
  received with a new one; ``hub.store.due_dates``) that is not done or returned (9/10), nor ended otherwise
  (3 not received, 7 withdrawn, 8 stopped), nor waiting on the applicant (5 supplement requested, 6 financial
  obligation: the new due date comes with the supplement): ``LIENTHONG_OVERDUE_EXCLUDED_STATUSES``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from hub.dossier.workcalendar import (
    DAY_NAMES,
    DEFAULT_HOURS,
    DEFAULT_TIMEZONE,
    INTAKE_HOURS,
    CalendarConfigError,
    CalendarDay,
    WorkingCalendar,
    calendar_from_settings,
    parse_dates,
    parse_days,
    parse_holidays,
    parse_hours,
)

__all__ = [
    "DAY_NAMES",
    "DEFAULT_HOURS",
    "DEFAULT_TIMEZONE",
    "INTAKE_HOURS",
    "CalendarConfigError",
    "CalendarDay",
    "OverdueDossier",
    "OverdueProcessing",
    "WorkingCalendar",
    "calendar_from_settings",
    "overdue_intake",
    "overdue_processing",
    "parse_codes",
    "parse_dates",
    "parse_days",
    "parse_holidays",
    "parse_hours",
]


def parse_codes(text: str, what: str) -> frozenset[int]:
    """``2`` / ``1,2,3`` → the codes (statuses 1..10, channels 1..3 are checked by the caller's ``what``)."""
    codes = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if not part.isdigit():
            raise ValueError(f"{what}: {part!r} is not a code number")
        codes.add(int(part))
    return frozenset(codes)


@dataclass(frozen=True)
class OverdueDossier:
    """A dossier still at status 1 (new) past its intake deadline."""

    dossier_code: str
    submitted_at: dt.datetime
    deadline: dt.datetime
    overdue_hours: float  # working hours past the deadline
    channel: int | None
    source: str | None


def overdue_intake(store: Any, settings: Any, now: dt.datetime | None = None) -> list[OverdueDossier]:
    """Dossiers of the alerted channels still at status 1 whose ``intake_deadline_hours`` working hours since
    submission have passed, most overdue first."""
    calendar = calendar_from_settings(settings)
    channels = parse_codes(settings.intake_alert_channels, "LIENTHONG_INTAKE_ALERT_CHANNELS")
    hours = settings.intake_deadline_hours
    now = now or dt.datetime.now(dt.UTC)
    found = []
    for row in store.dossiers_at_intake(exclude_channels=()):
        if row.channel not in channels:  # an unknown channel is no known online submission
            continue
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


@dataclass(frozen=True)
class OverdueProcessing:
    """A dossier past its current due date and not finished (``overdue_processing``)."""

    dossier_code: str
    due_at: dt.datetime
    status: int | None  # its latest reported status
    overdue_hours: float  # working hours past the due date
    source: str | None  # who reported that status


def overdue_processing(store: Any, settings: Any, now: dt.datetime | None = None) -> list[OverdueProcessing]:
    """Dossiers past their current due date whose latest status is not one of the excluded ones
    (``overdue_excluded_statuses``), most overdue first."""
    calendar = calendar_from_settings(settings)
    excluded = parse_codes(settings.overdue_excluded_statuses, "LIENTHONG_OVERDUE_EXCLUDED_STATUSES")
    now = now or dt.datetime.now(dt.UTC)
    return [
        OverdueProcessing(
            dossier_code=row.dossier_code,
            due_at=row.due_at,
            status=row.status,
            overdue_hours=round(max(calendar.working_hours_between(row.due_at, now), 0.0), 2),
            source=row.source,
        )
        for row in store.past_due(now, excluded)
    ]
