"""Acceptance of issue 16, point 1: one status machine for every source, and corrections.

A province's ``dossier.sync`` reporting 10 (result returned) goes through the status machine; a ministry's
status 4 after it is refused (422 problem+json, rule ``status-transition``, naming the message id) and never reaches
the national portal (the strict ``dvcqg/opencps`` simulator on 127.0.0.1) nor the province. ``hub dossier correct``
moves the dossier to 4: on its timeline (who, why, before), in the audit log, and reported to the province and the
portal, whose record then reflects the corrected status. The HTTP route refuses what it must (roles, unknown
dossier, the status it has, a blank reason). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub import packets
from hub.api import create_app
from hub.cli import app
from hub.devtools.simulators import NationalPortalSimulator
from hub.devtools.simulators.provincial import ProvincialSimulator
from hub.exchange.worker import OutboundBuilder, Worker
from hub.runtime import adapters_for, open_broker
from hub.services import HubService
from hub.store.audit import AuditFilter
from tests.support import hub_settings, register, signed_envelope

HUB, MINISTRY, PROVINCE, PORTAL = "000.00.00.H00", "000.00.00.G10", "000.00.00.H12", "000.00.00.G22"
VBDLIS = "000.00.00.G11"
ADMIN_KEY, OPERATOR_KEY = "admin-key-for-corrections", "operator-key-for-corrections"
DOSSIER = packets.examples.DOSSIER_CODE
OPERATOR = "nguyen.van.a"
runner = CliRunner()


@dataclass
class Lienthong:
    client: TestClient
    hub: HubService
    keys: dict[str, str | None]
    portal: NationalPortalSimulator
    province: ProvincialSimulator
    env: dict[str, str]
    pki: Any

    def post(self, sender: str, message_type: str, model: Any) -> Any:
        party = self.pki.province if sender == PROVINCE else self.pki.ministry
        data = signed_envelope(party.signer, sender=sender, receiver=HUB, message_type=message_type,
                               payload=packets.to_element(model), dossier_code=DOSSIER)  # fmt: skip
        headers = {"Content-Type": "application/xml", "X-Api-Key": str(self.keys[sender])}
        return self.client.post("/api/v1/messages", content=data, headers=headers)

    def deliver(self) -> None:
        """One worker, as ``hub worker`` runs it, until the queues are empty."""
        runtime = self.hub.runtime
        broker = open_broker(self.hub.settings)
        worker = Worker(self.hub.store, broker, runtime.routing, OutboundBuilder(runtime.signer(), HUB),
                        adapters_for(runtime.routing))  # fmt: skip
        try:
            while batch := broker.consume(worker.destinations, prefetch=64, timeout_s=0.3):
                worker.process_batch(batch)
        finally:
            worker.close()
            broker.close()

    def cli(self, *args: str) -> Any:
        from hub.config import get_settings

        get_settings.cache_clear()
        try:
            return runner.invoke(app, list(args), env=self.env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    def portal_statuses(self) -> list[str]:
        return [str(p["TrangThai"]) for p in self.portal.received()["progress"].get(DOSSIER, [])]

    def province_statuses(self) -> list[tuple[int, str | None, str | None]]:
        found = []
        for payload in self.province.payloads("dossier.status"):
            found.append((int(payload.findtext("{*}status")), payload.findtext("{*}reason"),
                          payload.findtext("{*}corrects")))  # fmt: skip
        return found


@pytest.fixture
def lienthong(tmp_path: Path, store_url: str, store, pki) -> Iterator[Lienthong]:
    # ``store``: the database at ``store_url`` migrated (on SQLite a copy of the process's migrated store), so the
    # app finds it at the newest revision instead of migrating it from scratch for each test.
    settings = hub_settings(tmp_path, database_url=store_url, hub_code=HUB, admin_api_key=ADMIN_KEY,
                            operator_api_key=OPERATOR_KEY, operator_name="tran.thi.b")  # fmt: skip
    env = {"LIENTHONG_DATABASE_URL": store_url, "LIENTHONG_DATA_DIR": str(settings.data_dir),
           "LIENTHONG_HUB_CODE": HUB, "LIENTHONG_BROKER_URL": "embedded", "COLUMNS": "200"}  # fmt: skip
    with (
        NationalPortalSimulator() as portal,
        ProvincialSimulator() as province,
        TestClient(create_app(settings)) as client,
    ):
        service: HubService = client.app.state.hub
        keys = register(service, [
            {"code": PROVINCE, "name": "Hệ thống một cửa tỉnh", "kind": "provincial", "sends": ["dossier.sync"],
             "receives": ["dossier.status"], "endpoint": {"url": province.url}, "retry": {"delays_s": [0.2]},
             "certificates": [pki.province.cert_path.read_text()]},
            {"code": MINISTRY, "name": "Phần mềm Bộ TN&MT", "kind": "ministry", "sends": ["dossier.status"],
             "handles": [PROVINCE], "certificates": [pki.ministry.cert_path.read_text()]},
            {"code": VBDLIS, "name": "VBDLIS", "kind": "ministry", "sends": ["dossier.status"], "handles": [PROVINCE],
             "profile": "ministry/vbdlis-json"},
            {"code": PORTAL, "name": "Cổng DVCQG (simulator)", "kind": "national_portal",
             "receives": ["dossier.sync", "dossier.status"],
             "endpoint": {"url": portal.adapter_url, "transport": "json",
                          "credentials": {"username": "lienthong", "password": "lienthong-demo"}},
             "profile": "dvcqg/opencps",
             "profile_values": {"dstcode": portal.dstcode, "madonvi": PROVINCE, "auth_endpoint": portal.auth_endpoint,
                                "integration_endpoint": portal.integration_endpoint,
                                "share_endpoint": portal.share_endpoint, "unit_name": "UBND quận Hải Châu"},
             "retry": {"delays_s": [0.2]}},
        ])  # fmt: skip
        service.refresh()
        yield Lienthong(client, service, keys, portal, province, env, pki)


def test_a_ministry_status_after_a_synced_result_is_refused_and_a_cli_correction_reaches_the_portal(
    lienthong: Lienthong,
) -> None:
    # The province syncs the dossier at 10 (result returned): through the status machine, on to the portal.
    sync = packets.example("dossier.sync")
    assert sync.status == 10
    answer = lienthong.post(PROVINCE, "dossier.sync", sync)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status_update"] == "applied" and answer.json()["destinations"] == [PORTAL]
    lienthong.deliver()
    assert str(lienthong.portal.received()["records"][DOSSIER]["TrangThaiHoSo"]) == "10"

    # The ministry then reports 4: refused with the rule, naming its message id; nothing is queued.
    late = packets.example("dossier.status").model_copy(update={"at": datetime.now(UTC).replace(microsecond=0)})
    refused = lienthong.post(MINISTRY, "dossier.status", late)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [(e["path"], e["rule"]) for e in problem["errors"]] == [("/envelope/body/status", "status-transition")]
    assert "10 RESULT_RETURNED -> 4 PROCESSING" in problem["errors"][0]["message"]
    assert problem["message_id"] and lienthong.hub.store.trace(problem["message_id"], MINISTRY) is None
    lienthong.deliver()
    assert lienthong.portal_statuses() == [] and lienthong.province_statuses() == []
    assert str(lienthong.portal.received()["records"][DOSSIER]["TrangThaiHoSo"]) == "10"
    timeline = [(u.status, u.outcome, u.source) for u in lienthong.hub.store.timeline(DOSSIER)]
    assert timeline[-2:] == [(10, "applied", PROVINCE), (4, "rejected", MINISTRY)]

    # An operator corrects it with the CLI: audited, on the timeline, reported to the province and the portal.
    reason = "Bộ TN&MT xác nhận hồ sơ còn đang xử lý; trả kết quả nhầm"
    done = lienthong.cli("dossier", "correct", DOSSIER, "--status", "4", "--reason", reason, "--actor", OPERATOR,
                         "--json")  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["status_before"], report["status"], report["corrected_by"]) == (10, 4, OPERATOR)
    assert sorted(report["destinations"]) == sorted([PROVINCE, PORTAL])
    assert lienthong.hub.store.dossier(DOSSIER).status == 4
    (entry,) = [u for u in lienthong.hub.store.timeline(DOSSIER) if u.outcome == "corrected"]
    assert (entry.status, entry.source, entry.message_id) == (4, HUB, report["message_id"])
    assert entry.detail["corrected_by"] == OPERATOR and entry.detail["reason"] == reason
    assert entry.detail["status_before"] == 10 and entry.detail["corrects"] == 10
    (audited,) = lienthong.hub.store.audit_entries(AuditFilter(action="dossier")).items
    assert (audited.action, audited.subject, audited.actor, audited.client, audited.outcome) == (
        "dossier.correct", DOSSIER, OPERATOR, "cli", "ok")  # fmt: skip
    assert audited.detail == {"status": 4, "status_before": 10, "reason": reason, "outcome": "corrected",
                              "message_id": report["message_id"]}  # fmt: skip

    lienthong.deliver()
    assert lienthong.province_statuses() == [(4, reason, "10")]
    (progress,) = lienthong.portal.received()["progress"][DOSSIER]
    assert (progress["TrangThai"], progress["NguoiXuLy"]) == ("4", OPERATOR)
    assert progress["NoiDungXuLy"].endswith(reason)
    assert str(lienthong.portal.received()["records"][DOSSIER]["TrangThaiHoSo"]) == "4"  # the portal's record
    trace = lienthong.hub.store.trace(report["message_id"], HUB)
    assert sorted((d.destination, d.state.value) for d in trace.deliveries) == [
        (PORTAL, "delivered"), (PROVINCE, "delivered")]  # fmt: skip

    # The same correction again changes nothing: exit 1 naming the rule.
    again = lienthong.cli("dossier", "correct", DOSSIER, "--status", "4", "--reason", reason)
    assert again.exit_code == 1 and "correction-unchanged" in again.stderr


def test_the_http_route_corrects_with_an_operator_key_and_refuses_what_it_must(lienthong: Lienthong) -> None:
    url = f"/api/v1/dossiers/{DOSSIER}/corrections"

    def post(body: dict[str, Any], key: str | None = ADMIN_KEY, code: str = DOSSIER) -> Any:
        headers = {} if key is None else {"X-Api-Key": key}
        return lienthong.client.post(f"/api/v1/dossiers/{code}/corrections", json=body, headers=headers)

    unknown = post({"status": 4, "reason": "x"})  # no status was ever applied
    assert (unknown.status_code, unknown.json()["errors"][0]["rule"]) == (404, "dossier-unknown")
    withdrawn = packets.example("dossier.sync").model_copy(
        update={"status": 7, "finished_at": None, "returned_at": None, "status_reason": "Công dân xin rút hồ sơ"}
    )
    assert lienthong.post(PROVINCE, "dossier.sync", withdrawn).status_code == 202
    lienthong.deliver()  # on the portal before its progress (a progress record of an unknown dossier is refused)
    assert lienthong.client.post(url, json={"status": 4, "reason": "x"}).status_code == 401
    forbidden = post({"status": 4, "reason": "x"}, key=lienthong.keys[MINISTRY])
    assert (forbidden.status_code, forbidden.json()["errors"][0]["rule"]) == (403, "role-required")
    blank = post({"status": 4, "reason": "   "})
    assert (blank.status_code, blank.json()["errors"][0]["rule"]) == (400, "reason-required")
    assert post({"status": 11, "reason": "x"}).status_code == 422
    same = post({"status": 7, "reason": "x"})
    assert (same.status_code, same.json()["errors"][0]["rule"]) == (409, "correction-unchanged")

    done = post({"status": 2, "reason": "Công dân rút nhầm, đã xác nhận qua điện thoại"}, key=OPERATOR_KEY)
    assert done.status_code == 201, done.text
    body = done.json()
    assert (body["status_before"], body["status"], body["corrected_by"]) == (7, 2, "tran.thi.b")
    assert sorted(body["destinations"]) == sorted([PROVINCE, PORTAL])
    assert lienthong.hub.store.dossier(DOSSIER).status == 2
    (audited,) = lienthong.hub.store.audit_entries(AuditFilter(action="dossier")).items
    assert (audited.actor, audited.role, audited.detail["status_before"], audited.detail["status"]) == (
        "tran.thi.b", "operator", 7, 2)  # fmt: skip
    lienthong.deliver()
    assert lienthong.portal_statuses() == ["2"]
    assert lienthong.province_statuses() == [(2, "Công dân rút nhầm, đã xác nhận qua điện thoại", "7")]
    # the sync's reason for the withdrawal reached the portal's record (profile value status_reason_field: GhiChu)
    record = lienthong.portal.received()["records"][DOSSIER]
    assert record["GhiChu"].endswith("Công dân xin rút hồ sơ")


def test_a_province_status_3_carries_its_reason_and_date_to_the_portal(lienthong: Lienthong) -> None:
    """A rejection (3) as a first-class update: refused without a reason; with it, the portal's progress record
    carries the date (ThoiDiemXuLy) and the reason (NoiDungXuLy), the sync's DongBoHoSoMC the NgayTuChoi."""
    new = {"status": 1, "received_at": None, "finished_at": None, "returned_at": None}
    received = packets.example("dossier.sync").model_copy(update=new)
    assert lienthong.post(PROVINCE, "dossier.sync", received).status_code == 202
    lienthong.deliver()  # inserted on the portal before its update
    at = datetime(2025, 11, 23, 3, 0, tzinfo=UTC)
    without = received.model_copy(update={"status": 3, "rejected_at": at})
    refused = lienthong.post(PROVINCE, "dossier.sync", without)
    assert refused.status_code == 422 and refused.json()["errors"][0]["rule"] == "status-reason-required"
    rejected = without.model_copy(update={"status_reason": "Hồ sơ thiếu bản vẽ thiết kế (Mẫu số 03)"})
    answer = lienthong.post(PROVINCE, "dossier.sync", rejected)
    assert answer.status_code == 202 and answer.json()["status_update"] == "applied", answer.text
    lienthong.deliver()
    record = lienthong.portal.received()["records"][DOSSIER]
    assert (record["TrangThaiHoSo"], record["NgayTuChoi"]) == ("3", "20251123100000")  # Asia/Ho_Chi_Minh
    assert record["GhiChu"].endswith("Hồ sơ thiếu bản vẽ thiết kế (Mẫu số 03)")
    (entry,) = [u for u in lienthong.hub.store.timeline(DOSSIER) if u.status == 3]
    assert entry.at == at and entry.detail["reason"] == "Hồ sơ thiếu bản vẽ thiết kế (Mẫu số 03)"
    # nothing follows a rejection: a ministry's 4 is refused
    late = packets.example("dossier.status").model_copy(update={"at": datetime.now(UTC).replace(microsecond=0)})
    assert lienthong.post(MINISTRY, "dossier.status", late).status_code == 422



def test_a_status_dated_ahead_is_refused_and_a_correction_is_applied_after_the_last_update(
    lienthong: Lienthong,
) -> None:
    """A status time far ahead of the hub's clock would make every later update stale until that moment: refused at
    intake (``status-time-future``), a ministry's step and the status time a province's sync reports alike. Within
    the clock-skew tolerance it is applied, and an operator's correction is still applied (after it), not stale."""
    now = datetime.now(UTC).replace(microsecond=0)
    received = packets.example("dossier.sync").model_copy(update={"status": 2, "finished_at": None,
                                                                   "returned_at": None})  # fmt: skip
    assert lienthong.post(PROVINCE, "dossier.sync", received).status_code == 202
    ahead = packets.example("dossier.status").model_copy(update={"at": now + timedelta(hours=1)})
    refused = lienthong.post(MINISTRY, "dossier.status", ahead)
    assert refused.status_code == 422, refused.text
    assert [(e["path"], e["rule"]) for e in refused.json()["errors"]] == [("/envelope/body/at", "status-time-future")]
    finished = received.model_copy(update={"status": 9, "finished_at": now + timedelta(days=1)})
    refused = lienthong.post(PROVINCE, "dossier.sync", finished)
    assert refused.status_code == 422, refused.text
    assert [(e["path"], e["rule"]) for e in refused.json()["errors"]] == [
        ("/envelope/body/finishedAt", "status-time-future")]  # fmt: skip
    assert lienthong.hub.store.dossier(DOSSIER).status == 2  # type: ignore[union-attr]

    skewed = now + timedelta(minutes=4)  # a clock a little ahead: within the tolerance, applied
    near = lienthong.post(MINISTRY, "dossier.status", ahead.model_copy(update={"at": skewed}))
    assert near.status_code == 202 and near.json()["status_update"] == "applied", near.text
    done = lienthong.client.post(f"/api/v1/dossiers/{DOSSIER}/corrections", headers={"X-Api-Key": ADMIN_KEY},
                                 json={"status": 2, "reason": "Bước xử lý gửi nhầm hồ sơ"})  # fmt: skip
    assert done.status_code == 201, done.text
    record = lienthong.hub.store.dossier(DOSSIER)
    assert record is not None and (record.status, record.status_at) == (2, skewed)
    (entry,) = [u for u in lienthong.hub.store.timeline(DOSSIER) if u.outcome == "corrected"]
    assert entry.at == skewed  # on the timeline after the update it corrects


def test_a_reason_with_a_control_character_is_refused_naming_the_field_not_a_500(lienthong: Lienthong) -> None:
    """The reason travels in the hub's signed dossier.status (XML): a character XML cannot carry is refused by the
    HTTP route (422 at ``/body/reason``) and by the service the CLI and the page use (``reason-characters``)."""
    assert lienthong.post(PROVINCE, "dossier.sync", packets.example("dossier.sync")).status_code == 202
    lienthong.client.raise_server_exceptions = False
    for reason in ("sai\x01", "sai\x0b trạng thái", "nhầm\x00"):
        refused = lienthong.client.post(f"/api/v1/dossiers/{DOSSIER}/corrections", headers={"X-Api-Key": ADMIN_KEY},
                                        json={"status": 4, "reason": reason})  # fmt: skip
        assert refused.status_code == 422, (reason, refused.text)
        assert [(e["path"], e["rule"]) for e in refused.json()["errors"]] == [
            ("/body/reason", "request:string_pattern_mismatch")]  # fmt: skip
    said = lienthong.cli("dossier", "correct", DOSSIER, "--status", "4", "--reason", "sai\x0b trạng thái")
    assert said.exit_code == 1 and "[reason-characters]" in said.stderr and "U+000B" in said.stderr
    assert "Traceback" not in said.output
    kept = lienthong.client.post(f"/api/v1/dossiers/{DOSSIER}/corrections", headers={"X-Api-Key": ADMIN_KEY},
                                 json={"status": 4, "reason": "Trả nhầm\tkết quả;\nđã xác nhận"})  # fmt: skip
    assert kept.status_code == 201, kept.text  # tabs and line breaks are text
    assert lienthong.hub.store.dossier(DOSSIER).status == 4  # type: ignore[union-attr]


def test_vbdlis_after_a_synced_result_gets_its_own_refusal_shape(lienthong: Lienthong) -> None:
    """The land registration software's steps go through the same machine: after the province's sync at 10 a step
    that would move the dossier is answered VBDLIS's way, ``{Result: 0, Message}`` naming the rule (PARTNER-FORMATS
    §5, TH-BR ProvideToVBLISBaseResponse.cs:20-21), and reaches no one; a step TH's guards keep is recorded."""
    assert lienthong.post(PROVINCE, "dossier.sync", packets.example("dossier.sync")).status_code == 202
    lienthong.deliver()

    def step(action: str, body: dict[str, Any]) -> dict[str, Any]:
        response = lienthong.client.post(f"/api/v1/VBDLISs/{action}/{lienthong.keys[VBDLIS]}",
                                         json={"SoBienNhan": DOSSIER, **body})  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    refused = step("YeuCauCapNhatHoSo", {"MaCanBoXuLy": "cb.tnmt.07", "GhiChu": "Cập nhật thông tin thửa đất"})
    assert refused["Result"] == 0 and "status-transition" in refused["Message"]
    assert "10 RESULT_RETURNED -> 2 RECEIVED" in refused["Message"]
    kept = step("ChuyenHoSo", {"MaCanBoChuyen": "cb.motcua.03", "MaCanBoNhan": "cb.tnmt.07", "MaTrangThai": "2",
                               "NgayChuyen": datetime.now(UTC).isoformat()})  # fmt: skip
    assert kept["Result"] == 1 and "status kept at 10" in kept["Message"]
    lienthong.deliver()
    assert lienthong.portal_statuses() == [] and lienthong.province_statuses() == []
    assert lienthong.hub.store.dossier(DOSSIER).status == 10
