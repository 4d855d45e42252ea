"""The API process's publisher: one thread that alone talks to the process's broker.

Intake never waits for the broker. ``Acceptor.commit`` stores the message and its deliveries (the outbox), the
request is answered, and the committed deliveries are offered to this thread through a bounded in-memory queue
(``offer``: a non-blocking put). The thread publishes them with one confirmed batch per turn and reports the
confirmations back to the acceptor (``note_published``), which marks them with its next commit or, when intake
is idle, here (``flush``). When the queue is full or the broker is down, an offer is dropped from memory: the
deliveries are in the store as unpublished, and the outbox relay, which runs in this same thread, publishes them
once the broker is back. So a broker outage costs the API nothing but the relay's delay, and every reconnect
(RabbitMQ's backoff loop) happens here, never on the event loop or a request thread.

The thread also keeps the broker's state for ``/readyz``: ``Broker.ping`` when it has been idle for a few seconds
(more often while the broker is down), and ``state`` answers from what it saw last, without calling the broker.

The rest of the process sees the broker as ``gateway()`` (a ``Broker``): ``declare`` is recorded and done by the
thread before it publishes again (retried until it succeeds), and the operator's rare calls (``publish`` and
``take_dead`` of a dead-letter replay, ``stats``) run in the thread while the caller waits, failing at once while
the broker is down. Nothing else shares the broker, so it needs no lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from broker.base import Broker, BrokerError, BrokerUnavailable, Delivery, OutboundMessage, QueueStats, RetryPolicy
from hub.exchange.pipeline import Relay

log = logging.getLogger(__name__)

T = TypeVar("T")


class Marks(Protocol):
    """Where confirmed delivery ids go (``Acceptor``: marked with its next commit, or by ``flush``)."""

    def note_published(self, delivery_ids: Sequence[int]) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class BrokerState:
    """What the publisher last saw of the broker: ``ok`` (``None``: not known yet), since when (monotonic) and,
    when down, why."""

    ok: bool | None
    since: float
    detail: str = ""


@dataclass
class _Call:
    op: Callable[[Broker], Any]
    done: Future[Any]


class Publisher:
    """Publishes committed deliveries, runs the outbox relay and watches the broker, in one thread.

    ``capacity``: deliveries the queue holds (``max_bytes``: their bodies' total) before offers are dropped.
    ``ping_every_s``: how long the broker may go unused before it is pinged. ``stalled_s``: a broker call running
    longer than this (a reconnect loop) makes ``state`` say down. ``idle_s``: how long the queue stays empty
    before the deferred marks are flushed."""

    def __init__(
        self,
        broker: Broker,
        *,
        relay: Relay | None = None,
        capacity: int = 50_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_batch: int = 1024,
        ping_every_s: float = 5.0,
        retry_max_s: float = 5.0,
        stalled_s: float = 3.0,
        idle_s: float = 0.2,
        call_timeout_s: float = 30.0,
    ) -> None:
        self.broker = broker
        self.relay = relay
        self.marks: Marks | None = None
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self.ping_every_s = ping_every_s
        self.retry_max_s = retry_max_s
        self.stalled_s = stalled_s
        self.idle_s = idle_s
        self.call_timeout_s = call_timeout_s
        self._queue: queue.SimpleQueue[list[OutboundMessage] | _Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the counters, the pending declarations and the state
        self._queued = 0
        self._queued_bytes = 0
        self._declare: dict[str, RetryPolicy | None] = {}
        self._state = BrokerState(None, time.monotonic(), "not checked yet")
        self._busy_since: float | None = None
        self._used = -ping_every_s  # when the broker last answered (never: ping at once)
        self._retry_s = 0.0  # wait before the next ping while down (grows to retry_max_s)
        self._next_retry = 0.0
        self._closed = False
        self._next_relay = 0.0
        self._dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    # ------------------------------------------------------------ from any thread

    def start(self) -> None:
        self._thread.start()

    def offer(self, outbound: Sequence[OutboundMessage]) -> bool:
        """Queue these deliveries for publishing without blocking; ``False`` when they were dropped instead (the
        broker is down or the queue is full): they stay unpublished in the store, for the relay."""
        size = sum(len(m.body) for m in outbound)
        with self._lock:
            full = self._queued + len(outbound) > self.capacity or self._queued_bytes + size > self.max_bytes
            if full or self._state.ok is False:
                self._dropped += len(outbound)
                return False
            self._queued += len(outbound)
            self._queued_bytes += size
        self._queue.put(list(outbound))
        return True

    def declare(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> None:
        """Have the thread declare these queues before it publishes again (and until it succeeds)."""
        with self._lock:
            for destination in destinations:
                self._declare[destination] = policy
        self._queue.put(None)  # wake the thread

    def call(self, op: Callable[[Broker], T], timeout_s: float | None = None) -> T:
        """Run ``op(broker)`` in the thread and return its result; ``BrokerUnavailable`` at once while the
        broker is down, or when the thread does not get to it within ``timeout_s``."""
        state = self.state()
        if state.ok is False:
            raise BrokerUnavailable(f"the broker is down: {state.detail}")
        if threading.current_thread() is self._thread:
            return op(self.broker)
        done: Future[T] = Future()
        self._queue.put(_Call(op, done))
        try:
            return done.result(timeout=self.call_timeout_s if timeout_s is None else timeout_s)
        except TimeoutError:
            done.cancel()
            raise BrokerUnavailable("the broker did not answer in time") from None

    def state(self) -> BrokerState:
        """The broker's state as last seen; down while a call has been stuck for longer than ``stalled_s``."""
        with self._lock:
            state, busy = self._state, self._busy_since
        if state.ok and busy is not None and time.monotonic() - busy > self.stalled_s:
            return BrokerState(False, busy, "not answering")
        return state

    def gateway(self) -> Broker:
        """The broker as the rest of the process uses it (see the module docstring)."""
        return BrokerGateway(self)

    def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is queued (one try), flush the marks, stop the thread and close the broker."""
        if self._closed:
            return
        self._stop.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        if not self._thread.is_alive():
            self._closed = True
            self.broker.close()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                first = None
                self._flush_marks()  # idle: record the confirmations the acceptor still holds
            batch, calls = self._take(first)
            if not (batch or calls) and self._stop.is_set():
                break
            try:
                if batch or calls:
                    self._work(batch, calls)
                if not self._stop.is_set():
                    self._periodic()  # under a steady load too: the relay must not wait for a quiet moment
            except Exception:  # a bug must not end the thread: what it held is in the store, for the relay
                log.exception("publisher turn failed; the relay publishes what it held")
                self._fail(calls)
        self._flush_marks()

    @staticmethod
    def _fail(calls: list[_Call]) -> None:
        for call in calls:
            if call.done.done() or not (call.done.running() or call.done.set_running_or_notify_cancel()):
                continue  # answered already, or cancelled by its caller
            call.done.set_exception(BrokerError("the publisher failed on this call"))

    def _take(self, first: list[OutboundMessage] | _Call | None) -> tuple[list[OutboundMessage], list[_Call]]:
        """``first`` and whatever else is queued, up to ``max_batch`` deliveries."""
        batch: list[OutboundMessage] = []
        calls: list[_Call] = []
        item = first
        while True:
            if isinstance(item, _Call):
                calls.append(item)
            elif item is not None:
                batch.extend(item)
                with self._lock:
                    self._queued -= len(item)
                    self._queued_bytes -= sum(len(m.body) for m in item)
            if len(batch) >= self.max_batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, calls

    def _work(self, batch: list[OutboundMessage], calls: list[_Call]) -> None:
        if not self._declared():
            self._drop(batch, calls)
            return
        if batch:
            try:
                self._use(lambda b: b.publish(batch))
            except BrokerError as exc:
                log.warning("publishing %d deliveries failed, the relay will publish them: %s", len(batch), exc)
                self._drop([], calls)
                return
            except Exception:
                log.exception("publishing %d deliveries failed, the relay will publish them", len(batch))
            else:
                self._note([m.delivery_id for m in batch if m.delivery_id is not None])
        for call in calls:
            if not call.done.set_running_or_notify_cancel():
                continue
            try:
                call.done.set_result(self._use(call.op))
            except BaseException as exc:
                call.done.set_exception(exc)

    def _declared(self) -> bool:
        """Declare what ``declare`` recorded; ``False`` (the broker is down) when that failed."""
        with self._lock:
            wanted = dict(self._declare)
        if not wanted:
            return True
        by_policy: dict[RetryPolicy | None, list[str]] = {}
        for destination, policy in wanted.items():
            by_policy.setdefault(policy, []).append(destination)
        try:
            for policy, destinations in by_policy.items():
                self._use(_declaring(destinations, policy))
        except BrokerError as exc:
            log.warning("cannot declare the queues of %s yet: %s", ", ".join(sorted(wanted)), exc)
            return False
        with self._lock:
            for destination, policy in wanted.items():
                if self._declare.get(destination, policy) is policy:
                    self._declare.pop(destination, None)
        return True

    def _drop(self, batch: list[OutboundMessage], calls: list[_Call]) -> None:
        """The broker is down: leave these and everything queued to the relay, fail the waiting calls."""
        dropped, more = len(batch), []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                dropped += len(item)
                with self._lock:
                    self._queued -= len(item)
                    self._queued_bytes -= sum(len(m.body) for m in item)
            elif isinstance(item, _Call):
                more.append(item)
        with self._lock:
            self._dropped += dropped
        for call in [*calls, *more]:
            if call.done.set_running_or_notify_cancel():
                call.done.set_exception(BrokerUnavailable(f"the broker is down: {self.state().detail}"))

    def _use(self, op: Callable[[Broker], T]) -> T:
        """Run a broker call, keeping the state ``/readyz`` reads."""
        with self._lock:
            self._busy_since = time.monotonic()
        try:
            result = op(self.broker)
        except BrokerError as exc:
            self._set(False, str(exc) or type(exc).__name__)
            raise
        except Exception:  # not the broker's own error (the relay's store is down): the state stays as it was
            with self._lock:
                self._busy_since = None
            raise
        self._set(True)
        return result

    def _set(self, ok: bool, detail: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            was = self._state
            self._busy_since = None
            if ok:
                self._used = now
                self._retry_s = 0.0
            else:
                self._retry_s = min(self.retry_max_s, max(0.5, self._retry_s * 2))
                self._next_retry = now + self._retry_s
            if ok is not was.ok or (not ok and detail != was.detail):
                self._state = BrokerState(ok, now if ok is not was.ok else was.since, detail)
            dropped, self._dropped = (self._dropped, 0) if ok and was.ok is False else (0, self._dropped)
        if ok and was.ok is False:
            self._next_relay = 0.0  # publish what was committed meanwhile now
            log.info("broker reachable%s", f" ({dropped} deliveries left to the relay meanwhile)" if dropped else "")
        elif not ok and was.ok is not False:
            log.warning("broker unreachable, intake goes on into the store: %s", detail)

    def _note(self, delivery_ids: list[int]) -> None:
        if self.marks is None or not delivery_ids:
            return
        try:
            self.marks.note_published(delivery_ids)
        except Exception as exc:  # the store is down: the relay publishes them again, the worker skips duplicates
            log.warning("could not record %d broker confirmations: %s", len(delivery_ids), exc)

    def _flush_marks(self) -> None:
        if self.marks is None:
            return
        try:
            self.marks.flush()
        except Exception as exc:  # kept for the next flush or commit
            log.warning("could not record broker confirmations: %s", exc)

    def _periodic(self) -> None:
        """Ping when the broker has gone unused (or is down), run the relay when it is due and the broker is up."""
        now = time.monotonic()
        due = now >= self._next_retry if self._state.ok is False else now >= self._used + self.ping_every_s
        if due:
            try:
                self._use(lambda b: b.ping())
            except BrokerError:
                return
            except Exception:
                log.exception("broker ping failed")
                return
        if self._declare and self._state.ok is not False and not self._declared():
            return
        if self.relay is None or self._state.ok is not True or now < self._next_relay:
            return
        self._next_relay = now + self.relay.every_s
        try:
            published = self.relay.run_once()  # not through _use: a run with nothing to publish calls no broker
        except BrokerError as exc:
            log.warning("relay could not publish: %s", exc)
            self._set(False, str(exc) or type(exc).__name__)
        except Exception as exc:  # the store is down: the next run tries again
            log.warning("relay could not run: %s", exc)
        else:
            if published:
                self._set(True)
            if published >= self.relay.batch:
                self._next_relay = 0.0  # more are waiting


def _declaring(destinations: list[str], policy: RetryPolicy | None) -> Callable[[Broker], None]:
    return lambda broker: broker.declare(destinations, policy)


class BrokerGateway(Broker):
    """The API process's broker for everything but the publisher thread: declarations are recorded for the thread,
    the operator's calls run in it (see ``Publisher``). It consumes nothing: deliveries are the workers' job."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def declare(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> None:
        self.publisher.declare(destinations, policy)

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.publisher.call(lambda b: b.publish(messages))

    def stats(self, destinations: Sequence[str]) -> list[QueueStats]:
        return self.publisher.call(lambda b: b.stats(destinations))

    def ping(self) -> None:
        state = self.publisher.state()
        if state.ok is not True:
            raise BrokerUnavailable(f"the broker is down: {state.detail}")

    def take_dead(self, destination: str, message_ids: set[str] | None) -> int:
        return self.publisher.call(lambda b: b.take_dead(destination, message_ids))

    def retire(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> list[str]:
        return self.publisher.call(lambda b: b.retire(destinations, policy))

    def consume(self, destinations: Sequence[str], *, prefetch: int = 100, timeout_s: float = 1.0) -> list[Delivery]:
        raise BrokerError("the API process does not consume deliveries (the workers do)")

    def ack(self, delivery: Delivery) -> None:
        raise BrokerError("the API process does not consume deliveries (the workers do)")

    def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        raise BrokerError("the API process does not consume deliveries (the workers do)")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        raise BrokerError("the API process does not consume deliveries (the workers do)")

    def requeue(self, delivery: Delivery) -> None:
        raise BrokerError("the API process does not consume deliveries (the workers do)")

    def close(self) -> None:
        self.publisher.close()


__all__ = ["BrokerGateway", "BrokerState", "Publisher"]
