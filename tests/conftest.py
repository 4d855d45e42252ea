"""Shared fixtures: a throw-away PKI, signers and trust stores, and access to the real services.

Tests that need RabbitMQ or PostgreSQL use the ``rabbitmq_url`` / ``postgres_url`` fixtures: on a laptop
without those servers they skip with a reason; with ``LIENTHONG_REQUIRE_SERVICES=1`` (set by ``.ci/run``)
an unreachable server is a failure.

Every test is marked by the folder it lives in — ``unit``, ``integration`` or ``e2e`` — so ``pytest -m unit`` (what
``make test-fast`` runs) selects the fast in-process ones and ``-m "not e2e"`` leaves out the process-level runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer.testing
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy.engine import make_url

from hub.devtools.sink import SinkServer
from hub.security import keys
from hub.security.signing import Signer, TrustStore
from hub.store import Store
from hub.store.database import HEAD_REVISION
from hub.store.schema import metadata
from tests.support import (
    HUB,
    MINISTRY,
    PROVINCE,
    SinkProcess,
    listening,
    require,
    running_sink,
    start_sink_process,
    stop_process,
)

LEVELS = ("unit", "integration", "e2e")

# typer's CliRunner builds the whole `hub` command tree again on every invoke (type hints of every command: ~60 ms,
# ~25 s of CPU over the in-process CLI tests); the tree of an unchanged app is the same, so it is built once.
typer.testing._get_command = functools.cache(typer.testing._get_command)  # type: ignore[attr-defined]


# The longest files, longest first (`make test`'s --durations, 2026-12-03: 128, 78, 74, 55, 31, 31 s). `make test`
# hands whole files to its workers (--dist loadfile) in collection order (--no-loadscope-reorder; xdist would
# otherwise start the files with the most tests first, so these few-test, long files ran last, on one worker,
# while the others were idle: ~35 s of a 5.5 min suite). Order only: every test still runs.
LONGEST_FILES = (
    "e2e/test_faults.py", "e2e/test_failures.py", "e2e/test_bench.py", "e2e/test_flows.py",
    "e2e/test_console_browser.py", "e2e/test_rabbitmq_cluster.py", "integration/test_broker.py",
    "e2e/test_console_numbers.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its level, taken from its folder (tests/unit, tests/integration, tests/e2e); put the
    files of ``LONGEST_FILES`` first, then the process-level tests, then the rest (a stable sort: within a file the
    order is kept)."""
    for item in items:
        level = next((part for part in item.path.parts[-3:-1] if part in LEVELS), None)
        if level is not None:
            item.add_marker(getattr(pytest.mark, level))

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = "/".join(item.path.parts[-2:])
        if name in LONGEST_FILES:
            return (0, LONGEST_FILES.index(name))
        return (1, 0) if item.get_closest_marker("e2e") else (2, 0)

    items.sort(key=rank)


def _service(name: str, host: str, port: int, url: str) -> str:
    if listening(host, port):
        return url
    require(f"{name} is not reachable on {host}:{port} (start it, or run .ci/run which does)")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The shared RabbitMQ; under pytest-xdist (``make test`` runs the files in parallel) each test process gets a
    virtual host of its own, so tests that use the same destination names never consume each other's messages."""
    url = _service("RabbitMQ", "127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672/%2F")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    vhost = f"lienthong-test-{worker}"
    for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        done = subprocess.run(["rabbitmqctl", "-q", *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 and "already exists" not in done.stderr + done.stdout:
            require(f"cannot make the RabbitMQ virtual host {vhost} (rabbitmqctl {command[0]}): {done.stderr.strip()}")
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _service("PostgreSQL", "127.0.0.1", 5432, "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_admin(postgres_url: str) -> Iterator[sa.Engine]:
    """One engine per test process for making and dropping the test schemas."""
    admin = sa.create_engine(postgres_url)
    yield admin
    admin.dispose()


@pytest.fixture
def postgres_schema(postgres_admin: sa.Engine) -> Iterator[str]:
    """An empty PostgreSQL schema of the test's own (dropped afterwards), for the hub processes it starts."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    try:
        yield schema
    finally:
        with postgres_admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))


@pytest.fixture(scope="session")
def emptied_schemas(postgres_admin: sa.Engine) -> Iterator[list[str]]:
    """PostgreSQL schemas a ``store`` test left migrated and that were emptied after it, free for the next one:
    a migration's DDL costs the server ~0.3 s, emptying the tables a few milliseconds."""
    free: list[str] = []
    yield free
    with postgres_admin.begin() as conn:
        for schema in free:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))


def _empty_for_reuse(admin: sa.Engine, schema: str) -> bool:
    """Empty ``schema``'s tables (identities restarted) if it still is the newest migrated schema; False if not."""
    try:
        with admin.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            version = conn.execute(sa.text(f'SELECT version_num FROM "{schema}".alembic_version')).scalar()  # noqa: S608 - our own schema name
            if version != HEAD_REVISION:
                return False
            tables = set(
                conn.execute(
                    sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'alembic_version'"),
                    {"s": schema},
                ).scalars()
            )
            if tables != set(metadata.tables):
                return False
            names = ", ".join(f'"{schema}"."{name}"' for name in sorted(tables))
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return True
    except sa.exc.DBAPIError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file whose folder does not exist yet, or a PostgreSQL schema of its own (for a
    test of the ``store`` fixture, an emptied migrated one when there is one; dropped or emptied afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/nested/lienthong.db"
        return
    base = request.getfixturevalue("postgres_url")
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    reusable = "store" in request.fixturenames
    free: list[str] = request.getfixturevalue("emptied_schemas") if reusable else []
    schema = free.pop() if free else f"store_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        if reusable and _empty_for_reuse(admin, schema):
            free.append(schema)
        else:
            with admin.begin() as conn:
                conn.execute(sa.schema.DropSchema(schema, cascade=True))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated once per test process: the ``store`` fixture starts from a copy of it (a migration
    from scratch costs ~0.1 s of CPU, hundreds of times a run; the migrations themselves are tested in test_store)."""
    path = tmp_path_factory.mktemp("template") / "lienthong.db"
    template = Store(f"sqlite:///{path}")
    template.migrate()
    template.close()
    return path


@pytest.fixture
def migrated_copy(migrated_sqlite: Path) -> Callable[[Path], Path]:
    """Put a copy of the SQLite store migrated once per test process (``migrated_sqlite``) at a path, for a hub
    the test opens there (``Runtime.open``, the app, the CLI): it finds the schema at the newest revision, where
    migrating from scratch cost ~0.1-0.2 s of CPU per test. The migrations themselves are tested in test_store."""

    def copy(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        source, target = sqlite3.connect(migrated_sqlite), sqlite3.connect(path)
        try:
            source.backup(target)  # a consistent copy whatever the journal mode left beside the file
        finally:
            source.close()
            target.close()
        return path

    return copy


@pytest.fixture
def store(store_url: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A migrated store on each of the two databases (``store_url``)."""
    if store_url.startswith("sqlite:///"):
        request.getfixturevalue("migrated_copy")(Path(store_url.removeprefix("sqlite:///")))
    s = Store(store_url)
    s.migrate()  # a no-op on the copy (it is at the newest revision)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    """A sink partner on 127.0.0.1 for this test (``tests.support.running_sink``)."""
    with running_sink() as server:
        yield server


@pytest.fixture
def start_sink() -> Iterator[Callable[..., SinkProcess]]:
    """Start sink partner processes (``tests.support.start_sink_process``); all killed after the test."""
    started: list[SinkProcess] = []

    def start(delay_ms: float = 0) -> SinkProcess:
        started.append(start_sink_process(delay_ms))
        return started[-1]

    yield start
    for sink in started:
        stop_process(sink.proc)
        sink.proc.stdout.close()  # type: ignore[union-attr]


@dataclass
class Party:
    """A key holder in the test PKI."""

    name: str
    key_path: Path
    cert_path: Path

    @property
    def signer(self) -> Signer:
        return Signer.from_files(self.key_path, self.cert_path)

    @property
    def certificate(self):
        return keys.load_certificate(self.cert_path)


@dataclass
class Pki:
    """A demo CA with partners, a foreign CA with an impostor, and an expired partner certificate.

    The CA names each partner's connector code in its certificates' subject (serialNumber): the province's
    certificate signs for ``PROVINCE`` through the CA, the ministry's for ``MINISTRY``; the impostor's names
    ``PROVINCE`` too, from a CA nobody trusts; the hub's names ``HUB``."""

    root: Path
    ca_dir: Path
    province: Party
    ministry: Party
    impostor: Party
    expired: Party
    hub: Party  # the hub's key from the same CA, naming the hub's code: what partners verify deliveries with

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / keys.CA_CERT_FILE

    def trust(self) -> TrustStore:
        return TrustStore.from_path(self.ca_cert)


def _party(issued: keys.IssuedKey, name: str) -> Party:
    return Party(name, issued.key_path, issued.cert_path)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca_dir, foreign_dir = root / "ca", root / "foreign"
    province = _party(keys.issue_key("province", ca_dir, code=PROVINCE), "province")
    ministry = _party(keys.issue_key("ministry", ca_dir, algorithm="ec", code=MINISTRY), "ministry")
    impostor = _party(keys.issue_key("province", foreign_dir, code=PROVINCE), "impostor")
    # An expired certificate, issued by the real CA.
    ca_key = keys.load_private_key(ca_dir / keys.CA_KEY_FILE)
    ca_cert = keys.load_certificate(ca_dir / keys.CA_CERT_FILE)
    old_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    old_cert = keys.issue_certificate(
        old_key,
        "expired",
        ca_key,
        ca_cert,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=1),
        code=PROVINCE,
    )
    expired_dir = root / "expired"
    expired_dir.mkdir()
    keys.write_private_key(expired_dir / "expired.key", old_key)
    keys.write_certificate(expired_dir / "expired.pem", old_cert)
    return Pki(
        root,
        ca_dir,
        province,
        ministry,
        impostor,
        Party("expired", expired_dir / "expired.key", expired_dir / "expired.pem"),
        _party(keys.issue_key("hub", ca_dir, algorithm="ec", code=HUB), "hub"),
    )


@pytest.fixture(scope="session")
def weak_keys(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> dict[str, Party]:
    """Keys that break the policy (RSA-1024, ECDSA P-384), with certificates from the real CA."""
    root = tmp_path_factory.mktemp("weak")
    ca_key = keys.load_private_key(pki.ca_dir / keys.CA_KEY_FILE)
    ca_cert = keys.load_certificate(pki.ca_cert)
    out = {}
    for name, key in (
        ("rsa1024", rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - the point of the test
        ("p384", ec.generate_private_key(ec.SECP384R1())),
    ):
        cert = keys.issue_certificate(key, name, ca_key, ca_cert, code=PROVINCE)
        keys.write_private_key(root / f"{name}.key", key)
        keys.write_certificate(root / f"{name}.pem", cert)
        out[name] = Party(name, root / f"{name}.key", root / f"{name}.pem")
    return out
