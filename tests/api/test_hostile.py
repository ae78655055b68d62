"""Hostile input against the API in process: every odd value gets a 4xx naming its field (never
a 500), nothing personal is echoed or logged, limits apply before the work, health answers on
the event loop, and the model's details need a key once keys are set."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from common.config import Config, build_config
from serving import app as app_module
from serving.app import create_app
from serving.model_store import ModelStore

pytestmark = pytest.mark.api

SECRET = "canary.person@example.org"
AS_OF = "2026-05-12T00:00:00Z"
LEAD: dict[str, Any] = {
    "lead_id": "h1",
    "created_at": "2026-05-01T00:00:00Z",
    "job_title": "VP Sales",
    "company_size": "51-200",
    "email": SECRET,
}
GOOD: dict[str, Any] = {
    "lead": LEAD,
    "events": [{"event_type": "demo_request", "occurred_at": "2026-05-10T10:00:00Z"}],
    "as_of": AS_OF,
}


def _config(serve_config: Config, **serve: Any) -> Config:
    values = serve_config.model_dump(by_alias=True)
    values["serve"] = {**values["serve"], **serve}
    return build_config(values)


@pytest.fixture
def limited(
    serve_config: Config, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """An open app with small limits: 4 KiB per lead, 64 KiB per batch, 5 events."""
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    monkeypatch.delenv("LEADSCORE_ADMIN_KEYS", raising=False)
    limits = {"max_lead_bytes": 4096, "max_batch_bytes": 65536, "max_events": 5}
    with TestClient(create_app(_config(serve_config, limits=limits), store)) as client:
        yield client


def _raw(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def _named(response: Any, *loc: str | int) -> bool:
    """Whether a 422 names this field (its loc ends with `loc`)."""
    return any(list(error["loc"])[-len(loc) :] == list(loc) for error in response.json()["detail"])


# --------------------------------------------------------------------------- no 500, ever

HOSTILE_TEXT = [
    # (raw JSON body, the field a 422 must name)
    ('{"lead":{"lead_id":"a","created_at":NaN,"email":"' + SECRET + '"}}', ("lead", "created_at")),
    ('{"lead":{"lead_id":"a","created_at":"2026-05-01"},"as_of":NaN}', ("as_of",)),
    ('{"lead":{"lead_id":"a","created_at":"2026-05-01"},"as_of":Infinity}', ("as_of",)),
    (
        '{"lead":{"lead_id":"a","created_at":"2026-05-01","company_size":-Infinity}}',
        ("company_size",),
    ),
    ('{"lead":{"lead_id":"\\ud800","created_at":"2026-05-01"}}', ("lead", "lead_id")),
    ('{"lead":{"lead_id":"a","job_title":"x\\udfff","created_at":"2026-05-01"}}', ("job_title",)),
    ('{"lead":{"lead_id":"a","created_at":"2026-05-01","\\ud801":1}}', ("lead",)),
    (
        '{"lead":{"lead_id":"a","created_at":"2026-05-01"},'
        '"events":[{"event_type":"page_view","occurred_at":NaN}]}',
        ("events", 0, "occurred_at"),
    ),
]


@pytest.mark.parametrize(("text", "loc"), HOSTILE_TEXT)
def test_non_finite_numbers_and_surrogates_are_422_naming_the_field(
    client: TestClient, caplog: pytest.LogCaptureFixture, text: str, loc: tuple[Any, ...]
) -> None:
    caplog.set_level(logging.DEBUG)
    response = _raw(client, "/v1/score", text)
    assert response.status_code == 422, response.text
    assert _named(response, *loc), response.json()
    assert SECRET not in response.text and SECRET not in caplog.text


HOSTILE_VALUES = [
    # (lead fields changed, request fields changed, the field a 422 must name)
    ({"created_at": "9999-12-31T23:59:59-01:00"}, {}, "created_at"),
    ({"created_at": "0001-01-01T00:00:00+01:00"}, {}, "created_at"),
    ({}, {"as_of": "9999-12-31T23:59:59-01:00"}, "as_of"),
    ({}, {"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),
    ({}, {"as_of": 0}, "as_of"),
    ({}, {"as_of": "2026-04-01T00:00:00Z"}, "as_of"),  # before created_at
    ({"created_at": 1700000000}, {}, "created_at"),  # not Unix time
    ({"created_at": "1700000000"}, {}, "created_at"),
    ({"mql_at": "2026-04-01T00:00:00Z"}, {}, "mql_at"),  # before created_at
    ({"disqualified_at": "2026-04-01T00:00:00Z"}, {}, "disqualified_at"),  # before created_at
    ({"mql_at": "2026-05-10T00:00:00Z", "sql_at": "2026-05-09T00:00:00Z"}, {}, "sql_at"),
    ({"company_size": True}, {}, "company_size"),
    ({"company_size": "Infinity"}, {}, "company_size"),
    ({"company_size": "200-51"}, {}, "company_size"),
    ({"company_size": SECRET}, {}, "company_size"),
    ({"job_title": "x" * 100_000}, {}, "job_title"),
    ({"notes": "x" * 2000}, {}, "notes"),  # a custom field over its size cap
    ({"notes": {"nested": [1, 2]}}, {}, "notes"),
]


@pytest.mark.parametrize(("lead", "request_fields", "field"), HOSTILE_VALUES)
def test_odd_values_are_422_naming_the_field_without_echoing_them(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    lead: dict[str, Any],
    request_fields: dict[str, Any],
    field: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {**GOOD, "lead": {**LEAD, **lead}, **request_fields}
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422, response.text
    assert _named(response, field), response.json()
    assert len(response.content) < 2000  # at most a short, truncated value comes back
    assert SECRET not in response.text and SECRET not in caplog.text


def test_the_reader_agreeing_odd_values_are_scored(client: TestClient) -> None:
    """What the reader takes, the API takes: surrounding spaces, a basic-format date."""
    for lead in ({"created_at": " 2026-05-01T00:00:00Z "}, {"created_at": "20260501"}):
        response = client.post("/v1/score", json={**GOOD, "lead": {**LEAD, **lead}})
        assert response.status_code == 200, response.text


def test_an_unparseable_body_is_400(client: TestClient) -> None:
    for text in ('{"lead":', "not json", '{"lead": {"lead_id": "a"}} trailing', "\xff"):
        response = _raw(client, "/v1/score", text)
        assert response.status_code == 400, (text, response.text)
        assert "not JSON" in response.json()["detail"] or "UTF-8" in response.json()["detail"]


def test_a_batch_names_each_failing_lead_by_index_and_scores_none(client: TestClient) -> None:
    bad_size = {**GOOD, "lead": {**LEAD, "company_size": "many"}}  # the contract refuses it
    infinite = {**GOOD, "lead": {**LEAD, "company_size": "__INF__"}}
    numbered = {**GOOD, "events": [{"event_type": 7, "occurred_at": "2026-05-10T10:00:00Z"}]}
    text = json.dumps({"leads": [infinite, numbered, GOOD, bad_size]})
    response = _raw(client, "/v1/score/batch", text.replace('"__INF__"', "Infinity"))
    assert response.status_code == 422, response.text
    named = {tuple(e["loc"][:3]) for e in response.json()["detail"]}
    # lead 0: Infinity; lead 1: an event type that is a number; lead 3: 'many' employees
    assert {("body", "leads", 0), ("body", "leads", 1), ("body", "leads", 3)} <= named
    assert ("body", "leads", 2) not in named
    assert _named(response, "leads", 0, "lead", "company_size")
    assert SECRET not in response.text
    alone = client.post("/v1/score/batch", json={"leads": [GOOD, bad_size]})
    assert alone.status_code == 422 and _named(alone, "leads", 1, "lead", "company_size")


# --------------------------------------------------------------------------- limits


def test_bodies_over_their_limits_are_413_before_parsing(limited: TestClient) -> None:
    big = {**GOOD, "lead": {**LEAD, "job_title": "x" * 5000}}
    assert limited.post("/v1/score", json=big).status_code == 413
    # the same lead fits in a batch, whose limit is set apart
    assert limited.post("/v1/score/batch", json={"leads": [GOOD]}).status_code == 200
    # unparseable bytes over the limit: refused for size, never read as JSON
    assert _raw(limited, "/v1/score", "{" * 10_000).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"lead": {"lead_id": "a", "x": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}}'

    streamed = limited.post(
        "/v1/score", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "limit of 4,096 bytes" in streamed.text
    wide = {**GOOD, "lead": {**LEAD, "job_title": "x" * 500, "notes": "y" * 1000}}
    over = limited.post("/v1/score/batch", json={"leads": [wide] * 40})  # ~70 KB
    assert over.status_code == 413 and "65,536 bytes" in over.text


def test_too_many_events_are_refused_before_validation(limited: TestClient) -> None:
    events = [{"event_type": "page_view", "occurred_at": "2026-05-02T00:00:00Z"}] * 6
    response = limited.post("/v1/score", json={**GOOD, "events": events})
    assert response.status_code == 413 and "6 events, more than the limit of 5" in response.text
    batch = limited.post("/v1/score/batch", json={"leads": [GOOD, {**GOOD, "events": events}]})
    assert batch.status_code == 413 and "leads.1.events" in batch.text


def test_work_that_waited_past_its_deadline_is_not_done(
    serve_config: Config, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    limits = {"scoring_threads": 1, "deadline_seconds": 0.2}
    app = create_app(_config(serve_config, limits=limits), store)
    scored: list[str] = []
    real_score = app_module.score

    def counting(model: Any, request: Any) -> Any:
        scored.append(request.lead.lead_id)
        return real_score(model, request)

    monkeypatch.setattr(app_module, "score", counting)
    with TestClient(app) as client:
        busy = app.state.pool.submit(time.sleep, 0.6)  # the only scoring thread is busy
        late = client.post("/v1/score/batch", json={"leads": [GOOD]})
        busy.result()
        assert late.status_code == 503 and "waited over 0.2 s" in late.text
        assert late.headers["retry-after"] == "1" and scored == []
        assert client.post("/v1/score/batch", json={"leads": [GOOD]}).status_code == 200
        assert scored == ["h1"]


def test_requests_beyond_the_in_flight_bound_get_503_with_retry_after(
    serve_config: Config, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    limits = {"scoring_threads": 1, "max_in_flight": 1}
    app = create_app(_config(serve_config, limits=limits), store)
    with TestClient(app) as client:
        busy = app.state.pool.submit(time.sleep, 1.0)
        with ThreadPoolExecutor(1) as other:
            first = other.submit(client.post, "/v1/score/batch", json={"leads": [GOOD]})
            time.sleep(0.3)  # the batch is in flight, waiting for the busy thread
            shed = client.post("/v1/score", json=GOOD)
            busy.result()
            assert first.result(timeout=30).status_code == 200
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert "in flight" in shed.json()["detail"]
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/score", json=GOOD).status_code == 200


def test_health_readiness_metrics_and_model_answer_on_the_event_loop(client: TestClient) -> None:
    """Not in a thread pool that scoring can fill: each is a coroutine."""
    app = client.app
    routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}  # type: ignore[attr-defined]
    for path in ("/healthz", "/readyz", "/metrics", "/v1/model"):
        assert asyncio.iscoroutinefunction(routes[path].endpoint), path


# --------------------------------------------------------------------------- PII


def test_an_error_inside_scoring_logs_no_input(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5xx path: a fault whose message quotes the request is logged by type and frames."""

    def broken(model: Any, request: Any) -> Any:
        raise RuntimeError(f"cannot score {request.lead.email}")

    monkeypatch.setattr(app_module, "score", broken)
    caplog.set_level(logging.DEBUG)
    response = client.post("/v1/score", json=GOOD)
    assert response.status_code == 500 and SECRET not in response.text
    assert "RuntimeError" in caplog.text and SECRET not in caplog.text


# --------------------------------------------------------------------------- safe defaults


def test_no_keys_is_said_at_start_up(
    serve_config: Config,
    store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    monkeypatch.delenv("LEADSCORE_ADMIN_KEYS", raising=False)
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(serve_config, store)):
        pass
    assert "no API keys set" in caplog.text
    caplog.clear()
    monkeypatch.setenv("LEADSCORE_API_KEYS", "k1")
    with TestClient(create_app(serve_config, store)):
        pass
    assert "no API keys set" not in caplog.text


def test_with_keys_model_and_metrics_need_one_unless_public(
    serve_config: Config, book_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSCORE_API_KEYS", "k1")
    monkeypatch.setenv("LEADSCORE_ADMIN_KEYS", "root")
    with TestClient(create_app(serve_config, book_store)) as client:
        for path in ("/v1/model", "/metrics"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"X-API-Key": "bad"}).status_code == 403, path
            assert client.get(path, headers={"X-API-Key": "k1"}).status_code == 200, path
        model = client.get("/v1/model", headers={"X-API-Key": "k1"})
        assert model.json()["account_history"]["source"] == "files"
        assert str(book_store.current.accounts.source) not in model.text  # type: ignore[union-attr]
        assert "/" not in model.json()["account_history"]["source"]
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    public = _config(serve_config, public_info=True)
    with TestClient(create_app(public, book_store)) as client:
        assert client.get("/v1/model").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.post("/v1/score", json=GOOD).status_code == 401
