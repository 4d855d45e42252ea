"""What ``hub bench`` measures beside throughput and latency: CPU per message of each process kind, resident
memory over a soak run, and the size the store and the broker take per message.

Process kinds (``KINDS``): ``api`` (``hub serve``: the uvicorn supervisor and its worker processes), ``worker``
(``hub worker`` processes), ``load`` (the bench's load processes: with ``--via direct`` they accept, doing the
API's share of the work in its place; with ``--via http`` they only POST), ``sink`` (the partner stand-in),
``broker`` (RabbitMQ's ``beam.smp`` and its children; the embedded queue runs inside the hub's processes) and
``database`` (the PostgreSQL server: its postmaster and every backend; SQLite runs inside the hub's processes).
There is no relay process: the outbox relay runs in the API's publisher thread and in every worker, so its CPU is
counted there. The broker's and the database's figures are the whole server's: anything else using the same
server during the run counts too.
"""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from hub.devtools import proc_stats

KINDS = ("api", "worker", "load", "sink", "broker", "database")
HUB_KINDS = ("api", "worker", "load")  # whose memory must stay flat (a soak run's verdict)
RELAY_NOTE = "the outbox relay runs in the API's publisher thread and in every worker: counted there"


@dataclass
class Processes:
    """The process trees of each kind (``KINDS``): their root pids, and why a kind has none (``notes``)."""

    roots: dict[str, list[int]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, *pids: int) -> None:
        self.roots.setdefault(kind, []).extend(pids)


def rabbitmq_process(broker_url: str) -> tuple[int | None, str]:
    """RabbitMQ's ``beam.smp`` serving ``broker_url``'s (first) node, and a note on how it was found."""
    port = urlsplit(broker_url.split(",")[0]).port or 5672
    candidates = proc_stats.pids_named("beam.smp")
    if not candidates:
        return None, f"no beam.smp process on this host (RabbitMQ on port {port} is elsewhere): not measured"
    found = proc_stats.listening_on(port, candidates)
    if found is not None:
        return found, f"RabbitMQ: beam.smp pid {found} (listening on {port}) and its children"
    if len(candidates) == 1:
        return candidates[0], f"RabbitMQ: the one beam.smp on this host (pid {candidates[0]})"
    return None, f"{len(candidates)} beam.smp processes and none readable as listening on {port}: not measured"


def postgres_process(engine: sa.Engine) -> tuple[int | None, str]:
    """The PostgreSQL postmaster serving ``engine``: the parent of this connection's backend, when it runs on this
    host; and a note on how it was found."""
    with engine.connect() as conn:
        backend = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        stat = proc_stats.read_stat(backend)
    if stat is None or not stat.comm.startswith("postgres"):
        return None, "the PostgreSQL server is not on this host (or not readable): not measured"
    return stat.ppid, f"PostgreSQL: postmaster pid {stat.ppid} and all its children (every database it serves)"


class CpuMeter:
    """CPU seconds of each kind's process trees between ``start()`` and ``stop()``."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self._start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        stats = proc_stats.all_stats()
        return {kind: proc_stats.cpu_seconds(roots, stats) for kind, roots in self.processes.roots.items() if roots}

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> None:
        end = self._read()
        self.seconds = {kind: max(0.0, end[kind] - self._start.get(kind, 0.0)) for kind in end}

    def per_message_us(self, messages: int) -> dict[str, float | None]:
        """µs of CPU per message of each kind (``None``: not measured, or no process of its own: see the notes), and
        their ``total``."""
        if not messages:
            return {}
        out: dict[str, float | None] = {}
        for kind in KINDS:
            out[kind] = round(self.seconds[kind] / messages * 1e6, 1) if kind in self.seconds else None
        out["total"] = round(sum(self.seconds.values()) / messages * 1e6, 1)
        return out


class RssSampler:
    """Samples the resident memory of every process of the watched kinds every ``every_s`` seconds, in a thread,
    writing one CSV row per process and sample (``elapsed_s, delivered, kind, pid, rss_bytes``)."""

    COLUMNS = ("elapsed_s", "delivered", "kind", "pid", "rss_bytes")

    def __init__(self, processes: Processes, kinds: Iterable[str], every_s: float, out: TextIO,
                 delivered: Callable[[], int]) -> None:  # fmt: skip
        self.processes = processes
        self.kinds = [k for k in kinds if processes.roots.get(k)]
        self.every_s = every_s
        self.delivered = delivered
        self.writer = csv.writer(out)
        self.out = out
        self.series: dict[str, list[tuple[float, int]]] = {k: [] for k in self.kinds}  # (elapsed, summed rss)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self.writer.writerow(self.COLUMNS)
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.sample()  # the run's last figure, however the interval fell
        self.out.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        elapsed = round(time.monotonic() - self._started, 2)
        try:
            delivered = self.delivered()
        except OSError:
            delivered = -1  # the sink did not answer this once: the memory figures still count
        stats = proc_stats.all_stats()
        for kind in self.kinds:
            total = 0
            for pid in proc_stats.tree(self.processes.roots[kind], stats):
                rss = proc_stats.rss_bytes(pid)
                if rss is not None:
                    total += rss
                    self.writer.writerow((elapsed, delivered, kind, pid, rss))
            self.series[kind].append((elapsed, total))
        self.out.flush()


WARMUP = 0.1  # the first tenth of a run: memory that grows then is the caches filling, not a leak


def rss_growth(series: Mapping[str, list[tuple[float, int]]], warmup: float = WARMUP) -> dict[str, dict[str, float]]:
    """Per kind: its summed resident memory (MB) at the first sample after the warm-up (the first ``warmup`` of the
    run's duration), at the end, and the most seen after the warm-up, and the growth from the first to the end in
    percent. A kind with fewer than two samples after the warm-up is left out (the run was too short to tell)."""
    out: dict[str, dict[str, float]] = {}
    for kind, points in series.items():
        if not points:
            continue
        after = [(t, rss) for t, rss in points if t >= warmup * points[-1][0]]
        if len(after) < 2 or not after[0][1]:
            continue
        base, end = after[0][1], after[-1][1]
        out[kind] = {
            "after_warmup_mb": round(base / 2**20, 1),
            "end_mb": round(end / 2**20, 1),
            "max_mb": round(max(rss for _, rss in after) / 2**20, 1),
            "growth_pct": round((end - base) / base * 100, 1),
        }
    return out


def store_bytes(engine: sa.Engine) -> int | None:
    """What the store takes: a SQLite file with its WAL and shared-memory files, or the PostgreSQL relations (tables,
    their indexes and TOAST) of the schema the store uses."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database or ""
        if not database or database == ":memory:":
            return None
        return sum(p.stat().st_size for p in (Path(database + s) for s in ("", "-wal", "-shm")) if p.exists())
    query = sa.text(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def embedded_queue_bytes(path: Path) -> int:
    """The embedded queue's SQLite file with its WAL and shared-memory files."""
    return sum(p.stat().st_size for p in (Path(f"{path}{s}") for s in ("", "-wal", "-shm")) if p.exists())


def rabbitmq_queues(broker_url: str, prefix: str = "lienthong.") -> tuple[dict[str, int] | None, str]:
    """Messages, message bytes and memory of the queues named ``prefix…`` on RabbitMQ, summed, as ``rabbitmqctl
    list_queues`` reports them (no management plugin needed, but the Erlang cookie: root or the rabbitmq user on
    its host); and a note saying what could not be read."""
    vhost = unquote(urlsplit(broker_url.split(",")[0]).path.lstrip("/")) or "/"
    command = ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages", "message_bytes", "memory",
               "--formatter", "json"]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        rows = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        rows = None
    if rows is None:
        return None, "queue sizes need rabbitmqctl (with the Erlang cookie) or the management plugin: not read"
    ours = [r for r in rows if str(r.get("name", "")).startswith(prefix)]
    totals = {k: sum(int(r.get(k) or 0) for r in ours) for k in ("messages", "message_bytes", "memory")}
    return totals | {"queues": len(ours)}, (
        "rabbitmqctl list_queues: messages, message bytes and memory of the hub's queues (their disk use, the "
        "quorum queues' logs, is not reported by it)"
    )
