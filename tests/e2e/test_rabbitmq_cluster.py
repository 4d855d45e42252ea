"""The hub on a 3-node RabbitMQ cluster started on this machine (``tests/private_rabbitmq.py``; the shared node is
not touched): an Acceptor in this process publishing accepted envelopes and a ``hub worker`` process delivering to
a sink partner, both with ``LIENTHONG_BROKER_URL`` listing the three nodes, first node first. While messages flow,
the node both are connected to is killed (SIGKILL: a crash, not a shutdown): every accepted message is delivered,
each delivery is recorded ``delivered`` once, and delivery resumes within 10 s.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import packets
from hub.config import Settings
from hub.runtime import Runtime, hub_signer
from tests.private_rabbitmq import RabbitNode, start_cluster, stop_all
from tests.support import (
    HUB,
    HUB_BIN,
    PORTAL,
    PROVINCE,
    hub_env,
    issue_signer,
    running_sink,
    signed_envelope,
    sink_stats,
    terminate,
    wait_for,
    write_routes,
)

RESUME_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RabbitNode]]:
    nodes = start_cluster(3, tmp_path_factory.mktemp("cluster"))
    try:
        yield nodes
    finally:
        stop_all(nodes)


class Feeder(threading.Thread):
    """Accepts pre-signed envelopes in batches of 10 every 0.1 s, remembering when each batch was started."""

    def __init__(self, runtime: Runtime, envelopes: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.acceptor = runtime.acceptor()
        self.envelopes = envelopes
        self.batches: list[tuple[float, list[str]]] = []  # (time.time() before accept_many, accepted ids)
        self.error: BaseException | None = None
        self.done = threading.Event()

    def accept(self, data: list[bytes]) -> None:
        started = time.time()
        accepted = self.acceptor.accept_many(data)
        ids = [a.message_id for a in accepted]  # type: ignore[union-attr]
        assert len(ids) == len(data), accepted
        self.batches.append((started, ids))

    def run(self) -> None:
        try:
            for i in range(0, len(self.envelopes), 10):
                self.accept(self.envelopes[i : i + 10])
                time.sleep(0.1)
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.done.set()

    def ids(self) -> list[str]:
        return [m for _, ids in self.batches for m in ids]

    def accepted_after(self, moment: float) -> list[str]:
        return [m for started, ids in self.batches if started > moment for m in ids]


def test_killing_the_connected_node_loses_nothing_and_delivery_resumes(cluster: list[RabbitNode], tmp_path: Path):
    url = ",".join(node.url for node in cluster)
    with running_sink() as sink:
        sink.state.delay_s = 0.005
        destination = f"{PORTAL}.{uuid.uuid4().hex[:8]}"
        config = {"endpoint": sink.url, "retry_delays_s": [0.3, 0.3], "jitter": 0.1, "circuit_failures": 50}
        routes = write_routes(tmp_path / "routes.yaml", {destination: config},
                              [{"type": "dossier.sync", "sender": PROVINCE, "to": [destination]}])  # fmt: skip
        variables = {
            "LIENTHONG_BROKER_URL": url, "LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "LIENTHONG_ROUTES_FILE": str(routes), "LIENTHONG_DATA_DIR": str(tmp_path / "var"),
            "LIENTHONG_HUB_CODE": HUB, "LIENTHONG_LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        settings = Settings(broker_url=url, database_url=variables["LIENTHONG_DATABASE_URL"], routes_file=routes,
                            data_dir=tmp_path / "var", hub_code=HUB)  # fmt: skip
        province = issue_signer("province", tmp_path / "var" / "keys")
        hub_signer(settings)  # the hub's key, created before the worker needs it
        body = packets.to_element(packets.example("dossier.sync"))
        sign = dict(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync", payload=body)
        # 50 before the feeder, then 25 batches of 10: the node dies after the tenth, fifteen come after it
        envelopes = [signed_envelope(province, **sign) for _ in range(300)]

        runtime = Runtime.open(settings)
        log = tmp_path / "worker.log"
        worker: subprocess.Popen | None = None
        try:
            feeder = Feeder(runtime, envelopes[50:])
            feeder.accept(envelopes[:50])  # declares the queues (through the acceptor) while every node runs
            members = cluster[1].ctl("list_queues", "name", "members", "--quiet", "--no-table-headers")
            (work,) = [line for line in members.splitlines() if line.startswith(f"lienthong.{destination}.work")]
            assert all(node.node in work for node in cluster), f"not replicated on every node: {work}"

            with log.open("wb") as out:
                worker = subprocess.Popen([HUB_BIN, "worker"], env=hub_env(**variables), cwd=tmp_path,
                                          stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

            def worker_log() -> str:
                return "\n".join(log.read_text(errors="replace").splitlines()[-40:])

            wait_for(lambda: sink_stats(sink)["unique"] >= 50, 30, "the worker to deliver", worker_log)
            feeder.start()
            wait_for(lambda: len(feeder.batches) >= 10, 10, "messages to flow")

            # Both are connected to the first node of the list: it dies.
            victim = cluster[0]
            assert runtime.broker.node == f"127.0.0.1:{victim.port}"  # type: ignore[attr-defined]
            killed_at = time.time()
            victim.kill()

            def resumed() -> float | None:
                seen = sink_stats(sink)["first_seen"]
                after = [seen[m] for m in feeder.accepted_after(killed_at) if m in seen]
                return min(after) if after else None

            first = wait_for(resumed, 30, "a message accepted after the kill to be delivered", worker_log)
            assert first - killed_at <= RESUME_WITHIN_S, f"delivery resumed {first - killed_at:.1f} s after the kill"
            print(f"\ndelivery resumed {first - killed_at:.2f} s after the node was killed")

            assert feeder.done.wait(60), "the feeder did not finish"
            assert feeder.error is None, feeder.error
            ids = feeder.ids()
            assert len(ids) == len(envelopes) and len(set(ids)) == len(ids)
            wait_for(lambda: sink_stats(sink)["unique"] == len(ids), 60, "every message to be delivered", worker_log)
            seen = sink_stats(sink)["first_seen"]
            assert set(seen) == set(ids)

            def recorded() -> bool:
                (overview,) = [s for s in runtime.store.queue_overview() if s.destination == destination]
                return overview.delivered == len(ids)

            wait_for(recorded, 30, "the store to record every delivery", worker_log)
            for message_id in ids:
                trace = runtime.store.trace(message_id, PROVINCE)
                assert [e.state for e in trace.events].count("delivered") == 1, message_id
                (delivery,) = trace.deliveries
                assert delivery.state == "delivered"
            assert worker.poll() is None, f"the worker exited\n{worker_log()}"
        finally:
            if worker is not None:
                terminate(worker)
            runtime.close()
