"""``hub bench`` as an operator runs it (a child process that starts its own sink, workers and, with --via http,
``hub serve``): small runs that prove what the report says, not how fast the hub is.

- every run says which shape it measured, and the CPU per message of each process kind present (µs, from /proc):
  with the embedded queue and SQLite the broker and database have no process of their own (null, with a note);
  with RabbitMQ and PostgreSQL the default is the production shape, HTTP intake, and all six kinds are measured;
- ``--rate`` paces the load: never much above the offered rate, and the run lasts at least as long as the schedule;
- every run times the stage floor (verify, map and sign) on its own envelopes and divides the hub's CPU per
  message by it;
- ``--soak`` samples the resident memory of the hub's processes into a CSV file and reports growth after warm-up,
  and the store's and the broker's size per message.

Timing bounds are generous on purpose: the machine has two cores shared with other test runs.
"""

from __future__ import annotations

import csv
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy.engine import make_url

from tests.support import HUB_BIN, hub_env

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU and memory are read from /proc")


@dataclass
class Bench:
    result: dict
    report: str  # the readable report (standard error)
    returncode: int


def bench(tmp_path: Path, *args: str, timeout: float = 300) -> Bench:
    """Run ``hub bench ARGS`` in ``tmp_path``; its last line of standard output is the JSON result."""
    done = subprocess.run([HUB_BIN, "bench", *args], cwd=tmp_path, env=hub_env(COLUMNS="200"), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines, f"no JSON line; exit {done.returncode}\n{done.stderr[-3000:]}"
    return Bench(json.loads(lines[-1]), done.stderr, done.returncode)


@pytest.fixture
def pg_schema_url(postgres_url: str, postgres_schema: str) -> str:
    """The store URL of a PostgreSQL schema of its own for one bench run."""
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={postgres_schema}"})
    return url.render_as_string(hide_password=False)


def test_a_small_run_reports_cpu_per_message_of_each_process_kind(tmp_path: Path) -> None:
    run = bench(tmp_path, "--messages", "200", "--naive-messages", "50")
    result = run.result
    assert run.returncode == 0, run.report[-3000:]
    assert (result["delivered"], result["lost"], result["duplicates"]) == (200, 0, 0)
    assert result["production_shape"] is False
    assert result["shape"].startswith("not the production shape")
    assert "direct accept" in result["shape"] and "embedded queue" in result["shape"]
    cpu = result["cpu_us_per_message"]
    assert set(cpu) == {"api", "worker", "load", "sink", "broker", "database", "total"}
    for kind in ("worker", "load", "sink", "total"):
        assert cpu[kind] > 0, (kind, cpu)
    # No process of their own here: the API's work is the load processes', the queue and the store are in-process.
    assert cpu["api"] is None and cpu["broker"] is None and cpu["database"] is None
    notes = result["cpu_notes"]
    assert "SQLite" in notes["database"] and "embedded queue" in notes["broker"] and "relay" in notes["relay"]
    assert "CPU per message: worker" in run.report and "not the production shape" in run.report
    assert result["store_bytes_per_message"] > 0
    assert result["naive_msg_s"] > 0 and result["offered_rate"] is None
    floor = result["stage_floor_us"]
    assert floor["verify"] > 0 and floor["map_sign"] > 0
    assert floor["total"] == pytest.approx(floor["verify"] + floor["map_sign"], abs=0.2)
    # direct: the load processes accept, so the hub's own CPU is theirs and the workers'
    assert result["cpu_vs_floor"] == pytest.approx((cpu["load"] + cpu["worker"]) / floor["total"], abs=0.01)
    assert "stage floor on this machine" in run.report and f"{result['cpu_vs_floor']:.2f}× that" in run.report


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_the_production_shape_is_said_and_every_process_kind_measured(
    tmp_path: Path, rabbitmq_url: str, pg_schema_url: str
) -> None:
    run = bench(tmp_path, "--broker", rabbitmq_url, "--database", pg_schema_url, "--messages", "200",
                "--naive-messages", "50")  # fmt: skip
    result = run.result
    assert run.returncode == 0, run.report[-3000:]
    assert (result["delivered"], result["lost"], result["duplicates"]) == (200, 0, 0)
    assert result["via"] == "http"  # the default with both production backends
    assert result["production_shape"] is True
    assert "production shape: HTTP intake (hub serve), RabbitMQ, PostgreSQL store" in run.report
    cpu = result["cpu_us_per_message"]
    for kind in ("api", "worker", "load", "sink", "broker", "database"):
        assert cpu[kind] is not None and cpu[kind] > 0, (kind, cpu, result["cpu_notes"])
    assert cpu["total"] >= sum(cpu[k] for k in ("api", "worker", "load", "broker", "database")) - 1
    assert "beam.smp" in result["cpu_notes"]["broker"] and "postmaster" in result["cpu_notes"]["database"]
    assert result["healthz_p99_ms"] is not None
    assert result["store_bytes_per_message"] > 0
    assert result["cpu_vs_floor"] == pytest.approx((cpu["api"] + cpu["worker"]) / result["stage_floor_us"]["total"],
                                                   abs=0.01)  # fmt: skip


def test_rate_paces_the_load(tmp_path: Path) -> None:
    """Accepting in process; the soak test below paces the load through ``hub serve``."""
    messages, rate = 200, 100.0
    run = bench(tmp_path, "--via", "direct", "--messages", str(messages), "--rate", str(rate))
    result = run.result
    assert run.returncode == 0, run.report[-3000:]
    assert result["delivered"] == messages and result["via"] == "direct"
    assert result["offered_rate"] == rate
    assert 0 < result["achieved_rate"] <= 1.3 * rate
    assert result["seconds"] >= messages / rate * 0.8
    assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"]
    assert result["naive_msg_s"] is None  # a paced run's throughput is the offered rate: no ratio to tell
    assert f"paced: offered {rate:g} msg/s" in run.report


def test_a_short_soak_samples_memory_and_reports_growth_and_sizes(tmp_path: Path) -> None:
    samples = tmp_path / "rss.csv"
    run = bench(tmp_path, "--soak", "--via", "http", "--messages", "300", "--rate", "120", "--rss-every", "0.25",
                "--rss-csv", str(samples))  # fmt: skip
    result = run.result
    assert run.returncode == 0, run.report[-3000:]
    assert result["soak"] is True and result["delivered"] == 300
    assert result["offered_rate"] == 120 and 0 < result["achieved_rate"] <= 1.3 * 120  # paced through hub serve
    assert result["seconds"] >= 300 / 120 * 0.8
    assert result["rss_csv"] == str(samples)
    with samples.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"elapsed_s", "delivered", "kind", "pid", "rss_bytes"}
    kinds = {r["kind"] for r in rows}
    assert {"api", "worker", "load", "sink"} <= kinds
    assert all(int(r["rss_bytes"]) > 0 for r in rows)
    api_pids = {r["pid"] for r in rows if r["kind"] == "api"}
    assert len(api_pids) >= 3  # uvicorn's supervisor and its two worker processes
    times = sorted({float(r["elapsed_s"]) for r in rows})
    assert len(times) >= 4 and times[-1] > times[0]
    for kind in ("api", "worker", "load"):
        growth = result["rss"][kind]
        assert growth["end_mb"] > 0 and isinstance(growth["growth_pct"], float)
    assert "memory samples every 0.25 s" in run.report and "after warm-up" in run.report
    assert (
        result["rss_svg"] == str(samples.with_suffix(".svg"))
        and f"their curve in {samples.with_suffix('.svg')}" in run.report
    )
    curve = etree.parse(str(samples.with_suffix(".svg"))).getroot()
    drawn = {line.get("data-kind") for line in curve.iter("{http://www.w3.org/2000/svg}polyline")}
    assert {"api", "worker", "load"} <= drawn
    assert result["store_bytes_per_message"] > 0
    assert result["broker_size"]["bytes_per_message"] is not None
    assert result["stage_floor_us"]["total"] > 0  # timed on envelopes signed for it: a soak run keeps none
