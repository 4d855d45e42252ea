"""The hub's own national portal format (``hub-v1``: ``mappings.national_portal``, ``adapters.national_portal``),
what a national portal connector WITHOUT a partner profile speaks: golden-file mapping tests (canonical XML in,
portal JSON out, both checked in), its JSON schemas, and the adapter over HTTP (session caching and renewal,
duplicate insert → update, transient and permanent failures) against ``HubFormatPortal``, a small fake of that
format defined here.

The real portal (profiles ``dvcqg/opencps`` and ``dvcqg/proxy``) and its strict simulator are tested in
``tests/integration/test_dvcqg.py`` and ``tests/e2e/test_sourced_simulators.py``; no test here talks to that
simulator (it refuses this format, as a real portal would)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from lxml import etree

from adapters.base import OutboundRequest, PermanentDeliveryError, TransientDeliveryError
from adapters.http import HttpAdapter
from adapters.national_portal import NationalPortalAdapter
from adapters.provincial import ProvincialAdapter
from adapters.registry import FACTORIES, factory_key
from hub import packets
from hub.devtools.simulators.base import SimulatorHandler, SimulatorServer
from hub.errors import MappingError
from hub.exchange.routing import DestinationConfig
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.registry import Registry, parse_spec
from hub.runtime import adapter_for
from hub.security.envelope import EnvelopeHeader, build_envelope
from hub.store import Store
from mappings import national_portal as np
from mappings import outbound_mapping, outbound_types

GOLDEN = Path(__file__).parents[1] / "golden" / "national_portal"
CASES = sorted(p.stem for p in GOLDEN.glob("*.xml"))
USER, PASSWORD = "lienthong", "lienthong-demo"
HUB, PORTAL = "000.00.00.H00", "000.00.00.G22"


def _canonical(name: str):
    root = etree.fromstring((GOLDEN / f"{name}.xml").read_bytes())
    return packets.from_element(packets.packet_type_for_element(root).name, root)


# ---------------------------------------------------------------- golden files


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 4
    assert {(GOLDEN / f"{c}.json").exists() for c in CASES} == {True}


@pytest.mark.parametrize("case", CASES)
def test_golden_mapping(case: str) -> None:
    """canonical XML → portal JSON equals the checked-in file (UPDATE_GOLDEN=1 rewrites it, for review)."""
    model = _canonical(case)
    service, record = np.to_portal(model)
    expected_path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert record == json.loads(expected_path.read_text(encoding="utf-8"))
    assert np.validate_record(service, record) == []
    back = np.portal_to_dossier(record) if service == np.SERVICE_SYNC else np.progress_to_status(record)
    assert back == model  # lossless: the golden inputs have whole seconds


def test_golden_times_are_local_ho_chi_minh() -> None:
    new = json.loads((GOLDEN / "dossier-sync-new-online.json").read_text(encoding="utf-8"))
    assert new["NgayNopHoSo"] == "20251124003005"  # 2025-11-23T17:30:05Z is past midnight in Hà Nội
    assert new["TrangThaiHoSo"] == "1" and new["LoaiDoiTuong"] == "2" and new["KenhThucHien"] == "2"
    assert new["TaiLieuNop"] == [] and "NgayTiepNhan" not in new
    supplement = json.loads((GOLDEN / "dossier-status-supplement.json").read_text(encoding="utf-8"))
    assert supplement["ThoiDiemXuLy"] == "20260101065959"


def test_time_conversion() -> None:
    at = datetime(2025, 11, 23, 17, 30, 5, tzinfo=UTC)
    assert np.to_portal_time(at) == "20251124003005"
    assert np.from_portal_time("20251124003005") == at
    assert np.to_portal_time(at.astimezone(np.PORTAL_TZ)) == "20251124003005"
    with pytest.raises(ValueError):
        np.to_portal_time(datetime(2025, 11, 23, 17, 30))  # naive
    with pytest.raises(MappingError):
        np.from_portal_time("2025-11-24")


def test_field_tables_match_the_schemas() -> None:
    for service, fields, lists in (
        (np.SERVICE_SYNC, np.DOSSIER_FIELDS, np.DOSSIER_LISTS),
        (np.SERVICE_PROGRESS, np.PROGRESS_FIELDS, np.PROGRESS_LISTS),
    ):
        schema = np.portal_schema(service)
        produced = {f.portal for f in fields} | {lst.portal for lst in lists}
        assert produced == set(schema["properties"])
        for lst in lists:
            assert {f.portal for f in lst.fields} == set(schema["properties"][lst.portal]["items"]["properties"])


def test_schema_reports_field_and_rule() -> None:
    record = np.dossier_to_portal(packets.example("dossier.sync"))
    broken = {**record, "TrangThaiHoSo": "2", "NgayNopHoSo": "2025-11-23", "Extra": 1}
    del broken["MaLinhVuc"], broken["NgayTiepNhan"]
    broken["TaiLieuNop"] = [{**record["TaiLieuNop"][0], "MaKiemTra": "x"}]
    issues = {(i.field, i.rule) for i in np.validate_record(np.SERVICE_SYNC, broken)}
    assert {
        ("MaLinhVuc", "required"),
        ("NgayTiepNhan", "required"),
        ("NgayNopHoSo", "pattern"),
        ("TaiLieuNop[0].MaKiemTra", "pattern"),
        ("/", "additionalProperties"),
    } <= issues
    progress = np.status_to_progress(packets.example("dossier.status"))
    assert np.validate_record(np.SERVICE_PROGRESS, {**progress, "TrangThai": "11"})[0].field == "TrangThai"


def test_examples_of_every_status_validate() -> None:
    base = packets.example("dossier.sync")
    for status in range(1, 11):
        record = np.dossier_to_portal(base.model_copy(update={"status": status}))
        assert np.validate_record(np.SERVICE_SYNC, record) == [], status


# ---------------------------------------------------------------- a fake of the hub's own format


class HubFormatPortal(SimulatorServer):
    """The hub's own portal format on 127.0.0.1 (what ``adapters.national_portal`` speaks): ``POST /login
    {username, password}`` → ``{error_code 0, session, expires_in}``; ``POST /api {session, madonvi, service,
    [isUpdating], data}`` → ``{error_code, message, [field], [data]}`` with the integer codes of
    ``mappings.national_portal``; records checked against ``schemas/national-portal/hub-v1`` (``validate_record``),
    all or nothing. The failure modes of ``hub.devtools.simulators.base`` apply (``fail``, ``heal``)."""

    name: ClassVar[str] = "hub_format_portal"
    path: ClassVar[str] = "/api"

    def __init__(self, *, session_ttl_s: float = 1800.0) -> None:
        super().__init__(0)
        self.session_ttl_s = session_ttl_s
        self._sessions: dict[str, float] = {}
        self._invalid_left = 0
        self._data_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self._data_lock:
            self.records: dict[str, dict[str, Any]] = {}
            self.progress: dict[str, list[dict[str, Any]]] = {}
            self.calls: list[dict[str, Any]] = []
            self.logins = 0
            self._sessions.clear()

    def expire_sessions(self) -> None:
        with self._data_lock:
            self._sessions.clear()

    def reject_next(self, count: int = 1) -> None:
        with self._data_lock:
            self._invalid_left = count

    def received(self) -> dict[str, Any]:
        with self._data_lock:
            return json.loads(json.dumps({"records": self.records, "progress": self.progress, "calls": self.calls,
                                          "logins": self.logins}))  # fmt: skip

    def handle_post(self, handler: SimulatorHandler, path: str, body: bytes) -> None:
        request = json.loads(body)
        if path == "/login":
            if (request.get("username"), request.get("password")) != (USER, PASSWORD):
                handler.reply(200, {"error_code": np.LOGIN_FAILED, "message": "Sai tên đăng nhập hoặc mật khẩu"})
                return
            token = secrets.token_urlsafe(16)
            with self._data_lock:
                self._sessions[token] = time.monotonic() + self.session_ttl_s
                self.logins += 1
            handler.reply(200, {"error_code": np.OK, "session": token, "expires_in": int(self.session_ttl_s)})
            return
        answer = self._call(request)
        with self._data_lock:
            self.calls.append({"service": request.get("service"), "madonvi": request.get("madonvi"),
                               "isUpdating": request.get("isUpdating"), "data": request.get("data"),
                               "error_code": answer["error_code"], "message": answer["message"]})  # fmt: skip
        handler.reply(200, answer)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        service, data, updating = request.get("service"), request.get("data"), request.get("isUpdating")
        with self._data_lock:
            expires = self._sessions.get(request.get("session"))
            if expires is None or time.monotonic() > expires:
                return _answer(np.INVALID_SESSION, "Phiên làm việc không hợp lệ")
            if service == np.SERVICE_LOOKUP:
                record = self.records.get(data.get("MaHoSo"))
                if record is None:
                    return _answer(np.NOT_FOUND, "Hồ sơ không tồn tại")
                return {**_answer(np.OK), "data": {**record, "TienDoXuLy": self.progress.get(record["MaHoSo"], [])}}
            if service not in (np.SERVICE_SYNC, np.SERVICE_PROGRESS):
                return _answer(np.UNKNOWN_SERVICE, f"Dịch vụ không tồn tại: {service!r}")
            if self._invalid_left > 0:
                self._invalid_left -= 1
                return _answer(np.VALIDATION_ERROR, "Dữ liệu không hợp lệ: bản ghi bị từ chối theo quy tắc mới")
            for index, record in enumerate(data):
                issues = np.validate_record(service, record)
                if issues:
                    field = f"data[{index}].{issues[0].field}"
                    return _answer(np.VALIDATION_ERROR, f"Dữ liệu không hợp lệ: {field}: {issues[0].message}", field)
            for record in data:
                code = record["MaHoSo"]
                if service == np.SERVICE_SYNC and updating == "False" and code in self.records:
                    return _answer(np.ALREADY_EXISTS, f"Hồ sơ đã tồn tại: {code}", "MaHoSo")
                if (service == np.SERVICE_PROGRESS or updating == "True") and code not in self.records:
                    return _answer(np.NOT_FOUND, f"Hồ sơ không tồn tại: {code}", "MaHoSo")
            for record in data:
                if service == np.SERVICE_SYNC:
                    self.records[record["MaHoSo"]] = record
                else:
                    self.progress.setdefault(record["MaHoSo"], []).append(record)
                    self.records[record["MaHoSo"]]["TrangThaiHoSo"] = record["TrangThai"]
            return _answer(np.OK)


def _answer(code: int, message: str = "Thành công", field: str | None = None) -> dict[str, Any]:
    return {"error_code": code, "message": message, **({} if field is None else {"field": field})}


# ---------------------------------------------------------------- the adapter against the fake


def _request(model, message_id: str = "m-1") -> OutboundRequest:
    message_type = packets.packet_type_for_model(model).name
    header = EnvelopeHeader(sender=HUB, receiver=PORTAL, message_type=message_type, message_id=message_id)
    envelope = build_envelope(header, packets.to_element(model))
    mapping = outbound_mapping(np.KIND, message_type)  # what the worker does before it calls the adapter
    payload = None if mapping is None else mapping.to_partner(model)
    return OutboundRequest(PORTAL, message_id, message_type, etree.tostring(envelope), payload=payload, model=model)


def _dossier(number: int = 42, **changes) -> DossierSync:
    return packets.example("dossier.sync").model_copy(
        update={"dossier_code": f"000.00.00.H12-251123-{number:04d}", **changes}
    )


def _status(number: int = 42, **changes) -> DossierStatusUpdate:
    return packets.example("dossier.status").model_copy(
        update={"dossier_code": f"000.00.00.H12-251123-{number:04d}", **changes}
    )


@pytest.fixture
def portal():
    with HubFormatPortal() as fake:
        yield fake


@pytest.fixture
def adapter(portal: HubFormatPortal):
    a = NationalPortalAdapter(portal.url, username=USER, password=PASSWORD, timeout_s=2)
    yield a
    a.close()


def test_sync_then_progress_delivered_and_kept(portal, adapter) -> None:
    receipt = adapter.deliver(_request(_dossier()))
    assert receipt.status == 200 and "isUpdating=False" in receipt.detail
    sent = json.loads(receipt.sent)
    assert receipt.sent_type == "application/json"
    assert sent["session"] == "***" and adapter.session() not in receipt.sent.decode()  # the token is a secret
    assert list(sent) == ["session", "madonvi", "service", "isUpdating", "data"]  # the body as posted, in order
    assert sent["service"] == "DongBoHoSoMC" and sent["isUpdating"] == "False"
    assert sent["madonvi"] == "000.00.00.H12" and sent["data"][0]["MaHoSo"] == "000.00.00.H12-251123-0042"
    assert PASSWORD not in receipt.sent.decode() and PASSWORD not in repr(adapter)

    adapter.deliver(_request(_status(), "m-2"))
    seen = portal.received()
    record = seen["records"]["000.00.00.H12-251123-0042"]
    assert record["TrangThaiHoSo"] == "4"  # the progress update moved it
    assert seen["progress"]["000.00.00.H12-251123-0042"][0]["NguoiXuLy"] == "Trần Thị Bình"
    assert adapter.lookup("000.00.00.H12-251123-0042")["TienDoXuLy"][0]["TrangThai"] == "4"
    assert adapter.lookup("000.00.00.H12-251123-0999") is None


def test_session_is_cached(portal, adapter) -> None:
    for n in range(5):
        adapter.deliver(_request(_dossier(n + 1), f"m-{n}"))
    assert adapter.logins == 1 and portal.received()["logins"] == 1


def test_session_renewed_before_expiry() -> None:
    now = [1000.0]
    with HubFormatPortal(session_ttl_s=600) as portal:
        adapter = NationalPortalAdapter(portal.url, username=USER, password=PASSWORD, clock=lambda: now[0])
        adapter.deliver(_request(_dossier(1)))
        now[0] += 500  # still well inside the session's life
        adapter.deliver(_request(_dossier(2)))
        assert adapter.logins == 1
        now[0] += 90  # within the renewal margin before the 600 s expiry
        adapter.deliver(_request(_dossier(3)))
        assert adapter.logins == 2 and portal.received()["logins"] == 2


def test_session_renewed_on_invalid_session_code(portal, adapter) -> None:
    adapter.deliver(_request(_dossier(1)))
    portal.expire_sessions()  # the portal forgot the session (restart, forced logout)
    adapter.deliver(_request(_dossier(2)))
    assert adapter.logins == 2
    codes = [c["error_code"] for c in portal.received()["calls"]]
    assert codes == [0, 1, 0]  # refused with INVALID_SESSION once, then the same call with a new session


def test_duplicate_insert_switches_to_update_in_the_same_delivery(portal, adapter) -> None:
    adapter.deliver(_request(_dossier()))
    other = NationalPortalAdapter(portal.url, username=USER, password=PASSWORD)  # e.g. after a worker restart
    receipt = other.deliver(_request(_dossier(status=4), "m-2"))
    assert "isUpdating=True" in receipt.detail and "switched from insert" in receipt.detail
    assert json.loads(receipt.sent)["isUpdating"] == "True"
    calls = [(c["service"], c["isUpdating"], c["error_code"]) for c in portal.received()["calls"]]
    assert calls == [("DongBoHoSoMC", "False", 0), ("DongBoHoSoMC", "False", 3), ("DongBoHoSoMC", "True", 0)]
    assert portal.received()["records"]["000.00.00.H12-251123-0042"]["TrangThaiHoSo"] == "4"
    # A dossier this adapter synced is updated directly.
    other.deliver(_request(_dossier(status=9), "m-3"))
    assert portal.received()["calls"][-1]["isUpdating"] == "True"
    assert portal.received()["calls"][-1]["error_code"] == 0


def test_update_of_unknown_dossier_switches_to_insert(portal, adapter) -> None:
    adapter.deliver(_request(_dossier()))
    portal.reset()  # the portal lost it
    receipt = adapter.deliver(_request(_dossier(), "m-2"))
    assert "isUpdating=False" in receipt.detail and "switched from update" in receipt.detail


@pytest.mark.parametrize(("mode", "extra"), [("5xx", {}), ("down", {}), ("malformed", {})])
def test_transient_failures(portal, adapter, mode: str, extra: dict) -> None:
    adapter.deliver(_request(_dossier(1)))  # logged in
    portal.fail(mode, count=1, **extra)
    with pytest.raises(TransientDeliveryError) as caught:
        adapter.deliver(_request(_dossier(2)))
    if mode == "5xx":
        assert caught.value.status == 503
    adapter.deliver(_request(_dossier(2)))  # healed after one failure: delivered on the retry


def test_slow_portal_times_out_as_transient(portal) -> None:
    adapter = NationalPortalAdapter(portal.url, username=USER, password=PASSWORD, timeout_s=0.3)
    portal.fail("slow", count=1, delay_ms=1000)
    with pytest.raises(TransientDeliveryError, match="timed out"):
        adapter.deliver(_request(_dossier()))


def test_http_4xx_is_permanent(portal, adapter) -> None:
    portal.fail("4xx", count=1)
    with pytest.raises(PermanentDeliveryError) as caught:
        adapter.deliver(_request(_dossier()))
    assert caught.value.status == 400


def test_invalid_record_is_permanent_with_the_portal_message(portal, adapter) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        adapter.deliver(_request(_dossier(field_code=None)))  # canonical-valid, but the portal needs MaLinhVuc
    message = str(caught.value)
    assert "error_code 2" in message and "MaLinhVuc" in message and "Dữ liệu không hợp lệ" in message
    assert portal.received()["records"] == {}
    portal.reject_next(1)  # the portal's rules refuse a valid record once
    with pytest.raises(PermanentDeliveryError, match="error_code 2"):
        adapter.deliver(_request(_dossier()))
    adapter.deliver(_request(_dossier()))  # replayed: accepted


def test_portal_messages_are_masked_before_they_reach_logs() -> None:
    from adapters.national_portal import PortalError

    error = PortalError(2, "Dữ liệu không hợp lệ: data[0].MaDoiTuong: '001099012345' does not match", "MaDoiTuong")
    assert "001099012345" not in str(error) and "2345" in str(error) and "MaDoiTuong" in error.message


def test_progress_for_a_dossier_not_yet_on_the_portal_is_transient(adapter) -> None:
    with pytest.raises(TransientDeliveryError, match="error_code 4"):
        adapter.deliver(_request(_status(77)))


def test_login_refused_is_transient_and_never_shows_the_password(portal) -> None:
    adapter = NationalPortalAdapter(portal.url, username=USER, password="wrong-password")
    with pytest.raises(TransientDeliveryError, match="login refused") as caught:
        adapter.deliver(_request(_dossier()))
    assert "wrong-password" not in str(caught.value)


def test_types_the_portal_does_not_take_are_permanent(adapter) -> None:
    assert outbound_types(np.KIND) == {"dossier.sync", "dossier.status"}
    assert outbound_mapping(np.KIND, "citizen.lookup") is None
    with pytest.raises(TypeError, match="not CitizenLookup"):
        np.to_portal(packets.example("citizen.lookup"))
    with pytest.raises(PermanentDeliveryError, match=r"takes no citizen\.lookup"):
        adapter.deliver(_request(packets.example("citizen.lookup")))


# ---------------------------------------------------------------- wiring: registry → routing → adapter


def test_registry_routes_to_the_portal_adapter_with_credentials(tmp_path: Path, portal) -> None:
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    try:
        registry = Registry(store, hub_code=HUB)
        spec = parse_spec(
            {
                "code": PORTAL,
                "name": "Cổng Dịch vụ công quốc gia",
                "kind": "national_portal",
                "receives": ["dossier.sync", "dossier.status"],
                "endpoint": {
                    "url": portal.url,
                    "transport": "json",
                    "credentials": {"username": USER, "password": PASSWORD},
                },
            }
        )
        connector, _ = registry.add(spec, actor="test")
        assert PASSWORD not in json.dumps(connector.as_dict(), ensure_ascii=False)
        assert PASSWORD not in json.dumps([e.after for e in registry.audit(PORTAL)], ensure_ascii=False)
        config = registry.routing_table().destinations[PORTAL]
        assert config.kind == "national_portal" and PASSWORD not in repr(config)
        adapter = adapter_for(config)
        assert isinstance(adapter, NationalPortalAdapter)
        adapter.deliver(_request(_dossier()))
        assert "000.00.00.H12-251123-0042" in portal.received()["records"]
    finally:
        store.close()


def test_adapter_choice_by_kind_and_transport() -> None:
    assert isinstance(adapter_for(DestinationConfig(endpoint="http://127.0.0.1:1/inbox", kind="provincial")),
                      ProvincialAdapter)  # fmt: skip
    ministry = adapter_for(DestinationConfig(endpoint="http://127.0.0.1:1/inbox", kind="ministry"))
    assert type(ministry) is HttpAdapter and ministry.partner_format is None
    json_partner = DestinationConfig(endpoint="http://127.0.0.1:1/api", kind="ministry", transport="json",
                                     credentials={"username": USER, "password": PASSWORD})  # fmt: skip
    assert isinstance(adapter_for(json_partner), NationalPortalAdapter)
    assert factory_key(DestinationConfig(endpoint="http://x/", kind="postal", transport="json")) == "postal"
    assert set(FACTORIES) >= {"national_portal", "provincial", "ministry", "population_db", "payment", "postal"}
    unusable = adapter_for(DestinationConfig(endpoint="http://127.0.0.1:1/api", kind="national_portal"))
    with pytest.raises(TransientDeliveryError, match="credentials"):
        unusable.deliver(_request(_dossier()))


def test_times_stay_exact_across_a_round_trip_through_the_portal(portal, adapter) -> None:
    at = datetime(2025, 11, 23, 17, 0, tzinfo=UTC)
    adapter.deliver(_request(_dossier(submitted_at=at, received_at=at + timedelta(minutes=30))))
    record = portal.received()["records"]["000.00.00.H12-251123-0042"]
    assert (record["NgayNopHoSo"], record["NgayTiepNhan"]) == ("20251124000000", "20251124003000")
    assert np.portal_to_dossier(record).submitted_at == at


def test_the_portal_receives_the_senders_registered_unit(portal, adapter, pki) -> None:
    from hub.exchange.worker import OutboundBuilder
    from hub.security.signing import sign_payload

    adapter.deliver(_request(_dossier()))
    claimed = _status(source_system="000.00.00.G99")  # what the body claims
    header = EnvelopeHeader(sender="000.00.00.G10", receiver=HUB, message_type="dossier.status")
    inbound = etree.tostring(sign_payload(pki.ministry.signer, header, packets.to_element(claimed)))
    builder = OutboundBuilder(pki.province.signer, HUB)
    assert builder.prepare(inbound, PORTAL, np.KIND).payload.record["MaDonViXuLy"] == "000.00.00.G99"  # no registry
    outbound = builder.prepare(inbound, PORTAL, np.KIND, {"000.00.00.G10": "000.00.00.G15"})
    adapter.deliver(outbound.request(PORTAL))
    assert portal.received()["progress"]["000.00.00.H12-251123-0042"][0]["MaDonViXuLy"] == "000.00.00.G15"
