"""The exchange core end to end, against both broker backends and a real HTTP sink partner on 127.0.0.1:
accept → route → queue → worker → map/sign as the hub → deliver → record → ack; retries, dead letters, replay,
idempotency and the outbox relay."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lxml import etree

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest
from broker.base import BrokerError, BrokerUnavailable, connect
from hub import packets
from hub.config import Settings
from hub.devtools.sink import SinkServer
from hub.errors import ConflictError, EnvelopeInvalidError, NoRouteError
from hub.exchange.pipeline import Acceptor, GroupCommitter, Relay
from hub.exchange.worker import OutboundBuilder, Worker
from hub.runtime import Runtime, replay_dead_letters
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import EnvelopeVerifier, Signer, TrustStore, sign_payload
from hub.store import DeadLetter
from tests.support import issue_signer, open_pipeline, signed_envelope, sink_stats, wait_for, write_routes
from tests.support import sink_control as control

PROVINCE, PORTAL = "000.00.00.H12", "000.00.00.G22"


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker_kind(request) -> str:
    return request.param


@dataclass
class Exchange:
    settings: Settings
    runtime: Runtime
    acceptor: Acceptor
    worker: Worker
    province_signer: Signer
    sink: SinkServer
    destination: str

    def envelope(self, message_type: str = "dossier.sync", message_id: str | None = None, payload=None) -> bytes:
        return signed_envelope(self.province_signer, sender=PROVINCE, receiver=PORTAL, message_type=message_type,
                               payload=payload, **({"message_id": message_id} if message_id else {}))  # fmt: skip

    def drain(self, seconds: float = 5.0, until=None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = self.runtime.broker.consume(self.worker.destinations, prefetch=64, timeout_s=0.2)
            if batch:
                self.worker.process_batch(batch)
            elif until is None or until():
                return


@pytest.fixture
def exchange(request, tmp_path: Path, broker_kind: str, sink: SinkServer, province_signer: Signer,
             migrated_copy) -> Iterator[Exchange]:  # fmt: skip
    if broker_kind == "rabbitmq":
        broker_url = request.getfixturevalue("rabbitmq_url")
    else:
        broker_url = "embedded"
    destination = PORTAL if broker_kind == "embedded" else f"{PORTAL}.{uuid.uuid4().hex[:8]}"
    routes = write_routes(
        tmp_path / "routes.yaml",
        {destination: {"endpoint": sink.url, "retry_delays_s": [0.3, 0.3], "jitter": 0.1, "circuit_failures": 50}},
        [{"type": t, "sender": PROVINCE, "to": [destination]} for t in ("dossier.sync", "dossier.status")],
    )
    settings = Settings(
        broker_url=broker_url, database_url=f"sqlite:///{migrated_copy(tmp_path / 'store.db')}", routes_file=routes,
        data_dir=tmp_path / "var", hub_code="000.00.00.H00",
    )  # fmt: skip
    runtime, acceptor, worker = open_pipeline(settings)
    yield Exchange(settings, runtime, acceptor, worker, province_signer, sink, destination)
    worker.close()
    if broker_kind == "rabbitmq":
        runtime.broker.delete([destination])
    runtime.close()


def test_hub_created_messages_are_injected_without_verifying_the_hubs_own_signature(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub verified a message it had just signed itself")

    monkeypatch.setattr(exchange.runtime.verifier(), "verify", never)
    assert exchange.runtime.acceptor() is exchange.acceptor  # one acceptor per runtime
    header = EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
    accepted = exchange.runtime.inject(header, packets.example("dossier.sync"))
    assert accepted.destinations == (exchange.destination,) and not accepted.duplicate
    trace = exchange.runtime.store.trace(header.message_id, PROVINCE)
    assert [e.state for e in trace.events][:3] == ["received", "validated", "queued"]
    stored = exchange.runtime.store.delivery(trace.deliveries[0].delivery_id).envelope
    # The header names the province; the hub's certificate (pinned here) names the hub: stored as the hub signed it.
    hub_cert = TrustStore.from_path(Path(exchange.settings.data_dir) / "keys" / "hub.pem")
    assert EnvelopeVerifier(hub_cert).verify(stored).signer == "hub"
    # Still checked against the packet schema, and still routed: a bad body or an unrouted type is refused.
    with pytest.raises(EnvelopeInvalidError) as invalid:
        exchange.runtime.inject(
            EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync"),
            packets.to_element(packets.example("dossier.status")),
        )
    assert invalid.value.issues
    with pytest.raises(NoRouteError):
        exchange.runtime.inject(
            EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="postal.status"),
            packets.example("postal.status"),
        )


def test_accepted_messages_are_delivered_once_signed_by_the_hub(exchange: Exchange) -> None:
    ids = [exchange.acceptor.accept(exchange.envelope()).message_id for _ in range(20)]
    exchange.drain(until=lambda: sink_stats(exchange.sink)["unique"] >= 20)
    stats = sink_stats(exchange.sink)
    assert set(stats["first_seen"]) == set(ids)
    assert stats["duplicates"] == 0
    trace = exchange.runtime.store.trace(ids[0], PROVINCE)
    states = [e.state for e in trace.events]
    assert states[:3] == ["received", "validated", "queued"]
    assert "delivered" in states
    # What was sent is kept exactly, and it is signed by the hub, with the partner's message id.
    view = exchange.runtime.store.delivery(trace.deliveries[0].delivery_id)
    hub_ca = TrustStore.from_path(Path(exchange.settings.data_dir) / "keys" / "ca.pem")
    verified = EnvelopeVerifier(hub_ca).verify(view.outbound)
    assert verified.header.sender == "000.00.00.H00"
    assert verified.header.message_id == ids[0]
    assert verified.signer == "hub"


def test_resend_is_idempotent_and_other_content_conflicts(exchange: Exchange) -> None:
    data = exchange.envelope(message_id="msg-0001")
    first = exchange.acceptor.accept(data)
    again = exchange.acceptor.accept(data)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.message_id == first.message_id
    other = exchange.envelope(message_id="msg-0001", message_type="dossier.status")
    with pytest.raises(ConflictError) as exc:
        exchange.acceptor.accept(other)
    assert exc.value.message_id == "msg-0001"
    exchange.drain(until=lambda: sink_stats(exchange.sink)["unique"] >= 1)
    exchange.drain(1.0)
    assert sink_stats(exchange.sink)["received"] == 1


def test_no_route_is_rejected_with_the_reason(exchange: Exchange) -> None:
    with pytest.raises(NoRouteError) as exc:
        exchange.acceptor.accept(exchange.envelope("postal.status"))
    assert exc.value.issues[0].rule == "no-route"


def test_partner_5xx_is_retried_then_delivered(exchange: Exchange) -> None:
    control(exchange.sink, status=503, count=2)
    message_id = exchange.acceptor.accept(exchange.envelope()).message_id
    exchange.drain(10, until=lambda: sink_stats(exchange.sink)["unique"] >= 1)
    assert sink_stats(exchange.sink)["unique"] == 1
    assert sink_stats(exchange.sink)["failed"] == 2
    trace = exchange.runtime.store.trace(message_id, PROVINCE)
    assert [e.state for e in trace.events].count("attempt_started") == 3
    assert trace.deliveries[0].state == "delivered"


def _dead_letter_after(exchange: Exchange, status: int, count: int, seconds: float) -> tuple[str, DeadLetter]:
    """Make the partner answer ``status`` ``count`` times, accept one envelope, and drain until it is dead."""
    control(exchange.sink, status=status, count=count)
    message_id = exchange.acceptor.accept(exchange.envelope()).message_id
    store = exchange.runtime.store
    exchange.drain(seconds, until=lambda: bool(store.dead_letters()))
    (dead,) = store.dead_letters()
    return message_id, dead


def test_partner_5xx_forever_ends_as_dead_letter(exchange: Exchange) -> None:
    message_id, dead = _dead_letter_after(exchange, 500, 100, 10)
    assert dead.message_id == message_id and dead.reason == "exhausted" and dead.attempts == 3
    assert "500" in dead.last_error


def test_partner_4xx_dead_letters_at_once_then_replay_delivers(exchange: Exchange) -> None:
    message_id, dead = _dead_letter_after(exchange, 400, 1, 5)
    store = exchange.runtime.store
    assert dead.reason == "rejected" and dead.attempts == 1
    assert sink_stats(exchange.sink)["failed"] == 1
    stats = {s.destination: s for s in exchange.runtime.broker.stats([exchange.destination])}
    assert stats[exchange.destination].dead == 1

    replayed, errors = replay_dead_letters(exchange.runtime, [dead.id], actor="operator.an")
    assert errors == [] and replayed[0][1] == message_id
    exchange.drain(5, until=lambda: sink_stats(exchange.sink)["unique"] >= 1)
    assert sink_stats(exchange.sink)["unique"] == 1
    trace = store.trace(message_id, PROVINCE)
    replay_events = [e for e in trace.events if e.state == "replayed"]
    assert replay_events and replay_events[0].actor == "operator.an"
    assert trace.deliveries[0].state == "delivered"
    assert exchange.runtime.broker.stats([exchange.destination])[0].dead == 0
    _, again = replay_dead_letters(exchange.runtime, [dead.id], actor="operator.an")
    assert len(again) == 1  # a second replay of the same dead letter is refused


def test_relay_publishes_what_the_broker_did_not_confirm(exchange: Exchange, monkeypatch) -> None:
    def refuse(_messages):
        raise BrokerUnavailable("broker down (test)")

    monkeypatch.setattr(exchange.runtime.broker, "publish", refuse)
    accepted = exchange.acceptor.accept(exchange.envelope())
    assert accepted.status  # accepted: committed even though the publish failed
    assert len(exchange.runtime.store.unpublished()) == 1
    monkeypatch.undo()
    assert Relay(exchange.runtime.store, exchange.runtime.broker, grace_s=0).run_once() == 1
    assert exchange.runtime.store.unpublished() == []
    exchange.drain(5, until=lambda: sink_stats(exchange.sink)["unique"] >= 1)
    assert set(sink_stats(exchange.sink)["first_seen"]) == {accepted.message_id}


def test_deferred_confirmations_are_recorded_with_the_next_batch(exchange: Exchange, monkeypatch) -> None:
    """``defer_marks``: the broker's confirmations ride along with the next batch's transaction (or ``flush``),
    never in a transaction of their own; in between the deliveries merely look unpublished."""
    exchange.acceptor.defer_marks = True
    writes = []
    original = exchange.runtime.store.mark_published
    monkeypatch.setattr(exchange.runtime.store, "mark_published", lambda ids: (writes.append(list(ids)), original(ids)))
    first = exchange.acceptor.accept_many([exchange.envelope(), exchange.envelope()])
    assert len(exchange.runtime.store.unpublished()) == 2
    exchange.acceptor.accept_many([exchange.envelope()])
    assert len(exchange.runtime.store.unpublished()) == 1  # the first batch was marked with the second
    assert writes == []
    exchange.acceptor.flush()
    assert exchange.runtime.store.unpublished() == []
    exchange.drain(until=lambda: sink_stats(exchange.sink)["unique"] >= 3)
    assert {a.message_id for a in first} <= set(sink_stats(exchange.sink)["first_seen"])
    assert sink_stats(exchange.sink)["duplicates"] == 0


def test_group_commit_checks_what_waits_and_commits_it_together(exchange: Exchange) -> None:
    """Envelopes that queue up while the committer is busy are checked, then committed in one transaction;
    one that fails its check is answered with its rejection and does not hold the others back."""
    committer = GroupCommitter(exchange.acceptor)
    batches = []
    original = exchange.acceptor.commit
    exchange.acceptor.commit = lambda items: (batches.append(len(items)), original(items))[1]
    started, release = threading.Event(), threading.Event()

    def slow_check(data: bytes):
        started.set()
        release.wait(10)
        return exchange.acceptor.check(data)

    try:
        first_data = exchange.envelope()
        first = committer.submit(lambda: slow_check(first_data), first_data)
        assert started.wait(10)
        datas = [exchange.envelope() for _ in range(3)]
        tampered = datas[1].replace(PORTAL.encode(), b"000.00.00.G23", 1)
        rest = [committer.submit(lambda d=d: exchange.acceptor.check(d), d) for d in (datas[0], tampered, datas[2])]
        release.set()
        outcomes = [f.result(timeout=10) for f in [first, *rest]]
        assert [type(o).__name__ for o in outcomes] == ["Accepted", "Accepted", "SignatureRejectedError", "Accepted"]
        assert batches == [1, 2]  # the three queued meanwhile: one rejected by its check, two in one commit
    finally:
        committer.close()
    assert exchange.runtime.store.unpublished() == []  # closing records the last confirmations


def test_group_commit_on_an_event_loop_commits_one_turn_together(exchange: Exchange) -> None:
    """``submit_async``: the requests of one turn of the loop are checked together on the loop, then committed
    together."""
    committer = GroupCommitter(exchange.acceptor)
    batches = []
    original = exchange.acceptor.commit
    exchange.acceptor.commit = lambda items: (batches.append(len(items)), original(items))[1]
    datas = [exchange.envelope() for _ in range(4)]
    datas[2] = datas[2].replace(PORTAL.encode(), b"000.00.00.G23", 1)

    async def main():
        first = await committer.submit_async(lambda: exchange.acceptor.check(datas[0]), datas[0])
        rest = await asyncio.gather(
            *(committer.submit_async(lambda d=d: exchange.acceptor.check(d), d) for d in datas[1:])
        )
        return [first, *rest]

    try:
        outcomes = asyncio.run(main())
    finally:
        committer.close()
    assert [type(o).__name__ for o in outcomes] == ["Accepted", "Accepted", "SignatureRejectedError", "Accepted"]
    assert batches == [1, 2]
    assert exchange.runtime.store.unpublished() == []


def test_group_commit_keeps_the_event_loop_free_while_it_commits(exchange: Exchange) -> None:
    """The commit of what the loop checked runs off the loop: while the store holds it, the loop goes on
    (answers ``/healthz``, checks the next turn) and the request waits for its commit, not for the loop."""
    committer = GroupCommitter(exchange.acceptor)
    entered, release = threading.Event(), threading.Event()
    released = []
    original = exchange.acceptor.commit

    def slow_commit(items):
        entered.set()
        released.append(release.wait(30))  # on the loop's thread: the loop could not set it, the wait runs out
        return original(items)

    exchange.acceptor.commit = slow_commit
    data = exchange.envelope()

    async def main():
        pending = asyncio.ensure_future(committer.submit_async(lambda: exchange.acceptor.check(data), data))
        deadline = time.monotonic() + 30
        while not entered.is_set() and not pending.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        answered_before_its_commit = pending.done()
        release.set()  # from the loop, while the commit waits
        return answered_before_its_commit, await pending

    try:
        early, outcome = asyncio.run(main())
    finally:
        release.set()
        committer.close()
    assert released == [True] and not early
    assert type(outcome).__name__ == "Accepted"
    assert exchange.runtime.store.unpublished() == []


def test_group_commit_after_close_commits_on_the_loop(exchange: Exchange) -> None:
    """A request that reaches a closed committer is still checked and committed (on the loop, as the
    loop-commit thread has stopped): no request waits for an answer that never comes."""
    committer = GroupCommitter(exchange.acceptor)
    committer.close()
    data = exchange.envelope()

    async def main():
        return await asyncio.wait_for(committer.submit_async(lambda: exchange.acceptor.check(data), data), 30)

    outcome = asyncio.run(main())
    assert type(outcome).__name__ == "Accepted"
    assert exchange.runtime.store.trace(outcome.message_id, PROVINCE) is not None


def test_tampered_envelope_is_rejected_and_not_stored(exchange: Exchange) -> None:
    data = exchange.envelope().replace(PORTAL.encode(), b"000.00.00.G23", 1)
    with pytest.raises(Exception) as exc:
        exchange.acceptor.accept(data)
    assert getattr(exc.value, "issues", None)
    assert exchange.runtime.store.queue_overview() == []


def test_embedded_broker_survives_reopen(tmp_path: Path) -> None:
    """Messages published to the embedded queue are on disk: a new process (here: a new broker) sees them."""
    path = tmp_path / "q.db"
    b1 = connect(f"embedded:{path}")
    b1.declare(["x"])
    from broker.base import OutboundMessage

    b1.publish([OutboundMessage("x", "m1", b"<a/>")])
    b1.close()
    b2 = connect(f"embedded:{path}")
    (delivery,) = b2.consume(["x"], timeout_s=1)
    assert delivery.message_id == "m1"
    b2.ack(delivery)
    b2.close()


# ---------------------------------------------------------------- one route: parse, map, sign, send, record once

G_JSON, G_XML, G_POSTAL = "000.00.00.G31", "000.00.00.G32", "000.00.00.G33"


class RecordingAdapter(Adapter):
    """A partner stand-in that keeps what it was handed; a partner-format one answers with the bytes it 'sent'."""

    def __init__(self, partner_format: str | None) -> None:
        self.partner_format = partner_format  # type: ignore[misc]
        self.requests: list[OutboundRequest] = []

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        self.requests.append(request)
        if self.partner_format is None:
            return DeliveryReceipt(200, "ok")
        return DeliveryReceipt(200, "code=0", sent=b'{"sent": true}', sent_type="application/json")


def test_the_worker_parses_maps_and_signs_once_and_records_the_bytes_sent(
    tmp_path: Path, monkeypatch, province_signer: Signer, migrated_copy
) -> None:
    import hub.exchange.worker as worker_module
    import mappings
    from mappings import national_portal as np

    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({
        "destinations": {code: {"endpoint": "http://127.0.0.1:9/unused"} for code in (G_JSON, G_XML, G_POSTAL)},
        "routes": [{"type": "dossier.sync", "sender": PROVINCE, "to": [G_JSON, G_XML, G_POSTAL]}],
    }))  # fmt: skip
    settings = Settings(broker_url="embedded", database_url=f"sqlite:///{migrated_copy(tmp_path / 'store.db')}",
                        routes_file=routes, data_dir=tmp_path / "var", hub_code="000.00.00.H00")  # fmt: skip
    runtime = Runtime.open(settings)
    parses: list[bytes] = []
    mapped: list[object] = []
    real_parse = worker_module.parse_xml
    monkeypatch.setattr(worker_module, "parse_xml", lambda data, **kw: parses.append(data) or real_parse(data, **kw))
    counted = mappings.OutboundMapping(np.KIND, "dossier.sync", lambda m: mapped.append(m) or np.to_portal(m))
    monkeypatch.setitem(mappings._OUTBOUND[np.KIND], "dossier.sync", counted)
    adapters = {G_JSON: RecordingAdapter(np.KIND), G_XML: RecordingAdapter(None), G_POSTAL: RecordingAdapter("postal")}
    builder = OutboundBuilder(runtime.signer(), settings.hub_code)
    worker = Worker(runtime.store, runtime.broker, runtime.routing, builder, adapters)
    try:
        model = packets.example("dossier.sync")
        header = EnvelopeHeader(sender=PROVINCE, receiver=G_JSON, message_type="dossier.sync")
        data = etree.tostring(sign_payload(province_signer, header, packets.to_element(model)))
        runtime.acceptor().accept(data)
        batch = runtime.broker.consume(worker.destinations, prefetch=10, timeout_s=2)
        assert len(batch) == 3
        worker.process_batch(batch)

        assert len(parses) == 4  # each queued delivery parsed once; the dead one read again for names to mask
        assert mapped == [model]  # mapped once, for the one partner-format destination
        (json_request,) = adapters[G_JSON].requests
        assert json_request.payload == np.to_portal(model) and json_request.model == model
        (xml_request,) = adapters[G_XML].requests
        assert xml_request.payload is None and xml_request.model is None  # an envelope partner: nothing mapped
        assert adapters[G_POSTAL].requests == []  # postal takes no dossier.sync: dead before any call
        hub_ca = TrustStore.from_path(Path(settings.data_dir) / "keys" / "ca.pem")
        for request in (json_request, xml_request):
            assert EnvelopeVerifier(hub_ca).verify(request.body).header.sender == settings.hub_code
        # The message log keeps the hub-signed envelope and, beside it, exactly what the partner received.
        traced = {d.destination: d for d in runtime.store.trace(header.message_id, PROVINCE).deliveries}
        json_view, xml_view = runtime.store.delivery(traced[G_JSON].delivery_id), runtime.store.delivery(
            traced[G_XML].delivery_id
        )
        assert (json_view.outbound, json_view.sent) == (json_request.body, b'{"sent": true}')
        assert json_view.sent_type == "application/json"
        assert (xml_view.outbound, xml_view.sent, xml_view.sent_type) == (xml_request.body, xml_request.body,
                                                                          "application/xml")  # fmt: skip
        events = runtime.store.trace(header.message_id, PROVINCE).events
        details = [e.detail for e in events if e.state == "delivered"]
        assert sorted(details) == ["HTTP 200", "HTTP 200 code=0"]
        dead = traced[G_POSTAL]
        assert "postal takes postal.order, not dossier.sync" in (runtime.store.delivery(dead.delivery_id).last_error
                                                                   or "")  # fmt: skip
    finally:
        worker.close()
        runtime.close()


def test_the_portal_is_told_the_senders_registered_unit_not_what_the_body_claims(tmp_path: Path, migrated_copy) -> None:
    from hub.registry import parse_spec
    from mappings import national_portal as np

    ministry, unit = "000.00.00.G10", "000.00.00.G15"
    settings = Settings(broker_url="embedded", database_url=f"sqlite:///{migrated_copy(tmp_path / 'store.db')}",
                        data_dir=tmp_path / "var", hub_code="000.00.00.H00")  # fmt: skip
    signer = issue_signer("ministry", tmp_path / "var" / "keys", code=ministry)
    runtime = Runtime.open(settings)
    registry = runtime.registry()
    for spec in (
        {"code": ministry, "name": "Land", "kind": "ministry", "sends": ["dossier.status"], "unit": unit},
        {"code": PORTAL, "name": "Portal", "kind": "national_portal", "receives": ["dossier.status"],
         "endpoint": {"url": "http://127.0.0.1:9/api", "transport": "json"}},
    ):  # fmt: skip
        registry.add(parse_spec(spec), actor="test")
    runtime.refresh()
    assert runtime.routing.units[ministry] == unit
    portal = RecordingAdapter(np.KIND)
    worker = Worker(runtime.store, runtime.broker, runtime.routing, OutboundBuilder(runtime.signer(), "000.00.00.H00"),
                    {PORTAL: portal})  # fmt: skip
    try:
        claimed = packets.example("dossier.status").model_copy(update={"source_system": "000.00.00.G99"})
        header = EnvelopeHeader(sender=ministry, receiver=PORTAL, message_type="dossier.status")
        runtime.acceptor().accept(etree.tostring(sign_payload(signer, header, packets.to_element(claimed))))
        worker.process_batch(runtime.broker.consume(worker.destinations, prefetch=10, timeout_s=2))
        (request,) = portal.requests
        assert request.payload.record["MaDonViXuLy"] == unit  # the registry's unit, not the body's claim
        assert request.payload == np.to_portal(claimed.model_copy(update={"source_system": unit}))  # mapped purely
    finally:
        worker.close()
        runtime.close()


# ------------------------------------------------------------------------------------------------ outbox relay


class CountingBroker:
    """A broker that only counts what it is asked to publish, a little slowly (so that relays overlap)."""

    def __init__(self, published: list[int], lock: threading.Lock) -> None:
        self.published, self.lock = published, lock

    def publish(self, messages) -> None:
        time.sleep(0.005)
        with self.lock:
            self.published.extend(m.delivery_id for m in messages)


def _unpublished_deliveries(store, count: int) -> None:
    store.accept_many(
        [
            {"sender": PROVINCE, "message_id": f"relay-{n}", "correlation_id": None, "message_type": "dossier.sync",
             "receiver": PORTAL, "dossier_code": None, "envelope": b"<e/>", "destinations": [PORTAL]}
            for n in range(count)
        ]
    )  # fmt: skip


def test_two_relays_publish_each_delivery_exactly_once(store, store_url: str) -> None:
    """Two relays (threads, each its own store connection pool, as in two processes) over the same 500
    unpublished deliveries: each delivery is published once, by one of them."""
    from hub.store import Store

    _unpublished_deliveries(store, 500)
    published: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def relay() -> None:
        own = Store(store_url)
        try:
            r = Relay(own, CountingBroker(published, lock), grace_s=0, batch=25)  # type: ignore[arg-type]
            start.wait()
            while r.run_once():
                pass
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(published) == 500 and len(set(published)) == 500
    assert store.unpublished() == []


def test_a_dead_relays_claim_runs_out_for_another(store) -> None:
    """A relay that claimed and died: nobody else publishes those deliveries until its lease has run out."""
    _unpublished_deliveries(store, 3)
    claimed = store.claim_unpublished(limit=10, lease_s=1.0)  # long enough for the next claim on a slow machine
    assert len(claimed) == 3
    assert store.claim_unpublished(limit=10) == []
    published: list[int] = []
    relay = Relay(store, CountingBroker(published, threading.Lock()), grace_s=0)  # type: ignore[arg-type]
    wait_for(lambda: relay.run_once() == 3, 5, "the lease to run out")
    assert sorted(published) == sorted(p.delivery_id for p in claimed)
    assert store.unpublished() == []


def test_the_publisher_leaves_to_the_relay_what_it_could_not_publish(exchange: Exchange, monkeypatch) -> None:
    """Intake through the publisher thread: committed, answered, published after the commit, marked with the
    next commit or when idle. While the broker is down, offers are dropped at once (commits never wait) and the
    relay in the same thread publishes them when the broker is back; each message is delivered once."""
    from hub.exchange.publisher import Publisher

    broker = exchange.runtime.broker
    down = threading.Event()
    real_publish, real_ping = broker.publish, broker.ping

    def publish(messages):
        if down.is_set():
            raise BrokerUnavailable("broker down (test)")
        real_publish(messages)

    def ping():
        if down.is_set():
            raise BrokerUnavailable("broker down (test)")
        real_ping()

    monkeypatch.setattr(broker, "publish", publish)
    monkeypatch.setattr(broker, "ping", ping)
    # A grace period as in the API (twice the relay's interval): the relay leaves alone what was just published
    # and is waiting for its mark.
    relay = Relay(exchange.runtime.store, broker, grace_s=0.5, every_s=0.1)
    publisher = Publisher(broker, relay=relay, ping_every_s=0.1, retry_max_s=0.2)
    exchange.acceptor.handoff, publisher.marks = publisher, exchange.acceptor
    exchange.acceptor.defer_marks = True
    publisher.start()
    try:
        first = exchange.acceptor.accept(exchange.envelope())
        wait_for(lambda: exchange.runtime.store.unpublished() == [], 5, "the publish to be confirmed and marked")
        down.set()
        wait_for(lambda: publisher.state().ok is False, 5, "the publisher to see the broker down")
        started = time.perf_counter()
        during = [exchange.acceptor.accept(exchange.envelope()) for _ in range(3)]
        assert time.perf_counter() - started < 2
        assert len(exchange.runtime.store.unpublished()) == 3
        down.clear()
        wait_for(lambda: exchange.runtime.store.unpublished() == [], 10, "the relay to publish them")
        assert publisher.state().ok is True
    finally:
        exchange.acceptor.handoff = None
        monkeypatch.setattr(publisher, "broker", _Unclosed(broker))  # the exchange fixture closes the broker
        publisher.close()
    ids = {a.message_id for a in (first, *during)}
    exchange.drain(10, until=lambda: sink_stats(exchange.sink)["unique"] >= 4)
    assert set(sink_stats(exchange.sink)["first_seen"]) == ids
    assert sink_stats(exchange.sink)["duplicates"] == 0


def test_a_bug_in_a_publisher_turn_does_not_end_the_thread(exchange: Exchange, monkeypatch) -> None:
    """A declaration that fails with something other than a broker error (a bug) is logged; the thread goes on,
    and the relay publishes what that turn held."""
    from hub.exchange.publisher import Publisher

    broker = exchange.runtime.broker
    real_declare, failures = broker.declare, []

    def declare(destinations, policy=None):
        if not failures:
            failures.append(1)
            raise RuntimeError("a bug (test)")
        real_declare(destinations, policy)

    monkeypatch.setattr(broker, "declare", declare)
    publisher = Publisher(broker, relay=Relay(exchange.runtime.store, broker, grace_s=0.2, every_s=0.1))
    exchange.acceptor.handoff, publisher.marks = publisher, exchange.acceptor
    publisher.declare(sorted(exchange.runtime.routing.destinations))
    publisher.start()
    try:
        exchange.acceptor.accept(exchange.envelope())
        wait_for(lambda: exchange.runtime.store.unpublished() == [], 10, "the relay to publish it")
        assert failures and publisher._thread.is_alive()
    finally:
        exchange.acceptor.handoff = None
        monkeypatch.setattr(publisher, "broker", _Unclosed(broker))
        publisher.close()


class _Unclosed:
    def __init__(self, broker) -> None:
        self.broker = broker

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- one delivered effect per delivery


def _queued(store, count: int) -> list[int]:
    ids = []
    for n in range(count):
        accepted = store.accept(sender=PROVINCE, message_id=f"once-{n}", correlation_id=None,
                                message_type="dossier.status", receiver="000.00.00.H00", dossier_code=None,
                                envelope=f"<env>{n}</env>".encode(), destinations=[PORTAL])  # fmt: skip
        ids.extend(accepted.delivery_ids)
    return ids


def _delivered_events(store, message_id: str) -> int:
    return sum(e.state == "delivered" for e in store.trace(message_id, PROVINCE).events)


def test_two_workers_recording_the_same_deliveries_record_each_once(store) -> None:
    """Two workers that both delivered the same deliveries (published twice) record them at the same moment:
    each is recorded by exactly one of them, with one ``delivered`` event (PostgreSQL: the rows are locked)."""
    ids = _queued(store, 20)
    store.start_attempts(ids)
    barrier = threading.Barrier(2)
    answers: dict[str, list[bool]] = {}

    def record(worker: str) -> None:
        items = [(i, f"<out by='{worker}'/>".encode(), f"HTTP 200 {worker}") for i in ids]
        barrier.wait(5)
        answers[worker] = store.record_delivered_many(items)

    threads = [threading.Thread(target=record, args=(w,)) for w in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [a + b for a, b in zip(answers["a"], answers["b"], strict=True)] == [1] * len(ids)
    assert [_delivered_events(store, f"once-{n}") for n in range(len(ids))] == [1] * len(ids)
    for n, delivery_id in enumerate(ids):  # the bytes kept are the winner's
        winner = "a" if answers["a"][n] else "b"
        assert store.delivery(delivery_id).outbound == f"<out by='{winner}'/>".encode()


def test_a_delivery_repeated_in_one_record_call_is_recorded_once(store) -> None:
    (first, second) = _queued(store, 2)
    store.start_attempts([first, second])
    items = [(first, b"<o/>", ""), (second, b"<o/>", ""), (first, b"<o2/>", "")]
    assert store.record_delivered_many(items) == [True, True, False]
    assert _delivered_events(store, "once-0") == 1 and store.delivery(first).outbound == b"<o/>"


def test_a_stray_copy_of_a_dead_delivery_is_not_attempted_until_replayed(store) -> None:
    (delivery_id,) = _queued(store, 1)
    assert store.start_attempts([delivery_id]) == {delivery_id: 1}
    dead_id = store.record_dead(delivery_id, reason="rejected", error="HTTP 400")
    assert store.start_attempts([delivery_id]) == {}  # the worker acknowledges it without calling
    store.replay(dead_id, actor="operator")
    assert store.start_attempts([delivery_id]) == {delivery_id: 1}


class RefusingBroker(CountingBroker):
    """Publishes (counts) everything but one destination, which it cannot route (its connector was removed)."""

    def __init__(self, published: list[int], lock: threading.Lock, unroutable: str) -> None:
        super().__init__(published, lock)
        self.unroutable = unroutable
        self.refused = 0

    def publish(self, messages) -> None:
        if any(m.destination == self.unroutable for m in messages):
            self.refused += 1
            raise BrokerError(f"1 message(s) unroutable, e.g. to {self.unroutable}")
        super().publish(messages)


def test_a_destination_the_broker_cannot_route_holds_back_no_other(store) -> None:
    """The oldest deliveries go to a destination whose queues are gone: the relay publishes the others, keeps the
    refused ones claimed (not tried again at every turn) and takes them up again once the lease has run out."""
    store.accept_many(
        [
            {"sender": PROVINCE, "message_id": f"gone-{n}", "correlation_id": None, "message_type": "dossier.sync",
             "receiver": "000.00.00.G99", "dossier_code": None, "envelope": b"<e/>", "destinations": ["000.00.00.G99"]}
            for n in range(30)
        ]
    )  # fmt: skip
    _unpublished_deliveries(store, 20)
    published: list[int] = []
    broker = RefusingBroker(published, threading.Lock(), "000.00.00.G99")
    # A lease long enough for three relay turns on a slow machine (0.5 s ran out once on PostgreSQL).
    relay = Relay(store, broker, grace_s=0, batch=40, lease_s=2.0)  # type: ignore[arg-type]
    assert relay.run_once() == 10  # 30 refused + the 10 oldest of the others in this batch
    assert relay.run_once() == 10  # the refused ones are still claimed: the rest come next
    assert relay.run_once() == 0
    assert len(published) == len(set(published)) == 20
    assert broker.refused == 1
    time.sleep(2.1)  # the lease ran out: the refused deliveries are tried again (and refused again)
    assert relay.run_once() == 0
    assert broker.refused == 2
    assert len(store.unpublished(older_than_s=0)) == 30
