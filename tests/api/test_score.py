"""The API with TestClient: answers, no training/serving skew, and 4xx for bad input."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from common.config import Config, build_config
from features.pipeline import build_features
from features.reader import read_snapshot
from serving.accounts import read_book
from serving.app import create_app
from serving.model_store import ModelStore, ModelUnavailableError
from tests.api.conftest import request_for

pytestmark = pytest.mark.api


def _mql_lead_ids(leads: pd.DataFrame, n: int, seed: int = 0) -> list[str]:
    mqls = leads.loc[leads["mql_at"].notna(), "lead_id"].to_numpy()
    return list(np.random.default_rng(seed).choice(mqls, n, replace=False))


def test_score_one_lead(client: TestClient, leads: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    lead_id = _mql_lead_ids(leads[0], 1)[0]
    as_of = leads[0].loc[leads[0]["lead_id"] == lead_id, "mql_at"].iloc[0]
    response = client.post("/v1/score", json=request_for(*leads, lead_id, as_of))
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0 < body["probability"] < 1 and body["tier"] in {"A", "B", "C", "D"}
    assert body["model"] == {"name": "leadscore", "version": "1"}
    # scored at its MQL: age 0, as of its mql_at, inside what the model covers
    assert body["age_days"] == 0 and body["note"] is None
    assert pd.Timestamp(body["as_of"]) == as_of
    older = request_for(*leads, lead_id, as_of + pd.Timedelta(days=30))
    later = client.post("/v1/score", json=older).json()
    assert later["age_days"] == 30 and later["note"] is None
    assert set(body["points"]) == {"total", "breakdown", "thresholds_passed"}
    assert sum(body["points"]["breakdown"].values()) == pytest.approx(body["points"]["total"])
    for reason in body["reasons_positive"]:
        assert reason["contribution"] > 0 and "raises the chance" in reason["sentence"]
    for reason in body["reasons_negative"]:
        assert reason["contribution"] < 0 and "lowers the chance" in reason["sentence"]
    assert (
        len(body["reasons_positive"]) <= 3 and body["reasons_positive"] + body["reasons_negative"]
    )


def _batch_features(
    store: ModelStore, registry: dict[str, str], frame: pd.DataFrame, ids: list[str]
) -> pd.DataFrame:
    """`build_features` on the whole snapshot at each lead's MQL time, as training computes it."""
    assert store.current is not None
    config = store.current.config.model_copy(
        update={"source": build_config({"source": {"path": registry["snapshot"]}}).source}
    )
    rows = pd.DataFrame(
        {
            "lead_id": ids,
            "cutoff": frame.set_index("lead_id").loc[ids, "mql_at"].dt.as_unit("ms").to_numpy(),
        }
    )
    return build_features(read_snapshot(config), rows, config)


def test_api_and_batch_agree_with_the_account_history(
    book_client: TestClient,
    client: TestClient,
    leads: tuple[pd.DataFrame, pd.DataFrame],
    book_store: ModelStore,
    registry: dict[str, str],
) -> None:
    """No training/serving skew: with `serve.accounts`, a posted lead scores exactly as the
    batch path scores it on the whole snapshot, account features included. Without it, the
    account features are unknown (NaN), and the answer says so."""
    frame = leads[0]
    ids = _mql_lead_ids(frame, 25, seed=11)
    assert frame.set_index("lead_id").loc[ids, "account_id"].notna().all()
    features = _batch_features(book_store, registry, frame, ids)
    assert book_store.current is not None
    scorer = book_store.current.scorer
    expected = scorer.score(features)
    account_columns = [c for c in features.columns if c.startswith("account_")]
    blind = scorer.score(features.assign(**dict.fromkeys(account_columns, np.nan)))
    cutoffs = frame.set_index("lead_id").loc[ids, "mql_at"]
    history_as_of = book_client.get("/v1/model").json()["account_history"]["as_of"]
    moved = 0
    for i, lead_id in enumerate(ids):
        payload = request_for(*leads, lead_id, cutoffs.iloc[i])
        body = book_client.post("/v1/score", json=payload).json()
        assert body["probability"] == pytest.approx(expected["probability"].iloc[i], abs=1e-12)
        assert body["tier"] == expected["tier"].iloc[i]
        assert body["account"] == {
            "known": True,
            "other_leads": int(features["account_other_leads"].iloc[i]),
            "history_as_of": history_as_of,
        }
        unknown = client.post("/v1/score", json=payload).json()
        assert unknown["probability"] == pytest.approx(blind["probability"].iloc[i], abs=1e-12)
        assert unknown["account"] == {"known": False, "other_leads": None, "history_as_of": None}
        moved += abs(unknown["probability"] - body["probability"]) > 0.01
    assert moved >= 5  # the history matters: the account features carry signal


def test_model_describes_its_account_history(
    book_client: TestClient,
    client: TestClient,
    leads: tuple[pd.DataFrame, pd.DataFrame],
    book_store: ModelStore,
    registry: dict[str, str],
) -> None:
    frame, events = leads
    history = book_client.get("/v1/model").json()["account_history"]
    assert book_store.current is not None
    # a plain folder (as scripts pass it) reads the same book
    alone = read_book(registry["snapshot"], book_store.current.config)
    assert (alone.accounts, alone.leads, alone.events) == (
        history["accounts"],
        history["leads"],
        history["events"],
    )
    assert history["accounts"] == frame["account_id"].nunique()
    assert history["leads"] == int(frame["account_id"].notna().sum())
    assert 0 < history["events"] <= len(events)
    assert client.get("/v1/model").json()["account_history"] is None
    no_account = {"lead": {"lead_id": "solo", "created_at": "2026-05-01T00:00:00Z"}}
    assert book_client.post("/v1/score", json=no_account).json()["account"] is None


def test_account_history_that_cannot_be_read_keeps_the_model_out(
    serve_config: Config, book_store: ModelStore, tmp_path: Path
) -> None:
    """A missing or broken history fails the load with a message naming it (the server stays
    not ready, or keeps its old model on reload), never serves without it silently."""
    empty = tmp_path / "broken"
    empty.mkdir()
    (empty / "leads.csv").write_text("lead_id,account_id,created_at\n")
    (empty / "events.csv").write_text("lead_id,event_type,occurred_at\n")
    for source, named in ((tmp_path / "absent", "absent"), (empty, "leads.csv")):
        store = ModelStore(
            serve_config.serve.model_uri, serve_config.mlflow.tracking_uri, accounts=str(source)
        )
        with pytest.raises(ModelUnavailableError, match="account history") as raised:
            store.reload()
        assert named in str(raised.value) and store.current is None


@pytest.mark.postgres
def test_account_history_from_postgresql_with_its_own_tables(
    serve_config: Config, book_store: ModelStore, registry: dict[str, str]
) -> None:
    """`serve.accounts` as a source mapping: a PostgreSQL schema and table names of its own
    give the same book as the snapshot folder."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    schema = f"leadscore_accounts_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    folder = Path(registry["snapshot"])
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        pd.read_parquet(folder / "leads.parquet").to_sql(
            "crm_leads", engine, schema=schema, index=False
        )
        pd.read_parquet(folder / "events.parquet").to_sql(
            "crm_events", engine, schema=schema, index=False, chunksize=50_000
        )
        source = {"url": url, "schema": schema, "leads": "crm_leads", "events": "crm_events"}
        settings = build_config({**serve_config.model_dump(), "serve": {"accounts": source}})
        assert settings.serve.accounts is not None
        store = ModelStore(
            settings.serve.model_uri, settings.mlflow.tracking_uri, accounts=settings.serve.accounts
        )
        got = store.reload().accounts
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
    want = book_store.current.accounts if book_store.current else None
    assert got is not None and want is not None
    assert got.source == f"{url} (schema {schema})"
    assert got.spans == want.spans
    for name in ("lead_ids", "created_ms", "mql_ms", "sql_ms", "event_start", "event_ms"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_the_poll_rereads_a_changed_account_history(
    serve_config: Config, registry: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    shutil.copytree(registry["snapshot"], folder)
    store = ModelStore(
        serve_config.serve.model_uri, serve_config.mlflow.tracking_uri, accounts=str(folder)
    )
    first = store.reload()
    assert first.accounts is not None and store.poll_once() is False
    events = pd.read_parquet(folder / "events.parquet")
    events.iloc[: len(events) // 2].to_parquet(folder / "events.parquet")
    assert store.poll_once() is True
    now = store.current
    assert now is not None and now.accounts is not None
    assert now.version == first.version and now.accounts.events < first.accounts.events


def test_lead_id_changes_nothing_and_naive_times_are_utc(
    client: TestClient, leads: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    lead_id = _mql_lead_ids(leads[0], 1, seed=3)[0]
    as_of = pd.Timestamp("2026-06-01", tz="UTC")
    payload = request_for(*leads, lead_id, as_of)
    first = client.post("/v1/score", json=payload).json()
    renamed = {**payload, "lead": {**payload["lead"], "lead_id": "someone-else"}}
    naive = {
        **payload,
        "events": [
            {**e, "occurred_at": pd.Timestamp(e["occurred_at"]).tz_convert(None).isoformat()}
            for e in payload["events"]
        ],
        "as_of": "2026-06-01T00:00:00",
    }
    for variant in (renamed, naive):
        again = client.post("/v1/score", json=variant).json()
        assert again["probability"] == first["probability"]
        assert again["reasons_positive"] == first["reasons_positive"]


def test_unknown_event_types_and_no_events(client: TestClient) -> None:
    lead = {"lead_id": "x1", "created_at": "2026-05-01T00:00:00Z", "job_title": "CTO"}
    events = [
        {"event_type": "Chat Started", "occurred_at": "2026-05-02T10:00:00Z"},
        {"event_type": "demo_request", "occurred_at": "2026-05-03T10:00:00+02:00"},
    ]
    body = client.post(
        "/v1/score", json={"lead": lead, "events": events, "as_of": "2026-05-04T00:00:00Z"}
    ).json()
    assert body["unknown_event_types"] == {"Chat Started": 1}
    empty = client.post("/v1/score", json={"lead": lead, "events": []})
    assert empty.status_code == 200 and 0 < empty.json()["probability"] < 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"lead": {"lead_id": "a", "company_size": [1]}}, "company_size"),
        (
            {"lead": {"lead_id": "a"}, "events": [{"event_type": "x", "occurred_at": "soon"}]},
            "occurred_at",
        ),
        ({"lead": {"lead_id": "a"}, "events": [{"occurred_at": "2026-01-01"}]}, "event_type"),
        ({"lead": {}}, "lead_id"),
        ({"lead": {"lead_id": "a"}, "as_of": "yesterday"}, "as_of"),
    ],
)
def test_wrong_input_gets_422_naming_the_field(
    client: TestClient, payload: dict, field: str
) -> None:
    response = client.post("/v1/score", json=payload)
    assert response.status_code == 422
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"])


def test_batch_and_its_limit(client: TestClient) -> None:
    one = {"lead": {"lead_id": "b1", "created_at": "2026-05-01T00:00:00Z"}, "events": []}
    ok = client.post("/v1/score/batch", json={"leads": [one] * 5})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 5
    too_many = client.post("/v1/score/batch", json={"leads": [one] * 6})
    assert too_many.status_code == 413 and "limit of 5" in too_many.json()["detail"]


def test_model_health_and_metrics(client: TestClient) -> None:
    model = client.get("/v1/model").json()
    assert model["version"] == "1" and model["alias"] == "champion"
    assert model["uri"].startswith("models:/") and model["uri"].endswith("@champion")
    assert "roc_auc" in model["test_metrics"] and set(model["tiers"]) >= {"A", "B", "C"}
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/v1/score", json={"lead": {"lead_id": "m", "created_at": "2026-05-01"}})
    text = client.get("/metrics").text
    assert 'leadscore_requests_total{endpoint="/v1/score",status="200"}' in text
    assert "leadscore_request_seconds_bucket" in text and "leadscore_scores_total{tier=" in text


def test_no_model_is_a_clear_503(serve_config: Config) -> None:
    config = build_config(
        {**serve_config.model_dump(), "serve": {"startup_attempts": 1, "startup_wait_seconds": 0}}
    )
    missing = ModelStore("models:/nothing@champion", serve_config.mlflow.tracking_uri)
    with TestClient(create_app(config, missing)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no model loaded" in ready.json()["detail"]
        scored = client.post("/v1/score", json={"lead": {"lead_id": "a"}})
        assert scored.status_code == 503 and "nothing" in scored.json()["detail"]


def test_api_keys(serve_config: Config, store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_API_KEYS", "k1,k2")
    monkeypatch.setenv("LEADSCORE_ADMIN_KEYS", "root")
    with TestClient(create_app(serve_config, store)) as client:
        body = {"lead": {"lead_id": "a", "created_at": "2026-05-01T00:00:00Z"}}
        assert client.post("/v1/score", json=body).status_code == 401
        assert client.post("/v1/score", json=body, headers={"X-API-Key": "nope"}).status_code == 403
        assert client.post("/v1/score", json=body, headers={"X-API-Key": "k2"}).status_code == 200
        assert client.post("/v1/admin/reload", headers={"X-API-Key": "k1"}).status_code == 403
        reloaded = client.post("/v1/admin/reload", headers={"X-API-Key": "root"})
        assert reloaded.status_code == 200 and reloaded.json()["version"] == "1"
        assert client.get("/healthz").status_code == 200  # health needs no key


def test_email_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "jane.secret@example.org"
    lead = {"lead_id": "p", "email": secret, "created_at": "2026-05-01"}
    assert client.post("/v1/score", json={"lead": lead}).status_code == 200
    bad = client.post("/v1/score", json={"lead": {**lead, "company_size": "many"}})
    assert bad.status_code == 422 and "company_size" in bad.text and secret not in bad.text
    assert secret not in caplog.text


def test_the_alias_poll_reloads_a_promoted_version(registry: dict[str, str], tmp_path) -> None:
    """A new champion is picked up by the poll; the registry here is a copy of the shared one."""
    import shutil

    import mlflow

    from common.config import MlflowConfig
    from training import tracking

    database = tmp_path / "mlflow.db"
    shutil.copy(registry["tracking"].removeprefix("sqlite:///"), database)
    uri = f"sqlite:///{database}"
    store = ModelStore("models:/leadscore@champion", uri)
    store.reload()
    assert store.poll_once() is False  # nothing moved
    client = mlflow.MlflowClient(tracking_uri=uri)
    source = client.get_model_version("leadscore", "1").source
    settings = MlflowConfig(tracking_uri=uri)
    version = tracking.register(settings, source)
    tracking.promote(settings, version)
    assert store.poll_once() is True
    assert store.current is not None and store.current.version == version == "2"
