"""The real X Education export builds into a training set through the shipped mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import Config, load_config
from features.pipeline import build_training_set, feature_spec
from features.reader import read_snapshot

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "examples" / "x-education.yaml"
LEAKING = ("Tags", "Lead Quality", "Lead Profile")
pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def config() -> Config:
    config = load_config(MAPPING, environ={})
    assert config.source.path is not None
    if not (config.source.path / "Leads.csv").is_file():
        pytest.fail(f"the shared dataset is missing: {config.source.path}/Leads.csv")
    return config


@pytest.fixture(scope="module")
def training_set(config: Config) -> pd.DataFrame:
    frame, counts = build_training_set(read_snapshot(config), config)
    assert counts.kept == len(frame)
    return frame


def test_every_lead_becomes_a_row_with_its_outcome(training_set: pd.DataFrame) -> None:
    assert len(training_set) == 9240
    assert training_set["lead_id"].is_unique
    assert training_set["label"].mean() == pytest.approx(0.385, abs=0.001)
    assert training_set["cutoff"].isna().all()  # flat: no timestamps


def test_leaking_columns_are_excluded_and_select_is_missing(
    config: Config, training_set: pd.DataFrame
) -> None:
    snap = read_snapshot(config)
    assert set(LEAKING) <= set(snap.report.excluded_columns)
    assert not any("tags" in c or "quality" in c or "profile" in c for c in training_set.columns)
    # the form's 'Select' default reads as missing, never as a category
    categorical = training_set.select_dtypes(include="str")
    assert not categorical.isin(["select", "Select"]).any().any()
    assert training_set["custom_specialization"].isna().mean() > 0.3


def test_features_follow_the_spec_and_carry_signal(
    config: Config, training_set: pd.DataFrame
) -> None:
    spec = feature_spec(config, flat=True)
    assert list(training_set.columns[3:]) == list(spec.names)
    assert "custom_lead_origin" in spec.categorical
    assert "n_email_open_7d" not in spec.names  # no events in a flat export
    time_on_site = training_set["custom_total_time_spent_on_website"].to_numpy()
    label = training_set["label"].to_numpy()
    # converted leads spent far longer on the website: the engagement columns arrived intact
    assert np.nanmedian(time_on_site[label == 1]) > 2 * np.nanmedian(time_on_site[label == 0])
    assert set(training_set["seniority"].unique()) >= {"intern", "individual"}  # from occupation
