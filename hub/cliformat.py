"""How the ``hub`` CLI prints what operators read and what scripts parse.

One place for the three conventions of the listing commands: tables sized to the terminal (80 columns when there
is none), times labelled with their zone (the working calendar's, UTC+7, unless ``--utc``), and ``--json`` as one
document on standard output with ISO 8601 times that carry their offset.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console

NARROW = 120  # below this width the tables drop or fold their less important columns


def console() -> Console:
    """A console as wide as the terminal (``COLUMNS`` wins), 80 columns when there is none (a pipe, a file).

    Built per command, not at import: ``COLUMNS`` is read when the command runs."""
    return Console(highlight=False, soft_wrap=False)


@dataclasses.dataclass(frozen=True)
class Clock:
    """The zone times are shown in: the calendar's (``Settings.calendar_timezone``) or UTC."""

    zone: tzinfo

    @classmethod
    def of(cls, calendar_timezone: str, *, utc: bool = False) -> Clock:
        return cls(UTC if utc else ZoneInfo(calendar_timezone))

    @property
    def label(self) -> str:
        """``UTC`` or ``UTC+7`` (the offset now; the calendar zones used here have no daylight saving)."""
        offset = datetime.now(self.zone).utcoffset() or timedelta(0)
        if not offset:
            return "UTC"
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        hours, rest = divmod(abs(minutes), 60)
        return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.zone)

    def short(self, at: datetime | None) -> str:
        """``2026-12-02 10:15`` in this zone (for a table whose header carries the label); ``-`` for none."""
        return "-" if at is None else f"{self.local(at):%Y-%m-%d %H:%M}"

    def full(self, at: datetime | None) -> str:
        """``2026-12-02 10:15:03 (UTC+7)``; ``-`` for none."""
        return "-" if at is None else f"{self.local(at):%Y-%m-%d %H:%M:%S} ({self.label})"


def jsonable(value: Any, clock: Clock) -> Any:
    """Dataclasses, mappings and sequences as JSON values; datetimes as ISO 8601 in ``clock``'s zone (with offset).

    Bytes are left out (payloads are fetched on purpose, never dumped by a listing)."""
    if isinstance(value, datetime):
        return clock.local(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, clock) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, clock) for v in value]
    return value


def print_json(document: Any) -> None:
    """Write one JSON document (and a newline) to standard output, nothing else: ``| python -m json.tool`` works."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
