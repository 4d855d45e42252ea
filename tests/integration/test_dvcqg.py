"""The real national portal (profiles ``dvcqg/opencps`` and ``dvcqg/proxy``) — issue 14 points 2 and 6.

Conformance: golden records and replies built field by field from ``PARTNER-FORMATS.md`` §1 (named by source, in
``tests/golden/dvcqg/``) against our sourced schemas and our mapping. Behaviour: the adapters against a small
strict portal written from the same fact sheet (not the hub's simulator): it refuses a call without the
``dstcode``/``Charset`` headers, a body that is not the sourced shape, a record that fails the sourced schema.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree
from typer.testing import CliRunner

from adapters.base import OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.dvcqg import DvcqgOpenCpsAdapter, DvcqgProxyAdapter
from adapters.registry import UnusableAdapter, build_adapter
from hub import packets
from hub.cli import app
from hub.config import get_settings
from hub.exchange.routing import DestinationConfig
from hub.packets.dossier import Applicant, DossierSync
from hub.registry import Registry
from hub.security.envelope import EnvelopeHeader, build_envelope
from hub.store import Store
from mappings import dvcqg, outbound_mapping, profiles
from tests.support import free_port

GOLDEN = Path(__file__).parents[1] / "golden" / "dvcqg"
HUB, PORTAL = "000.00.00.H00", "000.00.00.G01"
USER, PASSWORD = "lienthong", "portal-secret"
DSTCODE = "DST-H12"
DOSSIER = "000.00.00.H12-251123-0042"
TECH_ID = "a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607"
OPENCPS_VALUES = {
    "dstcode": DSTCODE,
    "madonvi": "000.00.00.H12",
    "auth_endpoint": "/auth",
    "integration_endpoint": "/integration",
    "share_endpoint": "/share",
    "unit_name": "Ủy ban nhân dân quận Hải Châu",
}
PROXY_VALUES = {"insert_url": "/insert", "update_url": "/update", "progress_url": "/progress"}


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- conformance: golden files and schemas


def test_an_opencps_built_record_validates_and_ours_carries_every_field_it_sends() -> None:
    opencps = golden("OC-DV_149-322.DongBoHoSoMC.record.json")
    assert tuple(opencps) == dvcqg.OPENCPS_SYNC_FIELDS  # the golden file is the OC-DV:149-322 list, in order
    assert dvcqg.validate_record(dvcqg.SERVICE_SYNC, opencps) == []
    ours = dvcqg.dossier_record(packets.example("dossier.sync"))
    print("checked fields (OC-DV:149-322):", ", ".join(opencps))
    assert set(opencps) <= set(ours), set(opencps) - set(ours)
    for name, items in opencps.items():
        if isinstance(items, list) and items:  # every item field OpenCPS sends, ours sends too, with its type
            assert set(items[0]) <= set(ours[name][0]), (name, set(items[0]) - set(ours[name][0]))
            assert {k: type(v) for k, v in items[0].items()} == {k: type(ours[name][0][k]) for k in items[0]}
        else:
            assert type(ours[name]) is type(items), name
    assert dvcqg.validate_record(dvcqg.SERVICE_SYNC, ours) == []


def test_a_thanh_hoa_built_record_validates_and_ours_carries_its_fields() -> None:
    th = golden("TH-SI_36-221.DongBoHoSoMC.record.json")
    assert dvcqg.validate_record(dvcqg.SERVICE_SYNC, th) == []
    ours = dvcqg.dossier_record(packets.example("dossier.sync"))
    # DSKetNoiCSDL is TH's constant [{MaCSDL "7"}] of undocumented meaning (TH-SS:339): not sent
    assert set(th) - set(ours) == {"DSKetNoiCSDL"}
    for name in ("TaiLieuNop", "DanhSachLePhi", "DanhSachTepDinhKemKhac", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua"):
        assert set(th[name][0]) == set(ours[name][0]), name
        assert {k: type(v) for k, v in th[name][0].items()} == {k: type(ours[name][0][k]) for k in th[name][0]}


def test_our_record_is_the_golden_one_and_every_scalar_is_a_string() -> None:
    ours = dvcqg.dossier_record(packets.example("dossier.sync"))
    assert ours == golden("dossier-sync.dvcqg.expected.json")
    scalars = [v for v in ours.values() if not isinstance(v, list)]
    assert scalars and all(isinstance(v, str) for v in scalars)
    assert ours["DanhSachLePhi"][0]["Gia"] == "75000"  # a string (TH-SI:100-107)
    assert ours["DonViXuLy"] == "Ủy ban nhân dân quận Hải Châu"  # the unit's name (OC-DV:222), not its code


def test_the_portal_account_is_never_a_personal_id() -> None:
    sync = packets.example("dossier.sync")
    anonymous = sync.model_copy(update={"applicant": sync.applicant.model_copy(update={"portal_account_id": None})})
    record = dvcqg.dossier_record(anonymous)
    assert record["MaDoiTuong"] == ""  # OC-DV:196-205: a TechID or nothing
    assert record["SoGiayToChuHoSo"] == "001099012345"  # TH-SS:123-124
    assert record["DinhDanhCHS"] == [{"LoaiDinhDanh": "1", "SoDinhDanh": "001099012345"}]  # TH-SS:305-337
    old = Applicant(type=1, name="Phạm Văn Tư", old_id="123456789")
    record = dvcqg.dossier_record(sync.model_copy(update={"applicant": old, "receiving_unit_name": None}))
    assert record["DinhDanhCHS"] == [{"LoaiDinhDanh": "2", "SoDinhDanh": "123456789"}] and record["MaDoiTuong"] == ""
    assert record["DonViXuLy"] == ""  # the adapter sends the profile's unit_name


def test_the_progress_record_has_exactly_the_sourced_fields() -> None:
    record = dvcqg.progress_record(packets.example("dossier.status"))
    assert tuple(record) == dvcqg.PROGRESS_FIELDS
    assert record == golden("OC-DV_507-524.CapNhatTienDoHoSoMC.record.json")
    assert dvcqg.validate_record(dvcqg.SERVICE_PROGRESS, record) == []
    long_name = packets.example("dossier.status")
    long_name = long_name.model_copy(update={"step": long_name.step.model_copy(update={"actor": "N" * 80})})
    assert len(dvcqg.progress_record(long_name)["NguoiXuLy"]) == 50  # TH-SS:363-368


def test_the_sourced_schemas_take_real_fields_and_types() -> None:
    record = golden("OC-DV_149-322.DongBoHoSoMC.record.json") | {"TruongMoi": "x"}  # a field we do not know
    assert dvcqg.validate_record(dvcqg.SERVICE_SYNC, record) == []
    broken = record | {"DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "MaPhiLePhi": "LP", "Gia": 8000}]}
    assert [(i.field, i.rule) for i in dvcqg.validate_record(dvcqg.SERVICE_SYNC, broken)] == [
        ("DanhSachLePhi[0].Gia", "type")
    ]
    # the hub's outbound schema refuses a personal ID as MaDoiTuong and an agency code as DonViXuLy (OC-DV:196-222)
    for wrong in ({"MaDoiTuong": "001099012345"}, {"MaDoiTuong": "123456789"}, {"DonViXuLy": "000.00.00.H12"}):
        issues = dvcqg.validate_record(dvcqg.SERVICE_SYNC, record | wrong)
        assert [(i.field, i.rule) for i in issues] == [(next(iter(wrong)), "not")]
    for reply in GOLDEN.glob("*.reply*.json"):
        assert dvcqg.validate_record("reply", golden(reply.name)) == [], reply.name


@pytest.mark.parametrize(
    ("value", "success"), [("0", True), (0, True), ("00", True), ("000", True), ("3", False), (-3, False)]
)
def test_error_code_is_read_as_string_or_number(value: object, success: bool) -> None:
    table = profiles.get_profile("dvcqg/opencps").codes["error_code"].values
    code = dvcqg.error_code_text(value)
    assert code is not None and dvcqg.is_success(code, table) is success
    assert dvcqg.error_code_text(True) is None and dvcqg.error_code_text(None) is None


# ---------------------------------------------------------------- a strict portal from the fact sheet


class StrictPortal:
    """The national portal as PARTNER-FORMATS §1 describes it, refusing anything else with HTTP 400."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], Any]] = []
        self.on_portal: dict[str, dict[str, Any]] = {}
        self.progress: list[dict[str, Any]] = []
        self.tech_ids = {"001099012345": TECH_ID}
        self.sessions: set[str] = set()
        self.answer: dict[str, Any] = {"error_code": "0", "message": "Đồng bộ hồ sơ thành công"}  # TH-SI:33
        self.lookup_answer: dict[str, Any] | None = None  # TraCuuHoSo's whole answer instead of the record's
        self.dstcode = DSTCODE
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}/dvcqg"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def services(self) -> list[str]:
        return [body.get("service", path) if isinstance(body, dict) else path for path, _, body in self.calls]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, answer: object) -> None:
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.removeprefix("/dvcqg")
                with portal.lock:
                    portal.calls.append((path, headers, body))
                    status, answer = portal.handle(path, headers, body)
                self._send(status, answer)

        return Handler

    def handle(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        # OC-DV:1102, 1690, 1863: JSON, Charset utf-8 and dstcode on every call, login included
        if headers.get("dstcode") != self.dstcode or headers.get("charset") != "utf-8":
            return 400, {"error_code": "-1", "message": "missing dstcode or Charset"}
        if not headers.get("content-type", "").startswith("application/json"):
            return 400, {"error_code": "-1", "message": "not JSON"}
        if path == "/auth":  # OC-DV:1087-1088, 1130
            if body != {"username": USER, "password": PASSWORD}:
                return 200, {"error_code": 1, "message": "sai tài khoản"}
            token = f"s-{len(self.sessions) + 1}"
            self.sessions.add(token)
            return 200, {"session": token, "error_code": 0}
        if path == "/integration":
            return self.integration(body)
        if path in ("/insert", "/update", "/progress"):
            return self.proxy(path, body)
        return 404, {"error_code": "-1", "message": "no such endpoint"}

    def integration(self, body: Any) -> tuple[int, Any]:
        issues = dvcqg.validate_record("request", body)
        if issues:
            return 400, {"error_code": "-1", "message": str(issues[0])}
        if body["session"] not in self.sessions:
            return 401, {"error_code": "-1", "message": "phiên đăng nhập không hợp lệ"}
        service = body["service"]
        if service == "TraCuuHoSo":  # OC-DV:1933-1944: top-level mahoso, answered result only (no error_code)
            if self.lookup_answer is not None:
                return 200, self.lookup_answer
            found = self.on_portal.get(body["mahoso"])
            return 200, {"result": [] if found is None else [found]}
        if service == "TraCuuTechID":  # OC-DV:2937-2953: result only
            assert body["provider"] == "wso2is"
            tech_id = self.tech_ids.get(body["mstorcmnd"])
            return 200, {"result": [] if tech_id is None else [{"TECHNICALID": tech_id}]}
        if service in ("DongBoHoSoMC", "CapNhatTienDoHoSoMC"):
            return self.records(service, body["data"], body.get("isUpdating"))
        return 200, {"error_code": "-1", "message": f"unknown service {service}"}

    def records(self, service: str, records: list[Any], updating: str | None) -> tuple[int, Any]:
        for record in records:
            issues = dvcqg.validate_record(service, record)
            if issues:
                return 400, {"error_code": "-1", "message": str(issues[0])}
        if self.answer.get("error_code") not in ("0", 0, "00"):
            return 200, self.answer
        if service == "DongBoHoSoMC" and updating == "False":
            known = [r["MaHoSo"] for r in records if r["MaHoSo"] in self.on_portal]
            if known:  # the answer is the Thanh Hóa proxy's (TH-SS:497-510); the portal's own is not sourced
                return 200, {"error_code": "-3", "message": f"Hồ sơ {known[0]} đã tồn tại"}
        for record in records:
            if service == "DongBoHoSoMC":
                self.on_portal[record["MaHoSo"]] = record | {"_updating": updating}
            else:
                self.progress.append(record)
        return 200, self.answer

    def proxy(self, path: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, list):  # TH-SS:57-70: a bare JSON array, no session
            return 400, {"error_code": "-1", "message": "not an array"}
        service = "CapNhatTienDoHoSoMC" if path == "/progress" else "DongBoHoSoMC"
        for record in body:
            if dvcqg.validate_record(service, record):
                return 400, {"error_code": "-1", "message": "invalid record"}
            code = record["MaHoSo"]
            if path == "/insert" and code in self.on_portal:  # TH-SS:497-510
                return 200, {"error_code": "-3", "message": f"Hồ sơ {code} đã tồn tại"}
            if path == "/update" and code not in self.on_portal:
                return 200, {"error_code": "4", "message": "không tìm thấy hồ sơ"}
        return self.records(service, body, "True" if path == "/update" else None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def portal() -> Iterator[StrictPortal]:
    server = StrictPortal()
    try:
        yield server
    finally:
        server.close()


def settings(name: str, values: dict[str, str]) -> profiles.ProfileSettings:
    return profiles.resolve(profiles.get_profile(name), values)


def opencps(portal: StrictPortal, **values: str) -> DvcqgOpenCpsAdapter:
    return DvcqgOpenCpsAdapter(
        portal.url, settings("dvcqg/opencps", OPENCPS_VALUES | values), username=USER, password=PASSWORD
    )


def request(model: Any, message_id: str = "m-1") -> OutboundRequest:
    message_type = packets.packet_type_for_model(model).name
    header = EnvelopeHeader(sender=HUB, receiver=PORTAL, message_type=message_type, message_id=message_id)
    envelope = build_envelope(header, packets.to_element(model))
    mapping = outbound_mapping(dvcqg.KIND, message_type)  # what the worker does before it calls the adapter
    payload = None if mapping is None else mapping.to_partner(model)
    return OutboundRequest(PORTAL, message_id, message_type, etree.tostring(envelope), payload=payload, model=model)


def anonymous_dossier(**changes: Any) -> DossierSync:
    """The example dossier without a portal account id nor a unit name: the adapter finds both."""
    sync = packets.example("dossier.sync")
    applicant = sync.applicant.model_copy(update={"portal_account_id": None})
    return sync.model_copy(update={"applicant": applicant, "receiving_unit_name": None, **changes})


# ---------------------------------------------------------------- dvcqg/opencps


def test_a_string_error_code_zero_is_delivered_with_the_sourced_calls(portal: StrictPortal) -> None:
    adapter = opencps(portal)
    receipt = adapter.deliver(request(anonymous_dossier()))
    assert receipt.status == 200 and "DongBoHoSoMC isUpdating=False error_code=0" in receipt.detail
    # login, TraCuuTechID (no account id in the packet), TraCuuHoSo, then the record
    assert portal.services() == ["/auth", "TraCuuTechID", "TraCuuHoSo", "DongBoHoSoMC"]
    assert all(h["dstcode"] == DSTCODE and h["charset"] == "utf-8" for _, h, _ in portal.calls)
    login, techid, lookup, sync = (body for _, _, body in portal.calls)
    assert login == {"username": USER, "password": PASSWORD}
    assert techid == {"session": "s-1", "madonvi": "000.00.00.H12", "service": "TraCuuTechID",
                      "provider": "wso2is", "mstorcmnd": "001099012345"}  # fmt: skip
    assert lookup == {"session": "s-1", "madonvi": "000.00.00.H12", "service": "TraCuuHoSo", "mahoso": DOSSIER}
    assert sync["isUpdating"] == "False" and len(sync["data"]) == 1
    record = portal.on_portal[DOSSIER]
    assert record["MaDoiTuong"] == TECH_ID and record["SoGiayToChuHoSo"] == "001099012345"
    assert record["DonViXuLy"] == "Ủy ban nhân dân quận Hải Châu"  # the profile's unit_name
    # the message log keeps the exact body, its session token blanked
    assert json.loads(receipt.sent) == {**sync, "session": "***"}
    assert b"s-1" not in receipt.sent

    # the dossier is on the portal now: TraCuuHoSo's non-empty result makes it an update (OC-DV:2124-2137)
    adapter.deliver(request(anonymous_dossier(status=9)))
    assert portal.calls[-1][2]["isUpdating"] == "True" and portal.on_portal[DOSSIER]["TrangThaiHoSo"] == "9"
    assert adapter.logins == 1  # the session is kept (OC-DV:1067-1072)

    progress = adapter.deliver(request(packets.example("dossier.status")))
    assert "CapNhatTienDoHoSoMC error_code=0" in progress.detail
    assert portal.calls[-1][2] == {"session": "s-1", "madonvi": "000.00.00.H12", "service": "CapNhatTienDoHoSoMC",
                                   "data": [golden("OC-DV_507-524.CapNhatTienDoHoSoMC.record.json")]}  # fmt: skip


@pytest.mark.parametrize("answer", ["OC-DV23_1577.reply.ok.json", "TH-SI_33.reply.ok.json"])
def test_every_sourced_success_answer_is_delivered(portal: StrictPortal, answer: str) -> None:
    portal.answer = golden(answer)
    opencps(portal).deliver(request(packets.example("dossier.sync")))
    assert DOSSIER in portal.on_portal


def test_a_given_portal_account_id_is_not_looked_up(portal: StrictPortal) -> None:
    opencps(portal).deliver(request(packets.example("dossier.sync")))
    assert "TraCuuTechID" not in portal.services()
    assert portal.on_portal[DOSSIER]["MaDoiTuong"] == TECH_ID


def test_an_unknown_account_leaves_ma_doi_tuong_empty(portal: StrictPortal) -> None:
    portal.tech_ids.clear()
    opencps(portal).deliver(request(anonymous_dossier()))
    assert portal.on_portal[DOSSIER]["MaDoiTuong"] == ""
    portal.on_portal.clear()
    opencps(portal, techid_lookup="0").deliver(request(anonymous_dossier()))
    assert portal.services().count("TraCuuTechID") == 1 and portal.on_portal[DOSSIER]["MaDoiTuong"] == ""


def test_the_account_is_looked_up_only_for_the_profiles_channels(portal: StrictPortal) -> None:
    # TH looks the TechID up only for the online channel "2" (TH-SS:275-278): no personal ID goes out otherwise
    opencps(portal).deliver(request(anonymous_dossier(channel=1)))
    assert "TraCuuTechID" not in portal.services() and portal.on_portal[DOSSIER]["MaDoiTuong"] == ""
    portal.on_portal.clear()
    opencps(portal, techid_channels="1,2").deliver(request(anonymous_dossier(channel=1)))
    assert portal.services().count("TraCuuTechID") == 1 and portal.on_portal[DOSSIER]["MaDoiTuong"] == TECH_ID


def test_the_status_code_is_mapped_per_deployment(portal: StrictPortal) -> None:
    opencps(portal, status_map="5:9, 6:9,8:9").deliver(
        request(packets.example("dossier.sync").model_copy(update={"status": 5}))
    )
    assert portal.on_portal[DOSSIER]["TrangThaiHoSo"] == "9"  # as TH sends it (TH-SS:267-270)
    opencps(portal).deliver(request(packets.example("dossier.sync").model_copy(update={"status": 5})))
    assert portal.on_portal[DOSSIER]["TrangThaiHoSo"] == "5"
    # the progress record's TrangThai goes through the same mapping (OC-DV:507-524, getMappingStatus)
    step = packets.example("dossier.status")
    opencps(portal, status_map="4:9").deliver(request(step))
    assert dvcqg.progress_record(step)["TrangThai"] == "4" and portal.progress[-1]["TrangThai"] == "9"
    base = {"endpoint": portal.url, "kind": "national_portal", "credentials": {"username": USER, "password": PASSWORD}}
    broken = DestinationConfig(**base, profile="dvcqg/opencps", profile_values=OPENCPS_VALUES | {"status_map": "5=9"})
    unusable = build_adapter(broken)
    assert isinstance(unusable, UnusableAdapter) and "status_map" in unusable.reason


def test_refusals_are_permanent_unless_the_profile_lists_the_code(portal: StrictPortal) -> None:
    portal.answer = {"error_code": "2", "message": "Dữ liệu không hợp lệ: SoGiayToChuHoSo 001099012345"}
    with pytest.raises(PermanentDeliveryError, match="error_code 2") as refused:
        opencps(portal).deliver(request(packets.example("dossier.sync")))
    assert "001099012345" not in str(refused.value)  # a personal ID echoed by the portal is masked
    with pytest.raises(TransientDeliveryError, match="error_code 2"):
        opencps(portal, transient_codes="2, 99").deliver(request(packets.example("dossier.sync")))


def test_a_reply_without_error_code_is_transient(portal: StrictPortal) -> None:
    portal.answer = {"message": "ok"}
    with pytest.raises(TransientDeliveryError, match="malformed reply"):
        opencps(portal).deliver(request(packets.example("dossier.sync")))
    portal.answer = {"result": []}  # only lookups answer result without error_code; a record service must not
    with pytest.raises(TransientDeliveryError, match="malformed reply"):
        opencps(portal).deliver(request(packets.example("dossier.sync")))


@pytest.mark.parametrize(
    "reply",
    [
        golden("OC-DV_1933-1944.TraCuuHoSo.reply.empty.json"),
        {"error_code": "-1", "message": "Không tìm thấy hồ sơ"},  # a code, no result
        {"error_code": "0"},
        {"result": None},
    ],
)
def test_a_lookup_without_a_non_empty_result_means_insert(portal: StrictPortal, reply: dict[str, Any]) -> None:
    # OpenCPS reads only TraCuuHoSo's result: anything else is "not on the portal" (OC-DV:1988-1995, 2124-2137)
    portal.lookup_answer = reply
    opencps(portal).deliver(request(packets.example("dossier.sync")))
    assert portal.on_portal[DOSSIER]["_updating"] == "False"
    portal.lookup_answer = golden("OC-DV_1933-1944.TraCuuHoSo.reply.found.json")  # result only: on the portal
    opencps(portal).deliver(request(packets.example("dossier.sync")))
    assert portal.on_portal[DOSSIER]["_updating"] == "True"


def test_an_insert_answered_already_exists_is_resent_once_as_an_update(portal: StrictPortal) -> None:
    adapter = opencps(portal)
    adapter.deliver(request(packets.example("dossier.sync")))
    portal.lookup_answer = golden("OC-DV_1933-1944.TraCuuHoSo.reply.empty.json")  # the lookup lags the insert
    receipt = adapter.deliver(request(packets.example("dossier.sync").model_copy(update={"status": 9})))
    flags = [body.get("isUpdating") for _, _, body in portal.calls if body.get("service") == "DongBoHoSoMC"]
    assert flags == ["False", "False", "True"]  # TH-SS:497-510
    assert "isUpdating=True (the insert answered: Hồ sơ" in receipt.detail
    assert portal.on_portal[DOSSIER]["_updating"] == "True" and portal.on_portal[DOSSIER]["TrangThaiHoSo"] == "9"
    # another refusal, or the profile's text not in the message, is not resent
    with pytest.raises(PermanentDeliveryError, match="error_code -3"):
        opencps(portal, already_exists_text="already exists").deliver(request(packets.example("dossier.sync")))
    assert portal.calls[-1][2]["isUpdating"] == "False"


def test_a_rejected_session_logs_in_again_once(portal: StrictPortal) -> None:
    adapter = opencps(portal)
    adapter.deliver(request(packets.example("dossier.sync")))
    portal.sessions.clear()  # the portal forgets the session: its calls answer HTTP 401
    adapter.deliver(request(packets.example("dossier.status")))
    assert adapter.logins == 2 and portal.progress
    assert portal.services()[-3:] == ["CapNhatTienDoHoSoMC", "/auth", "CapNhatTienDoHoSoMC"]


def test_a_wrong_dstcode_is_refused_by_the_portal(portal: StrictPortal) -> None:
    with pytest.raises(PermanentDeliveryError, match="HTTP 400"):
        opencps(portal, dstcode="OTHER").deliver(request(packets.example("dossier.sync")))


# ---------------------------------------------------------------- dvcqg/proxy


def test_the_proxy_inserts_then_updates_on_already_exists(portal: StrictPortal) -> None:
    adapter = DvcqgProxyAdapter(portal.url, settings("dvcqg/proxy", PROXY_VALUES | {"dstcode": DSTCODE}))
    first = adapter.deliver(request(packets.example("dossier.sync")))
    assert "DongBoHoSoMC insert error_code=0" in first.detail
    path, headers, body = portal.calls[-1]
    assert path == "/insert" and isinstance(body, list) and "session" not in json.dumps(body)
    assert headers["dstcode"] == DSTCODE and headers["charset"] == "utf-8"
    assert json.loads(first.sent) == body
    second = adapter.deliver(request(packets.example("dossier.sync")))
    assert [p for p, _, _ in portal.calls] == ["/insert", "/insert", "/update"]  # TH-SS:497-510
    assert "update (the insert answered: Hồ sơ" in second.detail
    adapter.deliver(request(packets.example("dossier.status")))
    assert portal.calls[-1][0] == "/progress" and portal.progress


def test_the_proxy_refuses_other_codes(portal: StrictPortal) -> None:
    values = PROXY_VALUES | {"dstcode": DSTCODE}
    portal.answer = golden("TH-SS_497-510.reply.already-exists.json") | {"message": "tồn tại lỗi khác"}
    with pytest.raises(PermanentDeliveryError, match="error_code -3"):  # -3 without "đã tồn tại": a refusal
        DvcqgProxyAdapter(portal.url, settings("dvcqg/proxy", values)).deliver(request(packets.example("dossier.sync")))


# ---------------------------------------------------------------- wiring: YAML → hub connector add → adapter


def test_factory_picks_the_profiles_adapter() -> None:
    base = {"endpoint": "http://127.0.0.1:1/dvcqg", "kind": "national_portal"}
    creds = {"username": USER, "password": PASSWORD}
    assert isinstance(
        build_adapter(
            DestinationConfig(**base, credentials=creds, profile="dvcqg/opencps", profile_values=OPENCPS_VALUES)
        ),
        DvcqgOpenCpsAdapter,
    )
    proxy = build_adapter(DestinationConfig(**base, profile="dvcqg/proxy@1", profile_values=PROXY_VALUES))
    assert isinstance(proxy, DvcqgProxyAdapter) and proxy.partner_format == dvcqg.KIND
    unset = build_adapter(DestinationConfig(**base, credentials=creds, profile="dvcqg/opencps", profile_values={}))
    assert isinstance(unset, UnusableAdapter) and "dstcode" in unset.reason


def test_a_dstcode_or_unit_name_change_is_a_yaml_edit_and_connector_add(tmp_path: Path, portal: StrictPortal) -> None:
    env = {"LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path}/hub.db", "LIENTHONG_DATA_DIR": str(tmp_path)}
    file = tmp_path / "portal.yaml"
    spec = {
        "code": PORTAL, "name": "Cổng DVCQG", "kind": "national_portal", "receives": ["dossier.sync"],
        "endpoint": {"url": portal.url, "transport": "json", "credentials": {"username": USER, "password": PASSWORD}},
        "profile": "dvcqg/opencps@1", "profile_values": OPENCPS_VALUES,
    }  # fmt: skip

    def add_and_deliver() -> dict[str, Any]:
        file.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["connector", "add", str(file)], env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        store = Store(env["LIENTHONG_DATABASE_URL"])
        try:
            destination = Registry(store, hub_code=HUB).require(PORTAL).destination()
        finally:
            store.close()
        assert destination is not None
        build_adapter(destination).deliver(request(anonymous_dossier()))
        return portal.calls[-1][1] | {"DonViXuLy": portal.on_portal[DOSSIER]["DonViXuLy"]}

    first = add_and_deliver()
    assert first["dstcode"] == DSTCODE and first["DonViXuLy"] == "Ủy ban nhân dân quận Hải Châu"
    portal.dstcode = "DST-NEW"
    spec["profile_values"] = OPENCPS_VALUES | {"dstcode": "DST-NEW", "unit_name": "Ủy ban nhân dân quận Sơn Trà"}
    second = add_and_deliver()
    assert second["dstcode"] == "DST-NEW" and second["DonViXuLy"] == "Ủy ban nhân dân quận Sơn Trà"


def test_the_golden_directory_is_named_by_source() -> None:
    names = [p.name for p in GOLDEN.glob("*.json") if not p.name.startswith("dossier-sync")]
    assert names and all(n.split("_")[0] in {"OC-DV", "OC-DV23", "TH-SI", "TH-SS"} for n in names), names


# ---------------------------------------------------------------- through the hub: recorded as delivered


PROVINCE = "000.00.00.H12"


@contextmanager
def hub_delivering_to(portal: StrictPortal, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A runtime with the province and the portal (dvcqg/opencps) registered, and a worker built as ``hub worker``
    builds it (``hub.runtime.run_workers``: the OutboundBuilder with the store's cached catalogue); the province's
    signer is ``runtime.province``."""
    from hub.config import Settings
    from hub.exchange.worker import OutboundBuilder, Worker
    from hub.registry import parse_spec
    from hub.runtime import Runtime
    from hub.store.catalogue import CachedCatalogue
    from tests.support import issue_signer

    settings = Settings(broker_url="embedded", database_url=f"sqlite:///{tmp_path / 'store.db'}",
                        data_dir=tmp_path / "var", hub_code=HUB)  # fmt: skip
    signer = issue_signer("province", tmp_path / "var" / "keys", code=PROVINCE)
    runtime = Runtime.open(settings)
    registry = runtime.registry()
    registry.add(parse_spec({"code": PROVINCE, "name": "Province", "kind": "provincial", "sends": ["dossier.sync"]}),
                 actor="test")  # fmt: skip
    registry.add(parse_spec({
        "code": PORTAL, "name": "Cổng DVCQG", "kind": "national_portal", "receives": ["dossier.sync"],
        "endpoint": {"url": portal.url, "transport": "json", "credentials": {"username": USER, "password": PASSWORD}},
        "profile": "dvcqg/opencps", "profile_values": OPENCPS_VALUES,
    }), actor="test")  # fmt: skip
    runtime.refresh()
    builder = OutboundBuilder(runtime.signer(), HUB, CachedCatalogue(runtime.store.catalogue_names))
    worker = Worker(runtime.store, runtime.broker, runtime.routing, builder, runtime.adapters())
    runtime.province = signer
    try:
        yield runtime, worker
    finally:
        worker.close()
        runtime.close()


def deliver(runtime: Any, worker: Any, model: DossierSync) -> tuple[EnvelopeHeader, Any]:
    """Accept ``model`` from the province and run one worker batch; (its header, its delivery's stored view)."""
    from hub.security.signing import sign_payload

    header = EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
    runtime.acceptor().accept(etree.tostring(sign_payload(runtime.province, header, packets.to_element(model))))
    worker.process_batch(runtime.broker.consume(worker.destinations, prefetch=10, timeout_s=2))
    trace = runtime.store.trace(header.message_id, PROVINCE)
    assert trace is not None
    (delivery,) = trace.deliveries
    assert delivery.state.value == "delivered", delivery
    return header, runtime.store.delivery(delivery.delivery_id)


def test_the_hub_records_a_string_zero_answer_as_delivered(tmp_path: Path, portal: StrictPortal) -> None:
    with hub_delivering_to(portal, tmp_path) as (runtime, worker):
        assert portal.answer["error_code"] == "0"  # a string, as TH-SI:33 reads it
        _, view = deliver(runtime, worker, packets.example("dossier.sync"))
        sent = json.loads(view.sent)
        assert sent["service"] == "DongBoHoSoMC" and sent["data"][0]["MaHoSo"] == DOSSIER
        assert DOSSIER in portal.on_portal
        assert sent["session"] == "***" and view.sent_type == "application/json"


def test_a_dossier_without_field_or_unit_name_reaches_the_portal_with_the_catalogues_names(
    tmp_path: Path, portal: StrictPortal
) -> None:
    from hub.store.catalogue import CatalogueData, Field, Procedure, Unit

    example = packets.example("dossier.sync")
    bare = example.model_copy(update={"field_code": None, "field_name": None, "receiving_unit_name": None})
    with hub_delivering_to(portal, tmp_path) as (runtime, worker):
        sync = runtime.store.claim_catalogue_sync(PORTAL, actor="test")
        runtime.store.finish_catalogue_sync(sync.id, CatalogueData(
            procedures=[Procedure(example.procedure_code, "Cấp giấy phép xây dựng (danh mục)", "XD-DM",
                                  "Xây dựng (danh mục)")],
            units=[Unit(example.receiving_unit, "UBND (tên trong danh mục)", "2")],
            fields=[Field("XD-DM", "Xây dựng (danh mục)", "XD")],
        ))  # fmt: skip
        _, view = deliver(runtime, worker, bare)
        record = json.loads(view.sent)["data"][0]
        assert (record["MaLinhVuc"], record["TenLinhVuc"], record["DonViXuLy"]) == (
            "XD-DM", "Xây dựng (danh mục)", "UBND (tên trong danh mục)")  # fmt: skip
        assert record["TenTTHC"] == example.procedure_name  # the dossier's own name wins
        assert portal.on_portal[DOSSIER]["DonViXuLy"] == "UBND (tên trong danh mục)"  # not the profile's unit_name
        # what the dossier names is kept: its own field and unit name, before the catalogue's
        # (the same dossier again: its record amended at the status it has, which the status machine applies)
        _, view = deliver(runtime, worker, example.model_copy(update={"note": "Bổ sung tên đơn vị"}))
        record = json.loads(view.sent)["data"][0]
        assert (record["MaLinhVuc"], record["TenLinhVuc"], record["DonViXuLy"]) == (
            example.field_code, example.field_name, example.receiving_unit_name)  # fmt: skip
