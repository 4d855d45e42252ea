"""Sync the national portal's procedure catalogue into the store, on demand (``hub catalogue sync``) or on a
schedule in the workers (``hub worker --catalogue-every HOURS``).

One sync: claim the store-wide lease (one sync at a time across worker processes and hosts), log in, read
``LayDanhSachTTHC`` then ``LayThuTuc`` for each procedure, ``LayDanhMucCoQuan`` and ``LayDanhMucLinhVuc``
(``adapters.national_portal_catalogue``), and replace the stored catalogue with what was read, in one
transaction. A procedure whose ``LayThuTuc`` fails keeps the field and detail the catalogue held for it (or just
its list name when it is new; counted as ``details_failed``); a list that fails fails the sync, which then keeps
the old catalogue and records its error.

The portal answering an empty list (a glitch, a unit without share rights) must not wipe the catalogue, which
would silently turn intake's unknown-procedure warnings off: a sync whose procedure list is empty while the
catalogue holds some, or holds fewer than half as many, is recorded as failed with that reason and keeps the
catalogue, unless the operator allows it (``hub catalogue sync --allow-shrink``; the schedule never does).

The catalogue is read through a national portal connector with the ``dvcqg/opencps`` profile (a connector that
names no profile is read as one, with its endpoint and credentials). ``dvcqg/proxy`` has no sourced catalogue
service (the provincial proxy, TH-SS/TH-SI, only takes DongBoHoSoMC and CapNhatTienDoHoSoMC): refused, saying so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.base import DeliveryError
from adapters.national_portal_catalogue import PortalCatalogueClient
from hub.errors import (
    CatalogueBusyError,
    CatalogueError,
    CatalogueShrinkError,
    CatalogueUnavailableError,
    MappingError,
)
from hub.store.catalogue import CatalogueData, CatalogueStatus, CatalogueSync, Field, Procedure, Unit
from mappings.profiles import get_profile, resolve

if TYPE_CHECKING:
    from hub.exchange.routing import DestinationConfig
    from hub.store import Store

log = logging.getLogger(__name__)

PORTAL_KIND = "national_portal"
CATALOGUE_PROFILE = "dvcqg/opencps"
NO_CATALOGUE = {
    "dvcqg/proxy": "the provincial proxy profile (dvcqg/proxy) has no sourced catalogue service: the sources call "
    "only DongBoHoSoMC and CapNhatTienDoHoSoMC through it (PARTNER-FORMATS §1, TH-SS:57-70); read the catalogue "
    "through a dvcqg/opencps connector",
}
LEASE_S = 600.0  # a sync renews it while it reads, at least every RENEW_S
RENEW_S = 30.0
RETRY_FAILED_S = 900.0  # a scheduled sync that failed is tried again after this (or the interval, if shorter)

#: progress(done, total, procedure code): called after each procedure's LayThuTuc.
Progress = Callable[[int, int, str], None]


def portal_connectors(destinations: Mapping[str, DestinationConfig]) -> dict[str, DestinationConfig]:
    """The national portal connectors among the routed destinations."""
    return {code: cfg for code, cfg in destinations.items() if cfg.kind == PORTAL_KIND}


def choose_connector(destinations: Mapping[str, DestinationConfig], code: str | None = None) -> tuple[str, Any]:
    """The connector the catalogue is read from: ``code``, or the only national portal connector.
    ``CatalogueUnavailableError`` (saying why) when there is none, several, or it cannot serve the catalogue."""
    portals = portal_connectors(destinations)
    if code is not None:
        if code not in destinations:
            raise CatalogueUnavailableError(f"no routed connector {code!r} (see `hub connector list`)")
        if code not in portals:
            raise CatalogueUnavailableError(f"connector {code} is not a national portal connector")
    elif not portals:
        raise CatalogueUnavailableError("no national portal connector is registered (`hub connector add`)")
    elif len(portals) > 1:
        raise CatalogueUnavailableError(f"several national portal connectors ({', '.join(sorted(portals))}): "
                                        "name one with --connector")  # fmt: skip
    else:
        code = next(iter(portals))
    cfg = destinations[code]
    profile = cfg.profile or CATALOGUE_PROFILE
    name = profile.split("@")[0]
    if name in NO_CATALOGUE:
        raise CatalogueUnavailableError(f"connector {code}: {NO_CATALOGUE[name]}")
    if name != CATALOGUE_PROFILE:
        raise CatalogueUnavailableError(f"connector {code}: profile {profile} has no catalogue service")
    if cfg.credentials is None:
        raise CatalogueUnavailableError(f"connector {code} has no endpoint.credentials to log in to the portal")
    return code, cfg


def client_for(cfg: DestinationConfig) -> PortalCatalogueClient:
    """The catalogue client of a ``dvcqg/opencps`` connector (its endpoint, credentials and profile values)."""
    assert cfg.credentials is not None  # choose_connector checked
    try:
        settings = resolve(get_profile(cfg.profile or CATALOGUE_PROFILE), cfg.profile_values)
    except MappingError as exc:
        raise CatalogueUnavailableError(f"the connector's profile values cannot be used: {exc}") from None
    return PortalCatalogueClient(cfg.endpoint, username=cfg.credentials.username,
                                 password=cfg.credentials.password.get_secret_value(), settings=settings,
                                 timeout_s=max(cfg.timeout_s, 10.0))  # fmt: skip


def read_catalogue(
    client: PortalCatalogueClient,
    *,
    progress: Progress | None = None,
    keep_lease: Callable[[], None] | None = None,
    previous: Callable[[str], Procedure | None] | None = None,
) -> CatalogueData:
    """Read the whole catalogue through ``client``; ``keep_lease`` is called now and then during the long part;
    ``previous`` looks up what the catalogue held for a procedure whose ``LayThuTuc`` fails (kept instead)."""
    client.login()
    listed = client.procedures()
    procedures: list[Procedure] = []
    failed = 0
    for done, item in enumerate(listed, start=1):
        code = str(item["MATTHC"]).strip()
        name = str(item.get("TENTTHC") or "").strip()
        try:
            detail = client.procedure(code)
        except (CatalogueError, DeliveryError) as exc:
            log.warning("catalogue: LayThuTuc %s failed (its previous detail is kept): %s", code, exc)
            failed += 1
            kept = previous(code) if previous is not None else None
            if kept is not None:
                procedures.append(Procedure(code, name or kept.name, kept.field_code, kept.field_name, kept.detail))
            else:
                procedures.append(_procedure(code, name, None))
        else:
            procedures.append(_procedure(code, name, detail))
        if progress is not None:
            progress(done, len(listed), code)
        if keep_lease is not None:
            keep_lease()
    units = [Unit(str(u["MADONVI"]).strip(), str(u.get("TENDONVI") or "").strip(), _opt(u.get("CAPDONVI")))
             for u in client.units()]  # fmt: skip
    fields = [Field(str(f["MALINHVUC"]).strip(), str(f.get("TENLINHVUC") or "").strip(), _opt(f.get("MANGANH")))
              for f in client.fields()]  # fmt: skip
    return CatalogueData(procedures, units, fields, failed)


def _procedure(code: str, name: str, detail: dict[str, Any] | None) -> Procedure:
    """A procedure from its list item and its LayThuTuc record: the field is LINHVUCTHUCHIEN's first
    (OC-DV:171-186)."""
    field_code = field_name = None
    if detail is not None:
        name = name or str(detail.get("TENTTHC") or "").strip()
        areas = detail.get("LINHVUCTHUCHIEN")
        if isinstance(areas, list) and areas and isinstance(areas[0], dict):
            field_code, field_name = _opt(areas[0].get("MALINHVUC")), _opt(areas[0].get("TENLINHVUC"))
    return Procedure(code, name or code, field_code, field_name, detail)


def shrink_refusal(held: int, read: int) -> str | None:
    """Why a sync that read ``read`` procedures must not replace a catalogue of ``held`` (``None``: it may): an
    empty list for a non-empty catalogue, or fewer than half of it."""
    if held > 0 and read == 0:
        return (f"the portal listed no procedure (LayDanhSachTTHC) while the catalogue holds {held}: kept (a glitch, "
                "or a unit without share rights?); `hub catalogue sync --allow-shrink` replaces it anyway")  # fmt: skip
    if read * 2 < held:
        return (f"the portal listed {read} procedures (LayDanhSachTTHC) while the catalogue holds {held}, fewer than "
                "half: kept; `hub catalogue sync --allow-shrink` replaces it anyway")  # fmt: skip
    return None


def _opt(value: object) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def sync_catalogue(
    store: Store,
    destinations: Mapping[str, DestinationConfig],
    *,
    connector: str | None = None,
    actor: str,
    progress: Progress | None = None,
    client_factory: Callable[[DestinationConfig], PortalCatalogueClient] = client_for,
    allow_shrink: bool = False,
) -> CatalogueSync:
    """One sync (see the module): the finished sync record. Raises ``CatalogueUnavailableError`` (no usable
    connector), ``CatalogueBusyError`` (another sync holds the lease, or this one lost it), ``CatalogueShrinkError``
    (the list read is empty or less than half the catalogue, without ``allow_shrink``; recorded), or the read's
    error once it is recorded (``CatalogueError`` or a ``DeliveryError`` of the transport)."""
    code, cfg = choose_connector(destinations, connector)
    client = client_factory(cfg)
    sync = store.claim_catalogue_sync(code, actor=actor, lease_s=LEASE_S)
    if sync is None:
        raise CatalogueBusyError("another catalogue sync is running (its lease is held in the store)")
    renewed = time.monotonic()

    def keep_lease() -> None:
        nonlocal renewed
        if time.monotonic() - renewed >= RENEW_S:
            renewed = time.monotonic()
            if not store.renew_catalogue_sync(sync.id, LEASE_S):
                raise CatalogueBusyError("this sync lost its lease (it ran out and another sync took it)")

    try:
        data = read_catalogue(client, progress=progress, keep_lease=keep_lease, previous=store.catalogue_procedure)
        refusal = None if allow_shrink else shrink_refusal(store.catalogue_status().procedures,
                                                           len({p.code for p in data.procedures}))  # fmt: skip
        if refusal is not None:
            raise CatalogueShrinkError(refusal)
    except (CatalogueError, DeliveryError) as exc:
        store.finish_catalogue_sync(sync.id, error=str(exc))
        raise
    except BaseException as exc:
        store.finish_catalogue_sync(sync.id, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        client.close()
    return store.finish_catalogue_sync(sync.id, data)


# ---------------------------------------------------------------------------------------------- the schedule


def due(status: CatalogueStatus, every_s: float, at: datetime) -> bool:
    """Whether a scheduled sync should start at ``at``: never tried, the last success older than ``every_s``,
    the last attempt failed more than ``min(every_s, RETRY_FAILED_S)`` ago, or the running one's lease ran out
    (its worker died: only a ``claim`` closes it, so waiting for it to finish would stop the schedule for good);
    not while one runs."""
    latest = status.latest
    if latest is None:
        return True
    if latest.finished_at is None:  # running; or its process died: due once its lease ran out (claim closes it)
        return latest.lease_until is not None and latest.lease_until < at
    wait = every_s if latest.error is None else min(every_s, RETRY_FAILED_S)
    return latest.finished_at + timedelta(seconds=wait) <= at


@dataclass
class CatalogueSchedule:
    """A worker process's catalogue schedule: every ``check_s`` it looks whether a sync is due and, if this
    process wins the store's lease, syncs. Run in a daemon thread (``start``) until ``stop`` is set; the other
    processes' schedules find the lease held, or the catalogue fresh, and wait."""

    store: Store
    destinations: Callable[[], Mapping[str, DestinationConfig]]
    every_s: float
    stop: threading.Event
    check_s: float = 60.0
    actor: str = "worker"
    _said: str = ""

    def run_once(self, at: datetime | None = None) -> CatalogueSync | None:
        """Sync when due and the lease is free; the sync record, or ``None`` (not due, busy, or unavailable)."""
        if not due(self.store.catalogue_status(), self.every_s, at or self.store.now()):
            return None
        try:
            return sync_catalogue(self.store, self.destinations(), actor=self.actor)
        except CatalogueBusyError:
            return None
        except CatalogueUnavailableError as exc:
            if str(exc) != self._said:  # once per reason, not every check
                self._said = str(exc)
                log.warning("scheduled catalogue sync cannot run: %s", exc)
            return None
        except (CatalogueError, DeliveryError) as exc:
            log.warning("scheduled catalogue sync failed (recorded; tried again later): %s", exc)
            return None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.run_once()
            except Exception:  # a store outage: the worker's own backoff deals with it; try at the next check
                log.exception("scheduled catalogue sync")
            self.stop.wait(self.check_s)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="catalogue-schedule", daemon=True)
        thread.start()
        return thread


def start_schedule(every_h: float, runtime: Any, stop: threading.Event) -> threading.Thread:
    """Start a worker process's catalogue schedule on its runtime (``hub.runtime.run_workers``'s ``background``
    hook; picklable with ``functools.partial`` for the worker processes)."""
    actor = f"worker@{socket.gethostname()}:{os.getpid()}"
    schedule = CatalogueSchedule(runtime.store, lambda: runtime.routing.destinations, every_h * 3600.0, stop,
                                 actor=actor)  # fmt: skip
    return schedule.start()
