"""`training.mql_first`: boost the MQL moment first, then every age on top of it; and a
model calibrated by age (`by_age`) on every scoring path.

The first stage sees only the rows at mql_at and only the features of the MQL moment (fit
attributes and the `_at_mql` counts), so its trees score a lead the same at any age; the second
stage goes on boosting the same booster on every row. Checked on a small synthetic snapshot:
the saved booster's first trees are exactly the first stage, they never split on today's
counts or the age, and the later trees do. Where there is no MQL moment to fit (counts at
mql_at switched off) the run says so and fits one booster as usual.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import Config, build_config
from features.fit import fit_names
from features.pipeline import at_mql_names, build_training_set
from features.reader import read_snapshot
from features.spec import feature_meanings
from features.synthetic import generate, write_snapshot
from training.model import booster_params, moment_columns, moment_only
from training.reasons import ReasonPlan
from training.scorer import Scorer, feature_matrix
from training.scoring import score_frame
from training.train import TrainResult, feature_frame, fit_mql_moment, train_model

NAMES = ("seniority", "n_demo_request_7d", "days_since_mql", "n_demo_request_7d_at_mql")


def test_the_moment_is_the_fit_attributes_and_the_counts_at_mql() -> None:
    mask = moment_columns(NAMES, {"seniority", "n_demo_request_7d_at_mql", "absent"})
    assert mask.tolist() == [True, False, False, True]


def test_moment_only_blanks_every_other_column_of_a_copy() -> None:
    matrix = np.arange(8.0).reshape(2, 4)
    blanked = moment_only(matrix, np.ones(2, dtype=bool), np.array([True, False, False, True]))
    assert np.isnan(blanked[:, [1, 2]]).all()
    np.testing.assert_array_equal(blanked[:, [0, 3]], matrix[:, [0, 3]])
    assert not np.isnan(matrix).any()  # the input is untouched


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mql_first") / "snapshot"
    write_snapshot(generate(6000, seed=5), folder)
    return folder


def _config(folder: Path, **training: object) -> Config:
    return build_config(
        {
            "source": {"path": str(folder)},
            "training": {
                "model": "ages",  # mql_first is the ages model's option
                "num_threads": 1,
                "params": {"learning_rate": 0.1},
                **training,
            },
        }
    )


@pytest.fixture(scope="module")
def fitted(snapshot: Path) -> tuple[Config, pd.DataFrame, TrainResult]:
    config = _config(snapshot, mql_first=True)
    training_set, _ = build_training_set(read_snapshot(config), config)
    return config, training_set, train_model(training_set, config)


@pytest.mark.slow
def test_the_first_trees_are_the_mql_moment_and_the_later_ones_see_every_age(
    fitted: tuple[Config, pd.DataFrame, TrainResult],
) -> None:
    config, training_set, result = fitted
    spec = result.scorer.spec
    features = feature_frame(training_set)
    matrix = feature_matrix(features, spec)
    split = result.split
    params = booster_params(config.training.params, config.training.seed, 1)
    first = fit_mql_moment(
        matrix, training_set["label"].to_numpy(), features, split.mask("train"),
        split.mask("validation"), spec, params, config,
    )  # fmt: skip
    assert first is not None
    k = first.current_iteration()
    booster = result.scorer.booster
    assert 0 < k < booster.current_iteration()
    # the saved booster's first k rounds score every row as the first stage does
    np.testing.assert_allclose(
        booster.predict(matrix, num_iteration=k, raw_score=True),
        first.predict(matrix, raw_score=True),
        rtol=0,
        atol=1e-9,
    )
    trees = booster.trees_to_dataframe()
    used = trees.dropna(subset=["split_feature"])
    moment = set(fit_names(config.custom_fields)) | set(at_mql_names(config))
    early = set(used.loc[used["tree_index"] < k, "split_feature"])
    assert early and early <= moment
    later = set(used.loc[used["tree_index"] >= k, "split_feature"])
    assert later - moment, "the second stage should use today's counts or the age"
    assert not any("mql_first" in note for note in result.notes)


@pytest.mark.slow
def test_without_counts_at_mql_the_run_says_so_and_fits_one_booster(snapshot: Path) -> None:
    config = build_config(
        {**_config(snapshot, mql_first=True).model_dump(), "features": {"at_mql": False}}
    )
    training_set, _ = build_training_set(read_snapshot(config), config)
    result = train_model(training_set, config)
    assert any("training.mql_first" in note for note in result.notes)
    dumped = config.model_dump()
    plain_config = build_config({**dumped, "training": {**dumped["training"], "mql_first": False}})
    plain = train_model(training_set, plain_config)
    assert result.scorer.booster.model_to_string() == plain.scorer.booster.model_to_string()


@pytest.mark.slow
def test_an_age_aware_model_scores_alike_on_every_path(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model calibrated by age (`training.calibration: [by_age]`) gives one probability per
    row whether scored plainly (the batch job), with reasons (the API) or after a round trip
    through its files (MLflow's artifacts); and the same lead's probability changes with its
    age even where the booster's score does not."""
    import training.calibrate

    monkeypatch.setattr(training.calibrate, "BY_AGE_MIN_ROWS", 100)  # this snapshot is small
    config = _config(snapshot, mql_first=True, calibration=["by_age"])
    training_set, _ = build_training_set(read_snapshot(config), config)
    result = train_model(training_set, config)
    scorer = result.scorer
    assert scorer.calibrator.method == "by_age"
    features = feature_frame(training_set).iloc[:2000]
    plain = scorer.score(features)["probability"].to_numpy()
    plan = ReasonPlan.of(scorer.spec.names, feature_meanings(config))
    explained = score_frame(scorer, features, plan, top=3).probability
    np.testing.assert_allclose(explained, plain, rtol=1e-12)
    scorer.save(tmp_path / "model")
    again = Scorer.from_dir(tmp_path / "model").score(features)["probability"].to_numpy()
    np.testing.assert_array_equal(again, plain)
    # one row, older: the calibrator reads the age from the row itself
    matrix = feature_matrix(features.iloc[:1], scorer.spec)
    older = matrix.copy()
    older[0, scorer.spec.names.index("days_since_mql")] = 80.0
    raw = scorer.raw_score(matrix)
    assert scorer.calibrate(raw, older)[0] != scorer.calibrate(raw, matrix)[0]
