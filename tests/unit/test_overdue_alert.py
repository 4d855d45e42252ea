"""The overdue-processing alert beside the intake alert: a dossier past its current due date and not finished is
counted by ``lienthong_processing_overdue`` (the gauge ``LienthongProcessingOverdue`` watches), listed on the
operator page's deadlines panel and in ``GET /api/v1/deadlines``; a supplement received with a new due date, or the
dossier being done, clears it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from hub.console import metrics, views
from hub.store import StatusUpdate, SyncReport
from tests.unit.test_console_auth import _sign_in
from tests.unit.test_console_auth import client as client  # the fixture: a hub with the page, operator "lan"

pytestmark = pytest.mark.unit

PROVINCE, MINISTRY, HUB = "000.00.00.H12", "000.00.00.G10", "000.00.00.H00"
LATE, ON_TIME = "000.00.00.H12-261102-0001", "000.00.00.H12-261102-0002"


def _sync(store, message_id: str, code: str, at: datetime, due: datetime, status: int = 2) -> None:
    store.accept_many([{
        "sender": PROVINCE, "message_id": message_id, "message_type": "dossier.sync", "receiver": HUB,
        "dossier_code": code, "envelope": message_id.encode(), "destinations": [],
        "sync": SyncReport(code, status, at, PROVINCE, submitted_at=at, channel=2, due_at=due),
    }])  # fmt: skip


def _status(store, message_id: str, code: str, status: int, at: datetime, **detail: object) -> None:
    store.accept_many([{
        "sender": MINISTRY, "message_id": message_id, "message_type": "dossier.status", "receiver": HUB,
        "dossier_code": code, "envelope": message_id.encode(), "destinations": [],
        "status": StatusUpdate(code, status, at, MINISTRY, detail or None),
    }])  # fmt: skip


def _scraped(client) -> float:
    """The gauge as Prometheus scrapes it (``/metrics`` caches its store reads a few seconds: read once)."""
    scraped = client.get("/metrics", headers={"Authorization": "Bearer admin-key"}).text
    return float(re.search(r"^lienthong_processing_overdue (\S+)$", scraped, re.M)[1])


def _gauge(client) -> float:
    """The gauge as ``/metrics`` computes it, without its cache."""
    (family,) = [f for f in metrics.families(views.hub_snapshot(client.app.state.hub, previews=False))
                 if f.name == "lienthong_processing_overdue"]  # fmt: skip
    return float(family.samples[0].value)


def test_a_dossier_past_its_due_date_raises_the_overdue_processing_alert(client) -> None:
    store = client.app.state.hub.store
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    _sync(store, "s-late", LATE, start, due=now - timedelta(days=2))
    _sync(store, "s-ok", ON_TIME, start, due=now + timedelta(days=20))
    _status(store, "p-late", LATE, 4, start + timedelta(hours=1))
    _status(store, "p-ok", ON_TIME, 4, start + timedelta(hours=1))
    assert _scraped(client) == 1 == _gauge(client)

    _sign_in(client)
    panels = client.get("/console/panels").text
    assert re.search(r'id="processing-total">1<', panels)
    listed = panels.split('id="processing-list"', 1)[1].split("</table>", 1)[0]
    assert f'data-dossier="{LATE}"' in listed and ON_TIME not in listed
    tile = re.search(r'id="processing-tile"><strong>([^<]+)</strong>', panels)
    assert tile and tile[1] == "1"

    answer = client.get("/api/v1/deadlines", headers={"X-Api-Key": "admin-key"}).json()
    (late,) = answer["overdue_processing"]
    assert (late["dossier_code"], late["status"], late["source"]) == (LATE, 4, MINISTRY)
    due_at = datetime.fromisoformat(late["due_at"].replace("Z", "+00:00"))
    assert abs(due_at - (now - timedelta(days=2))) < timedelta(seconds=1)
    assert late["overdue_working_hours"] > 0 and answer["calendar"]["country"] == "VN"

    # a supplement requested, then received with a new due date: no longer overdue
    _status(store, "p-req", LATE, 5, now - timedelta(hours=3), step={"actor": "Trần Thị Bình"})
    new_due = (now + timedelta(days=5)).replace(microsecond=0)
    _status(store, "p-rec", LATE, 4, now - timedelta(hours=2), new_due_at=new_due.isoformat().replace("+00:00", "Z"))
    assert store.due_date(LATE)[0] == new_due
    assert _gauge(client) == 0
    assert client.get("/api/v1/deadlines", headers={"X-Api-Key": "admin-key"}).json()["overdue_processing"] == []
    panels = client.get("/console/panels").text
    assert 'id="processing-total"' not in panels and "Không có hồ sơ nào quá hạn xử lý." in panels
    # the dossier's timeline on the page: its current due date, and the update that moved it
    page = client.get("/", params={"q": LATE}).text
    assert 'id="dossier-due"' in page and page.count('class="sub due-moved"') == 1
    assert "Hạn trả dời từ" in page

    # past due again, then done: a done dossier (9) is not overdue
    # (the sync reports the status the dossier has, 4: a sync goes through the status machine too)
    _sync(store, "s-ok-2", ON_TIME, now - timedelta(hours=1), due=now - timedelta(minutes=5), status=4)
    assert _gauge(client) == 1
    _status(store, "p-done", ON_TIME, 9, now - timedelta(minutes=1))
    assert _gauge(client) == 0
