"""Intake and the procedure catalogue (issue 14 point 3): a dossier.sync naming a procedure a non-empty catalogue
does not list is accepted with a warning naming the code (in the answer and on the message's events); an empty
catalogue warns about nothing; the operator page shows the catalogue's age."""

from __future__ import annotations

from datetime import timedelta

from hub import packets
from hub.console import views
from hub.console.i18n import Translator
from hub.store import Store
from hub.store.catalogue import CatalogueData, Procedure
from tests.unit.test_api import HUB, PORTAL, PROVINCE, Api, register_other
from tests.unit.test_api import api as api  # the fixture, shared with the API's other tests
from tests.unit.test_console_auth import _sign_in
from tests.unit.test_console_auth import client as client  # the fixture, shared with the page's other tests

KNOWN = "1.001193"
EXAMPLE_PROCEDURE = packets.example("dossier.sync").procedure_code  # 1.009994


def fill(store: Store, *codes: str) -> None:
    sync = store.claim_catalogue_sync(PORTAL, actor="test")
    assert sync is not None
    store.finish_catalogue_sync(sync.id, CatalogueData(procedures=[Procedure(c, f"Thủ tục {c}") for c in codes]))


def post_sync(api: Api, pki) -> dict:
    register_other(api, pki, PORTAL, kind="national_portal", sends=[], receives=["dossier.sync"],
                   endpoint={"url": "http://127.0.0.1:9/api"})  # fmt: skip
    sync = api.envelope(signer=api.province, sender=PROVINCE, receiver=HUB, message_type="dossier.sync")
    response = api.post(sync, "province")
    assert response.status_code == 202, response.text
    return response.json()


def test_an_unknown_procedure_is_accepted_with_a_warning_naming_it(api: Api, pki) -> None:
    fill(api.hub.store, KNOWN)
    answer = post_sync(api, pki)
    assert answer["destinations"] == [PORTAL]  # accepted and routed all the same
    (warning,) = answer["warnings"]
    assert warning["rule"] == "procedure-unknown" and warning["path"] == "/envelope/body/procedureCode"
    assert EXAMPLE_PROCEDURE in warning["message"]
    trace = api.hub.store.trace(answer["message_id"])
    assert trace is not None
    (event,) = [e for e in trace.events if e.state == "warning"]
    assert EXAMPLE_PROCEDURE in event.detail and "[procedure-unknown]" in event.detail
    assert Translator("vi").detail(event.detail).startswith(f"thủ tục {EXAMPLE_PROCEDURE} không có trong danh mục")
    assert Translator("vi").state("warning") == "cảnh báo"


def test_a_known_procedure_and_an_empty_catalogue_get_no_warning(api: Api, pki) -> None:
    answer = post_sync(api, pki)  # never synced: nothing to warn against
    assert answer["warnings"] == []
    trace = api.hub.store.trace(answer["message_id"])
    assert trace is not None and not [e for e in trace.events if e.state == "warning"]


def test_the_panels_show_the_catalogue_age(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    try:
        now = store.now()
        never = views.deadlines(store, [], now).catalogue
        assert never is not None and never.never and never.stale
        fill(store, KNOWN, EXAMPLE_PROCEDURE)
        fresh = views.deadlines(store, [], now + timedelta(days=1)).catalogue
        assert fresh is not None and (fresh.procedures, fresh.never, fresh.stale) == (2, False, False)
        old = views.deadlines(store, [], now + timedelta(days=8)).catalogue
        assert old is not None and old.stale and old.max_age_days == "7"
    finally:
        store.close()


def test_the_rendered_panels_warn_about_an_old_or_failing_catalogue(client, monkeypatch) -> None:
    _sign_in(client)
    never = client.get("/console/panels").text
    assert 'data-catalogue="never"' in never and "Chưa đồng bộ lần nào" in never
    store = client.app.state.hub.store
    fill(store, KNOWN)
    failed = store.claim_catalogue_sync(PORTAL, actor="test")
    assert failed is not None
    store.finish_catalogue_sync(failed.id, error="the national portal refused the login: error_code 1")
    fresh = client.get("/console/panels").text
    assert 'data-catalogue="fresh"' in fresh and "1 thủ tục, 0 cơ quan, 0 lĩnh vực" in fresh
    assert "Lần đồng bộ gần nhất lỗi: the national portal refused the login" in fresh
    english = client.get("/console/panels?lang=en").text
    assert "1 procedures, 0 units, 0 fields; last synced" in english
    monkeypatch.setattr(client.app.state.hub.settings, "catalogue_max_age_days", 1e-9)
    stale = client.get("/console/panels?lang=vi").text
    assert 'data-catalogue="stale"' in stale and "Danh mục cũ hơn" in stale
