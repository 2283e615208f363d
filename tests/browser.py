"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by selenium.

A plugin of the suite (tests/conftest.py names it): its fixtures ``chromium``
and ``browser`` serve every module of browser tests.

No browser is downloaded: the tests use the system's Chromium and its
matching ``chromedriver``. Where they are missing the browser tests skip,
saying why, except in CI (``CI=true``), where a missing browser fails the run
rather than letting a green build hide untested pages.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

if TYPE_CHECKING:
    from tests.conftest import LiveServer

SCREENSHOTS = Path(__file__).parent / "screenshots"
# Flags that keep Chromium from calling home: on a closed network its
# background connections are refused and slow everything down.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--lang=en-GB",
)
DESKTOP = (1280, 900)
API_REFUSAL = re.compile(r"/api/\S* - Failed to load resource: .* status of (4\d\d|50[24]) ")


def find_chromium() -> tuple[str, str]:
    """Return the paths of Chromium and chromedriver, or skip (fail in CI) without them."""
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if binary and driver:
        return binary, driver
    reason = (
        "browser tests need Chromium and chromedriver "
        "(apt-get install chromium chromium-driver); "
        f"found chromium={binary!r}, chromedriver={driver!r}"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)


def start_chromium(binary: str, driver: str, profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


class Browser:
    """One test's view of the shared browser: pages at a base URL, screenshots, waiting."""

    def __init__(self, driver: webdriver.Chrome, test_name: str) -> None:
        self.driver = driver
        self.base = ""
        self.prefix = re.sub(r"[^\w-]+", "-", test_name).strip("-")
        self.shots = 0
        # Only this run's pictures: a stale one would mislead whoever looks.
        for old in SCREENSHOTS.glob(f"{self.prefix}-*.png"):
            old.unlink()

    def open(self, path: str, name: str | None = None) -> None:
        """Load a page of the app and wait until its script has connected live."""
        self.driver.get(self.base + path)
        self.wait_live()
        self.screenshot(name or path)

    def wait_live(self) -> None:
        self.wait_for(
            lambda: self.css("#live-status").get_attribute("data-state") == "live",
            "the page's websocket to connect",
        )

    def screenshot(self, name: str) -> Path:
        """Save what the page shows now, for a person to look at (tests/screenshots/)."""
        SCREENSHOTS.mkdir(exist_ok=True)
        self.shots += 1
        slug = re.sub(r"[^\w-]+", "-", name).strip("-") or "root"
        path = SCREENSHOTS / f"{self.prefix}-{self.shots:02d}-{slug}.png"
        self.driver.save_screenshot(str(path))
        return path

    def css(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self, selector: str) -> str:
        """The text of the first match, or "" if there is none (yet)."""
        try:
            found = self.all(selector)
            return found[0].text if found else ""
        except StaleElementReferenceException:
            return ""

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def type_into(self, selector: str, text: str) -> None:
        field = self.css(selector)
        field.clear()
        field.send_keys(text)

    def compose(self, text: str) -> None:
        """Type a message into the chat's composer and send it with Enter."""
        box = self.css("#compose")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
        """Poll until ``condition`` returns something true; fail saying what did not happen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except StaleElementReferenceException:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.screenshot(f"timeout-{what}")
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def assert_readable(self, what: str) -> None:
        """Check the page as shown: no sideways scrolling, and every control labelled."""
        width = (
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        scroll_width, client_width = self.js(width)
        assert scroll_width <= client_width, f"{what} scrolls sideways at {client_width} px"
        # Every form control has a label a screen reader can announce.
        unlabelled = self.js(
            "return [...document.querySelectorAll('main input, main select, main textarea')]"
            ".filter(c => !c.labels.length && !c.getAttribute('aria-label')).map(c => c.id)"
        )
        assert unlabelled == [], f"{what}: {unlabelled}"

    def console_errors(self) -> list[str]:
        """Errors the page logged (script errors, missing files) since the last call.

        Chromium logs every 4xx answer of the API too; those are answers the
        pages handle (a 422 shown at its field, a 401 that brings the prompt),
        as are the 502 and 504 of an MCP server that fails or does not answer.
        """
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE" and not API_REFUSAL.search(entry["message"])
        ]


def new_profile() -> str:
    return tempfile.mkdtemp(prefix="zerg-chromium-")


def api(server: LiveServer, method: str, path: str, body: Any = None, token: str = "") -> Any:
    """Call the API over HTTP as any other client would."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.request(
        method, f"{server.url}/api{path}", json=body, headers=headers, timeout=10
    )
    assert response.ok, response.text
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for a module of browser tests; each test uses its own server.

    Module-scoped so that the browser is gone before the rest of the suite runs.
    """
    binary, driver_path = find_chromium()
    profile = new_profile()
    driver = start_chromium(binary, driver_path, profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium: webdriver.Chrome, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """The shared browser, reset for this test; fails the test on any script error."""
    chromium.set_window_size(*DESKTOP)
    browser = Browser(chromium, request.node.name)
    yield browser
    errors = browser.console_errors()
    # Leave the page so that its websocket closes before the server stops.
    chromium.get("about:blank")
    assert errors == [], errors
