"""Every number of the operator page equals the API's answer and the ``/metrics`` value after the demo's flows.

One run of ``hub demo``'s flows F1–F6 (``hub.devtools.demo``: simulators, the API and a worker in threads, the
embedded broker) for the module; an operator signs in over HTTP and reads ``/console/panels`` twice: right after
the flows (the portal recovered after F6's outage and refusal), and once a portal refusal is left as a dead letter
(what ``hub demo`` leaves for a person to find). Each panel is compared with its endpoint: queues with
``GET /api/v1/queues``, dead letters with ``GET /api/v1/dead-letters``, rejected payment confirmations with
``GET /api/v1/partner-refusals``, overdue dossiers with ``GET /api/v1/deadlines``, the population DB's health
with ``GET /api/v1/lookups``; and each with its gauge or counter on ``/metrics``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from lxml import html as lxml_html

from hub.console.i18n import Translator
from hub.console.views import local
from hub.devtools import demo as demos
from tests.e2e.test_console_browser import browser_paths, console_errors, headless_chromium, shoot, steady
from tests.support import free_port
from tests.support import wait_for as _wait_for

FREE = {kind: 0 for kind in demos.DEFAULT_PORTS}
__all__ = ["browser_paths"]  # test_console_browser's fixture: Chromium and its driver, or skip (fail in CI)
TILES = "//section[@id='summary']//a[contains(@class, 'tile')]/strong"
RECOVERED = ".//*[contains(concat(' ', @class, ' '), ' recovered ')]"
ERROR = ".//*[contains(concat(' ', @class, ' '), ' err ')]"
t = Translator("en")
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def wait_for(condition, timeout_s: float, what: str):
    return _wait_for(condition, timeout_s, what, every_s=0.2)


@dataclass
class Reading:
    """What the page, the API and /metrics said at one moment (nothing moving in between)."""

    panels: lxml_html.HtmlElement
    queues: list[dict]
    dead_letters: list[dict]
    refusals: list[dict]
    deadlines: dict
    lookups: list[dict]
    metrics: dict[tuple[str, frozenset], float]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset, float]:
        return {labels: value for (n, labels), value in self.metrics.items() if n == name}


def _metrics(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            found[(match["name"], labels)] = float(match["value"])
    return found


class Operator:
    """An operator signed in to the demo's page (the operator account: its key is the password)."""

    def __init__(self, hub: demos.DemoHub) -> None:
        self.hub = hub
        self.http = httpx.Client(base_url=hub.base_url, timeout=15)
        form = self.http.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
        account = {"username": hub.settings.operator_name, "password": hub.operator_key}
        signed_in = self.http.post("/login", data={"csrf_token": token, "next": "/", **account})
        assert signed_in.status_code in (200, 303) and self.http.cookies, signed_in.text[:300]

    def api(self, path: str, **params: object) -> object:
        answer = self.hub.api("GET", path, key=self.hub.operator_key, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def read(self) -> Reading:
        panels = self.http.get("/console/panels?lang=en")
        assert panels.status_code == 200, panels.text[:300]
        metrics = self.http.get("/metrics", headers={"Authorization": f"Bearer {self.hub.admin_key}"})
        assert metrics.status_code == 200
        return Reading(
            panels=lxml_html.fromstring(f"<div>{panels.text}</div>"),
            queues=self.api("/api/v1/queues"),
            dead_letters=self.api("/api/v1/dead-letters"),
            refusals=self.api("/api/v1/partner-refusals"),
            deadlines=self.api("/api/v1/deadlines"),
            lookups=self.api("/api/v1/lookups"),
            metrics=_metrics(metrics.text),
        )

    def settled(self) -> None:
        """Wait until nothing is on its way (every delivery delivered or dead)."""
        wait_for(lambda: all(q["pending"] == 0 for q in self.api("/api/v1/queues")), 20, "the queues to drain")


@dataclass
class Demo:
    hub: demos.DemoHub
    operator: Operator
    readings: dict[str, Reading]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("numbers") / "demo"
    options = demos.DemoOptions(data_dir=data_dir, port=free_port(), simulator_ports=FREE)
    with demos.DemoHub(options) as hub:
        results = demos.run_flows(hub)
        assert all(r.ok for r in results), [(r.name, r.verdict, r.steps[-3:]) for r in results]
        operator = Operator(hub)
        operator.settled()
        after_flows = operator.read()
        dead_id = demos.leave_dead_letter_for_the_operator(hub)
        operator.settled()

        def on_metrics() -> bool:  # /metrics reads the store every few seconds (hub.metrics.StoreCollector)
            return operator.read().metric("lienthong_dead_letters", connector=hub.codes.portal) == 1

        wait_for(on_metrics, 15, f"dead letter #{dead_id} on /metrics")
        yield Demo(hub, operator, {"after_flows": after_flows, "dead_letter": operator.read()})
        operator.http.close()


@pytest.fixture
def readings(demo: Demo) -> dict:
    return {**demo.readings, "codes": demo.hub.codes}


def _int(cell: lxml_html.HtmlElement) -> int:
    return int(cell.text_content().strip())


def queue_panel(reading: Reading) -> dict[str, dict[str, int]]:
    rows = {}
    for tr in reading.panels.xpath("//section[@id='queues']//tbody/tr"):
        cells = tr.xpath("./td")
        rows[tr.get("data-destination")] = {
            "queued": _int(cells[1]), "delivering": _int(cells[2]), "retrying": _int(cells[3]), "dead": _int(cells[4]),
            "delivered": _int(cells[7]),
        }  # fmt: skip
    return rows


@pytest.mark.parametrize("moment", ["after_flows", "dead_letter"])
def test_the_queues_panel_and_the_summary_tiles_equal_the_queues_api_and_the_gauges(readings, moment) -> None:
    reading = readings[moment]
    api = {q["destination"]: {k: q[k] for k in ("queued", "delivering", "retrying", "dead", "delivered")}
           for q in reading.queues}  # fmt: skip
    assert queue_panel(reading) == api and len(api) >= 4
    assert sum(q["delivered"] for q in api.values()) >= 20  # the flows delivered: the comparison is not of zeros
    tiles = [int(t.text_content()) for t in reading.panels.xpath(TILES)[:2]]
    assert tiles == [sum(q["dead"] for q in api.values()), sum(q["pending"] for q in reading.queues)]
    for destination, q in api.items():
        assert reading.metric("lienthong_dead_letters", connector=destination) == q["dead"]
        assert reading.metric("lienthong_queue_messages", connector=destination, state="ready") == q["queued"]
        assert reading.metric("lienthong_queue_messages", connector=destination, state="retrying") == q["retrying"]
        assert reading.metric("lienthong_delivered_total", connector=destination) == q["delivered"]


@pytest.mark.parametrize("moment", ["after_flows", "dead_letter"])
def test_the_dead_letters_panel_lists_what_the_api_lists(readings, moment) -> None:
    reading = readings[moment]
    shown = [
        int(tr.get("id").removeprefix("dl-")) for tr in reading.panels.xpath("//section[@id='dead-letters']//tbody/tr")
    ]
    assert sorted(shown) == sorted(d["id"] for d in reading.dead_letters)
    count = reading.panels.xpath("//*[@id='dead-total']")
    assert (int(count[0].text_content()) if count else 0) == len(reading.dead_letters)
    assert len(shown) == (0 if moment == "after_flows" else 1)  # F6's was replayed; the one left waits
    portal = readings["codes"].portal
    waiting = [d for d in reading.dead_letters if d["destination"] == portal and d["message_type"] == "dossier.sync"]
    lag = reading.panels.xpath("//*[@id='sync-lag']//*[@data-waiting]")
    assert (int(lag[0].get("data-waiting")) if lag else 0) == len(waiting)
    assert reading.metric("lienthong_portal_sync_waiting") == len(waiting)


def test_rejected_payment_confirmations_are_the_partner_refusals(readings) -> None:
    """The issue's defect: the panel said none (with a placeholder) while the API listed the refusals."""
    reading = readings["after_flows"]
    api = [r for r in reading.refusals if r["kind"].startswith("payment.")]
    assert api, "F3 leaves refused confirmations"
    shown = [int(li.get("data-refusal")) for li in reading.panels.xpath("//*[@id='payments-list']/li")]
    assert shown == [r["id"] for r in api]  # newest first, as the API
    assert int(reading.panels.xpath("//*[@id='payments-total']")[0].text_content()) == len(api)
    counted = reading.series("lienthong_payment_confirmations_rejected_total")
    assert counted == {frozenset({("connector", readings["codes"].payment)}): len(api)}
    text = reading.panels.xpath("//*[@id='deadlines']")[0].text_content()
    assert "not installed" not in text and "Placeholder" not in text
    rules = [el.get("data-rule") for el in reading.panels.xpath("//*[@id='payments-list']//*[@data-rule]")]
    assert rules == [r["rule"] for r in api]
    assert all(t(f"rule_{r['rule']}") in text for r in api)  # each said in words, not only its id


def test_the_overdue_dossiers_are_the_deadlines_api(readings) -> None:
    reading = readings["after_flows"]
    api = [d["dossier_code"] for d in reading.deadlines["overdue"]]
    assert api, "F1 leaves a dossier past its intake deadline"
    assert [tr.get("data-dossier") for tr in reading.panels.xpath("//*[@id='deadlines']//tr[@data-dossier]")] == api
    assert int(reading.panels.xpath("//*[@id='overdue-total']")[0].text_content()) == len(api)
    tile = reading.panels.xpath(TILES)[3]
    assert int(tile.text_content()) == len(api) == reading.metric("lienthong_intake_overdue")
    assert reading.metric("lienthong_intake_overdue_query_available") == 1


def _partner(reading: Reading, code: str) -> lxml_html.HtmlElement:
    (row,) = reading.panels.xpath(f"//*[@id='partners']//tr[@data-partner='{code}']")
    return row


def test_the_population_db_counts_its_lookups_and_the_portal_says_it_recovered(readings) -> None:
    reading, codes = readings["after_flows"], readings["codes"]
    population = _partner(reading, codes.population_db)
    answered = [
        datetime.fromisoformat(r["at"])
        for r in reading.lookups
        if r["source"] == codes.population_db and r["result"] in ("found", "not_found", "mismatch")
    ]
    assert answered and population.get("data-state") == "healthy"  # not "no traffic / never"
    assert population.xpath("./td")[2].text_content().strip() == local(max(answered))
    assert reading.metric("lienthong_partner_state", connector=codes.population_db, state="healthy") == 1
    portal = _partner(reading, codes.portal)
    assert portal.get("data-state") == "healthy"  # F6's outage and refusal are over: no "Degraded 21 %"
    assert portal.xpath(RECOVERED)[0].text_content().startswith("Recovered at ")
    assert not portal.xpath(ERROR)  # the old error no longer shown
    assert reading.metric("lienthong_partner_state", connector=codes.portal, state="healthy") == 1
    # a refusal after that: the portal's latest attempt failed, it is degraded again, with the partner's error
    again = _partner(readings["dead_letter"], codes.portal)
    assert again.get("data-state") == "degraded" and not again.xpath(RECOVERED)
    assert "error_code" in again.xpath(ERROR)[0].get("title")


def test_every_partner_state_on_the_page_is_the_gauges(readings) -> None:
    for moment in ("after_flows", "dead_letter"):
        reading = readings[moment]
        page = {
            tr.get("data-partner"): tr.get("data-state") for tr in reading.panels.xpath("//*[@id='partners']//tbody/tr")
        }
        gauges = {dict(labels)["connector"]: dict(labels)["state"]
                  for labels, value in reading.series("lienthong_partner_state").items() if value == 1}  # fmt: skip
        assert page == gauges and len(page) >= 6


def test_no_panel_carries_a_placeholder(readings) -> None:
    for reading in (readings["after_flows"], readings["dead_letter"]):
        text = reading.panels.text_content()
        for phrase in ("not installed", "Placeholder", "placeholder", "fills in once"):
            assert phrase not in text


# ---------------------------------------------------------------------------------------------- in the browser


def test_the_corrected_panels_and_the_trust_view_in_the_browser(demo: Demo, browser_paths) -> None:
    """The same demo in headless Chromium (``test_console_browser``'s browser): the portal recovered after the
    operator replays the dead letter left for them, the population DB healthy, the refused payment confirmations
    listed; then the trust view with the hub's certificate, the partners' and the demo CA. Screenshots of each."""
    from selenium.webdriver.common.by import By

    hub, codes = demo.hub, demo.hub.codes
    (left,) = demo.operator.api("/api/v1/dead-letters")
    assert hub.api("POST", f"/api/v1/dead-letters/{left['id']}/replay", key=hub.operator_key).status_code == 202
    demo.operator.settled()
    with headless_chromium(browser_paths, "--lang=vi") as driver:
        driver.get(f"{hub.base_url}/login")
        driver.find_element(By.ID, "username").send_keys(hub.settings.operator_name)
        driver.find_element(By.ID, "password").send_keys(hub.operator_key)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait_for(lambda: driver.find_elements(By.ID, "partners"), 10, "the console")

        def partner(code: str):
            return driver.find_element(By.CSS_SELECTOR, f'#partners tr[data-partner="{code}"]')

        def recovered() -> bool:
            row = partner(codes.portal)
            return row.get_attribute("data-state") == "healthy" and "Đã hoạt động lại lúc" in row.text

        wait_for(lambda: steady(recovered), 10, "the portal shown recovered after the replay")
        assert steady(lambda: partner(codes.population_db).get_attribute("data-state")) == "healthy"
        payments = steady(lambda: driver.find_element(By.ID, "payments-list").text)
        vi = Translator("vi")
        refused = [r for r in demo.readings["after_flows"].refusals if r["kind"].startswith("payment.")]
        assert refused and all(vi(f"rule_{r['rule']}") in payments for r in refused)  # not F5's VBDLIS refusal
        steady(lambda: shoot(driver, "partners", "partners-recovered"))
        steady(lambda: shoot(driver, "deadlines", "deadlines-payments"))

        steady(lambda: driver.find_element(By.ID, "nav-trust").click())
        wait_for(lambda: driver.find_elements(By.ID, "trust"), 10, "the trust view")
        own = driver.find_element(By.ID, "trust-hub").text
        assert codes.hub in own and "ngày" in own and "Còn hạn" in own
        partners = driver.find_element(By.ID, "trust-connectors")
        owners = {row.get_attribute("data-owner") for row in partners.find_elements(By.CSS_SELECTOR, "tr[data-owner]")}
        assert {codes.province, codes.ministry, codes.payment} <= owners
        assert "Lienthong Demo CA" in driver.find_element(By.ID, "trust-anchors").text
        shoot(driver, "trust", "trust")
        driver.get(f"{hub.base_url}/console/trust?lang=en")
        assert "days left" in driver.find_element(By.ID, "trust").text.lower()
        driver.get(f"{hub.base_url}/?lang=vi")  # the language cookie back to the default for later readers
        assert console_errors(driver) == []


def test_the_trust_view_equals_the_certificate_expiry_metrics(demo: Demo) -> None:
    """The hub's certificate, each connector's soonest certificate and each anchor: the page's expiry is the one
    ``/metrics`` gives the alerts."""
    page = lxml_html.fromstring(demo.operator.http.get("/console/trust?lang=en").text)
    metrics = demo.operator.read().metrics

    def expiries(section: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for tr in page.xpath(f"//*[@id='{section}']//tr[@data-owner]"):
            found.setdefault(tr.get("data-owner"), []).append(tr.xpath("./td")[3].text_content().strip())
        return found

    def at(value: float) -> str:
        return local(datetime.fromtimestamp(value, UTC))

    codes = demo.hub.codes
    assert expiries("trust-hub") == {codes.hub: [at(metrics[("lienthong_hub_certificate_expiry_timestamp_seconds",
                                                            frozenset())])]}  # fmt: skip
    partners = {dict(labels)["connector"]: at(value) for (name, labels), value in metrics.items()
                if name == "lienthong_certificate_expiry_timestamp_seconds"}  # fmt: skip
    soonest = {code: times[0] for code, times in expiries("trust-connectors").items()}  # rows: soonest first
    assert soonest == partners and {codes.province, codes.ministry, codes.payment} <= set(partners)
    anchors = {dict(labels)["ca"]: [at(value)] for (name, labels), value in metrics.items()
               if name == "lienthong_trust_anchor_expiry_timestamp_seconds"}  # fmt: skip
    assert expiries("trust-anchors") == anchors and anchors
