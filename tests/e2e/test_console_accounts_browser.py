"""Accounts, roles and the audit view in a real browser (headless Chromium, as in ``test_console_browser``), against
the hub served in process by uvicorn on a SQLite store and the embedded queue.

The first admin (the admin API key) adds a viewer on the accounts page; the viewer signs in (after a wrong
password), sees the dead letter without any action button, and is refused (403) when it posts a replay anyway; the
admin disables the viewer, whose session ends at once; the audit view shows the sign-ins, the failed one too, and
the account changes. Screenshots: ``test-artifacts/console/accounts.png``, ``audit.png`` and
``accounts-viewer-refused.png``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn

from hub.api import create_app
from hub.config import Settings
from tests.e2e.test_console_browser import (
    ARTIFACTS,
    browser_paths,
    console_errors,
    headless_chromium,
    steady,
    wait_for,
)
from tests.support import free_port

__all__ = ["browser_paths"]  # a fixture used here, imported from the console's browser test

ADMIN_KEY = "admin-key-for-accounts"
VIEWER, VIEWER_PASSWORD = "tran.thi.b", "mat-khau-nguoi-xem"


class Served:
    def __init__(self, base: str, app) -> None:
        self.base = base
        self.app = app

    @property
    def store(self):
        return self.app.state.hub.store


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("accounts")
    settings = Settings(
        database_url=f"sqlite:///{root / 'hub.db'}", data_dir=root / "var", broker_url="embedded",
        admin_api_key=ADMIN_KEY, log_format="console", console_refresh_s=60,
    )  # fmt: skip
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="accounts-server", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, "the hub to start")
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _dead_letter(store) -> int:
    """A dead letter for the page to show (the partner refused it), made straight in the store."""
    accepted = store.accept(
        sender="000.00.00.G22", message_id="m-accounts-1", correlation_id=None, message_type="dossier.status",
        receiver="000.00.00.H12", dossier_code="000.00.00.H12-251123-0042", envelope=b"<env>1</env>",
        destinations=["000.00.00.H12"],
    )  # fmt: skip
    (delivery,) = accepted.delivery_ids
    store.mark_published([delivery])
    store.start_attempts([delivery])
    return store.record_dead(delivery, reason="rejected", error="HTTP 400 from the partner")


def _sign_in(driver, base: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def test_admin_adds_a_viewer_who_cannot_act_then_disables_it_and_audits_it(served: Served, browser_paths) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base = served.base
    dead_id = _dead_letter(served.store)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with headless_chromium(browser_paths, "--lang=vi") as admin, headless_chromium(browser_paths) as viewer:
        # The first admin signs in with the admin key and adds a viewer (name and role, then the password).
        _sign_in(admin, base, "admin", ADMIN_KEY)
        wait_for(lambda: admin.find_elements(By.ID, "nav-accounts"), 10, "the admin's console")
        admin.find_element(By.ID, "nav-accounts").click()
        wait_for(lambda: admin.find_elements(By.ID, "account-add"), 10, "the accounts page")
        admin.find_element(By.ID, "new-name").send_keys(VIEWER)
        Select(admin.find_element(By.ID, "new-role")).select_by_value("viewer")
        admin.find_element(By.ID, "add-next").click()
        wait_for(lambda: admin.find_elements(By.ID, "account-confirm"), 10, "the confirmation step")
        assert VIEWER in admin.find_element(By.ID, "account-confirm").text
        admin.find_element(By.ID, "password").send_keys(VIEWER_PASSWORD)
        admin.find_element(By.ID, "password2").send_keys(VIEWER_PASSWORD)
        admin.find_element(By.ID, "confirm-account").click()
        flash = wait_for(lambda: admin.find_elements(By.ID, "flash"), 10, "the outcome")[0]
        assert f"Đã thêm tài khoản {VIEWER}" in flash.text
        assert "Xem" in admin.find_element(By.ID, f"acc-{VIEWER}").text  # the viewer role, in Vietnamese

        # The viewer: a wrong password first, then in; the dead letter is shown without any action.
        _sign_in(viewer, base, VIEWER, "sai-mat-khau")
        wait_for(lambda: steady(lambda: "Sai tên đăng nhập" in viewer.find_element(By.ID, "login").text), 10,
                 "the wrong-password message")  # fmt: skip
        _sign_in(viewer, base, VIEWER, VIEWER_PASSWORD)
        wait_for(lambda: viewer.find_elements(By.ID, "dead-letters"), 10, "the viewer's console")
        assert (
            f"dl-{dead_id}" in viewer.page_source and "m-accounts-1" in viewer.find_element(By.ID, "dead-letters").text
        )
        assert viewer.find_elements(By.ID, "replay-selected") == []
        assert viewer.find_elements(By.CSS_SELECTOR, "#dead-letters button, #dead-letters input[type=checkbox]") == []
        assert viewer.find_elements(By.ID, "nav-accounts") == [] and viewer.find_elements(By.ID, "nav-audit") == []

        # Posting a replay all the same (a form made by hand, with the session's CSRF token): refused, 403.
        viewer.execute_script(
            """const form = document.createElement("form");
            form.method = "post"; form.action = "/console/replay";
            for (const [k, v] of [["csrf_token", document.querySelector("input[name=csrf_token]").value],
                                  ["id", arguments[0]]]) {
              const input = document.createElement("input"); input.type = "hidden"; input.name = k; input.value = v;
              form.appendChild(input);
            }
            document.body.appendChild(form); form.submit();""",
            str(dead_id),
        )
        refused = wait_for(lambda: viewer.find_elements(By.ID, "refused"), 10, "the refusal page")[0]
        assert "Không đủ quyền" in refused.text and "Vận hành" in refused.text  # and which role it needs
        assert served.store.dead_letters()[0].replayed_at is None
        viewer.save_screenshot(str(ARTIFACTS / "accounts-viewer-refused.png"))

        # The admin page shows the viewer; the admin disables it, and its session ends at once.
        admin.get(f"{base}/console/accounts")
        row = wait_for(lambda: admin.find_elements(By.ID, f"acc-{VIEWER}"), 10, "the viewer on the accounts page")[0]
        assert "Đang dùng" in row.text
        admin.save_screenshot(str(ARTIFACTS / "accounts.png"))
        row.find_element(By.CSS_SELECTOR, "[data-step=disable]").click()
        wait_for(lambda: admin.find_elements(By.ID, "confirm-account"), 10, "the disable confirmation")
        admin.find_element(By.ID, "confirm-account").click()
        flash = wait_for(lambda: admin.find_elements(By.ID, "flash"), 10, "the outcome")[0]
        assert "1 phiên đã kết thúc" in flash.text
        viewer.get(f"{base}/")
        assert "/login" in viewer.current_url

        # The audit view: the sign-ins (the failed one too) and the account changes, filtered by actor.
        admin.find_element(By.ID, "nav-audit").click()
        wait_for(lambda: admin.find_elements(By.ID, "audit-list"), 10, "the audit view")
        admin.find_element(By.ID, "filter-actor").send_keys(VIEWER)
        Select(admin.find_element(By.ID, "filter-group")).select_by_value("signin")
        admin.find_element(By.ID, "audit-apply").click()
        wait_for(lambda: "actor=tran.thi.b" in admin.current_url, 10, "the filtered audit view")
        rows = [r.get_attribute("data-action") for r in admin.find_elements(By.CSS_SELECTOR, "#audit-list tbody tr")]
        assert rows == ["signin.ok", "signin.refused"], rows
        assert "Bị từ chối" in admin.find_element(By.ID, "audit-list").text
        admin.get(f"{base}/console/audit")
        text = admin.find_element(By.ID, "audit-list").text
        for action in ("account.add", "account.disable", "signin.refused", "signin.ok"):
            assert action in text
        admin.save_screenshot(str(ARTIFACTS / "audit.png"))

        assert console_errors(admin) == []
        assert [e for e in console_errors(viewer) if "403" not in e["message"]] == []
