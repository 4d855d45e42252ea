"""One behaviour suite for both broker backends (embedded SQLite and RabbitMQ).

The RabbitMQ half skips when no server listens on 127.0.0.1:5672 (fails instead with
``LIENTHONG_REQUIRE_SERVICES=1``). Every test uses destinations with a random suffix and deletes the queues it
declared.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from broker.base import (
    Broker,
    BrokerError,
    Delivery,
    OutboundMessage,
    RetryPolicy,
    connect,
)
from broker.embedded import EmbeddedBroker
from broker.rabbitmq import RabbitMQBroker, dead_queue, level_ttls, retry_queue, work_queue
from tests.support import free_port, wait_for

VISIBILITY_S = 1.0  # the embedded visibility timeout used by these tests

OpenBroker = Callable[[], Broker]


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "embedded":
        return f"embedded:{tmp_path / 'queue.db'}"
    return request.getfixturevalue("rabbitmq_url")


@pytest.fixture
def open_broker(broker_url: str) -> Iterator[OpenBroker]:
    """A factory of brokers on the same queues (think: one per process); all closed, queues deleted after."""
    opened: list[Broker] = []

    def factory() -> Broker:
        kw = {"visibility_timeout_s": VISIBILITY_S} if broker_url.startswith("embedded") else {}
        b = connect(broker_url, **kw)
        opened.append(b)
        return b

    yield factory
    declared: dict[str, set[int]] = {}  # RabbitMQ destination -> retry queue TTLs, from every broker opened
    for b in opened:
        if isinstance(b, RabbitMQBroker):
            for d, ttls in b._declared.items():
                declared.setdefault(d, set()).update(ttls)
        b.close()
    if declared:
        with RabbitMQBroker(broker_url) as admin:
            admin._declared.update(declared)
            admin.delete(sorted(declared))


@pytest.fixture
def broker(open_broker: OpenBroker) -> Broker:
    return open_broker()


def dest_name(tag: str = "d") -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:10]}"


def msg(destination: str, i: int, **headers: str) -> OutboundMessage:
    return OutboundMessage(destination, f"msg-{i}-{uuid.uuid4().hex[:6]}", f"<p n='{i}'>é</p>".encode(), headers, i)


def drain(b: Broker, destinations: list[str], expected: int, *, timeout_s: float = 15.0, ack: bool = True):
    """Consume until ``expected`` deliveries arrived (or timeout); ack them unless told otherwise."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        batch = b.consume(destinations, prefetch=100, timeout_s=0.5)
        for d in batch:
            if ack:
                b.ack(d)
        got.extend(batch)
    return got


def stats_of(b: Broker, destination: str):
    b.flush()
    (s,) = b.stats([destination])
    assert s.destination == destination
    return s


# -- the shared suite ----------------------------------------------------------------------------------------------


def test_roundtrip_preserves_body_headers_and_ids(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    sent = [msg(d, i, kind="dossier.sync", dossier="000.00.00.H12-251123-0042") for i in range(3)]
    sent.append(OutboundMessage(d, "no-delivery-id", b"\x00\xffbinary"))
    broker.publish(sent)

    got = drain(broker, [d], len(sent))
    assert sorted(x.message_id for x in got) == sorted(m.message_id for m in sent)
    by_id = {x.message_id: x for x in got}
    for m in sent:
        x = by_id[m.message_id]
        assert x.destination == d
        assert x.body == m.body
        assert x.headers == dict(m.headers)
        assert x.delivery_id == m.delivery_id
        assert x.attempt == 1
        assert x.redelivered is False
    assert broker.consume([d], timeout_s=0.3) == []
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight, s.retrying, s.dead) == (0, 0, 0, 0)


def test_consume_waits_at_most_timeout(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    started = time.monotonic()
    assert broker.consume([d], timeout_s=0.4) == []
    assert 0.35 <= time.monotonic() - started < 2.0


def test_consume_respects_prefetch(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    broker.publish([msg(d, i) for i in range(10)])
    time.sleep(0.2)
    first = broker.consume([d], prefetch=3, timeout_s=2)
    assert 1 <= len(first) <= 3
    for x in first:
        broker.ack(x)
    rest = drain(broker, [d], 10 - len(first))
    assert len(first) + len(rest) == 10


def _taken_unsettled(open_broker: OpenBroker, count: int) -> tuple[Broker, list[OutboundMessage], list[Delivery]]:
    """A broker that took ``count`` fresh messages of a new destination without settling them."""
    broker = open_broker()
    d = dest_name()
    broker.declare([d])
    sent = [msg(d, i) for i in range(count)]
    broker.publish(sent)
    taken = drain(broker, [d], count, ack=False)
    assert len(taken) == count
    return broker, sent, taken


def test_unacked_deliveries_come_back_after_close(open_broker: OpenBroker) -> None:
    first, sent, _ = _taken_unsettled(open_broker, 3)
    first.close()  # without settling: the deliveries must not be lost

    second = open_broker()
    again = drain(second, [sent[0].destination], 3)
    assert sorted(x.message_id for x in again) == sorted(m.message_id for m in sent)
    assert all(x.redelivered for x in again)
    assert all(x.attempt == 1 for x in again)
    assert {x.message_id: x.body for x in again} == {m.message_id: m.body for m in sent}


@pytest.mark.parametrize("which", ["all", "some"])
def test_ack_many_settles_exactly_the_given_deliveries(open_broker: OpenBroker, which: str) -> None:
    """A whole batch (one multiple ack on RabbitMQ) or a gapped part of it (one ack each): only those settle."""
    first, sent, taken = _taken_unsettled(open_broker, 6)
    acked = taken if which == "all" else [taken[0], taken[2], taken[5]]
    first.ack_many(acked)
    first.close()  # the others were never settled: they come back

    second = open_broker()
    left = {m.message_id for m in sent} - {x.message_id for x in acked}
    again = drain(second, [sent[0].destination], len(left), timeout_s=3 if not left else 15)
    assert {x.message_id for x in again} == left


def test_requeue_gives_back_at_once(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    m = msg(d, 1)
    broker.publish([m])
    (x,) = drain(broker, [d], 1, ack=False)
    broker.requeue(x)
    (y,) = drain(broker, [d], 1, timeout_s=5)
    assert y.message_id == m.message_id
    assert y.redelivered is True
    assert y.attempt == 1
    assert broker.consume([d], timeout_s=0.3) == []


def test_retry_comes_back_after_the_delay_with_next_attempt(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d], RetryPolicy(delays_s=(0.4, 0.8), jitter=0.0))
    m = msg(d, 7, kind="payment.request")
    broker.publish([m])
    (x,) = drain(broker, [d], 1, ack=False)

    retried_at = time.monotonic()
    broker.retry(x, 0.4, "partner returned 503")
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight, s.retrying) == (0, 0, 1)
    assert broker.consume([d], timeout_s=0.2) == []  # not before the delay

    (y,) = drain(broker, [d], 1, timeout_s=5, ack=False)
    assert time.monotonic() - retried_at >= 0.4
    assert y.message_id == m.message_id
    assert y.attempt == 2
    assert y.body == m.body
    assert y.headers == {"kind": "payment.request"}
    assert y.delivery_id == 7

    # A second retry with a delay outside the policy's levels still waits and counts.
    retried_at = time.monotonic()
    broker.retry(y, 0.25, "still down")
    (z,) = drain(broker, [d], 1, timeout_s=5)
    assert time.monotonic() - retried_at >= 0.25
    assert z.attempt == 3
    assert broker.consume([d], timeout_s=0.5) == []
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight, s.retrying, s.dead) == (0, 0, 0, 0)


def test_retry_with_jitter_is_never_early(broker: Broker) -> None:
    policy = RetryPolicy(delays_s=(0.5,), jitter=0.2)
    d = dest_name()
    broker.declare([d], policy)
    broker.publish([msg(d, i) for i in range(6)])
    taken = drain(broker, [d], 6, ack=False)
    rng = random.Random(4)
    due = {}
    for x in taken:
        delay = policy.delay_for(x.attempt, rng)
        assert 0.4 <= delay <= 0.6
        due[x.message_id] = time.monotonic() + delay
        broker.retry(x, delay, "jittered")
    back = drain(broker, [d], 6, timeout_s=10)
    now = time.monotonic()
    assert sorted(x.message_id for x in back) == sorted(due)
    assert all(x.attempt == 2 for x in back)
    assert all(now >= due[x.message_id] for x in back)


def test_dead_letter_then_take_dead(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    sent = [msg(d, i) for i in range(3)]
    broker.publish(sent)
    taken = drain(broker, [d], 3, ack=False)
    for x in taken:
        broker.dead_letter(x, "partner rejected: 422")
    assert wait_for(lambda: stats_of(broker, d).dead == 3)
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight, s.retrying, s.dead) == (0, 0, 0, 3)
    assert broker.consume([d], timeout_s=0.3) == []  # dead letters are not delivered

    assert broker.take_dead(d, {"no-such-id"}) == 0
    assert broker.take_dead(d, {sent[0].message_id}) == 1
    assert stats_of(broker, d).dead == 2
    assert broker.take_dead(d, None) == 2
    assert stats_of(broker, d).dead == 0


def test_stats_ready_and_in_flight(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    broker.publish([msg(d, i) for i in range(5)])
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight, s.retrying, s.dead) == (5, 0, 0, 0)

    taken = broker.consume([d], prefetch=2, timeout_s=2)
    assert len(taken) == 2
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight) == (3, 2)
    for x in taken:
        broker.ack(x)
    # RabbitMQ pushes the next messages to a live consumer ahead of consume(): they count as in flight once they
    # have arrived (while on the wire they are in neither count).
    assert wait_for(lambda: sum(_ready_in_flight(stats_of(broker, d))) == 3)
    assert stats_of(broker, d).in_flight <= 2
    assert len(drain(broker, [d], 3)) == 3
    s = stats_of(broker, d)
    assert (s.ready, s.in_flight) == (0, 0)


def _ready_in_flight(s) -> tuple[int, int]:
    return s.ready, s.in_flight


def test_declare_twice_is_a_noop(broker: Broker) -> None:
    d = dest_name()
    policy = RetryPolicy(delays_s=(1, 5), jitter=0.1)
    broker.declare([d], policy)
    broker.publish([msg(d, 1)])
    broker.declare([d], policy)
    broker.declare([d, d], policy)
    assert stats_of(broker, d).ready == 1
    assert len(drain(broker, [d], 1)) == 1


def test_publish_to_an_undeclared_destination_fails(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    with pytest.raises(BrokerError):
        broker.publish([msg(d, 1), msg(dest_name("missing"), 2)])


def test_batch_of_2000_arrives_exactly_once(broker: Broker) -> None:
    d1, d2 = dest_name("a"), dest_name("b")
    broker.declare([d1, d2])
    body = b"x" * 4096
    sent = [OutboundMessage(d1 if i % 3 else d2, f"m-{i}", body, {"i": str(i)}, i) for i in range(2000)]
    started = time.perf_counter()
    broker.publish(sent)
    published = time.perf_counter()
    s1, s2 = broker.stats([d1, d2])
    assert s1.ready + s2.ready == 2000  # all stored when publish() returns

    got = drain(broker, [d1, d2], 2000, timeout_s=30)
    consumed = time.perf_counter()
    counts = Counter(x.message_id for x in got)
    assert len(counts) == 2000 and max(counts.values()) == 1
    assert all(x.headers["i"] == x.message_id[2:] and x.body == body for x in got)
    assert broker.consume([d1, d2], timeout_s=0.5) == []
    print(
        f"\n{type(broker).__name__}: publish {2000 / (published - started):.0f} msg/s, "
        f"consume+ack {2000 / (consumed - published):.0f} msg/s"
    )


def test_one_busy_destination_does_not_starve_another(broker: Broker) -> None:
    busy, quiet = dest_name("busy"), dest_name("quiet")
    broker.declare([busy, quiet])
    broker.publish([msg(busy, i) for i in range(300)])
    broker.publish([msg(quiet, 1)])
    seen: set[str] = set()
    for _ in range(3):
        batch = broker.consume([busy, quiet], prefetch=50, timeout_s=1)
        seen |= {x.destination for x in batch}
        for x in batch:
            broker.ack(x)
        if quiet in seen:
            break
    assert quiet in seen


def test_two_consumers_share_the_work_exactly_once(open_broker: OpenBroker) -> None:
    publisher = open_broker()
    d = dest_name()
    publisher.declare([d])
    consumers = [open_broker(), open_broker()]
    for c in consumers:
        c.declare([d])
    n = 600
    publisher.publish([msg(d, i) for i in range(n)])
    results: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            b = consumers[k]
            idle = 0
            while idle < 3:
                batch = b.consume([d], prefetch=20, timeout_s=0.5)
                idle = 0 if batch else idle + 1
                for x in batch:
                    results[k].append(x.message_id)
                    b.ack(x)
            b.flush()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    every = results[0] + results[1]
    assert len(every) == n and len(set(every)) == n


def test_retire_removes_empty_destinations_and_keeps_those_with_messages(broker: Broker) -> None:
    policy = RetryPolicy(delays_s=(0.5, 5), jitter=0.1)
    empty, busy = dest_name("empty"), dest_name("busy")
    broker.declare([empty, busy], policy)
    waiting = msg(busy, 2)
    broker.publish([msg(empty, 1), waiting])
    assert len(drain(broker, [empty], 1)) == 1  # consumed and acked: empty again
    broker.flush()

    assert broker.retire([empty, busy], policy) == [busy]
    with pytest.raises(BrokerError):
        broker.publish([msg(empty, 3)])  # its queues are gone
    (x,) = drain(broker, [busy], 1)  # the kept destination still delivers what it held
    assert x.message_id == waiting.message_id
    broker.flush()
    assert broker.retire([busy], policy) == []  # idle now: removed on the next call
    with pytest.raises(BrokerError):
        broker.publish([msg(busy, 4)])


def test_refresh_removes_the_queues_of_a_destination_gone_from_the_routing(broker_url: str, tmp_path,
                                                                          migrated_copy) -> None:  # fmt: skip
    """``Runtime.refresh`` retires what the new routing lost: kept while it holds a message, removed at the next
    refresh once idle; the destination still routed to is untouched."""
    from hub.runtime import Runtime
    from tests.support import hub_settings, write_routes

    stays, goes = dest_name("stays"), dest_name("goes")
    routes_file = tmp_path / "routes.yaml"

    def route_to(*names: str) -> None:
        write_routes(
            routes_file, {n: {"endpoint": "http://127.0.0.1:9/", "retry_delays_s": [1, 5]} for n in names},
            [{"type": "dossier.sync", "to": list(names)}],
        )  # fmt: skip

    route_to(stays, goes)
    migrated_copy(tmp_path / "hub.db")
    runtime = Runtime.open(hub_settings(tmp_path, broker_url=broker_url, routes_file=routes_file))
    broker = runtime.broker
    try:
        runtime.refresh()
        broker.publish([msg(stays, 1), msg(goes, 2)])
        route_to(stays)
        runtime.refresh()
        broker.publish([msg(goes, 3)])  # it still held a message: kept
        assert len(drain(broker, [goes], 2)) == 2
        broker.flush()
        runtime.refresh()  # idle now: removed
        with pytest.raises(BrokerError):
            broker.publish([msg(goes, 4)])
        broker.publish([msg(stays, 5)])
        assert len(drain(broker, [stays], 2)) == 2
    finally:
        if isinstance(broker, RabbitMQBroker):
            broker.delete([stays, goes])
        runtime.close()


def test_settling_twice_is_harmless(broker: Broker) -> None:
    d = dest_name()
    broker.declare([d])
    broker.publish([msg(d, 1), msg(d, 2)])
    a, b = sorted(drain(broker, [d], 2, ack=False), key=lambda x: x.delivery_id or 0)
    broker.ack(a)
    broker.ack(a)
    broker.requeue(a)
    broker.ack(b)
    assert broker.consume([d], timeout_s=0.3) == []


# -- backend-specific ------------------------------------------------------------------------------------------------


def test_embedded_visibility_timeout_redelivers_a_crashed_workers_messages(tmp_path) -> None:
    url = f"embedded:{tmp_path / 'q.db'}"
    crashed = connect(url, visibility_timeout_s=0.5)
    d = dest_name()
    crashed.declare([d])
    crashed.publish([msg(d, 1)])
    (x,) = crashed.consume([d], timeout_s=1)
    # The worker "dies": it never settles and never closes.
    other = connect(url, visibility_timeout_s=0.5)
    assert other.consume([d], timeout_s=0.2) == []  # leased, invisible
    (s,) = other.stats([d])
    assert (s.ready, s.in_flight) == (0, 1)
    (y,) = other.consume([d], timeout_s=2)
    assert y.message_id == x.message_id and y.redelivered and y.attempt == 1
    other.ack(y)
    crashed.ack(x)  # the stale worker wakes up: its late ack must not touch the new claim
    crashed.flush()
    other.flush()
    (s,) = other.stats([d])
    assert (s.ready, s.in_flight) == (0, 0)
    other.close()


def test_embedded_stale_settlement_does_not_remove_a_new_claim(tmp_path) -> None:
    url = f"embedded:{tmp_path / 'q.db'}"
    a = connect(url, visibility_timeout_s=0.3)
    b = connect(url, visibility_timeout_s=30)
    d = dest_name()
    a.declare([d])
    a.publish([msg(d, 1)])
    (x,) = a.consume([d], timeout_s=1)
    time.sleep(0.4)
    (y,) = b.consume([d], timeout_s=1)  # re-claimed after a's lease expired
    a.ack(x)
    a.flush()
    (s,) = b.stats([d])
    assert s.in_flight == 1  # b's claim is intact
    b.ack(y)
    b.close()
    a.close()


_CONSUMER_SCRIPT = """
import sys, time
from broker.base import connect
b = connect(sys.argv[1])
seen, idle = [], 0
while idle < 4:
    batch = b.consume([sys.argv[2]], prefetch=25, timeout_s=0.5)
    idle = 0 if batch else idle + 1
    for x in batch:
        seen.append(x.message_id)
        b.ack(x)
b.close()
print(" ".join(seen))
"""


def test_embedded_several_processes_consume_exactly_once(tmp_path) -> None:
    url = f"embedded:{tmp_path / 'q.db'}"
    d = dest_name()
    with connect(url) as b:
        b.declare([d])
        b.publish([msg(d, i) for i in range(1500)])
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONSUMER_SCRIPT, url, d], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    every = [m for out in outputs for m in out]
    assert len(every) == 1500 and len(set(every)) == 1500
    with connect(url) as b:
        (s,) = b.stats([d])
        assert (s.ready, s.in_flight) == (0, 0)


def test_embedded_is_durable_across_reopen(tmp_path) -> None:
    path = tmp_path / "q.db"
    d = dest_name()
    with connect(f"embedded:{path}") as b:
        b.declare([d])
        b.publish([msg(d, i) for i in range(5)])
    with connect(f"embedded:{path}") as b:
        assert len(drain(b, [d], 5)) == 5


def test_rabbitmq_recovers_from_a_lost_connection(rabbitmq_url: str) -> None:
    b = connect(rabbitmq_url)
    assert isinstance(b, RabbitMQBroker)
    d = dest_name()
    try:
        b.declare([d])
        b.publish([msg(d, 1)])
        (x,) = drain(b, [d], 1, ack=False)
        _kill_socket(b)
        # publish reconnects and stores the whole batch
        b.publish([msg(d, 2), msg(d, 3)])
        b.ack(x)  # from the dead connection: a no-op, RabbitMQ gives the message back
        got = drain(b, [d], 3)
        assert sorted(m.delivery_id for m in got) == [1, 2, 3]
        assert [m.redelivered for m in got if m.delivery_id == 1] == [True]
        b.flush()  # acks are written with the next call; flush() sends them now
        _kill_socket(b)
        assert b.consume([d], timeout_s=0.3) == []  # consume reconnects too
        (s,) = b.stats([d])
        assert s.ready == 0
    finally:
        b.delete([d])
        b.close()


def test_rabbitmq_connects_to_the_first_reachable_node_and_rotates(rabbitmq_url: str) -> None:
    """Three URLs: a dead node, then the shared node under two names. A lost connection reconnects starting with
    the node after the one it had (the list wraps around, skipping the dead one)."""
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    alias = rabbitmq_url.replace("127.0.0.1", "localhost")
    b = connect(f"{dead}, {rabbitmq_url},{alias}")
    assert isinstance(b, RabbitMQBroker)
    d = dest_name()
    try:
        assert b.node == "127.0.0.1:5672"
        b.declare([d])
        _kill_socket(b)
        b.publish([msg(d, 1)])
        assert b.node == "localhost:5672"
        _kill_socket(b)
        b.publish([msg(d, 2)])
        assert b.node == "127.0.0.1:5672"
        assert sorted(x.delivery_id for x in drain(b, [d], 2)) == [1, 2]
    finally:
        b.delete([d])
        b.close()
    with pytest.raises(BrokerError):
        connect(f"{rabbitmq_url},redis://localhost")


def test_rabbitmq_topology_names(rabbitmq_url: str) -> None:
    assert work_queue("c06") == "lienthong.c06.work"
    assert dead_queue("c06") == "lienthong.c06.dead"
    assert retry_queue("c06", 12000) == "lienthong.c06.retry.12s"
    assert retry_queue("c06", 240) == "lienthong.c06.retry.0.24s"


def _kill_socket(b: RabbitMQBroker) -> None:
    sock = b._conn._impl._transport._sock
    sock.shutdown(socket.SHUT_RDWR)


# -- RabbitMQ: the queues that exist, counted in a virtual host of this module's own ------------------------------


@dataclass(frozen=True)
class PrivateVhost:
    """A virtual host of the shared node made for this module: its queue list is this module's only. (A private
    node, ``tests/private_rabbitmq.py``, gave the same: its boot cost ~7 s of CPU and ~9 s here.)"""

    name: str
    url: str

    def queues(self) -> list[str]:
        """Names of the queues of this virtual host, as the node lists them."""
        out = _rabbitmqctl("list_queues", "-p", self.name, "name", "--no-table-headers")
        return sorted(line.strip() for line in out.splitlines() if line.strip())


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def private_vhost(rabbitmq_url: str) -> Iterator[PrivateVhost]:
    """This module's own virtual host on the shared node (removed afterwards, with whatever it still holds)."""
    name = f"lienthong-broker-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield PrivateVhost(name, f"{rabbitmq_url.rsplit('/', 1)[0]}/{quote(name, safe='')}")
    finally:
        _rabbitmqctl("delete_vhost", name)


def _queues_of(vhost: PrivateVhost, destination: str, queues: list[str] | None = None) -> list[str]:
    """The queues of ``destination``: of ``queues`` when given (a listing already made), else listed now."""
    return [q for q in (vhost.queues() if queues is None else queues) if q.startswith(f"lienthong.{destination}.")]


def test_rabbitmq_partner_outage_adds_no_queue(private_vhost: PrivateVhost) -> None:
    """A partner outage: every delivery is retried or deferred three times with delays of all sizes (circuit-breaker
    deferrals of a few ms, jittered steps, delays beyond the longest step). The queues are the ones declare()
    made, before and after; every retry comes back, never early; nothing is lost."""
    policy = RetryPolicy(delays_s=(0.2, 0.5, 1.0), jitter=0.2)
    longest_s = max(level_ttls(policy)) / 1000
    d = dest_name("outage")
    rng = random.Random(12)
    with RabbitMQBroker(private_vhost.url) as b:
        b.declare([d], policy)
        before = private_vhost.queues()
        assert _queues_of(private_vhost, d, before) == sorted(
            [work_queue(d), dead_queue(d), *(retry_queue(d, t) for t in level_ttls(policy))]
        )
        sent = [msg(d, i) for i in range(40)]
        b.publish(sent)
        due: dict[str, float] = {}
        delivered: set[str] = set()
        deadline = time.monotonic() + 40
        while len(delivered) < len(sent) and time.monotonic() < deadline:
            for x in b.consume([d], prefetch=100, timeout_s=0.5):
                assert time.monotonic() >= due.get(x.message_id, 0), "a retry came back early"
                if x.attempt > 3:
                    b.ack(x)
                    delivered.add(x.message_id)
                    continue
                delay = rng.choice([rng.uniform(0.001, 0.05), policy.delay_for(x.attempt, rng), rng.uniform(0, 2.5)])
                due[x.message_id] = time.monotonic() + min(delay, longest_s)  # longer delays are capped
                b.retry(x, delay, "partner down")
        b.flush()
        assert delivered == {m.message_id for m in sent}
        assert private_vhost.queues() == before
        b.delete([d])


def test_rabbitmq_retire_keeps_every_queue_while_a_worker_still_consumes(private_vhost: PrivateVhost) -> None:
    """A worker started with the old routing may still retry or dead-letter into the destination's queues."""
    policy = RetryPolicy(delays_s=(0.5,), jitter=0.0)
    d = dest_name("consumed")
    with RabbitMQBroker(private_vhost.url) as api, RabbitMQBroker(private_vhost.url) as worker:
        api.declare([d], policy)
        worker.declare([d], policy)
        assert worker.consume([d], timeout_s=0.1) == []  # its consumer is attached
        # What declare() makes (as the outage test lists it): the same names after this retire, not one less.
        declared = sorted([work_queue(d), dead_queue(d), *(retry_queue(d, t) for t in level_ttls(policy))])
        assert api.retire([d], policy) == [d]
        assert _queues_of(private_vhost, d) == declared
        worker.close()
        assert api.retire([d], policy) == []  # the worker is gone: all of them go
        assert _queues_of(private_vhost, d) == []


def test_rabbitmq_retire_keeps_the_work_queue_while_a_retry_waits(private_vhost: PrivateVhost) -> None:
    policy = RetryPolicy(delays_s=(0.5, 30), jitter=0.0)
    d = dest_name("retired")
    with RabbitMQBroker(private_vhost.url) as b:
        b.declare([d], policy)
        b.publish([msg(d, 1)])
        (x,) = drain(b, [d], 1, ack=False)
        b.retry(x, 20, "partner down")  # waits in the 30 s step's queue
        b.flush()
        assert b.retire([d], policy) == [d]
        # The retry dead-letters into the work queue: both stay; the idle dead and 0.5 s step queues are gone.
        assert _queues_of(private_vhost, d) == sorted([work_queue(d), retry_queue(d, 30_010)]), private_vhost.queues()
        b.delete([d])
    assert _queues_of(private_vhost, d) == []


# -- pure units ------------------------------------------------------------------------------------------------------


def test_retry_policy_delays_and_attempts() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 6
    assert p.base_delay(1) == 10 and p.base_delay(5) == 7200 and p.base_delay(99) == 7200
    rng = random.Random(1)
    for attempt in range(1, 8):
        d = p.delay_for(attempt, rng)
        assert p.base_delay(attempt) * 0.8 <= d <= p.base_delay(attempt) * 1.2
    assert not p.exhausted(5) and p.exhausted(6)
    with pytest.raises(ValueError):
        RetryPolicy(delays_s=())
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)


def test_level_queues_cover_every_jittered_step() -> None:
    policy = RetryPolicy(delays_s=(10, 60, 300), jitter=0.2)
    assert level_ttls(policy) == (12_010, 72_010, 360_010)


def test_describe_broker_hides_every_password(tmp_path) -> None:
    from hub.exchange.routing import RoutingTable
    from hub.runtime import Runtime
    from tests.support import hub_settings

    url = "amqp://hub:s3cret@n1:5672/%2F, amqp://hub:s3cret@n2:5672/%2F,amqp://n3:5672/%2F"
    described = Runtime(hub_settings(tmp_path, broker_url=url), None, None, RoutingTable()).describe_broker()
    assert "s3cret" not in described
    parts = described.split(",")
    assert [p.split("@")[-1].removeprefix("amqp://").split("/")[0] for p in parts] == ["n1:5672", "n2:5672", "n3:5672"]
    assert all("hub:***@" in p for p in parts[:2])


def test_connect_picks_the_backend(tmp_path) -> None:
    with connect(f"embedded:{tmp_path / 'x.db'}") as b:
        assert isinstance(b, EmbeddedBroker)
    with pytest.raises(BrokerError):
        connect("redis://localhost")


def test_refresh_keeps_the_queues_of_a_gone_destination_while_the_store_has_deliveries_for_it(
    tmp_path, migrated_copy
) -> None:
    """A delivery still open in the store (committed during an outage, or a replayed dead letter) may yet be
    published by the relay: its destination's queues stay until nothing is pending for it."""
    from hub.runtime import Runtime
    from tests.support import hub_settings, write_routes

    stays, goes = dest_name("stays"), dest_name("goes")
    routes_file = tmp_path / "routes.yaml"

    def route_to(*names: str) -> None:
        write_routes(routes_file, {n: {"endpoint": "http://127.0.0.1:9/"} for n in names},
                     [{"type": "dossier.sync", "to": list(names)}])  # fmt: skip

    route_to(stays, goes)
    migrated_copy(tmp_path / "hub.db")
    runtime = Runtime.open(hub_settings(tmp_path, broker_url="embedded", routes_file=routes_file))
    try:
        runtime.refresh()
        runtime.store.accept_many([
            {"sender": "000.00.00.H12", "message_id": "open-1", "correlation_id": None, "message_type": "dossier.sync",
             "receiver": goes, "dossier_code": None, "envelope": b"<e/>", "destinations": [goes]}
        ])  # fmt: skip
        route_to(stays)
        runtime.refresh()
        runtime.broker.publish([msg(goes, 1)])  # its queue is still there for the relay
        assert len(drain(runtime.broker, [goes], 1)) == 1
    finally:
        runtime.close()
