"""The national portal's procedure catalogue, as the hub last read it: procedures, units, fields, and each sync.

``hub catalogue sync`` (``hub.flows.catalogue``) reads the portal's lists and hands them here in one piece
(``CatalogueData``); ``finish`` replaces the three tables with it in one transaction, so readers see the old
catalogue or the new one, never half of each. A failed sync leaves the catalogue as it was and records its error.

One sync at a time, across worker processes and hosts: ``claim`` inserts the sync's row with ``running = 1``
under a unique index (the second claimer's insert is ignored, so it gets ``None``); ``renew`` extends the lease
while the sync reads; a sync whose process died holds it only until ``lease_until`` (the next ``claim`` closes it
as abandoned; a schedule sees such a sync as due, ``CatalogueSync.lease_until``). ``finish`` sets ``running`` back
to NULL, and only for a sync that still holds the lease (its row still running): a sync that lost it (closed as
abandoned, another sync since) neither replaces the catalogue nor rewrites its row.

Readers: ``status`` (counts, the last successful sync, the latest attempt: the operator page, ``hub catalogue
show``), ``procedure`` / ``unit`` / ``field`` (the names a portal record takes), and ``KnownProcedures`` (the
cached set of codes intake warns against).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.errors import CatalogueBusyError, Issue
from hub.store.database import Database, now
from hub.store.schema import catalogue_fields, catalogue_procedures, catalogue_syncs, catalogue_units

log = logging.getLogger(__name__)

UNKNOWN_PROCEDURE = "procedure-unknown"  # the rule of the warning (intake, ``hub validate``)

ABANDONED = "abandoned: its lease ran out before it finished (the process stopped?)"


@dataclass(frozen=True, slots=True)
class Procedure:
    """One administrative procedure (MATTHC, TENTTHC) with its field read from LayThuTuc (``detail``: its answer)."""

    code: str
    name: str
    field_code: str | None = None
    field_name: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Unit:
    """One agency of LayDanhMucCoQuan: MADONVI, TENDONVI, CAPDONVI."""

    code: str
    name: str
    level: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """One field of LayDanhMucLinhVuc: MALINHVUC, TENLINHVUC, MANGANH."""

    code: str
    name: str
    sector: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogueData:
    """A whole catalogue as one sync read it; ``details_failed``: procedures whose LayThuTuc could not be read
    (kept with their list name, without field or detail)."""

    procedures: Sequence[Procedure] = ()
    units: Sequence[Unit] = ()
    fields: Sequence[Field] = ()
    details_failed: int = 0


@dataclass(frozen=True, slots=True)
class CatalogueSync:
    """One sync: running (``finished_at`` None), succeeded (``error`` None) or failed."""

    id: int
    connector: str
    actor: str
    started_at: datetime
    finished_at: datetime | None
    procedures: int
    units: int
    fields: int
    details_failed: int
    error: str | None
    lease_until: datetime | None = None  # while running: when its lease runs out (a dead sync's, in the past)

    @property
    def ok(self) -> bool:
        return self.finished_at is not None and self.error is None


@dataclass(frozen=True, slots=True)
class CatalogueStatus:
    """What the catalogue holds and how old it is: the operator page and ``hub catalogue show``."""

    procedures: int
    units: int
    fields: int
    last_success: CatalogueSync | None  # the newest sync that finished without error
    latest: CatalogueSync | None  # the newest sync, whatever its outcome (running included)
    counted_at: datetime = field(default_factory=now)

    @property
    def empty(self) -> bool:
        return self.procedures == 0

    @property
    def synced_at(self) -> datetime | None:
        return None if self.last_success is None else self.last_success.finished_at

    def age_s(self, at: datetime | None = None) -> float | None:
        """Seconds since the last successful sync finished (``None``: never synced)."""
        synced = self.synced_at
        return None if synced is None else max(((at or self.counted_at) - synced).total_seconds(), 0.0)

    @property
    def last_error(self) -> str | None:
        """The latest sync's error when it failed after the last success (else ``None``)."""
        latest = self.latest
        return latest.error if latest is not None and latest.error is not None else None

    @property
    def running(self) -> bool:
        return self.latest is not None and self.latest.finished_at is None


def _sync(row: Any) -> CatalogueSync:
    return CatalogueSync(row.id, row.connector, row.actor, row.started_at, row.finished_at, row.procedures,
                         row.units, row.fields, row.details_failed, row.error, row.lease_until)  # fmt: skip


def claim(db: Database, connector: str, *, actor: str, lease_s: float) -> CatalogueSync | None:
    """Start a sync for ``connector`` holding the lease for ``lease_s`` seconds; ``None`` when another sync holds
    it. A sync whose lease ran out is closed as abandoned first."""
    at = now()
    with db.transaction() as conn:
        conn.execute(
            catalogue_syncs.update()
            .where(catalogue_syncs.c.running == 1, catalogue_syncs.c.lease_until < at)
            .values(running=None, finished_at=at, error=ABANDONED)
        )
        row = conn.execute(
            db.insert_ignoring(catalogue_syncs, ["running"])
            .values(connector=connector[:64], actor=actor[:128], started_at=at,
                    lease_until=at + timedelta(seconds=lease_s), running=1, procedures=0, units=0, fields=0,
                    details_failed=0)
            .returning(*catalogue_syncs.c)
        ).first()  # fmt: skip
    return None if row is None else _sync(row)


def renew(db: Database, sync_id: int, lease_s: float) -> bool:
    """Extend a running sync's lease; ``False`` when it no longer holds it (it ran out and another claimed)."""
    with db.transaction() as conn:
        done = conn.execute(
            catalogue_syncs.update()
            .where(catalogue_syncs.c.id == sync_id, catalogue_syncs.c.running == 1)
            .values(lease_until=now() + timedelta(seconds=lease_s))
        )
    return done.rowcount == 1


def finish(db: Database, sync_id: int, data: CatalogueData | None = None, *, error: str | None = None) -> CatalogueSync:
    """End a sync: with ``data`` (and no ``error``) the catalogue is replaced by it in the same transaction; with an
    ``error`` the catalogue is kept and the error recorded. ``ValueError`` without either.

    Only while the sync still holds the lease (its row is still the running one), checked in the same transaction:
    a sync that lost it raises ``CatalogueBusyError`` with ``data`` (the catalogue is not replaced) and, with an
    ``error``, leaves its row as it is ("abandoned" stays) and returns it."""
    if data is None and error is None:
        raise ValueError("a sync finishes with its data or with an error")
    at = now()
    with db.transaction() as conn:
        values: dict[str, Any] = {"running": None, "finished_at": at, "error": None if error is None else error[:2000]}
        if error is None and data is not None:
            values.update(procedures=len(data.procedures), units=len(data.units), fields=len(data.fields),
                          details_failed=data.details_failed)  # fmt: skip
        held = conn.execute(
            catalogue_syncs.update()
            .where(catalogue_syncs.c.id == sync_id, catalogue_syncs.c.running == 1)
            .values(**values)
        ).rowcount  # the row is locked from here to the commit: no claim closes it meanwhile
        if held == 1 and error is None and data is not None:
            _replace(conn, data, at)
        row = conn.execute(sa.select(catalogue_syncs).where(catalogue_syncs.c.id == sync_id)).one()
    if held != 1:
        log.warning("catalogue sync %s finished after losing its lease (%s): nothing recorded", sync_id, row.error)
        if error is None:
            raise CatalogueBusyError("this sync lost its lease (it ran out and the sync was closed as abandoned): "
                                     "the catalogue was not replaced")  # fmt: skip
    return _sync(row)


def _replace(conn: sa.Connection, data: CatalogueData, at: datetime) -> None:
    for table in (catalogue_procedures, catalogue_units, catalogue_fields):
        conn.execute(table.delete())
    # A code listed twice is kept once (the last one read), so the primary keys hold.
    procedures = {p.code: p for p in data.procedures}
    units = {u.code: u for u in data.units}
    fields = {f.code: f for f in data.fields}
    if procedures:
        conn.execute(catalogue_procedures.insert(), [
            {"code": p.code, "name": p.name, "field_code": p.field_code, "field_name": p.field_name,
             "detail": p.detail, "fetched_at": at} for p in procedures.values()
        ])  # fmt: skip
    if units:
        conn.execute(catalogue_units.insert(), [
            {"code": u.code, "name": u.name, "level": u.level, "fetched_at": at} for u in units.values()
        ])  # fmt: skip
    if fields:
        conn.execute(catalogue_fields.insert(), [
            {"code": f.code, "name": f.name, "sector": f.sector, "fetched_at": at} for f in fields.values()
        ])  # fmt: skip


def status(db: Database) -> CatalogueStatus:
    """The catalogue's counts and its last successful and latest syncs."""
    count = sa.func.count()
    with db.transaction(readonly=True) as conn:
        counts = [conn.execute(sa.select(count).select_from(t)).scalar_one()
                  for t in (catalogue_procedures, catalogue_units, catalogue_fields)]  # fmt: skip
        newest = sa.select(catalogue_syncs).order_by(catalogue_syncs.c.id.desc()).limit(1)
        latest = conn.execute(newest).first()
        success = conn.execute(
            newest.where(catalogue_syncs.c.finished_at.is_not(None), catalogue_syncs.c.error.is_(None))
        ).first()
    return CatalogueStatus(counts[0], counts[1], counts[2], None if success is None else _sync(success),
                           None if latest is None else _sync(latest), now())  # fmt: skip


def procedure(db: Database, code: str) -> Procedure | None:
    """One procedure by its code (MATTHC), ``None`` when the catalogue does not list it."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(catalogue_procedures).where(catalogue_procedures.c.code == code)).first()
    return None if row is None else Procedure(row.code, row.name, row.field_code, row.field_name, row.detail)


def unit(db: Database, code: str) -> Unit | None:
    """One unit by its code (MADONVI), ``None`` when the catalogue does not list it."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(catalogue_units).where(catalogue_units.c.code == code)).first()
    return None if row is None else Unit(row.code, row.name, row.level)


def field_of(db: Database, code: str) -> Field | None:
    """One field by its code (MALINHVUC), ``None`` when the catalogue does not list it."""
    with db.transaction(readonly=True) as conn:
        row = conn.execute(sa.select(catalogue_fields).where(catalogue_fields.c.code == code)).first()
    return None if row is None else Field(row.code, row.name, row.sector)


def procedure_codes(db: Database) -> frozenset[str]:
    """Every procedure code the catalogue lists (empty: never synced, or the portal listed none)."""
    with db.transaction(readonly=True) as conn:
        return frozenset(conn.execute(sa.select(catalogue_procedures.c.code)).scalars())


class KnownProcedures:
    """The catalogue's procedure codes, re-read at most every ``ttl_s`` seconds (the catalogue changes once a
    sync, intake asks per message). Thread-safe; a failed re-read keeps the codes it had."""

    def __init__(self, load: Callable[[], frozenset[str]], ttl_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._codes: frozenset[str] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def codes(self) -> frozenset[str]:
        with self._lock:
            if self._codes is None or self._clock() - self._read_at >= self._ttl_s:
                self._read_at = self._clock()
                try:
                    self._codes = self._load()
                except Exception as exc:  # a warning is advice: never let it refuse or fail a message
                    log.warning("cannot read the procedure catalogue: %s", exc)
                    self._codes = self._codes or frozenset()
            return self._codes

    def unknown(self, code: str) -> bool:
        """Whether the catalogue holds procedures but not ``code`` (an empty catalogue knows nothing: ``False``)."""
        codes = self.codes()
        return bool(codes) and code not in codes

    def warning(self, code: str) -> Issue | None:
        """The warning for a dossier naming procedure ``code`` the catalogue does not list (``None``: known, or an
        empty catalogue). A warning, never a refusal: the catalogue may lag behind the portal."""
        return unknown_procedure(code) if self.unknown(code) else None


def unknown_procedure(code: str, path: str = "/envelope/body/procedureCode") -> Issue:
    """The warning (``Issue`` with rule ``procedure-unknown``) about a procedure the catalogue does not list."""
    message = f"procedure {code} is not in the national portal's procedure catalogue (hub catalogue sync)"
    return Issue(path, UNKNOWN_PROCEDURE, message)


def names(db: Database) -> tuple[dict[str, Procedure], dict[str, Unit]]:
    """Every procedure (without its LayThuTuc detail) and unit, by code: what a portal record's names need."""
    p, u = catalogue_procedures.c, catalogue_units.c
    with db.transaction(readonly=True) as conn:
        procedures = {r.code: Procedure(r.code, r.name, r.field_code, r.field_name)
                      for r in conn.execute(sa.select(p.code, p.name, p.field_code, p.field_name))}  # fmt: skip
        units = {r.code: Unit(r.code, r.name, r.level) for r in conn.execute(sa.select(u.code, u.name, u.level))}
    return procedures, units


class CachedCatalogue:
    """The catalogue's procedures and units held in memory, re-read at most every ``ttl_s`` seconds: a
    ``mappings.catalogue.CatalogueSource`` for the worker, which names a portal record per delivery without a
    store query each time. Thread-safe; a failed re-read keeps what it had."""

    def __init__(self, load: Callable[[], tuple[dict[str, Procedure], dict[str, Unit]]], ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._data: tuple[dict[str, Procedure], dict[str, Unit]] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def _current(self) -> tuple[dict[str, Procedure], dict[str, Unit]]:
        with self._lock:
            if self._data is None or self._clock() - self._read_at >= self._ttl_s:
                self._read_at = self._clock()
                try:
                    self._data = self._load()
                except Exception as exc:  # names are a courtesy: a delivery never fails for them
                    log.warning("cannot read the procedure catalogue's names: %s", exc)
                    self._data = self._data or ({}, {})
            return self._data

    def catalogue_procedure(self, code: str) -> Procedure | None:
        return self._current()[0].get(code)

    def catalogue_unit(self, code: str) -> Unit | None:
        return self._current()[1].get(code)
