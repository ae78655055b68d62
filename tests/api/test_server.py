"""A real uvicorn process: scoring over HTTP, reloading the model while requests are in
flight without losing any, and a schemathesis run against the OpenAPI schema."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from features.config import Config
from serving.app import create_app
from serving.model_store import ModelStore

pytestmark = [pytest.mark.api, pytest.mark.integration]
BIN = Path(sys.executable).parent
LEAD = {
    "lead": {
        "lead_id": "u1",
        "created_at": "2026-05-01T00:00:00Z",
        "job_title": "VP Sales",
        "company_size": "51-200",
        "email": "a@acme.io",
    },
    "events": [
        {"event_type": "pricing_page_view", "occurred_at": "2026-05-10T10:00:00Z"},
        {"event_type": "demo_request", "occurred_at": "2026-05-11T10:00:00Z"},
    ],
    "as_of": "2026-05-12T00:00:00Z",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    request = urllib.request.Request(
        url, data=data, headers=headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def server(registry: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE_API_KEYS": "score-key",
        "LEADSCORE_ADMIN_KEYS": "admin-key",
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            *(str(BIN / "leadscore"), "serve", "--port", str(port)),
            *("--accounts", registry["snapshot"]),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if _call(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise TimeoutError((tmp_path / "server.log").read_text())
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        assert "a@acme.io" not in (tmp_path / "server.log").read_text()  # no PII in logs


def test_real_process_scores_and_guards(server: str, leads: tuple[Any, Any]) -> None:
    status, body = _call(f"{server}/v1/score", LEAD, key="score-key")
    assert status == 200 and body["model"]["version"] == "1" and body["account"] is None
    # an existing account: its history comes from --accounts
    frame = leads[0]
    account = frame["account_id"].value_counts().index[0]
    created = frame.loc[frame["account_id"] == account, "created_at"].max()
    colleague = {**LEAD, "lead": {**LEAD["lead"], "account_id": account}, "as_of": None}
    status, body = _call(f"{server}/v1/score", colleague, key="score-key")
    assert status == 200 and body["account"]["known"] is True, body
    assert body["account"]["other_leads"] == int((frame["account_id"] == account).sum())
    assert created.isoformat() < body["as_of"]
    status, model = _call(f"{server}/v1/model", key="score-key")
    assert model["account_history"]["accounts"] == frame["account_id"].nunique()
    assert _call(f"{server}/v1/score", LEAD)[0] == 401
    assert _call(f"{server}/v1/score", LEAD, key="wrong")[0] == 403


def test_reload_while_requests_are_in_flight_loses_none(server: str) -> None:
    outcomes: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, body = _call(f"{server}/v1/score", LEAD, key="score-key")
            outcomes.append(status)
            versions.add(body.get("model", {}).get("version", "?"))

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(5):
            time.sleep(0.3)
            status, body = _call(f"{server}/v1/admin/reload", {}, key="admin-key")
            assert status == 200, body
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert len(outcomes) > 20
    assert set(outcomes) == {200}, {s: outcomes.count(s) for s in set(outcomes)}
    assert versions == {"1"}


@pytest.fixture(scope="module")
def schema(serve_config: Config, store: ModelStore) -> schemathesis.schemas.BaseSchema:
    os.environ.pop("LEADSCORE_API_KEYS", None)
    os.environ.pop("LEADSCORE_ADMIN_KEYS", None)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(serve_config, store))


def test_no_input_gets_a_5xx(schema: schemathesis.schemas.BaseSchema) -> None:
    """Bounded property test: every operation, generated inputs, never a server error."""
    from hypothesis import HealthCheck, given, settings

    failures: list[str] = []
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.path}: {response.status_code} {response.text[:200]}"
                )

        run()
    assert not failures, failures[:5]
    assert len(statuses) >= 60 and 200 in statuses and 422 in statuses  # it really probed
