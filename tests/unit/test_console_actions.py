"""The operator page's actions: close dead letters with a reason, pause / resume a destination, retry now — each
behind its confirmation step and the CSRF token, done under the operator's name and audited."""

from __future__ import annotations

import pytest

from hub.store.audit import AuditFilter
from tests.unit.test_api import register
from tests.unit.test_console_auth import PORTAL, _csrf, _dead_letter, _sign_in
from tests.unit.test_console_auth import client as client  # the fixture: a hub with the page, operator "lan"

pytestmark = pytest.mark.unit


def routed(client) -> None:
    register(client.app.state.hub, code=PORTAL, name="National portal", kind="national_portal",
             receives=["dossier.sync"], endpoint={"url": "http://127.0.0.1:9/portal"})  # fmt: skip


def audited(client, action: str) -> list[tuple[str, str | None, str | None, str | None]]:
    entries = client.app.state.hub.store.audit_entries(AuditFilter(action=action)).items
    return [(e.actor, e.subject, e.role, e.client) for e in entries]


def test_closing_dead_letters_needs_csrf_a_confirmation_and_a_reason(client, pki) -> None:
    store = client.app.state.hub.store
    dead_id = _dead_letter(client, pki)
    _sign_in(client)
    page = client.get("/")
    assert 'formaction="/console/dead-letters/close"' in page.text
    token = _csrf(page.text)

    stale = client.post("/console/dead-letters/close/confirm", data={"id": str(dead_id), "reason": "x"},
                        follow_redirects=False)  # fmt: skip
    assert stale.status_code == 303 and store.dead_letters()  # no CSRF token: nothing closed

    confirm = client.post("/console/dead-letters/close", data={"csrf_token": token, "only": str(dead_id)})
    assert confirm.status_code == 200 and 'id="action-reason"' in confirm.text and "lan" in confirm.text
    assert store.dead_letters()  # the confirmation first

    blank = client.post("/console/dead-letters/close/confirm", data={"csrf_token": token, "id": str(dead_id),
                                                                     "reason": "  "})  # fmt: skip
    assert blank.status_code == 400 and "Vui lòng nhập lý do" in blank.text and store.dead_letters()

    done = client.post("/console/dead-letters/close/confirm", follow_redirects=False,
                       data={"csrf_token": token, "id": str(dead_id), "reason": "gửi bằng tay"})  # fmt: skip
    assert done.status_code == 303
    page = client.get("/")
    assert "Đã đóng 1 thư lỗi" in page.text and f'id="dl-{dead_id}"' not in page.text
    (closed,) = store.dead_letters(state="closed")
    assert (closed.closed_by, closed.close_reason) == ("lan", "gửi bằng tay")
    assert audited(client, "dead_letter.close") == [("lan", str(dead_id), "operator", "testclient")]

    again = client.post("/console/dead-letters/close/confirm",
                        data={"csrf_token": token, "id": str(dead_id), "reason": "again"})  # fmt: skip
    assert f"Thư lỗi {dead_id} đã được đóng trước đó." in again.text  # the flash says why, in Vietnamese
    assert len(audited(client, "dead_letter.close")) == 1


def test_pause_and_resume_from_the_queue_panel(client, pki) -> None:
    routed(client)
    _dead_letter(client, pki)  # the destination has traffic: it is in the queue panel
    _sign_in(client)
    page = client.get("/")
    assert f'href="/console/destinations/{PORTAL}/pause"' in page.text and "Đang tạm dừng" not in page.text
    token = _csrf(page.text)
    store = client.app.state.hub.store

    confirm = client.get(f"/console/destinations/{PORTAL}/pause")
    assert confirm.status_code == 200 and 'id="action-reason"' in confirm.text and store.paused_destinations() == {}
    assert client.get(f"/console/destinations/{PORTAL}/explode").status_code == 404

    client.post(f"/console/destinations/{PORTAL}/pause", data={"reason": "bảo trì"})  # no CSRF token
    assert store.paused_destinations() == {}
    blank = client.post(f"/console/destinations/{PORTAL}/pause", data={"csrf_token": token, "reason": ""})
    assert blank.status_code == 400 and store.paused_destinations() == {}
    client.post(f"/console/destinations/{PORTAL}/pause", data={"csrf_token": token, "reason": "bảo trì"},
                follow_redirects=False)  # fmt: skip
    assert list(store.paused_destinations()) == [PORTAL]
    page = client.get("/")
    assert f"Đã tạm dừng gửi tới {PORTAL}" in page.text and "Đang tạm dừng" in page.text
    assert f'href="/console/destinations/{PORTAL}/resume"' in page.text

    assert "Tạm dừng bởi lan" in client.get(f"/console/destinations/{PORTAL}/resume").text
    client.post(f"/console/destinations/{PORTAL}/resume", data={"csrf_token": token})
    assert store.paused_destinations() == {} and "Đang tạm dừng" not in client.get("/console/panels").text
    assert [a[:3] for a in audited(client, "destination")] == [("lan", PORTAL, "operator")] * 2

    unknown = client.post("/console/destinations/000.00.00.X99/pause", data={"csrf_token": token, "reason": "x"})
    assert "Không có đối tác nhận này." in unknown.text and store.paused_destinations() == {}


def test_retry_now_for_a_destination_and_for_one_message(client, pki) -> None:
    routed(client)
    store = client.app.state.hub.store
    dead_id = _dead_letter(client, pki)
    delivery = store.dead_letter(dead_id)
    store.replay(dead_id, actor="lan")  # queued again, then backed off
    store.start_attempts([delivery.delivery_id])
    store.record_retry(delivery.delivery_id, error="HTTP 503", delay_s=3600)
    _sign_in(client)
    page = client.get("/")
    assert f'href="/console/destinations/{PORTAL}/retry-now"' in page.text
    token = _csrf(page.text)
    assert "1 lần gửi đang chờ" in client.get(f"/console/destinations/{PORTAL}/retry-now").text

    client.post(f"/console/destinations/{PORTAL}/retry-now", data={"csrf_token": token}, follow_redirects=False)
    assert "Đã đưa 1 lần gửi đi gửi lại ngay" in client.get("/").text
    assert store.delivery(delivery.delivery_id).generation == 1

    trace = client.get(f"/?q={delivery.message_id}")
    assert 'id="retry-now-message"' in trace.text  # still waiting (nothing consumed it): the button is there
    client.post("/console/messages/retry-now", data={"csrf_token": token, "message_id": delivery.message_id})
    assert store.delivery(delivery.delivery_id).generation == 2
    assert [a[1] for a in audited(client, "delivery.retry_now")] == [delivery.message_id, PORTAL]
