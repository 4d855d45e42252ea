"""Reconciliation of payments whose CONFIRM never came: ``hub payments reconcile`` and the workers' schedule
(``hub worker --reconcile-every MINUTES``), so a lost callback never strands a dossier at status 6.

Each run claims (``flow_records.claim_unsettled``: a lease per payment row in the store, so the workers of every
host share the work and no payment is queried twice at once) the payments initiated more than ``after`` ago and
neither paid nor failed, and ``QUERY``s each with its INIT's ``ThoiGianGD`` (TH-PC:45-59; TH-PQ:45). By the reply's
``TrangThaiGD`` (TH-PQ:48-51):

- "1" paid — settled exactly as the CONFIRM would have (``hub.flows.settlement``: the receipt fetched, the
  ``payment.receipt`` and the 6 → 4 status routed, once; TH-PQ:52-72 does the same), after the amount check;
- "3" pending (the platform does not know the final state yet) — recorded, asked again at the next run;
- "4" failed — recorded; not asked again (a later successful CONFIRM still settles it);
- "1" with another amount — refused (``amount-mismatch``, recorded like a CONFIRM's refusal), the payment marked
  ``disputed`` and not asked again: an operator looks at it;
- "1" with a receipt that breaks the receipt rule — held by the settlement (``receipt-rejected``, a
  ``payment.receipt`` refusal naming the rule): not asked again, since asking again fetches the same receipt.
  A receipt that cannot be fetched (``receipt-unavailable``) is an ``error``: asked again at the next run.

A payment whose connector cannot be queried (PayGov via LGSP: no status query is sourced; a connector gone from
the routing) is reported ``not-queryable`` and left to its callback.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.base import DeliveryError
from adapters.payment import PaymentAdapter
from hub.errors import LienthongError, PaymentRefusedError, ReceiptRejected, StoreUnavailableError
from hub.flows.payments import check_amount
from hub.flows.settlement import Settlement
from hub.store import flow_records
from mappings import payment as pm

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger(__name__)

LEASE_S = 300.0  # a claimed payment is this process's to query for at most this long
BATCH = 100  # payments claimed per run


@dataclass(frozen=True)
class Reconciled:
    """What one run found for one payment: ``outcome`` settled | already-settled | held | pending | failed | unknown
    | refused | error | not-queryable, with ``detail`` saying why."""

    reference: str
    connector: str
    dossier_code: str
    outcome: str
    trang_thai: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile(
    runtime: Runtime,
    *,
    after_s: float,
    recheck_s: float | None = None,
    at: datetime | None = None,
    settlement: Settlement | None = None,
) -> list[Reconciled]:
    """One run (see the module); ``at`` is now (the store's clock by default); a pending payment is asked again
    after ``recheck_s`` (default ``after_s``, at least a minute)."""
    now = at or runtime.store.now()
    own = settlement is None
    settlement = settlement or Settlement(runtime)
    engine = runtime.store.engine
    again = timedelta(seconds=max(recheck_s if recheck_s is not None else after_s, 60.0))
    results: list[Reconciled] = []
    try:
        for payment in flow_records.claim_unsettled(
            engine, now - timedelta(seconds=after_s), lease_s=LEASE_S, limit=BATCH, at=now
        ):
            try:
                result = _one(runtime, settlement, payment)
            except (DeliveryError, LienthongError) as exc:  # the platform or the store failed: next run
                result = Reconciled(
                    payment.reference, payment.connector, payment.dossier_code, "error", detail=str(exc)
                )
            if result.outcome in ("pending", "unknown", "error", "not-queryable", "refused"):
                state = {"pending": "pending", "refused": "disputed"}.get(result.outcome, payment.state)
                flow_records.record_check(
                    engine, payment.reference, platform_state=result.trang_thai, next_check=now + again, state=state
                )
            results.append(result)
            log.info("payment reconciled reference=%s outcome=%s", payment.reference, result.outcome)
    finally:
        if own:
            settlement.close()
    return results


def _one(runtime: Runtime, settlement: Settlement, payment: flow_records.Payment) -> Reconciled:
    def result(outcome: str, trang_thai: str | None = None, detail: str = "") -> Reconciled:
        return Reconciled(payment.reference, payment.connector, payment.dossier_code, outcome, trang_thai, detail)

    adapter = settlement.adapter(payment.connector)
    connector = runtime.registry().get(payment.connector)
    if not isinstance(adapter, PaymentAdapter) or connector is None:
        why = "no QUERY is sourced for this connector's profile" if adapter is not None else "no longer routed"
        return result("not-queryable", detail=why)
    queried = pm.query_result(adapter.query(payment.reference, payment.init_time))
    if queried.state == "pending":
        return result("pending", queried.trang_thai, "the platform does not know the final state yet")
    if queried.state == "failed":
        flow_records.mark_failed(runtime.store.engine, payment.reference, platform_state=queried.trang_thai)
        return result("failed", queried.trang_thai, "the platform reports the payment failed")
    if queried.state != "paid":
        return result("unknown", queried.trang_thai, f"TrangThaiGD {queried.trang_thai!r}")
    try:
        check_amount(queried.confirm, payment)
        settled = settlement.settle(connector, payment, queried.confirm, digest="query")
    except PaymentRefusedError as refused:
        flow_records.record_refusal(
            runtime.store.engine,
            connector=payment.connector,
            kind="payment.confirm",
            rule=refused.rule,
            reason=f"reconciliation QUERY: {refused.reason}",
            payload=repr(queried.confirm).encode(),
            reference=payment.reference,
        )
        return result("refused", queried.trang_thai, f"{refused.rule}: {refused.reason}")
    except ReceiptRejected as exc:
        return result("error", queried.trang_thai, f"{exc.rule}: {exc}")
    if settled.held is not None:
        why = f"{settled.held}: the receipt breaks the receipt rule; not asked again"
        return result("held", queried.trang_thai, why)
    return result("already-settled" if settled.duplicate else "settled", queried.trang_thai)


# ---------------------------------------------------------------------------------------------- the schedule


@dataclass
class ReconcileSchedule:
    """A worker process's reconciliation: every ``every_s`` one run (``reconcile``); the workers of other
    processes and hosts find the payments claimed and leave them."""

    runtime: Runtime
    every_s: float
    after_s: float
    stop: threading.Event

    def run(self) -> None:
        settlement = Settlement(self.runtime)
        try:
            while not self.stop.is_set():
                try:
                    reconcile(self.runtime, after_s=self.after_s, recheck_s=self.every_s, settlement=settlement)
                except StoreUnavailableError as exc:  # the worker's own backoff deals with it; try at the next run
                    log.warning("scheduled payment reconciliation skipped, the store is unavailable: %s", exc)
                except Exception:  # anything else: logged, tried again at the next run
                    log.exception("scheduled payment reconciliation")
                self.stop.wait(self.every_s)
        finally:
            settlement.close()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="payment-reconcile", daemon=True)
        thread.start()
        return thread


def start_schedule(every_min: float, after_min: float, runtime: Any, stop: threading.Event) -> threading.Thread:
    """Start a worker process's reconciliation on its runtime (``hub.runtime.run_workers``'s ``background`` hook;
    picklable with ``functools.partial`` for the worker processes)."""
    log.info(
        "payment reconciliation every %g min for payments older than %g min (worker@%s:%s)",
        every_min,
        after_min,
        socket.gethostname(),
        os.getpid(),
    )
    return ReconcileSchedule(runtime, every_min * 60.0, after_min * 60.0, stop).start()
