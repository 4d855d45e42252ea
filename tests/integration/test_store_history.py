"""The delivery history (``delivery_minutes``): counted with the deliveries' state changes, summed into the windows'
buckets by the database, pruned after 7 days; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from hub.store import Store
from hub.store.schema import delivery_minutes
from hub.store.traffic import count, minute_of, window_bounds

UTC = dt.UTC


def deliveries(store: Store, n: int, destinations: list[str], prefix: str = "m") -> list[list[int]]:
    """``n`` accepted messages to ``destinations``, published and attempted: each one's delivery ids."""
    ids = []
    for i in range(n):
        accepted = store.accept(
            sender="000.00.00.H12", message_id=f"{prefix}-{i}", correlation_id=None, message_type="dossier.status",
            receiver="000.00.00.H00", dossier_code=None, envelope=b"<env/>", destinations=destinations,
        )  # fmt: skip
        ids.append(list(accepted.delivery_ids))
    flat = [d for group in ids for d in group]
    store.mark_published(flat)
    store.start_attempts(flat)
    return ids


def rows(store: Store) -> list[tuple[str, int, int, int]]:
    with store.engine.connect() as conn:
        found = conn.execute(
            sa.select(delivery_minutes.c.destination, delivery_minutes.c.delivered, delivery_minutes.c.failed,
                      delivery_minutes.c.dead).order_by(delivery_minutes.c.destination, delivery_minutes.c.minute)
        )  # fmt: skip
        return [tuple(r) for r in found]


def test_counts_equal_the_deliveries_recorded(store: Store) -> None:
    ids = deliveries(store, 5, ["portal", "province"])
    portal = [group[0] for group in ids]
    province = [group[1] for group in ids]
    assert store.record_delivered_many([(d, b"<out/>", "") for d in portal + province[:2]]) == [True] * 7
    # a repeat and an already delivered one are not counted again
    assert store.record_delivered_many([(portal[0], b"<out/>", ""), (portal[0], b"<out/>", "")]) == [False, False]
    store.record_retry(province[2], error="HTTP 503", delay_s=30)
    store.record_retry(province[3], error="timeout", delay_s=30)
    store.record_dead(province[3], reason="exhausted", error="timeout")
    store.record_dead(province[3], reason="exhausted", error="timeout")  # already dead: the same dead letter
    store.record_dead(province[4], reason="rejected", error="HTTP 400")

    # everything happened within a minute or two: the hour's totals are exact
    hour = store.history("1h")
    assert [(h.destination, h.delivered, h.failed, h.dead) for h in hour.destinations] == [
        ("portal", 5, 0, 0),
        ("province", 2, 2, 2),
    ]
    assert sum(r[1] for r in rows(store)) == 7 and sum(r[2] for r in rows(store)) == 2
    assert len(hour.of("portal").buckets) == 60 and hour.bucket_s == 60
    assert hour.of("nobody").empty and len(hour.of("nobody").buckets) == 60
    day = store.history("24h", destination="province")
    assert [(h.destination, h.delivered, h.failed, h.dead) for h in day.destinations] == [("province", 2, 2, 2)]
    assert len(day.destinations[0].buckets) == 96 and day.bucket_s == 900
    week = store.history("7d")
    assert len(week.of("portal").buckets) == 168 and week.of("portal").delivered == 5


def _add(store: Store, destination: str, at: dt.datetime, column: str, n: int = 1) -> None:
    with store.transaction() as conn:
        count(conn, at, column, {destination: n})


def test_minutes_are_summed_into_the_windows_buckets(store: Store) -> None:
    at = dt.datetime(2026, 12, 2, 6, 37, 20, tzinfo=UTC)
    _add(store, "portal", at - dt.timedelta(minutes=1), "delivered", 3)  # 06:36
    _add(store, "portal", at - dt.timedelta(minutes=1, seconds=-30), "delivered", 2)  # 06:36 again
    _add(store, "portal", at - dt.timedelta(minutes=5), "failed")  # 06:32
    _add(store, "portal", at - dt.timedelta(minutes=20), "dead")  # 06:17
    _add(store, "portal", at - dt.timedelta(hours=3), "delivered", 7)  # 03:37: out of the hour
    _add(store, "portal", at - dt.timedelta(days=2), "delivered", 11)  # out of the day

    hour = store.history("1h", at=at)
    assert hour.end == dt.datetime(2026, 12, 2, 6, 38, tzinfo=UTC) and hour.start == hour.end - dt.timedelta(hours=1)
    portal = hour.of("portal")
    busy = {b.start.strftime("%H:%M"): (b.delivered, b.failed, b.dead) for b in portal.buckets if b.total}
    assert busy == {"06:36": (5, 0, 0), "06:32": (0, 1, 0), "06:17": (0, 0, 1)}
    assert portal.buckets[-1].start == dt.datetime(2026, 12, 2, 6, 37, tzinfo=UTC)  # the current minute is last

    day = store.history("24h", at=at).of("portal")
    busy = {b.start.strftime("%H:%M"): (b.delivered, b.failed, b.dead) for b in day.buckets if b.total}
    assert busy == {"06:30": (5, 1, 0), "06:15": (0, 0, 1), "03:30": (7, 0, 0)}
    assert day.buckets[-1].start == dt.datetime(2026, 12, 2, 6, 30, tzinfo=UTC)

    week = store.history("7d", at=at).of("portal")
    busy = {b.start.strftime("%d %H"): b.delivered for b in week.buckets if b.total}
    assert busy == {"02 06": 5, "02 03": 7, "30 06": 11}  # 30 November, 06:00
    assert (week.delivered, week.failed, week.dead) == (23, 1, 1)


def test_history_older_than_seven_days_is_pruned(store: Store) -> None:
    at = dt.datetime.now(UTC)
    _add(store, "portal", at - dt.timedelta(days=8), "delivered", 4)
    _add(store, "portal", at - dt.timedelta(days=6), "delivered", 2)
    assert len(rows(store)) == 2
    assert store.prune_history(at) == 1
    assert rows(store) == [("portal", 2, 0, 0)]
    assert store.prune_history(at) == 0


def test_the_writers_prune_once_a_minute(store: Store) -> None:
    at = dt.datetime(2026, 12, 2, 6, 0, 10, tzinfo=UTC)
    _add(store, "portal", at - dt.timedelta(days=8), "dead")
    assert len(rows(store)) == 1
    _add(store, "portal", at, "failed")  # a new minute (06:00): first, what is older than 7 days goes
    assert rows(store) == [("portal", 0, 1, 0)]
    with store.transaction() as conn:  # an old row again
        conn.execute(delivery_minutes.insert().values(destination="portal", minute=at - dt.timedelta(days=8), dead=1))
    _add(store, "portal", at + dt.timedelta(seconds=20), "failed")  # the same minute: no second prune
    assert len(rows(store)) == 2
    _add(store, "portal", at + dt.timedelta(minutes=1), "failed")  # 06:01
    assert rows(store) == [("portal", 0, 2, 0), ("portal", 0, 1, 0)]


def test_window_bounds_and_unknown_windows(store: Store) -> None:
    at = dt.datetime(2026, 12, 2, 6, 59, 59, tzinfo=UTC)
    assert window_bounds("7d", at)[1] == dt.datetime(2026, 12, 2, 7, tzinfo=UTC)
    assert minute_of(at.astimezone(dt.timezone(dt.timedelta(hours=7)))) == dt.datetime(2026, 12, 2, 6, 59, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown history window"):
        store.history("2h")
