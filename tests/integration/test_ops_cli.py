"""The operator commands against both broker backends: ``hub queues``, ``hub dead-letters list|show|replay`` and
``hub dossier show``, as tables (80 columns, labelled local times or ``--utc``) and as ``--json``.

Deliveries are put in known states with the real pipeline (acceptor → broker → worker → HTTP sink on
127.0.0.1), then the commands run through typer's CliRunner with ``LIENTHONG_*`` set as an operator would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from broker.base import BrokerError, Delivery
from hub import packets
from hub.cli import app
from hub.config import Settings, get_settings
from hub.devtools.sink import SinkServer
from hub.exchange.pipeline import Acceptor
from hub.exchange.worker import Worker
from hub.runtime import Runtime, open_broker
from hub.security.signing import Signer
from tests.support import open_pipeline, signed_envelope, sink_control, write_routes

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

    def run(self, *args: str, columns: int = 200):
        """``hub ARGS`` as an operator runs it: settings from the environment (read afresh each time), on a
        terminal ``columns`` wide."""
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, list(args), env={**self.env, "COLUMNS": str(columns)},
                                      catch_exceptions=False)  # fmt: skip
        finally:
            get_settings.cache_clear()

    def accept(self, count: int) -> list[str]:
        body = packets.to_element(packets.example("dossier.sync"))
        sign = dict(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync", payload=body)
        data = [signed_envelope(self.province, **sign) for _ in range(count)]
        return [a.message_id for a in self.acceptor.accept_many(data)]

    def control(self, **command: object) -> None:
        sink_control(self.sink, **command)

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
def ops(request, tmp_path: Path, sink: SinkServer, province_signer: Signer, migrated_copy) -> Iterator[Ops]:
    if request.param == "rabbitmq":
        broker_url = request.getfixturevalue("rabbitmq_url")
        destination, other = (f"{code}.{uuid.uuid4().hex[:8]}" for code in (PORTAL, OTHER))
    else:
        broker_url, destination, other = "embedded", PORTAL, OTHER
    routes = write_routes(
        tmp_path / "routes.yaml",
        # A failed attempt waits a minute: a retried delivery stays "retrying" while the test looks at it.
        {name: {"endpoint": sink.url, "retry_delays_s": [60], "jitter": 0.1, "circuit_failures": 50}
         for name in (destination, other)},
        [{"type": "dossier.sync", "sender": PROVINCE, "to": [destination, other]}],
    )  # fmt: skip
    env = {
        "LIENTHONG_BROKER_URL": broker_url,
        "LIENTHONG_DATABASE_URL": f"sqlite:///{migrated_copy(tmp_path / 'store.db')}",
        "LIENTHONG_ROUTES_FILE": str(routes),
        "LIENTHONG_DATA_DIR": str(tmp_path / "var"),
        "LIENTHONG_LOG_FORMAT": "console",
        "COLUMNS": "200",
    }
    settings = Settings(
        broker_url=broker_url, database_url=env["LIENTHONG_DATABASE_URL"], routes_file=routes,
        data_dir=tmp_path / "var",
    )  # fmt: skip
    runtime, acceptor, worker = open_pipeline(settings, prefetch=1)
    try:
        yield Ops(env, runtime, acceptor, worker, province_signer, sink, destination, other)
    finally:
        worker.close()
        try:
            if request.param == "rabbitmq":
                runtime.broker.delete([destination, other])
        finally:
            runtime.close()


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``; a cell folded over several lines is
    joined back with single spaces (``squeeze`` removes them to compare ids; a first cell matches either way)."""
    rows: list[list[list[str]]] = []
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if not cells:
            rows.append([])
            continue
        if not rows or not rows[-1] or (cells[0] and any(cells[1:])):
            rows.append([[c] if c else [] for c in cells])
        else:  # a continuation line of the row above (its first cell empty, or only its first cell folded on)
            for parts, c in zip(rows[-1], cells, strict=False):
                if c:
                    parts.append(c)
    for row in rows:
        if row and (" ".join(row[0]) == first_cell or squeeze("".join(row[0])) == squeeze(first_cell)):
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
    ops.runtime.store.start_attempts([in_flight.delivery_id])
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
    assert lines[1:] == ["Overdue intake (8 working hours): none", "Past due date (unfinished dossiers): none"]


def test_dead_letters_list_pages_with_the_total(ops: Ops) -> None:
    ops.accept(3)
    ops.control(status=400, count=3)
    ops.deliver_all(3)
    ids = [d.id for d in ops.runtime.store.dead_letters()]
    first = ops.run("dead-letters", "list", "--limit", "2")
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"2 of 3 (next page: --after {ids[1]}) dead letter(s)")
    last = ops.run("dead-letters", "list", "--limit", "2", "--after", str(ids[1]))
    assert last.output.startswith("1 of 3 dead letter(s)") and table_row(last.output, str(ids[2]))


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


# ------------------------------------------------------------------ --json, 80 columns, labelled times

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")  # the default calendar_timezone: what the CLI shows unless --utc


def parse_json(result) -> object:
    """The command's standard output as one JSON document (anything else on stdout fails the parse)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fits(result, width: int = 80) -> str:
    assert result.exit_code == 0, result.output
    too_long = [line for line in result.stdout.splitlines() if len(line) > width]
    assert not too_long, "\n" + result.stdout
    return result.stdout


def at(text: str) -> datetime:
    """An ISO 8601 time from --json: it must carry its offset."""
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text
    return parsed


def dead_letters_in_every_state(ops: Ops) -> tuple[int, int]:
    """Three dead letters (HTTP 400), the first replayed by ops.an; a retrying and a delivered message too."""
    ops.accept(5)
    ops.control(status=400, count=3)
    ops.deliver_all(3)
    ops.control(status=503, count=1)
    ops.deliver_all(2)  # one retrying, one delivered
    first, *_, last = ops.runtime.store.dead_letters()
    assert ops.run("dead-letters", "replay", str(first.id), "--actor", "ops.an").exit_code == 0
    return first.id, last.id


def test_queues_json_is_the_store_overview(ops: Ops) -> None:
    dead_letters_in_every_state(ops)
    result = ops.run("queues", "--json")
    doc = parse_json(result)
    # the shell pipe of the acceptance criterion
    piped = subprocess.run([sys.executable, "-m", "json.tool"], input=result.stdout, text=True, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    store = {q.destination: q for q in ops.runtime.store.queue_overview()}
    assert sorted(d["destination"] for d in doc["destinations"]) == sorted(store)
    for d in doc["destinations"]:
        q = store[d["destination"]]
        counts = ("queued", "delivering", "retrying", "delivered", "dead", "delivered_last_60s")
        assert {k: d[k] for k in counts} == {k: getattr(q, k) for k in counts}
        assert d["oldest_pending_age_s"] == pytest.approx(q.oldest_pending_age_s, abs=5)
    assert doc["broker"] == ops.runtime.describe_broker() and doc["store"] == ops.runtime.describe_store()
    assert doc["overdue_intake"]["dossiers"] == []
    assert doc["overdue_processing"]["dossiers"] == []  # the example sync (due 8 December 2025) is returned (10)


def test_dead_letters_json_and_show(ops: Ops) -> None:
    replayed_id, open_id = dead_letters_in_every_state(ops)
    store = {d.id: d for d in ops.runtime.store.dead_letters(include_replayed=True)}
    listed = parse_json(ops.run("dead-letters", "list", "--all", "--json"))
    assert isinstance(listed, list) and sorted(d["id"] for d in listed) == sorted(store)
    for d in listed:
        s = store[d["id"]]
        assert (d["message_id"], d["destination"], d["reason"], d["attempts"], d["last_error"], d["replayed_by"]) == (
            s.message_id, s.destination, s.reason, s.attempts, s.last_error, s.replayed_by)  # fmt: skip
        assert at(d["created_at"]) == s.created_at and at(d["created_at"]).utcoffset() == LOCAL.utcoffset(s.created_at)
        assert (d["replayed_at"] and at(d["replayed_at"])) == s.replayed_at
    assert [d["id"] for d in parse_json(ops.run("dead-letters", "list", "--json"))] == [
        i for i in sorted(store) if i != replayed_id
    ]
    shown = parse_json(ops.run("dead-letters", "show", str(replayed_id), "--json"))
    assert shown == next(d for d in listed if d["id"] == replayed_id)
    in_utc = parse_json(ops.run("dead-letters", "show", str(replayed_id), "--json", "--utc"))
    assert at(in_utc["created_at"]).utcoffset().total_seconds() == 0 and at(in_utc["created_at"]) == at(
        shown["created_at"]
    )

    dead = store[replayed_id]
    human = fits(ops.run("dead-letters", "show", str(replayed_id), columns=80))
    fields = dict(line.split(":", 1) for line in human.splitlines() if not line.startswith(" "))
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["message id"] == dead.message_id and fields["destination"] == dead.destination
    assert fields["reason"] == "rejected" and fields["attempts"] == "1" and "HTTP 400" in fields["last error"]
    local = dead.created_at.astimezone(LOCAL)
    assert fields["dead since"] == f"{local:%Y-%m-%d %H:%M:%S} (UTC+7)"
    assert fields["replayed"] == f"{dead.replayed_at.astimezone(LOCAL):%Y-%m-%d %H:%M:%S} (UTC+7) by ops.an"
    utc = ops.run("dead-letters", "show", str(open_id), "--utc")
    assert f"dead since:  {store[open_id].created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} (UTC)" in utc.stdout
    assert "replayed:    no" in utc.stdout

    unknown = ops.run("dead-letters", "show", "424242")
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and "424242" in unknown.stderr


def test_tables_fit_80_columns(ops: Ops) -> None:
    replayed_id, _ = dead_letters_in_every_state(ops)
    queues = fits(ops.run("queues", columns=80))
    row = dict(zip(COLUMNS, table_row(queues, ops.destination), strict=True))  # folded headers are joined back
    assert (row["dead"], row["retrying"], row["delivered"]) == ("2", "1", "1")

    listed = fits(ops.run("dead-letters", "list", "--all", columns=80))
    assert table_row(listed, "id") == ["id", "destination", "message id", "reason", "tries", "last error"]
    for dead in ops.runtime.store.dead_letters(include_replayed=True):
        cells = table_row(listed, str(dead.id))
        assert cells[1] == dead.destination and squeeze(cells[2]) == dead.message_id
        assert cells[3] == ("rejected (replayed)" if dead.id == replayed_id else "rejected")
        assert cells[5].startswith(dead.last_error[:8])
    assert "dead-letters show ID" in listed

    wide = ops.run("dead-letters", "list", "--all", columns=200).stdout
    assert "replayed (UTC+7)" in wide and "since (UTC+7)" in wide
    assert "replayed (UTC)" in ops.run("dead-letters", "list", "--all", "--utc", columns=200).stdout


def test_dossier_show(ops: Ops) -> None:
    ops.accept(2)
    code = packets.examples.DOSSIER_CODE
    doc = parse_json(ops.run("dossier", "show", code, "--json"))
    store = ops.runtime.store
    assert doc["dossier_code"] == code
    assert [(u["id"], u["status"], u["outcome"], at(u["at"])) for u in doc["updates"]] == sorted(
        ((u.id, u.status, u.outcome, u.at) for u in store.timeline(code)), key=lambda u: (u[3], u[0])
    )
    logged = store.dossier_messages(code)
    assert sorted(m["message_id"] for m in doc["messages"]) == sorted(m.message_id for m in logged)
    human = fits(ops.run("dossier", "show", code, columns=80))
    assert human.startswith(f"dossier {code}:")
    assert "at (UTC+7)" in human and "received (UTC+7)" in human
    assert "received (UTC)" in ops.run("dossier", "show", code, "--utc").stdout
    unknown = ops.run("dossier", "show", "000.00.00.H12-000000-0000")
    assert unknown.exit_code == 1 and "000.00.00.H12-000000-0000" in unknown.stderr


def test_messages_list_filters_pages_and_prints_json(ops: Ops) -> None:
    ids = ops.accept(3)
    doc = parse_json(ops.run("messages", "list", "--sender", PROVINCE, "--limit", "2", "--json"))
    assert [m["message_id"] for m in doc["items"]] == ids[:0:-1] and doc["total"] == 3 and doc["total_exact"]
    first = doc["items"][0]
    assert first["destinations"] == [ops.destination, ops.other] and first["status"] == "queued"
    assert at(first["received_at"]).utcoffset() is not None
    rest = parse_json(ops.run("messages", "list", "--sender", PROVINCE, "--limit", "2", "--cursor",
                              doc["next_cursor"], "--json"))  # fmt: skip
    assert [m["message_id"] for m in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    none = parse_json(ops.run("messages", "list", "--state", "dead", "--receiver", ops.other, "--json"))
    assert none["items"] == [] and none["total"] == 0
    later = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).replace(tzinfo=None) + timedelta(minutes=5)
    assert parse_json(ops.run("messages", "list", "--since", later.isoformat(), "--json"))["total"] == 0  # local
    human = fits(ops.run("messages", "list", "--limit", "2", columns=80))
    assert "2 of 3 message(s)" in human and "received (UTC+7)" in human and "next page: --cursor" in human
    assert "received (UTC)" in ops.run("messages", "list", "--utc").stdout
    for args in (["--state", "lost"], ["--since", "yesterday"], ["--cursor", "nope"]):
        refused = ops.run("messages", "list", *args)
        assert refused.exit_code == 2 and args[0] in refused.stderr
