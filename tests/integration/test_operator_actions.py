"""Operator actions against a running worker, on both broker backends, with a real HTTP sink partner: a paused
destination gets nothing and loses nothing, and gets everything exactly once when resumed; "retry now" delivers
a backed-off message before its backoff ran out, once, and the copy still waiting in the broker's retry queue is
acknowledged without a second partner call."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.base import Broker, connect
from hub.config import Settings
from hub.devtools.sink import SinkServer
from hub.exchange import worker as worker_module
from hub.exchange.worker import OutboundBuilder, Worker
from hub.runtime import Runtime
from hub.security.signing import Signer
from hub.services import actions
from hub.store import DeliveryState
from tests.support import signed_envelope, sink_stats, wait_for, write_routes
from tests.support import sink_control as control

pytestmark = pytest.mark.integration

PROVINCE, PORTAL = "000.00.00.H12", "000.00.00.G22"
BACKOFF_S = 5.0  # long enough that "retry now" clearly beats it, short enough to see the stale copy arrive
# How long the worker trusts its last read of the paused destinations (``PAUSE_CACHE_S``, 2 s in the product): a
# quarter of that here, so a pause reaches the running worker within ~0.5 s, and the negatives below wait two of
# these periods (the worker has read the pauses again and had its turns in between), 1 s instead of 2 s.
PAUSE_CACHE_S = 0.5
OPERATOR = actions.Actor("operator.an", "operator")


@dataclass
class Hub:
    runtime: Runtime
    worker: Worker
    observer: Broker  # the test's own broker connection (a Broker is used by one thread)
    signer: Signer
    sink: SinkServer
    destination: str
    thread: threading.Thread

    def start(self) -> None:
        """Run the worker (``Worker.run``: the pause is read and applied there) in a thread."""
        self.thread.start()

    def accept(self) -> str:
        data = signed_envelope(self.signer, sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
        return self.runtime.acceptor().accept(data).message_id

    def queue(self):
        return self.observer.stats([self.destination])[0]

    def attempts(self, message_id: str) -> int:
        trace = self.runtime.store.trace(message_id, PROVINCE)
        return [e.state for e in trace.events].count("attempt_started")


@pytest.fixture(params=["embedded", "rabbitmq"])
def hub(request, tmp_path: Path, sink: SinkServer, province_signer: Signer, migrated_copy,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:  # fmt: skip
    monkeypatch.setattr(worker_module, "PAUSE_CACHE_S", PAUSE_CACHE_S)
    rabbit = request.param == "rabbitmq"
    broker_url = request.getfixturevalue("rabbitmq_url") if rabbit else "embedded:" + str(tmp_path / "queue.db")
    destination = f"{PORTAL}.{uuid.uuid4().hex[:8]}" if rabbit else PORTAL
    routes = write_routes(
        tmp_path / "routes.yaml",
        {destination: {"endpoint": sink.url, "retry_delays_s": [BACKOFF_S, BACKOFF_S], "jitter": 0.05}},
        [{"type": "dossier.sync", "sender": PROVINCE, "to": [destination]}],
    )
    settings = Settings(broker_url=broker_url, database_url=f"sqlite:///{migrated_copy(tmp_path / 'store.db')}",
                        routes_file=routes, data_dir=tmp_path / "var", hub_code="000.00.00.H00")  # fmt: skip
    runtime = Runtime.open(settings)
    worker_broker, observer = connect(broker_url), connect(broker_url)
    runtime.routing.declare(observer)
    worker = Worker(runtime.store, worker_broker, runtime.routing, OutboundBuilder(runtime.signer(), "000.00.00.H00"),
                    runtime.adapters())  # fmt: skip
    thread = threading.Thread(target=worker.run, daemon=True)
    made = Hub(runtime, worker, observer, province_signer, sink, destination, thread)
    try:
        yield made
    finally:
        worker.stop()
        if thread.is_alive():
            thread.join(15)
        worker.close()
        worker_broker.close()
        if rabbit:
            observer.delete([destination])  # type: ignore[attr-defined]
        observer.close()
        runtime.close()


def test_a_paused_destination_gets_nothing_then_everything_once_when_resumed(hub: Hub) -> None:
    actions.pause(hub.runtime, hub.destination, reason="portal maintenance", actor=OPERATOR)
    hub.start()
    messages = [hub.accept() for _ in range(3)]
    wait_for(lambda: hub.queue().ready == 3, what="the three messages queued")
    time.sleep(2 * PAUSE_CACHE_S)  # a negative: the worker has had time to take them, and must not have
    assert sink_stats(hub.sink)["received"] == 0
    assert hub.queue().ready == 3 and [hub.attempts(m) for m in messages] == [0, 0, 0]  # no attempt counted

    actions.resume(hub.runtime, hub.destination, actor=OPERATOR)
    wait_for(lambda: sink_stats(hub.sink)["unique"] == 3, timeout_s=10, what="the three delivered after resume")
    stats = sink_stats(hub.sink)
    assert (stats["received"], stats["duplicates"], stats["failed"]) == (3, 0, 0)
    assert [hub.attempts(m) for m in messages] == [1, 1, 1]


def test_a_pause_reaches_a_running_worker_and_deliveries_wait(hub: Hub) -> None:
    hub.start()
    first = hub.accept()
    wait_for(lambda: sink_stats(hub.sink)["unique"] == 1, what="delivery before the pause")
    actions.pause(hub.runtime, hub.destination, reason="partner asked", actor=OPERATOR)
    wait_for(lambda: hub.destination in hub.worker._paused, timeout_s=PAUSE_CACHE_S + 3, what="the worker sees it")
    held = hub.accept()
    # It waits in the queue itself (RabbitMQ: the worker cancelled its consumer, so nothing sits prefetched and
    # unacknowledged in the worker while the pause lasts).
    wait_for(lambda: hub.queue().ready == 1, what="the message ready in its queue")
    time.sleep(2 * PAUSE_CACHE_S)  # a negative: the worker has had time to take it, and must not have
    assert hub.queue().ready == 1 and sink_stats(hub.sink)["unique"] == 1 and hub.attempts(held) == 0
    actions.resume(hub.runtime, hub.destination, actor=OPERATOR)
    wait_for(lambda: sink_stats(hub.sink)["unique"] == 2, timeout_s=10, what="delivery after resume")
    assert sink_stats(hub.sink)["received"] == 2 and hub.attempts(first) == hub.attempts(held) == 1


def test_retry_now_delivers_a_backed_off_message_before_its_backoff_once(hub: Hub) -> None:
    store = hub.runtime.store
    control(hub.sink, status=503, count=1)
    hub.start()
    message_id = hub.accept()
    delivery_id = store.trace(message_id, PROVINCE).deliveries[0].delivery_id
    waiting = wait_for(lambda: (d := store.delivery(delivery_id)).state is DeliveryState.RETRYING and d,
                       what="the first attempt failed and its retry planned")  # fmt: skip
    wait_for(lambda: hub.queue().retrying == 1, what="the retry copy waiting in the broker")

    (due,) = actions.retry_now(hub.runtime, message_id=message_id, actor=OPERATOR)
    assert due.generation == 1
    wait_for(lambda: sink_stats(hub.sink)["unique"] == 1, timeout_s=BACKOFF_S, what="the retried delivery")
    delivered = wait_for(lambda: (d := store.delivery(delivery_id)).state is DeliveryState.DELIVERED and d,
                         what="the delivery recorded")  # fmt: skip
    assert delivered.delivered_at < waiting.next_attempt_at  # it did not wait out its backoff

    # The copy of the first retry comes out of the broker's retry queue later: acknowledged, not sent.
    wait_for(lambda: (q := hub.queue()).retrying == q.ready == q.in_flight == 0, timeout_s=BACKOFF_S * 2 + 5,
             what="the stale retry copy consumed")  # fmt: skip
    stats = sink_stats(hub.sink)
    assert (stats["received"], stats["failed"], stats["duplicates"]) == (1, 1, 0)  # the 503, then one delivery
    assert hub.attempts(message_id) == 2


def test_the_cli_closes_retries_now_pauses_and_resumes(tmp_path: Path, sink: SinkServer, province_signer: Signer,
                                                       migrated_copy) -> None:  # fmt: skip
    import json

    from typer.testing import CliRunner

    from hub.cli import app
    from hub.config import get_settings

    routes = write_routes(tmp_path / "routes.yaml", {PORTAL: {"endpoint": sink.url}},
                          [{"type": "dossier.sync", "sender": PROVINCE, "to": [PORTAL]}])  # fmt: skip
    env = {"LIENTHONG_BROKER_URL": f"embedded:{tmp_path / 'queue.db'}", "LIENTHONG_ROUTES_FILE": str(routes),
           "LIENTHONG_DATABASE_URL": f"sqlite:///{migrated_copy(tmp_path / 'store.db')}",
           "LIENTHONG_DATA_DIR": str(tmp_path / "var"), "LIENTHONG_LOG_FORMAT": "console",
           "LIENTHONG_HUB_CODE": "000.00.00.H00"}  # fmt: skip

    def hub(*args: str, code: int = 0) -> str:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "80"}, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == code, result.output
        return result.output

    settings = Settings(broker_url=env["LIENTHONG_BROKER_URL"], database_url=env["LIENTHONG_DATABASE_URL"],
                        routes_file=routes, data_dir=tmp_path / "var", hub_code="000.00.00.H00")  # fmt: skip
    runtime = Runtime.open(settings)
    try:
        store = runtime.store
        dead_message, waiting_message = (
            runtime.acceptor().accept(signed_envelope(province_signer, sender=PROVINCE, receiver=PORTAL,
                                                      message_type="dossier.sync")).message_id
            for _ in range(2)
        )  # fmt: skip
        dead_delivery = store.trace(dead_message).deliveries[0].delivery_id
        waiting_delivery = store.trace(waiting_message).deliveries[0].delivery_id
        store.start_attempts([dead_delivery, waiting_delivery])
        dead_id = store.record_dead(dead_delivery, reason="rejected", error="HTTP 400")
        store.record_retry(waiting_delivery, error="HTTP 503", delay_s=3600)
    finally:
        runtime.close()

    hub("dead-letters", "close", str(dead_id), "--reason", " ", code=1)
    closing = ("dead-letters", "close", str(dead_id), "--reason", "sent by hand", "--actor", "an")
    assert "closed dead letter" in hub(*closing)
    assert "was closed by an" in hub("dead-letters", "close", str(dead_id), "--reason", "again", code=1)
    assert "was closed by an" in hub("dead-letters", "replay", str(dead_id), code=1)
    (closed,) = json.loads(hub("dead-letters", "list", "--state", "closed", "--json"))
    assert (closed["id"], closed["closed_by"], closed["close_reason"]) == (dead_id, "an", "sent by hand")
    assert "no dead letters" in hub("dead-letters", "list")
    assert "closed:" in hub("dead-letters", "show", str(dead_id))

    hub("deliveries", "retry-now", code=2)
    assert f"delivery {waiting_delivery}" in hub("deliveries", "retry-now", "--message", waiting_message)
    assert "no delivery waits" in hub("deliveries", "retry-now", "--message", dead_message, code=1)
    assert f"delivery {waiting_delivery}" in hub("deliveries", "retry-now", "--destination", PORTAL)  # not sent yet
    hub("deliveries", "retry-now", "--destination", "000.00.00.X99", code=1)

    assert "no destination is paused" in hub("destinations", "paused")
    hub("destinations", "pause", "000.00.00.X99", "--reason", "x", code=1)
    assert "paused 000.00.00.G22" in hub("destinations", "pause", PORTAL, "--reason", "maintenance", "--actor", "an")
    hub("destinations", "pause", PORTAL, "--reason", "again", code=1)
    (paused,) = json.loads(hub("destinations", "paused", "--json"))
    assert (paused["destination"], paused["paused_by"], paused["reason"]) == (PORTAL, "an", "maintenance")
    assert "resumed" in hub("destinations", "resume", PORTAL)
    hub("destinations", "resume", PORTAL, code=1)


def test_the_store_side_on_both_databases(store) -> None:
    """Close, retry now (with the generation guard) and pause / resume on SQLite and PostgreSQL."""
    from hub.errors import DeadLetterClosedError, DestinationPausedError
    from hub.store.audit import AuditFilter

    ids = store.accept(sender=PROVINCE, message_id="m-1", correlation_id=None, message_type="dossier.sync",
                       receiver=PORTAL, dossier_code=None, envelope=b"<env/>",
                       destinations=["portal", "province"]).delivery_ids  # fmt: skip
    store.mark_published(ids)
    dead, waiting = ids
    store.start_attempts(ids)
    dead_id = store.record_dead(dead, reason="rejected", error="HTTP 400")
    store.record_retry(waiting, error="HTTP 503", delay_s=3600)

    assert store.close_dead_letter(dead_id, actor="an", reason="sent by hand").closed_by == "an"
    with pytest.raises(DeadLetterClosedError):
        store.replay(dead_id, actor="an")

    (due,) = store.retry_now(actor="an", message_id="m-1")
    assert (due.delivery_id, due.generation) == (waiting, 1)
    assert store.start_attempts([waiting]) == {}  # the stale copy
    assert store.start_attempts([waiting], {waiting: 1}) == {waiting: 2}

    store.pause_destination("portal", actor="an", reason="maintenance")
    with pytest.raises(DestinationPausedError):
        store.pause_destination("portal", actor="an", reason="again")
    assert store.resume_destination("portal", actor="an").reason == "maintenance"
    actions_done = [e.action for e in store.audit_entries(AuditFilter(actor="an")).items]
    assert actions_done == ["destination.resume", "destination.pause", "delivery.retry_now", "dead_letter.close"]
