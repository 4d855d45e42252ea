"""The operator page in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
Selenium, against a real `hub serve` process, a `hub worker` and a sink partner told to answer 400.

An operator signs in, sees the dead letter the 400 produced, heals the partner, replays it (with the confirmation
step) and finds the message delivered through the search. The page must log no console error. A screenshot of each
panel goes to ``test-artifacts/console/``. Without Chromium the test skips, unless LIENTHONG_REQUIRE_SERVICES=1
(CI), where it fails: ``make system-deps`` installs it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hub import packets
from hub.console.auth import hash_password
from hub.devtools.sink import SinkServer
from tests.support import (
    HUB,
    HUB_BIN,
    MINISTRY,
    PROVINCE,
    free_port,
    hub_env,
    require,
    running_sink,
    signed_envelope,
    terminate,
)
from tests.support import wait_for as _wait_for

ADMIN_KEY = "admin-key-for-tests"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMEDRIVER = "/usr/bin/chromedriver"
OPERATOR, PASSWORD = "nguyen.van.a", "mat-khau-van-hanh"
DOSSIER = f"000.00.00.H12-{time.strftime('%y%m%d')}-{uuid.uuid4().int % 10000:04d}"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    chromium = _chromium()
    if chromium and Path(CHROMEDRIVER).exists():
        return chromium, CHROMEDRIVER
    require("Chromium or its driver is missing (apt-get install chromium chromium-driver; `make system-deps`)")


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """``tests.support.wait_for``, polling the page and the hub more gently (every 0.2 s)."""
    return _wait_for(condition, timeout_s, what, every_s=0.2)


class Hub:
    def __init__(self, root: Path, sink: SinkServer, pki) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sink = sink
        self.pki = pki
        self.env = hub_env(
            LIENTHONG_DATABASE_URL=f"sqlite:///{root / 'hub.db'}",
            LIENTHONG_DATA_DIR=str(root / "var"),
            LIENTHONG_BROKER_URL="embedded",
            LIENTHONG_HUB_CODE=HUB,
            LIENTHONG_ADMIN_API_KEY=ADMIN_KEY,
            LIENTHONG_OPERATORS=f"{OPERATOR}:{hash_password(PASSWORD)}",
            LIENTHONG_LOG_FORMAT="json",
            LIENTHONG_LOG_LEVEL="INFO",
            LIENTHONG_REGISTRY_REFRESH_S="1",
            LIENTHONG_CONSOLE_REFRESH_S="2",
            PYTHONUNBUFFERED="1",
        )
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = self.root / f"{args[0]}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([HUB_BIN, *args], env=self.env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def serve(self) -> None:
        """Start ``hub serve`` and wait until it answers ``/readyz`` (fail with its log if it exits first)."""
        serve = self.start("serve", "--port", str(self.port))

        def ready() -> bool:
            if serve.poll() is not None:
                pytest.fail(f"hub serve exited:\n{self.logs()}")
            try:
                return httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "hub serve to be ready")

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.procs if log.exists())

    def stop(self) -> None:
        for proc, _ in self.procs:
            proc.terminate()
        for proc, _ in self.procs:
            terminate(proc)

    def register(self) -> str:
        if getattr(self, "_ministry_key", None):  # registered by an earlier test of the module
            return self._ministry_key
        keys = {}
        for spec in (
            {"code": MINISTRY, "name": "Phần mềm Bộ TN&MT", "kind": "ministry", "sends": ["dossier.status"],
             "handles": [PROVINCE], "certificates": [self.pki.ministry.cert_path.read_text()]},
            {"code": PROVINCE, "name": "Hệ thống một cửa tỉnh", "kind": "provincial", "sends": ["dossier.sync"],
             "receives": ["dossier.status"], "endpoint": {"url": self.sink.url},
             "retry": {"delays_s": [0.2, 0.2]}, "certificates": [self.pki.province.cert_path.read_text()]},
        ):  # fmt: skip
            response = httpx.post(f"{self.base}/api/v1/connectors", json=spec, headers={"X-Api-Key": ADMIN_KEY})
            assert response.status_code == 201, response.text
            keys[spec["code"]] = response.json()["api_key"]
        self._ministry_key: str = keys[MINISTRY]
        return keys[MINISTRY]

    def push_status(self, api_key: str) -> str:
        payload = packets.to_element(packets.example("dossier.status"))
        for el in payload.iter("{*}dossierCode"):
            el.text = DOSSIER
        data = signed_envelope(self.pki.ministry.signer, sender=MINISTRY, receiver=PROVINCE, payload=payload,
                               message_type="dossier.status", message_id=str(uuid.uuid4()), dossier_code=DOSSIER)
        response = httpx.post(f"{self.base}/api/v1/messages", content=data,
                              headers={"X-Api-Key": api_key, "Content-Type": "application/xml"})  # fmt: skip
        assert response.status_code == 202, response.text
        assert response.json()["destinations"] == [PROVINCE], response.text
        return response.json()["message_id"]

    def dead_letters(self) -> list[dict]:
        response = httpx.get(f"{self.base}/api/v1/dead-letters", headers={"X-Api-Key": ADMIN_KEY})
        return response.json() if response.status_code == 200 else []


@contextmanager
def serving_with_worker(pki, prefix: str) -> Iterator[tuple[Hub, str]]:
    """One `hub serve` and one `hub worker`, the connectors registered: the hub and the province's API key."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    with running_sink() as sink:
        hub = Hub(root, sink, pki)
        try:
            hub.serve()
            key = hub.register()
            hub.start("worker")
            yield hub, key
        finally:
            hub.stop()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(pki) -> Iterator[Hub]:
    root = Path(tempfile.mkdtemp(prefix="console-"))
    with running_sink() as sink:
        hub = Hub(root, sink, pki)
        try:
            hub.serve()
            yield hub
        finally:
            hub.stop()
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def headless_chromium(browser_paths: tuple[str, str], *flags: str) -> Iterator:
    """A headless Chromium driven by Selenium, with a throw-away profile, its console log kept, and ``flags``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1440,1000", f"--user-data-dir={profile}", *flags):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def driver(browser_paths) -> Iterator:
    with headless_chromium(browser_paths, "--lang=vi") as browser:
        yield browser


def shoot(driver, element_id: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    element = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    element.screenshot(str(ARTIFACTS / f"{name}.png"))


def press(driver, by: str, selector: str) -> None:
    """Click an element in the middle of the window: scrolled to the top (as ``shoot`` leaves a panel), a button
    would sit under the sticky header, which would take the click."""
    element = driver.find_element(by, selector)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def steady(action: Callable[[], object], tries: int = 8) -> object:
    """Run a step that reads or clicks a live panel, again if the panel was swapped by a refresh meanwhile (its
    element stale), the page is being replaced by a form's answer (its element not there yet) or something still
    covers the element."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        NoSuchElementException,
        StaleElementReferenceException,
    )

    for attempt in range(tries):
        try:
            return action()
        except (StaleElementReferenceException, NoSuchElementException, ElementClickInterceptedException):
            if attempt == tries - 1:
                raise
            time.sleep(0.2)
    return None


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def test_operator_signs_in_sees_the_dead_letter_replays_it_and_sees_it_delivered(hub: Hub, driver) -> None:
    from selenium.webdriver.common.by import By

    key = hub.register()
    hub.sink.state.fail_status = 400  # the province refuses everything until healed
    worker = hub.start("worker")
    time.sleep(1.2)  # the API process reloads the registry (LIENTHONG_REGISTRY_REFRESH_S=1)
    message_id = hub.push_status(key)
    wait_for(lambda: hub.dead_letters(), 30, f"the dead letter (worker alive: {worker.poll() is None})\n{hub.logs()}")

    # Sign in: a wrong password first, then the right one.
    driver.get(f"{hub.base}/")
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "username").send_keys(OPERATOR)
    driver.find_element(By.ID, "password").send_keys("wrong")
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    # The form posts and the page is replaced: read the new page's form, not the old one's.
    wait_for(
        lambda: steady(lambda: "Sai tên đăng nhập hoặc mật khẩu" in driver.find_element(By.ID, "login").text),
        10,
        "the wrong-password message",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shoot(driver, "login", "01-login")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(lambda: driver.find_elements(By.ID, "dead-letters"), 10, "the console")
    assert OPERATOR in driver.find_element(By.CSS_SELECTOR, ".who").text

    # The dead letter is on the page: partner, dossier code, reason, the partner's 400.
    def dead_letter_shown() -> None:
        text = driver.find_element(By.ID, "dead-letters").text
        assert message_id in text and DOSSIER in text and PROVINCE in text
        assert "bị từ chối" in text and "400" in text  # reason "rejected", in Vietnamese
        assert driver.find_element(By.CSS_SELECTOR, "#summary .tile.bad strong").text == "1"
        assert PROVINCE in driver.find_element(By.ID, "queues").text

    steady(dead_letter_shown)
    steady(lambda: press(driver, By.CSS_SELECTOR, "#dead-letters details summary"))
    time.sleep(2.5)  # a live refresh goes by: panels are swapped in place, the open payload stays open
    assert "stale" not in (driver.find_element(By.ID, "live").get_attribute("class") or "")
    assert "dossierStatus" in steady(lambda: driver.find_element(By.CSS_SELECTOR, "#dead-letters pre.payload").text)
    driver.save_screenshot(str(ARTIFACTS / "00-page.png"))
    for panel_id, name in (("summary", "02-summary"), ("queues", "03-queues"), ("partners", "04-partners"),
                           ("dead-letters", "05-dead-letters"), ("deadlines", "06-deadlines")):  # fmt: skip
        steady(lambda panel_id=panel_id, name=name: shoot(driver, panel_id, name))

    # Heal the partner, tick the dead letter, replay, confirm.
    hub.sink.state.fail_status = 0
    dead_id = hub.dead_letters()[0]["id"]
    steady(lambda: press(driver, By.CSS_SELECTOR, f"#dl-{dead_id} input[name=id]"))
    time.sleep(2.5)  # a refresh keeps the ticked box ticked
    assert steady(lambda: driver.find_element(By.CSS_SELECTOR, f"#dl-{dead_id} input[name=id]").is_selected())
    steady(lambda: press(driver, By.ID, "replay-selected"))
    confirm = wait_for(lambda: driver.find_elements(By.ID, "confirm"), 10, "the confirmation step")[0]
    assert message_id in confirm.text and OPERATOR in confirm.text
    shoot(driver, "confirm", "07-confirm-replay")
    driver.find_element(By.ID, "confirm-replay").click()
    flash = wait_for(lambda: driver.find_elements(By.ID, "flash"), 10, "the replay outcome")[0]
    assert "1" in flash.text

    # The search shows the message delivered, with the replay recorded under the operator's name.
    def delivered() -> bool:
        driver.get(f"{hub.base}/?q={message_id}#search")
        return driver.find_element(By.ID, "trace-status").text == "đã gửi"

    wait_for(delivered, 30, f"the replayed message to be delivered\n{hub.logs()}")
    search = driver.find_element(By.ID, "search")
    assert "gửi lại" in search.text and OPERATOR in search.text  # the replayed event and its actor
    assert DOSSIER in search.text
    shoot(driver, "search", "08-search-trace")
    assert hub.sink.state.first_seen.get(message_id), "the partner got the replayed message"

    # English switch, kept in a cookie.
    driver.get(f"{hub.base}/?lang=en")
    assert "Dead letters" in steady(lambda: driver.find_element(By.ID, "dead-letters").text)
    driver.get(f"{hub.base}/")
    assert "No dead letters" in steady(lambda: driver.find_element(By.ID, "dead-letters").text)
    steady(lambda: shoot(driver, "partners", "09-partners-en"))

    assert console_errors(driver) == []

    # Structured logs: the worker's lines about this message carry its id and connector, as JSON.
    import json

    def worker_lines() -> list[dict]:
        text = (hub.root / "worker.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def about_it() -> list[dict]:
        return [line for line in worker_lines() if line.get("message_id") == message_id]

    # Polled: failed once in CI with none of its lines yet in the file (the last ten were a start-up's).
    about = wait_for(about_it, 10, f"the worker's log lines about {message_id}:\n{hub.logs()}")
    assert any(line.get("connector") == PROVINCE and line.get("dossier_code") == DOSSIER for line in about), about
    serve_lines = [line for line in (hub.root / "serve.log").read_text().splitlines() if line.strip()]
    assert any('"actor": "nguyen.van.a"' in line for line in serve_lines), "the sign-in and replay are audited"


def sign_in(hub: Hub, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{hub.base}/login")
    driver.find_element(By.ID, "username").send_keys(OPERATOR)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(lambda: driver.find_elements(By.ID, "queues"), 10, "the console")


def test_operator_closes_a_dead_letter_and_pauses_and_resumes_a_destination(hub: Hub, driver) -> None:
    """The operator actions with their confirmation steps: close a dead letter with a reason (not resent), pause
    the destination (the queue panel says so; a message sent meanwhile waits), resume it (the message arrives)."""
    from selenium.webdriver.common.by import By

    key = hub.register()
    if not any(log.name == "worker.log" for _, log in hub.procs):
        hub.start("worker")
        time.sleep(1.2)  # the API process reloads the registry (LIENTHONG_REGISTRY_REFRESH_S=1)
    hub.sink.state.fail_status = 400
    message_id = hub.push_status(key)
    dead = wait_for(lambda: [d for d in hub.dead_letters() if d["message_id"] == message_id], 30,
                    f"the dead letter\n{hub.logs()}")[0]  # fmt: skip
    hub.sink.state.fail_status = 0
    sign_in(hub, driver)

    # Close: the button next to "replay" leads to the confirmation, which needs a reason.
    steady(lambda: press(driver, By.CSS_SELECTOR, f"#dl-{dead['id']} button[formaction]"))
    confirm = wait_for(lambda: driver.find_elements(By.ID, "action-confirm"), 10, "the close confirmation")[0]
    assert message_id in confirm.text and OPERATOR in confirm.text
    driver.find_element(By.ID, "action-reason").send_keys("Đã gửi bằng tay cho tỉnh, phiếu HD-1042")
    shoot(driver, "action-confirm", "actions-close")
    driver.find_element(By.ID, "confirm-action").click()
    flash = wait_for(lambda: driver.find_elements(By.ID, "flash"), 10, "the close outcome")[0]
    assert "Đã đóng 1 thư lỗi" in flash.text
    closed = httpx.get(f"{hub.base}/api/v1/dead-letters?state=closed", headers={"X-Api-Key": ADMIN_KEY}).json()
    assert [(d["id"], d["closed_by"]) for d in closed] == [(dead["id"], OPERATOR)]
    panel = steady(lambda: driver.find_element(By.ID, "dead-letters").get_attribute("innerHTML"))
    assert f"dl-{dead['id']}" not in panel
    assert message_id not in hub.sink.state.first_seen  # closed, not resent

    # Pause: from the queue panel, confirmed with a reason; the panel then says "paused".
    row = f"tr[id='q-{PROVINCE}']"
    steady(lambda: press(driver, By.CSS_SELECTOR, f"{row} a[href$='/pause']"))
    wait_for(lambda: driver.find_elements(By.ID, "action-confirm"), 10, "the pause confirmation")
    driver.find_element(By.ID, "action-reason").send_keys("Tỉnh bảo trì hệ thống")
    driver.find_element(By.ID, "confirm-action").click()
    wait_for(lambda: driver.find_elements(By.ID, "flash"), 10, "the pause outcome")
    assert "Đang tạm dừng" in steady(lambda: driver.find_element(By.CSS_SELECTOR, row).text)
    steady(lambda: shoot(driver, "queues", "actions-pause"))
    waiting = hub.push_status(key)  # sent while paused: waits in the queue

    # Resume: confirmed; the badge goes and the waiting message is delivered, once.
    steady(lambda: press(driver, By.CSS_SELECTOR, f"{row} a[href$='/resume']"))
    wait_for(lambda: driver.find_elements(By.ID, "action-confirm"), 10, "the resume confirmation")
    driver.find_element(By.ID, "confirm-action").click()
    wait_for(lambda: driver.find_elements(By.ID, "flash"), 10, "the resume outcome")
    assert "Đang tạm dừng" not in steady(lambda: driver.find_element(By.CSS_SELECTOR, row).text)
    wait_for(lambda: hub.sink.state.first_seen.get(waiting), 30, f"the message sent while paused\n{hub.logs()}")
    assert console_errors(driver) == []

    from hub.store import Store
    from hub.store.audit import AuditFilter

    store = Store(f"sqlite:///{hub.root / 'hub.db'}")
    try:
        entries = store.audit_entries(AuditFilter(actor=OPERATOR)).items
    finally:
        store.close()
    mine = ("dead_letter.close", "destination.pause", "destination.resume")  # the first test's replay is audited too
    done = [(e.action, e.subject, e.role) for e in entries if e.action in mine]
    assert done == [("destination.resume", PROVINCE, "operator"), ("destination.pause", PROVINCE, "operator"),
                    ("dead_letter.close", str(dead["id"]), "operator")]  # fmt: skip
