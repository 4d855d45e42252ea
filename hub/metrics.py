"""Prometheus metrics of the API process, and delivery figures read from the store at scrape time.

- ``lienthong_accepted_total{connector, channel}`` and ``lienthong_rejected_total{connector, reason}`` (reason =
  the problem kind: malformed, unauthenticated, forbidden, conflict, too-large, unsupported-media-type, invalid)
  and the ``lienthong_accept_seconds{channel}`` histogram are counted in this process, as is
  ``lienthong_callbacks_refused_total{connector, reason}``: partner callbacks refused before they authenticated
  (reason = the rule: unknown-connector, malformed, partner-code, checksum; connector ``unknown`` when the URL
  names no registered connector), which leave no row in the store. With ``hub serve
  --workers N`` the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder and ``/metrics`` aggregates every
  worker process (prometheus-client's multiprocess mode).
- ``lienthong_delivered_total``, ``lienthong_retried_total`` and ``lienthong_dead_lettered_total`` (per
  destination connector) happen in ``hub worker`` processes; they are counted from the store's event log when
  scraped (cached for a few seconds), so they are exact across processes and restarts. ``lienthong_pending``
  is the current number of undelivered deliveries per destination.
- ``lienthong_worker_outages_total{dependency}`` (dependency = store or broker) and the
  ``lienthong_worker_dependency_up{dependency}`` gauge (1 up, 0 down) are counted in each ``hub worker`` process,
  which serves them itself with ``hub worker --metrics-port`` (it has no API).
- ``lienthong_signin_failures_total`` and ``lienthong_signin_throttled_total{scope}`` (scope = account or address):
  the operator page's refused sign-ins, and those refused unchecked during a backoff (``hub.console.throttle``).
- ``lienthong_partner_call_duration_seconds{destination}`` (each partner call, failed ones too) and
  ``lienthong_accept_to_delivered_seconds{destination}`` (a message's acceptance to its "delivered" recorded,
  retries included) are histograms observed in ``hub worker`` processes (``--metrics-port``).
- ``lienthong_certificate_expiry_timestamp_seconds{connector}`` (each connector's soonest active certificate) and
  ``lienthong_hub_certificate_expiry_timestamp_seconds`` (the hub's own): Unix times, built by
  ``certificate_families`` from what the API reads (``hub.api.app.console_gauges``); and
  ``lienthong_trust_anchor_expiry_timestamp_seconds{ca, fingerprint}`` (each CA certificate the hub trusts,
  ``trust_anchor_families``). The operator page's trust view (``hub.console.trust``) shows the same certificates.
- The operator page's gauges (dead letters, oldest message age, partner state, deadlines): see
  ``hub.console.metrics``; the API hands them in as ``gauges`` so this module needs no web code.

Every name passes ``promtool check metrics`` (base units, ``_total`` counters): ``tests/unit/test_promtool.py``.
The alert rules are ``deploy/prometheus/alerts.yml``, each linked to its section of ``docs/runbooks.md``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)

ACCEPTED = Counter("lienthong_accepted", "Envelopes accepted (stored and queued)", ["connector", "channel"])
REJECTED = Counter("lienthong_rejected", "Submissions refused, by reason", ["connector", "reason"])
CALLBACKS_REFUSED = Counter(
    "lienthong_callbacks_refused",
    "Partner callbacks refused before they authenticated (counted here, never stored), by rule",
    ["connector", "reason"],
)
ACCEPT_SECONDS = Histogram(
    "lienthong_accept_seconds",
    "Time to accept one envelope (verify, authorize, store, publish)",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

SIGNIN_FAILURES = Counter("lienthong_signin_failures", "Operator page sign-ins refused: wrong name or password")
SIGNIN_THROTTLED = Counter(
    "lienthong_signin_throttled",
    "Operator page sign-ins refused unchecked (429) while an account or a client address backs off",
    ["scope"],  # account | address
)
for _scope in ("account", "address"):
    SIGNIN_THROTTLED.labels(scope=_scope)  # exported at 0 from the start

WORKER_OUTAGES = Counter(
    "lienthong_worker_outages", "Outages of a dependency a worker process rode out (one per outage)", ["dependency"]
)
# Latency of the worker's two halves, observed in ``hub worker`` processes (``--metrics-port``): one partner call
# (request out to answer, failures too), and a message's acceptance to its "delivered" recorded (queueing, retries
# and backoff included: what a sender waits for). Buckets span a fast partner call to a day of retries.
PARTNER_CALL_SECONDS = Histogram(
    "lienthong_partner_call_duration_seconds",
    "Duration of one call to a partner (delivered, refused or failed)",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
ACCEPT_TO_DELIVERED_SECONDS = Histogram(
    "lienthong_accept_to_delivered_seconds",
    "Time from a message's acceptance to its delivery recorded, retries included",
    ["destination"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0),
)

WORKER_DEPENDENCY_UP = Gauge(
    "lienthong_worker_dependency_up",
    "Whether a worker process reaches the dependency now (1) or is backing off (0)",
    ["dependency"],
    multiprocess_mode="liveall",
)


class StoreCollector(Collector):
    """Delivery counters per destination connector, read from the store (cached ``ttl_s`` seconds)."""

    def __init__(self, store: Any, ttl_s: float = 5.0, gauges: Callable[[], Sequence[Metric]] | None = None) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.gauges = gauges  # more families read at the same time (the operator page's, hub.console.metrics)
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] = (0.0, [])

    def describe(self) -> list:
        return []  # collected lazily; do not query the store at registration time

    def collect(self) -> Iterator:
        with self._lock:
            at, families = self._cached
            if time.monotonic() - at > self.ttl_s:
                try:
                    families = self._families()
                except Exception as exc:  # a scrape must not fail because the store is down
                    log.warning("metrics: cannot read the store: %s", exc)
                    families = []
                self._cached = (time.monotonic(), families)
        yield from families

    def _families(self) -> list:
        counts = self.store.event_counts(("delivered", "retry_scheduled", "dead_lettered"))
        names = {
            "delivered": CounterMetricFamily("lienthong_delivered", "Deliveries completed", labels=["connector"]),
            "retry_scheduled": CounterMetricFamily(
                "lienthong_retried", "Delivery retries scheduled", labels=["connector"]
            ),
            "dead_lettered": CounterMetricFamily(
                "lienthong_dead_lettered", "Deliveries given up on", labels=["connector"]
            ),
        }
        for destination, state, count in sorted(counts):
            names[state].add_metric([destination], count)
        pending = GaugeMetricFamily("lienthong_pending", "Deliveries not yet delivered nor dead", labels=["connector"])
        for stats in self.store.queue_overview():
            pending.add_metric([stats.destination], stats.pending)
        return [*names.values(), pending, *self._console()]

    def _console(self) -> list[Metric]:
        return [] if self.gauges is None else list(self.gauges())


def certificate_families(partners: Iterable[tuple[str, datetime]], hub_expiry: datetime | None) -> list[Metric]:
    """When certificates expire, as Unix timestamps (Prometheus' base unit; an alert computes the days left with
    ``- time()``): each connector's soonest active certificate (``partners``: code, expiry) and the hub's own
    signing certificate (``None``: unreadable, no sample)."""
    partner = GaugeMetricFamily(
        "lienthong_certificate_expiry_timestamp_seconds",
        "When the connector's soonest active certificate expires (Unix time)",
        labels=["connector"],
    )
    for code, expiry in sorted(partners):
        partner.add_metric([code], expiry.timestamp())
    own = GaugeMetricFamily(
        "lienthong_hub_certificate_expiry_timestamp_seconds",
        "When the hub's own signing certificate expires (Unix time)",
    )
    if hub_expiry is not None:
        own.add_metric([], hub_expiry.timestamp())
    return [partner, own]


def trust_anchor_families(anchors: Iterable[tuple[str, str, datetime]]) -> list[Metric]:
    """When the trust anchors (the CA certificates of ``LIENTHONG_TRUST_DIR``) expire, as Unix timestamps
    (``anchors``: the CA's name, its SHA-256 fingerprint, its expiry): a partner trusted through a CA, without
    pinned certificates, is refused once its CA expires."""
    family = GaugeMetricFamily(
        "lienthong_trust_anchor_expiry_timestamp_seconds",
        "When a trust anchor (CA certificate) expires (Unix time)",
        labels=["ca", "fingerprint"],
    )
    for name, fingerprint, expiry in sorted(anchors):
        family.add_metric([name, fingerprint], expiry.timestamp())
    return [family]


def render(store_collector: StoreCollector | None) -> bytes:
    """The ``/metrics`` text: this process (or all worker processes in multiprocess mode) plus the store's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    if store_collector is not None:
        registry.register(store_collector)
    return generate_latest(registry)


class _Default(Collector):
    """Everything in the process-wide default registry (process, platform, GC, and the counters above)."""

    def collect(self) -> Iterator:
        yield from REGISTRY.collect()

    def describe(self) -> list:
        return []
