"""``hub catalogue sync|show`` and ``hub validate``'s warning, as an operator runs them, against the strict fake
portal (``tests/catalogue_portal.py``) registered as a ``dvcqg/opencps`` connector; and against the national portal
simulator, followed by the intake's warning about a procedure the synced catalogue does not list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hub import packets
from hub.cli import app
from tests.catalogue_portal import PASSWORD, PROFILE_VALUES, USERNAME, FakePortal, running_portal
from tests.unit.test_api import api as api  # the fixture: the API on a SQLite store in tmp_path

runner = CliRunner()
PORTAL = "000.00.00.G22"


@pytest.fixture
def portal() -> FakePortal:
    with running_portal() as fake:
        yield fake


@pytest.fixture
def hub(tmp_path: Path, portal: FakePortal):
    """``hub CMD`` on a store where the fake portal is the registered national portal connector."""
    from hub.config import get_settings

    env = {"LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path}/hub.db", "LIENTHONG_DATA_DIR": str(tmp_path),
           "COLUMNS": "200"}  # fmt: skip

    def run(*args: str | Path):
        get_settings.cache_clear()
        try:
            return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    spec = tmp_path / "portal.yaml"
    spec.write_text(yaml.safe_dump({
        "code": PORTAL, "name": "Cổng DVCQG", "kind": "national_portal", "receives": ["dossier.sync"],
        "endpoint": {"url": portal.url, "transport": "json",
                     "credentials": {"username": USERNAME, "password": PASSWORD}},
        "profile": "dvcqg/opencps@1", "profile_values": PROFILE_VALUES,
    }, allow_unicode=True), encoding="utf-8")  # fmt: skip
    added = run("connector", "add", spec, "--actor", "alice")
    assert added.exit_code == 0, added.output
    return run


def test_sync_fills_the_catalogue_and_show_tells_its_age(hub, portal: FakePortal, tmp_path: Path) -> None:
    before = json.loads(hub("catalogue", "show", "--json").stdout)
    assert (before["procedures"], before["synced_at"], before["stale"]) == (0, None, True)
    assert "never synced" in hub("catalogue", "show").stdout

    synced = hub("catalogue", "sync", "--actor", "alice")
    assert synced.exit_code == 0, synced.output
    assert "catalogue synced from 000.00.00.G22: 3 procedures (1 without LayThuTuc details), 1 units, 2 fields" in (
        synced.stdout
    )
    assert "LayThuTuc 1 of 3 procedures (1.009994)" in synced.stderr
    assert "LayThuTuc 3 of 3 procedures" in synced.stderr

    shown = json.loads(hub("catalogue", "show", "--json").stdout)
    assert (shown["procedures"], shown["units"], shown["fields"], shown["stale"]) == (3, 1, 2, False)
    assert shown["last_success"]["actor"] == "alice" and shown["last_error"] is None
    assert shown["synced_at"].endswith("+07:00")  # the calendar's zone, labelled
    assert "last synced" in hub("catalogue", "show").stdout

    # hub validate warns (exit 0) about a procedure the catalogue does not list, and only then.
    example = packets.to_xml(packets.example("dossier.sync"))
    known = tmp_path / "known.xml"
    known.write_bytes(example)
    quiet = hub("validate", "--type", "dossier.sync", known)
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    unknown = tmp_path / "unknown.xml"
    unknown.write_bytes(example.replace(b">1.009994<", b">9.999999<"))
    warned = hub("validate", "--type", "dossier.sync", unknown)
    assert warned.exit_code == 0, warned.output
    assert "valid dossier.sync" in warned.stdout
    assert "warning: procedure 9.999999 is not in the national portal's procedure catalogue" in warned.stderr
    assert "[rule: procedure-unknown]" in warned.stderr


def test_a_refused_sync_exits_1_and_show_reports_the_error(hub, portal: FakePortal) -> None:
    portal.login_code = "1"
    failed = hub("catalogue", "sync")
    assert failed.exit_code == 1
    assert "catalogue sync failed (recorded; the catalogue kept is unchanged)" in failed.stderr
    assert "error_code 1" in failed.stderr
    shown = json.loads(hub("catalogue", "show", "--json").stdout)
    assert shown["procedures"] == 0 and "error_code 1" in shown["last_error"]
    assert hub("catalogue", "sync", "--connector", "000.00.00.X99").exit_code == 2


def test_sync_from_the_portal_simulator_then_intake_warns_naming_an_unknown_procedure(api, tmp_path: Path) -> None:
    """Acceptance of issue 14: ``hub catalogue sync`` against the running portal simulator fills the catalogue;
    then a dossier.sync naming a procedure it does not list is accepted with a warning naming the code."""
    from hub.config import get_settings
    from hub.devtools.simulators import NationalPortalSimulator
    from tests.unit.test_api import HUB, PROVINCE, register

    unknown = "9.999999"
    with NationalPortalSimulator() as sim:
        register(api.hub, code=PORTAL, name="Cổng DVCQG (simulator)", kind="national_portal",
                 receives=["dossier.sync"],
                 endpoint={"url": sim.adapter_url, "transport": "json",
                           "credentials": {"username": "lienthong", "password": "lienthong-demo"}},
                 profile="dvcqg/opencps@1",
                 profile_values={"dstcode": sim.dstcode, "madonvi": PROVINCE, "auth_endpoint": sim.auth_endpoint,
                                 "integration_endpoint": sim.integration_endpoint,
                                 "share_endpoint": sim.share_endpoint})  # fmt: skip
        env = {"LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}", "LIENTHONG_DATA_DIR": str(tmp_path),
               "COLUMNS": "200"}  # fmt: skip
        get_settings.cache_clear()
        try:
            synced = runner.invoke(app, ["catalogue", "sync", "--actor", "alice"], env=env, catch_exceptions=False)
            shown = runner.invoke(app, ["catalogue", "show", "--json"], env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        served = sim.catalogue
        assert [c["service"] for c in sim.received()["calls"]].count("LayThuTuc") == len(served.procedures)
    assert synced.exit_code == 0, synced.output
    counts = json.loads(shown.stdout)
    assert (counts["procedures"], counts["units"], counts["fields"]) == (
        len(served.procedures), len(served.units), len(served.fields))  # fmt: skip
    assert min(counts["procedures"], counts["units"], counts["fields"]) > 0
    assert unknown not in {p["MATTHC"] for p in served.procedures}

    def post(procedure_code: str) -> dict:
        model = packets.example("dossier.sync").model_copy(update={"procedure_code": procedure_code})
        envelope = api.envelope(signer=api.province, sender=PROVINCE, receiver=HUB, message_type="dossier.sync",
                                payload=packets.to_element(model))  # fmt: skip
        answer = api.post(envelope, "province")
        assert answer.status_code == 202, answer.text
        return answer.json()

    assert post(packets.example("dossier.sync").procedure_code)["warnings"] == []  # a procedure it lists
    warned = post(unknown)
    assert warned["destinations"] == [PORTAL]  # accepted and routed all the same
    (warning,) = warned["warnings"]
    assert warning["rule"] == "procedure-unknown" and unknown in warning["message"]


def test_an_empty_list_keeps_the_catalogue_unless_allowed(hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import catalogue_portal

    assert hub("catalogue", "sync").exit_code == 0
    monkeypatch.setitem(catalogue_portal.LISTS, "LayDanhSachTTHC", [])  # the portal answers result: []
    refused = hub("catalogue", "sync")
    assert refused.exit_code == 1 and "listed no procedure" in refused.output and "--allow-shrink" in refused.output
    shown = json.loads(hub("catalogue", "show", "--json").stdout)
    assert shown["procedures"] == 3 and "listed no procedure" in shown["last_error"]
    allowed = hub("catalogue", "sync", "--allow-shrink")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(hub("catalogue", "show", "--json").stdout)["procedures"] == 0
