"""Failures with real processes: a `hub worker` subprocess delivering to a sink partner subprocess
(`python -m hub.devtools.sink`), against both broker backends.

- a worker SIGKILLed mid-run: a new worker delivers everything, each delivery recorded delivered once;
- a partner answering 503 for a while: retried with growing delays, then delivered;
- a partner answering 400: dead letter at once, then ``hub dead-letters replay --all`` delivers it;
- the embedded queue write-locked by another process for a while: the worker keeps trying instead of exiting;
- SIGTERM (one worker process, or a parent with two): finishes the batch, exits 0; the next worker delivers the rest.

The worker that fails (killed, stopped, locked out) is always a ``hub worker`` process. The next worker after a
SIGKILL or SIGTERM and the operator commands (``hub dead-letters …``, through typer's ``CliRunner``) run in this
process: what is tested is what they find in the queue and the store the first worker left, not the start-up of
one more process (a ``hub`` process pays ~1.5-2.5 s of CPU for its imports).

Every child process is killed in the fixtures' teardown, whatever happens in the test. Nothing here stops a shared
service: RabbitMQ and PostgreSQL outages are in ``test_faults.py``, on a private node and a private cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from hub import packets
from hub.cli import app
from hub.config import Settings, get_settings
from hub.exchange.pipeline import Acceptor
from hub.runtime import Runtime, hub_signer
from hub.security.signing import Signer
from tests.support import (
    SinkProcess,
    hub_env,
    issue_signer,
    signed_envelope,
    stop_process,
    wait_for,
    worker_thread,
    write_routes,
)

PROVINCE, PORTAL, HUB_CODE = "000.00.00.H12", "000.00.00.G22", "000.00.00.H00"
BIN = Path(sys.executable).parent
HUB = BIN / "hub"
VISIBILITY_S = 2.0  # the embedded broker's visibility timeout in these tests (a SIGKILLed worker's claims)


# -- the hub: an acceptor in this process, workers and CLI commands as subprocesses -------------------------


@dataclass
class Hub:
    kind: str
    tmp: Path
    env: dict[str, str]
    settings: Settings
    runtime: Runtime
    acceptor: Acceptor
    province: Signer
    destination: str
    workers: list[subprocess.Popen] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)

    def envelopes(self, count: int) -> list[bytes]:
        body = packets.to_element(packets.example("dossier.sync"))
        sign = dict(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync", payload=body)
        return [signed_envelope(self.province, **sign) for _ in range(count)]

    def accept(self, count: int) -> list[str]:
        ids: list[str] = []
        data = self.envelopes(count)
        for i in range(0, count, 100):
            ids += [a.message_id for a in self.acceptor.accept_many(data[i : i + 100])]
        assert len(ids) == count
        return ids

    def start_worker(self, *args: str) -> subprocess.Popen:
        log = self.tmp / f"worker-{len(self.workers) + 1}.log"
        self.log_files.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(HUB), "worker", *args],
                env=self.env, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.workers.append(proc)
        return proc

    @contextmanager
    def successor(self) -> Iterator[None]:
        """The next worker, in this process (a thread), until the block ends (``worker_thread``)."""
        with worker_thread(self.settings, self.logs):
            yield

    def cli(self, *args: str) -> Result:
        """``hub ARGS`` in this process, with the workers' ``LIENTHONG_*`` settings (and no other: this process's own
        ``LIENTHONG_*`` variables are unset for the call, as ``hub_env`` leaves them out of the workers')."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LIENTHONG_")}
        env.update((k, v) for k, v in self.env.items() if k.startswith("LIENTHONG_"))
        get_settings.cache_clear()
        try:
            with contextlib.chdir(self.tmp):  # as the workers run: no .env of the repository read
                return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (last lines)\n" + "\n".join(p.read_text().splitlines()[-15:])
                         for p in self.log_files if p.exists())  # fmt: skip

    def overview(self):
        (stats,) = [s for s in self.runtime.store.queue_overview() if s.destination == self.destination]
        return stats

    def delivered(self) -> int:
        return self.overview().delivered


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker_kind(request) -> str:
    return request.param


@pytest.fixture
def make_hub(request, tmp_path: Path, broker_kind: str) -> Iterator[Callable[..., Hub]]:
    yield from _hub_factory(request, tmp_path, broker_kind)


@pytest.fixture
def make_hub_embedded(request, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Embedded only, with a short busy timeout: a locked queue makes broker calls fail quickly."""
    yield from _hub_factory(request, tmp_path, "embedded", "&busy_timeout_s=0.3")


def _hub_factory(request, tmp_path: Path, broker_kind: str, options: str = "") -> Iterator[Callable[..., Hub]]:
    hubs: list[Hub] = []

    def make(sink: SinkProcess, **destination: object) -> Hub:
        if broker_kind == "rabbitmq":
            broker_url = request.getfixturevalue("rabbitmq_url")
            name = f"{PORTAL}.{uuid.uuid4().hex[:8]}"
        else:
            broker_url = f"embedded:{tmp_path / 'var' / 'queue.db'}?visibility_timeout_s={VISIBILITY_S}{options}"
            name = PORTAL
        config = {"endpoint": sink.url, "retry_delays_s": [0.3, 0.3], "jitter": 0.1, "circuit_failures": 50,
                  "concurrency": 4, **destination}  # fmt: skip
        routes = write_routes(tmp_path / "routes.yaml", {name: config},
                              [{"type": "dossier.sync", "sender": PROVINCE, "to": [name]}])  # fmt: skip
        env = hub_env(
            LIENTHONG_BROKER_URL=broker_url,
            LIENTHONG_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
            LIENTHONG_ROUTES_FILE=str(routes),
            LIENTHONG_DATA_DIR=str(tmp_path / "var"),
            LIENTHONG_HUB_CODE=HUB_CODE,
            LIENTHONG_LOG_FORMAT="console",
            PYTHONUNBUFFERED="1",
        )
        settings = Settings(
            broker_url=broker_url, database_url=env["LIENTHONG_DATABASE_URL"], routes_file=routes,
            data_dir=tmp_path / "var", hub_code=HUB_CODE,
        )  # fmt: skip
        signer = issue_signer("province", tmp_path / "var" / "keys")  # creates the demo CA the hub trusts
        hub_signer(settings)  # the hub's key, created here once rather than by two workers at the same time
        runtime = Runtime.open(settings)
        acceptor = Acceptor(runtime.store, runtime.broker, runtime.routing, runtime.verifier())
        hub = Hub(broker_kind, tmp_path, env, settings, runtime, acceptor, signer, name)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        for proc in hub.workers:
            stop_process(proc)
        try:
            if broker_kind == "rabbitmq":
                hub.runtime.broker.delete([hub.destination])
        finally:
            hub.runtime.close()


def assert_delivered_exactly_once(hub: Hub, sink: SinkProcess, ids: list[str]) -> dict:
    """The sink saw every message (effect once), and the store recorded each delivery delivered once."""
    wait_for(lambda: hub.delivered() == len(ids), 30, "the store to record every delivery", hub.logs)
    stats = sink.stats()
    assert stats["unique"] == len(ids)
    assert set(stats["first_seen"]) == set(ids)
    overview = hub.overview()
    assert (overview.queued, overview.delivering, overview.retrying, overview.dead) == (0, 0, 0, 0)
    store = hub.runtime.store
    for message_id in ids:
        trace = store.trace(message_id, PROVINCE)
        assert [e.state for e in trace.events].count("delivered") == 1, message_id
        (delivery,) = trace.deliveries
        assert delivery.state == "delivered"
        # A late second attempt (at-least-once redelivery) cannot record the delivery again.
        assert store.record_delivered_many([(delivery.delivery_id, b"<again/>", "")]) == [False]
    return stats


def sigterm_and_wait(proc: subprocess.Popen, hub: Hub, within_s: float = 10) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not stop within {within_s} s of SIGTERM\n{hub.logs()}") from None
    assert code == 0, f"worker exited {code}\n{hub.logs()}"
    took = time.monotonic() - started
    wait_for(lambda: not _group_alive(proc.pid), 5, "the worker's child processes to exit", hub.logs)
    return took


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# -- a. SIGKILL ----------------------------------------------------------------------------------------------


def test_sigkilled_worker_loses_nothing_and_records_each_delivery_once(make_hub, start_sink, record_property) -> None:
    # 150 messages, partner calls of 40 ms (4 at once: ~100/s): the kill at 60 delivered lands in the first or second
    # batch (prefetch 64) with the 90 left taking ~1 s, far more than the moment between seeing 60 and the kill.
    sink = start_sink(delay_ms=40)
    hub = make_hub(sink)
    ids = hub.accept(150)
    first = hub.start_worker()
    wait_for(lambda: sink.stats()["unique"] >= 60, 30, "the first worker to deliver 60 messages", hub.logs)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=5) == -signal.SIGKILL
    at_kill = sink.stats()["unique"]
    assert at_kill < len(ids), "the worker finished before it was killed; make the sink slower"

    with hub.successor():
        wait_for(lambda: sink.stats()["unique"] == len(ids), 40, "the next worker to deliver the rest", hub.logs)
        stats = assert_delivered_exactly_once(hub, sink, ids)
    # At-least-once: what the killed worker delivered but had not recorded is delivered again (a raw
    # duplicate the sink deduplicates); nothing else is.
    record_property("raw_duplicates", stats["duplicates"])
    print(f"\n[{hub.kind}] SIGKILL after {at_kill} unique; raw duplicates at the sink: {stats['duplicates']}")
    assert stats["received"] == len(ids) + stats["duplicates"]
    assert stats["duplicates"] <= 64  # at most the killed worker's batch (prefetch)


def test_worker_rides_out_an_unavailable_embedded_queue(tmp_path, start_sink, make_hub_embedded) -> None:
    """Another process holds the queue's write lock longer than the worker's busy timeout: every broker call
    fails with BrokerUnavailable for a while. The worker keeps trying instead of exiting, then delivers all."""
    sink = start_sink(delay_ms=20)
    hub = make_hub_embedded(sink)
    ids = hub.accept(150)
    worker = hub.start_worker()
    wait_for(lambda: sink.stats()["unique"] >= 30, 30, "the worker to deliver 30 messages", hub.logs)
    locker = sqlite3.connect(tmp_path / "var" / "queue.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # the write lock, as a long backup or a stuck process would hold it
        time.sleep(3)
        assert worker.poll() is None, f"the worker exited while the queue was locked\n{hub.logs()}"
        at_unlock = sink.stats()["unique"]
    finally:
        locker.close()
    assert at_unlock < len(ids)
    wait_for(lambda: sink.stats()["unique"] == len(ids), 40, "the worker to deliver the rest", hub.logs)
    assert "broker unavailable" in hub.log_files[0].read_text()
    assert_delivered_exactly_once(hub, sink, ids)
    sigterm_and_wait(worker, hub)


# -- c. a partner failing: 503 for a while (retried with backoff), 400 (dead letter, replay) -----------------


def test_partner_503_for_a_while_is_retried_with_backoff_then_delivered(make_hub, start_sink) -> None:
    sink = start_sink()
    delays = [0.5, 1.0, 2.0, 4.0]
    hub = make_hub(sink, retry_delays_s=delays, jitter=0.1)
    worker = hub.start_worker()
    warm_up = hub.accept(1)  # wait until the worker runs, so the outage below hits it
    wait_for(lambda: sink.stats()["unique"] == 1, 30, "the worker to start", hub.logs)

    sink.control(status=503, seconds=120)  # healed below, once every message has met it twice
    ids = warm_up + hub.accept(10)

    def retried_twice() -> bool:  # not a fixed 2 s outage: on a slow machine accepting the ten outlasted it
        traces = [hub.runtime.store.trace(message_id, PROVINCE) for message_id in ids[1:]]
        return all(t is not None and [e.state for e in t.events].count("retry_scheduled") >= 2 for t in traces)

    wait_for(retried_twice, 30, "every message to be retried twice", hub.logs)
    sink.control(status=0)
    wait_for(lambda: sink.stats()["unique"] == len(ids), 30, "delivery once the partner is back", hub.logs)
    stats = assert_delivered_exactly_once(hub, sink, ids)
    assert stats["failed"] >= 10  # every message met the outage at least once …
    assert worker.poll() is None
    assert hub.overview().dead == 0  # … and none was given up on
    for message_id in ids[1:]:
        events = hub.runtime.store.trace(message_id, PROVINCE).events
        starts = [e.at.timestamp() for e in events if e.state == "attempt_started"]
        assert len(starts) >= 2, message_id
        assert [e.state for e in events].count("retry_scheduled") == len(starts) - 1
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        planned = [float(re.match(r"retry in ([\d.]+) s", e.detail)[1]) for e in events if e.state == "retry_scheduled"]
        for attempt, (gap, plan) in enumerate(zip(gaps, planned, strict=True), start=1):
            assert delays[attempt - 1] * 0.9 - 0.05 <= plan <= delays[attempt - 1] * 1.1 + 0.05, (message_id, planned)
            assert gap >= plan - 0.05, (message_id, gaps, planned)  # never earlier than the (jittered) backoff
        # Exponential: the planned wait grows (the observed gaps also hold the worker's lateness on a busy machine,
        # which once made a first gap longer than the second).
        assert planned == sorted(set(planned)), (message_id, planned)
    sigterm_and_wait(worker, hub)


def test_partner_400_dead_letters_at_once_then_cli_replay_delivers(make_hub, start_sink) -> None:
    sink = start_sink()
    hub = make_hub(sink, retry_delays_s=[0.3, 0.3, 0.3])
    worker = hub.start_worker()
    sink.control(status=400, count=3)
    ids = hub.accept(3)
    store = hub.runtime.store
    wait_for(lambda: len(store.dead_letters()) == 3, 30, "three dead letters", hub.logs)
    dead = store.dead_letters()
    assert {d.message_id for d in dead} == set(ids)
    assert {(d.reason, d.attempts) for d in dead} == {("rejected", 1)}  # not retried blindly
    assert all("400" in d.last_error for d in dead)
    stats = sink.stats()
    assert (stats["failed"], stats["unique"]) == (3, 0)
    wait_for(lambda: hub.runtime.broker.stats([hub.destination])[0].dead == 3, 10, "the broker's dead-letter queue")

    sink.control(status=0)  # healed
    replay = hub.cli("dead-letters", "replay", "--all", "--actor", "ops.tester")
    assert replay.exit_code == 0, replay.stderr
    assert replay.stdout.count("replayed dead letter") == 3
    assert "(by ops.tester)" in replay.stdout
    wait_for(lambda: sink.stats()["unique"] == 3, 20, "the replayed messages to be delivered", hub.logs)
    assert_delivered_exactly_once(hub, sink, ids)
    assert hub.runtime.broker.stats([hub.destination])[0].dead == 0

    listed = hub.cli("dead-letters", "list", "--all", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [d["replayed_by"] for d in json.loads(listed.stdout)] == ["ops.tester"] * 3, listed.stdout
    assert hub.cli("dead-letters", "list").stdout.strip() == "no dead letters"
    again = hub.cli("dead-letters", "replay", str(dead[0].id))
    assert again.exit_code == 1
    assert f"dead letter {dead[0].id} was already replayed by ops.tester" in again.stderr
    sigterm_and_wait(worker, hub)


# -- d. SIGTERM ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_stops_the_worker_cleanly_and_the_next_one_delivers_the_rest(make_hub, start_sink, processes) -> None:
    # Batches of 32 and partner calls of 100 ms (4 at once per process): at the SIGTERM (60 delivered) each process
    # finishes the batch it holds, 60 + 2 x 32 < 160 in all (129 seen), even when one process took two batches before
    # the other started; what is delivered between seeing 60 and the signal (~40/s per process) has ~0.4 s to spare.
    sink = start_sink(delay_ms=100)
    hub = make_hub(sink)
    ids = hub.accept(160)
    first = hub.start_worker("--processes", str(processes), "--prefetch", "32")
    wait_for(lambda: sink.stats()["unique"] >= 60, 30, "the first worker to deliver 60 messages", hub.logs)
    took = sigterm_and_wait(first, hub, within_s=10)
    assert "worker stopped after settling" in hub.log_files[0].read_text()
    at_stop = sink.stats()["unique"]
    assert at_stop < len(ids), "the worker finished before SIGTERM; make the sink slower"
    overview = hub.overview()
    assert overview.delivering == 0  # it finished what it had started …
    assert overview.delivered == at_stop  # … and recorded all of it

    with hub.successor():
        wait_for(lambda: sink.stats()["unique"] == len(ids), 40, "the next worker to deliver the rest", hub.logs)
        stats = assert_delivered_exactly_once(hub, sink, ids)
    assert stats["duplicates"] == 0  # a clean stop settles everything: no redelivery at all
    print(f"\n[{hub.kind}] SIGTERM after {at_stop} unique; stopped in {took:.1f} s")
