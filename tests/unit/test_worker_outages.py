"""The delivery worker under store and broker outages, and its exactly-one-delivered-effect rules, with an
in-memory store, broker and partner: outages are backed off and ridden out (never an exit), what was not called
is given back, what the partner took is never called again, repeated delivery ids are delivered once, and each
outcome is recorded as soon as its call returns."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, TransientDeliveryError
from broker.base import Broker, BrokerUnavailable, Delivery, OutboundMessage, QueueStats, RetryPolicy
from hub.errors import StoreUnavailableError
from hub.exchange.heartbeat import Heartbeat, check, heartbeat_path
from hub.exchange.outages import BROKER, STORE, Backoff, Dependencies
from hub.exchange.routing import DestinationConfig, RoutingTable
from hub.exchange.worker import Outbound, Worker
from hub.security.envelope import EnvelopeHeader
from hub.store import Delivered

DEST = "000.00.00.G22"


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class FakeBroker(Broker):
    """Deliveries in memory; ``requeue`` puts one back (redelivered), settlements are recorded by delivery id."""

    def __init__(self) -> None:
        self.ready: deque[Delivery] = deque()
        self.acked: list[int | None] = []
        self.requeued: list[int | None] = []
        self.retried: list[int | None] = []
        self.dead: list[int | None] = []
        self.consume_failures = 0
        self.ack_failures = 0
        self.flushes = 0
        self._arrived = threading.Event()

    def put(self, *deliveries: Delivery) -> None:
        self.ready.extend(deliveries)
        self._arrived.set()

    def declare(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> None:
        pass

    def retire(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> list[str]:
        return []

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        pass

    def consume(self, destinations: Sequence[str], *, prefetch: int = 100, timeout_s: float = 1.0) -> list[Delivery]:
        if self.consume_failures:
            self.consume_failures -= 1
            raise BrokerUnavailable("connection refused")
        if not self.ready:
            self._arrived.clear()
            self._arrived.wait(min(timeout_s, 0.05))
        return [self.ready.popleft() for _ in range(min(prefetch, len(self.ready)))]

    def ack(self, delivery: Delivery) -> None:
        if self.ack_failures:
            self.ack_failures -= 1
            raise BrokerUnavailable("settling failed")
        self.acked.append(delivery.delivery_id)

    def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        self.retried.append(delivery.delivery_id)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.dead.append(delivery.delivery_id)

    def requeue(self, delivery: Delivery) -> None:
        self.requeued.append(delivery.delivery_id)
        self.put(replace(delivery, redelivered=True))

    def stats(self, destinations: Sequence[str]) -> list[QueueStats]:
        return []

    def take_dead(self, destination: str, message_ids: set[str] | None) -> int:
        return 0

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


class FakeStore:
    """The store calls the worker makes; ``down`` (or ``failures[name]`` for the next n calls) raises as a lost
    database connection does."""

    def __init__(self) -> None:
        self.down = False
        self.failures: dict[str, int] = {}
        self.attempts: dict[int, int] = {}
        self.delivered: dict[int, Delivered] = {}
        self.recorded: list[list[int]] = []  # the delivery ids of each record_delivered_many call
        self.retries: list[int] = []
        self.dead: list[int] = []
        self.accepted_at: datetime | None = None  # when every message was accepted (None: now)
        self.lock = threading.Lock()

    def _check(self, name: str) -> None:
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            raise StoreUnavailableError(f"{name}: connection refused")
        if self.down:
            raise StoreUnavailableError(f"{name}: connection refused")

    def ping(self) -> None:
        self._check("ping")

    def paused_destinations(self) -> dict[str, object]:
        self._check("paused_destinations")
        return {}

    def start_attempts(self, delivery_ids: Sequence[int]) -> dict[int, int]:
        self._check("start_attempts")
        for i in delivery_ids:
            self.attempts[i] = self.attempts.get(i, 0) + 1
        return {i: self.attempts[i] for i in delivery_ids if i not in self.delivered}

    def start_attempts_at(self, delivery_ids: Sequence[int]) -> dict[int, tuple[int, datetime]]:
        accepted = self.accepted_at or datetime.now(UTC)
        return {i: (attempt, accepted) for i, attempt in self.start_attempts(delivery_ids).items()}

    def record_delivered_many(self, items: Sequence[Delivered]) -> list[bool]:
        self._check("record_delivered_many")
        with self.lock:
            self.recorded.append([item.delivery_id for item in items])
            fresh = [item.delivery_id not in self.delivered for item in items]
            for item in items:
                self.delivered.setdefault(item.delivery_id, item)
        return fresh

    def record_retry(self, delivery_id: int, *, error: str, delay_s: float, republish: bool = False) -> None:
        self._check("record_retry")
        self.retries.append(delivery_id)

    def record_dead(self, delivery_id: int, *, reason: str, error: str) -> int:
        self._check("record_dead")
        self.dead.append(delivery_id)
        return 1


class FakeBuilder:
    """Stands in for mapping and signing: the outbound envelope names the queued message."""

    def prepare(self, inbound: bytes, destination: str, partner_format=None, units=None) -> Outbound:
        match = re.search(rb'id="([^"]+)"', inbound)
        assert match is not None
        message_id = match.group(1).decode()
        header = EnvelopeHeader(message_id=message_id, sender="000.00.00.H00", receiver=destination,
                                message_type="dossier.sync")  # fmt: skip
        return Outbound(header, f'<out id="{message_id}"/>'.encode())


class Partner(Adapter):
    """Counts calls per message id; a message id in ``gates`` waits for its event, one in ``failing`` gets a 503."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.failing: set[str] = set()
        self._lock = threading.Lock()

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        with self._lock:
            self.calls.append(request.message_id)
        gate = self.gates.get(request.message_id)
        if gate is not None:
            assert gate.wait(10), "gate never opened"
        if request.message_id in self.failing:
            raise TransientDeliveryError("HTTP 503", status=503)
        return DeliveryReceipt(200, "ok")


def delivery(delivery_id: int, message_id: str | None = None) -> Delivery:
    message_id = message_id or f"m-{delivery_id}"
    return Delivery(DEST, message_id, f'<in id="{message_id}"/>'.encode(), {}, delivery_id=delivery_id)


class Rig:
    def __init__(self, tmp_path: Path, *, backoff: Backoff | None = None, heartbeat: bool = False) -> None:
        self.store, self.broker, self.partner = FakeStore(), FakeBroker(), Partner()
        routing = RoutingTable({DEST: DestinationConfig(endpoint="http://127.0.0.1:9/", concurrency=8,
                                                        retry_delays_s=(60.0, 60.0))})  # fmt: skip
        self.worker = Worker(
            self.store, self.broker, routing, FakeBuilder(), {DEST: self.partner},  # type: ignore[arg-type]
            dependencies=Dependencies(backoff or Backoff(0.01, 0.05)),
            heartbeat=Heartbeat(tmp_path) if heartbeat else None,
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self.result: list[int] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: self.result.append(self.worker.run()), daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self.worker.stop()
        assert self._thread is not None
        self._thread.join(10)
        assert not self._thread.is_alive(), "the worker did not stop"
        return self.result[0]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.worker.close()


def outages(dependency: str) -> float:
    return REGISTRY.get_sample_value("lienthong_worker_outages_total", {"dependency": dependency}) or 0.0


def up(dependency: str) -> float | None:
    return REGISTRY.get_sample_value("lienthong_worker_dependency_up", {"dependency": dependency})


def test_store_down_when_attempts_start_gives_the_batch_back_and_the_worker_recovers(rig: Rig) -> None:
    before = outages(STORE)
    rig.store.down = True
    rig.broker.put(delivery(1), delivery(2))
    rig.start()
    eventually(lambda: not rig.worker.dependencies.is_up(STORE))
    assert sorted(rig.broker.requeued) == [1, 2]  # given back, none called
    assert rig.partner.calls == [] and up(STORE) == 0 and outages(STORE) == before + 1
    rig.store.down = False
    eventually(lambda: sorted(rig.broker.acked) == [1, 2])
    assert sorted(rig.partner.calls) == ["m-1", "m-2"]  # each called once, after the outage
    assert up(STORE) == 1 and outages(STORE) == before + 1  # one outage, however many tries
    assert rig.stop() == 2


def test_delivered_but_not_recorded_is_held_never_called_again_and_recorded_after_the_outage(rig: Rig) -> None:
    rig.store.failures["record_delivered_many"] = 10**9  # down between the call and its record, until cleared
    rig.broker.put(delivery(1))
    rig.start()
    eventually(lambda: rig.worker.held == 1)
    flushes = rig.broker.flushes
    eventually(lambda: rig.broker.flushes > flushes + 2)  # the broker is pumped while it waits
    assert rig.broker.acked == [] and rig.broker.requeued == []  # kept, unacknowledged
    rig.store.failures.clear()
    eventually(lambda: rig.broker.acked == [1])
    assert rig.partner.calls == ["m-1"]  # never called again
    assert list(rig.store.delivered) == [1] and rig.store.recorded[-1] == [1]
    rig.stop()
    assert rig.broker.acked == [1]  # acknowledged once


def test_a_failed_call_whose_retry_cannot_be_recorded_is_given_back(rig: Rig) -> None:
    rig.partner.failing.add("m-1")
    rig.store.failures["record_retry"] = 1
    rig.broker.put(delivery(1))
    rig.start()
    eventually(lambda: rig.broker.requeued == [1])
    eventually(lambda: rig.store.retries == [1])  # the next attempt called again and recorded its retry
    assert rig.partner.calls == ["m-1", "m-1"] and rig.broker.retried == [1]
    rig.stop()


def test_broker_unavailable_in_consume_or_settle_is_ridden_out(rig: Rig) -> None:
    before = outages(BROKER)
    rig.broker.consume_failures = 3
    rig.broker.ack_failures = 1
    rig.broker.put(delivery(1))
    rig.start()
    eventually(lambda: 1 in rig.store.delivered)
    eventually(lambda: rig.worker.dependencies.is_up(BROKER) and up(BROKER) == 1)
    assert outages(BROKER) >= before + 1
    # The ack failed after the store recorded it: the broker redelivers, the store recognises it, no new call.
    rig.broker.put(delivery(1))
    eventually(lambda: rig.broker.acked == [1])
    assert rig.partner.calls == ["m-1"]
    rig.stop()


def test_a_delivery_id_repeated_in_a_batch_is_delivered_once_and_every_copy_acknowledged(rig: Rig) -> None:
    settled = rig.worker.process_batch([delivery(7), delivery(8), delivery(7), delivery(7)])
    assert rig.partner.calls.count("m-7") == 1 and rig.partner.calls.count("m-8") == 1
    assert sorted(rig.broker.acked) == [7, 7, 7, 8] and settled == 4
    assert rig.store.attempts == {7: 1, 8: 1}
    assert sorted(i for ids in rig.store.recorded for i in ids) == [7, 8]


def test_copies_wait_for_the_first_ones_record(rig: Rig) -> None:
    rig.store.failures["record_delivered_many"] = 1
    with pytest.raises(StoreUnavailableError):
        rig.worker.process_batch([delivery(7), delivery(7)])
    assert rig.broker.acked == [] and rig.worker.held == 1  # neither copy acknowledged before the record


def test_each_outcome_is_recorded_as_its_call_returns(rig: Rig) -> None:
    rig.partner.gates["m-slow"] = gate = threading.Event()
    done = threading.Thread(target=rig.worker.process_batch, args=([delivery(1, "m-slow"), delivery(2, "m-fast")],))
    done.start()
    try:
        eventually(lambda: 2 in rig.store.delivered)  # recorded while the slow call still runs
        assert 1 not in rig.store.delivered and rig.broker.acked == [2]
    finally:
        gate.set()
        done.join(10)
    assert rig.store.recorded == [[2], [1]] and rig.broker.acked == [2, 1]


def test_sigterm_during_a_backoff_ends_the_run_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, backoff=Backoff(first_s=60.0, max_s=60.0), heartbeat=True)
    rig.store.down = True
    rig.broker.put(delivery(1))
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    rig.worker.install_signal_handlers()
    try:
        threading.Thread(target=lambda: (eventually(lambda: not rig.worker.dependencies.is_up(STORE)),
                                         os.kill(os.getpid(), signal.SIGTERM)), daemon=True).start()  # fmt: skip
        started = time.monotonic()
        rig.worker.run()  # in the main thread, where signals are handled
        assert time.monotonic() - started < 10  # not the 60 s backoff
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        rig.worker.close()
    assert rig.broker.requeued == [1] and rig.partner.calls == []
    beat = json.loads(heartbeat_path(tmp_path).read_text())
    assert (beat["pid"], beat["store"], beat["broker"]) == (os.getpid(), "down", "up")


# ---------------------------------------------------------------- the heartbeat a supervisor reads


def test_worker_health_needs_a_fresh_heartbeat_of_a_live_process(tmp_path: Path) -> None:
    assert check(tmp_path, 30) == (False, f"no worker heartbeat in {tmp_path}")
    clock = [0.0]
    beat = Heartbeat(tmp_path, clock=lambda: clock[0])
    beat.beat(store_up=True, broker_up=False, settled=3)
    healthy, reason = check(tmp_path, 30)
    assert healthy and "broker down" in reason and "settled 3" in reason
    record = json.loads(beat.path.read_text())
    record["time"] -= 60  # written a minute ago
    beat.path.write_text(json.dumps(record))
    healthy, reason = check(tmp_path, 30)
    assert not healthy and reason.startswith("stale")
    beat.beat(store_up=True, broker_up=True, settled=4)  # within every_s of the last: not rewritten
    assert not check(tmp_path, 30)[0]
    clock[0] += 5
    beat.beat(store_up=True, broker_up=True, settled=4)
    assert check(tmp_path, 30)[0]
    record["pid"] = _dead_pid()
    record["time"] = time.time()
    heartbeat_path(tmp_path, record["pid"]).write_text(json.dumps(record))
    beat.remove()
    healthy, reason = check(tmp_path, 30)
    assert not healthy and reason.startswith("no live worker")
    Heartbeat(tmp_path)  # a new worker clears what dead ones left
    assert list(tmp_path.glob("*.heartbeat")) == []


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_store_failure_while_mapping_gives_the_delivery_back_not_a_dead_letter(rig: Rig) -> None:
    """Mapping a supplement step for the national portal reads the dossier's record from the store
    (``hub.exchange.portal_refresh``): the store failing there is an outage, not a fault of the content."""
    failures = {"m-1": 1}
    plain = rig.worker.builder

    class ReadingBuilder:
        def prepare(self, inbound: bytes, destination: str, partner_format=None, units=None) -> Outbound:
            outbound = plain.prepare(inbound, destination, partner_format, units)
            if failures.get(outbound.header.message_id, 0) > 0:
                failures[outbound.header.message_id] -= 1
                raise StoreUnavailableError("timeline: connection refused")
            return outbound

    rig.worker.builder = ReadingBuilder()  # type: ignore[assignment]
    rig.broker.put(delivery(1))
    rig.start()
    eventually(lambda: rig.broker.acked == [1])
    assert rig.broker.requeued == [1] and rig.broker.dead == [] and rig.store.dead == []
    assert rig.partner.calls == ["m-1"]  # called once, after it was given back
    assert rig.stop() == 1


# ---------------------------------------------------------------- the store met outside the worker's own calls


class StoreReadingPartner(Partner):
    """A partner adapter that reads the store before it calls (a notification's dossier, the postal order book,
    the result signers): it raises as the store does while ``down`` is set, before calling anyone."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        if self.down:
            raise StoreUnavailableError("the store's database is unavailable: connection refused")
        return super().deliver(request)


def test_the_store_failing_inside_an_adapters_call_gives_the_delivery_back_never_a_retry_or_dead_letter(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.partner = partner = StoreReadingPartner()
    rig.worker.adapters = {DEST: partner}
    partner.down = True
    before = outages(STORE)
    rig.broker.put(delivery(1))
    rig.start()
    try:
        eventually(lambda: rig.broker.requeued == [1])
        eventually(lambda: outages(STORE) == before + 1)  # an outage of the store: the worker backs off
        assert partner.calls == [] and rig.broker.retried == [] and rig.broker.dead == []
        assert rig.store.retries == [] and rig.store.dead == []  # no attempt counted against the partner
        assert rig.worker.breaker(DEST).state == "closed"
        partner.down = False
        eventually(lambda: rig.broker.acked == [1])
        assert partner.calls == ["m-1"] and list(rig.store.delivered) == [1]
    finally:
        rig.stop()
        rig.worker.close()


def test_a_notification_whose_timeline_cannot_be_read_is_given_back_and_sent_once_after_the_outage(
    tmp_path: Path,
) -> None:
    """The notification adapter reads the dossier's timeline (``NotificationHooks.already``) before it sends: the
    store down there is an outage (the delivery given back), not the channel's failure (a retry counted against
    the connector, dead-lettered once its retries run out)."""
    from adapters.notification import NotificationAdapter
    from mappings.notification import Contact, Event, Notice

    class Channel:
        name = "email"

        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, request: OutboundRequest, notice: Notice, address: str, rendered: object):
            self.sent.append(request.message_id)
            return b"From: hub", "message/rfc822", "SMTP 250"

        def close(self) -> None:
            pass

    class Ledger:
        def __init__(self) -> None:
            self.down = True
            self.notes: list[str] = []

        def dossier(self, dossier_code: str):
            raise AssertionError("the notice names its applicant: the dossier is not read")

        def already(self, connector: str, note) -> bool:
            if self.down:
                raise StoreUnavailableError("the store's database is unavailable: connection refused")
            return note.message_id in self.notes

        def record(self, connector: str, note) -> None:
            self.notes.append(note.message_id)

    notice = Notice("000.00.00.H12-251123-0001", 2, Event.RECEIVED, at=datetime(2025, 11, 23, 8, tzinfo=UTC),
                    applicant=Contact("Nguyễn Văn A", email="a@example.vn"))  # fmt: skip

    class NoticeBuilder(FakeBuilder):
        def prepare(self, inbound: bytes, destination: str, partner_format=None, units=None) -> Outbound:
            outbound = super().prepare(inbound, destination, partner_format, units)
            return Outbound(outbound.header, outbound.envelope, payload=notice)

    channel, ledger = Channel(), Ledger()
    rig = Rig(tmp_path)
    rig.worker.builder = NoticeBuilder()  # type: ignore[assignment]
    rig.worker.adapters = {DEST: NotificationAdapter(channel, hooks=ledger)}  # type: ignore[arg-type]
    rig.broker.put(delivery(1))
    rig.start()
    try:
        eventually(lambda: rig.broker.requeued == [1])
        assert channel.sent == [] and rig.store.retries == [] and rig.broker.retried == []
        assert rig.worker.breaker(DEST).state == "closed"
        ledger.down = False
        eventually(lambda: rig.broker.acked == [1])
        assert channel.sent == ["m-1"] and ledger.notes == ["m-1"]  # sent once, on the timeline once
        assert rig.store.dead == [] and rig.broker.dead == []
    finally:
        rig.stop()
        rig.worker.close()


def test_the_store_lost_while_a_worker_process_builds_its_adapters_is_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between opening its store and running, a worker process reads the store again (its adapters: the registry's
    tables, the result signers): the store going away then is an outage like any other, not an exit."""
    from hub import logs, runtime
    from tests.support import hub_settings

    built: list[str] = []
    adapters = runtime.Runtime.adapters

    def adapters_once_unavailable(self: runtime.Runtime):
        built.append("try")
        if len(built) == 1:
            raise StoreUnavailableError("the store's database is unavailable: connection refused")
        return adapters(self)

    monkeypatch.setattr(runtime.Runtime, "adapters", adapters_once_unavailable)
    monkeypatch.setattr(logs, "configure_logging", lambda settings: None)  # pytest keeps the log handlers
    settings = hub_settings(tmp_path, broker_url="embedded")
    before = outages(STORE)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        assert runtime._worker_process(settings, prefetch=8, idle_exit_s=0.1) == 0  # ran, then idle: no exception
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert built == ["try", "try"] and outages(STORE) == before + 1


def test_a_ping_that_finds_no_free_store_connection_says_the_store_is_unavailable(tmp_path: Path) -> None:
    """The worker probes the store with ``ping`` during an outage; the pool's own timeout (every connection busy,
    e.g. with adapters' threads waiting on a store that does not answer) is "unavailable", not another error."""
    import sqlalchemy as sa

    from hub.store.database import Database

    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.engine = sa.create_engine(db.url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    try:
        with db.engine.connect(), pytest.raises(StoreUnavailableError, match="no store connection free"):
            db.ping()
        db.ping()  # a free connection again: fine
    finally:
        db.close()


def test_the_postal_order_book_down_before_posting_is_raised_and_after_posting_never_posts_again() -> None:
    """VNPost's ItemCode comes from the store's order book before the order is posted: the store down then is
    raised as it is (the worker gives the delivery back, nothing was posted). Once VNPost took the order, marking
    it ``created`` failing is logged: posting the same order again would be the wrong answer to an outage."""
    from adapters.postal import InMemoryOrders, PostalAdapter
    from hub import packets
    from hub.devtools.simulators.postal import DEFAULT_CONSUMERS, DEFAULT_CUSTOMER, PostalSimulator
    from hub.packets.postal import PostalOrder
    from mappings import postal as vp
    from mappings import profiles

    class Book(InMemoryOrders):
        def __init__(self) -> None:
            super().__init__()
            self.down: set[str] = set()

        def item_code(self, connector: str, **order: object) -> str:  # type: ignore[override]
            if "item_code" in self.down:
                raise StoreUnavailableError("the store's database is unavailable: connection refused")
            return super().item_code(connector, **order)  # type: ignore[arg-type]

        def created(self, connector: str, item_code: str) -> None:
            if "created" in self.down:
                raise StoreUnavailableError("the store's database is unavailable: connection refused")
            super().created(connector, item_code)

    order = packets.example("postal.order")
    assert isinstance(order, PostalOrder)
    order = order.model_copy(update={"item_code": None})
    request = OutboundRequest("000.00.00.G07", "m-1", "postal.order", b"<envelope/>", payload=vp.to_order(order),
                              model=order)  # fmt: skip
    book = Book()
    with PostalSimulator() as sim:
        values = {**sim.profile_values, "customer_code": DEFAULT_CUSTOMER, "item_codes": "EL900000001VN"}
        key = next(iter(DEFAULT_CONSUMERS))
        adapter = PostalAdapter(sim.url, profiles.resolve(profiles.get_profile("vnpost/ngsp"), values),
                                consumer_key=key, secret=DEFAULT_CONSUMERS[key], orders=book, timeout_s=2)  # fmt: skip
        try:
            book.down = {"item_code", "created"}
            with pytest.raises(StoreUnavailableError):
                adapter.deliver(request)
            assert sim.received()["orders"] == {} and book.orders == {}  # nothing posted, no code used
            book.down = {"created"}
            receipt = adapter.deliver(request)  # VNPost took it: delivered, not posted again later
            assert receipt.status == 200 and "ItemCode=EL900000001VN" in receipt.detail
            assert len(sim.received()["orders"]) == 1
            assert [o["state"] for o in book.orders.values()] == ["assigned"]  # tracking moves it on from there
        finally:
            adapter.close()
