"""`load_and_read`: the snapshot read while the model loads is the one the model reads; a
model that cannot be loaded fails with its own error."""

from __future__ import annotations

import pandas as pd
import pytest

from common.config import Config, build_config
from features.contract import ContractError
from features.reader import Snapshot
from serving.batch_io import load_and_read, read_snapshot_for, same_reading
from serving.model_store import LoadedModel

pytestmark = pytest.mark.integration


def _settings(registry: dict[str, str], **overrides: object) -> Config:
    return build_config({"source": {"path": registry["snapshot"]}, **overrides})


def _same(got: Snapshot, want: Snapshot) -> None:
    pd.testing.assert_frame_equal(got.leads, want.leads)
    assert got.as_of == want.as_of and len(got.events) == len(want.events)


def test_the_settings_reading_is_kept_when_it_is_the_models(
    registry: dict[str, str], model: LoadedModel, snapshot: Snapshot
) -> None:
    """Settings that differ from the model's config only where no reader looks (the served
    model, the tracking store) keep the read made while the model loaded."""
    settings = _settings(
        registry,
        serve={"model_uri": "models:/leadscore/1", "reasons": 0},
        mlflow={"tracking_uri": registry["tracking"]},
    )
    assert same_reading(settings, model.config.model_copy(update={"source": settings.source}))
    loaded, read = load_and_read(settings, lambda: model)
    assert loaded is model
    _same(read, snapshot)


def test_the_models_reading_wins_when_the_settings_read_otherwise(
    registry: dict[str, str], model: LoadedModel
) -> None:
    """Settings with another as-of time read the snapshot otherwise: the model's reading is
    what comes back, as `read_snapshot_for` gives it."""
    settings = _settings(registry, as_of="2026-03-01T00:00:00Z")
    assert not same_reading(settings, model.config)
    _, read = load_and_read(settings, lambda: model)
    want = read_snapshot_for(model.config, settings)
    _same(read, want)
    assert read.as_of != pd.Timestamp("2026-03-01", tz="UTC")


def test_a_model_that_cannot_load_fails_with_its_own_error(registry: dict[str, str]) -> None:
    """The load's error, not the read's, even when the source cannot be read either."""

    def load() -> LoadedModel:
        raise ContractError("cannot load models:/missing/1")

    settings = _settings(registry, source={"path": "/nonexistent/snapshot"})
    with pytest.raises(ContractError, match="cannot load models:/missing/1"):
        load_and_read(settings, load)
