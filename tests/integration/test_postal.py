"""F4, the postal service: mapping, the simulator over real HTTP (OAuth2 token, orders, cancel, price, paged
tracking), the adapter's token cache and retry classification, and the tracking poller (one postal.status per new
event to the province, never twice, cursor persisted)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from adapters.postal import PostalAdapter
from adapters.registry import build_adapter
from hub import packets
from hub.devtools.simulators.postal import DEFAULT_CLIENTS, PostalSimulator
from hub.exchange.worker import OutboundBuilder
from hub.flows.postal_tracking import PostalTracker, event_message_id
from hub.packets.postal import Direction
from hub.store import flow_records
from mappings.postal import status_from_event, to_order
from tests.support import FAILURE_MODES, hub_client, hub_settings, post_accepted, province_connector, signed_envelope

HUB, PROVINCE, POSTAL = "000.00.00.H00", "000.00.00.H12", "000.00.00.G07"
ADMIN_KEY = "admin-secret-key"
CLIENT = "lienthong"
SECRET = DEFAULT_CLIENTS[CLIENT]


def order(direction: Direction = Direction.DELIVERY, dossier: str | None = None):
    base = packets.example("postal.order")
    changes = {"direction": direction}
    if dossier:
        changes["dossier_code"] = dossier
    if direction is Direction.PICKUP:  # the citizen sends the dossier, the agency receives it
        changes.update(sender=base.receiver, receiver=base.sender)
    return base.model_copy(update=changes)


def test_order_mapping_pickup_and_delivery() -> None:
    delivery = to_order(order(), customer_code="C001")
    assert delivery["OrderNumber"] == packets.examples.DOSSIER_CODE and delivery["CustomerCode"] == "C001"
    assert delivery["ReceiverName"] == "Nguyễn Văn An" and delivery["CODAmount"] == 75_000
    pickup = to_order(order(Direction.PICKUP), customer_code="C001")
    assert pickup["ReceiverName"].startswith("Bộ phận Một cửa") and pickup["SenderName"] == "Nguyễn Văn An"
    assert pickup["Direction"] == "pickup"


def test_status_from_event() -> None:
    event = {"id": 3, "orderNumber": packets.examples.DOSSIER_CODE, "itemCode": "EL1VN", "statusCode": "DELIVERED",
             "statusMessage": "Đã phát", "time": "20251124094700"}  # fmt: skip
    status = status_from_event(event)
    assert status.order_number == "EL1VN" and status.at.hour == 2
    packets.validate_element("postal.status", packets.to_element(status))


@pytest.fixture(scope="module")
def sim():
    with PostalSimulator() as server:
        yield server


def adapter_for(sim, **kw) -> PostalAdapter:
    return PostalAdapter(sim.url, client_id=CLIENT, client_secret=SECRET, customer_code="C001", timeout_s=2, **kw)


def test_token_is_cached_and_renewed(sim) -> None:
    adapter = adapter_for(sim)
    adapter.create(order())
    adapter.price("48", "01")
    assert adapter.tokens_fetched == 1 and sim.received()["tokens"] == 1
    sim.control({"expire_tokens": True})
    adapter.tracking(0)  # 401 → a new token, the call made again
    assert adapter.tokens_fetched == 2
    with pytest.raises(TransientDeliveryError, match="refused a token"):
        PostalAdapter(sim.url, client_id=CLIENT, client_secret="wrong", customer_code="C001").tracking(0)


def test_orders_cancel_price_and_paged_tracking(sim) -> None:
    adapter = adapter_for(sim)
    _, first = adapter.create(order())
    _, again = adapter.create(order())
    assert first["ItemCode"] == again["ItemCode"]
    _, pickup = adapter.create(order(Direction.PICKUP))
    assert pickup["ItemCode"] != first["ItemCode"]
    assert adapter.price("48", "48") < adapter.price("48", "01")
    adapter.cancel(packets.examples.DOSSIER_CODE, pickup["ItemCode"])
    items, last = adapter.tracking(0, limit=2)
    assert [i["statusCode"] for i in items] == ["ORDER_CREATED", "ORDER_CREATED"] and last == 2
    items, last = adapter.tracking(last, limit=2)
    assert [i["statusCode"] for i in items] == ["CANCELLED"] and last == 3
    assert adapter.tracking(last) == ([], 3)


@pytest.mark.parametrize(("mode", "error"), FAILURE_MODES)
def test_failure_modes_are_classified(sim, mode: str, error: type) -> None:
    adapter = adapter_for(sim)
    adapter.token()
    sim.fail(mode, count=1)
    with pytest.raises(error) as caught:
        adapter.create(order())
    if mode != "4xx":
        assert not isinstance(caught.value, PermanentDeliveryError)


def test_an_incomplete_order_is_refused_permanently(sim) -> None:
    adapter = adapter_for(sim)
    with pytest.raises(PermanentDeliveryError, match="HTTP 400"):
        adapter.call("POST", "/orders", {"OrderNumber": "x"})


@pytest.fixture
def api(tmp_path: Path, pki, sim):
    specs = [
        province_connector(pki, sends=["postal.order"], receives=["postal.status"]),
        {"code": POSTAL, "name": "Postal service", "kind": "postal", "receives": ["postal.order"],
         "endpoint": {"url": sim.url, "transport": "json",
                      "credentials": {"username": CLIENT, "password": SECRET, "madonvi": "C001"}}},
    ]  # fmt: skip
    with hub_client(hub_settings(tmp_path, hub_code=HUB, admin_api_key=ADMIN_KEY), specs) as client:
        yield client


def test_order_created_and_tracking_events_emitted_once(api, pki, sim) -> None:
    hub = api.app.state.hub
    model = order()
    data = signed_envelope(pki.province.signer, sender=PROVINCE, receiver=POSTAL, message_type="postal.order",
                           payload=packets.to_element(model), dossier_code=model.dossier_code)  # fmt: skip
    assert post_accepted(api, data, api.keys[PROVINCE])["destinations"] == [POSTAL]
    adapter = build_adapter(hub.runtime.routing.destinations[POSTAL])
    builder = OutboundBuilder(hub.runtime.signer(), HUB)  # what the worker does: map once, sign once
    receipt = adapter.deliver(builder.prepare(data, POSTAL, adapter.partner_format).request(POSTAL))
    assert "ItemCode=EL" in receipt.detail
    (created,) = sim.received()["orders"].values()
    assert created["OrderNumber"] == model.dossier_code and created["CustomerCode"] == "C001"
    assert json.loads(receipt.sent).items() <= created.items() and receipt.sent_type == "application/json"

    tracker = PostalTracker(hub.runtime, {POSTAL: adapter})
    first = tracker.poll(POSTAL)
    assert first.seen == 1 and len(first.emitted) == 1 and not first.errors
    requests.post(sim.base_url + "/_advance", json={"OrderNumber": model.dossier_code, "statusCode": "PICKED_UP",
                                                   "statusMessage": "Đã nhận hàng"}, timeout=5)  # fmt: skip
    requests.post(sim.base_url + "/_advance", json={"OrderNumber": model.dossier_code, "statusCode": "DELIVERED",
                                                   "statusMessage": "Đã phát thành công"}, timeout=5)  # fmt: skip
    second = tracker.poll(POSTAL)
    assert second.seen == 2 and len(second.emitted) == 2
    assert tracker.poll(POSTAL).seen == 0  # the cursor moved: nothing new
    assert flow_records.postal_cursor(hub.store.engine, POSTAL) == 3
    for event_id in (1, 2, 3):
        trace = api.get(f"/api/v1/messages/{event_message_id(POSTAL, event_id)}", headers={"X-Api-Key": ADMIN_KEY})
        assert trace.status_code == 200 and trace.json()["message_type"] == "postal.status"
        assert [d["destination"] for d in trace.json()["deliveries"]] == [PROVINCE]
    # a lost cursor (e.g. a restore) replays the feed, but no event is emitted twice
    with hub.store.engine.begin() as conn:
        conn.execute(flow_records.postal_cursors.delete())
    replay = tracker.poll(POSTAL)
    assert replay.seen == 3 and replay.emitted == [] and replay.skipped == 3
    timeline = api.get(f"/api/v1/dossiers/{model.dossier_code}", headers={"X-Api-Key": ADMIN_KEY}).json()
    assert sum(1 for m in timeline["messages"] if m["message_type"] == "postal.status") == 3
    assert uuid.UUID(first.emitted[0])
