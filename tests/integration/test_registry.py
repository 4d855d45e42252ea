"""The connector registry: declarations, storage, keys, certificates, routing, authorization, audit and CLI."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from lxml import etree
from typer.testing import CliRunner

from hub import packets
from hub.cli import app
from hub.config import Settings, get_settings
from hub.errors import CertificateError, SignatureRejectedError, SpecInvalidError, UnknownConnectorError
from hub.registry import ConnectorSpec, Registry, load_spec, loads_spec, parse_spec, run_check
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, Signer, sign_payload
from hub.store import Store
from tests.support import free_port, signed_envelope

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "connectors"
PROVINCE, MINISTRY, HUB = "000.00.00.H12", "000.00.00.G22", "000.00.00.H00"


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def registry(store: Store) -> Registry:
    return Registry(store, hub_code=HUB)


def spec_data(file: str, **changes: object) -> dict:
    data = yaml.safe_load((DEPLOY / file).read_text(encoding="utf-8"))
    data.update(changes)
    return data


def spec(file: str, **changes: object) -> ConnectorSpec:
    return parse_spec(spec_data(file, **changes), base_dir=DEPLOY)


def pem(party) -> str:
    return party.cert_path.read_text()


def signed(party, *, sender: str = MINISTRY, receiver: str = HUB, message_type: str = "dossier.status") -> bytes:
    return signed_envelope(party.signer, sender=sender, receiver=receiver, message_type=message_type)


def header(sender: str = MINISTRY, receiver: str = HUB, message_type: str = "dossier.status") -> EnvelopeHeader:
    return EnvelopeHeader(sender=sender, receiver=receiver, message_type=message_type)


# ------------------------------------------------------------------ declarations


def test_deploy_examples_load() -> None:
    ministry = load_spec(DEPLOY / "land-registration.yaml")
    assert (ministry.code, ministry.kind, ministry.sends, ministry.receives) == (
        MINISTRY,
        "ministry",
        ("dossier.status",),
        ("dossier.sync",),
    )
    assert ministry.profile_for("dossier.status") == "canonical"
    assert Path(ministry.examples["dossier.status"][0]).is_file()
    province = load_spec(DEPLOY / "province.yaml")
    assert province.kind == "provincial" and "dossier.status" in province.receives
    portal = load_spec(DEPLOY / "national-portal.yaml")
    settings = portal.profile_settings()
    assert portal.profile == "dvcqg/opencps@1" and settings is not None and settings["madonvi"] == "000.00.00.H12"


def test_a_file_with_many_errors_reports_every_one_with_its_line(tmp_path: Path, weak_keys) -> None:
    shutil.copy(weak_keys["rsa1024"].cert_path, tmp_path / "weak.pem")
    file = tmp_path / "bad.yaml"
    file.write_text(
        "code: 000.00.00.g22\n"  # 1 lower-case letter
        "name: Land\n"
        "kind: ministery\n"  # 3
        "sends: [dossier.status, dossier.bogus]\n"  # 4
        "receives: [dossier.sync]\n"
        "endpoint: {url: 'ftp://x', transport: http}\n"  # 6
        "mapping: {payment.request: canonical}\n"  # 7 neither sent nor received
        "certificates:\n"
        "  - missing.pem\n"  # 9
        "  - weak.pem\n"  # 10
        "retry: {delays_s: [1, -2]}\n"  # 11
        "concurrency: 0\n"  # 12
        "colour: blue\n"  # 13
        "name: Again\n",  # 14 duplicate key
        encoding="utf-8",
    )
    with pytest.raises(SpecInvalidError) as exc:
        load_spec(file)
    found = {(i.path, i.rule, i.line) for i in exc.value.issues}
    assert found == {
        ("code", "agency-code", 1),
        ("kind", "literal-error", 3),
        ("sends[1]", "message-type", 4),
        ("endpoint.url", "endpoint-url", 6),
        ("mapping[payment.request]", "mapping-type", 7),
        ("certificates[0]", "certificate-file", 9),
        ("certificates[1]", "key-policy", 10),
        ("retry.delays_s[1]", "greater-than-equal", 11),
        ("concurrency", "greater-than-equal", 12),
        ("colour", "extra-forbidden", 13),
        ("name", "duplicate-key", 14),
    }


def test_the_freshness_window_is_declared_per_connector() -> None:
    assert spec("land-registration.yaml").freshness.model_dump() == {"max_age_s": 604800, "max_ahead_s": 300}
    declared = spec("land-registration.yaml", freshness={"max_age_s": 3600, "max_ahead_s": 60})
    stored = ConnectorSpec.from_stored(declared.stored(), (), True)
    assert (stored.freshness.max_age_s, stored.freshness.max_ahead_s) == (3600, 60)
    with pytest.raises(SpecInvalidError) as exc:
        spec("land-registration.yaml", freshness={"max_age_s": 0, "max_ahead_s": -1, "max_skew": 1})
    assert {i.path for i in exc.value.issues} == {
        "freshness.max_age_s", "freshness.max_ahead_s", "freshness.max_skew"
    }  # fmt: skip


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(SpecInvalidError) as exc:
        loads_spec("code: 000.00.00.G22\nsends: [dossier.status\nname: x\n")
    assert exc.value.issues[0].rule == "yaml" and exc.value.issues[0].line is not None


def test_code_pattern_overrides_the_default() -> None:
    data = spec_data("land-registration.yaml", code="BTNMT-DKDD", code_pattern=r"BTNMT-[A-Z]{4}")
    assert parse_spec(data, base_dir=DEPLOY).code == "BTNMT-DKDD"
    with pytest.raises(SpecInvalidError) as exc:
        parse_spec({**data, "code_pattern": "[unclosed"}, base_dir=DEPLOY)
    assert [i.rule for i in exc.value.issues] == ["code-pattern"]


def test_inline_pem_and_no_file_paths_without_a_base_dir(pki) -> None:
    data = spec_data("land-registration.yaml", certificates=[pem(pki.ministry)], examples={})
    assert len(parse_spec(data).certificates) == 1
    with pytest.raises(SpecInvalidError) as exc:
        parse_spec({**data, "certificates": [str(pki.ministry.cert_path)]})
    assert exc.value.issues[0].rule == "certificate-path"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """A billion-laughs document (about 1 KB, 9^9 strings once expanded) is refused before any expansion."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    file = tmp_path / "bomb.yaml"
    file.write_text("\n".join(lines) + "\ncode: 000.00.00.G22\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(SpecInvalidError) as exc:
        load_spec(file)
    assert time.monotonic() - started < 1
    assert [(i.rule, i.line) for i in exc.value.issues] == [("yaml-alias", 2)]


def test_oversized_or_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * 300_000 + "\n", encoding="utf-8")
    with pytest.raises(SpecInvalidError) as exc:
        load_spec(big)
    assert [i.rule for i in exc.value.issues] == ["yaml-size"]
    with pytest.raises(SpecInvalidError) as exc:
        loads_spec("name: " + "[" * 5000 + "]" * 5000 + "\n")
    assert [i.rule for i in exc.value.issues] == ["yaml-depth"]


def test_code_pattern_is_matched_in_linear_time_and_re2_only() -> None:
    """A pattern that backtracks catastrophically in Python's re (minutes on this input) is matched by RE2 at
    once; a pattern RE2 cannot compile (a backreference) is refused with the code-pattern rule."""
    data = spec_data("land-registration.yaml", code="a" * 60 + "!", code_pattern=r"(a|a)+")
    started = time.monotonic()
    with pytest.raises(SpecInvalidError) as exc:
        parse_spec(data, base_dir=DEPLOY)
    assert time.monotonic() - started < 1
    assert [(i.path, i.rule) for i in exc.value.issues] == [("code", "agency-code")]
    with pytest.raises(SpecInvalidError) as exc:
        parse_spec({**data, "code": "AA", "code_pattern": r"(A)\1"}, base_dir=DEPLOY)
    assert [(i.path, i.rule) for i in exc.value.issues] == [("code_pattern", "code-pattern")]


def test_endpoint_url_check_is_not_quadratic() -> None:
    data = spec_data("land-registration.yaml", endpoint={"url": "http://" + "a" * 200_000 + " "})
    started = time.monotonic()
    with pytest.raises(SpecInvalidError) as exc:
        parse_spec(data, base_dir=DEPLOY)
    assert time.monotonic() - started < 1
    assert [i.rule for i in exc.value.issues] == ["endpoint-url"]


def test_example_and_certificate_paths_stay_inside_the_connector_folder(tmp_path: Path, pki) -> None:
    folder = tmp_path / "connectors"
    (folder / "examples").mkdir(parents=True)
    shutil.copy(DEPLOY / "examples" / "land-status.xml", folder / "examples" / "land-status.xml")
    (tmp_path / "outside.xml").write_bytes(b"<x/>")
    (folder / "examples" / "link.xml").symlink_to(tmp_path / "outside.xml")
    data = spec_data("land-registration.yaml", certificates=[pem(pki.ministry)])
    assert parse_spec(data, base_dir=folder).examples["dossier.status"] == (
        str((folder / "examples" / "land-status.xml").resolve()),
    )
    outside = ["../outside.xml", str(tmp_path / "outside.xml"), "examples/link.xml", "/etc/passwd"]
    with pytest.raises(SpecInvalidError) as exc:
        parse_spec({**data, "examples": {"dossier.status": outside}, "certificates": ["../x.pem"]}, base_dir=folder)
    assert {(i.path, i.rule) for i in exc.value.issues} == {
        *((f"examples[dossier.status][{n}]", "example-path") for n in range(4)),
        ("certificates[0]", "certificate-path"),
    }


def test_a_spec_without_a_folder_may_name_no_file_and_cannot_probe_one(pki) -> None:
    """Posted over HTTP (no base_dir): an existing and a missing absolute path get the same answer."""
    data = spec_data("land-registration.yaml", certificates=[pem(pki.ministry)])
    answers = []
    for path in ("/etc/passwd", "/nonexistent/secret.xml"):
        with pytest.raises(SpecInvalidError) as exc:
            parse_spec({**data, "examples": {"dossier.status": [path]}})
        answers.append([(i.path, i.rule, i.message) for i in exc.value.issues])
    refused = "example file paths are only allowed in a connector file; give the content inline"
    assert answers[0] == answers[1] == [("examples[dossier.status][0]", "example-path", refused)]


# ------------------------------------------------------------------ keys


def test_add_shows_the_key_once_and_stores_only_its_hash(registry: Registry, store: Store) -> None:
    connector, key = registry.add(spec("land-registration.yaml"), actor="alice")
    assert key is not None and key.startswith("lt_")
    assert connector.code == MINISTRY and connector.enabled
    assert key.startswith(connector.api_key_prefix + "_")
    again, no_key = registry.add(spec("land-registration.yaml", timeout_s=30), actor="alice")
    assert no_key is None and again.spec.timeout_s == 30  # an update keeps the key
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT api_key_hash FROM connectors")).one()
        dump = " ".join(
            str(value)
            for table in ("connectors", "connector_certificates", "registry_audit")
            for r in conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            for value in r
        )
    assert row.api_key_hash.startswith("sha256$")
    assert key not in dump and key.split("_", 2)[2] not in dump
    audit_text = str([(e.before, e.after) for e in registry.audit()])
    assert row.api_key_hash not in audit_text and key not in audit_text
    assert registry.authenticate(key).code == MINISTRY


def test_the_hubs_code_and_colliding_codes_are_refused(registry: Registry, store: Store) -> None:
    def refused(**changes: object) -> list[tuple[str, str]]:
        with pytest.raises(SpecInvalidError) as exc:
            registry.add(spec("land-registration.yaml", **changes), actor="alice")
        return [(i.path, i.rule) for i in exc.value.issues]

    assert refused(code=HUB) == [("code", "code-is-hub")]
    registry.add(spec("land-registration.yaml", code="000.00.00.g22", code_pattern=r"[0-9.]+[A-Za-z][0-9]+"),
                 actor="alice")  # fmt: skip
    assert refused() == [("code", "code-collides")]  # 000.00.00.G22 against 000.00.00.g22
    hub_lower = refused(code=HUB.lower(), code_pattern=r"[0-9.]+[A-Za-z][0-9]+")
    assert hub_lower == [("code", "code-is-hub")]
    assert [c.code for c in registry.list()] == ["000.00.00.g22"]
    assert [e.action for e in registry.audit()] == ["create"]  # nothing refused was written


def test_a_certificate_registered_for_one_connector_is_refused_for_another(registry: Registry, pki) -> None:
    registry.add(spec("land-registration.yaml", certificates=[pem(pki.ministry)]), actor="alice")
    with pytest.raises(SpecInvalidError) as exc:
        registry.add(spec("province.yaml", certificates=[pem(pki.province), pem(pki.ministry)]), actor="alice")
    assert [(i.path, i.rule) for i in exc.value.issues] == [("certificates[1]", "certificate-pinned-elsewhere")]
    registry.add(spec("province.yaml", certificates=[pem(pki.province)]), actor="alice")
    with pytest.raises(CertificateError) as refused:
        registry.add_certificate(PROVINCE, pem(pki.ministry), actor="alice")
    assert refused.value.rule == "certificate-pinned-elsewhere"
    registry.add(spec("land-registration.yaml", certificates=[pem(pki.ministry)]), actor="alice")  # its own: fine


def test_authenticate_good_bad_disabled(registry: Registry) -> None:
    _, key = registry.add(spec("land-registration.yaml"), actor="alice")
    assert registry.authenticate(key).code == MINISTRY
    prefix = key[: len("lt_") + 8]
    for bad in (None, "", "nonsense", key + "x", key[:-1], f"{prefix}_{'A' * 43}", "lt_00000000_" + "A" * 43):
        assert registry.authenticate(bad) is None
    registry.disable(MINISTRY, actor="bob")
    assert registry.authenticate(key) is None
    registry.enable(MINISTRY, actor="bob")
    assert registry.authenticate(key).code == MINISTRY


def test_key_rotation_retires_the_old_key(registry: Registry) -> None:
    _, old = registry.add(spec("land-registration.yaml"), actor="alice")
    new = registry.rotate_key(MINISTRY, actor="bob")
    assert new != old
    assert registry.authenticate(old) is None
    assert registry.authenticate(new).code == MINISTRY
    with pytest.raises(UnknownConnectorError):
        registry.rotate_key("000.00.00.X99", actor="bob")


# ------------------------------------------------------------------ certificates


def test_certificate_rotation_old_and_new_then_old_removed(registry: Registry, pki, tmp_path: Path) -> None:
    new_party = keys.issue_key("ministry-2026", tmp_path / "new", algorithm="ec")
    registry.add(spec("land-registration.yaml", certificates=[pem(pki.ministry)]), actor="alice")
    old_envelope = signed(pki.ministry)
    new_envelope = etree.tostring(
        sign_payload(
            Signer.from_files(new_party.key_path, new_party.cert_path),
            header(),
            packets.to_element(packets.example("dossier.status")),
        )
    )

    def verify(data: bytes) -> str:
        return EnvelopeVerifier(registry.trust_store(pki.trust())).verify(data).trusted_as

    assert verify(old_envelope) == "pinned for sender"
    with pytest.raises(SignatureRejectedError):  # not yet registered (and not issued by the trusted CA)
        verify(new_envelope)

    info = registry.add_certificate(MINISTRY, new_party.cert_path.read_text(), actor="alice")
    assert info.fingerprint == keys.fingerprint(new_party.certificate)
    assert len(registry.get(MINISTRY).certificates) == 2
    assert verify(old_envelope) == verify(new_envelope) == "pinned for sender"  # both valid during rotation

    assert registry.remove_certificate(MINISTRY, pem(pki.ministry), actor="alice")
    assert verify(new_envelope) == "pinned for sender"
    with pytest.raises(SignatureRejectedError) as exc:
        verify(old_envelope)  # still issued by the trusted CA, but no longer registered for the sender
    assert exc.value.issues[0].rule == "certificate-pinned"
    assert not registry.remove_certificate(MINISTRY, pem(pki.ministry), actor="alice")

    # Re-applying the YAML makes its certificate list the registered set again.
    registry.add(spec("land-registration.yaml", certificates=[pem(pki.ministry)]), actor="alice")
    assert [c.fingerprint for c in registry.get(MINISTRY).certificates] == [keys.fingerprint(pki.ministry.certificate)]
    actions = [e.action for e in registry.audit(MINISTRY)]
    assert actions == ["create", "add-certificate", "remove-certificate", "update"]


def test_trust_store_pins_only_for_the_connectors_code(registry: Registry, pki) -> None:
    registry.add(spec("land-registration.yaml", certificates=[pem(pki.ministry)]), actor="alice")
    trust = registry.trust_store(pki.trust())
    with pytest.raises(SignatureRejectedError) as exc:  # the province's CA-issued key cannot sign as the ministry
        EnvelopeVerifier(trust).verify(signed(pki.province))
    assert exc.value.issues[0].rule == "certificate-pinned"
    other = EnvelopeVerifier(trust).verify(signed(pki.province, sender=PROVINCE))  # no pins: through the CA
    assert other.trusted_as.startswith("issued by")


# ------------------------------------------------------------------ routing and authorization


def test_routing_is_derived_from_receives(registry: Registry) -> None:
    registry.add(spec("province.yaml"), actor="alice")
    registry.add(spec("land-registration.yaml"), actor="alice")
    portal = spec_data("province.yaml", code="000.00.00.G10", kind="national_portal", name="DVCQG", sends=[])
    portal["receives"] = ["dossier.sync", "dossier.status"]
    portal["endpoint"] = {"url": "http://127.0.0.1:9102/portal", "transport": "json"}
    registry.add(parse_spec(portal), actor="alice")
    push_only = spec_data("land-registration.yaml", code="000.00.00.G23", endpoint=None, examples={})
    registry.add(parse_spec(push_only), actor="alice")  # receives dossier.sync, but has no endpoint

    table = registry.routing_table()
    assert set(table.destinations) == {PROVINCE, MINISTRY, "000.00.00.G10"}
    assert set(table.destinations_for("dossier.status", MINISTRY)) == {PROVINCE, "000.00.00.G10"}
    assert set(table.destinations_for("dossier.sync", PROVINCE)) == {MINISTRY, "000.00.00.G10"}
    assert table.destinations_for("citizen.lookup", PROVINCE) == ()
    config = table.destinations[MINISTRY]
    assert (config.endpoint, config.timeout_s, config.concurrency, config.circuit_cooldown_s) == (
        "http://127.0.0.1:9106/lienthong/inbox",
        15.0,
        4,
        60.0,
    )
    assert config.retry_policy.delays_s == (10.0, 60.0, 300.0, 1800.0, 7200.0)

    registry.disable("000.00.00.G10", actor="bob")
    assert registry.routing_table().destinations_for("dossier.status", MINISTRY) == (PROVINCE,)


def test_authorize_denies_by_default(registry: Registry) -> None:
    registry.add(spec("province.yaml"), actor="alice")
    ministry, _ = registry.add(spec("land-registration.yaml"), actor="alice")

    def rules(h: EnvelopeHeader) -> list[str]:
        return [i.rule for i in registry.authorize(ministry, h)]

    assert rules(header()) == []  # to the hub
    assert rules(header(receiver=PROVINCE)) == []  # the province receives dossier.status
    assert rules(header(sender=PROVINCE)) == ["sender-is-caller"]
    assert rules(header(message_type="dossier.sync")) == ["type-not-granted"]
    assert rules(header(receiver="000.00.00.X99")) == ["receiver-accepts-type"]
    assert rules(header(receiver=MINISTRY)) == ["receiver-accepts-type"]  # it does not receive dossier.status
    assert rules(header(sender=PROVINCE, receiver=MINISTRY, message_type="payment.request")) == [
        "sender-is-caller",
        "type-not-granted",
        "receiver-accepts-type",
    ]
    issues = registry.authorize(ministry, header(message_type="dossier.sync"))
    assert issues[0].path == "/envelope/header/messageType" and "dossier.status" in issues[0].message
    registry.disable(PROVINCE, actor="bob")
    assert rules(header(receiver=PROVINCE)) == ["receiver-accepts-type"]
    disabled = registry.disable(MINISTRY, actor="bob")
    assert rules_of(registry, disabled, header()) == ["connector-disabled"]


def rules_of(registry: Registry, connector, h: EnvelopeHeader) -> list[str]:
    return [i.rule for i in registry.authorize(connector, h)]


def test_credentials_in_an_endpoint_url_are_refused_without_being_repeated() -> None:
    """``user:password@`` in any endpoint URL — the endpoint's, or a profile value that is a URL — is refused when
    the spec is read (``endpoint-url-userinfo``), naming the field and telling where credentials go, never echoing
    them: a URL is shown by ``hub connector list``, the spec dump, the audit log and adapter messages."""
    secret = "s3cr3t-relay-pw"
    cases = {
        "endpoint.url": spec_data("notification-email.yaml", endpoint={
            "url": f"smtps://motcua:{secret}@smtp.example.gov.vn:465", "transport": "smtp"}),
        "endpoint.url ": spec_data("land-registration.yaml", endpoint={"url": f"https://u:{secret}@tnmt.example.gov.vn/in"}),
        "profile_values[auth_endpoint]": spec_data("national-portal.yaml", profile_values={
            **spec_data("national-portal.yaml")["profile_values"], "auth_endpoint": f"https://u:{secret}@dvc/auth"}),
    }  # fmt: skip
    for path, data in cases.items():
        with pytest.raises(SpecInvalidError) as refused:
            parse_spec(data, base_dir=DEPLOY)
        (issue,) = refused.value.issues
        assert (issue.path, issue.rule) == (path.strip(), "endpoint-url-userinfo")
        assert "endpoint.credentials" in issue.message
        assert secret not in str(refused.value) and all(secret not in i.message for i in refused.value.issues)
    assert spec("notification-email.yaml").endpoint is not None  # the shipped file: credentials where they belong


def test_result_hosts_are_host_patterns_and_default_to_the_endpoints_host() -> None:
    land = spec("land-registration.yaml")  # endpoint http://127.0.0.1:9106/…, no result_hosts
    (default,) = land.result_host_list().patterns
    assert (str(default), default.explicit) == ("127.0.0.1", False)  # any port; opens no internal address
    listed = spec("land-registration.yaml", result_hosts=["files.tnmt.example.gov.vn", "*.cdn.example.gov.vn:443"])
    assert [str(p) for p in listed.result_host_list().patterns] == list(listed.result_hosts)
    stored = ConnectorSpec.from_stored(listed.stored(), (), True)
    assert stored.result_hosts == listed.result_hosts
    assert spec("vbdlis.yaml").result_host_list().patterns == ()  # no endpoint, none listed: no result is fetched
    with pytest.raises(SpecInvalidError) as refused:
        spec("land-registration.yaml", result_hosts=["ok.example.gov.vn", "*", "http://x.example.gov.vn/kq"])
    assert [(i.path, i.rule) for i in refused.value.issues] == [("result_hosts[1]", "result-hosts"),
                                                                ("result_hosts[2]", "result-hosts")]  # fmt: skip


def test_the_migration_takes_credentials_out_of_urls_stored_before_the_rule(store_url: str) -> None:
    """A connector stored with ``smtp://user:password@host`` (before ``endpoint-url-userinfo``): migration 0021
    moves the login to ``endpoint.credentials`` (the relay reads only those now), and leaves the password in no URL
    of the registry, its audit copies or a stored error."""
    import json

    from alembic import command
    from alembic.config import Config

    from hub.store import MIGRATIONS_DIR
    from hub.store.schema import connectors, registry_audit

    secret, email = "relay-pw@2024", spec("notification-email.yaml")
    stored = email.stored()
    stored["endpoint"] = {**stored["endpoint"], "credentials": None,
                          "url": "smtp://motcua:relay-pw%402024@smtp.example.gov.vn:587"}  # fmt: skip
    store = Store(store_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0019")
            at = sa.func.now()
            row = {"code": email.code, "kind": "notification", "name": email.name, "spec": stored, "enabled": True}
            conn.execute(connectors.insert().values(**row, created_at=at, updated_at=at))
            conn.execute(registry_audit.insert().values(actor="alice", action="create", code=email.code, before=None,
                                                        after={"spec": stored}, at=at))  # fmt: skip
        store.migrate()
        connector = Registry(store, hub_code=HUB).get(email.code)
        assert connector is not None and connector.spec.endpoint is not None
        assert connector.spec.endpoint.url == "smtp://smtp.example.gov.vn:587"
        credentials = connector.spec.endpoint.credentials
        assert credentials is not None and credentials.username == "motcua"
        assert credentials.password.get_secret_value() == secret
        assert "relay-pw" not in json.dumps(connector.as_dict())  # what the API, the CLI and the audit show
        (entry,) = Registry(store, hub_code=HUB).audit(email.code)
        assert "relay-pw" not in json.dumps(entry.after)
    finally:
        store.close()


def test_a_url_with_credentials_is_masked_in_log_lines_and_refused_in_a_routing_file() -> None:
    from broker.base import BrokerError, connect
    from hub.errors import RoutingError
    from hub.exchange.routing import RoutingTable
    from hub.logs import mask_personal

    line = "cannot reach smtp://motcua:p%40ss@word@relay.example.gov.vn:587 (see https://docs.example.gov.vn/a@b)"
    assert mask_personal(line) == (
        "cannot reach smtp://***@relay.example.gov.vn:587 (see https://docs.example.gov.vn/a@b)"
    )
    with pytest.raises(RoutingError, match="user information") as refused:
        RoutingTable.from_mapping({"destinations": {MINISTRY: {"endpoint": "https://u:pw-secret@x.example.gov.vn/"}}})
    assert "pw-secret" not in str(refused.value)
    with pytest.raises(BrokerError) as mistyped:
        connect("amqq://guest:rabbit-pw@127.0.0.1:5672/%2F")
    assert "rabbit-pw" not in str(mistyped.value)


# ------------------------------------------------------------------ audit


def test_every_change_is_audited_with_before_and_after(registry: Registry) -> None:
    registry.add(spec("land-registration.yaml"), actor="alice")
    registry.add(spec("land-registration.yaml"), actor="alice")  # no change: not audited
    registry.add(spec("land-registration.yaml", timeout_s=30), actor="carol")
    registry.rotate_key(MINISTRY, actor="dave")
    registry.disable(MINISTRY, actor="erin")
    entries = registry.audit(MINISTRY)
    assert [(e.action, e.actor) for e in entries] == [
        ("create", "alice"),
        ("update", "carol"),
        ("rotate-key", "dave"),
        ("disable", "erin"),
    ]
    create, update, rotate, disable = entries
    assert create.before is None and create.after["spec"]["timeout_s"] == 15.0
    assert (update.before["spec"]["timeout_s"], update.after["spec"]["timeout_s"]) == (15.0, 30.0)
    assert rotate.before["api_key_id"] != rotate.after["api_key_id"]
    assert (disable.before["enabled"], disable.after["enabled"]) == (True, False)
    assert all(e.at.tzinfo is not None for e in entries)
    assert registry.audit() == entries
    assert registry.audit("000.00.00.X99") == []


# ------------------------------------------------------------------ runtime wiring


def test_runtime_uses_the_registry_when_connectors_exist(tmp_path: Path, pki, migrated_copy) -> None:
    from hub.runtime import has_destinations, routing_table, trust_store

    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "destinations: {sink: {endpoint: 'http://127.0.0.1:1/inbox'}}\n"
        "routes: [{type: dossier.sync, sender: '*', to: [sink]}]\n"
    )
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/hub.db", data_dir=tmp_path, routes_file=routes, trust_dir=pki.ca_cert
    )
    assert set(routing_table(settings).destinations) == {"sink"}  # no database yet: the routing file
    store = Store(f"sqlite:///{migrated_copy(tmp_path / 'hub.db')}")
    store.migrate()
    try:
        assert set(routing_table(settings, store).destinations) == {"sink"}  # no connectors: the routing file
        assert trust_store(settings, store).pinned == {}
        Registry(store, hub_code=HUB).add(
            spec("land-registration.yaml", certificates=[pem(pki.ministry)]), actor="alice"
        )
        assert set(routing_table(settings).destinations) == {MINISTRY}
        assert has_destinations(settings.model_copy(update={"routes_file": None}))
        trust = trust_store(settings)
        assert list(trust.pinned) == [MINISTRY] and len(trust.anchors) == 1
    finally:
        store.close()


# ------------------------------------------------------------------ onboarding check


class _Endpoint(http.server.BaseHTTPRequestHandler):
    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Allow", "POST, OPTIONS")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    # Polling every 0.05 s, shutdown() returns at once (socketserver's 0.5 s was waited out at each test's end).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/inbox"
    finally:
        server.shutdown()
        server.server_close()


def _free_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/inbox"  # nothing listens there: connection refused


def test_check_passes_a_good_connector(registry: Registry, pki, endpoint: str, tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "examples" / "land-status.xml", tmp_path / "land-status.xml")
    (tmp_path / "signed.xml").write_bytes(signed(pki.ministry))
    data = spec_data("land-registration.yaml", certificates=[pem(pki.ministry)])
    data["endpoint"] = {"url": endpoint, "transport": "http"}
    data["examples"] = {"dossier.status": ["land-status.xml", "signed.xml"]}
    registry.add(parse_spec(data, base_dir=tmp_path), actor="alice")
    report = run_check(registry, MINISTRY, trust=registry.trust_store(pki.trust()))
    assert report.ok, report.items
    text = "\n".join(f"{i.status} {i.area} {i.message}" for i in report.items)
    assert "signature verified" in text and "valid payload" in text and "answered OPTIONS with HTTP 204" in text
    assert "key policy met" in text


def test_check_lists_what_must_be_fixed(registry: Registry, pki, tmp_path: Path) -> None:
    bad_example = tmp_path / "status.xml"
    bad_example.write_bytes(
        packets.to_xml(packets.example("dossier.status")).replace(b"<p:status>4</p:status>", b"<p:status>42</p:status>")
    )
    impostor = tmp_path / "impostor.xml"
    impostor.write_bytes(signed(pki.impostor))
    data = spec_data("land-registration.yaml", certificates=[pem(pki.expired)])
    data["endpoint"] = {"url": _free_port_url(), "transport": "http"}
    data["mapping"] = {"dossier.status": "ldr-v2"}
    data["examples"] = {"dossier.status": [bad_example.name, impostor.name]}
    registry.add(parse_spec(data, base_dir=tmp_path), actor="alice")
    report = run_check(registry, MINISTRY, trust=registry.trust_store(pki.trust()), probe_timeout_s=1)
    assert not report.ok
    failures = {(i.area, i.message.split(":")[0]) for i in report.failures}
    assert ("mapping", "dossier.status") in failures
    assert {i.area for i in report.failures} == {"example", "mapping", "certificate", "endpoint"}
    assert any("endpoint unreachable" in i.message for i in report.failures)
    assert any("expired" in i.message for i in report.failures)
    assert sum(i.area == "example" for i in report.failures) == 2


# ------------------------------------------------------------------ CLI


class Cli:
    """``hub ARGS`` in process on a store in ``tmp_path``: a copy of the migrated one (``migrated_copy``)."""

    def __init__(self, tmp_path: Path, migrated_copy) -> None:
        migrated_copy(tmp_path / "hub.db")
        self.env = {"LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path}/hub.db", "LIENTHONG_DATA_DIR": str(tmp_path),
                    "COLUMNS": "200"}  # fmt: skip

    def __call__(self, *args: object):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, [str(a) for a in args], env=self.env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()


def test_cli_add_list_show_disable_check(tmp_path: Path, pki, endpoint: str, migrated_copy) -> None:
    cli = Cli(tmp_path, migrated_copy)
    connectors = tmp_path / "connectors"
    shutil.copytree(DEPLOY, connectors)
    shutil.copy(pki.ministry.cert_path, connectors / "ministry.pem")
    good = connectors / "land-registration.yaml"
    data = yaml.safe_load(good.read_text())
    data["endpoint"]["url"] = endpoint
    data["certificates"] = ["ministry.pem"]
    good.write_text(yaml.safe_dump(data, allow_unicode=True))

    added = cli("connector", "add", good, "--actor", "alice")
    assert added.exit_code == 0, added.output
    assert f"registered connector {MINISTRY}" in added.stdout
    key = next(line.split(": ", 1)[1] for line in added.stdout.splitlines() if line.startswith("API key:"))
    assert key.startswith("lt_") and "shown only now" in added.stderr
    again = cli("connector", "add", good)
    assert again.exit_code == 0 and "updated connector" in again.stdout and "lt_" not in again.output

    assert cli("connector", "add", connectors / "province.yaml").exit_code == 0
    listed = cli("connector", "list")
    assert listed.exit_code == 0
    for text in (MINISTRY, PROVINCE, "ministry", "provincial", "dossier.status", endpoint):
        assert text in listed.stdout

    shown = cli("connector", "show", MINISTRY)
    assert shown.exit_code == 0 and "Land registration" in shown.stdout
    assert keys.fingerprint(pki.ministry.certificate) in shown.stdout and key not in shown.stdout
    assert "create" in shown.stdout and "by alice" in shown.stdout

    checked = cli("connector", "check", MINISTRY)
    assert checked.exit_code == 0, checked.output
    assert "✓" in checked.stdout and "✗" not in checked.stdout and "ready" in checked.stdout

    refused = cli("connector", "check", PROVINCE)  # its endpoint (port 9101) is not listening
    assert refused.exit_code == 1 and "✗" in refused.stdout and "endpoint unreachable" in refused.stdout

    assert cli("connector", "disable", MINISTRY, "--actor", "bob").exit_code == 0
    assert "DISABLED" in cli("connector", "show", MINISTRY).stdout
    rotated = cli("connector", "rotate-key", MINISTRY)
    assert rotated.exit_code == 0 and "lt_" in rotated.stdout
    audit = cli("connector", "audit", MINISTRY)
    assert [line.split()[3] for line in audit.stdout.splitlines() if line[:2] == "20"] == [
        "create",
        "disable",
        "rotate-key",
    ]
    assert cli("connector", "show", "000.00.00.X99").exit_code == 2
    assert cli("connector", "check", "000.00.00.X99").exit_code == 2


def test_cli_add_reports_every_problem_of_a_broken_file(tmp_path: Path, migrated_copy) -> None:
    cli = Cli(tmp_path, migrated_copy)
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "code: 12.34\nname: Broken\nkind: bank\nsends: [payment.pay]\nreceives: [payment.receipt]\n"
        "endpoint: {url: 'http://127.0.0.1:9/x', transport: grpc}\ncertificates: [nowhere.pem]\n"
    )
    result = cli("connector", "add", broken)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(broken) + ":")]
    assert [line.split(": ")[1] for line in lines[:-1]] == [
        "code",
        "kind",
        "sends[0]",
        "endpoint.transport",
        "certificates[0]",
    ]
    assert f"{broken}:1: code:" in result.stderr and "5 problem(s); connector not registered" in result.stderr
    assert "no connectors registered" in cli("connector", "list").stdout


# ------------------------------------------------------------------ dossier ownership

DOSSIER = packets.examples.DOSSIER_CODE  # 000.00.00.H12-…: a dossier the province received


def status_body(source: str = MINISTRY, dossier: str = DOSSIER):
    return packets.example("dossier.status").model_copy(update={"source_system": source, "dossier_code": dossier})


def log_message(store: Store, sender: str, to: tuple[str, ...] = (), message_type: str = "dossier.sync") -> None:
    store.accept(sender=sender, message_id=f"m-{sender}-{len(to)}", correlation_id=None, message_type=message_type,
                 receiver=HUB, dossier_code=DOSSIER, envelope=b"<env/>", destinations=to)  # fmt: skip


def test_spec_unit_and_handles() -> None:
    plain = spec("land-registration.yaml")
    assert (plain.unit, plain.handles, plain.registered_unit) == (None, (), MINISTRY)
    assert not plain.handles_dossier(DOSSIER)
    custom = spec("land-registration.yaml", code="BTNMT-DKDD", code_pattern=r"BTNMT-[A-Z]{4}",
                  unit="000.00.00.G15", handles="000.00.00.H12")  # fmt: skip
    assert (custom.registered_unit, custom.handles) == ("000.00.00.G15", ("000.00.00.H12",))
    assert custom.handles_dossier(DOSSIER) and not custom.handles_dossier("000.00.00.H13-251123-0042")
    with pytest.raises(SpecInvalidError) as caught:
        parse_spec(spec_data("land-registration.yaml", unit="G15", handles=["000.00.00.H12", "H12 *"]), base_dir=DEPLOY)
    assert sorted((i.path, i.rule) for i in caught.value.issues) == [
        ("handles", "handles-prefix"),
        ("unit", "agency-code"),
    ]


def test_registered_units_reach_the_routing_table(registry: Registry) -> None:
    registry.add(spec("province.yaml"), actor="alice")
    registry.add(spec("land-registration.yaml", unit="000.00.00.G15", handles=[PROVINCE]), actor="alice")
    stored = registry.require(MINISTRY).spec  # kept through the store
    assert (stored.unit, stored.handles) == ("000.00.00.G15", (PROVINCE,))
    assert dict(registry.routing_table().units) == {PROVINCE: PROVINCE, MINISTRY: "000.00.00.G15"}


def test_authorize_dossier_admits_parties_only(registry: Registry, store: Store) -> None:
    province, _ = registry.add(spec("province.yaml"), actor="alice")
    ministry, _ = registry.add(spec("land-registration.yaml"), actor="alice")  # receives dossier.sync
    other, _ = registry.add(spec("land-registration.yaml", code="000.00.00.G23", receives=[], mapping={}),
                            actor="alice")  # fmt: skip
    handler, _ = registry.add(spec("land-registration.yaml", code="000.00.00.G24", handles=["000.00.00.H1"]),
                              actor="alice")  # fmt: skip
    second, _ = registry.add(spec("province.yaml", code="000.00.00.H13"), actor="alice")
    status, sync = header(), header(message_type="dossier.sync")
    synced = packets.example("dossier.sync")

    def rules(connector, h: EnvelopeHeader, body) -> list[str]:
        return [i.rule for i in registry.authorize_dossier(connector, h, body)]

    # Nothing logged yet: only the handling system named by the registry, and a province's first sync.
    assert rules(ministry, status, status_body()) == ["dossier-not-yours"]
    assert rules(handler, status, status_body("000.00.00.G24")) == []
    assert rules(province, sync, synced) == [] and rules(second, sync, synced) == []
    assert rules(ministry, sync, synced) == ["dossier-not-yours"]  # only a provincial system creates dossiers
    log_message(store, PROVINCE, to=(MINISTRY,))  # the province's first sync, routed to the ministry
    assert rules(province, sync, synced) == [] and rules(province, status, status_body(PROVINCE)) == []
    assert rules(ministry, status, status_body()) == []  # routed a message about it: party
    assert rules(second, sync, synced) == ["dossier-not-yours"]  # another province may not take it over
    assert rules(other, status, status_body("000.00.00.G23")) == ["dossier-not-yours"]
    log_message(store, "000.00.00.G23", message_type="dossier.status")  # a message of its own makes it party
    assert rules(other, status, status_body("000.00.00.G23")) == []
    # sourceSystem is the sender's registered unit; other types and undecoded bodies are not its business.
    issues = registry.authorize_dossier(ministry, status, status_body(PROVINCE))
    assert [(i.path, i.rule) for i in issues] == [("/envelope/body/sourceSystem", "source-is-sender")]
    assert rules(handler, status, status_body("000.00.00.G24", "000.00.00.H21-251123-0042")) == ["dossier-not-yours"]
    assert rules(other, status, None) == []
    assert rules(other, header(message_type="payment.request"), packets.example("payment.request")) == []
    assert registry.is_party(ministry, DOSSIER) and not registry.is_party(second, DOSSIER)


def test_a_known_party_is_not_read_again_and_a_refusal_is_not_kept(
    registry: Registry, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Party status only grows (the message log is append-only): a yes is kept, a no is asked again."""
    ministry, _ = registry.add(spec("land-registration.yaml"), actor="alice")
    reads: list[str] = []
    real = store.dossier_party
    monkeypatch.setattr(store, "dossier_party", lambda code, party: reads.append(code) or real(code, party))
    code = packets.example("dossier.sync").dossier_code
    assert not registry.is_party(ministry, code) and not registry.is_party(ministry, code)
    assert len(reads) == 2  # a refusal is not kept: the next message may have made it a party
    log_message(store, PROVINCE, to=(MINISTRY,))
    assert registry.is_party(ministry, code) and registry.is_party(ministry, code) and registry.is_party(ministry, code)
    assert len(reads) == 3  # once a party, always one: read once
