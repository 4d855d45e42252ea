"""Supplements reach the national portal (issue 16 point 2): a ministry's supplement requested (5) and received with
a new due date (back to 4; VBDLIS ``YeuCauBoSungHoSo`` / ``NhanBoSungHoSo`` with ``NgayHenTraMoi``, PARTNER-FORMATS
§5) reach the portal simulator (a real server on 127.0.0.1, profile ``dvcqg/opencps``, checking every record
against the sourced field table) as their progress records and the dossier's ``DongBoHoSoMC`` record refreshed:
``DanhSachHoSoBoSung`` with ``NgayHenTraTruoc`` (the due date it replaced) and ``NgayHenTraMoi``, and ``NgayHenTra``
the new due date (TH-SI:187-203). The dossier's current due date moves in the store and shows on its timeline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from hub import packets
from hub.api import create_app
from hub.devtools.simulators import NationalPortalSimulator
from hub.exchange.portal_refresh import DossierRecords
from hub.exchange.worker import OutboundBuilder, Worker
from hub.registry import parse_spec
from hub.runtime import open_broker
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import Signer, sign_payload
from hub.services import HubService
from tests.support import hub_settings, issue_signer, running_sink

HUB, VBDLIS, PROVINCE, PORTAL = "000.00.00.H00", "000.00.00.G10", "000.00.00.H12", "000.00.00.G01"
ADMIN_KEY = "admin-secret-key"
DOSSIER = "000.00.00.H12-251123-0042"  # the VBDLIS goldens' SoBienNhan
VBDLIS_GOLDEN = Path(__file__).parents[1] / "golden" / "vbdlis"
FIRST_DUE = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)  # 17:00 in Asia/Ho_Chi_Minh


def step_body(action: str, **change: Any) -> bytes:
    body = json.loads((VBDLIS_GOLDEN / f"TH-BR_{action}.request.json").read_text(encoding="utf-8"))
    return json.dumps({**body, "SoBienNhan": DOSSIER, **change}, ensure_ascii=False).encode()


@dataclass
class Hub:
    client: TestClient
    service: HubService
    vbdlis_key: str
    province: Signer
    portal: NationalPortalSimulator

    def sync(self, **change: Any) -> None:
        """The province's dossier.sync: received (2) on 23 November, due 1 December 17:00, no supplement listed."""
        example = packets.example("dossier.sync")
        update = {"status": 2, "due_at": FIRST_DUE, "finished_at": None, "returned_at": None, "results": [],
                  "supplements": [], **change}  # fmt: skip
        model = example.model_copy(update=update)
        header = EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
        envelope = etree.tostring(sign_payload(self.province, header, packets.to_element(model)))
        self.service.runtime.acceptor().accept(envelope)

    def step(self, action: str, **change: Any) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/VBDLISs/{action}/{self.vbdlis_key}", content=step_body(action, **change),
                                    headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 200 and response.json()["Result"] == 1, response.text
        return response.json()

    def deliver(self) -> None:
        """What ``hub worker`` does (``hub.runtime.run_workers``: the builder reads the dossier from the store), until
        the queues are empty."""
        runtime = self.service.runtime
        builder = OutboundBuilder(runtime.signer(), HUB, dossiers=DossierRecords(runtime.store))
        broker = open_broker(self.service.settings)
        worker = Worker(runtime.store, broker, runtime.routing, builder, runtime.adapters())
        try:
            for _ in range(20):
                batch = broker.consume(worker.destinations, prefetch=64, timeout_s=0.2)
                if not batch:
                    break
                worker.process_batch(batch)
        finally:
            worker.close()
            broker.close()

    def record(self) -> dict[str, Any]:
        return self.portal.received()["records"][DOSSIER]

    def portal_delivery(self) -> Any:
        """The portal's delivery of the dossier's latest ``dossier.status``, as the store has it."""
        store = self.service.store
        (latest,) = [d for m in store.dossier_messages(DOSSIER) if m.message_type == "dossier.status"
                     for d in m.deliveries if d.destination == PORTAL][-1:]  # fmt: skip
        return store.delivery(latest.delivery_id)

    def deliver_until_delivered(self, within_s: float = 15.0) -> Any:
        """``deliver`` again while the portal's delivery waits out its retry (polling the store)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            self.deliver()
            view = self.portal_delivery()
            if view is not None and view.state == "delivered":
                return view
        raise AssertionError(f"not delivered within {within_s} s: {self.portal_delivery()}")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    settings = hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY)
    province = issue_signer("province", tmp_path / "var" / "keys", code=PROVINCE)  # the demo CA the hub trusts
    with (
        NationalPortalSimulator(dstcode="DST-H12") as portal,
        running_sink() as sink,
        TestClient(create_app(settings)) as client,
    ):
        service: HubService = client.app.state.hub

        def register(**spec: Any) -> str | None:
            return service.registry.add(parse_spec(spec), actor="test")[1]

        register(code=PROVINCE, name="One-stop system", kind="provincial", sends=["dossier.sync"],
                 receives=["dossier.status"], endpoint={"url": sink.url})  # fmt: skip
        register(
            code=PORTAL, name="Cổng DVCQG", kind="national_portal", receives=["dossier.sync", "dossier.status"],
            endpoint={"url": portal.adapter_url, "transport": "json",
                      "credentials": {"username": "lienthong", "password": "lienthong-demo"}},
            profile="dvcqg/opencps",
            profile_values={"dstcode": "DST-H12", "madonvi": PROVINCE, "auth_endpoint": portal.auth_endpoint,
                            "integration_endpoint": portal.integration_endpoint,
                            "share_endpoint": portal.share_endpoint, "unit_name": "UBND quận Hải Châu",
                            "transient_codes": "-1"},  # the simulator's refusal, retried here
            retry={"delays_s": [0.2], "jitter": 0},
        )  # fmt: skip
        key = register(code=VBDLIS, name="VBDLIS", kind="ministry", sends=["dossier.status"], handles=[PROVINCE],
                       profile="ministry/vbdlis-json", profile_values={"api_versions": "1"})  # fmt: skip
        assert key is not None
        service.refresh()
        yield Hub(client, service, key, province, portal)


def test_a_supplement_received_with_a_new_due_date_reaches_the_portal_as_danh_sach_ho_so_bo_sung(hub: Hub) -> None:
    hub.sync()
    hub.deliver()
    assert hub.record()["NgayHenTra"] == "20251201170000" and hub.record()["DanhSachHoSoBoSung"] == []

    hub.step("YeuCauBoSungHoSo")  # 25 November 10:00: supplement requested (5)
    hub.deliver()
    (requested,) = hub.record()["DanhSachHoSoBoSung"]
    assert requested["NgayBoSung"] == "20251125100000" and requested["NgayTiepNhanBoSung"] == ""
    assert requested["NguoiYeuCauBoSung"] == "cb.tnmt.07" and requested["NoiDungBoSung"].startswith("Bổ sung bản sao")
    assert requested["TrangThaiBoSung"] == "1"  # the profile's (unsourced) code for "requested"
    assert hub.record()["TrangThaiHoSo"] == "5"

    hub.step("NhanBoSungHoSo")  # 26 November 14:15: received, new due date 3 December 17:00 (back to 4)
    hub.deliver()
    record = hub.record()
    (received,) = record["DanhSachHoSoBoSung"]
    assert received["HoSoBoSungId"] == requested["HoSoBoSungId"]  # the same round, now answered
    assert (received["NgayHenTraTruoc"], received["NgayHenTraMoi"]) == ("20251201170000", "20251203170000")
    assert received["NgayTiepNhanBoSung"] == "20251126141500" and received["TrangThaiBoSung"] == "2"
    assert received["ThongTinTiepNhan"] == "Đã nhận hợp đồng chuyển nhượng"
    assert record["NgayHenTra"] == "20251203170000" and record["TrangThaiHoSo"] == "4"

    # each supplement step: its progress record, then the dossier's record (an update: TraCuuHoSo found it)
    calls = [(c["service"], c.get("isUpdating"), c["error_code"]) for c in hub.portal.received()["calls"]
             if c["service"] in ("DongBoHoSoMC", "CapNhatTienDoHoSoMC")]  # fmt: skip
    assert calls == [("DongBoHoSoMC", "False", "0"), ("CapNhatTienDoHoSoMC", None, "0"), ("DongBoHoSoMC", "True", "0"),
                     ("CapNhatTienDoHoSoMC", None, "0"), ("DongBoHoSoMC", "True", "0")]  # fmt: skip
    assert [p["TrangThai"] for p in hub.portal.received()["progress"][DOSSIER]] == ["5", "4"]

    # the store: the current due date, the timeline entry that moved it (with the date it replaced)
    store = hub.service.store
    assert store.due_date(DOSSIER)[0] == datetime(2025, 12, 3, 10, 0, tzinfo=UTC)
    timeline = hub.client.get(f"/api/v1/dossiers/{DOSSIER}", headers={"X-Api-Key": ADMIN_KEY}).json()
    assert timeline["due_at"] == "2025-12-03T10:00:00Z"
    moved = [u for u in timeline["updates"] if u["detail"] and "previous_due_at" in u["detail"]]
    assert [(u["status"], u["detail"]["previous_due_at"], u["detail"]["new_due_at"]) for u in moved] == [
        (4, "2025-12-01T10:00:00Z", "2025-12-03T10:00:00Z")
    ]
    # the message log keeps both bodies the portal received for the step, one per line
    portal_delivery = [d for m in store.dossier_messages(DOSSIER) if m.message_type == "dossier.status"
                       for d in m.deliveries if d.destination == PORTAL][-1]  # fmt: skip
    view = store.delivery(portal_delivery.delivery_id)
    assert view is not None and view.sent_type == "application/x-ndjson"
    bodies = [json.loads(line) for line in view.sent.splitlines()]
    assert [b["service"] for b in bodies] == ["CapNhatTienDoHoSoMC", "DongBoHoSoMC"]
    assert bodies[1]["data"][0]["DanhSachHoSoBoSung"][0]["NgayHenTraMoi"] == "20251203170000"
    assert all(b["session"] == "***" for b in bodies)


def test_without_the_dossiers_record_the_portal_gets_the_progress_record_only(hub: Hub) -> None:
    """The province never sent the dossier through the hub: no whole record to refresh, the step still goes."""
    hub.portal.seed({"MaHoSo": DOSSIER})  # on the portal already (synced before the hub existed)
    hub.step("YeuCauBoSungHoSo")
    hub.deliver()
    services = [c["service"] for c in hub.portal.received()["calls"] if c["service"] != "TraCuuHoSo"]
    assert services == ["CapNhatTienDoHoSoMC"]
    assert "DanhSachHoSoBoSung" not in hub.portal.received()["records"][DOSSIER]


def test_a_retried_supplement_step_sends_the_progress_record_the_portal_accepted_only_once(hub: Hub) -> None:
    """The portal keeps every progress record it is sent: when ``DongBoHoSoMC`` fails after
    ``CapNhatTienDoHoSoMC`` was accepted, the retry sends only the dossier's record (``hub.store.delivery_steps``),
    and the message log still keeps both bodies the portal received for the step."""
    hub.sync()
    hub.deliver()
    hub.portal.reject_next(1, service="DongBoHoSoMC")  # the refreshed record refused once (transient "-1" here)
    hub.step("YeuCauBoSungHoSo")
    view = hub.deliver_until_delivered()

    calls = [(c["service"], c["error_code"]) for c in hub.portal.received()["calls"]
             if c["service"] in ("DongBoHoSoMC", "CapNhatTienDoHoSoMC")][1:]  # after the first sync  # fmt: skip
    assert calls == [("CapNhatTienDoHoSoMC", "0"), ("DongBoHoSoMC", "-1"), ("DongBoHoSoMC", "0")]
    assert view.attempts == 2 and hub.record()["TrangThaiHoSo"] == "5"
    assert [json.loads(line)["service"] for line in view.sent.splitlines()] == ["CapNhatTienDoHoSoMC", "DongBoHoSoMC"]


def test_a_provinces_record_behind_a_ministry_step_is_refused_out_loud_then_its_update_reaches_the_portal(
    hub: Hub,
) -> None:
    """A sync is as old as its record (the envelope's ``createdAt``), not as the status it reports (a 2's reception
    date): re-synced at 2 after the ministry's 4, with a due date 5 days later, it is not dropped as stale (the
    portal would never learn the date) nor routed with its 2 (a status regression on the portal): it is refused
    (``status-transition``, naming the current status). Synced again at 4, it moves the due date and reaches the
    portal with status 4."""
    from hub.errors import StatusTransitionError

    hub.sync()
    hub.step("ChuyenHoSo")  # 24 November 08:30: handed over, processing (4)
    hub.deliver()
    assert hub.record()["NgayHenTra"] == "20251201170000"
    later_due = datetime(2025, 12, 6, 10, 0, tzinfo=UTC)
    with pytest.raises(StatusTransitionError, match="4 PROCESSING -> 2 RECEIVED"):
        hub.sync(due_at=later_due)
    assert hub.service.store.dossier(DOSSIER).status == 4  # type: ignore[union-attr]
    hub.sync(status=4, due_at=later_due)
    hub.deliver()
    assert hub.service.store.due_date(DOSSIER)[0] == later_due
    assert (hub.record()["TrangThaiHoSo"], hub.record()["NgayHenTra"]) == ("4", "20251206170000")
