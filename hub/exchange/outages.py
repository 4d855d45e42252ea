"""Riding out outages of the store and the broker: a worker backs off and tries again, it never exits.

``Dependencies`` keeps whether each dependency (``store``, ``broker``) is up, logs one warning when an outage
starts and one info line (with its length) when it ends, counts outages and exports up/down as Prometheus
metrics (``hub.metrics``), and hands out the wait before the next try (``Backoff``: exponential, capped, reset
once everything is up again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hub.metrics import WORKER_DEPENDENCY_UP, WORKER_OUTAGES

log = logging.getLogger(__name__)

STORE, BROKER = "store", "broker"
DEPENDENCIES = (STORE, BROKER)


class Backoff:
    """Waits of ``first_s``, twice that, … up to ``max_s``; ``reset`` starts again at ``first_s``."""

    def __init__(self, first_s: float = 0.5, max_s: float = 10.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


class Dependencies:
    """Up or down, per dependency, as the last call to it went; one log line per change, not per failed try."""

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or Backoff()
        self.clock = clock
        self._down_since: dict[str, float] = {}
        for dependency in DEPENDENCIES:
            WORKER_DEPENDENCY_UP.labels(dependency=dependency).set(1)
            WORKER_OUTAGES.labels(dependency=dependency)  # exported at 0 from the start

    def is_up(self, dependency: str) -> bool:
        return dependency not in self._down_since

    @property
    def all_up(self) -> bool:
        return not self._down_since

    def down(self, dependency: str, error: BaseException) -> None:
        """A call to ``dependency`` failed for want of it: start an outage unless one is going on."""
        if dependency in self._down_since:
            log.debug("%s still unavailable: %s", dependency, error)
            return
        self._down_since[dependency] = self.clock()
        WORKER_OUTAGES.labels(dependency=dependency).inc()
        WORKER_DEPENDENCY_UP.labels(dependency=dependency).set(0)
        log.warning("%s unavailable, backing off and trying again: %s", dependency, error)

    def wait(self, stop: threading.Event, meanwhile: Callable[[], None], slice_s: float) -> None:
        """Wait the backoff's next delay in slices of at most ``slice_s``, calling ``meanwhile`` after each (the
        heartbeat, the broker's I/O); ``stop`` ends the wait at once. Real time, whatever ``clock`` is."""
        deadline = time.monotonic() + self.backoff.next()
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            stop.wait(min(remaining, slice_s))
            meanwhile()

    def up(self, dependency: str) -> None:
        """A call to ``dependency`` succeeded: end its outage, if any (and the backoff once all are up)."""
        since = self._down_since.pop(dependency, None)
        if since is None:
            return
        WORKER_DEPENDENCY_UP.labels(dependency=dependency).set(1)
        log.info("%s available again after %.1f s", dependency, self.clock() - since)
        if not self._down_since:
            self.backoff.reset()
