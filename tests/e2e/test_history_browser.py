"""The delivery history page in a real browser (headless Chromium + Selenium, as ``test_console_browser``), against
a `hub serve`, a `hub worker` and a sink partner that fails on command.

Deliveries that fail and are retried, one the partner refuses (dead) and some delivered: the chart of the
partner fills in by the page's live refresh, its legend equals ``GET /api/v1/history``, the window links switch
to quarter-hour bars, and the page logs no console error. Screenshot: ``test-artifacts/console/history.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_console_browser import (
    ADMIN_KEY,
    ARTIFACTS,
    CHROMEDRIVER,
    OPERATOR,
    PASSWORD,
    Hub,
    _chromium,
    console_errors,
    headless_chromium,
    serving_with_worker,
    steady,
    wait_for,
)
from tests.support import PROVINCE, require


@pytest.fixture(scope="module")
def chromium_paths() -> tuple[str, str]:
    chromium = _chromium()
    if chromium and Path(CHROMEDRIVER).exists():
        return chromium, CHROMEDRIVER
    require("Chromium or its driver is missing (apt-get install chromium chromium-driver; `make system-deps`)")


@pytest.fixture(scope="module")
def served(pki) -> Iterator[tuple[Hub, str]]:
    """One `hub serve` and one `hub worker` for the module, the connectors registered."""
    with serving_with_worker(pki, "history-") as served:
        yield served


def totals(hub: Hub, window: str = "1h") -> tuple[int, int, int]:
    response = httpx.get(f"{hub.base}/api/v1/history", params={"window": window, "destination": PROVINCE},
                         headers={"X-Api-Key": ADMIN_KEY})  # fmt: skip
    assert response.status_code == 200, response.text
    (found,) = response.json()["destinations"]
    return found["delivered"], found["failed"], found["dead"]


def legend(driver) -> tuple[int, ...]:
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, f"[id='history-{PROVINCE}'] .legend strong")
    return tuple(int(item.text) for item in items)


def test_the_history_chart_shows_deliveries_failures_and_dead_letters(served, chromium_paths) -> None:
    from selenium.webdriver.common.by import By

    hub, key = served
    sink = hub.sink.state
    time.sleep(1.2)  # the API process reloads the registry (LIENTHONG_REGISTRY_REFRESH_S=1)
    sink.fail_status, sink.fail_count = 503, 2  # two failed attempts (retried), then delivered
    hub.push_status(key)
    wait_for(lambda: totals(hub) == (1, 2, 0), 30, f"one delivery after two retries\n{hub.logs()}")

    with headless_chromium(chromium_paths, "--lang=vi") as driver:
        driver.get(f"{hub.base}/console/history")
        assert "/login" in driver.current_url
        driver.find_element(By.ID, "username").send_keys(OPERATOR)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait_for(lambda: driver.find_elements(By.ID, "history-charts"), 10, "the history page")
        assert steady(lambda: legend(driver)) == (1, 2, 0)

        # More traffic while the page is open: a refusal (dead letter) and three deliveries.
        sink.fail_status, sink.fail_count = 400, 1
        hub.push_status(key)
        wait_for(lambda: totals(hub)[2] == 1, 30, f"the dead letter\n{hub.logs()}")
        for _ in range(3):
            hub.push_status(key)
        wait_for(lambda: totals(hub) == (4, 2, 1), 30, f"three more deliveries\n{hub.logs()}")
        wait_for(lambda: steady(lambda: legend(driver)) == (4, 2, 1), 10, "the live refresh to redraw the chart")

        chart = driver.find_element(By.CSS_SELECTOR, f"#chart-{PROVINCE.replace('.', '-')} svg")
        assert chart.get_attribute("role") == "img"
        desc = chart.find_element(By.TAG_NAME, "desc").get_attribute("textContent")
        assert desc.startswith("Đã gửi 4, lỗi chờ gửi lại 2, thư chết 1")
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.delivered")) >= 1
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.dead")) == 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "history.png"))

        # The day's window: quarter-hour bars, the same totals; in English.
        driver.find_element(By.ID, "window-24h").click()
        wait_for(lambda: "window=24h" in driver.current_url, 10, "the 24 h window")
        assert driver.find_element(By.ID, "window-24h").get_attribute("aria-current") == "page"
        assert steady(lambda: legend(driver)) == totals(hub, "24h") == (4, 2, 1)
        driver.get(f"{hub.base}/console/history?window=24h&lang=en")
        stamp = driver.find_element(By.ID, "history-stamp").text
        assert "Last 24 hours" in stamp and "one bar per 15 minutes" in stamp
        assert driver.find_element(By.ID, "nav-history").text == "Delivery history"
        assert console_errors(driver) == []
