"""The operator page's sign-in state in the store (``hub.store.sessions``), on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hub.store import Store, sessions


def test_sessions_open_find_and_end(store: Store) -> None:
    engine = store.engine
    sessions.open_session(engine, "tok-1", name="lan", role="operator", credential="c" * 64, client="10.0.0.1",
                          lifetime_s=60)  # fmt: skip
    expired = {"name": "lan", "role": "operator", "credential": "c" * 64, "client": None, "lifetime_s": -1}
    sessions.open_session(engine, "tok-2", **expired)
    found = sessions.find_session(engine, "tok-1")
    assert found is not None and (found.name, found.role, found.credential) == ("lan", "operator", "c" * 64)
    assert sessions.find_session(engine, "tok-2") is None and sessions.find_session(engine, "nope") is None
    assert sessions.end_session(engine, "tok-1") and not sessions.end_session(engine, "tok-1")
    assert sessions.find_session(engine, "tok-1") is None
    sessions.open_session(engine, "tok-3", name="mai", role="admin", credential="d" * 64, client=None, lifetime_s=60)
    assert sessions.end_sessions_of(engine, "mai") == 1


def test_failures_count_up_block_and_clear(store: Store) -> None:
    engine = store.engine
    keys = ["account:lan", "address:10.0.0.1"]

    def backoff(failures: int) -> float:
        return 0.0 if failures < 3 else 60.0 * 2 ** (failures - 3)

    for expected in (1, 2):
        counts = sessions.record_failure(engine, keys, window_s=3600, backoff=backoff)
        assert {key: n for key, (n, _) in counts.items()} == {key: expected for key in keys}
        assert all(until is None for _, until in counts.values())
    assert sessions.blocked_until(engine, keys) is None
    counts = sessions.record_failure(engine, keys[:1], window_s=3600, backoff=backoff)
    ((failures, until),) = counts.values()
    assert failures == 3 and until is not None
    assert sessions.blocked_until(engine, keys) == ("account:lan", until)
    assert sessions.blocked_until(engine, keys[1:]) is None
    sessions.clear_failures(engine, keys[:1])
    assert sessions.blocked_until(engine, keys) is None
    counts = sessions.record_failure(engine, keys, window_s=0.0, backoff=backoff)  # the window has passed
    assert counts["account:lan"][0] == 1 and counts["address:10.0.0.1"][0] == 1


def test_a_burst_of_attempts_gets_no_more_checks_than_the_free_failures(store: Store) -> None:
    """Checking and counting in one transaction: 20 attempts at once, 5 admitted, the rest blocked."""
    keys = ["account:lan", "address:10.0.0.1"]

    def backoff(failures: int) -> float:
        return 0.0 if failures < 5 else 60.0

    def attempt(_: int) -> bool:
        return sessions.begin_attempt(store.engine, keys, window_s=3600, backoff=backoff) is None

    with ThreadPoolExecutor(10) as pool:
        admitted = sum(pool.map(attempt, range(20)))
    assert admitted == 5
    sessions.forgive(store.engine, keys[1:], backoff=backoff)  # the last admitted one was right, after all
    assert sessions.failure_counts(store.engine, keys) == {
        "account:lan": (5, sessions.failure_counts(store.engine, keys)["account:lan"][1]),
        "address:10.0.0.1": (4, None),
    }
