"""``GET /api/v1/messages`` (the message log: filters, pages, totals, 400s naming the field, roles) and the
payload download (masked by default, raw for the admin key only, every download and refusal audited)."""

from __future__ import annotations

import pytest
from lxml import etree

from hub import packets
from hub.store.audit import AuditFilter
from tests.unit.test_api import MINISTRY, PROVINCE, Api, assert_problem
from tests.unit.test_api import api as api  # the fixture

pytestmark = pytest.mark.unit

APPLICANT, PERSONAL_ID = "Nguyễn Văn An", "001099012345"


def post_status(api: Api, message_id: str) -> str:
    payload = packets.to_element(packets.example("dossier.status"))
    response = api.post(api.envelope(message_id=message_id, payload=payload))
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def test_the_log_is_filtered_paged_and_counted(api: Api) -> None:
    for i in range(5):
        post_status(api, f"st-{i}")
    page = api.get("/api/v1/messages?limit=2", "operator")
    assert page.status_code == 200, page.text
    body = page.json()
    assert [m["message_id"] for m in body["items"]] == ["st-4", "st-3"]
    assert body["total"] == 5 and body["total_exact"] is True and body["next_cursor"]
    first = body["items"][0]
    assert first["sender"] == MINISTRY and first["destinations"] == [PROVINCE] and first["status"] == "queued"
    assert first["message_type"] == "dossier.status" and first["received_at"].endswith("Z")
    rest = api.get(f"/api/v1/messages?limit=2&cursor={body['next_cursor']}", "operator").json()
    assert [m["message_id"] for m in rest["items"]] == ["st-2", "st-1"]

    for query, expected in (
        (f"sender={MINISTRY}", 5), ("sender=000.00.00.X99", 0), (f"receiver={PROVINCE}", 5),
        ("type=dossier.status", 5), ("type=dossier.sync", 0), ("state=queued", 5), ("state=delivered", 0),
        (f"dossier={packets.examples.DOSSIER_CODE}", 5), ("since=2000-01-01T00:00:00%2B07:00", 5),
        ("until=2000-01-01", 0), ("since=2000-01-01&until=2999-01-01T00:00:00Z", 5),
        ("since=2999-01-01T00:00:00+07:00", 0), ("until=2999-01-01T09:00+0700", 5),  # an unencoded + is a +
    ):  # fmt: skip
        answer = api.get(f"/api/v1/messages?{query}", "admin")
        assert answer.status_code == 200, (query, answer.text)
        assert answer.json()["total"] == expected, query


@pytest.mark.parametrize(
    ("query", "path", "rule"),
    [
        ("since=yesterday", "/query/since", "datetime"),
        ("until=2025-13-01", "/query/until", "datetime"),
        ("since=2025-11-02&until=2025-11-01", "/query/until", "time-range"),
        ("state=lost", "/query/state", "message-state"),
        ("cursor=not-a-cursor", "/query/cursor", "cursor"),
        ("cursor=azEuMTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMA", "/query/cursor", "cursor"),  # a key beyond BIGINT
        ("since=0001-01-01T00:00:00%2B07:00", "/query/since", "datetime"),  # before year 1 in UTC
        ("until=9999-12-31T23:59:59-05:00", "/query/until", "datetime"),  # after year 9999 in UTC
    ],
)
def test_bad_filters_are_400_naming_the_field(api: Api, query: str, path: str, rule: str) -> None:
    body = assert_problem(api.get(f"/api/v1/messages?{query}", "operator"), 400, rule)
    assert body["errors"][0]["path"] == path


def test_the_log_is_for_staff_keys_only(api: Api) -> None:
    assert_problem(api.client.get("/api/v1/messages"), 401)
    assert_problem(api.get("/api/v1/messages", "ministry"), 403, "role-required")


def test_payload_download_is_masked_for_operators_raw_for_the_admin_and_audited(api: Api) -> None:
    payload = packets.to_element(packets.example("dossier.sync"))  # the applicant's name, id, phone and e-mail
    data = api.envelope(signer=api.province, sender=PROVINCE, receiver="000.00.00.G22", message_type="dossier.sync",
                        message_id="sync-1", payload=payload)  # fmt: skip
    stored = api.hub.store.accept(
        sender=PROVINCE, message_id="sync-1", correlation_id=None, message_type="dossier.sync",
        receiver="000.00.00.G22", dossier_code=packets.examples.DOSSIER_CODE, envelope=data, destinations=(),
    )  # fmt: skip
    assert stored.outcome == "accepted"
    assert [el.text for el in etree.fromstring(data).iter("{*}personalId")] == [PERSONAL_ID]

    masked = api.get("/api/v1/messages/sync-1/payload", "operator")
    assert masked.status_code == 200, masked.text
    assert masked.headers["content-type"].startswith("application/xml")
    assert 'filename="sync-1.masked.xml"' in masked.headers["content-disposition"]
    assert APPLICANT not in masked.text and "N***** V** A*" in masked.text
    assert PERSONAL_ID not in masked.text and "nguyenvanan@example.vn" not in masked.text
    assert "Signature" not in masked.text
    etree.fromstring(masked.content)  # a whole XML document

    refused = assert_problem(api.get("/api/v1/messages/sync-1/payload?raw=true", "operator"), 403)
    assert refused["errors"][0] == {"path": "/query/raw", "rule": "raw-payload-admin-only",
                                    "message": "raw=true needs the admin key"}  # fmt: skip
    raw = api.get("/api/v1/messages/sync-1/payload?raw=true", "admin")
    assert raw.status_code == 200 and raw.content == data  # the envelope exactly as received

    assert_problem(api.get("/api/v1/messages/sync-1/payload", "province"), 403, "role-required")
    assert_problem(api.get("/api/v1/messages/nope/payload", "admin"), 404, "unknown-message")

    entries = api.hub.store.audit_entries(AuditFilter(action="payload.download")).items
    assert [(e.actor, e.role, e.outcome, e.subject, e.detail["raw"]) for e in reversed(entries)] == [
        ("operator.an", "operator", "ok", "sync-1", False),
        ("operator.an", "operator", "refused", "sync-1", True),
        ("admin", "admin", "ok", "sync-1", True),
    ]
    assert all(e.client for e in entries)
