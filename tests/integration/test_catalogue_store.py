"""The procedure catalogue in the store (``hub.store.catalogue``), on SQLite and PostgreSQL: a sync replaces it
whole, a failed one keeps it, one sync at a time holds the lease, a dead sync's lease runs out."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from hub.store import Store
from hub.store.catalogue import ABANDONED, CachedCatalogue, CatalogueData, Field, KnownProcedures, Procedure, Unit
from hub.store.schema import catalogue_syncs

DATA = CatalogueData(
    procedures=[
        Procedure("1.001", "Đăng ký khai sinh", "HT", "Hộ tịch", {"TENTTHC": "Đăng ký khai sinh"}),
        Procedure("1.002", "Cấp giấy phép xây dựng"),
    ],
    units=[Unit("000.00.00.H12", "UBND tỉnh Ninh Thuận", "2")],
    fields=[Field("HT", "Hộ tịch", "TP")],
    details_failed=1,
)


def test_a_sync_fills_and_replaces_the_catalogue(store: Store) -> None:
    assert store.catalogue_status().empty and store.catalogue_status().synced_at is None
    sync = store.claim_catalogue_sync("000.00.00.G22", actor="cli")
    assert sync is not None and sync.finished_at is None
    assert store.catalogue_status().running
    done = store.finish_catalogue_sync(sync.id, DATA)
    assert done.ok and (done.procedures, done.units, done.fields, done.details_failed) == (2, 1, 1, 1)
    status = store.catalogue_status()
    assert (status.procedures, status.units, status.fields) == (2, 1, 1)
    assert status.last_success == done and status.last_error is None and status.age_s() is not None
    assert store.catalogue_procedure("1.001") == DATA.procedures[0]
    assert store.catalogue_unit("000.00.00.H12") == DATA.units[0]
    assert store.catalogue_field("HT") == DATA.fields[0]
    assert store.catalogue_procedure_codes() == {"1.001", "1.002"}

    again = store.claim_catalogue_sync("000.00.00.G22", actor="worker")
    assert again is not None
    store.finish_catalogue_sync(again.id, CatalogueData(procedures=[Procedure("2.000", "Khác")]))
    assert store.catalogue_procedure_codes() == {"2.000"}
    assert store.catalogue_unit("000.00.00.H12") is None


def test_a_failed_sync_keeps_the_catalogue_and_says_why(store: Store) -> None:
    first = store.claim_catalogue_sync("G22", actor="cli")
    assert first is not None
    store.finish_catalogue_sync(first.id, DATA)
    failed = store.claim_catalogue_sync("G22", actor="cli")
    assert failed is not None
    store.finish_catalogue_sync(failed.id, error="login refused: error_code 1")
    status = store.catalogue_status()
    assert status.procedures == 2 and status.last_success is not None and status.last_success.id == first.id
    assert status.last_error == "login refused: error_code 1"


def test_one_sync_at_a_time_and_a_dead_lease_runs_out(store: Store) -> None:
    held = store.claim_catalogue_sync("G22", actor="worker-1", lease_s=600)
    assert held is not None
    assert store.claim_catalogue_sync("G22", actor="worker-2") is None
    assert store.renew_catalogue_sync(held.id, 600)
    with store.transaction() as conn:  # the holder died: its lease is in the past
        conn.execute(catalogue_syncs.update().values(lease_until=store.now() - timedelta(days=1)))
    taken = store.claim_catalogue_sync("G22", actor="worker-2")
    assert taken is not None and taken.id != held.id
    assert not store.renew_catalogue_sync(held.id, 600)
    with store.transaction(readonly=True) as conn:
        error = conn.execute(sa.select(catalogue_syncs.c.error).where(catalogue_syncs.c.id == held.id)).scalar_one()
    assert error == ABANDONED


def test_known_procedures_warn_only_against_a_non_empty_catalogue(store: Store) -> None:
    known = KnownProcedures(store.catalogue_procedure_codes, ttl_s=0)
    assert not known.unknown("9.999")  # never synced: nothing to warn against
    sync = store.claim_catalogue_sync("G22", actor="cli")
    assert sync is not None
    store.finish_catalogue_sync(sync.id, DATA)
    assert known.unknown("9.999") and not known.unknown("1.001")


def test_the_cached_catalogue_names_a_record_without_a_query_each_time(store: Store) -> None:
    from mappings.catalogue import CatalogueNames, catalogue_names

    loads: list[int] = []

    def load():
        loads.append(1)
        return store.catalogue_names()

    cached = CachedCatalogue(load, ttl_s=3600)
    assert catalogue_names(cached, "1.001", "000.00.00.H12") == CatalogueNames()  # empty, and now cached
    sync = store.claim_catalogue_sync("G22", actor="cli")
    assert sync is not None
    store.finish_catalogue_sync(sync.id, DATA)
    fresh = CachedCatalogue(store.catalogue_names, ttl_s=3600)
    assert catalogue_names(fresh, "1.001", "000.00.00.H12") == CatalogueNames(
        "Đăng ký khai sinh", "HT", "Hộ tịch", "UBND tỉnh Ninh Thuận")  # fmt: skip
    assert catalogue_names(cached, "1.001", None) == CatalogueNames() and len(loads) == 1  # within its TTL
