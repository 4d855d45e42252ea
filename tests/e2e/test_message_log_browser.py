"""The message log in a real browser (headless Chromium through Selenium) against a real `hub serve`: an operator
filters the log, goes to the next page, opens a trace, reads its masked payload and downloads it; the views and
the download are in the audit log. Screenshot: ``test-artifacts/console/message-log.png`` (and ``-trace``).

Cheap to start: the log is written to the store before `hub serve` starts (no worker, no partner), one server and
one browser for the module.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub import packets
from hub.console.auth import hash_password
from hub.store import Store, Submission
from hub.store.audit import AuditFilter
from tests.e2e.test_console_browser import ARTIFACTS, console_errors, headless_chromium, wait_for
from tests.e2e.test_console_browser import browser_paths as browser_paths  # the fixture
from tests.support import HUB, HUB_BIN, MINISTRY, PROVINCE, free_port, hub_env, signed_envelope, terminate

OPERATOR, PASSWORD = "tran.thi.binh", "mat-khau-nhat-ky"
PORTAL = "000.00.00.G22"
SYNCS = 60  # from the province: two pages of 50


class LoggedHub:
    def __init__(self, root: Path, pki) -> None:
        self.root = root
        self.url = f"sqlite:///{root / 'hub.db'}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = hub_env(
            LIENTHONG_DATABASE_URL=self.url, LIENTHONG_DATA_DIR=str(root / "var"), LIENTHONG_BROKER_URL="embedded",
            LIENTHONG_HUB_CODE=HUB, LIENTHONG_ADMIN_API_KEY="admin-key-for-tests",
            LIENTHONG_OPERATORS=f"{OPERATOR}:{hash_password(PASSWORD)}", LIENTHONG_LOG_FORMAT="json",
        )  # fmt: skip
        self.syncs = [f"sync-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(SYNCS)]
        store = Store(self.url)
        store.migrate()
        payload = packets.to_element(packets.example("dossier.sync"))  # the applicant: Nguyễn Văn An, 001099012345
        submissions = [
            Submission(sender=PROVINCE, message_id=mid, message_type="dossier.sync", receiver=PORTAL,
                       dossier_code=packets.examples.DOSSIER_CODE, destinations=(PORTAL,),
                       envelope=signed_envelope(pki.province.signer, sender=PROVINCE, receiver=PORTAL,
                                                message_type="dossier.sync", payload=payload, message_id=mid))
            for mid in self.syncs
        ] + [
            Submission(sender=MINISTRY, message_id=f"status-{i}", message_type="dossier.status", receiver=PROVINCE,
                       dossier_code=packets.examples.DOSSIER_CODE, destinations=(PROVINCE,), envelope=b"<x/>")
            for i in range(3)
        ]  # fmt: skip
        store.accept_many(submissions)
        store.close()
        log = (root / "serve.log").open("wb")
        self.proc = subprocess.Popen([HUB_BIN, "serve", "--port", str(self.port)], env=self.env, cwd=root,
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def logs(self) -> str:
        return (self.root / "serve.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def logged_hub(pki) -> Iterator[LoggedHub]:
    root = Path(tempfile.mkdtemp(prefix="message-log-"))
    hub = LoggedHub(root, pki)
    try:

        def ready() -> bool:
            if hub.proc.poll() is not None:
                pytest.fail(f"hub serve exited:\n{hub.logs()}")
            try:
                return httpx.get(f"{hub.base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "hub serve to be ready")
        yield hub
    finally:
        terminate(hub.proc)
        shutil.rmtree(root, ignore_errors=True)


def test_operator_filters_pages_opens_a_trace_and_downloads_the_masked_payload(logged_hub: LoggedHub,
                                                                               browser_paths) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    hub = logged_hub
    with headless_chromium(browser_paths, "--lang=vi") as driver:
        driver.get(f"{hub.base}/login?next=%2F")
        driver.find_element(By.ID, "username").send_keys(OPERATOR)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait_for(lambda: driver.find_elements(By.ID, "nav-message-log"), 10, "the console")
        driver.find_element(By.ID, "nav-message-log").click()
        wait_for(lambda: driver.find_elements(By.ID, "log-filters"), 10, "the message log")
        assert "1–50 trên tổng số 63" in driver.find_element(By.ID, "log-count").text

        # Filter: the province's messages still queued.
        driver.find_element(By.ID, "f-sender").send_keys(PROVINCE)
        Select(driver.find_element(By.ID, "f-state")).select_by_value("queued")
        driver.find_element(By.ID, "f-submit").click()
        wait_for(lambda: "sender=" in driver.current_url, 10, "the filtered log")
        count = driver.find_element(By.ID, "log-count").text
        assert "1–50 trên tổng số 60" in count and "UTC+7" in count
        table = driver.find_element(By.ID, "log-table").text
        assert hub.syncs[-1] in table and "vào hàng đợi" in table and "status-0" not in table
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "message-log.png"))

        # The next page: the last ten, counted on from 51.
        driver.find_element(By.ID, "log-next").click()
        wait_for(lambda: "51–60 trên tổng số 60" in driver.find_element(By.ID, "log-count").text, 10, "page two")
        assert not driver.find_elements(By.ID, "log-next")
        links = driver.find_elements(By.CSS_SELECTOR, "a.trace-link")
        assert [a.text for a in links] == hub.syncs[9::-1]

        # A trace: the masked payload on the page, then the masked download.
        links[0].click()
        wait_for(lambda: driver.find_elements(By.ID, "trace-payload"), 10, "the trace")
        driver.find_element(By.CSS_SELECTOR, "#trace-payload summary").click()
        shown = driver.find_element(By.CSS_SELECTOR, "#trace-payload pre.payload").text
        assert "N***** V** A*" in shown and "Nguyễn Văn An" not in shown and "001099012345" not in shown
        driver.find_element(By.ID, "search").screenshot(str(ARTIFACTS / "message-log-trace.png"))
        href = driver.find_element(By.ID, "download-masked").get_attribute("href")
        assert not driver.find_elements(By.ID, "download-raw")  # an operator gets no raw link
        cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
        download = httpx.get(href, cookies=cookies)
        assert download.status_code == 200, download.text
        assert "attachment" in download.headers["content-disposition"]
        assert "N***** V** A*" in download.text and "Nguyễn Văn An" not in download.text
        assert console_errors(driver) == []

    store = Store(hub.url)
    try:
        views = store.audit_entries(AuditFilter(action="payload.view", actor=OPERATOR)).items
        downloads = store.audit_entries(AuditFilter(action="payload.download", actor=OPERATOR)).items
    finally:
        store.close()
    assert [e.subject for e in views] == [hub.syncs[9]]
    assert [(e.subject, e.detail["raw"]) for e in downloads] == [(hub.syncs[9], False)]
