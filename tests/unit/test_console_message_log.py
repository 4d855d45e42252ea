"""The message log page and payload downloads on the operator page (in process): filters in Vietnam time, pages
with "51–100 of …" totals, refused filters, masked and raw downloads by role with their audit rows, the trace's
audit row, and the details the hub writes translated on the Vietnamese page."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from datetime import UTC

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from lxml import etree

from hub import packets
from hub.api import create_app
from hub.config import Settings
from hub.console import auth
from hub.console.i18n import Translator
from hub.console.message_log import local_time
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import sign_payload
from hub.store.audit import AuditFilter
from hub.store.schema import messages

pytestmark = pytest.mark.unit

PROVINCE, PORTAL = "000.00.00.H12", "000.00.00.G22"
PASSWORD = "mat-khau-dai-du"
ADMIN_KEY = "admin-key-for-the-console"


@pytest.fixture
def client(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var", admin_api_key=ADMIN_KEY,
        operators=f"lan:{auth.hash_password(PASSWORD)}", log_format="console",
    )  # fmt: skip
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def sign_in(client: TestClient, name: str = "lan", password: str = PASSWORD) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
    response = client.post("/login", data={"csrf_token": token, "username": name, "password": password, "next": "/"},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303


def log_sync(client: TestClient, pki, message_id: str, at: dt.datetime, dossier: str = "D-1") -> None:
    store = client.app.state.hub.store
    header = EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync", message_id=message_id)
    data = etree.tostring(
        sign_payload(pki.province.signer, header, packets.to_element(packets.example("dossier.sync")))
    )
    accepted = store.accept(sender=PROVINCE, message_id=message_id, correlation_id=None, message_type="dossier.sync",
                            receiver=PORTAL, dossier_code=dossier, envelope=data, destinations=[PORTAL])  # fmt: skip
    with store.transaction() as conn:
        conn.execute(sa.update(messages).where(messages.c.id == accepted.message_pk).values(received_at=at))


def rows(html: str) -> list[str]:
    return re.findall(r'class="trace-link" href="[^"]*"[^>]*>([^<]+)</a>', html)


def test_the_log_needs_a_session(client) -> None:
    response = client.get("/console/messages?state=dead", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    assert client.get("/console/messages/x/payload", follow_redirects=False).status_code == 303


def test_filters_pages_and_totals(client, pki) -> None:
    t0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội
    for i in range(55):
        log_sync(client, pki, f"m-{i:02d}", t0 + dt.timedelta(minutes=i), dossier="D-odd" if i % 2 else "D-even")
    sign_in(client)
    first = client.get("/console/messages")
    assert first.status_code == 200
    assert rows(first.text)[:2] == ["m-54", "m-53"] and len(rows(first.text)) == 50
    assert "1–50 trên tổng số 55" in first.text and "Nhật ký thông điệp" in first.text
    assert "02/03/2026 08:54:00" in first.text  # Vietnam time
    next_link = re.search(r'id="log-next" href="([^"]+)"', first.text)[1].replace("&amp;", "&")
    second = client.get(next_link)
    assert rows(second.text) == [f"m-{i:02d}" for i in range(4, -1, -1)]
    assert "51–55 trên tổng số 55" in second.text and 'id="log-next"' not in second.text

    # A range in Vietnam time (08:10 to before 08:20) with the dossier filter; English numbers and labels.
    narrowed = client.get("/console/messages?since=2026-03-02T08:10&until=2026-03-02T08:20&dossier=D-odd&lang=en")
    assert rows(narrowed.text) == ["m-19", "m-17", "m-15", "m-13", "m-11"]
    assert "1–5 of 5" in narrowed.text and "Message log" in narrowed.text
    assert rows(client.get(f"/console/messages?state=queued&sender={PROVINCE}&receiver={PORTAL}").text)
    assert rows(client.get("/console/messages?state=delivered").text) == []
    assert "No message matches the filters." in client.get("/console/messages?type=payment.receipt").text


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since"), ("since=2026-03-02T09:00&until=2026-03-02T08:00", "until"),
     ("state=lost", "state"), ("cursor=not-a-cursor", "cursor"), ("since=0001-01-01T00:00", "since")],
)  # fmt: skip
def test_a_refused_filter_is_400_naming_it(client, query: str, field: str) -> None:
    sign_in(client)
    response = client.get(f"/console/messages?{query}&lang=en")
    assert response.status_code == 400
    assert f"The “{field}” filter is not valid" in response.text


def test_form_times_are_vietnam_time_unless_they_carry_an_offset() -> None:
    assert local_time("2026-03-02T08:10") == dt.datetime(2026, 3, 2, 1, 10, tzinfo=UTC)
    assert local_time("2026-03-02 08:10:30") == dt.datetime(2026, 3, 2, 1, 10, 30, tzinfo=UTC)
    assert local_time("2026-03-02T08:10+00:00") == dt.datetime(2026, 3, 2, 8, 10, tzinfo=UTC)
    assert local_time("") is None
    with pytest.raises(ValueError):
        local_time("hôm qua")


def test_trace_view_and_downloads_are_audited_masked_for_operators_raw_for_admins(client, pki) -> None:
    message_id = str(uuid.uuid4())
    log_sync(client, pki, message_id, dt.datetime.now(UTC))
    store = client.app.state.hub.store
    sign_in(client)
    page = client.get(f"/?q={message_id}")
    assert 'id="trace-payload"' in page.text and "N***** V** A*" in page.text
    assert "Nguyễn Văn An" not in page.text and "001099012345" not in page.text
    assert 'id="download-masked"' in page.text and 'id="download-raw"' not in page.text  # an operator
    (view,) = store.audit_entries(AuditFilter(action="payload.view")).items
    assert (view.actor, view.role, view.subject, view.detail["raw"]) == ("lan", "operator", message_id, False)
    assert [e.state for e in store.trace(message_id).events][-1] == "viewed"  # still on the message's history

    masked = client.get(f"/console/messages/{message_id}/payload?sender={PROVINCE}")
    assert masked.status_code == 200 and "attachment" in masked.headers["content-disposition"]
    assert "N***** V** A*" in masked.text and "Nguyễn Văn An" not in masked.text
    refused = client.get(f"/console/messages/{message_id}/payload?raw=true")
    assert refused.status_code == 403 and "quản trị viên" in refused.text
    assert client.get("/console/messages/nope/payload").status_code == 404

    client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]})
    sign_in(client, "admin", ADMIN_KEY)  # the admin key signs in as "admin"
    assert 'id="download-raw"' in client.get(f"/?q={message_id}").text
    raw = client.get(f"/console/messages/{message_id}/payload?raw=true")
    assert raw.status_code == 200 and raw.content == store.message_envelope(message_id).envelope
    downloads = store.audit_entries(AuditFilter(action="payload.download")).items
    assert [(e.actor, e.outcome, e.detail["raw"]) for e in reversed(downloads)] == [
        ("lan", "ok", False), ("lan", "refused", True), ("admin", "ok", True),
    ]  # fmt: skip


def test_the_vietnamese_page_translates_the_details_the_hub_writes() -> None:
    t = Translator("vi")
    assert t.state("synced") == "đã đồng bộ" and t.state("status_synced") == "đồng bộ trạng thái hồ sơ"
    assert t.detail("D-1 -> 2: synced") == "D-1 -> 2: đã đồng bộ"
    assert t.detail("first update seen: 1 NEW") == "cập nhật đầu tiên: 1 Mới"
    assert t.detail("D-1 -> 9: 4 PROCESSING -> 9 DONE") == "D-1 -> 9: 4 Đang xử lý -> 9 Đã xử lý xong"
    stale = t.detail("stale: update to 4 PROCESSING at 2025-11-24T10:00:00+00:00 is older than the last applied "
                     "update at 2025-11-25T10:00:00+00:00; recorded, not applied")  # fmt: skip
    assert stale.startswith("cũ: cập nhật sang 4 Đang xử lý") and "không áp dụng" in stale
    assert t.detail("reported by the provincial system's dossier.sync (recorded, not run through the status "
                    "machine)").startswith("do hệ thống một cửa")  # fmt: skip
    assert t.detail("retry in 0.2 s at 2026-03-02T01:00:00+00:00").startswith("gửi lại sau 0.2 giây")
    assert t.detail("rejected: HTTP 400 from the partner") == "bị từ chối: HTTP 400 from the partner"  # theirs
    assert t.detail("operator console") == "trang điều hành" and t.detail("dead letter 3") == "thư lỗi 3"
    assert Translator("en").detail("D-1 -> 2: synced") == "D-1 -> 2: synced"
    assert (t.number(1234), Translator("en").number(1234)) == ("1.234", "1,234")
