"""The operator actions' API: close a dead letter, retry now, pause and resume a destination — roles, refusals
(400, 404, 409 as problem+json) and what each one stores and audits."""

from __future__ import annotations

import pytest

from hub.store import DeliveryState
from hub.store.audit import AuditFilter
from hub.store.deliveries import GENERATION_HEADER
from tests.unit.test_api import ADMIN_KEY, OPERATOR_KEY, PROVINCE, Api, assert_problem
from tests.unit.test_api import api as api  # the fixture, shared with the API's other tests

pytestmark = pytest.mark.unit


def post(api: Api, path: str, key: str = OPERATOR_KEY, **body):
    return api.client.post(path, json=body or None, headers={"X-Api-Key": api.keys.get(key, key)})


def accepted_delivery(api: Api) -> tuple[str, int]:
    message_id = api.post(api.envelope()).json()["message_id"]
    (delivery,) = api.hub.store.trace(message_id).deliveries
    return message_id, delivery.delivery_id


def audited(api: Api, action: str) -> list[tuple[str, str | None, dict | None]]:
    return [(e.actor, e.subject, e.detail) for e in api.hub.store.audit_entries(AuditFilter(action=action)).items]


def test_close_a_dead_letter(api: Api) -> None:
    message_id, delivery_id = accepted_delivery(api)
    api.hub.store.start_attempts([delivery_id])
    dead_id = api.hub.store.record_dead(delivery_id, reason="rejected", error="HTTP 400")
    path = f"/api/v1/dead-letters/{dead_id}/close"
    assert_problem(post(api, path, "ministry", reason="x"), 403, "role-required")
    assert_problem(post(api, path, reason="   "), 400, "reason-required")
    assert_problem(post(api, path), 422)  # no reason at all
    assert_problem(post(api, "/api/v1/dead-letters/99999/close", reason="x"), 404, "UnknownDeadLetterError")

    closed = post(api, path, reason="sent by hand, ticket HD-1042")
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["id"], body["message_id"], body["closed_by"]) == (dead_id, message_id, "operator.an")
    assert body["close_reason"] == "sent by hand, ticket HD-1042" and body["replayed_at"] is None

    assert_problem(post(api, path, ADMIN_KEY, reason="again"), 409, "DeadLetterClosedError")
    assert_problem(post(api, f"/api/v1/dead-letters/{dead_id}/replay", ADMIN_KEY), 409, "DeadLetterClosedError")
    assert api.get("/api/v1/dead-letters", "operator").json() == []
    assert [d["id"] for d in api.get("/api/v1/dead-letters?state=closed", "operator").json()] == [dead_id]
    assert api.get("/api/v1/dead-letters?state=replayed", "operator").json() == []
    assert api.hub.store.delivery(delivery_id).state is DeliveryState.DEAD
    (entry,) = audited(api, "dead_letter.close")
    assert entry[:2] == ("operator.an", str(dead_id)) and entry[2]["reason"] == "sent by hand, ticket HD-1042"


def test_closing_a_dead_letter_takes_its_copy_out_of_the_brokers_dead_queue(api: Api) -> None:
    from hub.runtime import open_broker

    _, delivery_id = accepted_delivery(api)
    destination = api.hub.store.delivery(delivery_id).destination
    broker = open_broker(api.hub.settings)  # a worker's own connection to the same queue
    queued = []
    for _ in range(50):  # the API's publisher thread publishes it shortly after the answer
        queued = broker.consume([destination], prefetch=1, timeout_s=0.2)
        if queued:
            break
    (queued,) = queued
    api.hub.store.start_attempts([delivery_id])
    dead_id = api.hub.store.record_dead(delivery_id, reason="rejected", error="HTTP 400")
    broker.dead_letter(queued, "rejected")  # as the worker does
    broker.flush()
    assert broker.stats([destination])[0].dead == 1
    assert post(api, f"/api/v1/dead-letters/{dead_id}/close", reason="handled").status_code == 200
    assert broker.stats([destination])[0].dead == 0
    broker.close()


def test_a_replayed_dead_letter_cannot_be_closed(api: Api) -> None:
    _, delivery_id = accepted_delivery(api)
    api.hub.store.start_attempts([delivery_id])
    dead_id = api.hub.store.record_dead(delivery_id, reason="rejected", error="HTTP 400")
    assert post(api, f"/api/v1/dead-letters/{dead_id}/replay").status_code == 202
    assert_problem(post(api, f"/api/v1/dead-letters/{dead_id}/close", reason="x"), 409, "AlreadyReplayedError")
    assert audited(api, "dead_letter.close") == []


def test_retry_now_for_a_message_and_for_a_destination(api: Api) -> None:
    message_id, delivery_id = accepted_delivery(api)
    assert_problem(post(api, "/api/v1/deliveries/retry-now", message_id=message_id), 409, "NotRetryingError")
    api.hub.store.start_attempts([delivery_id])
    api.hub.store.record_retry(delivery_id, error="HTTP 503", delay_s=3600)

    path = "/api/v1/deliveries/retry-now"
    assert_problem(post(api, path, "ministry", message_id=message_id), 403, "role-required")
    assert_problem(post(api, path, message_id=None), 400, "one-of")
    assert_problem(post(api, path, message_id=message_id, destination=PROVINCE), 400, "one-of")
    assert_problem(post(api, path, destination="000.00.00.X99"), 404, "UnknownDestinationError")

    answer = post(api, path, message_id=message_id)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"retried": 1, "retried_by": "operator.an",
                             "deliveries": [{"delivery_id": delivery_id, "message_id": message_id,
                                             "destination": PROVINCE}]}  # fmt: skip
    view = api.hub.store.delivery(delivery_id)
    assert view.generation == 1 and view.published_at is not None  # published at once, not left to the relay
    assert [e.actor for e in api.hub.store.trace(message_id).events if e.state == "retry_now"] == ["operator.an"]

    assert post(api, path, destination=PROVINCE).json()["retried"] == 1  # still waiting: due again
    assert api.hub.store.delivery(delivery_id).generation == 2
    assert [(s, d["count"]) for _, s, d in audited(api, "delivery.retry_now")] == [(PROVINCE, 1), (message_id, 1)]


def test_the_published_copy_names_its_generation(api: Api) -> None:
    from hub.runtime import open_broker

    message_id, delivery_id = accepted_delivery(api)
    api.hub.store.start_attempts([delivery_id])
    api.hub.store.record_retry(delivery_id, error="HTTP 503", delay_s=3600)
    broker = open_broker(api.hub.settings)
    try:
        broker.declare([PROVINCE])
        first = broker.consume([PROVINCE], prefetch=10, timeout_s=2)
        broker.ack_many(first)  # the copy of the first attempt
        assert post(api, "/api/v1/deliveries/retry-now", message_id=message_id).status_code == 200
        (copy,) = broker.consume([PROVINCE], prefetch=10, timeout_s=5)
        assert (copy.delivery_id, copy.headers.get(GENERATION_HEADER)) == (delivery_id, "1")
        broker.ack(copy)
    finally:
        broker.close()


def test_pause_and_resume_a_destination(api: Api) -> None:
    pause, resume = f"/api/v1/destinations/{PROVINCE}/pause", f"/api/v1/destinations/{PROVINCE}/resume"
    assert_problem(post(api, pause, "province", reason="x"), 403, "role-required")
    assert_problem(post(api, pause, reason=""), 400, "reason-required")
    assert_problem(post(api, "/api/v1/destinations/000.00.00.X99/pause", reason="x"), 404, "UnknownDestinationError")
    assert_problem(post(api, resume), 409, "DestinationNotPausedError")

    paused = post(api, pause, reason="portal maintenance")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["paused_by"] == "operator.an"
    assert list(api.hub.store.paused_destinations()) == [PROVINCE]
    assert_problem(post(api, pause, ADMIN_KEY, reason="again"), 409, "DestinationPausedError")

    resumed = post(api, resume, ADMIN_KEY)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert resumed.json()["reason"] == "portal maintenance" and api.hub.store.paused_destinations() == {}
    assert [(a, s) for a, s, _ in audited(api, "destination")] == [("admin", PROVINCE), ("operator.an", PROVINCE)]


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/api/v1/messages?dossier=a%00b", "/query/dossier"),
        ("/api/v1/history?destination=a%00b", "/query/destination"),
        ("/api/v1/dead-letters?destination=a%00b", "/query/destination"),
        ("/api/v1/messages/a%00b/payload", "/path"),
        ("/console/messages?sender=a%00b", "/query/sender"),
        ("/?q=a%00b", "/query/q"),
    ],
)
def test_a_nul_character_in_the_url_is_400_naming_where(api: Api, path: str, where: str) -> None:
    """PostgreSQL's text holds no NUL: refused before any query could fail on it (a 500 otherwise)."""
    refused = api.client.get(path, headers={"X-Api-Key": OPERATOR_KEY})
    problem = assert_problem(refused, 400, "nul-character")
    assert problem["errors"][0]["path"] == where


def test_a_nul_character_in_an_action_body_is_refused_naming_the_field(api: Api) -> None:
    refused = post(api, "/api/v1/deliveries/retry-now", message_id="a\u0000b")
    assert assert_problem(refused, 422)["errors"][0]["path"].endswith("message_id")
    assert assert_problem(post(api, "/api/v1/destinations/x/pause", reason="a\u0000b"), 422)
