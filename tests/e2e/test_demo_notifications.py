"""The demo's notification partners, for flow F7: ``DemoHub`` starts the local SMTP server (``demo.mail``) and the SMS
gateway simulator (``demo.sms``) with the other simulators, and with ``notifications=True`` registers the two
notification connectors, so a province's intake reaches both on loopback."""

from __future__ import annotations

from pathlib import Path

from hub import packets
from hub.devtools import demo as demos
from tests.support import free_port

FREE = {kind: 0 for kind in demos.DEFAULT_PORTS}


def test_the_demo_notifies_an_intake_by_email_and_sms(tmp_path: Path) -> None:
    options = demos.DemoOptions(data_dir=tmp_path / "demo", port=free_port(), simulator_ports=FREE, notifications=True)
    with demos.DemoHub(options) as demo:
        assert demo.mail is not None and demo.mail.url.startswith("smtp://127.0.0.1:")
        code = demo.dossier_code()
        result = demo.province.submit(demos.new_online_dossier(code))
        assert result.status == 202, result.body
        assert {demo.codes.notify_email, demo.codes.notify_sms} <= set(result.body["destinations"])
        mail = demo.mail.wait_for(lambda m: code in m.subject, timeout_s=demos.STEP_TIMEOUT_S)
        assert mail.subject == f"[{code}] Cơ quan đã nhận được hồ sơ của ông/bà"
        assert "Kính gửi ông/bà Nguyễn Văn An" in mail.text and mail.mail_from == "motcua@lienthong.test"
        demos.wait_for(lambda: bool(demo.sms.received()["messages"]), demos.STEP_TIMEOUT_S, "the intake SMS")
        (sms,) = demo.sms.received()["messages"]
        assert sms["to"] == "0912345678" and sms["sender"] == "MOTCUA" and code in sms["text"]
        assert packets.examples.PERSONAL_ID not in mail.text + sms["text"]
