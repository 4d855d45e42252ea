"""Partner profiles as data: which variant of a partner's real interface a connector speaks, and its constants.

Real partners of one kind do not all speak the same interface: the national portal is reached through its own
session API (``dvcqg/opencps``, as the VietOpenCPS code calls it) or through a provincial proxy with one URL per
operation (``dvcqg/proxy``); ministry software sends per-step JSON (``ministry/vbdlis-json``) or the hub's XML
steps (``ministry/xml-steps``). A profile names such a variant; its constants (``dstcode``, ``madonvi``, endpoints,
code tables) differ per province and so live in the connector's YAML, not in code::

    profile: dvcqg/opencps@1          # "<family>/<variant>[@<version>]"; without a version the newest
    profile_values: {dstcode: "...", madonvi: "000.00.00.H12", auth_endpoint: /auth}

A profile definition is a YAML file under ``mappings/profiles/<family>/`` (``<variant>.yaml``, later versions
``<variant>@<n>.yaml``); each value says whether it is required, its default, and the source it comes from
(``OC-DV:1102`` …, see the partner fact sheet) — a value without a source is a guess the deployment must
confirm, and ``check`` says so. Pure: no I/O beyond reading the shipped definitions once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from hub.errors import MappingError

PROFILES_DIR = Path(__file__).with_name("profiles")
_REF = re.compile(r"(?P<name>[a-z0-9_-]+/[a-z0-9_.-]+)(?:@(?P<version>[0-9]+))?")


class UnknownProfileError(MappingError):
    """A profile reference that names no shipped profile (or version), or a profile file that cannot be read."""


class ProfileValueError(MappingError):
    """Profile values that cannot be used: a required value unset, or a key the profile does not know."""

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        super().__init__(message)
        self.keys = keys


@dataclass(frozen=True, slots=True)
class ProfileValue:
    """One constant of a profile: ``required`` (no default; the connector must give it), or a ``default``;
    ``source`` cites where the value (or the need for it) is read from, ``None`` when nothing public says."""

    required: bool = False
    default: str | None = None
    source: str | None = None
    note: str = ""
    #: a value matching this regex is wrong (``check`` fails it), e.g. an agency code where a name belongs
    refuse_pattern: str | None = None
    refuse_note: str = ""
    #: what an empty value means, when it should be looked at (``check`` warns)
    when_empty: str = ""


@dataclass(frozen=True, slots=True)
class CodeTable:
    """A partner's codes and what they mean to the hub (``success``, …), with the source they are read from."""

    source: str | None
    values: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Profile:
    """One version of a partner interface variant, as defined by its YAML file."""

    name: str  # "<family>/<variant>"
    kind: str  # the connector kind it applies to
    version: int
    summary: str
    values: Mapping[str, ProfileValue]
    #: Code tables (e.g. the portal's ``error_code`` meanings), by name.
    codes: Mapping[str, CodeTable] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class Finding:
    """What ``check`` reports about a connector's profile values: ``fail`` must be fixed, ``warn`` looked at."""

    status: Literal["fail", "warn"]
    key: str
    rule: str  # profile-value-unset | -unknown | -unsourced | -refused | -empty
    message: str


class ProfileSettings(Mapping[str, str]):
    """Every value of a profile for one connector: what the connector gave, defaults for the rest (frozen)."""

    def __init__(self, profile: Profile, values: Mapping[str, str]) -> None:
        self.profile = profile
        self._values = MappingProxyType(dict(values))

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ProfileSettings({self.profile.ref}, {dict(self._values)!r})"

    def code(self, table: str, code: str) -> str | None:
        """The meaning of ``code`` in the profile's code table ``table`` (``None``: not listed)."""
        found = self.profile.codes.get(table)
        return None if found is None else found.values.get(code)


def _value(key: str, raw: object, where: str) -> ProfileValue:
    if not isinstance(raw, Mapping):
        raise UnknownProfileError(f"{where}: value {key!r} must be a mapping (required/default/source/note)")
    unknown = set(raw) - {"required", "default", "source", "note", "refuse_pattern", "refuse_note", "when_empty"}
    if unknown:
        raise UnknownProfileError(f"{where}: value {key!r} has unknown fields {sorted(unknown)}")
    required = bool(raw.get("required", False))
    default = raw.get("default")
    if required and default is not None:
        raise UnknownProfileError(f"{where}: value {key!r} is required and so cannot have a default")
    if not required and default is None:
        raise UnknownProfileError(f'{where}: value {key!r} needs a default ("" for none) or required: true')
    source = raw.get("source")
    refuse = raw.get("refuse_pattern")
    if refuse is not None:
        try:
            re.compile(str(refuse))
        except re.error as exc:
            raise UnknownProfileError(f"{where}: value {key!r} has a refuse_pattern that is no regex: {exc}") from None
    return ProfileValue(
        required=required,
        default=None if default is None else str(default),
        source=None if source is None else str(source),
        note=str(raw.get("note", "")),
        refuse_pattern=None if refuse is None else str(refuse),
        refuse_note=str(raw.get("refuse_note", "")),
        when_empty=str(raw.get("when_empty", "")),
    )


def _table(name: str, raw: object, where: str) -> CodeTable:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("values"), Mapping):
        raise UnknownProfileError(f"{where}: code table {name!r} needs values (and a source)")
    source = raw.get("source")
    values = MappingProxyType({str(c): str(m) for c, m in raw["values"].items()})
    return CodeTable(None if source is None else str(source), values)


def _load(path: Path) -> Profile:
    where = str(path)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UnknownProfileError(f"cannot read profile {where}: {exc}") from None
    if not isinstance(data, Mapping) or not {"name", "kind", "version"} <= set(data):
        raise UnknownProfileError(f"{where}: a profile needs name, kind and version")
    values = data.get("values") or {}
    codes = data.get("codes") or {}
    return Profile(
        name=str(data["name"]),
        kind=str(data["kind"]),
        version=int(data["version"]),
        summary=str(data.get("summary", "")),
        values=MappingProxyType({str(k): _value(str(k), v, where) for k, v in values.items()}),
        codes=MappingProxyType({str(t): _table(str(t), table, where) for t, table in codes.items()}),
    )


@functools.cache
def _all() -> Mapping[tuple[str, int], Profile]:
    found: dict[tuple[str, int], Profile] = {}
    for path in sorted(PROFILES_DIR.glob("*/*.yaml")):
        profile = _load(path)
        if not path.stem.split("@")[0] == profile.name.split("/")[-1]:
            raise UnknownProfileError(f"{path}: file name does not match profile {profile.name!r}")
        found[(profile.name, profile.version)] = profile
    return MappingProxyType(found)


def all_profiles() -> list[Profile]:
    """Every shipped profile version, by name then version."""
    return sorted(_all().values(), key=lambda p: (p.name, p.version))


def profile_refs() -> frozenset[str]:
    """Every profile name known (``dvcqg/opencps``, …), without versions."""
    return frozenset(name for name, _ in _all())


def get_profile(ref: str) -> Profile:
    """The profile ``ref`` names (``dvcqg/opencps`` = its newest version, ``dvcqg/opencps@1`` that version)."""
    match = _REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise UnknownProfileError(f"{ref!r} is not a profile reference (<family>/<variant>[@<version>])")
    name, version = match["name"], match["version"]
    versions = sorted(v for n, v in _all() if n == name)
    if not versions:
        known = ", ".join(sorted(profile_refs()))
        raise UnknownProfileError(f"unknown profile {name!r} (known: {known})")
    if version is None:
        return _all()[(name, versions[-1])]
    if int(version) not in versions:
        raise UnknownProfileError(f"profile {name!r} has no version {version} (versions: {versions})")
    return _all()[(name, int(version))]


def profiles_for(kind: str) -> list[Profile]:
    """The newest version of each profile for connector kind ``kind``."""
    newest: dict[str, Profile] = {}
    for profile in all_profiles():
        if profile.kind == kind:
            newest[profile.name] = profile
    return list(newest.values())


def resolve(profile: Profile, given: Mapping[str, str]) -> ProfileSettings:
    """All of ``profile``'s values for a connector that gave ``given``, defaults filled; ``ProfileValueError``
    when a required value is unset or a key is unknown."""
    unknown = tuple(sorted(set(given) - set(profile.values)))
    if unknown:
        raise ProfileValueError(f"profile {profile.ref} has no value(s) {', '.join(unknown)}", unknown)
    missing = tuple(k for k, v in profile.values.items() if v.required and not str(given.get(k, "")).strip())
    if missing:
        raise ProfileValueError(f"profile {profile.ref} needs a value for {', '.join(missing)}", missing)
    values = {k: str(given[k]) if k in given else str(v.default) for k, v in profile.values.items()}
    return ProfileSettings(profile, values)


def check(profile: Profile, given: Mapping[str, str]) -> list[Finding]:
    """What an integrator should look at in ``given``: a required value unset, a key the profile does not know or
    a value matching the value's ``refuse_pattern`` (``fail``); a value left at a default no public source
    supports, or empty where the profile says what that means (``when_empty``) (``warn``)."""
    findings: list[Finding] = []
    for key in sorted(set(given) - set(profile.values)):
        known = ", ".join(sorted(profile.values)) or "none"
        findings.append(
            Finding("fail", key, "profile-value-unknown", f"{key}: not a value of {profile.ref} (known: {known})")
        )
    for key, value in profile.values.items():
        if value.required and not str(given.get(key, "")).strip():
            source = f" (needed per {value.source})" if value.source else ""
            note = f"; {value.note}" if value.note else ""
            findings.append(Finding("fail", key, "profile-value-unset", f"{key}: required, not set{source}{note}"))
        elif not value.required and key not in given and value.source is None:
            note = f"; {value.note}" if value.note else ""
            message = f"{key}: left at the default {value.default!r}, which no public source confirms{note}"
            findings.append(Finding("warn", key, "profile-value-unsourced", message))
        text = str(given[key]) if key in given else str(value.default or "")
        if value.refuse_pattern and text and re.search(value.refuse_pattern, text.strip()):
            note = f": {value.refuse_note}" if value.refuse_note else ""
            findings.append(Finding("fail", key, "profile-value-refused", f"{key}: {text!r} is not accepted{note}"))
        if value.when_empty and not value.required and not text.strip():
            findings.append(Finding("warn", key, "profile-value-empty", f"{key}: empty; {value.when_empty}"))
    return findings
