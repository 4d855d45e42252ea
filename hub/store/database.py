"""The store's database: engine, schema migrations and the one transaction helper every store part uses.

SQLAlchemy Core on SQLite (default, one file, WAL) or PostgreSQL (``postgresql+psycopg://``), pooled, so one
``Database`` can be shared by threads.

Durability: SQLite runs ``synchronous=FULL`` by default (every commit reaches the disk before it returns, so an
answered 202 survives a power cut; ``LIENTHONG_SQLITE_SYNCHRONOUS=normal`` trades that for speed). PostgreSQL
commits as its server says (``synchronous_commit``); a multi-host URL with ``target_session_attrs=read-write``
reaches the primary of a primary/standby pair, and ``pool_pre_ping`` replaces connections lost in a failover.

On SQLite, write transactions start with ``BEGIN IMMEDIATE``: writers queue on the database lock (for up to
``busy_timeout_ms``) instead of failing when a read turns into a write. On PostgreSQL, races are settled by
``INSERT … ON CONFLICT DO NOTHING``, conditional ``UPDATE … RETURNING`` and ``SELECT … FOR UPDATE``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

from hub.errors import StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///var/lienthong.db"
CHUNK = 500  # keys per IN (...) list: far below SQLite's bound-parameter limit
_MIGRATION_LOCK = 0x4C69656E  # pg_advisory_xact_lock key: concurrent migrate() calls take turns
_WRITE = "lienthong_write"  # execution option read by the SQLite "begin" hook
#: libpq settings a PostgreSQL store connects with unless its URL sets them: give up connecting after 5 s, and
#: drop a connection whose server has not acknowledged sent data for 15 s or answered keepalives for ~20 s.
PG_TIMEOUTS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 2, "tcp_user_timeout": 15_000}  # fmt: skip


@functools.cache
def _script_directory() -> ScriptDirectory:
    """The migration scripts, read once per process: ``command.upgrade`` reads (and compiles) all of them on each
    call, ~0.1 s of CPU even when there is nothing to do."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


#: The revision the migrations end at, what ``migrate()`` brings a database to. Written here so that a process
#: finding its database already there never imports alembic (~0.3 s of CPU at every ``hub`` start); test_store
#: checks it against alembic's reading of the scripts, so a new migration that forgets it fails there.
HEAD_REVISION = "0021"


SQLITE_SYNCHRONOUS = ("full", "normal")  # the modes LIENTHONG_SQLITE_SYNCHRONOUS accepts
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}  # what PRAGMA synchronous reads back


def now() -> datetime:
    """The store's clock: timezone-aware UTC (``UTCDateTime`` refuses naive times)."""
    return datetime.now(UTC)


def digest(data: bytes) -> str:
    """SHA-256 hex of ``data``: how the store fingerprints envelopes and payloads."""
    return hashlib.sha256(data).hexdigest()


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """``values`` in slices small enough for one ``IN (...)`` list."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def normalise_url(url: str | URL) -> URL:
    """The SQLAlchemy URL the store opens: ``postgresql://`` means psycopg 3 (the driver the hub ships).

    The query is kept as it is, so multi-host URLs reach libpq: ``postgresql://u@/db?host=h1:5432&host=h2:5432
    &target_session_attrs=read-write`` (or ``?host=h1,h2&port=5432,5432&…``) tries the hosts in order."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_private_file(path: Path) -> None:
    """Create ``path`` empty, 0600, in a folder created 0700, unless it exists: SQLite would create it with the
    umask (0644, readable by every local user), and its ``-wal``/``-shm`` files copy the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _connect(engine: Engine) -> Connection:
    """A pooled connection; every one busy for ``pool_timeout`` is as good as the store down for now (threads of
    a worker's adapters read the store too), so it raises ``StoreUnavailableError``, not the pool's own error."""
    try:
        return engine.connect()
    except sa.exc.TimeoutError as exc:
        raise StoreUnavailableError(f"no store connection free: {exc}") from exc


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Connection]:
    """One transaction on a pooled connection, committed on exit, rolled back on error.

    A write transaction (the default) begins ``IMMEDIATE`` on the store's SQLite engine, so a read that turns
    into a write waits for the lock instead of failing with "database is locked"; ``readonly`` skips that lock.
    """
    with _connect(engine) as conn:
        if not readonly:
            conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def sqlite_synchronous_mode(mode: str | None = None) -> str:
    """The SQLite ``synchronous`` mode to run, upper case: ``mode``, or ``LIENTHONG_SQLITE_SYNCHRONOUS`` when
    ``None`` (default ``full``); anything but full or normal is refused."""
    if mode is None:
        from hub.config import get_settings

        mode = get_settings().sqlite_synchronous
    if mode.strip().lower() not in SQLITE_SYNCHRONOUS:
        raise StoreError(f"SQLite synchronous mode must be `full` or `normal`, not {mode!r}")
    return mode.strip().upper()


class Database:
    """The engine of one store database, its dialect and its dialect-specific statements."""

    def __init__(
        self,
        url: str | URL,
        *,
        echo: bool = False,
        busy_timeout_ms: int = 30_000,
        pool_size: int = 10,
        sqlite_synchronous: str | None = None,
    ) -> None:
        """``sqlite_synchronous`` (``full``/``normal``; ``None`` reads ``LIENTHONG_SQLITE_SYNCHRONOUS``) is how
        a SQLite store commits; PostgreSQL ignores it."""
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {self.dialect!r}: use a sqlite:/// or postgresql:// URL")
        self._ignoring: dict[tuple[str, tuple[str, ...]], sa.Insert] = {}
        options: dict[str, Any] = {"echo": echo}
        synchronous = ""
        if self.dialect == "sqlite":
            synchronous = sqlite_synchronous_mode(sqlite_synchronous)  # refused before any file is created
            database = self.url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                create_private_file(Path(database).expanduser())
            options["pool_size"] = pool_size
            options["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        else:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=10)
            # A server that stops answering (a dead host, a partition; not a refused port) would otherwise hold a
            # connect for the OS's ~2 min and a query for ~15 min; the URL's own values win.
            options["connect_args"] = {k: v for k, v in PG_TIMEOUTS.items() if k not in self.url.query}
        self.engine: Engine = sa.create_engine(self.url, **options)
        event.listen(self.engine, "handle_error", _unavailable)
        if self.dialect == "sqlite":
            _tune_sqlite(self.engine, busy_timeout_ms, synchronous)

    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[Connection]:
        """See the module's ``transaction``."""
        return transaction(self.engine, readonly=readonly)

    def insert_ignoring(self, table: sa.Table, keys: Sequence[str]) -> sa.Insert:
        """``INSERT … ON CONFLICT (keys) DO NOTHING``: a row a concurrent writer stored first is skipped, the
        transaction goes on (on PostgreSQL it waits for that writer to finish, so a re-read then sees the row).
        Built once per table (SQLAlchemy then reuses its compiled form)."""
        key = (table.name, tuple(keys))
        stmt = self._ignoring.get(key)
        if stmt is None:
            dialect = postgresql if self.dialect == "postgresql" else sqlite
            stmt = self._ignoring[key] = dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        return stmt

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic ``upgrade head``); a no-op when it already is."""
        if self._stamped_revision() == HEAD_REVISION:
            return
        from alembic.config import Config
        from alembic.runtime.environment import EnvironmentContext

        script = _script_directory()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            # alembic's ``command.upgrade(config, "head")``, on the process's script directory
            with EnvironmentContext(
                config, script, fn=lambda rev, _: script._upgrade_revs("head", rev), destination_rev="head"
            ):
                script.run_env()

    def _stamped_revision(self) -> str | None:
        """The revision in ``alembic_version``, read with plain SQL (``current_revision`` without alembic)."""
        with _connect(self.engine) as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` before ``migrate()``)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def ping(self) -> None:
        """Run the cheapest query there is (readiness probe, a worker's probe during an outage); raises
        ``StoreUnavailableError`` if the database is unreachable."""
        with _connect(self.engine) as conn:
            conn.execute(sa.text("SELECT 1"))

    def durability(self) -> str:
        """What a commit survives, read back from a live connection (so a report shows what ran, not what was
        asked): SQLite's journal and synchronous modes, or PostgreSQL's ``synchronous_commit`` and ``fsync``
        and whether a synchronous standby is named."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                mode = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
                return f"sqlite journal_mode={journal} synchronous={_SYNCHRONOUS_NAMES.get(mode, str(mode))}"
            values = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("synchronous_commit", "fsync", "synchronous_standby_names")
            }
        standbys = values.pop("synchronous_standby_names") or "none"
        return " ".join(["postgresql", *(f"{k}={v}" for k, v in values.items()), f"synchronous_standbys={standbys}"])

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


# SQLite reports "cannot write now" and "no such table" with the same OperationalError class: only these messages
# mean the database is unavailable (a lock held past the busy timeout, a vanished or unreadable file).
_SQLITE_UNAVAILABLE = ("database is locked", "disk i/o error", "unable to open database", "database or disk is full")


# PostgreSQL SQLSTATEs that mean "try again later": connection exceptions (08), insufficient resources (53), operator
# intervention (57P: shutdown, cannot connect now), a cancelled statement, a serialization failure or deadlock, and
# a read-only transaction (a primary demoted by a failover while the pool still holds its connections).
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P")
_PG_UNAVAILABLE_STATES = ("57014", "40001", "40P01", "25006")


def _unavailable(context: sa.engine.ExceptionContext) -> None:
    """Raise ``StoreUnavailableError`` for a lost or refused connection, so that callers can tell "try again
    later" (503, back off) from a bug; other errors go on as SQLAlchemy raised them. A failed pre-ping is left to
    the pool, which then opens a fresh connection (that is how a restarted PostgreSQL is reconnected)."""
    if context.is_pre_ping:
        return
    original = context.original_exception
    if context.is_disconnect:
        unavailable = True
    elif context.engine is not None and context.engine.dialect.name == "sqlite":
        unavailable = any(text in str(original).lower() for text in _SQLITE_UNAVAILABLE)
    else:
        sqlstate = getattr(original, "sqlstate", None) or ""
        if sqlstate:  # the server answered: only these classes mean "not now" rather than a bug
            unavailable = sqlstate.startswith(_PG_UNAVAILABLE_CLASSES) or sqlstate in _PG_UNAVAILABLE_STATES
        else:  # psycopg's own OperationalError without a server answer: refused, reset, timed out
            unavailable = any(c.__name__ in ("OperationalError", "InterfaceError") for c in type(original).__mro__)
    if unavailable:
        cause = context.sqlalchemy_exception
        raise StoreUnavailableError(f"the store's database is unavailable: {original}") from cause


def _tune_sqlite(engine: Engine, busy_timeout_ms: int, synchronous: str) -> None:
    """WAL, ``synchronous`` (FULL: a commit is on disk when it returns; NORMAL: only the WAL's checkpoints are
    synced, so a power cut may lose the last commits), a busy timeout, foreign keys; and explicit BEGIN / BEGIN
    IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the store emits BEGIN itself (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
