"""Citizen notifications through the hub (Đắk Nông QĐ 04/2019 Điều 12): a province's dossier.sync at intake is
emailed to the applicant through a real SMTP server and texted through the SMS gateway simulator, a ministry's
supplement request is texted with its reason, each notification lands on the dossier's timeline, no personal ID
travels, the applicant's opt-out holds, an update told once is not told again, and a failing relay is retried like
any delivery, then dead-lettered for the operator, who replays it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub import packets
from hub.api import create_app
from hub.devtools.mail_server import MailServer
from hub.devtools.simulators.sms_gateway import DEFAULT_TOKEN, SmsGatewaySimulator
from hub.devtools.sink import SinkServer
from hub.exchange.worker import OutboundBuilder, Worker
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.registry import parse_spec
from hub.runtime import adapters_for, open_broker
from hub.services import HubService
from tests.support import HUB, MINISTRY, PROVINCE, hub_settings, signed_envelope, wait_for

ADMIN_KEY = "admin-secret-key"
EMAIL, SMS = "000.00.00.G21", "000.00.00.G22"
PERSONAL_ID = "079203004567"
FAST_RETRY = {"delays_s": [0.05, 0.05], "jitter": 0}  # three attempts, then a dead letter
UTC = dt.UTC


@dataclass
class Hub:
    client: TestClient
    service: HubService
    keys: dict[str, str]
    pki: object
    mail: MailServer
    sms: SmsGatewaySimulator
    sequence: int = 0

    def code(self) -> str:
        self.sequence += 1
        return f"{PROVINCE}-251124-{self.sequence:04d}"

    def post(self, data: bytes, key: str) -> dict:
        response = self.client.post("/api/v1/messages", content=data,
                                    headers={"Content-Type": "application/xml", "X-Api-Key": key})  # fmt: skip
        assert response.status_code == 202, response.text
        return response.json()

    def sync(self, model: DossierSync) -> dict:
        data = signed_envelope(self.pki.province.signer, sender=PROVINCE, receiver=HUB, message_type="dossier.sync",
                               payload=packets.to_element(model), message_id=str(uuid.uuid4()),
                               dossier_code=model.dossier_code)  # fmt: skip
        return self.post(data, self.keys[PROVINCE])

    def status(self, model: DossierStatusUpdate) -> dict:
        data = signed_envelope(self.pki.ministry.signer, sender=MINISTRY, receiver=HUB, message_type="dossier.status",
                               payload=packets.to_element(model), message_id=str(uuid.uuid4()),
                               dossier_code=model.dossier_code)  # fmt: skip
        return self.post(data, self.keys[MINISTRY])

    def get(self, path: str) -> dict | list:
        response = self.client.get(path, headers={"X-Api-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        return response.json()

    def notes(self, code: str) -> list[dict]:
        updates = self.get(f"/api/v1/dossiers/{code}")["updates"]  # type: ignore[call-overload]
        return [u for u in updates if u["outcome"] in ("notified", "notify_skipped")]

    def deliver(self, until: object = None, timeout_s: float = 10.0) -> None:
        """Run a worker (its own broker, the hub's store) over what is queued, retries included, until ``until()``
        holds (or, without it, until nothing more comes)."""
        runtime = self.service.runtime
        broker = open_broker(self.service.settings)
        worker = Worker(self.service.store, broker, runtime.routing, OutboundBuilder(runtime.signer(), HUB),
                        adapters_for(runtime.routing, self.service.store, HUB))  # fmt: skip
        try:

            def turn() -> bool:
                batch = broker.consume(worker.destinations, prefetch=64, timeout_s=0.2)
                if batch:
                    worker.process_batch(batch)
                return until() if callable(until) else not batch

            wait_for(turn, timeout_s, "the worker to deliver the notifications", every_s=0)
        finally:
            worker.close()
            broker.close()


@pytest.fixture
def hub(tmp_path: Path, pki, sink: SinkServer) -> Iterator[Hub]:
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY)
    with MailServer() as mail, SmsGatewaySimulator() as sms, TestClient(create_app(settings)) as client:
        service: HubService = client.app.state.hub
        specs = [
            {"code": PROVINCE, "name": "One-stop system", "kind": "provincial", "sends": ["dossier.sync"],
             "receives": ["dossier.status"], "endpoint": {"url": sink.url},
             "certificates": [pki.province.cert_path.read_text()]},
            {"code": MINISTRY, "name": "Construction software", "kind": "ministry", "sends": ["dossier.status"],
             "handles": [PROVINCE], "certificates": [pki.ministry.cert_path.read_text()]},
            {"code": EMAIL, "name": "Thông báo qua thư điện tử", "kind": "notification",
             "receives": ["dossier.sync", "dossier.status"], "endpoint": {"url": mail.url, "transport": "smtp"},
             "profile": "notification/email-smtp", "retry": FAST_RETRY,
             "profile_values": {"from_address": "Bộ phận Một cửa <motcua@daknong.gov.vn>", "starttls": "none"}},
            {"code": SMS, "name": "Thông báo qua tin nhắn", "kind": "notification",
             "receives": ["dossier.sync", "dossier.status"],
             "endpoint": {"url": sms.url, "credentials": {"username": "hub", "password": DEFAULT_TOKEN}},
             "profile": "notification/sms-http", "profile_values": {"sender_id": "MOTCUA"}, "retry": FAST_RETRY},
        ]  # fmt: skip
        keys = {spec["code"]: service.registry.add(parse_spec(spec), actor="test")[1] for spec in specs}
        service.refresh()
        yield Hub(client, service, keys, pki, mail, sms)  # type: ignore[arg-type]


def online_dossier(code: str, status: int = 1, **applicant: object) -> DossierSync:
    base = packets.example("dossier.sync")
    assert isinstance(base, DossierSync)
    submitted = dt.datetime(2025, 11, 24, 1, 30, tzinfo=UTC)
    return base.model_copy(
        update={
            "dossier_code": code, "status": status, "channel": 2, "submitted_at": submitted,
            "received_at": submitted + dt.timedelta(hours=2) if status >= 2 else None,
            "due_at": submitted + dt.timedelta(days=15) if status >= 2 else None,
            "finished_at": None, "returned_at": None, "results": [], "supplements": [],
            "applicant": base.applicant.model_copy(update={"personal_id": PERSONAL_ID, **applicant}),
            "documents": [d.model_copy(update={"url": d.url.replace(packets.examples.DOSSIER_CODE, code)})
                          for d in base.documents],
        }
    )  # fmt: skip


def ministry_step(code: str, status: int, content: str, minutes: int = 0) -> DossierStatusUpdate:
    base = packets.example("dossier.status")
    assert isinstance(base, DossierStatusUpdate)
    return base.model_copy(
        update={"dossier_code": code, "status": status, "source_system": MINISTRY, "attachments": [],
                "at": dt.datetime(2025, 11, 24, 8, minutes, tzinfo=UTC),
                "step": base.step.model_copy(update={"content": content})}
    )  # fmt: skip


def test_intake_is_emailed_and_texted_to_the_applicant_without_the_personal_id(hub: Hub) -> None:
    code = hub.code()
    answer = hub.sync(online_dossier(code))
    assert sorted(answer["destinations"]) == [EMAIL, SMS]  # the province sent it: nothing goes back to it

    hub.deliver(until=lambda: hub.mail.messages() and hub.sms.received()["messages"])
    (mail,) = hub.mail.messages()
    assert mail.rcpt_tos == ("nguyenvanan@example.vn",) and mail.mail_from == "motcua@daknong.gov.vn"
    assert mail.subject == f"[{code}] Cơ quan đã nhận được hồ sơ của ông/bà"
    assert mail.text.startswith("Kính gửi ông/bà Nguyễn Văn An,")
    assert f"đã nhận được hồ sơ {code}" in mail.text and "lúc 08:30 ngày 24/11/2025" in mail.text
    assert "08 giờ làm việc" in mail.text
    (sms,) = hub.sms.received()["messages"]
    assert sms["to"] == "0912345678" and sms["sender"] == "MOTCUA" and sms["reference"] == answer["message_id"]
    assert sms["text"].startswith(f"Cơ quan đã nhận hồ sơ {code} lúc 08:30 ngày 24/11/2025.")
    assert PERSONAL_ID not in mail.data.decode("ascii", "replace") + mail.text + mail.subject + sms["text"]

    notes = hub.notes(code)
    assert sorted((u["source"], u["outcome"], u["status"]) for u in notes) == [(EMAIL, "notified", 1),
                                                                              (SMS, "notified", 1)]  # fmt: skip
    reasons = {u["source"]: u["reason"] for u in notes}
    assert reasons == {EMAIL: "intake sent by email to n***@example.vn", SMS: "intake sent by sms to *******678"}
    trace = hub.get(f"/api/v1/messages/{answer['message_id']}")
    deliveries = {d["destination"]: d for d in trace["deliveries"]}  # type: ignore[call-overload]
    assert {code: d["state"] for code, d in deliveries.items()} == {EMAIL: "delivered", SMS: "delivered"}
    # the message log keeps the exact bytes each partner took: the MIME message, the gateway's JSON body
    kept = hub.service.store.delivery(deliveries[EMAIL]["delivery_id"])
    assert kept is not None and kept.sent_type == "message/rfc822"
    assert kept.sent is not None and kept.sent.splitlines() == mail.data.splitlines()
    assert deliveries[SMS]["sent_type"] == "application/json"


def test_a_supplement_request_is_texted_with_what_to_supplement(hub: Hub) -> None:
    code = hub.code()
    hub.sync(online_dossier(code, status=2))
    hub.deliver(until=lambda: len(hub.sms.received()["messages"]) == 1)
    processing = hub.status(ministry_step(code, 4, "Chuyển hồ sơ sang bước thẩm định"))
    assert processing["destinations"] == [PROVINCE]  # a processing step concerns no applicant: nothing queued
    reason = f"Bổ sung bản vẽ mặt cắt công trình và bản sao căn cước số {PERSONAL_ID}"
    supplement = hub.status(ministry_step(code, 5, reason, minutes=30))
    assert sorted(supplement["destinations"]) == sorted([PROVINCE, EMAIL, SMS])

    hub.deliver(until=lambda: len(hub.sms.received()["messages"]) == 2 and len(hub.mail.messages()) == 2)
    text = hub.sms.received()["messages"][-1]["text"]
    assert text == f"Hồ sơ {code} cần bổ sung, chỉnh sửa: Bổ sung bản vẽ mặt cắt công trình và bản sao căn cước số " \
                   "********4567."  # fmt: skip
    mail = hub.mail.messages()[-1]
    assert mail.subject == f"[{code}] Đề nghị bổ sung, chỉnh sửa hồ sơ" and "Bổ sung bản vẽ mặt cắt" in mail.text
    assert PERSONAL_ID not in mail.text + mail.data.decode("ascii", "replace")
    told = [(u["source"], u["status"]) for u in hub.notes(code) if u["outcome"] == "notified"]
    assert sorted(told) == sorted([(EMAIL, 2), (SMS, 2), (EMAIL, 5), (SMS, 5)])


def test_the_applicants_opt_out_and_channels_are_honoured(hub: Hub) -> None:
    declined, sms_only = hub.code(), hub.code()
    hub.sync(online_dossier(declined, notify=False))
    hub.sync(online_dossier(sms_only, notify_channels=["sms"]))
    hub.deliver(until=lambda: len(hub.notes(declined)) == 2 and len(hub.notes(sms_only)) == 2)
    assert hub.mail.messages() == []
    assert [m["text"].split(" lúc ")[0] for m in hub.sms.received()["messages"]] == [
        f"Cơ quan đã nhận hồ sơ {sms_only}"
    ]
    assert {u["outcome"] for u in hub.notes(declined)} == {"notify_skipped"}
    assert all("declined notifications" in u["reason"] for u in hub.notes(declined))
    by_channel = {u["source"]: u for u in hub.notes(sms_only)}
    assert by_channel[SMS]["outcome"] == "notified" and by_channel[EMAIL]["outcome"] == "notify_skipped"
    assert "accepts notifications by sms only" in by_channel[EMAIL]["reason"]


def test_an_update_told_once_is_not_told_again(hub: Hub) -> None:
    code = hub.code()
    hub.sync(online_dossier(code, status=2))
    hub.deliver(until=lambda: len(hub.notes(code)) == 2)
    again = hub.sync(online_dossier(code, status=2))  # the province sends the same dossier again (an edit)
    assert again["status_update"] == "applied" and again["destinations"] == []  # an amendment: no notifier
    hub.deliver()
    assert len(hub.mail.messages()) == 1 and len(hub.sms.received()["messages"]) == 1
    assert len(hub.notes(code)) == 2


def _updates(hub: Hub, code: str) -> list[dict]:
    return hub.get(f"/api/v1/dossiers/{code}")["updates"]  # type: ignore[call-overload,no-any-return]


def test_a_stopped_dossier_is_told_once_with_its_reason_however_often_the_province_edits_it(hub: Hub) -> None:
    """A sync at 8 says no time for the stop: the notification carries the time the status machine gave the update
    (not the clock's, which made every edit a new update), the reason is the sync's ``statusReason`` (not its
    internal note), and an edit restating 8 is not queued for the notifiers at all."""
    code = hub.code()
    hub.sync(online_dossier(code, status=2))
    hub.deliver(until=lambda: len(hub.notes(code)) == 2)
    stopped = online_dossier(code, status=8).model_copy(
        update={"status_reason": "Dừng xử lý theo đề nghị của người nộp", "note": "ghi chú nội bộ"}
    )
    first = hub.sync(stopped)
    assert first["status_update"] == "applied" and sorted(first["destinations"]) == [EMAIL, SMS]
    hub.deliver(until=lambda: len(hub.notes(code)) == 4)
    edited = hub.sync(stopped.model_copy(update={"note": "ghi chú sửa"}))  # the province edits the stopped dossier
    assert edited["status_update"] == "applied" and edited["destinations"] == []
    hub.deliver()
    assert len(hub.mail.messages()) == 2 and len(hub.sms.received()["messages"]) == 2
    mail, sms = hub.mail.messages()[-1], hub.sms.received()["messages"][-1]
    assert "Lý do: Dừng xử lý theo đề nghị của người nộp." in mail.text and "ghi chú" not in mail.text
    assert "Lý do: Dừng xử lý theo đề nghị của người nộp." in sms["text"]
    (applied,) = [u for u in _updates(hub, code) if u["message_id"] == first["message_id"] and u["status"] == 8
                  and u["outcome"] == "applied"]  # fmt: skip
    assert [n["at"] for n in hub.notes(code) if n["status"] == 8] == [applied["at"]] * 2


def test_a_result_told_by_the_ministry_is_not_told_again_by_the_provinces_sync(hub: Hub) -> None:
    """The ministry's 9 at 08:00, then the province's record restating 9 with its own finishedAt 08:05: one result."""
    code = hub.code()
    hub.sync(online_dossier(code, status=2))
    hub.deliver(until=lambda: len(hub.notes(code)) == 2)
    step = ministry_step(code, 9, "Đã có kết quả")
    assert sorted(hub.status(step)["destinations"]) == sorted([PROVINCE, EMAIL, SMS])
    hub.deliver(until=lambda: len(hub.notes(code)) == 4)
    restated = online_dossier(code, status=9).model_copy(update={"finished_at": step.at + dt.timedelta(minutes=5)})
    answer = hub.sync(restated)
    assert answer["status_update"] == "applied" and answer["destinations"] == []
    hub.deliver()
    results = [m for m in hub.mail.messages() if ".result." in m.as_dict()["message_id"]]
    assert len(results) == 1 and len([n for n in hub.notes(code) if n["status"] == 9]) == 2


def test_a_failing_relay_is_retried_then_dead_lettered_and_replayed(hub: Hub) -> None:
    code = hub.code()
    hub.mail.fail("4xx", count=1)  # busy once: retried, then delivered
    first = hub.sync(online_dossier(code))
    hub.deliver(until=lambda: len(hub.mail.messages()) == 1)
    email = next(d for d in hub.get(f"/api/v1/messages/{first['message_id']}")["deliveries"]  # type: ignore[call-overload]
                 if d["destination"] == EMAIL)  # fmt: skip
    assert email["state"] == "delivered" and email["attempts"] == 2

    later = hub.code()
    hub.mail.fail("4xx")  # busy for good: three attempts, then a dead letter for the operator
    second = hub.sync(online_dossier(later))

    def dead() -> list[dict]:
        return [d for d in hub.get("/api/v1/dead-letters") if d["message_id"] == second["message_id"]]  # type: ignore[union-attr,index]

    hub.deliver(until=lambda: bool(dead()))
    (letter,) = dead()
    assert letter["destination"] == EMAIL and "451" in letter["last_error"]
    assert [u["source"] for u in hub.notes(later)] == [SMS]  # the SMS went; the email is not on the timeline
    hub.mail.heal()
    replay = hub.client.post(f"/api/v1/dead-letters/{letter['id']}/replay", headers={"X-Api-Key": ADMIN_KEY})
    assert replay.status_code == 202, replay.text
    hub.deliver(until=lambda: len(hub.mail.messages()) == 2)
    assert hub.mail.messages()[-1].subject == f"[{later}] Cơ quan đã nhận được hồ sơ của ông/bà"
    assert sorted(u["source"] for u in hub.notes(later)) == [EMAIL, SMS]


def test_a_refused_address_is_dead_lettered_at_once(hub: Hub) -> None:
    hub.mail.fail("5xx")
    answer = hub.sync(online_dossier(hub.code()))

    def email() -> dict:
        trace = hub.get(f"/api/v1/messages/{answer['message_id']}")
        return next(d for d in trace["deliveries"] if d["destination"] == EMAIL)  # type: ignore[call-overload]

    hub.deliver(until=lambda: email()["state"] == "dead")
    assert email()["attempts"] == 1 and "550" in (email()["last_error"] or "")


def test_connector_check_greets_the_relay_and_renders_the_templates(hub: Hub) -> None:
    from hub.registry.check import run_check

    email = run_check(hub.service.registry, EMAIL)
    assert email.ok, [i.message for i in email.failures]
    found = {i.area: i.message for i in email.items if i.status == "ok"}
    assert found["endpoint"].startswith(f"the SMTP relay 127.0.0.1:{hub.mail.port} answered 250 over clear")
    assert found["templates"].startswith("email notifications for intake, not_received, received, result")
    assert any("no public source confirms" in i.message for i in email.warnings)  # starttls "none" is a choice
    sms = run_check(hub.service.registry, SMS)
    assert "sms notifications for" in {i.area: i.message for i in sms.items}["templates"]
    hub.mail.stop()
    down = run_check(hub.service.registry, EMAIL)
    assert [i.area for i in down.failures] == ["endpoint"] and "cannot reach" in down.failures[0].message


def test_the_notification_ledger_on_both_databases(store, pki) -> None:
    """What the adapter reads and writes of a dossier (``hub.runtime.NotificationLedger`` over
    ``hub.store.notifications``), on SQLite and PostgreSQL."""
    from adapters.notification import DossierNote
    from hub.runtime import NotificationLedger
    from hub.store.types import Submission

    code = f"{PROVINCE}-251124-0900"
    ledger = NotificationLedger(store)
    assert ledger.dossier(code) is None
    for status, email in ((1, "first@example.vn"), (2, "second@example.vn")):
        model = online_dossier(code, status=status, email=email)
        data = signed_envelope(pki.province.signer, sender=PROVINCE, receiver=HUB, message_type="dossier.sync",
                               payload=packets.to_element(model), dossier_code=code)  # fmt: skip
        store.accept_many([Submission(PROVINCE, str(uuid.uuid4()), "dossier.sync", HUB, data, dossier_code=code)])
    latest = ledger.dossier(code)
    assert latest is not None and latest.status == 2 and latest.applicant.email == "second@example.vn"

    at = dt.datetime(2025, 11, 24, 3, 30, 15, 250000, tzinfo=UTC)
    note = DossierNote(code, 2, at, "notified", "received sent by email", "m-1", {"channel": "email"})
    assert not ledger.already(EMAIL, note)
    ledger.record(EMAIL, note)
    assert ledger.already(EMAIL, note)  # the same update, to the microsecond
    assert not ledger.already(SMS, note)  # another connector has not told it
    assert not ledger.already(EMAIL, DossierNote(code, 5, at, "notified", "", "m-2"))  # another update
    # received is told once per dossier: reported again by another system at another time, it was told
    assert ledger.already(EMAIL, DossierNote(code, 2, at + dt.timedelta(minutes=5), "notified", "", "m-3"))
    # a supplement, once per request: the same request time to the second (or message), not another request
    asked = dt.datetime(2025, 11, 25, 2, 0, 7, tzinfo=UTC)
    ledger.record(EMAIL, DossierNote(code, 5, asked, "notified", "supplement sent by email", "m-4", once=False))
    for when, message, told in ((asked.replace(microsecond=900000), "m-5", True), (None, "m-4", True),
                                (asked + dt.timedelta(seconds=1), "m-5", False), (None, "m-6", False)):  # fmt: skip
        assert ledger.already(EMAIL, DossierNote(code, 5, when, "notified", "", message, once=False)) is told
    (entry, _) = [u for u in store.timeline(code) if u.outcome == "notified"]
    assert (entry.source, entry.status, entry.at, entry.message_id) == (EMAIL, 2, at, "m-1")
    assert entry.detail == {"channel": "email"} and store.dossier(code) is None  # not a status of the dossier


def test_notifications_and_the_portal_read_one_latest_sync_stale_records_left_aside(store, pki) -> None:
    """``Store.latest_sync``: the one read (one query, one decoder) behind the applicant's contact and the portal's
    refreshed record; a stale record (written before an update already applied) is history, not the latest."""
    from hub.exchange.portal_refresh import DossierRecords
    from hub.runtime import NotificationLedger
    from hub.store.types import Submission, SyncReport

    code = f"{PROVINCE}-251124-0901"
    written = dt.datetime(2025, 11, 24, 4, 0, tzinfo=UTC)

    def accept(email: str, reported_at: dt.datetime) -> str:
        model = online_dossier(code, status=2, email=email)
        data = signed_envelope(pki.province.signer, sender=PROVINCE, receiver=HUB, message_type="dossier.sync",
                               payload=packets.to_element(model), dossier_code=code)  # fmt: skip
        report = SyncReport(code, 2, model.received_at, PROVINCE, reported_at=reported_at)  # type: ignore[arg-type]
        (result,) = store.accept_many([Submission(PROVINCE, str(uuid.uuid4()), "dossier.sync", HUB, data,
                                                  dossier_code=code, sync=report)])  # fmt: skip
        return str(result.decision.outcome)

    assert accept("first@example.vn", written) == "applied"
    assert accept("late@example.vn", written - dt.timedelta(hours=1)) == "stale"  # an older record, arriving late
    latest = store.latest_sync(code)
    assert latest is not None and latest.applicant.email == "first@example.vn"
    assert NotificationLedger(store).dossier(code) == latest
    step = ministry_step(code, 5, "Bổ sung bản vẽ")
    refreshed = DossierRecords(store).refreshed(step)
    assert refreshed is not None and refreshed.applicant == latest.applicant
