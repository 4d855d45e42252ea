"""The audit log's store part and the shared keyset pagination."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.errors import InvalidCursorError
from hub.store import Store
from hub.store.audit import AuditFilter
from hub.store.pages import clamp_limit, decode_cursor, encode_cursor

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/audit.db")
    s.migrate()
    yield s
    s.close()


def test_entries_are_paged_newest_first_with_a_total(store):
    for i in range(7):
        store.audit(actor="an", action="dead_letter.close", subject=str(i), detail={"reason": f"r{i}"})
    first = store.audit_entries(limit=3)
    assert [e.subject for e in first.items] == ["6", "5", "4"]
    assert first.total == 7 and first.next_cursor
    second = store.audit_entries(cursor=first.next_cursor, limit=3)
    third = store.audit_entries(cursor=second.next_cursor, limit=3)
    assert [e.subject for e in second.items + third.items] == ["3", "2", "1", "0"]
    assert third.next_cursor is None
    assert third.items[-1].detail == {"reason": "r0"}


def test_filters_by_group_actor_outcome_and_time(store):
    store.audit(actor="an", action="signin.ok", client="127.0.0.1")
    store.audit(actor="binh", action="signin.refused", outcome="refused")
    store.audit(actor="an", action="registry.update", subject="SO-TU-PHAP")
    store.audit(actor="an", action="signinx.other")  # a group is a whole first part, not a prefix
    signins = store.audit_entries(AuditFilter(action="signin")).items
    assert [e.action for e in signins] == ["signin.refused", "signin.ok"]
    assert store.audit_entries(AuditFilter(actor="an")).total == 3
    assert [e.actor for e in store.audit_entries(AuditFilter(outcome="refused")).items] == ["binh"]
    later = store.now() + timedelta(minutes=1)
    assert store.audit_entries(AuditFilter(since=later)).total == 0
    assert store.audit_entries(AuditFilter(until=later, subject="SO-TU-PHAP")).total == 1


def test_an_action_and_its_audit_row_roll_back_together(store):
    from hub.store import audit

    with pytest.raises(RuntimeError), store.transaction() as conn:
        audit.record(conn, actor="an", action="destination.pause", subject="SO-TU-PHAP")
        raise RuntimeError("the action failed")
    assert store.audit_entries().total == 0


def test_cursors_round_trip_and_foreign_ones_are_refused():
    assert decode_cursor(encode_cursor(12345)) == 12345
    assert decode_cursor(None) is None and decode_cursor("") is None
    for bad in ("abc", "!!!", encode_cursor(1)[:-2] + "zz", encode_cursor(10**30), encode_cursor(2**63)):
        with pytest.raises(InvalidCursorError) as caught:
            decode_cursor(bad)
        assert caught.value.rule == "cursor" and caught.value.issues[0].path == "cursor"
    assert clamp_limit(None) == 50 and clamp_limit(0) == 1 and clamp_limit(10_000) == 500


def test_an_unknown_outcome_is_a_bug(store):
    with pytest.raises(ValueError):
        store.audit(actor="an", action="signin.ok", outcome="maybe")
