"""Prometheus gauges for what the operator page shows, computed from the same ``views.snapshot``.

- ``lienthong_dead_letters{connector}``: dead letters waiting for an operator;
- ``lienthong_queue_messages{connector, state}``: deliveries ready / in_flight / retrying;
- ``lienthong_oldest_pending_age_seconds{connector}``: age of the oldest undelivered message (0 when none);
- ``lienthong_partner_state{connector, state}``: 1 for the partner's current state (healthy, degraded, down,
  idle), 0 for the others; ``lienthong_partner_down{connector}`` is 1 while it is down;
- ``lienthong_partner_error_ratio{connector}``: failed attempts / attempts over the recent window;
- (certificate expiries are Unix timestamps: ``hub.metrics.certificate_families``);
- ``lienthong_intake_overdue``: dossiers still at status 1 past 8 working hours (and
  ``lienthong_intake_overdue_query_available``: 0 while the working calendar settings cannot be read);
- ``lienthong_processing_overdue``: dossiers past their current due date (moved by a supplement received) that
  are not finished (``hub.dossier.deadlines.overdue_processing``; 0 too while the calendar settings cannot be read);
- ``lienthong_portal_sync_waiting`` / ``lienthong_portal_sync_lag_seconds``: dossier syncs not yet delivered to
  the national portal, and the age of the oldest;
- ``lienthong_payment_confirmations_rejected_total{connector}``: payment (and refund) confirmations the hub refused
  and receipts it held (the receipt rule), counted from ``partner_refusals`` (never deleted), so it is exact across
  processes and restarts.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hub.console.views import STATES, Snapshot

EXPORTED = (
    "lienthong_dead_letters",
    "lienthong_queue_messages",
    "lienthong_oldest_pending_age_seconds",
    "lienthong_partner_state",
    "lienthong_partner_down",
    "lienthong_partner_error_ratio",
    "lienthong_intake_overdue",
    "lienthong_intake_overdue_query_available",
    "lienthong_processing_overdue",
    "lienthong_portal_sync_waiting",
    "lienthong_portal_sync_lag_seconds",
    "lienthong_payment_confirmations_rejected_total",
)


def families(snap: Snapshot) -> list[Metric]:
    dead = GaugeMetricFamily("lienthong_dead_letters", "Dead letters waiting for an operator", labels=["connector"])
    queued = GaugeMetricFamily(
        "lienthong_queue_messages", "Deliveries ready, in flight or waiting to retry", labels=["connector", "state"]
    )
    oldest = GaugeMetricFamily(
        "lienthong_oldest_pending_age_seconds", "Age of the oldest undelivered message", labels=["connector"]
    )
    for q in snap.queues:
        dead.add_metric([q.destination], q.dead)
        for queue_state, value in (("ready", q.ready), ("in_flight", q.in_flight), ("retrying", q.retrying)):
            queued.add_metric([q.destination, queue_state], value)
        oldest.add_metric([q.destination], q.oldest_age_s or 0.0)
    state = GaugeMetricFamily(
        "lienthong_partner_state",
        "1 for the partner's current state (from recent attempts)",
        labels=["connector", "state"],
    )
    down = GaugeMetricFamily("lienthong_partner_down", "1 while the partner is down", labels=["connector"])
    errors = GaugeMetricFamily(
        "lienthong_partner_error_ratio", "Failed attempts / attempts over the recent window", labels=["connector"]
    )
    for p in snap.partners:
        for name in STATES:
            state.add_metric([p.code, name], 1.0 if p.state == name else 0.0)
        down.add_metric([p.code], 1.0 if p.state == "down" else 0.0)
        errors.add_metric([p.code], p.error_rate or 0.0)
    d = snap.deadlines
    refused = CounterMetricFamily(
        "lienthong_payment_confirmations_rejected",
        "Payment and refund confirmations the hub refused (partner_refusals)",
        labels=["connector"],
    )
    for code, count in sorted(d.payments_by_connector.items()):
        refused.add_metric([code], count)
    return [
        dead,
        queued,
        oldest,
        state,
        down,
        errors,
        GaugeMetricFamily(
            "lienthong_intake_overdue", "Dossiers at status 1 past 8 working hours", value=len(d.overdue)
        ),
        GaugeMetricFamily(
            "lienthong_intake_overdue_query_available",
            "1 when the intake deadlines can be computed (the working calendar settings are valid)",
            value=1.0 if d.overdue_available else 0.0,
        ),
        GaugeMetricFamily(
            "lienthong_processing_overdue",
            "Dossiers past their current due date and not finished (not at 9/10)",
            value=len(d.processing),
        ),
        GaugeMetricFamily(
            "lienthong_portal_sync_waiting", "Dossier syncs not delivered to the portal", value=d.sync.waiting
        ),
        GaugeMetricFamily(
            "lienthong_portal_sync_lag_seconds",
            "Age of the oldest dossier sync not delivered",
            value=d.sync.lag_s or 0.0,
        ),
        refused,
    ]
