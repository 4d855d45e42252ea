"""Citizen notifications (Đắk Nông QĐ 04/2019 Điều 12): which updates are told, the Vietnamese texts, no personal ID
in any of them, the applicant's consent, and a province's own templates from its connector folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub import packets
from hub.errors import NotificationTemplateError, SpecInvalidError
from hub.exchange.routing import DestinationConfig, Route, RoutingTable
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.registry.spec import load_spec, parse_spec
from mappings import notification as n

PERSONAL_ID = "079203004567"  # a 12-digit personal ID (số định danh cá nhân)
OLD_ID = "212345678"  # a 9-digit identity card number
UTC = dt.UTC


def sync(status: int = 1, **applicant: object) -> DossierSync:
    base = packets.example("dossier.sync")
    assert isinstance(base, DossierSync)
    person = base.applicant.model_copy(update={"personal_id": PERSONAL_ID, "old_id": OLD_ID, **applicant})
    note = f"Thiếu bản sao CCCD số {PERSONAL_ID} của người nộp" if status in (3, 5, 8) else None
    return base.model_copy(update={"status": status, "applicant": person, "note": note})


def status_update(status: int, content: str = "Chuyển hồ sơ sang bước thẩm định") -> DossierStatusUpdate:
    base = packets.example("dossier.status")
    assert isinstance(base, DossierStatusUpdate)
    return base.model_copy(update={"status": status, "step": base.step.model_copy(update={"content": content})})


def email_spec(**extra: object) -> dict:
    return {
        "code": "000.00.00.G21", "name": "Thông báo qua thư điện tử", "kind": "notification",
        "receives": ["dossier.sync", "dossier.status"],
        "endpoint": {"url": "smtp://127.0.0.1:2525", "transport": "smtp"},
        "profile": "notification/email-smtp", "profile_values": {"from_address": "Một cửa <motcua@example.gov.vn>"},
        **extra,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- which updates


@pytest.mark.parametrize(
    ("status", "event"),
    [(1, "intake"), (2, "received"), (3, "not_received"), (5, "supplement"), (8, "stopped"), (9, "result"),
     (4, None), (6, None), (7, None), (10, None)],
)  # fmt: skip
def test_the_moments_of_article_12_are_the_events(status: int, event: str | None) -> None:
    assert n.event_of(sync(status)) == event
    assert n.event_of(status_update(status)) == event


def test_only_the_updates_a_connector_tells_of_are_queued_for_it() -> None:
    routing = RoutingTable(
        {"P": DestinationConfig(endpoint="http://127.0.0.1:9/p", kind="provincial"),
         "E": DestinationConfig(endpoint="smtp://127.0.0.1:25", kind="notification", profile="notification/email-smtp"),
         "S": DestinationConfig(endpoint="http://127.0.0.1:9/s", kind="notification", profile="notification/sms-http",
                                profile_values={"events": "supplement,result"})},
        [Route(type="dossier.status", to=("P", "E", "S"))],
    )  # fmt: skip
    everyone = routing.destinations_for("dossier.status", "M")
    assert routing.notifying(everyone, status_update(4)) == ("P",)  # a processing step concerns no applicant
    assert routing.notifying(everyone, status_update(2)) == ("P", "E")  # the SMS connector tells of 5 and 9 only
    assert routing.notifying(everyone, status_update(5)) == ("P", "E", "S")
    assert routing.notifying(everyone, None) == ("P",)


# ---------------------------------------------------------------------------------------------- the text


@pytest.mark.parametrize("event", list(n.Event))
def test_every_event_is_told_in_vietnamese_on_both_channels(event: n.Event) -> None:
    templates = n.Templates()
    notice = n.sample_notice(event)
    email = templates.render(notice, "email")
    sms = templates.render(notice, "sms")
    assert notice.dossier_code in email.subject and notice.dossier_code in sms.text
    assert email.text.startswith("Kính gửi ông/bà Nguyễn Văn An,")
    assert "hồ sơ" in email.text.lower() and "hồ sơ" in sms.text.lower()
    assert "\n" not in sms.text and sms.subject == ""
    wanted = {
        n.Event.INTAKE: "đã nhận được hồ sơ", n.Event.RECEIVED: "đầy đủ, hợp lệ", n.Event.NOT_RECEIVED: "không được",
        n.Event.SUPPLEMENT: "bổ sung", n.Event.STOPPED: "không được giải quyết", n.Event.RESULT: "giải quyết xong",
    }[event]  # fmt: skip
    assert wanted in email.subject.lower() + email.text.lower()
    if event in (n.Event.NOT_RECEIVED, n.Event.SUPPLEMENT, n.Event.STOPPED):  # Điều 12.2.a: the reason is told
        assert "Bổ sung bản vẽ mặt cắt công trình" in email.text and "Bổ sung bản vẽ mặt cắt công trình" in sms.text
    if event in (n.Event.INTAKE, n.Event.RECEIVED):  # ... and when the result is expected
        assert "09/12/2025" in email.text  # 15 days after 24/11, told in Asia/Ho_Chi_Minh
    if event is n.Event.RESULT:
        assert "Giấy phép xây dựng" in email.text and "Bộ phận Một cửa" in email.text


def test_times_are_told_in_vietnam_time() -> None:
    notice = n.notice_of_sync(sync(1).model_copy(update={"submitted_at": dt.datetime(2025, 11, 23, 18, 5, tzinfo=UTC)}))
    assert "01:05 ngày 24/11/2025" in n.Templates().render(notice, "email").text


@pytest.mark.parametrize("status", [1, 2, 3, 5, 8, 9])
def test_no_personal_id_in_any_notification(status: int) -> None:
    notice = n.notice_of_sync(sync(status))
    assert notice.applicant is not None and PERSONAL_ID in notice.applicant.ids
    for channel in n.CHANNELS:
        rendered = n.Templates().render(notice, channel)
        for text in (rendered.subject, rendered.text):
            assert PERSONAL_ID not in text and OLD_ID not in text
        if status in (3, 5, 8):  # the reason quoted the ID: masked to its last 4 digits, as the logs mask it
            assert "********4567" in rendered.text


def test_an_id_in_a_ministry_step_is_masked_too() -> None:
    notice = n.complete(n.notice_of_status(status_update(5, f"Nộp lại tờ khai, ghi số {PERSONAL_ID}")), sync(2))
    assert notice.applicant is not None and notice.applicant.name == "Nguyễn Văn An"
    text = n.Templates().render(notice, "sms").text
    assert PERSONAL_ID not in text and "********4567" in text and "Nộp lại tờ khai" in text


def test_a_template_cannot_reach_the_personal_id() -> None:
    assert "personal_id" not in n.CONTEXT_NAMES
    templates = n.Templates({"intake.sms": "Số định danh: {{ personal_id }}"})
    with pytest.raises(NotificationTemplateError, match="personal_id"):
        templates.render(n.sample_notice(n.Event.INTAKE), "sms")
    with pytest.raises(SpecInvalidError) as refused:
        parse_spec(email_spec(templates={"intake.email": "Tiêu đề\n\n{{ applicant.personal_id }}"}))
    assert refused.value.issues[0].rule == "notification-template"
    with pytest.raises(NotificationTemplateError, match="line 1"):
        n.Templates({"intake.sms": "{% if %}"})


# ---------------------------------------------------------------------------------------------- consent


def test_the_applicants_consent_and_contacts() -> None:
    assert n.refusal(n.notice_of_sync(sync(1)), "email") is None
    declined = n.notice_of_sync(sync(1, notify=False))
    assert "declined" in (n.refusal(declined, "email") or "") and n.refusal(declined, "sms") is not None
    sms_only = n.notice_of_sync(sync(1, notify_channels=["sms"]))
    assert n.refusal(sms_only, "sms") is None and "sms only" in (n.refusal(sms_only, "email") or "")
    no_email = n.notice_of_sync(sync(1, email=None))
    assert "no email address" in (n.refusal(no_email, "email") or "") and n.refusal(no_email, "sms") is None
    unknown = n.notice_of_status(status_update(5))
    assert "no dossier.sync" in (n.refusal(unknown, "sms") or "")


def test_the_consent_travels_in_the_canonical_dossier_sync() -> None:
    model = sync(1, notify=False, notify_channels=["sms"])
    issues, decoded = packets.decode_element("dossier.sync", packets.to_element(model))
    assert issues == [] and isinstance(decoded, DossierSync)
    assert decoded.applicant.notify is False and decoded.applicant.notify_channels == ["sms"]
    element = packets.to_element(model)
    channel = element.find(".//{urn:lienthong:packet:1}notifyChannels/{urn:lienthong:packet:1}channel")
    assert channel is not None
    channel.text = "fax"
    assert [i.rule for i in packets.validate_element("dossier.sync", element)] == ["xsd:enumeration"]


def test_a_status_update_is_completed_from_the_dossiers_sync() -> None:
    finished = status_update(9).model_copy(update={"attachments": []})
    notice = n.complete(n.notice_of_status(finished), sync(2).model_copy(update={"result_by_post": True}))
    assert notice.procedure_name == sync(2).procedure_name and notice.result_by_post is True
    assert "bưu chính công ích" in n.Templates().render(notice, "email").text


def test_sms_without_diacritics_for_gateways_that_want_it() -> None:
    assert n.strip_diacritics("Hồ sơ đã được tiếp nhận. ĐẮK NÔNG") == "Ho so da duoc tiep nhan. DAK NONG"
    text = n.Templates().render(n.sample_notice(n.Event.RECEIVED), "sms", unaccented=True).text
    assert text.startswith("Ho so 000.00.00.H12-251124-0001 day du, hop le")


# ---------------------------------------------------------------------------------------------- a province's own


def test_a_province_overrides_templates_in_its_connector_folder(tmp_path: Path) -> None:
    folder = tmp_path / "daknong"
    (folder / "thong-bao").mkdir(parents=True)
    (folder / "thong-bao" / "intake.email.txt.j2").write_text(
        "[Đắk Nông] Đã nhận hồ sơ {{ dossier_code }}\n\nTrung tâm Phục vụ hành chính công tỉnh Đắk Nông đã nhận hồ sơ"
        " {{ dossier_code }} của ông/bà {{ applicant_name }}.\n",
        encoding="utf-8",
    )
    (folder / "thong-bao" / "README.md").write_text("not a template: left alone")
    spec_file = folder / "notify.yaml"
    spec_file.write_text(
        "code: 000.00.00.G21\nname: Thông báo Đắk Nông\nkind: notification\nreceives: [dossier.sync, dossier.status]\n"
        "endpoint: {url: 'smtp://127.0.0.1:2525', transport: smtp}\nprofile: notification/email-smtp\n"
        "profile_values: {from_address: 'Một cửa Đắk Nông <motcua@daknong.gov.vn>'}\ntemplates: thong-bao\n",
        encoding="utf-8",
    )
    spec = load_spec(spec_file)
    assert set(spec.templates) == {"intake.email"}
    assert spec.stored()["templates"] == spec.templates  # kept in the registry: workers do not read the folder
    templates = n.Templates(spec.templates)
    own = templates.render(n.sample_notice(n.Event.INTAKE), "email")
    assert own.subject == "[Đắk Nông] Đã nhận hồ sơ 000.00.00.H12-251124-0001"
    assert "Trung tâm Phục vụ hành chính công tỉnh Đắk Nông" in own.text
    assert "Kính gửi" in templates.render(n.sample_notice(n.Event.RESULT), "email").text  # the rest: shipped

    (folder / "thong-bao" / "intake.emial.txt.j2").write_text("typo")
    with pytest.raises(SpecInvalidError) as misspelt:
        load_spec(spec_file)
    assert misspelt.value.issues[0].rule == "template-name"
    (folder / "thong-bao" / "intake.emial.txt.j2").unlink()
    spec_file.write_text(spec_file.read_text().replace("templates: thong-bao", "templates: ../"))
    with pytest.raises(SpecInvalidError) as outside:
        load_spec(spec_file)
    assert outside.value.issues[0].rule == "template-path"


def test_templates_belong_to_notification_connectors_that_fit_their_channel() -> None:
    with pytest.raises(SpecInvalidError) as no_profile:
        parse_spec({**email_spec(), "profile": None, "profile_values": {}})
    assert no_profile.value.issues[0].rule == "notification-profile"
    with pytest.raises(SpecInvalidError) as mismatch:
        parse_spec(email_spec(endpoint={"url": "http://127.0.0.1:9/sms"}))
    assert mismatch.value.issues[0].rule == "endpoint-transport"
    with pytest.raises(SpecInvalidError) as events:
        parse_spec(email_spec(profile_values={"from_address": "a@b.vn", "events": "intake,tet"}))
    assert events.value.issues[0].rule == "notification-events"


def test_the_operator_page_reads_notifications_in_vietnamese() -> None:
    from hub.console.i18n import Translator

    t = Translator("vi")
    assert t.state("notified") == "đã thông báo người nộp" and t.state("notify_skipped") == "không gửi thông báo"
    assert t.detail("supplement sent by sms to *******678") == "đã gửi thông báo yêu cầu bổ sung qua sms tới *******678"
    declined = t.detail("intake by email not sent: the applicant declined notifications (applicant notify=false)")
    assert declined == "không gửi thông báo tiếp nhận hồ sơ qua email: người nộp đã từ chối nhận thông báo " \
                       "(applicant notify=false)"  # fmt: skip


def test_the_shipped_example_connectors_and_template_folder() -> None:
    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "connectors"
    assert load_spec(deploy / "notification-email.yaml").kind == "notification"
    data = yaml.safe_load((deploy / "notification-sms.yaml").read_text(encoding="utf-8"))
    spec = parse_spec({**data, "templates": "notifications"}, base_dir=deploy)  # the line the file comments out
    assert set(spec.templates) == {"intake.sms"}
    text = n.Templates(spec.templates).render(n.sample_notice(n.Event.INTAKE), "sms").text
    assert text.startswith("Trung tâm Phục vụ hành chính công tỉnh đã nhận hồ sơ 000.00.00.H12-251124-0001 lúc")
