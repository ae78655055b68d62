"""The batch tests' model and snapshot, on the session's shared trained registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from common.config import build_config
from features.reader import Snapshot, read_snapshot
from serving.model_store import LoadedModel, load_model

#: An as-of time inside the synthetic data, where several hundred MQLs are open.
AS_OF = pd.Timestamp("2026-04-15T12:00:00Z")
LEADSCORE = str(Path(sys.executable).with_name("leadscore"))


@pytest.fixture(scope="session")
def registry(trained_store: dict[str, str]) -> dict[str, str]:
    """The shared model (read only): snapshot folder, tracking URI and the CLI env."""
    return trained_store


@pytest.fixture(scope="session")
def model(registry: dict[str, str]) -> LoadedModel:
    return load_model("models:/leadscore/1", registry["tracking"])


@pytest.fixture(scope="session")
def snapshot(registry: dict[str, str], model: LoadedModel) -> Snapshot:
    source = build_config({"source": {"path": registry["snapshot"]}}).source
    return read_snapshot(model.config.model_copy(update={"source": source}))


@pytest.fixture
def cli_env(registry: dict[str, str]) -> dict[str, str]:
    """The environment of a `leadscore predict` subprocess against the test registry."""
    return {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": registry["LEADSCORE__MLFLOW__ARTIFACT_LOCATION"],
        "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
    }
