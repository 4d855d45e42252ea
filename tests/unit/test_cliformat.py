"""The CLI's shared formatting: zone labels, labelled times and the JSON form of the store's records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.cliformat import Clock, jsonable

AT = datetime(2026, 12, 2, 3, 15, 4, tzinfo=UTC)


def test_times_are_labelled_with_their_zone() -> None:
    local, utc = Clock.of("Asia/Ho_Chi_Minh"), Clock.of("Asia/Ho_Chi_Minh", utc=True)
    assert (local.label, local.full(AT), local.short(AT)) == (
        "UTC+7",
        "2026-12-02 10:15:04 (UTC+7)",
        "2026-12-02 10:15",
    )
    assert (utc.label, utc.full(AT)) == ("UTC", "2026-12-02 03:15:04 (UTC)")
    assert Clock.of("Asia/Kolkata").label == "UTC+5:30" and Clock.of("America/Caracas").label == "UTC-4"
    assert local.full(None) == local.short(None) == "-"


@dataclass(frozen=True)
class Record:
    id: int
    at: datetime
    payload: bytes
    tags: tuple[str, ...]
    nested: dict[str, datetime | None]


def test_jsonable_keeps_offsets_and_leaves_bytes_out() -> None:
    record = Record(1, AT, b"<secret/>", ("a", "b"), {"later": AT, "never": None})
    doc = jsonable([record], Clock.of("Asia/Ho_Chi_Minh"))
    assert json.loads(json.dumps(doc)) == [
        {"id": 1, "at": "2026-12-02T10:15:04+07:00", "tags": ["a", "b"],
         "nested": {"later": "2026-12-02T10:15:04+07:00", "never": None}}
    ]  # fmt: skip
    assert datetime.fromisoformat(doc[0]["at"]) == AT
    assert jsonable(record, Clock.of("UTC", utc=True))["at"] == "2026-12-02T03:15:04+00:00"
