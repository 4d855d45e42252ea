"""Partner profiles as data (issue 14 point 1): definitions, resolution, the connector spec's profile fields and
what ``hub connector check`` reports about them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import SpecInvalidError
from hub.registry import Registry, loads_spec, parse_spec, run_check
from hub.store import Store
from mappings import profiles

PORTAL = {
    "code": "000.00.00.G01",
    "name": "Cổng DVCQG",
    "kind": "national_portal",
    "receives": ["dossier.sync"],
    "endpoint": {"url": "http://127.0.0.1:9/api", "transport": "json",
                 "credentials": {"username": "u", "password": "p"}},
}  # fmt: skip
OPENCPS_VALUES = {
    "dstcode": "DST-1",
    "madonvi": "000.00.00.H12",
    "auth_endpoint": "/auth",
    "integration_endpoint": "/integration",
    "share_endpoint": "/share",
}


def test_the_shipped_profiles_load_with_their_kinds_and_sources() -> None:
    names = {p.name: p.kind for p in profiles.all_profiles()}
    assert names["dvcqg/opencps"] == names["dvcqg/proxy"] == "national_portal"
    assert names["ministry/xml-steps"] == "ministry"
    assert {p.name for p in profiles.profiles_for("national_portal")} >= {"dvcqg/opencps", "dvcqg/proxy"}
    opencps = profiles.get_profile("dvcqg/opencps")
    assert opencps.ref == "dvcqg/opencps@1" and profiles.get_profile("dvcqg/opencps@1") is opencps
    assert opencps.values["dstcode"].required and opencps.values["dstcode"].source == "OC-DV:1102, 1690, 1863"
    assert opencps.codes["error_code"].values == {"0": "success", "00": "success"}
    # every required value cites its source: a guess is never required
    for profile in profiles.all_profiles():
        for key, value in profile.values.items():
            assert not value.required or value.source, f"{profile.ref} {key}"


@pytest.mark.parametrize("ref", ["dvcqg/nope", "dvcqg/opencps@9", "not a ref", "dvcqg"])
def test_unknown_references_are_refused(ref: str) -> None:
    with pytest.raises(profiles.UnknownProfileError):
        profiles.get_profile(ref)


def test_resolve_fills_defaults_and_refuses_unset_or_unknown_values() -> None:
    opencps = profiles.get_profile("dvcqg/opencps")
    settings = profiles.resolve(opencps, OPENCPS_VALUES)
    assert settings["dstcode"] == "DST-1" and settings["techid_provider"] == "wso2is"
    assert set(settings) == set(opencps.values)
    assert settings.code("error_code", "00") == "success" and settings.code("error_code", "7") is None
    with pytest.raises(profiles.ProfileValueError) as missing:
        profiles.resolve(opencps, {k: v for k, v in OPENCPS_VALUES.items() if k != "dstcode"})
    assert missing.value.keys == ("dstcode",)
    with pytest.raises(profiles.ProfileValueError) as unknown:
        profiles.resolve(opencps, {**OPENCPS_VALUES, "dst_code": "x"})
    assert unknown.value.keys == ("dst_code",)


def test_check_names_unset_unknown_and_unsourced_values() -> None:
    opencps = profiles.get_profile("dvcqg/opencps")
    given = {k: v for k, v in OPENCPS_VALUES.items() if k != "madonvi"} | {"dst_code": "typo"}
    found = {(f.status, f.key, f.rule) for f in profiles.check(opencps, given)}
    assert ("fail", "madonvi", "profile-value-unset") in found
    assert ("fail", "dst_code", "profile-value-unknown") in found
    # no public source gives the portal's transient or session codes: left at the default, they are flagged
    assert ("warn", "transient_codes", "profile-value-unsourced") in found
    assert ("warn", "session_codes", "profile-value-unsourced") in found
    # a sourced default (wso2is, OC-DV:2937-2953) is not
    assert not any(key == "techid_provider" for _, key, _ in found)
    # unit_name has a source, but empty it means DonViXuLy may go out empty (OC-DV:222)
    assert ("warn", "unit_name", "profile-value-empty") in found
    # no source names the portal field of a synced dossier's reason (status 3, 7, 8): the default is a guess
    assert ("warn", "status_reason_field", "profile-value-unsourced") in found
    # nor does any source list the supplement states (TrangThaiBoSung of DanhSachHoSoBoSung, TH-SI:187-203)
    assert ("warn", "supplement_received_state", "profile-value-unsourced") in found
    complete = {**OPENCPS_VALUES, "transient_codes": "", "session_codes": "", "unit_name": "Sở Xây dựng",
                "supplement_requested_state": "1", "supplement_received_state": "2",
                "status_reason_field": "GhiChu"}  # fmt: skip
    assert profiles.check(opencps, complete) == []
    assert profiles.check(profiles.get_profile("ministry/xml-steps"), {}) == []


@pytest.mark.parametrize("name", ["dvcqg/opencps", "dvcqg/proxy"])
def test_check_refuses_an_agency_code_as_the_unit_name(name: str) -> None:
    profile = profiles.get_profile(name)
    found = [(f.status, f.rule, f.message) for f in profiles.check(profile, {"unit_name": "000.00.00.H12"})
             if f.key == "unit_name"]  # fmt: skip
    assert found == [("fail", "profile-value-refused",
                      "unit_name: '000.00.00.H12' is not accepted: an agency code; DonViXuLy is the processing "
                      "unit's NAME (OC-DV:222; TH-SS:124)")]  # fmt: skip
    (empty,) = [f for f in profiles.check(profile, {}) if f.key == "unit_name"]
    assert (empty.status, empty.rule) == ("warn", "profile-value-empty") and "DonViXuLy is sent empty" in empty.message
    assert not [f for f in profiles.check(profile, {"unit_name": "Sở Tư pháp 000.00.00.H12"}) if f.key == "unit_name"]


@pytest.mark.parametrize("name", ["dvcqg/opencps", "dvcqg/proxy"])
def test_the_reason_field_must_be_a_free_text_field_of_the_record(name: str) -> None:
    profile = profiles.get_profile(name)

    def refused(value: str) -> bool:
        return any(f.key == "status_reason_field" and f.rule == "profile-value-refused"
                   for f in profiles.check(profile, {"status_reason_field": value}))  # fmt: skip

    assert [refused(v) for v in ("GhiChu", "ThongTinKhac", "TrichYeuHoSo", "ThongTinTra", "")] == [False] * 5
    assert [refused(v) for v in ("TrangThaiHoSo", "GhiChuX", "MaHoSo", "ghichu")] == [True] * 4


def test_the_spec_takes_a_profile_of_its_kind_with_known_values() -> None:
    spec = parse_spec({**PORTAL, "profile": "dvcqg/opencps", "profile_values": OPENCPS_VALUES})
    assert spec.profile == "dvcqg/opencps" and spec.profile_values["madonvi"] == OPENCPS_VALUES["madonvi"]
    settings = spec.profile_settings()
    assert settings is not None and settings.profile.ref == "dvcqg/opencps@1"
    assert parse_spec(PORTAL).profile_settings() is None  # no profile: the kind's own format, as before

    with pytest.raises(SpecInvalidError) as wrong:
        parse_spec({**PORTAL, "profile": "ministry/xml-steps"})
    assert [(i.path, i.rule) for i in wrong.value.issues] == [("profile", "profile-kind")]
    with pytest.raises(SpecInvalidError) as unknown:
        parse_spec({**PORTAL, "profile": "dvcqg/elsewhere"})
    assert [(i.path, i.rule) for i in unknown.value.issues] == [("profile", "profile")]
    with pytest.raises(SpecInvalidError) as key:
        parse_spec({**PORTAL, "profile": "dvcqg/proxy", "profile_values": {"insert_url": "/a", "isnert_url": "/b"}})
    assert [(i.path, i.rule) for i in key.value.issues] == [("profile_values[isnert_url]", "profile-value-unknown")]
    with pytest.raises(SpecInvalidError) as orphan:
        parse_spec({**PORTAL, "profile_values": {"dstcode": "x"}})
    assert [(i.path, i.rule) for i in orphan.value.issues] == [("profile_values", "profile-values")]


def test_a_stored_spec_keeps_its_profile(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    try:
        registry = Registry(store, hub_code="000.00.00.H00")
        given = {k: v for k, v in OPENCPS_VALUES.items() if k != "share_endpoint"}
        registry.add(parse_spec({**PORTAL, "profile": "dvcqg/opencps@1", "profile_values": given}), actor="t")
        connector = registry.require(PORTAL["code"])
        assert connector.spec.profile == "dvcqg/opencps@1" and connector.spec.profile_values == given
        destination = connector.destination()
        assert destination is not None and destination.profile == "dvcqg/opencps@1"
        assert destination.profile_values == given
        report = run_check(registry, PORTAL["code"], probe=False)
        profile_items = [(i.status, i.message) for i in report.items if i.area == "profile"]
        assert any(s == "fail" and m.startswith("dvcqg/opencps@1: share_endpoint: required") for s, m in profile_items)
        assert any(s == "warn" and "transient_codes" in m for s, m in profile_items)
        assert ("ok", "dvcqg/opencps@1: the dossier.sync sample maps to a valid DongBoHoSoMC record") in profile_items
        assert not report.ok
        registry.add(parse_spec(PORTAL), actor="t")  # no profile: the hub's own format, flagged
        report = run_check(registry, PORTAL["code"], probe=False)
        (item,) = [i for i in report.items if i.area == "profile"]
        assert item.status == "warn" and "dvcqg/opencps" in item.message and "dvcqg/proxy" in item.message
    finally:
        store.close()


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("dstcode: 0123", "dstcode"),  # YAML 1.1: the octal 83
        ("status_map: 5:9", "status_map"),  # YAML 1.1: the base-60 309
        ("transient_codes: 12", "transient_codes"),
        ("session_codes: yes", "session_codes"),  # a boolean
        ("session_codes:", "session_codes"),  # null
    ],
)
def test_an_unquoted_profile_value_yaml_would_change_is_refused_asking_for_quotes(line: str, key: str) -> None:
    values = "\n".join(f'  {k}: "{v}"' for k, v in OPENCPS_VALUES.items() if k != key)
    head = f"code: {PORTAL['code']}\nname: p\nkind: national_portal\nprofile: dvcqg/opencps\nprofile_values:\n"
    text = f"{head}{values}\n  {line}\n"
    with pytest.raises(SpecInvalidError) as refused:
        loads_spec(text)
    ((path, rule, message),) = [(i.path, i.rule, i.message) for i in refused.value.issues]
    assert (path, rule) == (f"profile_values[{key}]", "profile-value-type") and "quote" in message


def test_a_quoted_profile_value_is_kept_as_written() -> None:
    values = {**OPENCPS_VALUES, "dstcode": "0123", "status_map": "5:9"}
    lines = "\n".join(f'  {k}: "{v}"' for k, v in values.items())
    spec = loads_spec(f"code: {PORTAL['code']}\nname: p\nkind: national_portal\nprofile: dvcqg/opencps\n"
                      f"profile_values:\n{lines}\n")  # fmt: skip
    assert (spec.profile_values["dstcode"], spec.profile_values["status_map"]) == ("0123", "5:9")
