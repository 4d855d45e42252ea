"""The embedded store's durability: SQLite commits with ``synchronous=FULL`` unless the operator opts out with
``LIENTHONG_SQLITE_SYNCHRONOUS=normal``, on every pooled connection; anything else is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
import sqlalchemy as sa

from hub.config import Settings, get_settings
from hub.errors import StoreError
from hub.store import Store
from hub.store.database import Database

PRAGMA_SYNCHRONOUS = {1: "normal", 2: "full"}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """``LIENTHONG_SQLITE_SYNCHRONOUS`` unset, and the cached settings re-read on both sides of the test."""
    monkeypatch.delenv("LIENTHONG_SQLITE_SYNCHRONOUS", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def modes_in_effect(engine: sa.Engine, connections: int = 3) -> set[tuple[str, str]]:
    """(synchronous, journal_mode) as read back from ``connections`` pooled connections held at once."""
    held, modes = [engine.connect() for _ in range(connections)], set()
    try:
        for conn in held:
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            modes.add((PRAGMA_SYNCHRONOUS.get(sync, str(sync)), journal))
    finally:
        for conn in held:
            conn.close()
    return modes


def test_the_store_is_durable_across_a_power_cut_by_default(environment, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    assert modes_in_effect(store.engine) == {("full", "wal")}
    assert store.db.durability() == "sqlite journal_mode=wal synchronous=FULL"
    store.close()


@pytest.mark.parametrize("value", ["normal", "NORMAL", "full", "Full"])
def test_the_setting_is_in_effect_on_every_connection(environment, tmp_path: Path, value: str) -> None:
    environment.setenv("LIENTHONG_SQLITE_SYNCHRONOUS", value)
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    assert modes_in_effect(store.engine) == {(value.lower(), "wal")}
    store.close()


def test_connections_opened_by_other_threads_run_the_same_mode(environment, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/hub.db", sqlite_synchronous="normal", pool_size=4)
    seen: list[set[tuple[str, str]]] = []
    threads = [threading.Thread(target=lambda: seen.append(modes_in_effect(db.engine, 2))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [{("normal", "wal")}] * 3
    db.close()


def test_an_explicit_mode_wins_over_the_environment(environment, tmp_path: Path) -> None:
    environment.setenv("LIENTHONG_SQLITE_SYNCHRONOUS", "normal")
    db = Database(f"sqlite:///{tmp_path}/hub.db", sqlite_synchronous="full")
    assert modes_in_effect(db.engine) == {("full", "wal")}
    db.close()


@pytest.mark.parametrize("value", ["off", "extra", "fsync", ""])
def test_any_other_setting_is_refused_with_the_choices(environment, value: str) -> None:
    environment.setenv("LIENTHONG_SQLITE_SYNCHRONOUS", value)
    with pytest.raises(pydantic.ValidationError, match=r"LIENTHONG_SQLITE_SYNCHRONOUS must be `full`.* or `normal`"):
        Settings()


def test_the_database_refuses_another_mode_before_creating_the_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="`full` or `normal`, not 'off'"):
        Database(f"sqlite:///{tmp_path}/hub.db", sqlite_synchronous="off")
    assert not (tmp_path / "hub.db").exists()


@pytest.mark.parametrize(("option", "expected"), [("", "full"), ("?synchronous=NORMAL", "normal")])
def test_the_embedded_queue_commits_full_unless_its_url_says_otherwise(
    environment, tmp_path: Path, option: str, expected: str
) -> None:
    """The queue beside the default store keeps the same promise (a lost publish would cost a relay round)."""
    from hub.runtime import broker_url, open_broker

    settings = Settings(broker_url=f"embedded{option}", data_dir=tmp_path)
    assert broker_url(settings).startswith(f"embedded:{tmp_path}")
    broker = open_broker(settings)
    try:
        mode = broker._db.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[attr-defined]
        assert PRAGMA_SYNCHRONOUS[mode] == expected
    finally:
        broker.close()
