"""Worker heartbeats: how a supervisor tells a live worker process from a hung or dead one.

Each worker process rewrites ``<data dir>/worker-<pid>.heartbeat`` (JSON: pid, host, time, store and broker
up/down, deliveries settled) at most every ``every_s`` seconds from its loop, also while it backs off during an
outage, and removes it when it exits cleanly. ``hub worker-health`` (the docker-compose health probe) reads them
with ``check``: healthy when a heartbeat of this host is fresh and its process alive. The host is recorded
because a data folder may be shared by containers, whose process ids mean nothing to each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PATTERN = "worker-*.heartbeat"
EVERY_S = 2.0


def heartbeat_path(data_dir: Path, pid: int | None = None) -> Path:
    return Path(data_dir) / f"worker-{os.getpid() if pid is None else pid}.heartbeat"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    return True


class Heartbeat:
    """This process's heartbeat file; ``beat`` is cheap to call often (it writes at most every ``every_s``)."""

    def __init__(self, data_dir: Path, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = heartbeat_path(data_dir)
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_dead(Path(data_dir))

    def beat(self, *, store_up: bool, broker_up: bool, settled: int, force: bool = False) -> None:
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.every_s:
            return
        self._last = now
        record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
                  "store": "up" if store_up else "down", "broker": "up" if broker_up else "down",
                  "settled": settled}  # fmt: skip
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(record))
            os.replace(temporary, self.path)  # a reader never sees half a file
        except OSError as exc:  # a full disk must not stop deliveries; the probe then reports the worker stale
            log.warning("cannot write the heartbeat %s: %s", self.path, exc)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_heartbeats(data_dir: Path) -> list[dict[str, Any]]:
    """Every readable heartbeat in the data folder, with ``age_s`` and ``alive`` (its process runs on this host)."""
    found = []
    host = socket.gethostname()
    for path in sorted(Path(data_dir).glob(PATTERN)):
        try:
            record = json.loads(path.read_text())
            pid, at = int(record["pid"]), float(record["time"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed meanwhile, or not a heartbeat
        record["age_s"] = round(max(time.time() - at, 0.0), 1)
        record["alive"] = record.get("host") == host and _alive(pid)
        found.append(record)
    return found


def remove_dead(data_dir: Path) -> None:
    """Remove the heartbeats of this host's processes that are gone (a worker killed without a clean exit)."""
    for record in read_heartbeats(data_dir):
        if record.get("host") == socket.gethostname() and not record["alive"]:
            with contextlib.suppress(FileNotFoundError):
                heartbeat_path(data_dir, int(record["pid"])).unlink()


def check(data_dir: Path, max_age_s: float) -> tuple[bool, str]:
    """(healthy, one line why): healthy when a live worker of this host wrote its heartbeat within ``max_age_s``."""
    beats = read_heartbeats(data_dir)
    fresh = [b for b in beats if b["alive"] and b["age_s"] <= max_age_s]
    if fresh:
        best = min(fresh, key=lambda b: b["age_s"])
        return True, (f"ok: {len(fresh)} worker(s) alive; pid {best['pid']} {best['age_s']} s ago "
                      f"(store {best['store']}, broker {best['broker']}, settled {best['settled']})")  # fmt: skip
    if not beats:
        return False, f"no worker heartbeat in {data_dir}"
    alive = [b for b in beats if b["alive"]]
    if not alive:
        return False, f"no live worker: {len(beats)} heartbeat(s) in {data_dir}, none of a running process here"
    newest = min(alive, key=lambda b: b["age_s"])
    return False, f"stale: the newest live worker heartbeat (pid {newest['pid']}) is {newest['age_s']} s old"
