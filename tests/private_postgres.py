"""A private, throw-away PostgreSQL cluster for tests that stop the database (``tests/e2e/test_faults.py``,
``tests/e2e/test_worker_outages.py``).

The shared server on 5432 serves every other test (and, on a developer machine, other work): a fault test must
never stop it. This one is made with ``initdb`` in a temporary folder, runs as the ``postgres`` user (the server
refuses root) on a free port with trust authentication and no fsync, and is removed afterwards; test processes
running side by side (pytest-xdist) each get their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, listening, require

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


@dataclass
class PrivatePostgres:
    """A cluster in ``data`` listening on ``port``: ``url`` to reach it, ``stop()``/``start()`` for an outage."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def running(self) -> bool:
        return listening("127.0.0.1", self.port)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        assert PG_BIN is not None
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-s",
                        *args], check=check, capture_output=True, timeout=60)  # fmt: skip

    def start(self) -> None:
        """Start it (nothing when it runs) and wait until it accepts connections."""
        if not self.running():
            options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
            self._pg_ctl("-o", options, "-l", str(self.data / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop it the fast way: sessions are cut, as when the server goes away."""
        if self.running():
            self._pg_ctl("-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh cluster, running; removed afterwards. Skips (fails on CI) where it cannot exist here: no PostgreSQL
    server binaries, not root, or no ``runuser``."""
    if PG_BIN is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        require("a private PostgreSQL cluster needs the PostgreSQL server binaries and root (to run as postgres)")
    root = Path(tempfile.mkdtemp(prefix="lienthong-pg-"))
    shutil.chown(root, "postgres")
    pg = PrivatePostgres(root / "data", free_port())
    assert PG_BIN is not None
    initdb = [str(PG_BIN / "initdb"), "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
    subprocess.run(["runuser", "-u", "postgres", "--", *initdb], check=True, capture_output=True, timeout=120)
    pg.start()
    try:
        yield pg
    finally:
        pg._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
