"""The API tests' clients and stores, on the session's shared trained registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from common.config import Config, build_config
from serving.app import create_app
from serving.model_store import ModelStore


@pytest.fixture(scope="session")
def registry(trained_store: dict[str, str]) -> dict[str, str]:
    """The shared champion (read only): snapshot folder, tracking URI and root folder."""
    return {key: trained_store[key] for key in ("snapshot", "tracking", "root")}


@pytest.fixture(scope="session")
def serve_config(registry: dict[str, str]) -> Config:
    return build_config(
        {"mlflow": {"tracking_uri": registry["tracking"]}, "serve": {"batch_limit": 5}}
    )


@pytest.fixture(scope="session")
def store(serve_config: Config) -> ModelStore:
    store = ModelStore(serve_config.serve.model_uri, serve_config.mlflow.tracking_uri)
    store.reload()
    return store


@pytest.fixture(scope="session")
def book_store(serve_config: Config, registry: dict[str, str]) -> ModelStore:
    """The champion with the snapshot's account history (serve.accounts)."""
    store = ModelStore(
        serve_config.serve.model_uri,
        serve_config.mlflow.tracking_uri,
        accounts=registry["snapshot"],
    )
    store.reload()
    return store


def _open_client(
    serve_config: Config, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """A TestClient of the app on `store`, with no API keys set."""
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    monkeypatch.delenv("LEADSCORE_ADMIN_KEYS", raising=False)
    with TestClient(create_app(serve_config, store)) as test_client:
        yield test_client


@pytest.fixture
def book_client(
    serve_config: Config, book_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    yield from _open_client(serve_config, book_store, monkeypatch)


@pytest.fixture
def client(
    serve_config: Config, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    yield from _open_client(serve_config, store, monkeypatch)


@pytest.fixture(scope="session")
def leads(registry: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = Path(registry["snapshot"])
    return pd.read_parquet(folder / "leads.parquet"), pd.read_parquet(folder / "events.parquet")


def request_for(
    leads: pd.DataFrame, events: pd.DataFrame, lead_id: str, as_of: pd.Timestamp
) -> dict[str, object]:
    """The JSON a CRM webhook would post for one lead: its profile and its events."""
    row = leads.loc[leads["lead_id"] == lead_id].iloc[0]
    profile = {
        k: (None if pd.isna(v) else (v.isoformat() if isinstance(v, pd.Timestamp) else v))
        for k, v in row.items()
        if k not in ("sql_at", "disqualified_at")
    }
    if profile.get("company_size") is not None:
        profile["company_size"] = float(profile["company_size"])
    own = events[events["lead_id"] == lead_id]
    return {
        "lead": profile,
        "events": [
            {
                "event_type": e.event_type,
                "occurred_at": e.occurred_at.isoformat(),
                **({"campaign": e.campaign} if isinstance(e.campaign, str) else {}),
                **({"url": e.url} if isinstance(e.url, str) else {}),
            }
            for e in own.itertuples()
        ],
        "as_of": as_of.isoformat(),
    }
