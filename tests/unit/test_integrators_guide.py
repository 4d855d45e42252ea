"""Keeps ``docs/integrators.md`` true: every connector example in it (a ```` ```yaml connector-example ```` block)
is a declaration the connector spec parser accepts, and every ``hub …`` command it shows exists in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from hub.cli import app
from hub.registry.spec import ConnectorSpec, loads_spec

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "integrators.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`(hub [^`]+)`")


def _blocks(info: str) -> list[str]:
    return [body for head, body in FENCE.findall(GUIDE.read_text(encoding="utf-8")) if head.strip() == info]


def _connector_examples() -> list[str]:
    return _blocks("yaml connector-example")


def _command_lines() -> list[str]:
    """Every ``hub …`` command the guide shows: lines of ```sh blocks, ``$ hub …`` lines of output blocks, and
    inline code spans starting with ``hub ``."""
    text = GUIDE.read_text(encoding="utf-8")
    lines = [line.strip() for body in _blocks("sh") for line in body.splitlines()]
    lines += [line[2:] for body in _blocks("text") for line in body.splitlines() if line.startswith("$ hub ")]
    lines += INLINE.findall(FENCE.sub("", text))
    return [line for line in lines if line.startswith("hub ")]


def test_the_guide_has_a_connector_example_of_every_kind_and_profile() -> None:
    specs = [loads_spec(text, source="docs/integrators.md") for text in _connector_examples()]
    kinds = {spec.kind for spec in specs}
    assert kinds == {"provincial", "national_portal", "population_db", "postal", "payment", "ministry", "notification"}
    assert {spec.profile for spec in specs} >= {
        "dvcqg/opencps@1",
        "dvcqg/proxy@1",
        "ministry/vbdlis-json",
        "ministry/xml-steps",
    }


@pytest.mark.parametrize("index", range(len(_connector_examples())))
def test_each_connector_example_parses(index: int) -> None:
    text = _connector_examples()[index]
    spec = loads_spec(text, base_dir=ROOT / "deploy" / "connectors", source=f"docs/integrators.md example {index}")
    assert isinstance(spec, ConnectorSpec)
    if spec.profile is not None:  # only the values the profile knows (parse_spec refuses the others)
        assert spec.profile_settings() is not None


def test_the_deploy_examples_in_the_guide_are_the_shipped_files() -> None:
    """The guide's copies of ``deploy/connectors/*.yaml`` declare the same connectors as the files do."""
    shown = {(spec.code, spec.name): spec for spec in map(loads_spec, _connector_examples())}
    for path in sorted((ROOT / "deploy" / "connectors").glob("*.yaml")):
        shipped = loads_spec(path.read_text(encoding="utf-8"), base_dir=path.parent)
        copy = shown.get((shipped.code, shipped.name))
        if copy is None:  # not every shipped file is copied into the guide
            continue
        assert copy.model_dump(exclude={"examples"}) == shipped.model_dump(exclude={"examples"}), path.name


def _subcommands(command: object) -> dict[str, object] | None:
    """A command group's subcommands by name (typer's click groups have ``commands``); ``None`` for a command."""
    commands = getattr(command, "commands", None)
    return commands if isinstance(commands, dict) else None


def _cli() -> dict[str, object]:
    commands = _subcommands(typer.main.get_command(app))
    assert commands is not None
    return commands


def test_every_hub_command_in_the_guide_exists() -> None:
    root = _cli()
    lines = _command_lines()
    assert len(lines) > 20, lines
    print(f"{len(lines)} hub command lines checked")
    for line in lines:
        words = line.split()
        command = root.get(words[1])
        assert command is not None, f"{line!r}: no command `hub {words[1]}`"
        group = _subcommands(command)
        if group is not None and len(words) > 2 and not words[2].startswith("-"):
            assert words[2] in group, f"{line!r}: no command `hub {words[1]} {words[2]}`"


def test_a_wrong_command_would_be_caught() -> None:
    """The check above can fail: a made-up subcommand is not in the CLI."""
    root = _cli()
    connector = _subcommands(root["connector"])
    assert connector is not None and "check" in connector
    assert "register" not in connector
    assert "send" not in root
