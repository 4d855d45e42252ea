"""Reading CPU and memory from /proc (``hub.devtools.proc_stats``) and what ``hub bench`` makes of the readings
(``hub.devtools.bench_measure``): a fake /proc for the parsing and the process trees, this process for the rest."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hub.devtools import bench_measure, proc_stats

pytestmark = pytest.mark.skipif(not proc_stats.available(), reason="needs Linux /proc")


def fake_stat(root: Path, pid: int, comm: str, ppid: int, ticks: tuple[int, int, int, int]) -> None:
    """A /proc/<pid>/stat line as the kernel writes it (fields after the command name: state, ppid, …)."""
    rest = ["S", str(ppid), *["0"] * 9, *map(str, ticks), *["0"] * 30]
    (root / str(pid)).mkdir()
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")


@pytest.fixture
def fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(proc_stats, "PROC", tmp_path)
    monkeypatch.setattr(proc_stats, "CLOCK_TICKS", 100)
    return tmp_path


def test_a_command_name_with_spaces_and_parentheses_is_read_whole(fake_proc: Path) -> None:
    fake_stat(fake_proc, 42, "weird (name) x", 1, (150, 50, 20, 10))
    stat = proc_stats.read_stat(42)
    assert stat is not None
    assert (stat.comm, stat.ppid) == ("weird (name) x", 1)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (1.5, 0.5, 0.2, 0.1)
    assert stat.cpu_s == pytest.approx(2.3)
    assert proc_stats.read_stat(43) is None  # gone


def test_cpu_of_a_tree_counts_live_descendants_and_exited_children(fake_proc: Path) -> None:
    fake_stat(fake_proc, 10, "hub", 1, (100, 0, 300, 0))  # its exited children ran 3 s
    fake_stat(fake_proc, 11, "hub", 10, (200, 100, 0, 0))
    fake_stat(fake_proc, 12, "hub", 11, (50, 50, 0, 0))  # a grandchild
    fake_stat(fake_proc, 20, "other", 1, (999, 999, 0, 0))  # not in the tree
    assert sorted(proc_stats.tree([10])) == [10, 11, 12]
    assert proc_stats.cpu_seconds([10]) == pytest.approx(1 + 3 + 3 + 1)
    assert proc_stats.cpu_seconds([99]) == 0  # a root that is gone counts nothing
    assert proc_stats.pids_named("other") == [20]


def test_this_process_is_read_from_the_real_proc() -> None:
    stat = proc_stats.read_stat(os.getpid())
    assert stat is not None and stat.ppid == os.getppid()
    assert (proc_stats.rss_bytes(os.getpid()) or 0) > 1_000_000
    assert proc_stats.cpu_seconds([os.getpid()]) > 0


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert proc_stats.listening_on(port, [os.getpid()]) == os.getpid()
    assert proc_stats.listening_on(port, [os.getpid()]) is None  # closed


def test_growth_is_measured_after_the_warm_up() -> None:
    mb = 2**20
    # 100 s: the first 10 s are warm-up (a start-up climb that is no leak), then 200 MB → 210 MB.
    series = {"worker": [(0.0, 50 * mb), (5.0, 150 * mb), (10.0, 200 * mb), (50.0, 220 * mb), (100.0, 210 * mb)]}
    growth = bench_measure.rss_growth(series)["worker"]
    assert growth == {"after_warmup_mb": 200.0, "end_mb": 210.0, "max_mb": 220.0, "growth_pct": 5.0}
    assert bench_measure.rss_growth({"api": [(0.0, mb), (1.0, mb)]}) == {}  # one sample after warm-up: untold


def test_cpu_per_message_names_every_kind_and_leaves_out_none() -> None:
    meter = bench_measure.CpuMeter(bench_measure.Processes())
    meter.seconds = {"worker": 0.5, "load": 0.25}
    per = meter.per_message_us(1000)
    assert per == {"api": None, "worker": 500.0, "load": 250.0, "sink": None, "broker": None, "database": None,
                   "total": 750.0}  # fmt: skip
