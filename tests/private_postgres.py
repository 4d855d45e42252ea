"""A private PostgreSQL cluster the fault tests may stop and start (``tests/e2e/test_faults.py``).

The shared server on 5432 serves every other test (and, on a developer machine, other work): a fault test must
never stop it. This cluster, ``lienthong_faults`` on its own port, is created with Debian's ``pg_createcluster``
the first time (as root, like CI), trusts 127.0.0.1 the way ``.ci/run`` makes ``main`` do, and holds a
database ``test``. It is left stopped, not dropped, at the end: the next run only starts it (~1 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import listening, require, wait_for

CLUSTER = "lienthong_faults"
PORT = int(os.environ.get("LIENTHONG_FAULTS_PG_PORT", "5544"))
TRUST_LINE = "host all all 127.0.0.1/32 trust"


def _version() -> str | None:
    """The newest PostgreSQL major version installed (Debian's layout), ``None`` without one."""
    versions = sorted((p.name for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit()), key=int)
    return versions[-1] if versions else None


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done


class PrivatePostgres:
    """The ``lienthong_faults`` cluster: ``url`` to reach it, ``stop()``/``start()`` to inject an outage."""

    def __init__(self, version: str, port: int = PORT) -> None:
        self.version = version
        self.port = port
        self.config_dir = Path("/etc/postgresql") / version / CLUSTER

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/test"

    def ensure(self) -> None:
        """Create the cluster when missing, trust 127.0.0.1, start it, and create database ``test``."""
        if not (self.config_dir / "postgresql.conf").exists():
            _run("pg_createcluster", self.version, CLUSTER, "-p", str(self.port), timeout=120)
        hba = self.config_dir / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        if TRUST_LINE not in lines:  # first match wins in pg_hba.conf
            hba.write_text("\n".join([TRUST_LINE, *lines]) + "\n")
        self.start()
        exists = _run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAc",
                      "SELECT 1 FROM pg_database WHERE datname = 'test'")  # fmt: skip
        if exists.stdout.strip() != "1":
            _run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", "CREATE DATABASE test")

    def _ctl(self, action: str) -> None:
        _run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, CLUSTER, action)

    def running(self) -> bool:
        return listening("127.0.0.1", self.port)

    def start(self) -> None:
        """Start the cluster (nothing when it runs) and wait until it accepts connections."""
        if not self.running():
            self._ctl("start")
        wait_for(self.running, 30, f"PostgreSQL cluster {CLUSTER} to listen on {self.port}")

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: sessions are cut, as when the server goes away)."""
        if self.running():
            self._ctl("stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """The private cluster, running; stopped again afterwards. Skips (fails on CI) where it cannot exist here:
    not root, or no Debian PostgreSQL tools."""
    version = _version()
    if version is None or shutil.which("pg_createcluster") is None or shutil.which("pg_ctlcluster") is None:
        require("PostgreSQL's pg_createcluster/pg_ctlcluster are not installed")
    if os.geteuid() != 0:
        require("a private PostgreSQL cluster needs root (pg_createcluster)")
    cluster = PrivatePostgres(version)
    cluster.ensure()
    try:
        yield cluster
    finally:
        cluster.stop()
