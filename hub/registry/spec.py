"""A connector's declaration (``ConnectorSpec``), as an integrator writes it in YAML, and its validation.

```yaml
code: 000.00.00.G22                    # agency code (mã định danh)
code_pattern: null                     # optional regex replacing the default ddd.dd.dd.Xdd
name: Land registration software (Sở TN&MT)
kind: ministry                         # provincial | national_portal | population_db | postal | payment | ministry
                                       # | notification
sends: [dossier.status]                # message types it may send (deny by default)
receives: [dossier.sync]               # message types routed to it
endpoint: {url: "http://127.0.0.1:9006/inbox", transport: http}   # optional for push-only partners
# endpoint: {url: …/api, transport: json, credentials: {username: u, password: p, madonvi: 000.00.00.H12}}
mapping: {dossier.status: canonical}   # mapping profile per type (default "canonical")
unit: null                             # optional: agency code of the unit it acts for (default: its code)
handles: [000.00.00.H12]               # optional: dossier-code prefixes of the dossiers it handles
certificates: [certs/land.pem]         # PEM files (relative to this file) or inline PEM; several during rotation
result_signers: [certs/agency.pem]     # optional: certificates that sign its results (hub.exchange.results)
result_hosts: [files.tnmt.example.gov.vn, "*.cdn.example.gov.vn:443"]   # where its result links may point
# receipt_signers: [certs/bank.pem]    # payment: certificates that sign its e-receipts (hub.flows.receipts)
retry: {delays_s: [10, 60, 300], jitter: 0.2}
concurrency: 4
timeout_s: 10
circuit: {failures: 5, cooldown_s: 30}
freshness: {max_age_s: 604800, max_ahead_s: 300}   # createdAt at most 7 days old, 5 minutes ahead (the default)
profile: dvcqg/opencps@1               # optional partner profile for its kind (mappings/profiles/), newest version
profile_values: {dstcode: "...", madonvi: 000.00.00.H12}   # that profile's constants for this partner
examples: {dossier.status: [examples/status.xml]}   # for `hub connector check`
enabled: true
```

A ``notification`` connector (citizen notifications, Đắk Nông QĐ 04/2019 Điều 12; ``adapters.notification``)
receives ``dossier.sync`` and ``dossier.status`` and names its channel by profile: ``notification/email-smtp``
with an ``smtp://``/``smtps://`` endpoint (``transport: smtp``), or ``notification/sms-http`` with an http(s) one.
``templates`` overrides the shipped Vietnamese texts: a folder beside the connector file whose
``<event>.<channel>.txt.j2`` files replace those templates (read when the connector is added, kept in the
registry), or, over HTTP, a mapping of template name → text. Each is compiled and rendered against a sample
dossier when the spec is read: a syntax error or a name the hub does not hand templates (the personal ID is never
one) is refused (``notification-template``).

Dossier ownership: a connector may send a ``dossier.status`` for, and read the timeline of, only dossiers it is
party to — it sent or was routed a message about the dossier, or the dossier's code starts with one of its
``handles`` prefixes (a ministry's software handling the dossiers an agency receives, before any message about
them reached it). A ``dossier.status``'s ``sourceSystem`` must be the sender's ``unit``, and that registered unit
is what the national portal is told.

``load_spec(path)`` reports every problem of a file at once (``SpecInvalidError.issues``, each with the YAML
line where known); ``parse_spec(data)`` does the same for an already-parsed mapping (the HTTP API), where file
paths are refused unless a ``base_dir`` is given.

Admin input is not trusted blindly either: the YAML text is capped at ``MAX_SPEC_BYTES`` and ``MAX_YAML_DEPTH``
levels and may hold no aliases (``yaml-size``, ``yaml-depth``, ``yaml-alias``: a connector file never needs
them, and an alias bomb would expand a few KB into gigabytes); ``code_pattern`` is compiled and matched with
RE2, whose matching time is linear in the input (no catastrophic backtracking), so a pattern RE2 cannot compile
(backreferences, lookarounds) is refused (``code-pattern``); file paths must resolve inside ``base_dir`` (the
connector file's folder), through symlinks and ``..`` alike (``certificate-path``, ``example-path``). No URL — the
endpoint's, or a profile value that is one — may carry ``user:password@`` (``endpoint-url-userinfo``, a message that
never repeats it): URLs are shown in listings, dumps, the audit log and adapter messages; credentials go in
``endpoint.credentials``. ``result_hosts`` items must be host patterns (``result-hosts``, ``adapters.link_hosts``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import re2
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from adapters.link_hosts import HostAllowList, HostPattern, HostPatternError, parse_host_pattern
from hub.dossier.validators import AGENCY_CODE_PATTERN, AgencyCode
from hub.errors import CertificateError, Issue, KeyMaterialError, SpecInvalidError
from hub.security.credentials import Credentials, url_has_userinfo
from hub.security.envelope import Freshness
from mappings import profile_names
from mappings import profiles as partner_profiles

CONNECTOR_KINDS = ("provincial", "national_portal", "population_db", "postal", "payment", "ministry", "notification")
ConnectorKind = Literal[
    "provincial", "national_portal", "population_db", "postal", "payment", "ministry", "notification"
]
Transport = Literal["http", "soap", "json", "smtp"]
ExtraCitizenField = Literal["old_id", "ethnicity", "nationality", "father", "mother", "spouse"]
DEFAULT_PROFILE = "canonical"
#: Mapping profiles that exist: ``canonical`` and every profile registered in the ``mappings`` package.
KNOWN_PROFILES: frozenset[str] = frozenset({DEFAULT_PROFILE}) | profile_names()
#: What the envelope XSD accepts as a sender/receiver code; a connector's own pattern may not go beyond it.
PARTY_CODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}"
PEM_CERT_BEGIN = "-----BEGIN CERTIFICATE-----"
#: A ``handles`` item: the start of a dossier code (``<agency code>-<YYMMDD>-<NNNN>``), at least one character.
HANDLES_PATTERN = r"[0-9A-Za-z.\-]{1,64}"
#: Largest connector declaration read (file or request body); real ones are a few KB.
MAX_SPEC_BYTES = 256 * 1024
#: Deepest YAML nesting read; a connector declaration nests four levels.
MAX_YAML_DEPTH = 20
#: Longest ``code_pattern`` accepted.
MAX_CODE_PATTERN = 256
#: The rule refusing ``user:password@`` in an endpoint URL or a profile value that is a URL.
USERINFO_RULE = "endpoint-url-userinfo"
#: A profile value that is a URL (an absolute ``auth_endpoint``, a payment URL per message kind, …).
_URL_VALUE = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")


def _error(rule: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(rule, message)


def _known_type(value: object) -> str:
    from hub import packets

    if not isinstance(value, str):
        raise _error("message-type", f"a message type must be a string, got {type(value).__name__}")
    if value not in packets.PACKET_TYPES:
        known = ", ".join(sorted(packets.PACKET_TYPES))
        raise _error("message-type", f"unknown message type {value!r} (known: {known})")
    return value


MessageType = Annotated[str, BeforeValidator(_known_type)]


def _profile_text(value: object) -> str:
    """A profile value must be a string as written. An unquoted YAML scalar is silently changed by the parser
    (``dstcode: 0123`` reads as the octal 83, ``status_map: 5:9`` as the base-60 309, ``yes`` as true), so any
    other type is refused, asking for quotes, rather than turned back into a text that is not what was meant."""
    if isinstance(value, str):
        return value
    shown = "empty" if value is None else f"the {type(value).__name__} {value!r}"
    raise _error(
        "profile-value-type",
        f"must be a quoted string; YAML read this unquoted value as {shown} (0123 becomes 83, 5:9 becomes 309): "
        'write it in quotes, e.g. "0123"',
    )


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


def certificate_from_pem(pem: str | bytes, where: str = "certificate") -> x509.Certificate:
    """The first certificate of a PEM text, checked against the hub's key policy (RSA-2048+ or P-256)."""
    from hub.security.signing import check_key_policy

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{where}: not a PEM certificate") from None
    try:
        check_key_policy(certs[0].public_key(), where)
    except KeyMaterialError as exc:
        raise CertificateError(str(exc), "key-policy") from None
    return certs[0]


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context or {}
    base = context.get("base_dir")
    return None if base is None else Path(base)


def _declared(info: ValidationInfo, field: str) -> tuple[str, ...]:
    """``sends``/``receives`` as validated, or, when that field failed, its known types from the raw input
    (so a bad item there does not hide problems in ``mapping`` and ``examples``)."""
    if field in info.data:
        return info.data[field]
    raw = (info.context or {}).get("raw", {}).get(field)
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list | tuple) else []
    return tuple(item for item in items if isinstance(item, str))


def _read_file(value: str, info: ValidationInfo, what: str) -> tuple[Path, bytes]:
    """The file ``value`` names, resolved inside the connector file's folder. Without a folder (a spec posted over
    HTTP) every path is refused with the same answer, whether the file exists or not."""
    base = _base_dir(info)
    if base is None:
        raise _error(f"{what}-path", f"{what} file paths are only allowed in a connector file; give the content inline")
    folder = base.resolve()
    path = (folder / value).resolve()
    if not path.is_relative_to(folder):
        raise _error(f"{what}-path", f"{value!r} is outside the connector file's folder {folder}")
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise _error(f"{what}-file", f"cannot read {path}: {exc.strerror or exc}") from None


class Endpoint(BaseModel):
    """Where the hub delivers to the connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    transport: Transport = "http"
    credentials: Credentials | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if url_has_userinfo(value):  # checked first: no message below may echo a password
            raise _userinfo_error("endpoint.url")
        # one host character then anything but spaces: "[^\s/?#]+[^\s]*" would backtrack quadratically
        if not re.fullmatch(r"(?:https?|smtps?)://[^\s/?#][^\s]*", value):
            raise _error("endpoint-url", f"{value!r} is not an http://, https://, smtp:// or smtps:// URL")
        return value

    @model_validator(mode="after")
    def _scheme_fits_transport(self) -> Endpoint:
        mail = self.url.startswith(("smtp://", "smtps://"))
        if mail != (self.transport == "smtp"):
            raise _error("endpoint-transport", f"transport {self.transport!r} does not fit the URL {self.url!r} "
                         "(smtp:// and smtps:// go with transport smtp, http(s):// with the others)")  # fmt: skip
        return self


def _userinfo_error(what: str) -> PydanticCustomError:
    """The refusal of a URL with ``user:password@`` in it, which never repeats the URL (it holds the secret)."""
    return _error(
        USERINFO_RULE,
        f"{what} carries user information (user:password@host): a URL is shown in connector listings, the audit "
        "log and error messages, so credentials never go in one; remove it and give them as endpoint.credentials "
        "{username, password}",
    )


class RetrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    delays_s: tuple[Annotated[float, Field(ge=0)], ...] = (10.0, 60.0, 300.0, 1800.0, 7200.0)
    jitter: float = Field(0.2, ge=0, lt=1)


class CircuitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, gt=0)


class PolicySpec(BaseModel):
    """Data-handling policy of a connector (partner flows F2–F4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Keep the full ``citizen.record`` a population DB answers in the message log (default: only its digest and
    #: the list of fields returned — data minimisation).
    keep_citizen_records: bool = False
    #: Citizen fields beyond what a one-stop officer needs that this population DB connector's records may carry
    #: (``hub.packets.citizen.EXTRA_CITIZEN_FIELDS``: ``old_id``, ``ethnicity``, ``nationality``, ``father``,
    #: ``mother``, ``spouse``); default none: name parts, sex, birth date, addresses and household head only.
    extra_citizen_fields: tuple[ExtraCitizenField, ...] = ()


class ConnectorSpec(BaseModel):
    """A connector as declared by its integrator. After validation ``certificates`` holds PEM texts (files
    read, each checked against the key policy) and ``examples`` absolute file paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code_pattern: str | None = None
    code: str
    name: str = Field(min_length=1, max_length=256)
    kind: ConnectorKind
    sends: tuple[MessageType, ...] = ()
    receives: tuple[MessageType, ...] = ()
    endpoint: Endpoint | None = None
    mapping: dict[str, str] = Field(default_factory=dict)
    certificates: tuple[str, ...] = ()
    #: The competent agency's certificates that sign the result documents of its finished updates (PDF or XML;
    #: ``hub.exchange.results``); none: its results are not checked. PEM files or inline PEM, like ``certificates``.
    result_signers: tuple[str, ...] = ()
    #: A payment connector's: the intermediary's (bank's, platform's) certificates that sign its e-receipts (PDF;
    #: ``hub.flows.receipts``, Quảng Nam Điều 14.3). Not ``certificates``: those are pinned for the connector's
    #: envelopes, and a receipt-signing certificate must authorise receipts only. PEM files or inline PEM.
    receipt_signers: tuple[str, ...] = ()
    #: The hosts its result links may point at (``adapters.link_hosts``: ``host``, ``host:port``, ``*.domain``,
    #: ``*.domain:port``); none given: the host of its own endpoint URL, and none without an endpoint (a link
    #: elsewhere is held as ``result-host-not-allowed``). An internal address only for a host named exactly here.
    result_hosts: Annotated[tuple[str, ...], BeforeValidator(_as_list)] = ()
    retry: RetrySpec = RetrySpec()
    concurrency: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(10.0, gt=0, le=600)
    circuit: CircuitSpec = CircuitSpec()
    examples: dict[str, Annotated[tuple[str, ...], BeforeValidator(_as_list)]] = Field(default_factory=dict)
    enabled: bool = True
    policy: PolicySpec = PolicySpec()
    unit: AgencyCode | None = None
    handles: Annotated[tuple[str, ...], BeforeValidator(_as_list)] = ()
    freshness: Freshness = Freshness()
    #: The partner profile (``mappings.profiles``: ``dvcqg/opencps``, ``dvcqg/proxy@1``, …) and its values for
    #: this partner; ``None``: the hub's own format for the kind, as before profiles existed.
    profile: str | None = None
    profile_values: dict[str, Annotated[str, BeforeValidator(_profile_text)]] = Field(default_factory=dict)
    #: A notification connector's own templates (template name → Jinja2 text), overriding the shipped ones; in YAML
    #: the folder holding them (``<event>.<channel>.txt.j2``, relative to the connector file).
    templates: dict[str, str] = Field(default_factory=dict)

    @field_validator("code_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > MAX_CODE_PATTERN:
            raise _error("code-pattern", f"longer than {MAX_CODE_PATTERN} characters")
        compile_code_pattern(value)
        return value

    @field_validator("code")
    @classmethod
    def _code(cls, value: str, info: ValidationInfo) -> str:
        if "code_pattern" not in info.data:  # the pattern itself is broken: reported there
            return value
        pattern = info.data["code_pattern"] or AGENCY_CODE_PATTERN
        if not compile_code_pattern(pattern).fullmatch(value):
            which = "the connector's code_pattern" if info.data["code_pattern"] else "ddd.dd.dd.Xdd"
            raise _error("agency-code", f"{value!r} does not match {which} ({pattern})")
        if not re.fullmatch(PARTY_CODE_PATTERN, value):
            raise _error("party-code", f"{value!r} cannot be an envelope sender/receiver ({PARTY_CODE_PATTERN})")
        return value

    @field_validator("handles")
    @classmethod
    def _handles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not re.fullmatch(HANDLES_PATTERN, prefix):
                raise _error("handles-prefix", f"{prefix!r} is not the start of a dossier code ({HANDLES_PATTERN})")
        return tuple(dict.fromkeys(value))

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            profile = partner_profiles.get_profile(value)
        except partner_profiles.UnknownProfileError as exc:
            raise _error("profile", str(exc)) from None
        kind = info.data.get("kind")
        if kind is not None and profile.kind != kind:
            others = ", ".join(p.name for p in partner_profiles.profiles_for(kind)) or "none"
            raise _error(
                "profile-kind", f"{profile.name} is a {profile.kind} profile, not {kind} (for {kind}: {others})"
            )
        return value

    @field_validator("profile_values")
    @classmethod
    def _profile_values(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        ref = info.data.get("profile")
        if ref is None:
            if value and "profile" in info.data:
                raise _error("profile-values", "profile_values given without a profile")
            return value
        profile = partner_profiles.get_profile(ref)
        problems = _Problems()
        for key, text in value.items():
            if key not in profile.values:
                known = ", ".join(sorted(profile.values)) or "none"
                message = f"{key!r} is not a value of {profile.ref} (known: {known})"
                problems.add((key,), "profile-value-unknown", message)
            elif _URL_VALUE.match(text) and url_has_userinfo(text.strip()):
                problems.add((key,), USERINFO_RULE, _userinfo_error(f"profile value {key!r}").message())
        problems.raise_if_any()
        return value

    @field_validator("templates", mode="before")
    @classmethod
    def _templates(cls, value: object, info: ValidationInfo) -> object:
        if not value:  # None or empty: the shipped templates (a dumped spec of any kind carries an empty mapping)
            return {}
        if info.data.get("kind", "notification") != "notification":
            raise _error("templates-kind", "only a notification connector has templates")
        texts = _template_folder(value, info) if isinstance(value, str) else value
        if not isinstance(texts, Mapping):
            return texts  # pydantic reports the wrong shape
        problems = _Problems()
        for name, text in texts.items():
            if not isinstance(text, str):
                problems.add((str(name),), "notification-template", "a template is a text")
                continue
            issue = _template_issue(str(name), text)
            if issue is not None:
                problems.add((str(name),), "notification-template", issue)
        problems.raise_if_any()
        return dict(texts)

    @model_validator(mode="after")
    def _notification(self) -> ConnectorSpec:
        """A notification connector names its channel by profile, and its endpoint fits the channel."""
        if self.kind != "notification":
            return self
        if self.profile is None:
            names = ", ".join(p.name for p in partner_profiles.profiles_for("notification"))
            raise _error("notification-profile", f"a notification connector needs a profile ({names})")
        from mappings.notification import parse_events

        profile = partner_profiles.get_profile(self.profile)
        default = profile.values["events"].default if "events" in profile.values else ""
        try:
            parse_events(self.profile_values.get("events", default or ""))
        except ValueError as exc:
            raise _error("notification-events", str(exc)) from None
        if self.endpoint is not None:
            email = profile.name == "notification/email-smtp"
            if email != (self.endpoint.transport == "smtp"):
                want = "an smtp:// or smtps:// URL (transport smtp)" if email else "an http(s):// URL"
                raise _error("endpoint-transport", f"{profile.name} is reached at {want}")
        return self

    @field_validator("result_hosts")
    @classmethod
    def _result_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = _Problems()
        for index, item in enumerate(value):
            try:
                parse_host_pattern(item)
            except HostPatternError as exc:
                problems.add((index,), "result-hosts", str(exc))
        problems.raise_if_any()
        return tuple(dict.fromkeys(value))

    @field_validator("sends", "receives")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @field_validator("mapping")
    @classmethod
    def _mapping(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        declared = {*_declared(info, "sends"), *_declared(info, "receives")}
        problems = _Problems()
        for message_type, profile in value.items():
            if not problems.type_known(message_type, (message_type,)):
                continue
            if message_type not in declared:
                problems.add(
                    (message_type,), "mapping-type",
                    f"mapping for {message_type!r}, which the connector neither sends nor receives",
                )  # fmt: skip
            if not profile.strip():
                problems.add((message_type,), "mapping-profile", f"empty mapping profile for {message_type!r}")
        problems.raise_if_any()
        return value

    @field_validator("certificates", "result_signers", "receipt_signers", mode="before")
    @classmethod
    def _certificates(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, list | tuple):
            return value  # pydantic reports the wrong shape
        problems = _Problems()
        pems: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                problems.add((index,), "certificate", "must be a PEM file path or an inline PEM certificate")
                continue
            try:
                if PEM_CERT_BEGIN in item:
                    pem, where = item, "inline certificate"
                else:
                    path, data = _read_file(item, info, "certificate")
                    pem, where = data.decode("ascii", "replace"), str(path)
                pems.append(certificate_pem(certificate_from_pem(pem, where)))
            except PydanticCustomError as exc:
                problems.add((index,), exc.type, exc.message())
            except CertificateError as exc:
                problems.add((index,), exc.rule, str(exc))
        problems.raise_if_any()
        return tuple(dict.fromkeys(pems))

    @field_validator("receipt_signers")
    @classmethod
    def _receipt_signers_kind(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if value and info.data.get("kind", "payment") != "payment":
            raise _error("receipt-signers-kind", "only a payment connector has receipt_signers")
        return value

    @field_validator("examples")
    @classmethod
    def _examples(cls, value: dict[str, tuple[str, ...]], info: ValidationInfo) -> dict[str, tuple[str, ...]]:
        problems = _Problems()
        resolved: dict[str, tuple[str, ...]] = {}
        for message_type, files in value.items():
            if not problems.type_known(message_type, (message_type,)):
                continue
            if message_type not in _declared(info, "sends"):
                problems.add(
                    (message_type,), "example-type", f"examples for {message_type!r}, which the connector does not send"
                )
                continue
            paths = []
            for index, file in enumerate(files):
                try:
                    path, _ = _read_file(file, info, "example")
                except PydanticCustomError as exc:
                    problems.add((message_type, index), exc.type, exc.message())
                    continue
                paths.append(str(path))
            resolved[message_type] = tuple(paths)
        problems.raise_if_any()
        return resolved

    # ------------------------------------------------------------ helpers

    @property
    def registered_unit(self) -> str:
        """The agency code this connector acts for: ``unit``, else its code. A ``dossier.status`` it sends must name
        it as ``sourceSystem``; the national portal is told it, whatever a body claims."""
        return self.unit or self.code

    def handles_dossier(self, dossier_code: str) -> bool:
        """Whether the registry names this connector the handling system of ``dossier_code`` (``handles``)."""
        return dossier_code.startswith(self.handles) if self.handles else False

    def result_host_list(self) -> HostAllowList:
        """Where this connector's result links may point: ``result_hosts`` as written (``explicit``), else the
        host of its endpoint URL, any port (not explicit: it opens no internal address), else nowhere."""
        if self.result_hosts:
            return HostAllowList.of(self.result_hosts)
        host = urlsplit(self.endpoint.url).hostname if self.endpoint is not None else None
        if not host:
            return HostAllowList()
        return HostAllowList((HostPattern(host.rstrip("."), None, explicit=False),))

    def profile_settings(self) -> partner_profiles.ProfileSettings | None:
        """The partner profile's values for this connector, defaults filled (``None`` without a profile);
        ``ProfileValueError`` when a required one is unset (``hub connector check`` reports it first)."""
        if self.profile is None:
            return None
        return partner_profiles.resolve(partner_profiles.get_profile(self.profile), self.profile_values)

    def profile_for(self, message_type: str) -> str:
        """The mapping profile used for ``message_type`` (``canonical`` unless the spec says otherwise)."""
        return self.mapping.get(message_type, DEFAULT_PROFILE)

    def stored(self) -> dict[str, Any]:
        """What the registry keeps as the spec JSON: everything except certificates (their own table) and
        ``enabled`` (a column)."""
        return self.model_dump(mode="json", exclude={"certificates", "enabled"}, context={"secrets": True})

    def public(self) -> dict[str, Any]:
        """``stored()`` with secrets (endpoint credentials' password) masked: for the API, the audit log, the CLI."""
        return self.model_dump(mode="json", exclude={"certificates", "enabled"})

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], certificates: Sequence[str], enabled: bool) -> ConnectorSpec:
        """Rebuild a spec from the registry's row, without re-reading files or re-checking certificates."""
        endpoint, retry, circuit = data.get("endpoint"), data.get("retry"), data.get("circuit")
        return cls.model_construct(
            **{
                **data,
                "certificates": tuple(certificates),
                "result_signers": tuple(data.get("result_signers", ())),
                "receipt_signers": tuple(data.get("receipt_signers", ())),
                "result_hosts": tuple(data.get("result_hosts", ())),
                "enabled": enabled,
                "endpoint": _stored_endpoint(endpoint) if endpoint else None,
                "retry": RetrySpec.model_construct(**{**retry, "delays_s": tuple(retry["delays_s"])})
                if retry
                else RetrySpec(),
                "circuit": CircuitSpec.model_construct(**circuit) if circuit else CircuitSpec(),
                "sends": tuple(data.get("sends", ())),
                "receives": tuple(data.get("receives", ())),
                "mapping": dict(data.get("mapping", {})),
                "examples": {k: tuple(v) for k, v in data.get("examples", {}).items()},
                "policy": PolicySpec.model_validate(data.get("policy") or {}),
                "unit": data.get("unit"),
                "handles": tuple(data.get("handles", ())),
                "freshness": Freshness.model_validate(data.get("freshness") or {}),
                "profile": data.get("profile"),
                "profile_values": dict(data.get("profile_values") or {}),
                "templates": dict(data.get("templates") or {}),
            }
        )


def _template_folder(value: str, info: ValidationInfo) -> dict[str, str]:
    """The templates of a folder inside the connector file's folder: its ``<event>.<channel>.txt.j2`` files (any
    other ``*.txt.j2`` is refused: a misspelt name would silently leave the shipped text in place)."""
    from mappings.notification import TEMPLATE_SUFFIX, template_name

    base = _base_dir(info)
    if base is None:
        raise _error("template-path", "a template folder is only allowed in a connector file; give the texts inline")
    root = base.resolve()
    folder = (root / value).resolve()
    if not folder.is_relative_to(root):
        raise _error("template-path", f"{value!r} is outside the connector file's folder {root}")
    if not folder.is_dir():
        raise _error("template-path", f"{folder} is not a folder")
    texts: dict[str, str] = {}
    for path in sorted(folder.glob(f"*{TEMPLATE_SUFFIX}")):
        name = template_name(path.name)
        if name is None:
            raise _error("template-name", f"{path.name} names no template (<event>.<email|sms>{TEMPLATE_SUFFIX})")
        if not path.resolve().is_relative_to(root):
            raise _error("template-path", f"{path} is outside the connector file's folder {root}")
        try:
            data = path.read_bytes()[: MAX_SPEC_BYTES + 1]
            if len(data) > MAX_SPEC_BYTES:
                raise _error("template-file", f"{path} is larger than {MAX_SPEC_BYTES} bytes")
            texts[name] = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _error("template-file", f"cannot read {path}: {exc}") from None
    return texts


def _template_issue(name: str, text: str) -> str | None:
    """Why template ``name`` cannot be used: unknown, does not compile, or does not render for a sample dossier
    (a name the hub does not hand templates, such as a personal ID); ``None`` when it can."""
    from hub.errors import NotificationTemplateError
    from mappings.notification import Event, Templates, sample_notice

    try:
        templates = Templates({name: text})
        event, _, channel = name.partition(".")
        templates.render(sample_notice(Event(event)), channel)
    except NotificationTemplateError as exc:
        return str(exc)
    return None


def compile_code_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (linear-time matching, whatever the pattern); ``PydanticCustomError``
    ``code-pattern`` when RE2 cannot compile it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise _error(
            "code-pattern", f"not a regular expression RE2 accepts (no backreferences or lookarounds): {reason}"
        ) from None


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported as an issue, not logged by the C++ library
    return options


_RE2_OPTIONS = _re2_options()


def _stored_endpoint(data: Mapping[str, Any]) -> Endpoint:
    credentials = data.get("credentials")
    return Endpoint.model_construct(
        **{**data, "credentials": Credentials.model_validate(credentials) if credentials else None}
    )


class _Problems(ValueError):
    """Several problems inside one field, each at its own sub-path (``certificates[1]``, ``mapping[x]``):
    raised out of a validator as one ``ValueError`` and split into one issue each by ``_issues``."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[str | int, ...], str, str]] = []
        super().__init__("several problems")

    def add(self, loc: tuple[str | int, ...], rule: str, message: str) -> None:
        self.items.append((loc, rule, message))

    def type_known(self, message_type: str, loc: tuple[str | int, ...]) -> bool:
        try:
            _known_type(message_type)
        except PydanticCustomError as exc:
            self.add(loc, exc.type, exc.message())
            return False
        return True

    def raise_if_any(self) -> None:
        if self.items:
            self.args = ("; ".join(message for _, _, message in self.items),)
            raise self


# ---------------------------------------------------------------- loading and issue reporting

_DICT_FIELDS = {"mapping", "examples", "profile_values", "templates"}


def _path(loc: Sequence[str | int]) -> str:
    """``('certificates', 1)`` → ``certificates[1]``; ``('mapping', 'dossier.sync')`` → ``mapping[dossier.sync]``."""
    parts = [p for p in loc if p != "[key]"]
    text = ""
    for index, part in enumerate(parts):
        if isinstance(part, int) or (index == 1 and parts[0] in _DICT_FIELDS):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "/"


def _node_line(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based YAML line of the node at ``loc`` (or of its nearest existing parent)."""
    node = root
    line = None if root is None else root.start_mark.line + 1
    for part in loc:
        if node is None or part == "[key]":
            break
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, val in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = val
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, path: str = "") -> list[Issue]:
    issues: list[Issue] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, val in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            where = f"{path}.{name}" if path else name
            if name in seen:
                issues.append(
                    Issue(
                        where,
                        "duplicate-key",
                        f"{name!r} is given twice; the last one would win",
                        key.start_mark.line + 1,
                    )
                )
            seen.add(name)
            issues.extend(_duplicate_keys(val, where))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            issues.extend(_duplicate_keys(item, f"{path}[{index}]"))
    return issues


def _issues(exc: ValidationError, root: yaml.Node | None) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _Problems):
            for sub, rule, message in ctx_error.items:
                issues.append(Issue(_path((*loc, *sub)), rule, message, _node_line(root, (*loc, *sub))))
            continue
        rule = error["type"]
        message = error["msg"]
        if rule == "value_error" and ctx_error is not None:
            message = str(ctx_error)
        issues.append(Issue(_path(loc), rule.replace("_", "-"), message, _node_line(root, loc)))
    return issues


def parse_spec(
    data: object,
    *,
    base_dir: Path | None = None,
    source: str = "connector",
    _root: yaml.Node | None = None,
) -> ConnectorSpec:
    """Validate an already-parsed connector declaration; raise ``SpecInvalidError`` with every problem.

    File paths (certificates, examples) are read relative to ``base_dir``; without one they are refused, so
    a spec posted over HTTP cannot make the hub read its own files.
    """
    if not isinstance(data, Mapping):
        raise SpecInvalidError(
            f"{source}: not a connector declaration",
            [Issue("/", "connector-spec", "the file must hold a mapping (code, name, kind, …)")],
        )
    issues = _duplicate_keys(_root)
    try:
        spec = ConnectorSpec.model_validate(dict(data), context={"base_dir": base_dir, "raw": data})
    except ValidationError as exc:
        issues.extend(_issues(exc, _root))
        spec = None
    if issues or spec is None:
        issues.sort(key=lambda i: (i.line or 0, i.path))
        raise SpecInvalidError(f"{source}: {len(issues)} problem(s) in the connector declaration", issues)
    return spec


def load_spec(path: Path | str) -> ConnectorSpec:
    """Read and validate a connector YAML file; raise ``SpecInvalidError`` listing every problem at once."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)  # never more than the cap, whatever the file's size
        if len(data) > MAX_SPEC_BYTES:
            raise _too_large(str(path))
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecInvalidError(f"cannot read {path}", [Issue("/", "file", f"cannot read {path}: {exc}")]) from None
    return loads_spec(text, base_dir=path.resolve().parent, source=str(path))


def loads_spec(text: str, *, base_dir: Path | None = None, source: str = "connector") -> ConnectorSpec:
    """``load_spec`` for YAML text (``base_dir``: where relative certificate/example paths point)."""
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8")) > MAX_SPEC_BYTES:
        raise _too_large(source)
    loader = _SpecLoader(text)
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except _YamlRefused as exc:
        raise SpecInvalidError(f"{source} is refused", [Issue("/", exc.rule, exc.message, exc.line)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecInvalidError(
            f"{source} is not valid YAML", [Issue("/", "yaml", f"not valid YAML: {problem}", line)]
        ) from None
    finally:
        loader.dispose()
    return parse_spec(data, base_dir=base_dir, source=source, _root=root)


def _too_large(source: str) -> SpecInvalidError:
    return SpecInvalidError(
        f"{source} is too large",
        [Issue("/", "yaml-size", f"a connector declaration may hold at most {MAX_SPEC_BYTES} bytes")],
    )


class _YamlRefused(Exception):
    """YAML that parses but that a connector declaration may not use (aliases, deep nesting)."""

    def __init__(self, rule: str, message: str, mark: Any) -> None:
        super().__init__(message)
        self.rule, self.message = rule, message
        self.line = None if mark is None else mark.line + 1


class _SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases and with a nesting limit: every node is composed once, so the document
    costs no more than its (size-capped) text."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _YamlRefused(
                "yaml-alias",
                f"YAML aliases (*{event.anchor}) are not allowed in a connector declaration; write the value out",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlRefused("yaml-depth", f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
