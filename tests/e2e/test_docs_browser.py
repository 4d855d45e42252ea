"""``/docs`` and ``/redoc`` in a real browser with the network cut: headless Chromium (Debian's ``chromium`` +
``chromium-driver``, as in ``test_console_browser``) may reach 127.0.0.1 only, so a page that loaded anything from
a CDN would stay blank. Swagger UI must render one ``.opblock`` per operation of the OpenAPI document and ReDoc one
section per operation, with no console error and every loaded resource from the hub. Screenshots go to
``test-artifacts/console/docs.png`` and ``redoc.png``.

The hub is served in process by uvicorn without its lifespan: the pages and the document need neither the store
nor the broker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from hub.api import create_app
from hub.config import Settings
from tests.e2e.test_console_browser import ARTIFACTS, browser_paths, console_errors, headless_chromium, wait_for
from tests.support import free_port

__all__ = ["browser_paths"]  # a fixture used here, imported from the console's browser test

#: The one thing the ReDoc bundle fetches from outside: the Redocly logo of its sidebar's credit line, which it
#: hides when it fails to load. Nothing else may come from anywhere but the hub.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("docs")
    app = create_app(
        Settings(
            database_url=f"sqlite:///{root / 'hub.db'}",
            data_dir=root / "var",
            hub_code="000.00.00.H00",
            admin_api_key="admin-key-for-docs",
            log_format="console",
        )
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, name="docs-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.started, 15, "the docs server to start")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def offline_driver(browser_paths) -> Iterator:
    """Chromium whose only reachable host is 127.0.0.1: every other name fails to resolve, and any other address
    goes to a proxy on a closed port (Chromium never proxies loopback)."""
    flags = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--proxy-server=http://127.0.0.1:{free_port()}")
    with headless_chromium(browser_paths, *flags) as browser:
        yield browser


def loaded_from(driver) -> list[str]:
    """The URLs of every resource the page loaded (the Resource Timing entries)."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def operation_count(base: str) -> int:
    document = httpx.get(f"{base}/openapi.json", timeout=10).json()
    return sum(len(ops) for ops in document["paths"].values())


def test_swagger_ui_renders_every_operation_offline(docs_server: str, offline_driver) -> None:
    from selenium.webdriver.common.by import By

    expected = operation_count(docs_server)
    offline_driver.get(f"{docs_server}/docs")
    wait_for(lambda: len(offline_driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= expected, 30,
             "Swagger UI to render the operations")  # fmt: skip
    blocks = offline_driver.find_elements(By.CSS_SELECTOR, ".opblock")
    assert len(blocks) == expected
    shown = offline_driver.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text
    assert shown.startswith("/")
    assert not console_errors(offline_driver)
    resources = loaded_from(offline_driver)
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in resources), resources
    assert all(url.startswith(docs_server + "/") for url in resources), resources
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    offline_driver.save_screenshot(str(ARTIFACTS / "docs.png"))


def test_redoc_renders_every_operation_offline(docs_server: str, offline_driver) -> None:
    from selenium.webdriver.common.by import By

    expected = operation_count(docs_server)
    offline_driver.get(f"{docs_server}/redoc")
    selector = "[data-section-id^='operation/']"
    wait_for(lambda: len(offline_driver.find_elements(By.CSS_SELECTOR, selector)) >= expected, 30,
             "ReDoc to render the operations")  # fmt: skip
    assert len(offline_driver.find_elements(By.CSS_SELECTOR, selector)) == expected
    errors = [e for e in console_errors(offline_driver) if not e["message"].startswith(REDOC_LOGO)]
    assert not errors
    resources = [url for url in loaded_from(offline_driver) if url != REDOC_LOGO]
    assert any(url.endswith("/docs/assets/redoc.standalone.js") for url in resources), resources
    assert all(url.startswith(docs_server + "/") for url in resources), resources
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    offline_driver.save_screenshot(str(ARTIFACTS / "redoc.png"))


def test_the_browser_really_is_offline(offline_driver) -> None:
    """The cut itself: without it the tests above would pass with a CDN too."""
    from selenium.common.exceptions import WebDriverException

    try:
        offline_driver.get("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js")
    except WebDriverException:
        return  # refused outright
    assert "SwaggerUIBundle" not in offline_driver.page_source
