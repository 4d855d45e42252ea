"""The procedure catalogue (issue 14 point 3) against a strict fake portal built from the fact sheet
(``tests/catalogue_portal.py``): the transport, the sync into the store, the lease between schedules (a dead sync's
included), the refusals, the guard against an empty or shrunken list, and the names a portal record takes from it."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.base import TransientDeliveryError
from adapters.national_portal_catalogue import PortalCatalogueClient, join_url
from hub.errors import CatalogueBusyError, CatalogueError, CatalogueShrinkError, CatalogueUnavailableError
from hub.exchange.routing import DestinationConfig
from hub.flows.catalogue import CatalogueSchedule, choose_connector, due, start_schedule, sync_catalogue
from hub.security.credentials import Credentials
from hub.store import Store
from hub.store.catalogue import ABANDONED, CatalogueData, Procedure
from hub.store.schema import catalogue_syncs
from mappings.catalogue import CatalogueNames, catalogue_names, fill_portal_record
from mappings.profiles import get_profile, resolve
from tests.catalogue_portal import (
    DSTCODE,
    MADONVI,
    PASSWORD,
    PROFILE_VALUES,
    USERNAME,
    FakePortal,
    running_portal,
)
from tests.support import wait_for

PORTAL = "000.00.00.G22"


def portal_config(url: str, profile: str = "dvcqg/opencps", values: dict[str, str] | None = None) -> DestinationConfig:
    return DestinationConfig(
        endpoint=url,
        kind="national_portal",
        transport="json",
        credentials=Credentials(username=USERNAME, password=PASSWORD),
        profile=profile,
        profile_values=PROFILE_VALUES if values is None else values,
    )


def test_the_client_calls_exactly_as_the_sources_do() -> None:
    settings = resolve(get_profile("dvcqg/opencps"), PROFILE_VALUES)
    with running_portal() as portal:
        client = PortalCatalogueClient(portal.url, username=USERNAME, password=PASSWORD, settings=settings)
        procedures = client.procedures()  # logs in first
        assert [p["MATTHC"] for p in procedures] == ["1.009994", "1.001193", "2.000001"]
        detail = client.procedure("1.009994")
        assert detail is not None and detail["LINHVUCTHUCHIEN"][0]["MALINHVUC"] == "XAY-DUNG"
        assert client.units()[0]["TENDONVI"] == "Sở Xây dựng tỉnh Ninh Thuận"
        assert {f["MALINHVUC"] for f in client.fields()} == {"XAY-DUNG", "HO-TICH"}
        with pytest.raises(CatalogueError, match="refused LayThuTuc: error_code -1"):
            client.procedure("2.000001")
        client.close()
    # One login (int error_code), then the calls (answered result only); dstcode on every one, the login included.
    assert portal.services() == ["login", "LayDanhSachTTHC", "LayThuTuc", "LayDanhMucCoQuan", "LayDanhMucLinhVuc",
                                 "LayThuTuc"]  # fmt: skip
    assert {headers["dstcode"] for _, headers, _ in portal.seen} == {DSTCODE}
    assert [path for path, _, _ in portal.seen][:3] == ["/portal/auth", "/portal/share", "/portal/integration"]


@pytest.mark.parametrize("reply", [{}, {"result": None}, {"error_code": "0"}, {"error_code": "0", "result": None}])
def test_an_answer_without_result_is_an_error_not_an_empty_catalogue(reply: dict[str, Any]) -> None:
    settings = resolve(get_profile("dvcqg/opencps"), PROFILE_VALUES)
    with running_portal(FakePortal(replies={"LayDanhMucCoQuan": reply})) as portal:
        client = PortalCatalogueClient(portal.url, username=USERNAME, password=PASSWORD, settings=settings)
        with pytest.raises((CatalogueError, TransientDeliveryError), match=r"without a result|malformed reply"):
            client.units()
        assert client.fields()  # the others are read: result only, no error_code (OC-DV:712-741)
        client.close()


def test_a_refused_login_says_so() -> None:
    settings = resolve(get_profile("dvcqg/opencps"), PROFILE_VALUES)
    with running_portal(FakePortal(login_code="1")) as portal:
        client = PortalCatalogueClient(portal.url, username=USERNAME, password=PASSWORD, settings=settings)
        with pytest.raises(CatalogueError, match="refused the login: error_code 1"):
            client.procedures()


def test_join_url_as_the_sources_concatenate() -> None:
    assert join_url("http://p/api/", "/auth") == "http://p/api/auth"
    assert join_url("http://p/api", "auth") == "http://p/api/auth"
    assert join_url("http://p/api", "https://q/login") == "https://q/login"


def test_sync_fills_the_store_with_progress(store: Store) -> None:
    seen: list[tuple[int, int, str]] = []
    with running_portal() as portal:
        sync = sync_catalogue(store, {PORTAL: portal_config(portal.url)}, actor="alice",
                              progress=lambda done, total, code: seen.append((done, total, code)))  # fmt: skip
    assert sync.ok and (sync.procedures, sync.units, sync.fields, sync.details_failed) == (3, 1, 2, 1)
    assert seen == [(1, 3, "1.009994"), (2, 3, "1.001193"), (3, 3, "2.000001")]
    built = store.catalogue_procedure("1.009994")
    assert built is not None and (built.name, built.field_code, built.field_name) == (
        "Cấp giấy phép xây dựng", "XAY-DUNG", "Hoạt động xây dựng")  # fmt: skip
    assert built.detail is not None and built.detail["TENTTHC"] == "Cấp giấy phép xây dựng"
    failed = store.catalogue_procedure("2.000001")  # kept with its list name, without details
    assert failed is not None and failed.detail is None and failed.field_code is None

    # The names a portal record takes from it (mappings.catalogue): filled only where the dossier gave none.
    names = catalogue_names(store, "1.009994", MADONVI)
    assert names == CatalogueNames("Cấp giấy phép xây dựng", "XAY-DUNG", "Hoạt động xây dựng",
                                   "Sở Xây dựng tỉnh Ninh Thuận")  # fmt: skip
    record: dict[str, Any] = {"TenTTHC": "Tên do tỉnh gửi", "MaLinhVuc": "", "DonViXuLy": MADONVI}
    fill_portal_record(record, names)
    assert record == {"TenTTHC": "Tên do tỉnh gửi", "MaLinhVuc": "XAY-DUNG", "TenLinhVuc": "Hoạt động xây dựng",
                      "DonViXuLy": MADONVI}  # fmt: skip
    other_field: dict[str, Any] = {"MaLinhVuc": "HO-TICH", "TenLinhVuc": ""}  # the dossier names another field
    assert fill_portal_record(other_field, names) == {"MaLinhVuc": "HO-TICH", "TenLinhVuc": "",
                                                      "TenTTHC": "Cấp giấy phép xây dựng",
                                                      "DonViXuLy": "Sở Xây dựng tỉnh Ninh Thuận"}  # fmt: skip
    assert catalogue_names(store, "9.999", "nowhere") == CatalogueNames()


def test_a_failed_sync_is_recorded_and_keeps_the_catalogue(store: Store) -> None:
    with running_portal() as portal:
        sync_catalogue(store, {PORTAL: portal_config(portal.url)}, actor="alice")
    with running_portal(FakePortal(login_code="1")) as portal, pytest.raises(CatalogueError):
        sync_catalogue(store, {PORTAL: portal_config(portal.url)}, actor="alice")
    status = store.catalogue_status()
    assert status.procedures == 3 and status.last_error is not None and "error_code 1" in status.last_error


def test_connectors_that_cannot_serve_the_catalogue_are_refused_saying_why() -> None:
    proxy = portal_config("http://127.0.0.1:9/p", "dvcqg/proxy", {"insert_url": "/i", "update_url": "/u",
                                                                  "progress_url": "/p"})  # fmt: skip
    with pytest.raises(CatalogueUnavailableError, match=r"dvcqg/proxy\) has no sourced catalogue service"):
        choose_connector({PORTAL: proxy})
    with pytest.raises(CatalogueUnavailableError, match="no national portal connector"):
        choose_connector({})
    two = {PORTAL: portal_config("http://a"), "000.00.00.G23": portal_config("http://b")}
    with pytest.raises(CatalogueUnavailableError, match="name one with --connector"):
        choose_connector(two)
    assert choose_connector(two, "000.00.00.G23")[0] == "000.00.00.G23"


def test_only_one_schedule_syncs_at_a_time(store: Store) -> None:
    stop = threading.Event()
    with running_portal() as portal:
        destinations = {PORTAL: portal_config(portal.url)}
        first = CatalogueSchedule(store, lambda: destinations, 3600.0, stop, actor="worker-1")
        second = CatalogueSchedule(store, lambda: destinations, 3600.0, stop, actor="worker-2")
        held = store.claim_catalogue_sync(PORTAL, actor="worker-3")  # a third worker is syncing
        assert held is not None
        with pytest.raises(CatalogueBusyError):
            sync_catalogue(store, destinations, actor="cli")
        assert first.run_once() is None and second.run_once() is None
        store.finish_catalogue_sync(held.id, error="stopped")  # it failed: due again after the retry wait
        later = store.now() + timedelta(hours=2)
        done = first.run_once(at=later)
        assert done is not None and done.ok and done.actor == "worker-1"
        assert second.run_once() is None  # fresh now: not due
    assert portal.services().count("login") == 1


def test_when_a_scheduled_sync_is_due(store: Store) -> None:
    now = store.now()
    assert due(store.catalogue_status(), 3600, now)  # never tried
    sync = store.claim_catalogue_sync(PORTAL, actor="w")
    assert sync is not None
    assert not due(store.catalogue_status(), 3600, now + timedelta(minutes=5))  # running, within its lease
    assert due(store.catalogue_status(), 3600, now + timedelta(days=9))  # its lease ran out: its worker died
    store.finish_catalogue_sync(sync.id, CatalogueData())
    assert not due(store.catalogue_status(), 3600, now + timedelta(minutes=59))
    assert due(store.catalogue_status(), 3600, now + timedelta(minutes=61))
    failed = store.claim_catalogue_sync(PORTAL, actor="w")
    assert failed is not None
    store.finish_catalogue_sync(failed.id, error="down")
    assert not due(store.catalogue_status(), 86400, now + timedelta(minutes=10))
    assert due(store.catalogue_status(), 86400, now + timedelta(minutes=16))  # a failure is retried sooner


def test_the_worker_schedule_syncs_in_its_own_thread(store: Store) -> None:
    stop = threading.Event()
    with running_portal() as portal:
        routing = SimpleNamespace(destinations={PORTAL: portal_config(portal.url)})
        runtime = SimpleNamespace(store=store, routing=routing)
        thread = start_schedule(24.0, runtime, stop)
        try:
            wait_for(lambda: store.catalogue_status().last_success is not None, timeout_s=10, what="a scheduled sync")
        finally:
            stop.set()
            thread.join(5)
    status = store.catalogue_status()
    assert status.procedures == 3 and status.last_success is not None
    assert status.last_success.actor.startswith("worker@")
    assert not thread.is_alive()


def test_the_portal_simulators_catalogue_syncs_and_names_the_example_dossier(store: Store) -> None:
    from hub import packets
    from hub.devtools.simulators import NationalPortalSimulator

    example = packets.example("dossier.sync")
    with NationalPortalSimulator() as portal:
        values = {
            "dstcode": portal.dstcode,
            "madonvi": MADONVI,
            "auth_endpoint": portal.auth_endpoint,
            "integration_endpoint": portal.integration_endpoint,
            "share_endpoint": portal.share_endpoint,
        }
        config = DestinationConfig(endpoint=portal.adapter_url, kind="national_portal", transport="json",
                                   credentials=Credentials(username="lienthong", password="lienthong-demo"),
                                   profile="dvcqg/opencps", profile_values=values)  # fmt: skip
        sync = sync_catalogue(store, {PORTAL: config}, actor="demo")
        served = portal.catalogue
    assert sync.ok and sync.details_failed == 0
    assert (sync.procedures, sync.units, sync.fields) == (len(served.procedures), len(served.units), len(served.fields))
    names = catalogue_names(store, example.procedure_code, example.receiving_unit)
    assert names.procedure_name == example.procedure_name and names.field_code == example.field_code
    assert names.unit_name is not None and names.field_name == "Hoạt động xây dựng"


def test_a_sync_whose_worker_died_does_not_stop_the_schedule(store: Store) -> None:
    dead = store.claim_catalogue_sync(PORTAL, actor="worker-dead", lease_s=600)
    assert dead is not None
    at = store.now()
    assert not due(store.catalogue_status(), 3600, at + timedelta(minutes=5))  # its lease holds: running
    with store.transaction() as conn:  # the worker died mid-sync: its lease ran out, nobody finished the row
        conn.execute(catalogue_syncs.update().values(lease_until=at - timedelta(minutes=1)))
    assert due(store.catalogue_status(), 3600, at)
    stop = threading.Event()
    with running_portal() as portal:
        schedule = CatalogueSchedule(store, lambda: {PORTAL: portal_config(portal.url)}, 3600.0, stop, actor="w-2")
        done = schedule.run_once()
    assert done is not None and done.ok and done.actor == "w-2"
    assert store.catalogue_status().procedures == 3


def test_a_sync_that_lost_its_lease_neither_replaces_the_catalogue_nor_rewrites_its_row(store: Store) -> None:
    lost = store.claim_catalogue_sync(PORTAL, actor="slow", lease_s=600)
    assert lost is not None
    with store.transaction() as conn:
        conn.execute(catalogue_syncs.update().values(lease_until=store.now() - timedelta(minutes=1)))
    taken = store.claim_catalogue_sync(PORTAL, actor="other")  # closes the slow one as abandoned
    assert taken is not None
    store.finish_catalogue_sync(taken.id, CatalogueData(procedures=[Procedure("1.001", "Mới")]))
    with pytest.raises(CatalogueBusyError, match="lost its lease"):
        store.finish_catalogue_sync(lost.id, CatalogueData(procedures=[Procedure("9.999", "Cũ")]))
    assert store.catalogue_procedure_codes() == {"1.001"}
    assert store.finish_catalogue_sync(lost.id, error="late failure").error == ABANDONED
    status = store.catalogue_status()
    assert status.last_success is not None and status.last_success.id == taken.id


class StubCatalogue:
    """A catalogue client answering given lists (``details``: LayThuTuc per code; a missing one fails)."""

    def __init__(self, procedures: list[dict[str, Any]], details: dict[str, dict[str, Any]]) -> None:
        self.listed, self.details = procedures, details

    def login(self) -> str:
        return "S1"

    def procedures(self) -> list[dict[str, Any]]:
        return self.listed

    def procedure(self, code: str) -> dict[str, Any] | None:
        if code not in self.details:
            raise CatalogueError(f"the national portal refused LayThuTuc: error_code -1 ({code})")
        return self.details[code]

    def units(self) -> list[dict[str, Any]]:
        return []

    def fields(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass


def stub_sync(store: Store, stub: StubCatalogue, **kw: Any) -> Any:
    return sync_catalogue(store, {PORTAL: portal_config("http://127.0.0.1:9/p")}, actor="cli",
                          client_factory=lambda cfg: stub, **kw)  # type: ignore[arg-type,return-value]  # fmt: skip


def listed(n: int) -> list[dict[str, Any]]:
    return [{"MATTHC": f"1.{i:06d}", "TENTTHC": f"Thủ tục {i}"} for i in range(n)]


def full(n: int) -> dict[str, dict[str, Any]]:
    return {f"1.{i:06d}": {"TENTTHC": f"Thủ tục {i}", "LINHVUCTHUCHIEN": [{"MALINHVUC": "HT", "TENLINHVUC": "Hộ tịch"}]}
            for i in range(n)}  # fmt: skip


@pytest.mark.parametrize(("read", "refused"), [(0, True), (4, True), (5, False)])
def test_an_empty_or_halved_list_never_wipes_the_catalogue(store: Store, read: int, refused: bool) -> None:
    assert stub_sync(store, StubCatalogue(listed(10), full(10))).procedures == 10
    if refused:
        with pytest.raises(CatalogueShrinkError, match="--allow-shrink"):
            stub_sync(store, StubCatalogue(listed(read), full(read)))
        status = store.catalogue_status()
        assert status.procedures == 10 and status.last_error is not None and "--allow-shrink" in status.last_error
        assert stub_sync(store, StubCatalogue(listed(read), full(read)), allow_shrink=True).procedures == read
    else:
        assert stub_sync(store, StubCatalogue(listed(read), full(read))).procedures == read
    assert store.catalogue_status().procedures == read


def test_an_empty_list_may_fill_an_empty_catalogue(store: Store) -> None:
    assert stub_sync(store, StubCatalogue([], {})).ok


def test_a_failed_laythutuc_keeps_the_previous_detail(store: Store) -> None:
    stub_sync(store, StubCatalogue(listed(2), full(2)))
    details = full(2)
    del details["1.000001"]  # its LayThuTuc fails this time
    sync = stub_sync(store, StubCatalogue(listed(2), details))
    assert sync.details_failed == 1
    kept = store.catalogue_procedure("1.000001")
    assert kept is not None and kept.detail == full(2)["1.000001"] and (kept.field_code, kept.field_name) == (
        "HT", "Hộ tịch")  # fmt: skip
    new = stub_sync(store, StubCatalogue([*listed(2), {"MATTHC": "2.000000", "TENTTHC": "Mới"}], details))
    assert new.details_failed == 2
    fresh = store.catalogue_procedure("2.000000")  # never read before: its list name only
    assert fresh is not None and (fresh.name, fresh.detail, fresh.field_code) == ("Mới", None, None)
