"""A real headless browser for the `browser` tests: Debian's chromium driven by Selenium.

Selenium is given /usr/bin/chromedriver explicitly, so it never looks for or downloads a
driver, and chromium resolves no host name but 127.0.0.1: a page that needs the internet
fails here as it would on an offline machine. `.ci/run` installs both packages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_ALL

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def require_chromium() -> None:
    """Skip where Debian's chromium is missing, except in CI, which must have it."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing and os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{missing} missing: .ci/run installs chromium and chromium-driver")
    if missing:
        pytest.skip(f"{missing} missing: apt-get install chromium chromium-driver")


@contextmanager
def chromium(width: int = 1280, height: int = 900, *arguments: str) -> Iterator[Any]:
    """A headless chromium under Selenium, with no network beyond 127.0.0.1."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        OFFLINE,
        *arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, css: str, seconds: float = 30) -> Any:
    """The first element matching `css`, once it appears."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    locator = (By.CSS_SELECTOR, css)
    return WebDriverWait(driver, seconds).until(
        expected_conditions.presence_of_element_located(locator)
    )


def images(driver: Any) -> list[dict[str, Any]]:
    """Every <img> of the page once loaded: its source (a data URI shortened to 80
    characters) and natural width."""
    driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        Promise.all([...document.images].map(i => i.complete ? null :
            new Promise(r => { i.onload = r; i.onerror = r; }))).then(() => done(null));"""
    )
    return list(
        driver.execute_script(
            "return [...document.images].map(i => ({src: i.src.startsWith('data:') ?"
            " i.src.slice(0, 80) : i.src, width: i.naturalWidth}));"
        )
    )


def outside_requests(driver: Any, host: str) -> list[str]:
    """What the page asked of any host but `host`, less what its Content-Security-Policy
    refused inside the browser (such a request never leaves the machine)."""
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    refused = " ".join(
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    )
    return [url for url in urls if url.split("/")[2] != host and f"'{url}' violates" not in refused]


def severe_console_errors(driver: Any) -> list[str]:
    """The page's console errors (a failed script or asset shows up here)."""
    return [
        entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
    ]
