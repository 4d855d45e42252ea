"""RabbitMQ backend: quorum work queues, TTL retry queues, a dead-letter queue, asynchronous publisher confirms.

Topology (declared by :meth:`RabbitMQBroker.declare`, idempotent) — a fixed set of queues per destination, known
from its retry policy alone::

    exchange  lienthong                      direct, durable; routing key = destination
    queue     lienthong.<dest>.work          quorum, bound to the exchange with key <dest>
    queue     lienthong.<dest>.retry.<T>s    one per backoff step of the policy; quorum, x-message-ttl = T,
                                             dead-letters back to exchange/<dest>
                                             (x-dead-letter-strategy at-least-once, x-overflow reject-publish)
    queue     lienthong.<dest>.dead          quorum, where dead_letter() puts messages

So a destination has ``2 + len(policy.delays_s)`` queues (8 with the default policy), whatever the circuit breaker
or the jitter asks for: no queue is ever declared at delivery time. One work queue per destination, so a slow or
dead partner only fills its own queue. A destination gone from the routing has its queues removed by
:meth:`RabbitMQBroker.retire` (called by ``Runtime.refresh``) once they are idle; one that still holds messages
is kept and tried again at the next refresh. Changing a destination's backoff steps adds the new steps' queues;
the old ones drain into the work queue and are removed with the destination.

Retries. For a step ``L`` of the policy the retry queue's TTL is ``T = L * (1 + jitter)`` (the longest jittered
delay of the step) + ``EXPIRY_MARGIN_MS``. ``retry(delivery, delay_s)`` — a backoff step, a jittered one, or a
circuit-breaker deferral of any length — sets the per-message ``expiration`` to ``delay_s`` + the margin and
publishes to the shortest retry queue whose ``T`` is at least that; a delay longer than the longest step is
capped to it (with a log line). RabbitMQ 3.10 (verified against 3.10.8) honours per-message TTL on quorum queues
and dead-letters expired messages at least once. Its expiry timer may fire a few ms early, hence the margin: a
retry is **never early**. Expired messages leave a queue from its head only, so a message waits behind those
published before it to the same queue: it comes back **at most ``T - delay_s`` late** (a 0.4 s deferral behind a
full 12 s step waits up to 12 s; a jittered step retry is at most ``2 * jitter * L`` late).

Clusters and failover. The URL may list the nodes of a cluster, comma-separated
(``amqp://u:p@node1:5672/%2F,amqp://u:p@node2:5672/%2F,…``). A connection goes to the first reachable node of the
list (pika tries them in turn), starting with the node *after* the one of the previous connection, so a reconnect
after a node died does not wait on it first. Queues are quorum queues: declared while the cluster's nodes run,
each has a member on every node (3.10 default when ``x-quorum-initial-group-size`` is not set; setting it now
would make re-declaring existing queues fail, as the argument must match), and stays available while a majority of
them runs. Unconfirmed publishes on a lost node are published again on the new one (at-least-once, below);
unsettled deliveries are redelivered by the cluster.

Publishing. The channel is in confirm mode, but not through ``BlockingChannel.confirm_delivery()`` (which makes
every ``basic_publish`` wait for its own confirm — ~1,500 msg/s). Instead confirms are enabled on the underlying
pika ``Channel`` (``BlockingChannel._impl``, stable across pika 1.x) with an ack/nack callback: ``publish()`` writes
the whole batch, then runs the I/O loop until every message is confirmed (``Basic.Ack``, possibly ``multiple``).
Messages are published ``mandatory`` and a ``Basic.Return`` (an undeclared destination) fails the batch with
:class:`~broker.base.BrokerError` rather than being silently dropped (the batch's routable messages are stored
all the same; the embedded backend stores nothing in that case). A timeout raises
:class:`~broker.base.BrokerUnavailable`. If the connection drops (its node died), the broker reconnects (to the next
node, exponential backoff with jitter, ``tenacity``) and republishes only the messages not yet confirmed — a message
whose confirm was lost with the connection may therefore be stored twice (at-least-once; consumers deduplicate by
``message_id``/``delivery_id``). Nacked messages are published again on a new connection, up to ``NACK_RETRIES``
times, then :class:`~broker.base.BrokerUnavailable`: on a cluster, a channel opened while a quorum queue elects its
new leader was seen to have every later publish to that queue nacked (3.10.8). A nacked retry/dead-letter copy
likewise makes the next operation start on a new connection.

Consuming. ``basic_qos(prefetch)`` per consumer (quorum queues have no global QoS), one ``basic_consume`` per
destination, manual acks. ``consume()`` waits for the first delivery, then takes whatever else has already
arrived, up to ``prefetch``; deliveries beyond that stay buffered locally (unacked) for the next call.

Settling. ``ack`` and ``requeue`` are a frame each. ``retry`` and ``dead_letter`` publish the copy (confirmed) and
ack the original **when the copy's confirm arrives** (processed during any later call, and at the latest by
``flush()``/``close()``), so neither returns after a round trip per message, and nothing is lost if the process
dies in between (the original is then redelivered). After a reconnect, settling a delivery from the old connection
is a no-op: RabbitMQ has already put that message back and will deliver it again.

Stats. ``ready``/``retrying``/``dead`` come from passive ``queue.declare`` message counts (ready messages only);
``retrying`` sums the retry queues this instance declared (none for a destination it did not declare: a passive
declare of a queue that does not exist costs the channel). ``in_flight`` counts only the unsettled deliveries **of
this instance** (other consumers' unacked messages are not visible without the management API), and
``oldest_age_s`` is always ``None``.

Heartbeats are answered only while the broker is being called; call ``consume()`` regularly (the worker does every
0.5 s) or raise ``heartbeat`` in the URL (``?heartbeat=600``) for long pauses.

Not thread-safe (pika is not): one instance is used by one thread at a time.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
import tenacity
from pika.spec import Basic, BasicProperties

from broker.base import (
    DEFAULT_RETRY_POLICY,
    Broker,
    BrokerError,
    BrokerUnavailable,
    Delivery,
    OutboundMessage,
    QueueStats,
    RetryPolicy,
)

log = logging.getLogger(__name__)

EXCHANGE = "lienthong"
H_ATTEMPT = "lienthong-attempt"
H_DELIVERY_ID = "lienthong-delivery-id"
H_REASON = "lienthong-reason"
_BROKER_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count", "lienthong-")

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosed,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def work_queue(destination: str) -> str:
    return f"{EXCHANGE}.{destination}.work"


def dead_queue(destination: str) -> str:
    return f"{EXCHANGE}.{destination}.dead"


NACK_RETRIES = 5  # new connections tried for a nacked publish() batch before it fails with BrokerUnavailable
EXPIRY_MARGIN_MS = 10  # added to every retry's expiration (see ``_retry_target``)


def retry_queue(destination: str, ttl_ms: int) -> str:
    return f"{EXCHANGE}.{destination}.retry.{ttl_ms / 1000:g}s"


def level_ttls(policy: RetryPolicy) -> tuple[int, ...]:
    """The TTLs (ms, ascending) of a policy's retry queues: one per backoff step ``L``, ``L * (1 + jitter)`` (its
    longest jittered delay) plus the expiry margin."""
    return tuple(
        sorted({math.ceil(level * (1 + policy.jitter) * 1000) + EXPIRY_MARGIN_MS for level in policy.delays_s})
    )


def split_urls(url: str) -> list[str]:
    """``amqp://a,amqp://b`` → the URLs of a cluster's nodes, in the order given (each must be ``amqp(s)://``)."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls or not all(u.startswith(("amqp://", "amqps://")) for u in urls):
        raise BrokerError("the RabbitMQ URL must be one or more comma-separated amqp:// or amqps:// URLs")
    return urls


class _Nacked(Exception):
    """A publish() batch was nacked in part: published again on a new connection (``NACK_RETRIES`` times)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


@dataclass
class _Batch:
    """Confirm bookkeeping for one publish() call."""

    outstanding: int = 0
    confirmed: set[int] = field(default_factory=set)
    returned: list[str] = field(default_factory=list)
    nacked: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    """One published message whose confirm has not arrived yet."""

    routing_key: str
    message_id: str
    batch: _Batch | None = None  # a publish() message …
    index: int = -1
    settle_tag: int | None = None  # … or the copy made by retry()/dead_letter(): ack this tag when confirmed
    returned: bool = False


class RabbitMQBroker(Broker):
    """A :class:`~broker.base.Broker` on RabbitMQ ≥ 3.10. See the module docstring for the design."""

    def __init__(
        self,
        url: str,
        *,
        publish_timeout_s: float = 30.0,
        reconnect_timeout_s: float = 30.0,
        reconnect_max_wait_s: float = 5.0,
        flush_every: int = 200,
        lazy: bool = False,
    ) -> None:
        """``lazy``: do not connect now but on first use, so a process can start while RabbitMQ is down."""
        self.url = url
        # One per cluster node; a connection goes to the first reachable, starting with the one after the node of
        # the last connection (see _open).
        self.endpoints = [pika.URLParameters(u) for u in split_urls(url)]
        self._start = 0
        self.publish_timeout_s = publish_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.reconnect_max_wait_s = reconnect_max_wait_s
        self.flush_every = flush_every
        self._conn: pika.BlockingConnection | None = None
        self._ch: Any = None  # BlockingChannel: publish + consume + settle, confirm mode
        self._admin: Any = None  # BlockingChannel for declare/stats/take_dead (a 404 there must not kill consumers)
        self._generation = 0
        self._seq = 0
        self._unconfirmed: dict[int, _Pending] = {}
        self._levels: dict[str, tuple[int, ...]] = {}  # destination -> retry queue TTLs (ms) of its current policy
        self._declared: dict[str, set[int]] = {}  # destination -> every retry queue TTL this instance declared
        self._consumers: dict[str, str] = {}  # destination -> consumer tag
        self._prefetch: int | None = None
        self._buffer: list[Delivery] = []
        self._held: dict[int, str] = {}  # delivery tag -> destination (handed out or buffered, unsettled)
        self._settled_unsent = 0
        self._renew = False  # a copy was nacked: reconnect before the next operation
        self._closed = False
        if not lazy:
            self._reconnect()

    # -- connection management ----------------------------------------------------------------------------------

    def _open(self) -> None:
        order = self.endpoints[self._start :] + self.endpoints[: self._start]
        try:
            # pika tries each node of the list in turn (one cycle; the caller's backoff repeats it).
            conn = pika.BlockingConnection(order)
        except BaseException:
            self._start = (self._start + 1) % len(self.endpoints)  # begin the next cycle with another node
            raise
        # The next connection (after this node is lost) starts with the node after it, not with a dead one.
        self._start = (self._endpoint_of(conn) + 1) % len(self.endpoints)
        try:
            ch = conn.channel()
            ch._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_select_ok)
            ch._impl.add_on_return_callback(self._on_return)
            self._select_ok = False
            while not self._select_ok:
                conn.process_data_events(time_limit=0.05)
            admin = conn.channel()
        except BaseException:
            _quiet_close(conn)
            raise
        self._conn, self._ch, self._admin = conn, ch, admin
        self._generation += 1
        self._seq = 0
        self._consumers.clear()
        self._prefetch = None

    def _endpoint_of(self, conn: pika.BlockingConnection) -> int:
        """The index in ``endpoints`` of the node ``conn`` is connected to (pika keeps a copy of its parameters)."""
        params = conn._impl.params
        for i, endpoint in enumerate(self.endpoints):
            if (endpoint.host, endpoint.port) == (params.host, params.port):
                return i
        return self._start  # pragma: no cover - pika connected to a node of the list

    @property
    def node(self) -> str | None:
        """``host:port`` of the node this instance is connected to, or None."""
        if self._conn is None or not self._conn.is_open:
            return None
        params = self._conn._impl.params
        return f"{params.host}:{params.port}"

    def _connection(self) -> pika.BlockingConnection:
        """The open connection: operations run after ``_ensure``, callbacks inside its ``process_data_events``."""
        if self._conn is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        return self._conn

    def _on_select_ok(self, _frame: Any) -> None:
        self._select_ok = True

    def _drop_connection(self) -> None:
        """Forget the current connection; what it held unsettled will be redelivered by RabbitMQ."""
        conn, self._conn, self._ch, self._admin = self._conn, None, None, None
        if conn is not None:
            _quiet_close(conn)
        self._buffer.clear()
        self._held.clear()
        self._consumers.clear()
        # Unconfirmed publish() messages are republished by publish(); unconfirmed retry/dead copies are dropped
        # (their originals come back from RabbitMQ).
        self._unconfirmed.clear()

    def _reconnect(self) -> None:
        self._drop_connection()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_CONNECTION_ERRORS),
            wait=tenacity.wait_exponential(multiplier=0.1, max=self.reconnect_max_wait_s)
            + tenacity.wait_random(0, 0.1),
            stop=tenacity.stop_after_delay(self.reconnect_timeout_s),
            before_sleep=lambda rs: log.warning(
                "RabbitMQ unreachable (%s); retrying connection", rs.outcome.exception() if rs.outcome else "?"
            ),
            reraise=True,
        )
        try:
            retrying(self._open)
        except _CONNECTION_ERRORS as exc:
            where = ", ".join(f"{p.host}:{p.port}" for p in self.endpoints)
            raise BrokerUnavailable(f"cannot connect to RabbitMQ at {where}: {exc}") from exc
        except pika.exceptions.ProbableAuthenticationError as exc:  # pragma: no cover - configuration error
            raise BrokerUnavailable(f"RabbitMQ refused the credentials: {exc}") from exc

    def _ensure(self) -> None:
        if self._closed:
            raise BrokerError("the broker is closed")
        if self._renew or self._conn is None or not self._conn.is_open or self._ch is None or not self._ch.is_open:
            self._renew = False
            self._reconnect()
        if self._admin is None or not self._admin.is_open:
            self._admin = self._connection().channel()

    def _with_reconnect(self, op: Callable[[], Any]) -> Any:
        """Run ``op``; on a lost connection reconnect (with backoff) and run it again, until reconnect_timeout_s."""
        deadline = time.monotonic() + self.reconnect_timeout_s
        while True:
            self._ensure()
            try:
                return op()
            except _CONNECTION_ERRORS as exc:
                if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code not in (320, 541):
                    # A real channel error (404 no such queue/exchange, 406 arguments differ …), not a lost
                    # connection. Start afresh next time (unsettled deliveries are redelivered) and report it.
                    self._drop_connection()
                    raise BrokerError(f"RabbitMQ refused the operation: {exc.reply_code} {exc.reply_text}") from exc
                log.warning("RabbitMQ connection lost (%r); reconnecting", exc)
                self._drop_connection()
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"RabbitMQ connection lost: {exc}") from exc

    def _pump(self, time_limit: float = 0) -> None:
        self._settled_unsent = 0
        self._connection().process_data_events(time_limit=time_limit)

    # -- confirms -----------------------------------------------------------------------------------------------

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        ok = isinstance(method, Basic.Ack)
        if multiple:
            seqs = [s for s in self._unconfirmed if s <= tag]
        else:
            seqs = [tag] if tag in self._unconfirmed else []
        wake = False
        for seq in seqs:
            p = self._unconfirmed.pop(seq)
            if p.batch is not None:
                b = p.batch
                b.outstanding -= 1
                if not ok:
                    b.nacked.append(p.message_id)
                elif p.returned:
                    b.returned.append(p.message_id)
                else:
                    b.confirmed.add(p.index)
                wake = wake or b.outstanding == 0
            elif p.settle_tag is not None and p.settle_tag in self._held:
                # The retry/dead-letter copy is stored (or not): settle the original accordingly.
                self._held.pop(p.settle_tag, None)
                if ok and not p.returned:
                    self._ch._impl.basic_ack(delivery_tag=p.settle_tag)
                else:
                    log.error("retry/dead-letter copy of %s was not stored; requeueing the original", p.message_id)
                    self._ch._impl.basic_nack(delivery_tag=p.settle_tag, requeue=True)
                    # A nack may mean a channel stuck on a quorum queue's old leader (see publish()): the next
                    # operation starts on a new connection rather than nack the next copy too.
                    self._renew = self._renew or not ok
        if wake:
            # Make process_data_events() return now instead of at its time limit.
            self._connection().add_callback_threadsafe(_noop)

    def _on_return(self, _channel: Any, method: Any, properties: BasicProperties, _body: bytes) -> None:
        for p in self._unconfirmed.values():
            if p.routing_key == method.routing_key and p.message_id == properties.message_id:
                p.returned = True

    def _publish_one(self, exchange: str, routing_key: str, body: bytes, props: BasicProperties, p: _Pending) -> None:
        self._seq += 1
        self._unconfirmed[self._seq] = p
        self._ch._impl.basic_publish(exchange, routing_key, body, props, mandatory=True)
        if self._seq % self.flush_every == 0:
            self._pump(0)  # write what is buffered and take in the confirms so far

    # -- topology -----------------------------------------------------------------------------------------------

    def declare(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> None:
        policy = policy or DEFAULT_RETRY_POLICY
        for d in destinations:
            if not d or any(c.isspace() for c in d):
                raise BrokerError(f"invalid destination name {d!r}")
        ttls = level_ttls(policy)

        def op() -> None:
            admin = self._admin
            admin.exchange_declare(EXCHANGE, exchange_type="direct", durable=True)
            for d in destinations:
                admin.queue_declare(work_queue(d), durable=True, arguments={"x-queue-type": "quorum"})
                admin.queue_bind(work_queue(d), EXCHANGE, routing_key=d)
                admin.queue_declare(dead_queue(d), durable=True, arguments={"x-queue-type": "quorum"})
                for ttl_ms in ttls:
                    self._declare_retry(d, ttl_ms)

        self._with_reconnect(op)
        for d in destinations:
            self._levels[d] = ttls
            self._declared.setdefault(d, set()).update(ttls)

    def _declare_retry(self, destination: str, ttl_ms: int) -> None:
        self._admin.queue_declare(
            retry_queue(destination, ttl_ms),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": ttl_ms,
                "x-dead-letter-exchange": EXCHANGE,
                "x-dead-letter-routing-key": destination,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    def _retry_target(self, destination: str, delay_s: float) -> tuple[str, int]:
        """(queue, expiration ms) for a retry after ``delay_s``: the shortest declared retry queue whose TTL covers
        the delay, never a new queue. A delay longer than the longest step is capped to it (logged)."""
        # RabbitMQ's expiry timer may fire a few ms before the TTL is up (seen here: up to ~3 ms): padded, a retry
        # is never early, which is what the retry policy promises.
        delay_ms = max(1, math.ceil(delay_s * 1000)) + EXPIRY_MARGIN_MS
        ttls = self._levels.get(destination) or level_ttls(DEFAULT_RETRY_POLICY)
        for ttl in ttls:
            if ttl >= delay_ms:
                return retry_queue(destination, ttl), delay_ms
        log.warning(
            "%s: retry delay %.3f s is longer than the longest retry step; capped to %.3f s",
            destination, delay_s, ttls[-1] / 1000,
        )  # fmt: skip
        return retry_queue(destination, ttls[-1]), ttls[-1]

    # -- publishing ---------------------------------------------------------------------------------------------

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        todo = list(range(len(messages)))
        now = int(time.time())
        props = [
            BasicProperties(
                delivery_mode=2,
                message_id=m.message_id,
                timestamp=now,
                headers={
                    **{str(k): str(v) for k, v in m.headers.items()},
                    H_ATTEMPT: "1",
                    **({H_DELIVERY_ID: str(m.delivery_id)} if m.delivery_id is not None else {}),
                },
            )
            for m in messages
        ]

        def op() -> None:
            nonlocal todo
            self._pump(0)
            batch = _Batch(outstanding=len(todo))
            try:
                for i in todo:
                    m = messages[i]
                    pending = _Pending(m.destination, m.message_id, batch, i)
                    self._publish_one(EXCHANGE, m.destination, m.body, props[i], pending)
                self._wait(batch)
            finally:
                todo = [i for i in todo if i not in batch.confirmed]
                if batch.outstanding:  # leave no callback pointing at an abandoned batch
                    for seq in [s for s, p in self._unconfirmed.items() if p.batch is batch]:
                        del self._unconfirmed[seq]
            if batch.returned:
                raise BrokerError(
                    f"{len(batch.returned)} message(s) unroutable (destination not declared?), e.g. {batch.returned[0]}"
                )
            if batch.nacked:
                raise _Nacked(len(batch.nacked))

        for retry in itertools.count():
            try:
                self._with_reconnect(op)
                return
            except _Nacked as exc:
                if retry >= NACK_RETRIES:
                    raise BrokerUnavailable(f"RabbitMQ refused to store {exc.count} message(s) (nack)") from None
                # Seen on a cluster: a channel opened while a quorum queue elects a new leader has every publish to
                # it nacked, for good. A new connection (to the next node) stores them.
                log.warning("RabbitMQ refused to store %d message(s) (nack); publishing them again on a new "
                            "connection", exc.count)  # fmt: skip
                self._drop_connection()
                time.sleep(min(0.05 * 2**retry, 1.0))

    def _wait(self, batch: _Batch) -> None:
        deadline = time.monotonic() + self.publish_timeout_s
        while batch.outstanding > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(f"{batch.outstanding} publisher confirm(s) not received in time")
            self._pump(min(remaining, 1.0))

    # -- consuming ----------------------------------------------------------------------------------------------

    def consume(self, destinations: Sequence[str], *, prefetch: int = 100, timeout_s: float = 1.0) -> list[Delivery]:
        if prefetch <= 0 or not destinations:
            return []
        wanted = list(dict.fromkeys(destinations))

        def op() -> list[Delivery]:
            self._setup_consumers(wanted, prefetch)
            deadline = time.monotonic() + max(0.0, timeout_s)
            self._pump(0)
            while not self._ready(wanted):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._pump(remaining)
            # Take in what has already arrived behind the first one.
            before = -1
            while len(self._buffer) != before and sum(1 for d in self._buffer if d.destination in wanted) < prefetch:
                before = len(self._buffer)
                self._pump(0)
            out: list[Delivery] = []
            keep: list[Delivery] = []
            for d in self._buffer:
                (out if d.destination in wanted and len(out) < prefetch else keep).append(d)
            self._buffer = keep
            return out

        return self._with_reconnect(op)

    def _ready(self, wanted: list[str]) -> bool:
        return any(d.destination in wanted for d in self._buffer)

    def _setup_consumers(self, wanted: list[str], prefetch: int) -> None:
        if prefetch != self._prefetch:
            # basic.qos applies to consumers created after it: start them again.
            for d in list(self._consumers):
                self._cancel(d)
            self._ch.basic_qos(prefetch_count=prefetch)
            self._prefetch = prefetch
        for d in wanted:
            if d not in self._consumers:
                self._consumers[d] = self._ch.basic_consume(
                    work_queue(d), on_message_callback=self._make_handler(d), auto_ack=False
                )

    def release(self, destinations: Sequence[str]) -> None:
        """Cancel these destinations' consumers: what was prefetched for them and not handed out goes back to the
        queue (a paused destination's work waits there, not unacknowledged here until the consumer timeout closes
        the channel); the next ``consume()`` naming one starts its consumer again."""
        held = [d for d in destinations if d in self._consumers]
        if not held or self._conn is None or self._closed:
            return

        def op() -> None:
            for d in held:
                if d in self._consumers:
                    self._cancel(d)

        self._settle_safely(op)

    def _cancel(self, destination: str) -> None:
        tag = self._consumers.pop(destination)
        self._ch.basic_cancel(tag)
        for d in [d for d in self._buffer if d.destination == destination]:
            self._buffer.remove(d)
            self._held.pop(d._token[1], None)
            self._ch.basic_nack(delivery_tag=d._token[1], requeue=True)

    def _make_handler(self, destination: str) -> Callable[..., None]:
        generation = self._generation

        def handler(_ch: Any, method: Any, props: BasicProperties, body: bytes) -> None:
            headers = dict(props.headers or {})
            attempt = int(_text(headers.get(H_ATTEMPT, "1")))
            raw_id = headers.get(H_DELIVERY_ID)
            user = {k: _text(v) for k, v in headers.items() if not k.startswith(_BROKER_HEADER_PREFIXES)}
            self._held[method.delivery_tag] = destination
            self._buffer.append(
                Delivery(
                    destination=destination,
                    message_id=props.message_id or "",
                    body=body,
                    headers=user,
                    attempt=attempt,
                    delivery_id=int(_text(raw_id)) if raw_id is not None else None,
                    redelivered=bool(method.redelivered),
                    _token=(generation, method.delivery_tag, props),
                )
            )

        return handler

    # -- settling -----------------------------------------------------------------------------------------------

    def _current(self, delivery: Delivery) -> int | None:
        """The delivery tag if this delivery belongs to the live connection and is unsettled, else None."""
        token = delivery._token
        if not (isinstance(token, tuple) and len(token) == 3):
            raise BrokerError("this delivery was not consumed from a RabbitMQBroker")
        generation, tag, _ = token
        if self._closed or generation != self._generation or self._conn is None or tag not in self._held:
            log.info("message_id=%s: settling a delivery of a closed connection; it will be redelivered",
                     delivery.message_id)
            return None
        return tag

    def _settle_safely(self, op: Callable[[], None]) -> None:
        try:
            op()
        except _CONNECTION_ERRORS as exc:
            log.warning("RabbitMQ connection lost while settling (%r); the delivery will be redelivered", exc)
            self._drop_connection()

    def _note_settled(self) -> None:
        """Settlements wait on the connection and go out with the next I/O, or at once every `flush_every`."""
        self._settled_unsent += 1
        if self._settled_unsent >= self.flush_every:
            self._pump(0)

    def ack(self, delivery: Delivery) -> None:
        tag = self._current(delivery)
        if tag is not None:
            self._ack({tag}, tag, multiple=False)

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """One ``basic.ack`` with ``multiple`` when these are every unsettled delivery up to the highest tag (the
        usual case: a worker settling the batch it took), else one ack each."""
        tags = {tag for tag in map(self._current, deliveries) if tag is not None}
        top = max(tags, default=0)
        if len(tags) < 2 or any(tag <= top and tag not in tags for tag in self._held):
            super().ack_many(deliveries)
            return
        self._ack(tags, top, multiple=True)

    def _ack(self, tags: set[int], delivery_tag: int, *, multiple: bool) -> None:
        def op() -> None:
            for tag in tags:
                del self._held[tag]
            # Queued on the connection, written with the next I/O (at the latest every `flush_every` settlements,
            # or by the next consume/publish/stats/flush/close): no write system call per ack.
            self._ch._impl.basic_ack(delivery_tag=delivery_tag, multiple=multiple)
            self._note_settled()

        self._settle_safely(op)

    def requeue(self, delivery: Delivery) -> None:
        tag = self._current(delivery)
        if tag is None:
            return

        def op() -> None:
            del self._held[tag]
            self._ch.basic_nack(delivery_tag=tag, requeue=True)

        self._settle_safely(op)

    def _copy(self, delivery: Delivery, tag: int, queue: str, extra: dict[str, str], expiration: str | None) -> None:
        original: BasicProperties = delivery._token[2]
        headers = dict(original.headers or {})
        for k in list(headers):
            if k.startswith(("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")):
                del headers[k]
        headers.update(extra)
        props = BasicProperties(
            delivery_mode=2,
            message_id=original.message_id,
            timestamp=original.timestamp,
            headers=headers,
            expiration=expiration,
        )

        def op() -> None:
            self._publish_one("", queue, delivery.body, props, _Pending(queue, delivery.message_id, settle_tag=tag))
            self._pump(0)

        self._settle_safely(op)

    def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        tag = self._current(delivery)
        if tag is None:
            return
        queue, expiration_ms = self._retry_target(delivery.destination, delay_s)
        extra = {H_ATTEMPT: str(delivery.attempt + 1), H_REASON: reason[:1000]}
        self._copy(delivery, tag, queue, extra, str(expiration_ms))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        tag = self._current(delivery)
        if tag is None:
            return
        extra = {H_REASON: reason[:1000], "lienthong-dead-at": str(int(time.time()))}
        self._copy(delivery, tag, dead_queue(delivery.destination), extra, None)

    def flush(self) -> None:
        """Wait until every retry/dead-letter copy is confirmed and its original acked."""
        if self._conn is None or self._closed:
            return
        deadline = time.monotonic() + self.publish_timeout_s
        try:
            while self._unconfirmed and time.monotonic() < deadline:
                self._pump(0.05)
            self._pump(0)
        except _CONNECTION_ERRORS as exc:
            log.warning("RabbitMQ connection lost while flushing (%r)", exc)
            self._drop_connection()

    # -- operations ---------------------------------------------------------------------------------------------

    def _count(self, queue: str) -> int:
        """Ready messages in ``queue``; 0 when it does not exist."""
        return self._occupancy(queue)[0]

    def _occupancy(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of ``queue``; (0, 0) when it does not exist (the 404 closes the admin
        channel: reopen it)."""
        try:
            method = self._admin.queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            self._admin = self._connection().channel()
            return 0, 0
        return method.message_count, method.consumer_count

    def stats(self, destinations: Sequence[str]) -> list[QueueStats]:
        def op() -> list[QueueStats]:
            self._pump(0)
            out = []
            for d in destinations:
                ttls = self._declared.get(d, set())  # only queues this instance declared: no 404 churn
                in_flight = sum(1 for dest in self._held.values() if dest == d)
                out.append(
                    QueueStats(
                        destination=d,
                        ready=self._count(work_queue(d)),
                        in_flight=in_flight,
                        retrying=sum(self._count(retry_queue(d, t)) for t in sorted(ttls)),
                        dead=self._count(dead_queue(d)),
                        oldest_age_s=None,
                    )
                )
            return out

        return self._with_reconnect(op)

    def take_dead(self, destination: str, message_ids: set[str] | None) -> int:
        def op() -> int:
            queue = dead_queue(destination)
            self._count(queue)  # 0 (and no error) when the queue does not exist
            admin = self._admin
            taken, keep = 0, []
            # Every message got stays unacked until the end, so one pass sees each message once.
            while True:
                method, props, _body = admin.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                if message_ids is None or props.message_id in message_ids:
                    admin.basic_ack(method.delivery_tag)
                    taken += 1
                else:
                    keep.append(method.delivery_tag)
            for tag in keep:
                admin.basic_nack(tag, requeue=True)
            # A quorum queue applies returns asynchronously: wait (briefly) until they are visible again, so the
            # next stats()/take_dead() does not see an empty queue.
            deadline = time.monotonic() + 5.0
            while keep and self._count(queue) < len(keep) and time.monotonic() < deadline:
                time.sleep(0.01)
            return taken

        return self._with_reconnect(op)

    def _queues(self, destination: str, policy: RetryPolicy | None) -> tuple[dict[int, str], str, str]:
        """({TTL: retry queue}, work queue, dead queue) of a destination: its declared steps and ``policy``'s."""
        ttls = self._declared.get(destination, set()) | set(level_ttls(policy or DEFAULT_RETRY_POLICY))
        retries = {t: retry_queue(destination, t) for t in sorted(ttls)}
        return retries, work_queue(destination), dead_queue(destination)

    def _forget(self, destination: str) -> None:
        if destination in self._consumers:
            self._cancel(destination)
        self._levels.pop(destination, None)
        self._declared.pop(destination, None)

    def delete(self, destinations: Sequence[str]) -> None:
        """Delete the queues of these destinations, messages and all (tests and operators only)."""

        plan = {d: self._queues(d, None) for d in destinations}

        def op() -> None:
            for d, (retries, work, dead) in plan.items():
                self._forget(d)
                for q in [work, dead, *retries.values()]:
                    self._admin.queue_delete(q)  # no error when it does not exist

        self._with_reconnect(op)

    def retire(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> list[str]:
        """Delete the queues of destinations gone from the routing when they are idle: no ready message and no
        consumer. While the work queue is not idle (a worker with the old routing still consumes it, or it holds
        messages) every queue of the destination is kept, as that worker may still retry or dead-letter into them;
        otherwise each idle queue goes, except the work queue while a retry queue still holds messages (they
        dead-letter into it). What is kept is logged. Quorum queues refuse ``queue.delete(if_empty)`` (RabbitMQ
        closes the connection), so the check is a passive declare just before the delete: nothing may still be
        routed to a retired destination."""

        plan = {d: self._queues(d, policy) for d in destinations}

        def op() -> list[str]:
            kept: list[str] = []
            for d, (retries, work, dead) in plan.items():
                self._forget(d)
                if any(self._occupancy(work)):
                    waiting, left = set(retries), [work, dead, *retries.values()]
                else:
                    waiting = {t for t, q in retries.items() if not self._delete_idle(q)}
                    left = [retries[t] for t in sorted(waiting)]
                    if not self._delete_idle(dead):
                        left.append(dead)
                    if waiting or not self._delete_idle(work):  # the waiting retries dead-letter into the work queue
                        left.append(work)
                if left:
                    kept.append(d)
                    self._declared[d] = waiting  # what still exists, for the next retire()/delete()
                    log.warning("destination %s is gone from the routing; kept its queues that are not empty "
                                "(or still consumed): %s", d, ", ".join(left))  # fmt: skip
            return kept

        return self._with_reconnect(op)

    def _delete_idle(self, queue: str) -> bool:
        """Delete ``queue`` if it has no ready message and no consumer (or does not exist); whether it is gone."""
        ready, consumers = self._occupancy(queue)
        if ready or consumers:
            return False
        self._admin.queue_delete(queue)
        return True

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._conn is not None and self._conn.is_open:
                self.flush()
        finally:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                _quiet_close(conn)
            self._buffer.clear()
            self._held.clear()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _noop() -> None:
    pass


def _quiet_close(conn: pika.BlockingConnection) -> None:
    try:
        if conn.is_open:
            conn.close()
    except Exception:  # noqa: S110 - closing a broken connection: nothing to do
        pass
