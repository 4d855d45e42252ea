"""The operator commands against both broker backends: ``hub queues`` and ``hub dead-letters list|replay``.

Deliveries are put in known states with the real pipeline (acceptor → broker → worker → HTTP sink on
127.0.0.1), then the commands run through typer's CliRunner with ``LIENTHONG_*`` set as an operator would.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lxml import etree
from typer.testing import CliRunner

from broker.base import BrokerError, Delivery
from hub import packets
from hub.cli import app
from hub.config import Settings, get_settings
from hub.devtools.sink import SinkServer
from hub.exchange.pipeline import Acceptor
from hub.exchange.worker import OutboundBuilder, Worker
from hub.runtime import Runtime, adapters_for, open_broker
from hub.security import keys
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import Signer, sign_payload

PROVINCE, PORTAL, OTHER = "000.00.00.H12", "000.00.00.G22", "000.00.00.G01"
COLUMNS = ["destination", "ready", "in flight", "retrying", "dead", "delivered", "oldest pending", "rate/min"]


@dataclass
class Ops:
    env: dict[str, str]
    runtime: Runtime
    acceptor: Acceptor
    worker: Worker
    province: Signer
    sink: SinkServer
    destination: str
    other: str  # a second destination that receives the same messages; nothing consumes it

    def run(self, *args: str):
        """``hub ARGS`` as an operator runs it: settings from the environment (read afresh each time)."""
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    def accept(self, count: int) -> list[str]:
        body = packets.to_element(packets.example("dossier.sync"))
        data = [
            etree.tostring(sign_payload(self.province, EnvelopeHeader(sender=PROVINCE, receiver=PORTAL,
                                                                      message_type="dossier.sync"), body))
            for _ in range(count)
        ]  # fmt: skip
        return [a.message_id for a in self.acceptor.accept_many(data)]

    def control(self, **command: object) -> None:
        url = self.sink.url.replace("/inbox", "/_control")
        urllib.request.urlopen(urllib.request.Request(url, json.dumps(command).encode(), method="POST"), timeout=5)  # noqa: S310

    def take(self) -> Delivery:
        (delivery,) = self.runtime.broker.consume([self.destination], prefetch=1, timeout_s=5)
        return delivery

    def deliver_one(self) -> Delivery:
        """Consume one queued message and run it through the worker (deliver, record, settle)."""
        delivery = self.take()
        self.worker.process_batch([delivery])
        self.runtime.broker.flush()  # settled with the broker now, as the worker's next consume() would
        return delivery

    def deliver_all(self, count: int) -> None:
        for _ in range(count):
            self.deliver_one()


@pytest.fixture(params=["embedded", "rabbitmq"])
def ops(request, tmp_path: Path) -> Iterator[Ops]:
    if request.param == "rabbitmq":
        broker_url = request.getfixturevalue("rabbitmq_url")
        destination, other = (f"{code}.{uuid.uuid4().hex[:8]}" for code in (PORTAL, OTHER))
    else:
        broker_url, destination, other = "embedded", PORTAL, OTHER
    sink = SinkServer(0)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({
        # A failed attempt waits a minute: a retried delivery stays "retrying" while the test looks at it.
        "destinations": {name: {"endpoint": sink.url, "retry_delays_s": [60], "jitter": 0.1, "circuit_failures": 50}
                         for name in (destination, other)},
        "routes": [{"type": "dossier.sync", "sender": PROVINCE, "to": [destination, other]}],
    }))  # fmt: skip
    env = {
        "LIENTHONG_BROKER_URL": broker_url,
        "LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "LIENTHONG_ROUTES_FILE": str(routes),
        "LIENTHONG_DATA_DIR": str(tmp_path / "var"),
        "LIENTHONG_LOG_FORMAT": "console",
        "COLUMNS": "200",
    }
    settings = Settings(
        broker_url=broker_url, database_url=env["LIENTHONG_DATABASE_URL"], routes_file=routes,
        data_dir=tmp_path / "var",
    )  # fmt: skip
    province = keys.issue_key("province", tmp_path / "var" / "keys")
    runtime = Runtime.open(settings)
    acceptor = runtime.acceptor()
    builder = OutboundBuilder(runtime.signer(), settings.hub_code)
    worker = Worker(runtime.store, runtime.broker, runtime.routing, builder, adapters_for(runtime.routing), prefetch=1)
    signer = Signer.from_files(province.key_path, province.cert_path)
    try:
        yield Ops(env, runtime, acceptor, worker, signer, sink, destination, other)
    finally:
        worker.close()
        try:
            if request.param == "rabbitmq":
                runtime.broker.delete([destination, other])
        finally:
            runtime.close()
            sink.shutdown()
            sink.server_close()


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``; a cell folded over several lines is
    joined back with single spaces (``squeeze`` removes them to compare ids)."""
    rows: list[list[list[str]]] = []
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if not cells:
            rows.append([])
            continue
        if cells[0] or not rows or not rows[-1]:
            rows.append([[c] if c else [] for c in cells])
        else:  # a continuation line of the row above
            for parts, c in zip(rows[-1], cells, strict=False):
                if c:
                    parts.append(c)
    for row in rows:
        if row and " ".join(row[0]) == first_cell:
            return [" ".join(parts) for parts in row]
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


def squeeze(text: str) -> str:
    return text.replace(" ", "")


def test_queues_shows_each_state_per_destination(ops: Ops) -> None:
    ops.accept(8)
    ops.control(status=400, count=1)
    ops.deliver_one()  # → dead at once
    ops.control(status=503, count=1)
    ops.deliver_one()  # → retrying (in a minute)
    ops.deliver_all(3)  # → delivered
    in_flight = ops.take()  # a worker has it and is calling the partner
    ops.runtime.store.start_attempt(in_flight.delivery_id)
    # … and 2 are still ready.

    result = ops.run("queues")
    assert result.exit_code == 0, result.output
    header = table_row(result.output, "destination")
    assert header == COLUMNS
    row = dict(zip(COLUMNS, table_row(result.output, ops.destination), strict=True))
    assert {k: row[k] for k in COLUMNS[1:6]} == {"ready": "2", "in flight": "1", "retrying": "1", "dead": "1",
                                                  "delivered": "3"}  # fmt: skip
    assert re.fullmatch(r"\d+s", row["oldest pending"]), row  # the first message was accepted seconds ago
    assert row["rate/min"] == "3"
    # The other destination got the same 8 messages and has not delivered any: its own queue, its own numbers.
    other = dict(zip(COLUMNS, table_row(result.output, ops.other), strict=True))
    assert [other[k] for k in COLUMNS[1:6]] == ["8", "0", "0", "0", "0"]
    assert other["rate/min"] == "0" and re.fullmatch(r"\d+s", other["oldest pending"])
    kind = "embedded" if ops.env["LIENTHONG_BROKER_URL"] == "embedded" else "amqp://guest:***@"
    assert f"broker {kind}" in result.output  # the title says which broker, without its password


def test_queues_on_an_empty_hub(ops: Ops) -> None:
    result = ops.run("queues")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert lines[0] == "no deliveries yet"
    assert lines[1:] == ["Overdue intake (8 working hours): none"]


def test_dead_letters_list_and_replay_by_id(ops: Ops) -> None:
    (message_id,) = ops.accept(1)
    ops.control(status=400, count=1)
    ops.deliver_one()
    (dead,) = ops.runtime.store.dead_letters()

    listed = ops.run("dead-letters", "list")
    assert listed.exit_code == 0
    assert listed.output.startswith("1 dead letter(s)")
    row = table_row(listed.output, str(dead.id))
    assert [squeeze(c) for c in row[1:4]] == [ops.destination, message_id, "dossier.sync"]
    assert row[5:7] == ["rejected", "1"]
    assert "HTTP 400" in row[7]
    assert row[8] == ""  # not replayed yet

    replayed = ops.run("dead-letters", "replay", str(dead.id), "--actor", "ops.an")
    assert replayed.exit_code == 0, replayed.output
    expected = f"replayed dead letter {dead.id}: message {message_id} to {ops.destination} (by ops.an)"
    assert replayed.output.strip() == expected
    assert ops.runtime.broker.stats([ops.destination])[0].dead == 0  # taken out of the broker's dead-letter queue
    ops.deliver_one()
    with ops.sink.state.lock:
        assert set(ops.sink.state.first_seen) == {message_id}

    assert ops.run("dead-letters", "list").output.strip() == "no dead letters"
    everything = ops.run("dead-letters", "list", "--all")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d by ops\.an", table_row(everything.output, str(dead.id))[8])

    again = ops.run("dead-letters", "replay", str(dead.id))
    assert again.exit_code == 1
    assert f"dead letter {dead.id} was already replayed by ops.an" in again.stderr


def test_dead_letters_replay_all_and_by_destination(ops: Ops) -> None:
    ids = ops.accept(2)
    ops.control(status=400, count=2)
    ops.deliver_all(2)
    assert len(ops.run("dead-letters", "list", "--destination", ops.destination).output.split("rejected")) == 3
    assert ops.run("dead-letters", "list", "--destination", ops.other).output.strip() == "no dead letters"
    assert ops.run("dead-letters", "replay", "--all", "--destination", ops.other).output.strip() == (
        "no dead letters to replay"
    )
    replayed = ops.run("dead-letters", "replay", "--all", "--actor", "ops.binh")
    assert replayed.exit_code == 0, replayed.output
    assert sorted(re.findall(r"message (\S+) to", replayed.output)) == sorted(ids)
    ops.deliver_all(2)
    with ops.sink.state.lock:
        assert set(ops.sink.state.first_seen) == set(ids)
    assert ops.run("dead-letters", "replay", "--all").output.strip() == "no dead letters to replay"


def test_dead_letters_replay_refuses_bad_requests(ops: Ops) -> None:
    unknown = ops.run("dead-letters", "replay", "424242")
    assert unknown.exit_code == 1
    assert "dead letter 424242: unknown dead letter 424242" in unknown.stderr

    neither = ops.run("dead-letters", "replay")
    assert neither.exit_code == 2
    assert "give dead-letter ids or --all" in neither.stderr
    both = ops.run("dead-letters", "replay", "1", "--all")
    assert both.exit_code == 2
    assert "not both" in both.stderr


def test_embedded_broker_options_come_from_the_url(tmp_path: Path) -> None:
    """``LIENTHONG_BROKER_URL=embedded?visibility_timeout_s=…`` tunes the queue in the data folder."""
    settings = Settings(broker_url="embedded?visibility_timeout_s=7&settle_batch=50", data_dir=tmp_path / "var")
    broker = open_broker(settings)
    try:
        assert (broker.path, broker.visibility_timeout_s, broker.settle_batch) == (tmp_path / "var" / "queue.db", 7, 50)
    finally:
        broker.close()
    for bad in ("embedded?nope=1", "embedded?visibility_timeout_s=soon", "embedded?visibility_timeout_s"):
        with pytest.raises(BrokerError, match="embedded broker option"):
            open_broker(Settings(broker_url=bad, data_dir=tmp_path / "var"))
