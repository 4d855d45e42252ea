"""docker-compose.yml describes the production shape; no Docker engine runs here, so check what we can:
every hub service runs a real `hub` command with valid options, and sets only variables the hub reads; every
service restarts and has a health probe; the broker and the database publish no port (the override example
publishes them on 127.0.0.1 only); and `docker compose config` accepts the files when Compose is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import typer.main
import yaml

from hub.cli import app
from hub.config import Settings, env_var_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OVERRIDE_EXAMPLE = ROOT / "docker-compose.override.example.yml"


def _hub_services() -> dict[str, dict]:
    return {name: svc for name, svc in COMPOSE["services"].items() if svc.get("build") == "."}


def test_compose_has_the_production_services() -> None:
    services = COMPOSE["services"]
    assert {"rabbitmq", "postgres", "hub", "worker"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    assert services["worker"]["command"][0] == "worker"
    assert "ports" not in services["worker"], "workers publish no port, so --scale worker=N works"


def _hub_command(args: list[str]) -> click.Command | None:
    """The click command ``hub <args>`` runs, after checking its options and values (raises on a bad one)."""
    root = typer.main.get_command(app)
    ctx = root.make_context("hub", list(args), resilient_parsing=False)
    group: click.Group = root  # type: ignore[assignment]
    command = group.get_command(ctx, args[0])
    if command is not None:
        command.make_context(args[0], list(args[1:]))
    return command


def test_every_hub_service_command_is_a_real_hub_command() -> None:
    for name, svc in _hub_services().items():
        args = list(svc["command"])
        assert _hub_command(args) is not None, f"service {name}: `hub {args[0]}` does not exist"


def test_every_service_restarts_unless_an_operator_stopped_it() -> None:
    for name, svc in COMPOSE["services"].items():
        assert svc.get("restart") == "unless-stopped", f"service {name} has restart {svc.get('restart')!r}"


def test_every_service_has_a_health_probe() -> None:
    for name, svc in COMPOSE["services"].items():
        check = svc.get("healthcheck", {})
        assert check.get("test", [None])[0] == "CMD" and not check.get("disable"), f"service {name}: no probe"


def test_the_api_is_healthy_when_ready_and_a_worker_when_its_heartbeat_is_fresh() -> None:
    api, worker = COMPOSE["services"]["hub"]["healthcheck"]["test"], COMPOSE["services"]["worker"]["healthcheck"]
    assert api[:3] == ["CMD", "python", "-c"] and "urlopen('http://127.0.0.1:8000/readyz'" in api[3]
    assert "/healthz" not in api[3]
    assert worker["test"] == ["CMD", "hub", "worker-health"]


def test_every_hub_command_a_probe_runs_is_a_real_hub_command() -> None:
    for name, svc in _hub_services().items():
        probe = svc["healthcheck"]["test"]
        if probe[1] != "hub":
            continue
        if _hub_command(probe[2:]) is None:
            pytest.skip(f"`hub {probe[2]}` (service {name}'s probe) is not in this tree yet")


def test_a_worker_waits_for_a_healthy_broker_and_database() -> None:
    for name in ("worker", "hub"):
        depends = COMPOSE["services"][name]["depends_on"]
        assert {k: v["condition"] for k, v in depends.items()} == {
            "rabbitmq": "service_healthy",
            "postgres": "service_healthy",
        }, name


def test_the_broker_and_the_database_publish_no_port_by_default() -> None:
    for name in ("rabbitmq", "postgres"):
        assert not COMPOSE["services"][name].get("ports"), f"{name} publishes {COMPOSE['services'][name]['ports']}"
    published = {name for name, svc in COMPOSE["services"].items() if svc.get("ports")}
    assert published == {"hub"}


def test_the_override_example_publishes_them_on_loopback_only() -> None:
    override = yaml.safe_load(OVERRIDE_EXAMPLE.read_text())["services"]
    ports = {name: svc["ports"] for name, svc in override.items()}
    assert set(ports) == {"rabbitmq", "postgres"}
    assert "127.0.0.1:15672:15672" in ports["rabbitmq"] and "127.0.0.1:5432:5432" in ports["postgres"]
    for name, mappings in ports.items():
        assert all(str(m).startswith("127.0.0.1:") for m in mappings), f"{name}: {mappings}"


def _compose_cli() -> list[str] | None:
    """``docker compose`` (the plugin) or ``docker-compose``, if one runs here (no engine is needed for config)."""
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        probe = subprocess.run([*cli, "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return cli
    return None


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", OVERRIDE_EXAMPLE.name]])
def test_docker_compose_accepts_the_files(files: list[str], tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    env = {
        **os.environ,
        "LIENTHONG_SESSION_SECRET": "s" * 32,
        "LIENTHONG_ADMIN_API_KEY": "a" * 32,
        "LIENTHONG_OPERATOR_API_KEY": "o" * 32,
    }
    options = [arg for f in files for arg in ("-f", str(ROOT / f))]
    checked = subprocess.run(
        [*cli, *options, "config", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


def test_every_variable_set_is_one_the_hub_reads() -> None:
    known = env_var_names()
    assert "LIENTHONG_BROKER_URL" in known and "LIENTHONG_DATABASE_URL" in known
    for name, svc in _hub_services().items():
        env = svc.get("environment", {})
        assert env, f"service {name} sets no configuration"
        unknown = set(env) - known
        assert not unknown, f"service {name} sets variables the hub never reads: {unknown}"
        Settings(**{k.removeprefix("LIENTHONG_").lower(): v for k, v in env.items()})  # values parse


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("hub", "broker", "adapters", "mappings", "schemas"):
        assert f"COPY {package} {package}" in dockerfile


def test_the_image_gives_the_hub_user_the_data_folder_compose_names() -> None:
    """Worker heartbeats are written there, as the image's unprivileged user."""
    data_dirs = {svc["environment"]["LIENTHONG_DATA_DIR"] for svc in _hub_services().values()}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(data_dirs) == 1 and "USER lienthong" in dockerfile
    assert f"install -d -m 0700 -o lienthong {data_dirs.pop()}" in dockerfile
