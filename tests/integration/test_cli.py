"""The ``hub`` CLI as a user runs it: example → validate → sign → verify, and the failure exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hub import packets
from hub.cli import app
from tests.support import free_port

runner = CliRunner()
HUB = Path(sys.executable).with_name("hub")


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def keydir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    result = invoke("keys", "new", "--name", "province", "--out", d)
    assert result.exit_code == 0, result.output
    assert "created demo CA" in result.output
    return d


def _sign(keydir: Path, payload: Path, message_type: str):
    return invoke(
        "envelope", "sign", "--key", keydir / "province.key", "--cert", keydir / "province.pem",
        "--type", message_type, "--sender", "000.00.00.H12", "--receiver", "000.00.00.H00", payload,
    )  # fmt: skip


@pytest.mark.parametrize("message_type", sorted(packets.PACKET_TYPES))
def test_example_validate_sign_verify_and_tamper(keydir: Path, tmp_path: Path, message_type: str) -> None:
    example = invoke("example", message_type)
    assert example.exit_code == 0
    payload = tmp_path / "p.xml"
    payload.write_bytes(example.stdout_bytes)

    validated = invoke("validate", "--type", message_type, payload)
    assert validated.exit_code == 0, validated.output
    assert f"valid {message_type}" in validated.stdout

    signed = _sign(keydir, payload, message_type)
    assert signed.exit_code == 0, signed.output
    envelope = tmp_path / "e.xml"
    envelope.write_bytes(signed.stdout_bytes)

    verified = invoke("envelope", "verify", envelope, "--trust", keydir)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith(f"VALID {message_type}")
    assert "signed by province" in verified.stdout
    assert len(verified.stdout.strip().splitlines()) == 1

    # Flip one character of the body.
    data = envelope.read_bytes()
    start = data.index(b"<p:", data.index(b"body>"))
    text_at = data.index(b">", start) + 1
    while data[text_at : text_at + 1] in (b"<", b"\n", b" "):
        text_at = data.index(b">", text_at) + 1
    flipped = data[:text_at] + (b"X" if data[text_at : text_at + 1] != b"X" else b"Y") + data[text_at + 1 :]
    envelope.write_bytes(flipped)
    rejected = invoke("envelope", "verify", envelope, "--trust", keydir)
    assert rejected.exit_code == 1
    assert rejected.stderr.startswith("INVALID")
    assert len(rejected.stderr.strip().splitlines()) == 1


def test_validate_lists_each_error_with_line_path_and_rule(tmp_path: Path) -> None:
    xml = packets.to_xml(packets.example("dossier.status")).decode()
    bad = xml.replace(packets.example("dossier.status").dossier_code, "H12-2511-42", 1)
    file = tmp_path / "bad.xml"
    file.write_text(bad)
    result = invoke("validate", "--type", "dossier.status", file)
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{file}:")
    line = first.split(":")[1]
    assert line.isdigit() and int(line) > 1
    assert "dossierCode" in first and "[rule:" in first


def test_validate_malformed_and_hostile_xml(tmp_path: Path) -> None:
    file = tmp_path / "x.xml"
    file.write_text('<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>')
    result = invoke("validate", "--type", "dossier.sync", file)
    assert result.exit_code == 1
    assert "xml-no-dtd" in result.stderr


def test_unknown_type_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    assert invoke("example", "dossier.nope").exit_code == 2
    result = invoke("validate", "--type", "dossier.sync", tmp_path / "missing.xml")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_sign_refuses_an_invalid_payload(keydir: Path, tmp_path: Path) -> None:
    file = tmp_path / "p.xml"
    file.write_bytes(packets.to_xml(packets.example("dossier.sync")).replace(b"dossierSync", b"dossierStatus"))
    result = _sign(keydir, file, "dossier.sync")
    assert result.exit_code == 1
    assert result.stdout == ""


def test_verify_with_wrong_trust_says_why(keydir: Path, tmp_path: Path) -> None:
    payload = tmp_path / "p.xml"
    payload.write_bytes(packets.to_xml(packets.example("postal.status")))
    envelope = tmp_path / "e.xml"
    envelope.write_bytes(_sign(keydir, payload, "postal.status").stdout_bytes)
    other = tmp_path / "other"
    invoke("keys", "new", "--name", "someone", "--out", other)
    result = invoke("envelope", "verify", envelope, "--trust", other / "ca.pem")
    assert result.exit_code == 1
    assert "certificate-trust" in result.stderr


def test_every_command_has_help() -> None:
    for args in (["--help"], ["keys", "new", "--help"], ["example", "--help"], ["validate", "--help"],
                 ["envelope", "sign", "--help"], ["envelope", "verify", "--help"], ["serve", "--help"],
                 ["walkthrough", "--help"], ["types", "--help"]):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 0, args
        assert "Usage" in result.stdout


def test_walkthrough_runs_every_type(tmp_path: Path) -> None:
    result = invoke("walkthrough", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    for name in packets.PACKET_TYPES:
        assert name in result.stdout
    assert "ACCEPTED (bad)" not in result.stdout


def test_installed_console_script_runs_the_chain(keydir: Path, tmp_path: Path) -> None:
    """The real `hub` executable, as the acceptance commands use it."""
    env = {**os.environ, "COLUMNS": "200"}

    def run(*args: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(HUB), *map(str, args)], capture_output=True, env=env, timeout=60)

    payload = tmp_path / "p.xml"
    payload.write_bytes(run("example", "citizen.lookup").stdout)
    assert run("validate", "--type", "citizen.lookup", payload).returncode == 0
    keyargs = ("--key", keydir / "province.key", "--cert", keydir / "province.pem")
    route = ("--sender", "000.00.00.H12", "--receiver", "000.00.00.H00")
    signed = run("envelope", "sign", *keyargs, "--type", "citizen.lookup", *route, payload)
    assert signed.returncode == 0, signed.stderr
    envelope = tmp_path / "e.xml"
    envelope.write_bytes(signed.stdout)
    assert run("envelope", "verify", envelope, "--trust", keydir).returncode == 0
    envelope.write_bytes(signed.stdout.replace(b"000.00.00.H00", b"000.00.00.H01", 1))
    assert run("envelope", "verify", envelope, "--trust", keydir).returncode == 1


# ------------------------------------------------------------------ connector list|show|check|audit: --json, 80 columns

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "connectors"
PROVINCE = "000.00.00.H12"


@pytest.fixture
def registered(tmp_path: Path):
    """``hub CMD`` on a store with the province connector registered (at an endpoint where nothing listens)."""
    from hub.config import get_settings

    env = {"LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path}/hub.db", "LIENTHONG_DATA_DIR": str(tmp_path)}

    def run(*args: str, columns: int = 200):
        get_settings.cache_clear()
        try:
            return runner.invoke(app, list(args), env={**env, "COLUMNS": str(columns)}, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    connectors = tmp_path / "connectors"
    shutil.copytree(DEPLOY, connectors)
    spec = connectors / "province.yaml"
    data = yaml.safe_load(spec.read_text(encoding="utf-8"))
    data["endpoint"]["url"] = f"http://127.0.0.1:{free_port()}/inbox"  # nothing listens there
    spec.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert run("connector", "add", str(spec), "--actor", "alice").exit_code == 0
    run.declared = data  # type: ignore[attr-defined]
    run.json = lambda *args: json.loads(run(*args, "--json").stdout)  # type: ignore[attr-defined]
    return run


def test_connector_json_is_the_registry(registered) -> None:
    declared = registered.declared
    (listed,) = registered.json("connector", "list")
    assert (listed["code"], listed["kind"], listed["enabled"]) == (PROVINCE, declared["kind"], True)
    assert listed["sends"] == declared["sends"] and listed["receives"] == declared["receives"]
    assert listed["endpoint"] == declared["endpoint"]["url"]

    shown = registered.json("connector", "show", PROVINCE)
    assert {k: shown[k] for k in listed} == listed
    assert shown["api_key_prefix"].startswith("lt_") and shown["api_key_prefix"] not in json.dumps(shown["spec"])
    created = datetime.fromisoformat(shown["created_at"])
    assert created.utcoffset() == timedelta(hours=7)  # the calendar's zone by default
    assert [(c["action"], c["actor"]) for c in shown["recent_changes"]] == [("create", "alice")]
    in_utc = json.loads(registered("connector", "show", PROVINCE, "--json", "--utc").stdout)
    assert datetime.fromisoformat(in_utc["created_at"]) == created and in_utc["created_at"].endswith("+00:00")
    human = registered("connector", "show", PROVINCE).stdout
    assert f"created {created:%Y-%m-%d %H:%M:%S} (UTC+7)" in human
    assert (
        f"created {created.astimezone(UTC):%Y-%m-%d %H:%M:%S} (UTC)"
        in registered("connector", "show", PROVINCE, "--utc").stdout
    )

    (change,) = registered.json("connector", "audit", PROVINCE)
    assert (change["action"], change["actor"], change["code"]) == ("create", "alice", PROVINCE)


def test_connector_check_json_keeps_the_exit_code(registered) -> None:
    checked = registered("connector", "check", PROVINCE, "--timeout", "1", "--json")
    assert checked.exit_code == 1  # the endpoint is not listening
    report = json.loads(checked.stdout)
    assert report["code"] == PROVINCE and report["ok"] is False
    assert report["failures"] == sum(i["status"] == "fail" for i in report["items"]) >= 1
    assert any(i["area"] == "endpoint" and "unreachable" in i["message"] for i in report["items"])
    human = registered("connector", "check", PROVINCE, "--timeout", "1")
    assert [line.split("] ", 1)[1] for line in human.stdout.splitlines() if "] " in line] == [
        i["message"] for i in report["items"]
    ]


def test_connector_list_fits_80_columns(registered) -> None:
    narrow = registered("connector", "list", columns=80)
    assert narrow.exit_code == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    assert PROVINCE in narrow.stdout and "provincial" in narrow.stdout
    assert "dossier.sync" in registered("connector", "list", columns=200).stdout  # the wide table has the types
