"""A `hub worker` process against a PostgreSQL of its own (a private cluster on a free port, never the shared one)
that is stopped while deliveries are in flight and started again: the worker does not exit, says so in its
heartbeat, and once the database is back everything is delivered, each delivery recorded once and no partner
called twice."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config import Settings
from hub.devtools.sink import SinkServer
from hub.exchange.heartbeat import read_heartbeats
from hub.runtime import Runtime
from tests.private_postgres import PrivatePostgres
from tests.private_postgres import private_postgres as make_private_postgres
from tests.support import (
    HUB_BIN,
    PORTAL,
    PROVINCE,
    free_port,
    hub_env,
    issue_signer,
    signed_envelope,
    sink_stats,
    terminate,
    wait_for,
    write_routes,
)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with make_private_postgres() as pg:
        yield pg


def test_a_worker_rides_out_a_postgresql_stop_and_delivers_everything_once(
    private_postgres: PrivatePostgres, tmp_path: Path, sink: SinkServer
) -> None:
    messages = 40
    routes = write_routes(tmp_path / "routes.yaml", {PORTAL: {"endpoint": sink.url}},
                          [{"type": "dossier.sync", "sender": PROVINCE, "to": [PORTAL]}])  # fmt: skip
    data_dir = tmp_path / "var"
    settings = Settings(broker_url="embedded", database_url=private_postgres.url, routes_file=routes,
                        data_dir=data_dir, hub_code="000.00.00.H00")  # fmt: skip
    signer = issue_signer("province", data_dir / "keys")
    runtime = Runtime.open(settings)
    log = (tmp_path / "worker.log").open("w+")
    worker = None
    try:
        ids = []
        for _ in range(messages):
            data = signed_envelope(signer, sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
            ids.append(runtime.acceptor().accept(data).message_id)
        sink.state.delay_s = 0.25  # a slow partner: deliveries are in flight when the database stops
        env = hub_env(LIENTHONG_DATABASE_URL=private_postgres.url, LIENTHONG_ROUTES_FILE=str(routes),
                      LIENTHONG_DATA_DIR=str(data_dir), LIENTHONG_HUB_CODE="000.00.00.H00",
                      LIENTHONG_LOG_FORMAT="console")  # fmt: skip
        worker = subprocess.Popen([HUB_BIN, "worker", "--prefetch", "16"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

        def logs() -> str:
            log.flush()
            return (tmp_path / "worker.log").read_text()[-3000:]

        wait_for(lambda: sink_stats(sink)["unique"] >= 6, 30, "the first deliveries", logs)
        private_postgres.stop()
        wait_for(lambda: any(b["store"] == "down" for b in read_heartbeats(data_dir)), 15, "store down", logs)
        health = subprocess.run([HUB_BIN, "worker-health"], env=env, capture_output=True, text=True, timeout=60)
        assert health.returncode == 0 and "store down" in health.stdout  # alive, and says what it waits for
        assert worker.poll() is None, logs()
        private_postgres.start()
        wait_for(lambda: sink_stats(sink)["unique"] == messages, 30, "every delivery", logs)
        wait_for(lambda: all(_delivered(runtime, m) for m in ids), 15, "every delivery recorded", logs)
        assert [_delivered(runtime, m) for m in ids] == [1] * messages  # one delivered event each
        assert sink_stats(sink)["duplicates"] == 0  # nothing the partner took was sent again
        assert worker.poll() is None, logs()
        worker.terminate()
        assert worker.wait(timeout=20) == 0, logs()
        assert read_heartbeats(data_dir) == []  # removed on a clean exit
        output = logs()
        assert output.count("store unavailable, backing off") == 1 and "store available again after" in output
    finally:
        if worker is not None and worker.poll() is None:
            terminate(worker)
        log.close()
        runtime.close()


def _delivered(runtime: Runtime, message_id: str) -> int:
    trace = runtime.store.trace(message_id, PROVINCE)
    return 0 if trace is None else sum(e.state == "delivered" for e in trace.events)


def test_a_worker_started_before_its_database_waits_for_it_and_sigterm_ends_the_wait(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    routes = write_routes(tmp_path / "routes.yaml", {PORTAL: {"endpoint": "http://127.0.0.1:9/"}}, [])
    env = hub_env(LIENTHONG_DATABASE_URL=url, LIENTHONG_ROUTES_FILE=str(routes), LIENTHONG_DATA_DIR=str(tmp_path),
                  LIENTHONG_LOG_FORMAT="console")  # fmt: skip
    worker = subprocess.Popen([HUB_BIN, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: any(b["store"] == "down" for b in read_heartbeats(tmp_path)), 30, "a waiting worker")
        assert worker.poll() is None
        worker.terminate()
        assert worker.wait(timeout=10) == 0
        output = worker.stdout.read() if worker.stdout else ""
        assert output.count("store unavailable, backing off") == 1, output
    finally:
        if worker.poll() is None:
            terminate(worker)
