"""The population database's profiles as data (``mappings/profiles/c06/``): ``c06/lgsp`` and ``c06/direct``, their
sourced values and defaults ("037", FE:378), what ``hub connector check`` says about a population DB connector, and
the policy field that minimises its records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.errors import SpecInvalidError
from hub.registry import Registry, parse_spec, run_check
from hub.store import Store
from mappings import profiles

LGSP_VALUES = {"token_path": "/getToken", "lookup_path": "/dancu/TraCuuThongTinCongDan", "app_name": "LIENTHONG",
               "partner_code": "000.00.00.H12"}  # fmt: skip
POPULATION = {
    "code": "000.00.00.G06",
    "name": "CSDL quốc gia về dân cư",
    "kind": "population_db",
    "receives": ["citizen.lookup"],
    "endpoint": {"url": "http://127.0.0.1:9/lgsp", "transport": "soap",
                 "credentials": {"username": "AK", "password": "SK"}},
}  # fmt: skip


def test_the_c06_profiles_load_with_their_sources() -> None:
    assert {p.name for p in profiles.profiles_for("population_db")} == {"c06/lgsp", "c06/direct"}
    lgsp = profiles.get_profile("c06/lgsp")
    assert lgsp.values["integration_code"].default == "037" and lgsp.values["integration_code"].source
    for key in ("token_path", "lookup_path", "app_name", "partner_code"):
        assert lgsp.values[key].required and lgsp.values[key].source, key
    assert lgsp.values["token_ttl_s"].source is None  # no source reads an expiry: a guess, flagged
    direct = profiles.get_profile("c06/direct")
    assert set(direct.values) < set(lgsp.values)  # the request's constants are shared, transport ones LGSP only


def test_check_flags_unset_and_unsourced_lgsp_values() -> None:
    lgsp = profiles.get_profile("c06/lgsp")
    found = {(f.status, f.key, f.rule) for f in profiles.check(lgsp, {"token_path": "/t"})}
    assert ("fail", "lookup_path", "profile-value-unset") in found
    assert ("fail", "app_name", "profile-value-unset") in found
    assert ("warn", "token_ttl_s", "profile-value-unsourced") in found
    assert ("warn", "partner_code_cus", "profile-value-empty") in found
    assert not any(key == "integration_code" for _, key, _ in found)  # "037" is sourced
    assert profiles.check(lgsp, {**LGSP_VALUES, "token_ttl_s": "300", "partner_code_cus": "CUS-1"}) == []


def test_the_policy_names_only_known_extra_fields() -> None:
    spec = parse_spec({**POPULATION, "policy": {"extra_citizen_fields": ["father", "mother"]}})
    assert spec.policy.extra_citizen_fields == ("father", "mother")
    assert parse_spec(POPULATION).policy.extra_citizen_fields == ()
    with pytest.raises(SpecInvalidError):
        parse_spec({**POPULATION, "policy": {"extra_citizen_fields": ["blood_group"]}})


@pytest.fixture
def registry(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    try:
        yield Registry(store, hub_code="000.00.00.H00")
    finally:
        store.close()


def _profile_items(registry: Registry) -> list[tuple[str, str]]:
    report = run_check(registry, POPULATION["code"], probe=False)
    return [(i.status, i.message) for i in report.items if i.area == "profile"]


def test_connector_check_builds_the_population_db_adapter(registry: Registry, tmp_path: Path) -> None:
    registry.add(parse_spec({**POPULATION, "profile": "c06/lgsp", "profile_values": LGSP_VALUES}), actor="t")
    items = _profile_items(registry)
    assert ("ok", "the citizen.lookup sample maps to TraCuuThongTinCongDan (MaTichHop 037, HoVaTen "
                  "'NGUYEN VAN AN')") in items  # fmt: skip
    assert any(s == "warn" and "token_ttl_s" in m for s, m in items)

    no_credentials = {**POPULATION, "endpoint": {"url": "http://127.0.0.1:9/lgsp", "transport": "soap"}}
    registry.add(parse_spec({**no_credentials, "profile": "c06/lgsp", "profile_values": LGSP_VALUES}), actor="t")
    assert any(s == "fail" and "AccessKey" in m for s, m in _profile_items(registry))

    missing = tmp_path / "nobody.json"
    values = {**LGSP_VALUES, "officers_file": str(missing)}
    registry.add(parse_spec({**POPULATION, "profile": "c06/lgsp", "profile_values": values}), actor="t")
    assert any(s == "fail" and "officers_file" in m for s, m in _profile_items(registry))
    missing.write_text(json.dumps({"CB-9": {"MaCanBo": "canbo.9", "keyName": "k", "keyPass": "p"}}))
    assert any(s == "ok" and "TraCuuThongTinCongDan" in m for s, m in _profile_items(registry))

    values = {**LGSP_VALUES, "service_codes": "1.000001:2.000001"}
    registry.add(parse_spec({**POPULATION, "profile": "c06/lgsp", "profile_values": values}), actor="t")
    assert any(s == "warn" and "no MaDVC" in m for s, m in _profile_items(registry))

    registry.add(parse_spec(POPULATION), actor="t")  # no profile: the direct route with the sourced defaults, flagged
    items = _profile_items(registry)
    assert any(s == "warn" and "c06/lgsp" in m for s, m in items)
    assert any(s == "ok" and "MaTichHop 037" in m for s, m in items)
