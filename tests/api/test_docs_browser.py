"""/docs and /redoc in a real browser, served by a real `leadscore serve` process, with no
network beyond 127.0.0.1: the operations list renders, and Authorize sends the API key.

The server has no model (an empty registry): the docs must work before a model loads, and
an authorised call then gets past the key check to the 503 of "no model loaded".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium, outside_requests, severe_console_errors, wait_for

pytestmark = [pytest.mark.api, pytest.mark.browser, pytest.mark.integration]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("docs-server")
    port = _free_port()
    env = {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "LEADSCORE__SERVE__STARTUP_ATTEMPTS": "1",
        "LEADSCORE__SERVE__STARTUP_WAIT_SECONDS": "0",
        "LEADSCORE_API_KEYS": "score-key",
    }
    log_path = root / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "leadscore"), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert process.poll() is None, log_path.read_text()
                try:
                    if _status(f"{base}/healthz") == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.3)
            else:
                raise TimeoutError(log_path.read_text())
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_docs_render_offline_with_operations_and_authorize(server: str) -> None:
    with chromium() as browser:
        browser.get(f"{server}/docs")
        wait_for(browser, ".opblock-summary-path")
        paths = {
            element.get_attribute("data-path")
            for element in browser.find_elements("css selector", ".opblock-summary-path")
        }
        assert {"/v1/score", "/v1/score/batch", "/v1/model", "/v1/admin/reload"} <= paths
        tags = {
            element.text.split("\n")[0]
            for element in browser.find_elements("css selector", ".opblock-tag")
        }
        assert {"scoring", "model", "admin", "operations"} <= tags
        authorize = browser.find_element("css selector", "button.authorize")
        assert authorize.is_displayed()
        assert severe_console_errors(browser) == []
        assert outside_requests(browser, server.removeprefix("http://")) == []

        # Authorize, then "Try it out" on POST /v1/score: the key goes with the request
        authorize.click()
        field = wait_for(browser, ".modal-ux input")
        field.send_keys("score-key")
        browser.find_element("css selector", ".modal-ux button.authorize").click()
        browser.find_element("css selector", ".modal-ux button.btn-done").click()
        operation = "#operations-scoring-score_one_v1_score_post"
        browser.find_element("css selector", f"{operation} .opblock-summary").click()
        wait_for(browser, f"{operation} .try-out__btn").click()
        wait_for(browser, f"{operation} .execute").click()
        status = wait_for(browser, f"{operation} .live-responses-table tbody .response-col_status")
        curl = browser.find_element("css selector", f"{operation} .curl").text
        assert "X-API-Key: score-key" in curl
        # past the key check (401 without a key, 403 with a wrong one): no model is loaded
        assert status.text.strip()[:3] in {"422", "503"}, status.text


def test_redoc_renders_offline(server: str) -> None:
    with chromium() as browser:
        browser.get(f"{server}/redoc")
        wait_for(browser, ".api-content")
        text = browser.find_element("css selector", "body").text.lower()
        assert "score one lead" in text
        assert "authorizations:" in text and "apikey" in text
        assert outside_requests(browser, server.removeprefix("http://")) == []
