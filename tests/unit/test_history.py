"""The delivery history on the page and in the API: the SVG chart as a pure function (bars scaled to the busiest
bucket, stacked, local-time labels, legend, title/desc, words for an empty window), ``GET /api/v1/history`` and
``/console/history`` in process."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from hub.api import create_app
from hub.config import Settings
from hub.console import auth
from hub.console.charts import HEIGHT, LEFT, PLOT_H, PLOT_W, TOP, bars, history_chart, nice_ceiling, ticks
from hub.console.i18n import Translator
from hub.store.traffic import Bucket, DestinationHistory

UTC = dt.UTC
START = dt.datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 13:00 in Vietnam
SVG = "{http://www.w3.org/2000/svg}"


def hour(**busy: tuple[int, int, int]) -> DestinationHistory:
    """An hour of minute buckets; ``m<minute>=(delivered, failed, dead)`` for the busy ones."""
    buckets = []
    for i in range(60):
        counts = busy.get(f"m{i}", (0, 0, 0))
        buckets.append(Bucket(START + dt.timedelta(minutes=i), *counts))
    return DestinationHistory("000.00.00.G22", tuple(buckets))


def parse(markup: str) -> etree._Element:
    # the figure is HTML around an SVG: give the SVG its namespace for the parser
    return etree.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (180, 200), (500, 500)])
def test_the_y_axis_ends_at_a_readable_ceiling(value: int, top: int) -> None:
    assert nice_ceiling(value) == top


def test_bars_are_stacked_and_scaled_to_the_busiest_bucket() -> None:
    drawn, top = bars(hour(m0=(10, 0, 0), m30=(4, 3, 1), m59=(999, 1, 0)))
    assert top == 1000
    base = TOP + PLOT_H
    first = [b for b in drawn if b.x < LEFT + PLOT_W / 60]
    assert [(b.counter, round(b.height, 2)) for b in first] == [("delivered", round(10 / 1000 * PLOT_H, 2))]
    assert first[0].y + first[0].height == pytest.approx(base)  # standing on the axis
    last = [b for b in drawn if b.x > LEFT + PLOT_W * 59 / 60]
    delivered, failed = last
    assert delivered.height == pytest.approx(999 / 1000 * PLOT_H)
    assert failed.height == 1.0  # one failure beside a thousand deliveries still shows
    assert failed.y + failed.height == pytest.approx(delivered.y)  # stacked on top
    middle = sorted((b for b in drawn if LEFT + PLOT_W * 30 / 60 <= b.x < LEFT + PLOT_W * 31 / 60), key=lambda b: -b.y)
    assert [b.counter for b in middle] == ["delivered", "failed", "dead"]  # bottom to top
    assert all(LEFT <= b.x and b.x + b.width <= LEFT + PLOT_W for b in drawn)
    assert len({round(b.width, 6) for b in drawn}) == 1


def test_the_chart_has_a_title_a_description_local_times_and_a_legend() -> None:
    markup = history_chart(hour(m10=(5, 1, 0), m59=(12, 0, 2)), 60, Translator("en"), title="Portal: last hour")
    figure = parse(markup)
    svg = figure.find(f"{SVG}svg")
    assert svg.get("role") == "img"
    title_id, desc_id = svg.get("aria-labelledby").split()
    assert svg.find(f"{SVG}title").text == "Portal: last hour" and svg.find(f"{SVG}title").get("id") == title_id
    desc = svg.find(f"{SVG}desc")
    assert desc.get("id") == desc_id
    assert desc.text == (
        "Delivered 17, failed with a retry planned 1, dead 2, from 13:00 to 14:00 (Vietnam time); "
        "the highest bar is 14 at 13:59."
    )
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "x"]
    assert labels == ["13:00", "13:10", "13:20", "13:30", "13:40", "13:50"]  # UTC+7
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y"] == ["0", "10", "20"]
    tips = [g.find(f"{SVG}title").text for g in svg.iter(f"{SVG}g") if g.find(f"{SVG}rect") is not None]
    assert tips == ["13:10 · Delivered 5 · Failed, retry planned 1", "13:59 · Delivered 12 · Dead 2"]
    assert len(list(svg.iter(f"{SVG}rect"))) == 4  # only the busy buckets are drawn
    legend = ["".join(li.itertext()).strip() for li in figure.iter("li")]
    assert legend == ["Delivered 17", "Failed, retry planned 1", "Dead 2"]
    assert 'style="' not in markup  # the page's CSP allows no inline style: classes only
    assert f'viewBox="0 0 {PLOT_W + LEFT + 10} {HEIGHT}"' in markup


def test_the_week_is_labelled_by_day_and_hour_and_translated() -> None:
    buckets = tuple(Bucket(START + dt.timedelta(hours=i), delivered=i % 3) for i in range(168))
    markup = history_chart(DestinationHistory("x", buckets), 3600, Translator("vi"), title="Tuần")
    svg = parse(markup).find(f"{SVG}svg")
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "x"]
    assert labels == ["03/12", "04/12", "05/12", "06/12", "07/12", "08/12", "09/12"]  # local midnights
    assert svg.find(f"{SVG}desc").text == (
        "Đã gửi 168, lỗi chờ gửi lại 0, thư chết 0, từ 02/12 13h đến 09/12 13h (giờ Việt Nam); "
        "cột cao nhất 2 lúc 02/12 15h."
    )


def test_the_day_is_labelled_every_four_hours_and_no_label_is_cut_at_the_right_edge() -> None:
    starts = [START + dt.timedelta(minutes=15 * i) for i in range(96)]  # 13:00 to 12:45 the next day, local
    day = ticks(starts, 900)
    assert [text for _, text in day] == ["16:00", "20:00", "00:00", "04:00", "08:00"]  # 12:00: too close to the edge
    assert [i for i, _ in day] == [12, 28, 44, 60, 76]
    starts = [START + dt.timedelta(minutes=i + 1) for i in range(60)]  # 13:01 to 14:00
    hours = ticks(starts, 60)
    assert [text for _, text in hours] == ["13:10", "13:20", "13:30", "13:40", "13:50"]  # 14:00 is the last bar
    assert [i for i, _ in hours] == [9, 19, 29, 39, 49]


def test_an_empty_window_says_so_instead_of_drawing_an_empty_box() -> None:
    for lang, text in (("en", "No traffic in this window."), ("vi", "Không có lưu lượng trong khoảng thời gian này.")):
        markup = str(history_chart(hour(), 60, Translator(lang), title="t"))
        assert "<svg" not in markup
        assert markup == f'<p class="empty no-traffic">{text}</p>'


def test_names_and_titles_are_escaped() -> None:
    history = DestinationHistory('a"><script>', hour(m1=(1, 0, 0)).buckets)
    markup = str(history_chart(history, 60, Translator("en"), title="<b>x</b>"))
    assert "<script>" not in markup and "<b>" not in markup and "&lt;b&gt;" in markup
    assert 'id="chart-a---script-"' in markup


# ------------------------------------------------------------------------------------------------ the API and the page

PASSWORD = "mat-khau-dai-du"
PORTAL, PROVINCE = "000.00.00.G22", "000.00.00.H12"


@pytest.fixture
def client(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var", admin_api_key="admin-key",
        operator_api_key="operator-key", operators=f"lan:{auth.hash_password(PASSWORD)}", log_format="console",
    )  # fmt: skip
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def deliver(client: TestClient, destination: str, delivered: int, failed: int = 0, dead: int = 0) -> None:
    """Deliveries to ``destination`` recorded as the worker records them."""
    store = client.app.state.hub.store
    ids = []
    for _ in range(delivered + failed + dead):
        accepted = store.accept(
            sender=PROVINCE, message_id=str(uuid.uuid4()), correlation_id=None, message_type="dossier.sync",
            receiver=destination, dossier_code=None, envelope=b"<env/>", destinations=[destination],
        )  # fmt: skip
        ids.extend(accepted.delivery_ids)
    store.start_attempts(ids)
    store.record_delivered_many([(d, b"<out/>", "") for d in ids[:delivered]])
    for d in ids[delivered : delivered + failed]:
        store.record_retry(d, error="HTTP 503", delay_s=60)
    for d in ids[delivered + failed :]:
        store.record_dead(d, reason="rejected", error="HTTP 400")


def test_the_api_answers_every_bucket_of_the_window(client) -> None:
    deliver(client, PORTAL, 3, failed=2, dead=1)
    deliver(client, PROVINCE, 1)
    answer = client.get("/api/v1/history", headers={"X-Api-Key": "operator-key"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["window"] == "1h" and body["bucket_s"] == 60
    assert [(d["destination"], d["delivered"], d["failed"], d["dead"]) for d in body["destinations"]] == [
        (PORTAL, 3, 2, 1),
        (PROVINCE, 1, 0, 0),
    ]
    portal = body["destinations"][0]["buckets"]
    assert len(portal) == 60 and sum(b["delivered"] for b in portal) == 3
    assert dt.datetime.fromisoformat(portal[0]["start"]) == dt.datetime.fromisoformat(body["start"])

    week = client.get("/api/v1/history?window=7d&destination=" + PROVINCE, headers={"X-Api-Key": "admin-key"}).json()
    assert week["bucket_s"] == 3600 and [d["destination"] for d in week["destinations"]] == [PROVINCE]
    assert len(week["destinations"][0]["buckets"]) == 168
    quiet = client.get("/api/v1/history?window=24h&destination=nobody", headers={"X-Api-Key": "admin-key"}).json()
    assert [(d["destination"], d["delivered"], len(d["buckets"])) for d in quiet["destinations"]] == [("nobody", 0, 96)]

    assert client.get("/api/v1/history?window=2h", headers={"X-Api-Key": "admin-key"}).status_code == 422
    assert client.get("/api/v1/history").status_code == 401
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/history"]["get"]
    assert operation["operationId"] == "get_delivery_history"
    assert {"200", "401", "403", "422"} <= set(operation["responses"])


def _sign_in(client: TestClient) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
    client.post("/login", data={"csrf_token": token, "username": "lan", "password": PASSWORD, "next": "/"})


def test_the_history_page_draws_a_chart_per_destination_and_switches_windows(client) -> None:
    assert client.get("/console/history", follow_redirects=False).status_code == 303
    assert client.get("/console/history/charts").status_code == 401
    _sign_in(client)
    deliver(client, PORTAL, 2, dead=1)
    page = client.get("/console/history?lang=en")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'id="nav-history"' in html and 'id="chart-000-00-00-G22"' in html
    assert "Delivered <strong>2</strong>" in html and "Dead <strong>1</strong>" in html
    assert 'aria-current="page" id="window-1h"' in html
    week = client.get("/console/history?window=7d").text
    assert "one bar per hour" in week and 'aria-current="page" id="window-7d"' in week
    assert "Lịch sử chuyển phát" in client.get("/console/history?lang=vi&window=nonsense").text  # back to 1h
    other = client.get("/console/history/charts?destination=000.00.00.X99&lang=en").text
    assert "No traffic in this window." in other and "<svg" not in other
