"""Flows F1–F7 end to end (``hub.devtools.demo``'s flow functions): simulators on free ports, the API (uvicorn)
and a worker in threads, against the embedded broker and RabbitMQ; and the ``hub demo`` command (``--once``, and
its ports taken), run in this process through typer's ``CliRunner``: what is tested is the command's output and
exit code, not the start-up of one more process (~2 s of CPU for its imports)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from hub import packets
from hub.cli import app
from hub.config import get_settings
from hub.devtools import demo as demos
from tests.support import free_port, listening

ALL_OK = {f"F{n}": "ok" for n in range(1, 8)}
FREE = {kind: 0 for kind in demos.DEFAULT_PORTS}


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker_url(request) -> str:
    return "embedded" if request.param == "embedded" else request.getfixturevalue("rabbitmq_url")


def hub_cli(cwd: Path, *args: str) -> Result:
    """``hub ARGS`` in this process, as from a shell in ``cwd`` with no ``LIENTHONG_*`` variable set."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LIENTHONG_")}
    get_settings.cache_clear()
    try:
        with contextlib.chdir(cwd):
            return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def test_flows_f1_to_f7(tmp_path: Path, broker_url: str) -> None:
    codes = demos.DemoCodes.random() if broker_url != "embedded" else demos.DemoCodes()
    options = demos.DemoOptions(
        data_dir=tmp_path / "demo",
        port=free_port(),
        broker_url=broker_url,
        simulator_ports=FREE,
        codes=codes,
        delete_queues=broker_url != "embedded",
    )
    started = time.monotonic()
    steps: list[str] = []
    with demos.DemoHub(options) as hub:
        results = demos.run_flows(hub, step=steps.append)
        assert {r.name: r.verdict for r in results} == ALL_OK, steps
        assert hub.lost() == 0
        assert len(hub.expect) >= 20
        # the portal's records carry the portal's field names and status codes
        records = hub.portal.received()["records"]
        assert {str(r["TrangThaiHoSo"]) for r in records.values()} >= {"1", "2", "9"}
        assert all({"MaHoSo", "MaTTHC", "TenTTHC", "ChuHoSo", "TrangThaiHoSo"} <= set(r) for r in records.values())
        # no record the hub sent failed the portal simulator's sourced checks (hub.devtools.simulators.portal_records)
        portal = hub.portal.received()
        refused = [c["issues"] for c in portal["calls"] if c["issues"]]
        assert refused == [], refused
        assert_records_checked(portal)
        # F2–F4: each partner of the issue received its part, and the province what came back
        assert hub.population_db.received()["lookups"]
        # F3: two payments, both paid at the platform; the one whose e-receipt another key signed is held by the hub
        payments = hub.payment.received()["payments"].values()
        assert len(payments) == 2 and all(p["paid"] for p in payments)
        assert sorted(p.get("receipt_signer", "intermediary") for p in payments) == ["intermediary", "other"]
        held = [r for r in hub.api("GET", "/api/v1/partner-refusals", key=hub.operator_key).json()
                if r["kind"] == "payment.receipt"]  # fmt: skip
        assert [r["rule"] for r in held] == ["receipt-signer-not-registered"]
        received = {m["message_type"] for m in hub.province.received()["messages"]}
        assert {"dossier.status", "payment.receipt", "postal.status"} <= received
        rows = demos.partner_rows(hub)
        assert {"population DB (SOAP)", "payment platform", "postal service",
                "land registration VBDLIS (sent)"} <= {r[0] for r in rows}  # fmt: skip
        # F5 through VBDLIS's JSON: every step answered {Result, Message}, only the illegal transition with 0
        answers = [(p["action"], p["answer"]["Result"]) for p in hub.vbdlis.received()["pushed"]]
        assert [a for a, result in answers if result == 0] == ["YeuCauBoSungHoSo"] and len(answers) == 6, answers
        assert_life_of_a_dossier(hub)
    assert time.monotonic() - started < 60


def assert_life_of_a_dossier(hub: demos.DemoHub) -> None:
    """What F7 leaves at the partners, read from them: the applicants told over real SMTP and the SMS gateway (never
    their ID), a supplement's new due date on the portal, the returned dossier, the held result replayed."""
    assert hub.mail is not None
    mails, texts = hub.mail.messages(), hub.sms.received()["messages"]
    assert mails and texts and all(len(m.rcpt_tos) == 1 and "@example.vn" in m.rcpt_tos[0] for m in mails)
    assert all(packets.examples.PERSONAL_ID not in m.text + m.subject for m in mails)
    assert all(packets.examples.PERSONAL_ID not in t["text"] for t in texts)
    (life,) = {m.message["X-Lienthong-Dossier"] for m in mails if m.rcpt_tos == (demos.F7_APPLICANT["email"],)}
    subjects = [m.subject.split("] ", 1)[1] for m in mails if m.message["X-Lienthong-Dossier"] == life]
    assert subjects == ["Cơ quan đã nhận được hồ sơ của ông/bà", "Hồ sơ đầy đủ, hợp lệ và đã được tiếp nhận",
                        "Đề nghị bổ sung, chỉnh sửa hồ sơ", "Hồ sơ đã giải quyết xong, mời nhận kết quả"]  # fmt: skip
    assert [t["to"] for t in texts if life in t["text"]] == [demos.F7_APPLICANT["phone"]] * 4
    record = hub.portal.received()["records"][life]
    (supplement,) = record["DanhSachHoSoBoSung"]
    assert supplement["NgayHenTraMoi"] == record["NgayHenTra"] > supplement["NgayHenTraTruoc"]
    assert str(record["TrangThaiHoSo"]) == "10"
    held = hub.api("GET", "/api/v1/dead-letters", key=hub.operator_key, params={"state": "replayed"}).json()
    held = [d for d in held if d["id"] in hub.held_result_ids]
    assert len(held) == 4 and {d["reason"] for d in held} == {"result-signer-not-registered"}
    assert {d["destination"] for d in held} == {*hub.codes.destinations, *hub.codes.notifiers}
    assert hub.api("GET", "/api/v1/dead-letters", key=hub.operator_key).json() == []  # none left open


def assert_records_checked(portal: dict) -> None:
    """Every record the portal simulator accepted (DongBoHoSoMC and CapNhatTienDoHoSoMC) validates against the
    sourced field list (``portal_records.checked_fields``, printed: ``pytest -s`` shows what was checked)."""
    from hub.devtools.simulators.portal_records import RECORD_SERVICES, checked_fields, record_issues

    for service in RECORD_SERVICES:
        sent = [r for c in portal["calls"] if c["service"] == service and c["error_code"] == "0" for r in c["data"]]
        assert sent, f"the flows sent no {service}"
        fields = checked_fields(service)
        print(f"{service}: {len(sent)} records checked; required {', '.join(fields['required'])}; "
              f"typed {', '.join(fields['typed'])}")  # fmt: skip
        assert all(set(fields["required"]) <= set(r) for r in sent)
        assert [i for n, r in enumerate(sent) for i in record_issues(service, r, n)] == []


def test_a_failed_step_is_reported_not_raised(tmp_path: Path) -> None:
    def broken(hub: demos.DemoHub, step) -> str:
        step("about to fail")
        demos.wait_for(lambda: False, 0.2, "something that never happens")
        return "unreachable"

    options = demos.DemoOptions(data_dir=tmp_path / "demo", port=free_port(), simulator_ports=FREE)
    with demos.DemoHub(options) as hub:
        (result,) = demos.run_flows(hub, [demos.Flow("FX", "broken", broken)])
    assert not result.ok and result.verdict.startswith("failed: timed out after 0.2s waiting for something")
    assert result.steps == ["about to fail"]
    line = demos.summary_json([result], 0)
    assert json.loads(line)["flows"]["FX"].startswith("failed: ")


def test_hub_demo_once_exits_0_with_the_json_line(tmp_path: Path) -> None:
    started = time.monotonic()
    # Simulators on their default ports: skip if something (a running demo) holds them.
    for port in demos.DEFAULT_PORTS.values():
        if listening("127.0.0.1", port):
            pytest.skip(f"port {port} is in use (a running `hub demo`/`hub simulate`?)")
    done = hub_cli(tmp_path, "demo", "--once", "--port", str(free_port()), "--data-dir", str(tmp_path / "demo"))
    elapsed = time.monotonic() - started
    assert done.exit_code == 0, done.stdout[-4000:] + done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    assert json.loads(last) == {"flows": ALL_OK, "lost": 0}
    assert "What each partner received" in done.stdout
    assert elapsed < 60


@pytest.mark.parametrize("taken", ["api", "national_portal"])
def test_hub_demo_on_a_busy_port_names_it_and_the_option_that_moves_it(tmp_path: Path, taken: str) -> None:
    data_dir = tmp_path / "demo"
    data_dir.mkdir()
    (data_dir / "kept").write_text("a running demo's data")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        # the API on the held port, or the portal simulator moved onto it by the offset
        api_port = busy if taken == "api" else free_port()
        offset = busy - demos.DEFAULT_PORTS["national_portal"] if taken == "national_portal" else busy - 9000
        done = hub_cli(tmp_path, "demo", "--once", "--port", str(api_port), "--simulator-port-offset", str(offset),
                       "--data-dir", str(data_dir))  # fmt: skip
    assert done.exit_code == 2, done.stdout[-4000:] + done.stderr[-4000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"port {busy} " in errors[0], done.stderr
    assert ("the API" if taken == "api" else "the national_portal simulator") in errors[0]
    option = "--port" if taken == "api" else "--simulator-port-offset"
    assert f"move the {'API' if taken == 'api' else 'simulators'} with {option}" in done.stderr
    assert "Traceback" not in done.stderr and "failed" not in done.stdout  # no flow ran, none reported failed
    assert (data_dir / "kept").read_text() == "a running demo's data"  # checked before the data folder is wiped
