"""The broker interface every queue backend implements, and ``connect()`` which picks one from a URL.

Two backends:

- ``embedded`` / ``embedded:/path/to/queue.db`` → :class:`broker.embedded.EmbeddedBroker`, a durable queue in a
  SQLite file (the zero-server default);
- ``amqp://…`` / ``amqps://…`` → :class:`broker.rabbitmq.RabbitMQBroker` (quorum queues, publisher confirms).

Semantics shared by both backends:

- **Durability.** ``publish()`` returns only when every message of the batch is durably stored (one SQLite
  transaction; RabbitMQ publisher confirms for all of them, many in flight at once). It raises
  :class:`BrokerUnavailable` when that cannot be guaranteed; the caller may then publish the batch again.
- **At-least-once.** A delivery stays *in flight* until it is settled with ``ack``/``retry``/``dead_letter``/
  ``requeue``. A delivery that is never settled (the worker died, the connection dropped, the embedded visibility
  timeout passed) is delivered again, with ``redelivered=True``. Consumers must therefore be idempotent (the hub's
  store recognises a ``delivery_id`` it has already delivered).
- **Attempts.** ``Delivery.attempt`` is 1 on the first delivery and grows by one with each ``retry()``; a plain
  redelivery (crash, ``requeue``) does not count as an attempt.
- **Concurrency.** Several processes may use the same queues at once, each with its own ``Broker`` (see
  :func:`connect`). A ``Broker`` instance is **not thread-safe**: use one instance from one thread at a time
  (pika connections and SQLite connections are not shareable across threads). Settle deliveries with the
  instance that consumed them.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class BrokerError(Exception):
    """A broker operation failed (bad topology, unknown destination, …)."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached or did not confirm storage; nothing can be assumed about the batch."""


@dataclass(frozen=True)
class OutboundMessage:
    """One message to publish. ``message_id`` is kept end to end; ``delivery_id`` is the store's row id."""

    destination: str
    message_id: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    delivery_id: int | None = None


@dataclass
class Delivery:
    """A message handed to a consumer; in flight until settled by the same ``Broker`` instance."""

    destination: str
    message_id: str
    body: bytes
    headers: dict[str, str]
    attempt: int = 1
    delivery_id: int | None = None
    redelivered: bool = False
    _token: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class QueueStats:
    """Counts for one destination. See each backend for what it can and cannot see."""

    destination: str
    ready: int
    in_flight: int
    retrying: int
    dead: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt ``n`` (1-based) failed → wait ``delay_for(n)`` before attempt n+1.

    ``max_attempts = len(delays_s) + 1``; a delivery that fails its last attempt goes to the dead-letter queue.
    """

    delays_s: tuple[float, ...] = (10, 60, 300, 1800, 7200)
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.delays_s or any(d <= 0 for d in self.delays_s):
            raise ValueError("RetryPolicy.delays_s must be a non-empty tuple of positive delays")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy.jitter must be in [0, 1)")

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def base_delay(self, attempt: int) -> float:
        """The delay before the retry that follows failed attempt ``attempt``, without jitter."""
        return float(self.delays_s[min(max(attempt, 1) - 1, len(self.delays_s) - 1)])

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """``base_delay(attempt) * uniform(1 - jitter, 1 + jitter)``."""
        uniform = (rng or random).uniform
        return self.base_delay(attempt) * uniform(1 - self.jitter, 1 + self.jitter)

    def exhausted(self, attempt: int) -> bool:
        """True when attempt ``attempt`` was the last one allowed (dead-letter instead of retrying)."""
        return attempt >= self.max_attempts


DEFAULT_RETRY_POLICY = RetryPolicy()


class Broker(ABC):
    """A durable, at-least-once work queue per destination, with delayed retries and a dead-letter queue.

    One instance per process (or per thread); an instance must not be used by two threads at the same time.
    """

    @abstractmethod
    def declare(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> None:
        """Create the queues for these destinations if they do not exist (idempotent)."""

    @abstractmethod
    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Store every message durably; return only when all are stored. Raises BrokerUnavailable otherwise."""

    @abstractmethod
    def consume(self, destinations: Sequence[str], *, prefetch: int = 100, timeout_s: float = 1.0) -> list[Delivery]:
        """Up to ``prefetch`` deliveries from these destinations, waiting at most ``timeout_s`` for the first."""

    @abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The delivery is done: remove it."""

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """``ack`` each of them (a backend may settle them with fewer round trips)."""
        for delivery in deliveries:
            self.ack(delivery)

    @abstractmethod
    def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        """Deliver it again after ``delay_s`` seconds with ``attempt + 1``, and settle the original."""

    @abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move it to its destination's dead-letter queue."""

    @abstractmethod
    def requeue(self, delivery: Delivery) -> None:
        """Give it back at once, unchanged (graceful shutdown); it comes back with ``redelivered=True``."""

    @abstractmethod
    def stats(self, destinations: Sequence[str]) -> list[QueueStats]:
        """One :class:`QueueStats` per destination, in the given order."""

    def ping(self) -> None:
        """Check that the broker can be reached now, as cheaply as the backend allows (readiness probes); raises
        :class:`BrokerError` (:class:`BrokerUnavailable`) when it cannot. Declares and counts nothing."""
        self.stats([])

    @abstractmethod
    def take_dead(self, destination: str, message_ids: set[str] | None) -> int:
        """Remove these message ids (or all when ``None``) from the dead-letter queue; return how many."""

    @abstractmethod
    def retire(self, destinations: Sequence[str], policy: RetryPolicy | None = None) -> list[str]:
        """Remove the queues of destinations no longer routed to when they are idle; keep (and log) those that still
        hold messages (on RabbitMQ, or are still consumed). ``policy`` is the one they were declared with. Returns
        the destinations kept in part or whole (call again later: idempotent)."""

    def release(self, destinations: Sequence[str]) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Stop taking deliveries for these destinations until a ``consume()`` names one again: a backend that
        fetches ahead (RabbitMQ's prefetch) gives back, unchanged, what it holds for them and has not handed out."""

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Push any locally buffered settlements to the broker now."""

    @abstractmethod
    def close(self) -> None:
        """Flush buffered settlements and release the connection. Unsettled deliveries are redelivered."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str, **kw: Any) -> Broker:
    """Open a broker for this process.

    ``"embedded"`` (a ``queue.db`` in the current directory) or ``"embedded:/path/to/queue.db"`` →
    :class:`~broker.embedded.EmbeddedBroker` (constructor options may follow as a query, e.g.
    ``embedded:/path/queue.db?visibility_timeout_s=30``, so a process configured by URL alone can set them);
    ``"amqp://…"``/``"amqps://…"`` → :class:`~broker.rabbitmq.RabbitMQBroker`. Keyword arguments go to the
    backend's constructor.
    """
    if url == "embedded" or url.startswith("embedded:"):
        from broker.embedded import EmbeddedBroker

        path, _, query = url.partition(":")[2].partition("?")
        return EmbeddedBroker(path or "queue.db", **{**_embedded_options(query), **kw})
    if url.startswith(("amqp://", "amqps://")):
        from broker.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(url, **kw)
    shown = re.sub(r"://[^/?#\s]*@", "://***@", url)  # never the password of a mistyped amqp URL
    raise BrokerError(f"unsupported broker URL {shown!r} (expected 'embedded[:path]' or 'amqp://…')")


_EMBEDDED_OPTIONS = {
    "visibility_timeout_s": float,
    "poll_interval_s": float,
    "settle_batch": int,
    "settle_interval_s": float,
    "busy_timeout_s": float,
    "synchronous": str,
}


def _embedded_options(query: str) -> dict[str, Any]:
    """``visibility_timeout_s=30&settle_batch=100`` → constructor keyword arguments of the embedded broker."""
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise BrokerError(f"invalid embedded broker options {query!r} (expected name=value&…)") from None
    options: dict[str, Any] = {}
    for name, value in pairs:
        if name not in _EMBEDDED_OPTIONS:
            raise BrokerError(f"unknown embedded broker option {name!r} (known: {', '.join(_EMBEDDED_OPTIONS)})")
        try:
            options[name] = _EMBEDDED_OPTIONS[name](value)
        except ValueError:
            raise BrokerError(f"invalid value {value!r} for embedded broker option {name!r}") from None
    return options
