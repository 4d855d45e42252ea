"""The operator page's status correction in a real browser (headless Chromium + Selenium, as
``test_console_browser``), against a `hub serve`, a `hub worker` and a sink standing for the province.

The ministry reports a dossier done (9) and its result returned (10); its later 4 is refused by the status machine
(422). An operator signs in, finds the dossier, chooses "correct the status" to 4, sees the confirmation (the status
now, who acts, a reason required), gives the reason and confirms: the timeline shows the correction under the
operator's name, the audit log has it, and the province receives the hub's dossier.status. Screenshots:
``test-artifacts/console/correction-*.png``.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hub import packets
from tests.e2e.test_console_browser import (
    ADMIN_KEY,
    ARTIFACTS,
    OPERATOR,
    Hub,
    browser_paths,
    console_errors,
    headless_chromium,
    press,
    serving_with_worker,
    shoot,
    sign_in,
    steady,
    wait_for,
)
from tests.support import MINISTRY, PROVINCE, signed_envelope

__all__ = ["browser_paths"]  # a fixture used here, imported from the console's browser test

DOSSIER = f"000.00.00.H12-{time.strftime('%y%m%d')}-{uuid.uuid4().int % 9000 + 1000:04d}"
REASON = "Bộ TN&MT xác nhận hồ sơ còn đang xử lý; kết quả trả nhầm (phiếu HD-2031)"


@pytest.fixture(scope="module")
def served(pki) -> Iterator[tuple[Hub, str]]:
    """One `hub serve` and one `hub worker`, the ministry and the province (a sink) registered."""
    with serving_with_worker(pki, "correction-") as served:
        yield served


def report(hub: Hub, key: str, status: int, at: dt.datetime) -> httpx.Response:
    """The ministry reports ``status`` for the dossier at ``at``."""
    update = packets.example("dossier.status").model_copy(update={"dossier_code": DOSSIER, "status": status, "at": at})
    data = signed_envelope(hub.pki.ministry.signer, sender=MINISTRY, receiver=PROVINCE, message_type="dossier.status",
                           payload=packets.to_element(update), message_id=str(uuid.uuid4()),
                           dossier_code=DOSSIER)  # fmt: skip
    return httpx.post(f"{hub.base}/api/v1/messages", content=data,
                      headers={"X-Api-Key": key, "Content-Type": "application/xml"})  # fmt: skip


def dossier(hub: Hub) -> dict:
    response = httpx.get(f"{hub.base}/api/v1/dossiers/{DOSSIER}", headers={"X-Api-Key": ADMIN_KEY})
    assert response.status_code == 200, response.text
    return response.json()


def test_an_operator_corrects_a_returned_dossier_on_the_page_with_a_confirmation_step(served, browser_paths) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    hub, key = served
    time.sleep(1.2)  # the API process reloads the registry (LIENTHONG_REGISTRY_REFRESH_S=1)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for status, minutes in ((9, 3), (10, 2)):
        answer = report(hub, key, status, now - dt.timedelta(minutes=minutes))
        assert answer.status_code == 202, answer.text
    refused = report(hub, key, 4, now - dt.timedelta(minutes=1))
    assert refused.status_code == 422 and refused.json()["errors"][0]["rule"] == "status-transition", refused.text
    assert dossier(hub)["status"] == 10

    with headless_chromium(browser_paths, "--lang=vi") as driver:
        sign_in(hub, driver)
        driver.get(f"{hub.base}/?q={DOSSIER}#search")
        search = steady(lambda: driver.find_element(By.ID, "search"))
        assert "bị từ chối" in search.text and "10" in driver.find_element(By.ID, "dossier-status").text

        # Step 1: choose 4 on the timeline; the confirmation page shows the status now and asks for a reason.
        steady(lambda: Select(driver.find_element(By.ID, "correct-to")).select_by_value("4"))
        steady(lambda: press(driver, By.ID, "correct-status"))
        confirm = wait_for(lambda: driver.find_elements(By.ID, "action-confirm"), 10, "the confirmation step")[0]
        assert DOSSIER in confirm.text and OPERATOR in confirm.text
        assert "Đã trả kết quả" in driver.find_element(By.ID, "status-before").text
        assert Select(driver.find_element(By.ID, "new-status")).first_selected_option.get_attribute("value") == "4"
        driver.find_element(By.ID, "confirm-action").click()  # without a reason: the browser's required field
        assert driver.find_elements(By.ID, "action-confirm") and dossier(hub)["status"] == 10
        driver.find_element(By.ID, "action-reason").send_keys(REASON)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shoot(driver, "action-confirm", "correction-confirm")

        # Step 2: confirmed; back on the dossier's timeline with the outcome.
        driver.find_element(By.ID, "confirm-action").click()
        flash = wait_for(lambda: driver.find_elements(By.ID, "flash"), 10, "the correction's outcome")[0]
        assert "Đã đính chính trạng thái hồ sơ" in flash.text and "10 → 4" in flash.text
        search = steady(lambda: driver.find_element(By.ID, "search"))
        assert "đính chính bởi " + OPERATOR in search.text and REASON in search.text
        assert "4" in driver.find_element(By.ID, "dossier-status").text
        timeline = steady(lambda: driver.find_element(By.ID, "dossier-timeline"))
        assert "đính chính" in timeline.text and OPERATOR in timeline.text
        steady(lambda: shoot(driver, "dossier-timeline", "correction-timeline"))
        assert console_errors(driver) == []

    found = dossier(hub)
    assert found["status"] == 4
    (corrected,) = [u for u in found["updates"] if u["outcome"] == "corrected"]
    assert corrected["status"] == 4 and corrected["detail"]["corrected_by"] == OPERATOR
    audit = httpx.get(f"{hub.base}/api/v1/audit", params={"action": "dossier"}, headers={"X-Api-Key": ADMIN_KEY})
    assert audit.status_code == 200, audit.text
    (entry,) = audit.json()["items"]
    assert (entry["actor"], entry["subject"], entry["detail"]["status_before"], entry["detail"]["status"]) == (
        OPERATOR, DOSSIER, 10, 4)  # fmt: skip
    # the province (the sink) receives the hub's dossier.status reporting the correction
    wait_for(lambda: hub.sink.state.first_seen.get(corrected["message_id"]), 30,
             f"the correction delivered to the province\n{hub.logs()}")  # fmt: skip
