"""`hub calendar show YEAR [--json]`: the year's non-working days (public holidays from the holidays package and the
configured days off) and its weekend days worked, labelled, in 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app
from hub.config import get_settings


def run(*args: str, **env: str):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "80", **env}, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def test_calendar_show_2026_lists_tet_and_national_day_in_80_columns() -> None:
    done = run("calendar", "show", "2026")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    tet = [line for line in lines if "2026-02-17" in line]
    assert tet and "Tết Nguyên Đán" in tet[0] and "Tue" in tet[0]
    national = [line for line in lines if "2026-09-02" in line]
    assert national and "Quốc khánh" in national[0]
    worked = [line for line in lines if "2026-08-22" in line]  # the Saturday worked for 31 August off
    assert worked and "31/08/2026" in worked[0]


def test_calendar_show_json_with_configured_days(tmp_path: Path) -> None:
    file = tmp_path / "calendar.yaml"
    file.write_text("days_off:\n  2026-01-02: Nghỉ bù Tết Dương lịch\nworking_days:\n  2026-01-10: Làm bù 02/01\n",
                    encoding="utf-8")  # fmt: skip
    done = run("calendar", "show", "2026", "--json", LIENTHONG_CALENDAR_FILE=str(file),
               LIENTHONG_HOLIDAYS="2026-12-31")  # fmt: skip
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    off = {d["date"]: d for d in doc["non_working_days"]}
    assert off["2026-02-17"]["source"] == "VN" and "Tết" in off["2026-02-17"]["name"]
    assert off["2026-09-02"]["weekday"] == "Wed"
    assert off["2026-01-02"] == {"date": "2026-01-02", "weekday": "Fri", "name": "Nghỉ bù Tết Dương lịch",
                                 "source": "configured"}  # fmt: skip
    assert off["2026-12-31"]["source"] == "configured"
    worked = {d["date"]: d for d in doc["working_weekend_days"]}
    assert worked["2026-01-10"]["name"] == "Làm bù 02/01" and "2026-08-22" in worked
    assert doc["working_weekdays"] == "Mon-Fri" and doc["country"] == "VN"


def test_calendar_show_refuses_settings_it_cannot_use() -> None:
    done = run("calendar", "show", "2026", LIENTHONG_EXTRA_WORKING_DAYS="2026-01-02",
               LIENTHONG_HOLIDAYS="2026-01-02")  # fmt: skip
    assert done.exit_code == 2
    assert "both as a day off and as a working day: 2026-01-02" in done.output
