"""F2: citizen lookups answered synchronously (``POST /api/v1/lookups``).

The provincial system posts a signed ``citizen.lookup`` envelope; the hub verifies it against the sender's
pinned certificate, authorizes it like any intake (``sends: [citizen.lookup]``), refuses a lookup without an
officer, a dossier code or a purpose (422, rules ``lookup-officer-required`` / ``lookup-dossier-required`` /
``lookup-purpose-required``; Ninh Thuận Điều 28.2.b), calls the population DB connector that ``receives``
``citizen.lookup`` (``adapters.population_db``, as its profile says: ``c06/lgsp`` through the provincial LGSP, or
``c06/direct``) and answers with a hub-signed ``citizen.record`` envelope
(``application/xml``, correlation id = the lookup's message id). The wait is bounded by
``Settings.lookup_timeout_s`` (default 10 s): a slow population DB is answered 504, one that is down or failing
502 — never a hang.

A repeat (the same sender, message id and content) is answered with the first answer's very bytes, kept in
``lookup_answers``: the population DB is asked once per request, and the repeat is audited (result ``repeat``).

The record carries what a one-stop officer needs (name parts, sex, birth date, addresses, household head); of the
other fields the population DB answers, only those the connector's ``policy.extra_citizen_fields`` names are kept,
the rest is dropped before the record is signed (``CitizenRecord.minimised``).

Every lookup, answered or not, is a row in ``citizen_lookups`` (who, officer, dossier, procedure, purpose, the
subject's ID masked, result, returned fields, digest of the record). The message log keeps the lookup envelope
as received; of the ``citizen.record`` it keeps only an ``answered`` event with the record's digest and the list
of fields returned, unless the population DB connector's ``policy.keep_citizen_records`` is true (then the
signed reply envelope is logged too). Log lines carry no personal ID (``hub.logs`` masks them anyway), and
the lines and failure reasons of a lookup are masked for the citizen's name (a partner's error may echo it).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from adapters.base import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from adapters.population_db import PopulationDbAdapter
from hub import packets
from hub.errors import (
    ConflictError,
    EnvelopeInvalidError,
    Issue,
    NoRouteError,
    PartnerTimeoutError,
    PartnerUnavailableError,
    RejectedError,
)
from hub.logs import log_context, mask_ids, mask_personal
from hub.packets.citizen import CitizenLookup, CitizenRecord
from hub.security.envelope import EnvelopeHeader, body_payload, read_header
from hub.store import flow_records
from hub.xmlparse import parse_xml
from mappings.population_db import returned_fields

if TYPE_CHECKING:
    from adapters.base import Adapter
    from hub.exchange.routing import DestinationConfig
    from hub.services import Caller, HubService

log = logging.getLogger(__name__)

LOOKUP_TYPE, RECORD_TYPE = "citizen.lookup", "citizen.record"
PKT = "{urn:lienthong:packet:1}"
#: The fields a lookup must name (element, rule): Ninh Thuận Điều 28.2.b.
REQUIRED = (
    ("officerId", "lookup-officer-required", "the officer making the lookup"),
    ("dossierCode", "lookup-dossier-required", "the dossier the lookup is for"),
    ("purpose", "lookup-purpose-required", "the purpose of the lookup"),
)


def required_issues(payload: etree._Element) -> list[Issue]:
    """Issues for each of officer, dossier and purpose that is missing or blank."""
    issues = []
    for element, rule, what in REQUIRED:
        value = payload.findtext(PKT + element)
        if value is None or not value.strip():
            issues.append(
                Issue(
                    f"/envelope/body/citizenLookup/{element}",
                    rule,
                    f"{element} ({what}) is required for a citizen lookup (Ninh Thuận Điều 28.2.b)",
                )
            )
    return issues


def _payload_check(captured: dict[str, Any]):
    def check(header: EnvelopeHeader, payload: etree._Element) -> list[Issue]:
        captured["payload"] = payload
        if header.message_type != LOOKUP_TYPE:
            return [
                Issue("/envelope/header/messageType", "lookup-type", f"send a {LOOKUP_TYPE}, not {header.message_type}")
            ]
        return required_issues(payload) or packets.validate_element(LOOKUP_TYPE, payload)

    return check


def _unusable(adapter: Adapter) -> Callable[[CitizenLookup], CitizenRecord]:
    """A lookup through a connector that cannot be called as configured (``UnusableAdapter``): fails with why."""
    reason = getattr(adapter, "reason", f"{type(adapter).__name__} cannot answer citizen lookups")

    def fail(_lookup: CitizenLookup) -> CitizenRecord:
        raise TransientDeliveryError(reason)

    return fail


@dataclass(frozen=True)
class LookupAnswer:
    envelope: bytes
    record: CitizenRecord
    message_id: str


class LookupService:
    """One per API process (``HubService.lookups``): adapters per population DB connector, built once."""

    def __init__(self, hub: HubService) -> None:
        self.hub = hub
        self._adapters: dict[tuple[str, str], Adapter] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lookup")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for adapter in self._adapters.values():
            adapter.close()

    # ------------------------------------------------------------ helpers

    def adapter(self, code: str, destination: DestinationConfig, timeout_s: float) -> Adapter:
        """The connector's adapter as its profile says (``c06/lgsp`` or ``c06/direct``), built once per connector
        configuration and timeout (a changed profile, endpoint or credentials builds a new one)."""
        from adapters.registry import build_adapter

        config = destination.model_copy(update={"timeout_s": timeout_s})
        key = (code, config.model_dump_json(context={"secrets": True}))
        with self._lock:
            adapter = self._adapters.get(key)
            if adapter is None:
                adapter = self._adapters[key] = build_adapter(config)
            return adapter

    def _source(self, sender: str):
        """The population DB connector (registry ``Connector``) that receives citizen.lookup."""
        routing = self.hub.runtime.routing
        for code in routing.destinations_for(LOOKUP_TYPE, sender):
            connector = self.hub.registry.get(code)
            if connector is not None and str(connector.kind) == "population_db":
                return connector
        return None

    def _audit(self, caller: Caller, lookup: CitizenLookup | None, payload: etree._Element | None, **row: Any) -> None:
        def text(element: str) -> str | None:
            return None if payload is None else (payload.findtext(PKT + element) or None)

        subject = None
        if lookup is not None:
            subject = mask_ids(lookup.personal_id or lookup.old_id or "")
        elif payload is not None:
            subject = mask_ids(text("personalId") or text("oldId") or "") or None
        flow_records.record_lookup(
            self.hub.store.engine,
            requester=caller.code or caller.name,
            request_id=lookup.request_id if lookup else text("requestId"),
            officer_id=lookup.officer_id if lookup else text("officerId"),
            dossier_code=lookup.dossier_code if lookup else text("dossierCode"),
            procedure_code=lookup.procedure_code if lookup else text("procedureCode"),
            purpose=lookup.purpose if lookup else text("purpose"),
            subject=subject,
            **row,
        )

    # ------------------------------------------------------------ the lookup

    def lookup(self, caller: Caller, data: bytes) -> LookupAnswer:
        """Verify, authorize, audit, call the population DB and answer a signed citizen.record (or raise
        ``RejectedError``: ``NoRouteError``, ``PartnerTimeoutError``, ``PartnerUnavailableError``…)."""
        started = time.monotonic()
        hub = self.hub
        authorize = hub.authorizer(caller)
        root = parse_xml(data, hub.limits)
        try:
            authorize(read_header(root, validate=False))
        except EnvelopeInvalidError:
            pass  # verification reports it with the details
        captured: dict[str, Any] = {}
        try:
            verified = hub.runtime.verifier().verify(data, _payload_check(captured))
            authorize(verified.header)  # only a connector passes: its createdAt window next
            caller.connector.spec.freshness.check(verified.header, hub.runtime.verifier().clock())
        except RejectedError as exc:
            if any(i.rule.startswith("lookup-") for i in exc.issues):
                rules = ", ".join(i.rule for i in exc.issues if i.rule.startswith("lookup-"))
                self._audit(caller, None, captured.get("payload"), message_id=exc.message_id, result="refused",
                            detail=f"refused: {rules}")  # fmt: skip
            raise
        header = verified.header
        lookup = packets.from_element(LOOKUP_TYPE, verified.payload)
        assert isinstance(lookup, CitizenLookup)
        # every line logged from here on, and the reasons kept, are masked for the citizen's name too
        with log_context(names=[lookup.full_name]):
            return self._answer(caller, data, header, lookup, started)

    def _answer(
        self, caller: Caller, data: bytes, header: EnvelopeHeader, lookup: CitizenLookup, started: float
    ) -> LookupAnswer:
        """The verified, authorized lookup: from the first answer if it is a repeat, else from the population DB."""
        hub = self.hub
        request_digest = flow_records.digest(data)
        first = flow_records.first_answer(hub.store.engine, header.sender, header.message_id, request_digest)
        if first is not None:
            return self._repeat(caller, lookup, first, started)
        source = self._source(header.sender)
        if source is None or source.destination() is None:
            self._audit(caller, lookup, None, message_id=header.message_id, result="refused",
                        detail="no population DB connector receives citizen.lookup")  # fmt: skip
            raise NoRouteError(
                f"no population DB connector receives {LOOKUP_TYPE} from {header.sender}",
                [Issue("/envelope/header/messageType", "no-route", "no population DB connector is registered")],
                message_id=header.message_id,
            )
        stored = hub.store.accept(
            sender=header.sender,
            message_id=header.message_id,
            correlation_id=header.correlation_id,
            message_type=header.message_type,
            receiver=header.receiver,
            dossier_code=header.dossier_code or lookup.dossier_code,
            envelope=data,
            destinations=(),
        )
        if stored.outcome == "conflict":
            raise ConflictError(
                f"message {header.message_id} was accepted before with other content",
                [Issue("/envelope/header/messageId", "idempotency-conflict", "same id, other content")],
                message_id=header.message_id,
            )
        destination = source.destination()
        assert destination is not None  # checked above
        timeout_s = min(hub.settings.lookup_timeout_s, source.spec.timeout_s)
        adapter = self.adapter(source.code, destination, timeout_s)
        call = adapter.lookup if isinstance(adapter, PopulationDbAdapter) else _unusable(adapter)
        future = self._pool.submit(contextvars.copy_context().run, call, lookup)  # masked there too
        audit = {"message_id": header.message_id, "source": source.code}
        try:
            record = future.result(timeout=timeout_s + 1.0)
        except (FutureTimeout, DeliveryError) as exc:
            elapsed = int((time.monotonic() - started) * 1000)
            timed_out = isinstance(exc, FutureTimeout) or type(exc).__name__ == "LookupTimeoutError"
            reason = (
                f"the population DB did not answer within {timeout_s:g} s" if timed_out else mask_personal(str(exc))
            )
            self._event(stored, "lookup-failed", reason)
            self._audit(caller, lookup, None, result="timeout" if timed_out else "error", detail=reason,
                        duration_ms=elapsed, **audit)  # fmt: skip
            log.warning("citizen lookup failed message_id=%s connector=%s: %s", header.message_id, source.code, reason)
            rule = "partner-timeout" if timed_out else (
                "partner-refused" if isinstance(exc, PermanentDeliveryError) else "partner-unavailable"
            )  # fmt: skip
            failed = PartnerTimeoutError if timed_out else PartnerUnavailableError
            raise failed(
                reason,
                [Issue("/", rule, reason)],
                message_id=header.message_id,
            ) from None
        # data minimisation: only what the connector's policy lets through beyond the officer's needs is signed
        record = record.minimised(source.spec.policy.extra_citizen_fields)
        reply_header = EnvelopeHeader(
            correlation_id=header.message_id,
            sender=hub.settings.hub_code,
            receiver=header.sender,
            message_type=RECORD_TYPE,
            dossier_code=lookup.dossier_code,
            user_id=lookup.officer_id,
        )
        from hub.security.signing import sign_payload

        signed = sign_payload(hub.runtime.signer(), reply_header, packets.to_element(record))
        envelope = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
        fields = returned_fields(record)
        record_digest = flow_records.digest(envelope)
        flow_records.keep_answer(
            hub.store.engine, requester=header.sender, message_id=header.message_id, request_digest=request_digest,
            reply_message_id=reply_header.message_id, source=source.code, result=record.result.value, fields=fields,
            record_digest=record_digest, envelope=envelope,
        )  # fmt: skip
        self._event(
            stored,
            "answered",
            f"{RECORD_TYPE} message_id={reply_header.message_id} result={record.result.value} "
            f"sha256={record_digest} fields={','.join(fields) or '-'}",
        )
        if source.spec.policy.keep_citizen_records:
            hub.store.accept(
                sender=reply_header.sender,
                message_id=reply_header.message_id,
                correlation_id=reply_header.correlation_id,
                message_type=RECORD_TYPE,
                receiver=reply_header.receiver,
                dossier_code=reply_header.dossier_code,
                envelope=envelope,
                destinations=(),
            )
        self._audit(caller, lookup, None, result=record.result.value, fields=fields, record_digest=record_digest,
                    duration_ms=int((time.monotonic() - started) * 1000), **audit)  # fmt: skip
        log.info(
            "citizen lookup answered message_id=%s connector=%s result=%s", header.message_id, source.code,
            record.result.value,
        )  # fmt: skip
        return LookupAnswer(envelope, record, reply_header.message_id)

    def _repeat(
        self, caller: Caller, lookup: CitizenLookup, first: flow_records.LookupAnswer, started: float
    ) -> LookupAnswer:
        """A lookup sent again (same id and content): the first answer's very bytes, the population DB not asked
        again, an audit row ``repeat`` naming what was disclosed (fields, record digest) and the first result."""
        root = parse_xml(first.envelope)
        record = packets.from_element(RECORD_TYPE, body_payload(root))
        assert isinstance(record, CitizenRecord)
        self._audit(caller, lookup, None, message_id=first.message_id, source=first.source, result="repeat",
                    detail=f"repeat: answered again with {RECORD_TYPE} message_id={first.reply_message_id} "
                    f"(result={first.result}); the population DB was not asked",
                    fields=first.fields, record_digest=first.record_digest,
                    duration_ms=int((time.monotonic() - started) * 1000))  # fmt: skip
        log.info("citizen lookup repeated message_id=%s connector=%s result=%s: first answer sent again",
                 first.message_id, first.source, first.result)  # fmt: skip
        return LookupAnswer(first.envelope, record, first.reply_message_id)

    def _event(self, stored: Any, state: str, detail: str) -> None:
        if stored.message_pk is not None:
            self.hub.store.record_event(stored.message_pk, state, detail=detail)
