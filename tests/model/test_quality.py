"""Model behaviour on the synthetic CRM, judged against the generator's known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import Config, build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from features.truth import truth_of_rows
from training.train import TrainResult, train_model

pytestmark = pytest.mark.slow
LEADS = 60_000


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quality") / "snapshot"
    write_snapshot(generate(LEADS, seed=101), folder)
    return folder


@pytest.fixture(scope="module")
def config(snapshot_dir: Path) -> Config:
    return build_config({"source": {"path": str(snapshot_dir)}})


@pytest.fixture(scope="module")
def training(config: Config, snapshot_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    training_set, _ = build_training_set(read_snapshot(config), config)
    truth = truth_of_rows(snapshot_dir, training_set, config.horizon_days)  # at each row's age
    assert truth is not None
    return training_set, truth


@pytest.fixture(scope="module")
def result(training: tuple[pd.DataFrame, np.ndarray], config: Config) -> TrainResult:
    training_set, truth = training
    return train_model(training_set, config, truth=truth)


def test_model_ranks_almost_as_well_as_the_truth(result: TrainResult) -> None:
    model, truth = result.metrics["test"]["model"], result.metrics["test"]["truth"]
    # the goals hold on the default 400k-lead snapshot (AUC within 0.005, Brier within 2%:
    # `bench/quality.py`); a model learns less from this one's ~18k rows (measured: AUC 0.013
    # and Brier 4.4% behind the truth)
    assert model["roc_auc"] > truth["roc_auc"] - 0.02
    assert model["brier"] < truth["brier"] * 1.07


def test_probabilities_are_calibrated(result: TrainResult) -> None:
    model, truth = result.metrics["test"]["model"], result.metrics["test"]["truth"]
    # ECE has a sampling floor on a few thousand rows; the truth's own ECE measures it
    assert model["ece"] < truth["ece"] + 0.015
    assert 0.85 < model["calibration_slope"] < 1.15
    assert abs(model["calibration_intercept"]) < 0.15


def test_tiers_order_conversion(result: TrainResult) -> None:
    rates = [row["conversion_rate"] for row in result.metrics["tiers_test"]]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > 2 * rates[-1]


def test_no_feature_is_flagged_as_leaking(result: TrainResult) -> None:
    assert result.flagged == []
    assert result.audit["auc"].max() < 0.8


def test_training_is_deterministic(
    training: tuple[pd.DataFrame, np.ndarray], config: Config
) -> None:
    small = training[0].iloc[:8000]
    one = train_model(small, config).scorer
    two = train_model(small, config).scorer
    assert one.booster.model_to_string() == two.booster.model_to_string()
    assert one.calibrator == two.calibrator and one.tiers == two.tiers
