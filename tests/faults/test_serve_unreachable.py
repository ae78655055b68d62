"""`leadscore serve` with the MLflow server unreachable: bounded retries, logged, then a 503
on /readyz (liveness still answers), within a bounded time; never a hang."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.serve_process import free_port, serve_process, wait_for_answer

pytestmark = [pytest.mark.integration, pytest.mark.api]


def test_unreachable_tracking_server_gives_503_after_logged_retries(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    closed = free_port()  # nothing listens here
    port = free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_HTTP")
    }  # the bounds under test are the ones our code sets
    env.update(
        {
            "LEADSCORE__MLFLOW__TRACKING_URI": f"http://127.0.0.1:{closed}",
            "LEADSCORE__SERVE__STARTUP_ATTEMPTS": "3",
            "LEADSCORE__SERVE__STARTUP_WAIT_SECONDS": "0.5",
        }
    )
    started = time.monotonic()
    with serve_process(env, port, log) as process:
        ready = wait_for_answer(f"http://127.0.0.1:{port}/readyz", process, 60)
        answered = time.monotonic() - started
        live = wait_for_answer(f"http://127.0.0.1:{port}/healthz", process, 10)
        # it stops when asked (SIGTERM), promptly and cleanly: the fixture would kill it otherwise
        process.terminate()
        returncode = process.wait(timeout=15)
    text = log.read_text()
    assert ready is not None, text
    status, body = ready
    assert status == 503 and "no model loaded" in body and f"127.0.0.1:{closed}" in body, body
    assert live is not None and live[0] == 200
    assert answered < 60
    for attempt in (1, 2, 3):
        assert (
            f"model load attempt {attempt}/3 failed: cannot load models:/leadscore@champion "
            f"from http://127.0.0.1:{closed}" in text
        ), text
    assert "Traceback" not in text
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert returncode == -signal.SIGTERM, (returncode, text)
    assert "Finished server process" in text, text
