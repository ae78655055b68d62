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

from common.config import Config, build_config
from serving.app import create_app
from serving.model_store import ModelStore

pytestmark = [pytest.mark.api, pytest.mark.integration, pytest.mark.serial]
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
    refusals: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, body = _call(f"{server}/v1/score", LEAD, key="score-key")
            outcomes.append(status)
            versions.add(body.get("model", {}).get("version", "?"))
            if status != 200:
                refusals.append(str(body.get("detail")))

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
    assert set(outcomes) == {200}, ({s: outcomes.count(s) for s in set(outcomes)}, refusals)
    assert versions == {"1"}


@pytest.fixture(scope="module")
def schema(serve_config: Config, store: ModelStore) -> schemathesis.schemas.BaseSchema:
    os.environ.pop("LEADSCORE_API_KEYS", None)
    os.environ.pop("LEADSCORE_ADMIN_KEYS", None)
    from schemathesis.config import SchemathesisConfig

    # a schema-breaking request may be refused as too large (413: over maxItems) as well
    rejected = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428"]
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": rejected}}}
    )
    # the generator shares the process: its pauses would look like a lagging event loop and
    # shed requests, which this test is not about (tests/api/test_process_limits.py is)
    values = serve_config.model_dump(by_alias=True)
    values["serve"]["limits"] = {"max_queue_seconds": 3600}
    # with keys set, so that the declared X-API-Key scheme is probed too (schemathesis'
    # ignored_auth: a missing or wrong key must be refused); cases carry the admin key
    os.environ["LEADSCORE_ADMIN_KEYS"] = ADMIN_KEY
    try:
        app = create_app(build_config(values), store)
    finally:
        os.environ.pop("LEADSCORE_ADMIN_KEYS", None)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


ADMIN_KEY = "schemathesis-admin-key"


#: Generated cases per operation, schema-valid; half as many schema-breaking ones.
EXAMPLES = {"/v1/score": 560, "/v1/score/batch": 150}
OTHER_EXAMPLES = 25


def _contract_refusals_only(response: Any, case: schemathesis.Case) -> None:
    """schemathesis' positive_data_acceptance, for an API whose data contract says more than
    OpenAPI can (as_of after created_at, plausible years, company size ranges): schema-valid
    data gets a 200, or a 422 whose every entry is the contract's ('contract'), never one
    from the schema's own checks, which would mean the published schema is wrong."""
    if response.status_code == 422:
        kinds = {e["type"] for e in response.json()["detail"]}
        assert kinds == {"contract"}, (case.path, response.text[:500])
    else:
        assert response.status_code == 200, (case.path, response.status_code, response.text[:500])


def test_no_input_gets_a_5xx(schema: schemathesis.schemas.BaseSchema) -> None:
    """Property test: every operation, schema-valid and schema-breaking inputs, every
    schemathesis check; never a server error and never a status the schema does not list."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import CHECKS, load_all_checks
    from schemathesis.generation.modes import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    load_all_checks()
    checks = [
        c
        for c in CHECKS.get_all()
        if callable(c) and not isinstance(c, type) and c is not positive_data_acceptance
    ]
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            examples = EXAMPLES.get(operation.path, OTHER_EXAMPLES)
            if mode is GenerationMode.NEGATIVE:
                examples //= 2

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(checks=checks, headers={"X-API-Key": ADMIN_KEY})
                statuses.append(response.status_code)
                positive = case.meta is not None and case.meta.generation.mode.is_positive
                if positive and case.method == "POST" and case.path.startswith("/v1/score"):
                    _contract_refusals_only(response, case)

            try:
                run()
            except Unsatisfiable:  # nothing to break where there is no body and no parameter
                assert mode is GenerationMode.NEGATIVE
                assert not operation.path.startswith("/v1/score"), operation.path
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"schemathesis: {len(statuses)} cases, statuses {counts}")
    assert all(s < 500 for s in statuses)
    assert len(statuses) >= 1000 and 200 in statuses and 422 in statuses  # it really probed
