"""View models of the operator page: partner state, queue rows, masking of payload previews, the snapshot read
from a real store, the search, deadlines from whatever the deadline query returns, and the labels."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from hub import packets
from hub.config import Settings
from hub.console import i18n, metrics, views
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import sign_payload
from hub.store import DestinationStats, PartnerActivity, Store, flow_records

NOW = datetime(2025, 11, 24, 3, 0, tzinfo=UTC)
PORTAL, PROVINCE, MINISTRY = "000.00.00.G22", "000.00.00.H12", "000.00.00.G10"
POPULATION, PAYMENT = "000.00.00.G03", "000.00.00.G05"


def activity(delivered=0, failed=0, rejected=0, **kw) -> PartnerActivity:
    return PartnerActivity(
        PROVINCE, delivered, failed, rejected, kw.get("ok"), kw.get("ko"), kw.get("error"), kw.get("recovered")
    )


def stats(dest=PROVINCE, queued=0, delivering=0, retrying=0, delivered=0, dead=0, age=None, recent=0):
    return DestinationStats(dest, queued, delivering, retrying, delivered, dead, age, recent)


@pytest.mark.parametrize(
    ("act", "pending", "retrying", "expected"),
    [
        (None, 0, 0, "idle"),
        (None, 3, 0, "healthy"),  # queued, nothing attempted yet in the window
        (None, 1, 1, "degraded"),
        (activity(delivered=10), 0, 0, "healthy"),
        (activity(delivered=9, failed=1), 0, 0, "healthy"),  # 10 % errors
        (activity(delivered=3, failed=2), 0, 0, "degraded"),  # 40 % errors
        (activity(failed=5), 5, 5, "down"),  # only transient failures, no success
        (activity(failed=2), 2, 2, "degraded"),  # not enough failures to call it down
        (activity(failed=4, rejected=4), 0, 0, "degraded"),  # 4xx: the partner is up, it refuses the content
        (activity(delivered=1, failed=6), 0, 1, "degraded"),  # one success: not down
        (activity(delivered=1, failed=6, recovered=NOW), 0, 0, "healthy"),  # the latest attempts succeed
        (activity(delivered=2, failed=3, rejected=1, recovered=NOW), 0, 0, "healthy"),
        (activity(delivered=1, failed=6, recovered=NOW), 1, 1, "degraded"),  # recovered, but one still waits
    ],
)
def test_partner_state(act, pending, retrying, expected) -> None:
    assert views.partner_state(act, pending, retrying) == expected


def test_queue_rows_put_the_ones_needing_attention_first() -> None:
    rows = views.queue_rows(
        [stats("A", queued=2, age=30, recent=12), stats("B", dead=1), stats("C", retrying=1, age=1200)],
        {"A": "Province"},
        warn_age_s=900,
    )
    assert [r.destination for r in rows] == ["B", "C", "A"]
    b, c, a = rows
    assert b.alert and not b.too_old
    assert c.alert and c.too_old and c.pending == 1
    assert not a.alert and a.name == "Province" and a.rate_per_min == 12 and a.ready == 2


@dataclass
class FakeConnector:
    code: str
    name: str
    kind: str
    days: int | None
    endpoint: str | None = "http://partner/inbox"
    enabled: bool = True

    def cert_expiry_days(self, at=None) -> int | None:
        return self.days


def test_partner_rows_flag_expiring_certificates_and_down_partners() -> None:
    connectors = [
        FakeConnector(PROVINCE, "Province", "provincial", 200),
        FakeConnector(PORTAL, "Portal", "national_portal", 12),
        FakeConnector(MINISTRY, "Ministry", "ministry", 300, endpoint=None),
    ]
    down = PartnerActivity(PROVINCE, 0, 4, 0, None, NOW, "connection refused to 001099012345")
    rows = views.partner_rows(connectors, [down], [stats(PROVINCE, retrying=4)], NOW)
    by_code = {r.code: r for r in rows}
    assert rows[0].code in (PROVINCE, PORTAL) and rows[-1].code == MINISTRY
    assert by_code[PROVINCE].state == "down" and by_code[PROVINCE].alert
    assert by_code[PROVINCE].error_pct == "100 %"
    assert "001099012345" not in by_code[PROVINCE].last_error and "********2345" in by_code[PROVINCE].last_error
    assert by_code[PORTAL].cert_warn and by_code[PORTAL].alert and by_code[PORTAL].state == "idle"
    assert by_code[MINISTRY].state == "push_only" and not by_code[MINISTRY].alert


# ---------------------------------------------------------------------------------------------- masking


def _envelope(pki, message_type: str, payload: etree._Element | None = None) -> bytes:
    header = EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type=message_type)
    payload = payload if payload is not None else packets.to_element(packets.example(message_type))
    return etree.tostring(sign_payload(pki.province.signer, header, payload))


def test_citizen_record_preview_masks_names_and_ids(pki) -> None:
    preview = views.mask_payload(_envelope(pki, "citizen.record"))
    assert "citizenRecord" in preview
    for clear in ("001099012345", "001065004321", "Nguyễn", "Văn", "Bình", ">An<"):
        assert clear not in preview, clear
    assert "********2345" in preview and "********4321" in preview
    assert "N***** V** B***" in preview  # the household head's fullName
    assert "<p:givenName>A*</p:givenName>" in preview
    assert "1999-04-17" not in preview and "1999-**-**" in preview  # the birth date down to its year
    assert "Trần Phú" not in preview and "Vân Hà" not in preview  # addresses
    assert "Signature" not in preview  # the preview is the payload, not the signature


def test_dossier_preview_masks_the_applicant_not_the_procedure(pki) -> None:
    preview = views.mask_payload(_envelope(pki, "dossier.sync"))
    assert "Nguyễn Văn An" not in preview and "N***** V** A*" in preview
    assert "001099012345" not in preview and "0912345678" not in preview
    assert "Trần Phú" not in preview and "a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607" not in preview
    assert "Cấp giấy phép xây dựng" in preview  # not personal data
    assert "000.00.00.H12-251123-0042" in preview  # the dossier code is kept


def test_preview_of_unreadable_bytes_is_still_masked_and_cut() -> None:
    text = views.mask_payload(b"<broken><fullName>Tran Thi B</fullName> id 079203004567" + b"x" * 5000, limit=200)
    assert "079203004567" not in text and "Tran Thi B" not in text
    assert len(text) <= 202 and text.endswith("…")
    assert views.mask_payload(None) == ""


def test_mask_name() -> None:
    assert views.mask_name("Nguyễn  Văn An") == "N***** V** A*"
    assert views.mask_name("") == ""


def test_local_time_is_vietnam_time() -> None:
    assert views.local(datetime(2025, 11, 23, 17, 30, tzinfo=UTC)) == "24/11/2025 00:30:00"
    assert views.local(None) == "–"


# ---------------------------------------------------------------------------------------------- deadlines


def test_overdue_rows_accept_objects_and_mappings() -> None:
    @dataclass
    class Overdue:
        dossier_code: str
        submitted_at: datetime
        deadline: datetime
        overdue_hours: float

    rows = views.overdue_rows(
        [
            Overdue("A", NOW - timedelta(days=2), NOW - timedelta(hours=5), 3.5),
            {"code": "B", "status_at": "2025-11-20T01:00:00Z", "due_at": (NOW - timedelta(hours=1)).isoformat()},
            {"no": "code"},
        ],
        NOW,
    )
    assert [r.dossier_code for r in rows] == ["A", "B"]
    assert rows[0].overdue_hours == 3.5 and rows[0].due_at == NOW - timedelta(hours=5)
    assert rows[1].overdue_s == 3600 and rows[1].submitted_at == datetime(2025, 11, 20, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------- with a store


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    s.migrate()
    yield s
    s.close()


def _accept(store: Store, pki, message_type: str, destination: str, dossier: str | None = None) -> int:
    message_id = str(uuid.uuid4())
    result = store.accept(
        sender=PROVINCE, message_id=message_id, correlation_id=None, message_type=message_type, receiver=destination,
        dossier_code=dossier, envelope=_envelope(pki, message_type), destinations=[destination],
    )  # fmt: skip
    return result.delivery_ids[0]


class NoRegistry:
    def list(self):
        return [FakeConnector(PORTAL, "Cổng DVC quốc gia", "national_portal", 400)]


@dataclass
class FakeRegistry:
    connectors: list[FakeConnector]

    def list(self) -> list[FakeConnector]:
        return self.connectors


def test_snapshot_and_search_from_a_real_store(store, pki) -> None:
    dead = _accept(store, pki, "citizen.record", PROVINCE, "D-1")
    store.start_attempts([dead])
    store.record_dead(dead, reason="rejected", error="partner answered HTTP 400 for 001099012345")
    ok = _accept(store, pki, "dossier.sync", PORTAL, "D-2")
    store.start_attempts([ok])
    store.record_delivered_many([(ok, b"<x/>", "")])
    waiting = _accept(store, pki, "dossier.sync", PORTAL, "D-3")
    for _ in range(3):
        store.start_attempts([waiting])
        store.record_retry(waiting, error="HTTP 503", delay_s=60)

    snap = views.snapshot(store, NoRegistry(), window_s=900, warn_age_s=900)
    assert snap.dead_total == 1 and snap.pending_total == 1
    (letter,) = snap.dead_letters
    assert letter.reason == "rejected" and letter.dossier_code == "D-1" and letter.destination == PROVINCE
    assert "001099012345" not in letter.last_error and "001099012345" not in letter.preview
    assert "citizenRecord" in letter.preview
    partners = {p.code: p for p in snap.partners}
    assert partners[PROVINCE].state == "degraded"  # a 4xx rejection
    assert partners[PORTAL].error_rate == pytest.approx(3 / 4) and partners[PORTAL].last_success_at is not None
    assert partners[PORTAL].cert_days == 400
    sync = snap.deadlines.sync
    assert sync.portal and sync.waiting == 1 and sync.lag_s is not None and sync.lag_s >= 0
    assert snap.deadlines.payments == [] and snap.deadlines.payments_total == 0

    found = views.search(store, letter.message_id)
    assert found.found and found.trace.status == "dead" and found.dossier_code == "D-1"  # its messages
    assert [e.state for e in found.trace.events][-1] == "dead_lettered"
    by_dossier = views.search(store, "D-2")
    assert by_dossier.trace is not None and by_dossier.trace.status == "delivered"
    assert [m.dossier_code for m in by_dossier.messages] == ["D-2"]
    assert not views.search(store, "nothing-like-this").found
    assert not views.search(store, "  ").found


def _refuse(store: Store, reference: str, rule: str, kind: str = "payment.confirm") -> None:
    reason = f"{rule} for 001099012345"
    flow_records.record_refusal(
        store.engine, connector=PAYMENT, kind=kind, rule=rule, reason=reason, payload=b"{}", reference=reference
    )


def test_rejected_payment_confirmations_are_the_partner_refusals_rows(store) -> None:
    """The panel lists ``partner_refusals`` (what ``GET /api/v1/partner-refusals`` answers), newest first, with the
    dossier of the payment each names; its count and the metric are all of them, not the rows shown."""
    flow_records.add_payment(store.engine, reference="REF-1", kind="payment", connector=PAYMENT, requester=PROVINCE,
                             dossier_code="D-9", amount=50000, message_id="m-1")  # fmt: skip
    _refuse(store, "REF-1", "receipt-signer")
    _refuse(store, "REF-X", "unknown-reference")
    _refuse(store, "REF-1", "amount-mismatch", kind="payment.refund")
    _refuse(store, "REF-2", "something-else", kind="postal.callback")  # not a payment: not counted
    empty = views.deadlines(store, [], NOW)
    assert empty.payments_total == 3 and empty.payments_by_connector == {PAYMENT: 3}
    rows = empty.payments
    assert [(r.reference, r.rule, r.dossier_code) for r in rows] == [
        ("REF-1", "amount-mismatch", "D-9"), ("REF-X", "unknown-reference", None), ("REF-1", "receipt-signer", "D-9"),
    ]  # fmt: skip
    assert "001099012345" not in rows[0].reason and "********2345" in rows[0].reason
    for n in range(views.PAYMENTS_SHOWN):
        _refuse(store, f"REF-{n + 10}", "unknown-reference")
    more = views.deadlines(store, [], NOW)
    assert len(more.payments) == views.PAYMENTS_SHOWN and more.payments_total == views.PAYMENTS_SHOWN + 3
    (family,) = [f for f in metrics.families(views.snapshot(store, None, window_s=900, warn_age_s=900))
                 if f.name == "lienthong_payment_confirmations_rejected"]  # fmt: skip
    assert family.type == "counter"
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        ("lienthong_payment_confirmations_rejected_total", {"connector": PAYMENT}, views.PAYMENTS_SHOWN + 3)
    ]


def test_intake_deadlines_are_computed_or_the_calendar_error_is_said(store) -> None:
    assert views.deadlines(store, [], NOW).overdue_available
    broken = views.deadlines(store, [], NOW, Settings(working_days="Funday"))
    assert not broken.overdue_available and "funday" in (broken.overdue_error or "")


def _lookup(store: Store, result: str, at: datetime, detail: str = "") -> None:
    flow_records.record_lookup(store.engine, at=at, requester=PROVINCE, source=POPULATION, result=result, detail=detail)


def test_synchronous_lookups_count_in_the_population_dbs_health(store) -> None:
    """A population DB is only ever called synchronously: its lookups are its attempts. Refused lookups (no call)
    and repeats (answered from the kept answer) are not."""
    now = datetime.now(UTC)
    _lookup(store, "found", now - timedelta(minutes=20))
    _lookup(store, "repeat", now - timedelta(minutes=2))
    flow_records.record_lookup(store.engine, requester=PROVINCE, result="refused", detail="refused: purpose")
    (act,) = store.partner_activity(1800)
    assert (act.destination, act.delivered, act.failed, act.recovered_at) == (POPULATION, 1, 0, None)
    registry = FakeRegistry([FakeConnector(POPULATION, "CSDL dân cư", "population_db", None)])
    (row,) = views.snapshot(store, registry, window_s=1800, warn_age_s=900).partners
    assert row.state == "healthy" and row.last_success_at == act.last_success_at  # not "no traffic / never"
    for minutes in (3, 2, 1):
        _lookup(store, "timeout", now - timedelta(minutes=minutes), "did not answer within 10 s")
    (act,) = store.partner_activity(900)
    assert (act.delivered, act.failed, act.last_error) == (0, 3, "did not answer within 10 s")
    (row,) = views.snapshot(store, registry, window_s=900, warn_age_s=900).partners
    assert row.state == "down" and row.attempts == 3 and row.recovered_at is None  # its outage shows
    _lookup(store, "not_found", now)
    (row,) = views.snapshot(store, registry, window_s=900, warn_age_s=900).partners
    assert row.state == "healthy" and row.recovered_at is not None and row.error_pct == "75 %"


def test_a_partner_recovered_after_failures_is_healthy_and_says_since_when(store, pki) -> None:
    """Failures, then deliveries succeed again: healthy, "recovered at" the first success after the last failure,
    and the error no longer shown; a failure after that makes it degraded (or down) again."""
    first = _accept(store, pki, "dossier.sync", PORTAL, "D-1")
    for _ in range(3):
        store.start_attempts([first])
        store.record_retry(first, error="HTTP 503", delay_s=0)
    registry = FakeRegistry([FakeConnector(PORTAL, "Cổng", "national_portal", 400)])

    def portal():
        return views.snapshot(store, registry, window_s=900, warn_age_s=900).partners[0]

    assert portal().state == "down"  # 3 transient failures, no success
    store.start_attempts([first])
    store.record_delivered_many([(first, b"<x/>", "")])
    (act,) = store.partner_activity(900)
    assert act.recovered_at is not None and act.recovered_at == act.last_success_at > act.last_failure_at
    row = portal()
    assert row.state == "healthy" and row.recovered_at == act.recovered_at and row.error_pct == "75 %"
    second = _accept(store, pki, "dossier.sync", PORTAL, "D-2")
    store.start_attempts([second])
    store.record_delivered_many([(second, b"<x/>", "")])
    assert portal().recovered_at == act.recovered_at  # since the first success after the failure
    third = _accept(store, pki, "dossier.sync", PORTAL, "D-3")
    store.start_attempts([third])
    store.record_dead(third, reason="rejected", error="HTTP 400")
    again = portal()
    assert again.state == "degraded" and again.recovered_at is None and again.last_error


# ---------------------------------------------------------------------------------------------- labels


def test_both_languages_have_every_label() -> None:
    vi, en = i18n.labels("vi"), i18n.labels("en")
    assert vi.keys() == en.keys()
    assert all(vi[k] and en[k] for k in vi)
    t = i18n.Translator("en")
    assert t("dead_letters") == "Dead letters" and t("days", n=3) == "3 days" and t("no-such-key") == "no-such-key"
    assert i18n.Translator("vi").state("delivered") == "đã gửi"
    assert i18n.Translator("xx").lang == "vi"
    assert i18n.pick_lang("en", "vi") == "en" and i18n.pick_lang(None, "en") == "en"
    assert i18n.pick_lang("de", None) == "vi"
    assert t.age(None) == "–" and t.age(30) == "30 s" and t.age(600) == "10 min" and t.age(3 * 86400) == "3 d"
