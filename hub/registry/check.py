"""The onboarding check behind ``hub connector check CODE``: what passed, what should be looked at, what must be
fixed before a connector goes live.

For every type the connector sends, its example packets (the spec's ``examples``, else the hub's built-in
sample) go through verification (when the example is a signed envelope: signature, pinned certificate and
the connector's grants), validation (XSD + domain rules) and mapping (the profile must exist). A partner
profile's values (``profile_values``) are checked against its definition: a required one unset or an unknown key
must be fixed, one left at a default no public source confirms is a warning. Its
certificates must load, meet the key policy and be valid (a warning under 30 days), and so must the certificates
that sign a ministry's results (``result_signers``; a ministry sending ``dossier.status`` without any is warned
about: its results would be forwarded unchecked), and the certificates that sign a payment connector's e-receipts
(``receipt_signers``; none where its profile says receipts are signed fails: every receipt would be held, and a
profile that says they are not is warned about). Where the partner has an endpoint, a harmless ``OPTIONS`` request
checks that it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography import x509

from hub.errors import KeyMaterialError, LienthongError, MappingError, RejectedError
from hub.registry.core import Connector, Registry
from hub.registry.spec import KNOWN_PROFILES
from hub.security.credentials import redact_url
from hub.security.signing import TrustStore

if TYPE_CHECKING:
    from mappings.profiles import Profile

Status = Literal["ok", "warn", "fail"]
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True, slots=True)
class CheckItem:
    status: Status
    area: str  # connector, grants, example, mapping, profile, certificate, result-signers, result-hosts,
    # templates, endpoint
    message: str

    @property
    def mark(self) -> str:
        return {"ok": "✓", "warn": "!", "fail": "✗"}[self.status]


@dataclass
class CheckReport:
    code: str
    items: list[CheckItem] = field(default_factory=list)

    def add(self, status: Status, area: str, message: str) -> None:
        self.items.append(CheckItem(status, area, message))

    @property
    def failures(self) -> list[CheckItem]:
        return [i for i in self.items if i.status == "fail"]

    @property
    def warnings(self) -> list[CheckItem]:
        return [i for i in self.items if i.status == "warn"]

    @property
    def ok(self) -> bool:
        """Nothing must be fixed (warnings allowed)."""
        return not self.failures


def run_check(
    registry: Registry,
    code: str,
    *,
    trust: TrustStore | None = None,
    probe_timeout_s: float = 3.0,
    probe: bool = True,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> CheckReport:
    """Check connector ``code``; raises ``UnknownConnectorError`` when it is not registered.

    ``trust``: the hub's trust store (anchors and pins) for signed examples; by default only the registry's
    pinned certificates. ``probe=False`` skips the endpoint request.
    """
    connector = registry.require(code)
    report = CheckReport(code)
    now = clock()
    _check_state(report, connector)
    _check_examples(report, registry, connector, trust if trust is not None else registry.trust_store(), now)
    _check_mapping(report, connector)
    _check_profile(report, connector)
    _check_certificates(report, connector, now)
    _check_result_signers(report, connector, now)
    _check_receipt_signers(report, connector, now)
    _check_notification(report, connector)
    if probe:
        _check_endpoint(report, connector, probe_timeout_s)
    return report


def _check_state(report: CheckReport, c: Connector) -> None:
    if c.enabled:
        report.add("ok", "connector", f"{c.code} ({c.kind}, {c.name}) is enabled")
    else:
        report.add("warn", "connector", f"{c.code} is disabled: its key does not authenticate, nothing is routed to it")
    if c.api_key_prefix:
        report.add("ok", "connector", f"API key issued (id {c.api_key_prefix})")
    else:
        report.add("fail", "connector", "no API key: run `hub connector rotate-key` to issue one")
    if not c.sends and not c.receives:
        report.add("warn", "grants", "sends nothing and receives nothing")
    if c.receives and c.spec.endpoint is None:
        report.add(
            "warn", "grants", f"receives {', '.join(c.receives)} but has no endpoint: nothing is delivered to it"
        )


def _examples_for(c: Connector, message_type: str) -> list[tuple[str, bytes | None, str | None]]:
    """(label, bytes or None when unreadable, error) for each example of ``message_type``."""
    from hub import packets

    files = c.spec.examples.get(message_type)
    if not files:
        return [(f"built-in {message_type} sample", packets.to_xml(packets.example(message_type)), None)]
    found: list[tuple[str, bytes | None, str | None]] = []
    for file in files:
        try:
            found.append((Path(file).name, Path(file).read_bytes(), None))
        except OSError as exc:
            found.append((Path(file).name, None, f"cannot read {file}: {exc.strerror}"))
    return found


def _fixed_profile(name: str) -> Callable[[object], str]:
    """A profile resolver naming ``name`` whoever the header says sent it: the connector under check sent it."""
    return lambda _header: name


def _check_examples(report: CheckReport, registry: Registry, c: Connector, trust: TrustStore, now: datetime) -> None:
    import mappings
    from hub import packets
    from hub.exchange.pipeline import Acceptor
    from hub.security.envelope import ENVELOPE_TAG, body_payload
    from hub.security.signing import EnvelopeVerifier
    from hub.xmlparse import parse_xml

    if not c.sends:
        return
    verifier = EnvelopeVerifier(trust, clock=lambda: now)
    for message_type in c.sends:
        profile = c.spec.profile_for(message_type)
        for label, data, error in _examples_for(c, message_type):
            where = f"{message_type} example {label}"
            if data is None:
                report.add("fail", "example", f"{where}: {error}")
                continue
            try:
                root = parse_xml(data)
            except RejectedError as exc:
                report.add("fail", "example", f"{where}: {exc.issues[0]}")
                continue
            mapping = mappings.inbound_mapping(profile, message_type)
            if root.tag == ENVELOPE_TAG:
                try:
                    verified = verifier.verify(data, Acceptor.payload_check(_fixed_profile(profile)))
                except RejectedError as exc:
                    report.add("fail", "example", f"{where}: rejected: " + "; ".join(map(str, exc.issues[:3])))
                    continue
                denied = registry.authorize(c, verified.header)
                if verified.header.message_type != message_type:
                    report.add("fail", "example", f"{where}: the envelope carries {verified.header.message_type}")
                    continue
                if denied:
                    report.add("fail", "example", f"{where}: not allowed: " + "; ".join(str(i) for i in denied))
                    continue
                report.add(
                    "ok", "example",
                    f"{where}: signature verified (signed by {verified.signer}, {verified.trusted_as}), "
                    f"payload valid, allowed",
                )  # fmt: skip
            else:
                if mapping is not None and root.tag == mapping.root:
                    issues = mapping.issues(root)
                else:
                    issues = packets.validate_element(message_type, root)
                if issues:
                    shown = "; ".join(str(i) for i in issues[:3])
                    more = f" (and {len(issues) - 3} more)" if len(issues) > 3 else ""
                    report.add("fail", "example", f"{where}: invalid: {shown}{more}")
                    continue
                report.add("ok", "example", f"{where}: valid payload (unsigned, so no signature to verify)")
            if profile in KNOWN_PROFILES:
                body = body_payload(root) if root.tag == ENVELOPE_TAG else root
                how = "mapped to canonical" if mapping is not None and body.tag == mapping.root else "canonical"
                report.add("ok", "mapping", f"{where}: {how} with profile {profile!r}")


def _check_mapping(report: CheckReport, c: Connector) -> None:
    known = ", ".join(sorted(KNOWN_PROFILES))
    for message_type in dict.fromkeys((*c.sends, *c.receives)):
        profile = c.spec.profile_for(message_type)
        if profile not in KNOWN_PROFILES:
            report.add("fail", "mapping", f"{message_type}: unknown mapping profile {profile!r} (known: {known})")


def _check_profile(report: CheckReport, c: Connector) -> None:
    """The partner profile's values: unset required ones and unknown keys must be fixed; a value left at a
    default no public source confirms is to be looked at."""
    from mappings import profiles

    if c.spec.profile is None:
        if c.kind == "national_portal" and c.spec.endpoint is not None and c.spec.endpoint.transport == "json":
            names = ", ".join(p.name for p in profiles.profiles_for(c.kind))
            report.add(
                "warn", "profile",
                f"no partner profile: the hub's own portal format (schemas/national-portal/hub-v1), which the real "
                f"portal does not speak; choose one of {names}",
            )  # fmt: skip
        if c.kind == "population_db":
            report.add(
                "warn", "profile",
                "no partner profile: called as c06/direct with its sourced defaults; the sources reach the "
                "population DB through the provincial LGSP (c06/lgsp, PARTNER-FORMATS §2)",
            )  # fmt: skip
            _check_population_db(report, c)
        if c.kind == "postal" and c.spec.endpoint is not None:
            names = ", ".join(p.name for p in profiles.profiles_for(c.kind))
            report.add("fail", "profile", f"no partner profile: a postal connector speaks VNPost's interface ({names})")
        if c.kind == "payment":
            names = ", ".join(p.name for p in profiles.profiles_for(c.kind))
            report.add(
                "warn", "profile",
                "no partner profile: every message kind goes to endpoint.url with the paygov/1.0.6 defaults; name "
                f"the profile the platform speaks ({names}) and its URL per message kind",
            )  # fmt: skip
        return
    try:
        profile = profiles.get_profile(c.spec.profile)
    except profiles.UnknownProfileError as exc:
        report.add("fail", "profile", str(exc))
        return
    findings = profiles.check(profile, c.spec.profile_values)
    for finding in findings:
        report.add(finding.status, "profile", f"{profile.ref}: {finding.message}")
    if not any(f.status == "fail" for f in findings):
        given = len(c.spec.profile_values)
        report.add("ok", "profile", f"{profile.ref} ({profile.summary}): {given} value(s) set, every required one")
    if profile.name.startswith("dvcqg/"):
        _check_portal_records(report, c, profile.ref)
    if profile.kind == "population_db" and not any(f.status == "fail" for f in findings):
        _check_population_db(report, c)
    if profile.name.startswith("vnpost/") and not any(f.status == "fail" for f in findings):
        _check_postal_order(report, c, profile)


def _check_population_db(report: CheckReport, c: Connector) -> None:
    """The population DB connector's adapter as the worker and the lookups build it (its profile values, the LGSP's
    credentials, the officers file), and the hub's citizen.lookup sample mapped with it."""
    from adapters.base import DeliveryError
    from adapters.population_db import PopulationDbAdapter
    from adapters.registry import build_adapter
    from hub import packets
    from hub.packets.citizen import CitizenLookup

    destination = c.destination()
    if destination is None:
        return
    adapter = build_adapter(destination)
    try:
        if not isinstance(adapter, PopulationDbAdapter):
            report.add("fail", "profile", getattr(adapter, "reason", f"{c.code} cannot be called"))
            return
        sample = packets.example("citizen.lookup")
        assert isinstance(sample, CitizenLookup)
        if adapter.officers and sample.officer_id not in adapter.officers:  # one the officers file lists
            sample = sample.model_copy(update={"officer_id": next(iter(adapter.officers))})
        try:
            request, _ = adapter.request_for(sample)
        except DeliveryError as exc:  # e.g. the sample's procedure has no MaDVC in service_codes
            report.add("warn", "profile", f"the citizen.lookup sample cannot be sent: {exc}")
            return
        report.add("ok", "profile", f"the citizen.lookup sample maps to TraCuuThongTinCongDan (MaTichHop "
                                    f"{request['MaTichHop']}, HoVaTen {request['HoVaTen']!r})")  # fmt: skip
    finally:
        adapter.close()


def _check_portal_records(report: CheckReport, c: Connector, ref: str) -> None:
    """The hub's sample of each type the portal receives, mapped as the profile sends it and checked against the
    sourced record schema (``schemas/national-portal/``)."""
    from hub import packets
    from mappings import dvcqg, outbound_mapping

    for message_type in c.receives:
        mapping = outbound_mapping(dvcqg.KIND, message_type)
        if mapping is None:
            report.add("fail", "profile", f"{ref}: the portal takes no {message_type}")
            continue
        call = mapping.to_partner(packets.example(message_type))
        assert isinstance(call, dvcqg.DvcqgCall)
        service, record = call.service, call.record
        issues = dvcqg.validate_record(service, record)
        if issues:
            shown = "; ".join(f"{i.field}: {i.message}" for i in issues[:3])
            report.add("fail", "profile", f"{ref}: the {message_type} sample as {service} breaks its schema: {shown}")
        else:
            report.add("ok", "profile", f"{ref}: the {message_type} sample maps to a valid {service} record")


def _check_postal_order(report: CheckReport, c: Connector, profile: Profile) -> None:
    """The profile's values parsed (``status_map``, ``area_codes``, ``item_codes``…), and the hub's sample
    postal.order mapped as VNPost takes it (CustomerCode, ItemCode, VNPost's integer area codes)."""
    from hub import packets
    from hub.packets.postal import PostalOrder
    from mappings import postal, profiles

    order = packets.example("postal.order")
    assert isinstance(order, PostalOrder)
    try:
        options = postal.VnpostOptions.from_settings(profiles.resolve(profile, c.spec.profile_values))
        body = postal.order_body(postal.to_order(order), options, order.item_code)
    except MappingError as exc:
        report.add("fail", "profile", f"{profile.ref}: the postal.order sample cannot be sent: {exc}")
        return
    areas = ", ".join(f"{k} {body[k]}" for k in postal.AREA_FIELDS)
    pool = f"{len(options.item_codes)} pre-issued ItemCode(s)" if options.send_item_code else "no ItemCode"
    report.add("ok", "profile", f"{profile.ref}: the postal.order sample maps to a VNPost order ({areas}; {pool})")


def _check_certificates(report: CheckReport, c: Connector, now: datetime) -> None:
    if not c.certificates:
        if c.sends and c.kind in ("provincial", "ministry"):
            report.add(
                "warn", "certificate",
                "no certificate registered: its envelopes are trusted through the CA only, not pinned",
            )  # fmt: skip
        return
    for info in c.certificates:
        try:
            cert = info.certificate
        except ValueError:
            report.add("fail", "certificate", f"{info.fingerprint[:16]}…: cannot be loaded")
            continue
        _check_validity(report, "certificate", cert, info.fingerprint, now)


def _check_result_signers(report: CheckReport, c: Connector, now: datetime) -> None:
    """The certificates that sign a ministry's results (``result_signers``, ``hub.exchange.results``)."""
    from hub.security import keys

    if not c.spec.result_signers:
        if c.kind == "ministry" and "dossier.status" in c.sends:
            report.add(
                "warn", "result-signers",
                "no result_signers: the result documents of its finished updates are forwarded unchecked "
                "(Quảng Nam Điều 16.3 requires the competent agency's signature)",
            )  # fmt: skip
        return
    for pem in c.spec.result_signers:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        _check_validity(report, "result-signers", cert, keys.fingerprint(cert), now)
    hosts = c.spec.result_host_list()
    if not hosts.patterns:
        report.add("warn", "result-hosts", "no result_hosts and no endpoint: every result link is held "
                   "(result-host-not-allowed); list the hosts that serve its result files")  # fmt: skip
    elif not c.spec.result_hosts:
        report.add("ok", "result-hosts", f"result links fetched only from its endpoint's host {hosts} (the default; "
                   "an internal address only once result_hosts names the host)")  # fmt: skip
    else:
        report.add("ok", "result-hosts", f"result links fetched only from {hosts}")


def _check_receipt_signers(report: CheckReport, c: Connector, now: datetime) -> None:
    """The certificates that sign a payment connector's e-receipts (``receipt_signers``, ``hub.flows.receipts``)
    against what its profile says (``receipt_signed``): the receipt rule, Quảng Nam Điều 14.3."""
    from hub.security import keys
    from mappings import payment as pm

    if c.kind != "payment":
        return
    required = pm.receipt_signed(c.spec.profile, c.spec.profile_values)
    if not required:
        report.add(
            "warn", "receipt-signers",
            "receipt_signed is false: an unsigned e-receipt moves the dossier 6 → 4 (Quảng Nam Điều 14.3, Tiền Giang "
            "Điều 17.5, Ninh Thuận Điều 18.2 require the intermediary's signature); a signature that is there must "
            "still be by one of receipt_signers",
        )  # fmt: skip
    if not c.spec.receipt_signers:
        if required:
            report.add(
                "fail", "receipt-signers",
                "no receipt_signers while the profile says receipts are signed: every e-receipt would be held "
                "(receipt-signer-not-registered) and no paid dossier would leave status 6; register the "
                "intermediary's certificate",
            )  # fmt: skip
        return
    for pem in c.spec.receipt_signers:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        _check_validity(report, "receipt-signers", cert, keys.fingerprint(cert), now)


def _check_validity(report: CheckReport, area: str, cert: x509.Certificate, fingerprint: str, now: datetime) -> None:
    """A registered certificate: the key policy, and valid now (a warning under ``EXPIRY_WARNING_DAYS``)."""
    from hub.security import keys
    from hub.security.signing import check_key_policy

    name = f"{keys.common_name(cert)} ({fingerprint[:16]}…)"
    try:
        check_key_policy(cert.public_key(), name)
    except KeyMaterialError as exc:
        report.add("fail", area, str(exc))
        return
    if now < cert.not_valid_before_utc:
        report.add("fail", area, f"{name} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    elif now > cert.not_valid_after_utc:
        report.add("fail", area, f"{name} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    else:
        days = (cert.not_valid_after_utc - now).days
        status: Literal["ok", "warn"] = "warn" if days < EXPIRY_WARNING_DAYS else "ok"
        soon = "; rotate it soon" if status == "warn" else ""
        report.add(
            status, area,
            f"{name}: key policy met, valid until {cert.not_valid_after_utc:%Y-%m-%d} ({days} days){soon}",
        )  # fmt: skip


def _check_notification(report: CheckReport, c: Connector) -> None:
    """A notification connector's templates, its own and the shipped ones, render for a sample dossier (in its
    channel, for every event it notifies), with no ID number in the text."""
    if c.kind != "notification" or c.spec.profile is None:
        return
    from adapters.notification import CHANNEL_OF_PROFILE
    from hub.errors import MappingError
    from mappings import notification, profiles

    channel = CHANNEL_OF_PROFILE.get(profiles.get_profile(c.spec.profile).name)
    if channel is None:
        return
    events = sorted(notification.connector_events(c.spec.profile, c.spec.profile_values.get("events")))
    try:
        templates = notification.Templates(c.spec.templates)
        for event in events:
            sample = notification.sample_notice(event)
            text = templates.render(sample, channel).text
            assert sample.applicant is not None
            if any(i in text for i in sample.applicant.ids):  # scrub() makes this impossible; checked all the same
                report.add("fail", "templates", f"{event}.{channel}: the text carries the applicant's ID")
                return
    except MappingError as exc:
        report.add("fail", "templates", str(exc))
        return
    own = sorted(n for n in c.spec.templates if n.endswith(f".{channel}"))
    whose = f"the connector's own for {', '.join(own)}, the shipped ones for the rest" if own else "the shipped ones"
    report.add("ok", "templates", f"{channel} notifications for {', '.join(events) or 'no event'} render ({whose})")


def _check_smtp(report: CheckReport, c: Connector, timeout_s: float) -> None:
    """An SMTP endpoint: greeted, upgraded and logged in as the adapter would (``adapters.smtp.probe``)."""
    from adapters.base import DeliveryError
    from adapters.smtp import SmtpRelay, probe
    from mappings import profiles

    assert c.spec.endpoint is not None
    values: Mapping[str, str] = c.spec.profile_values
    if c.spec.profile is not None:
        try:
            values = profiles.resolve(profiles.get_profile(c.spec.profile), c.spec.profile_values)
        except profiles.ProfileValueError:
            pass  # reported by _check_profile; probe with what is given
    creds = c.spec.endpoint.credentials
    try:
        relay = SmtpRelay.from_url(
            c.spec.endpoint.url, starttls=values.get("starttls", "required"), ca_file=values.get("tls_ca_file"),
            username=creds.username if creds else None,
            password=creds.password.get_secret_value() if creds else None, timeout_s=timeout_s,
        )  # fmt: skip
        report.add("ok", "endpoint", probe(relay))
    except (ValueError, DeliveryError) as exc:
        report.add("fail", "endpoint", f"endpoint unusable: {exc}")


def _check_endpoint(report: CheckReport, c: Connector, timeout_s: float) -> None:
    import httpx

    if c.spec.endpoint is None:
        return
    if c.spec.endpoint.transport == "smtp":
        _check_smtp(report, c, timeout_s)
        return
    url = redact_url(c.spec.endpoint.url)  # as the report shows it: never user information, whatever was stored
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            response = client.request("OPTIONS", c.spec.endpoint.url)
    except httpx.ConnectError as exc:
        report.add("fail", "endpoint", f"endpoint unreachable: {url} ({exc})")
        return
    except httpx.TimeoutException:
        report.add("fail", "endpoint", f"endpoint unreachable: {url} did not answer within {timeout_s:g}s")
        return
    except (httpx.HTTPError, LienthongError) as exc:
        report.add("fail", "endpoint", f"endpoint unreachable: {url}: {exc}")
        return
    if response.status_code >= 500:
        report.add("warn", "endpoint", f"{url} answered OPTIONS with HTTP {response.status_code}")
    else:
        report.add("ok", "endpoint", f"{url} answered OPTIONS with HTTP {response.status_code}")
