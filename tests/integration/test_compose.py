"""docker-compose.yml describes the production shape; no Docker engine runs here, so check what we can:
every hub service runs a real `hub` command with valid options, and sets only variables the hub reads."""

from __future__ import annotations

from pathlib import Path

import click
import typer.main
import yaml

from hub.cli import app
from hub.config import Settings, env_var_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _hub_services() -> dict[str, dict]:
    return {name: svc for name, svc in COMPOSE["services"].items() if svc.get("build") == "."}


def test_compose_has_the_production_services() -> None:
    services = COMPOSE["services"]
    assert {"rabbitmq", "postgres", "hub", "worker"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    assert "15672:15672" in services["rabbitmq"]["ports"]
    assert services["worker"]["command"][0] == "worker"
    assert "ports" not in services["worker"], "workers publish no port, so --scale worker=N works"


def test_every_hub_service_command_is_a_real_hub_command() -> None:
    root = typer.main.get_command(app)
    for name, svc in _hub_services().items():
        args = list(svc["command"])
        ctx = root.make_context("hub", list(args), resilient_parsing=False)
        group: click.Group = root  # type: ignore[assignment]
        command = group.get_command(ctx, args[0])
        assert command is not None, f"service {name}: `hub {args[0]}` does not exist"
        command.make_context(args[0], args[1:])  # raises on an unknown option or a bad value


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
