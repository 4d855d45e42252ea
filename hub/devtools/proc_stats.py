"""CPU time and memory of processes, read from Linux's ``/proc`` (no psutil: the hub does not depend on it).

What ``hub bench`` needs to say where the CPU goes and whether memory stays flat: the CPU seconds a process tree
spent (``utime + stime`` of each live process, plus ``cutime + cstime``, what its children that have exited and been
waited for spent, so a short-lived child between two readings is not lost), its resident memory, and how to find the
broker's and the database's server processes (by name, and by the port or connection they serve).

Every function answers ``None`` or an empty result rather than raising when a process has gone meanwhile, or on a
system without ``/proc``: a figure the bench cannot read is reported as missing, never invented.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's ``st`` column


@dataclass(frozen=True, slots=True)
class ProcStat:
    """One process's line of ``/proc/<pid>/stat``, times in seconds."""

    pid: int
    comm: str
    ppid: int
    utime: float
    stime: float
    cutime: float  # waited-for children that have exited
    cstime: float

    @property
    def cpu_s(self) -> float:
        """Everything this process and its exited, waited-for children ran, user and system."""
        return self.utime + self.stime + self.cutime + self.cstime


def available() -> bool:
    """Whether this system has a Linux ``/proc`` to read."""
    return (PROC / "self" / "stat").exists()


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` parsed; ``None`` when the process is gone (or unreadable)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces and parentheses: split at the last ')'.
    open_at, close_at = text.find("("), text.rfind(")")
    fields = text[close_at + 2 :].split()
    try:
        ticks = [int(v) for v in fields[11:15]]  # fields 14-17 of proc(5): utime stime cutime cstime
        ppid = int(fields[1])
    except (IndexError, ValueError):
        return None
    utime, stime, cutime, cstime = (t / CLOCK_TICKS for t in ticks)
    return ProcStat(pid, text[open_at + 1 : close_at], ppid, utime, stime, cutime, cstime)


def all_stats() -> dict[int, ProcStat]:
    """Every process's stat, by pid."""
    found: dict[int, ProcStat] = {}
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                found[stat.pid] = stat
    return found


def tree(roots: Iterable[int], stats: Mapping[int, ProcStat] | None = None) -> list[int]:
    """``roots`` (those still running) and all their live descendants."""
    stats = all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    out: list[int] = []
    todo = [pid for pid in roots if pid in stats]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(roots: Iterable[int], stats: Mapping[int, ProcStat] | None = None) -> float:
    """CPU seconds the process trees under ``roots`` have run so far (see the module docstring): compare two
    readings for what they ran in between."""
    stats = all_stats() if stats is None else stats
    return sum(stats[pid].cpu_s for pid in tree(roots, stats))


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process (``/proc/<pid>/statm``); ``None`` when it is gone."""
    try:
        resident = int((PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * PAGE_SIZE


def pids_named(comm: str, stats: Mapping[int, ProcStat] | None = None) -> list[int]:
    """Processes whose command name (``comm``, at most 15 characters) is ``comm``."""
    stats = all_stats() if stats is None else stats
    return sorted(pid for pid, stat in stats.items() if stat.comm == comm)


def parent(pid: int) -> int | None:
    """The parent of ``pid`` (``None`` when it is gone)."""
    stat = read_stat(pid)
    return None if stat is None else stat.ppid


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on TCP ``port`` (IPv4 and IPv6), from ``/proc/net/tcp*``."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening_on(port: int, candidates: Iterable[int]) -> int | None:
    """Which of ``candidates`` holds a socket listening on TCP ``port`` (``None``: none, or their open files cannot
    be read, which needs the same user or root)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for pid in candidates:
        try:
            fds = list((PROC / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return pid
            except OSError:
                continue
    return None
