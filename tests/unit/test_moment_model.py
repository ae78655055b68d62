"""`training.model: moment`: a lead ranked as it stood at mql_at, its score bent by its age.

Checked on a small synthetic snapshot: the moment booster never reads today's counts or the
age; within one age the bend keeps the moment booster's order; the generator's leads fade with
age, and the bend learns it; the reasons add up to the score on every path (plain, with
reasons, after a round trip through the files and through the Spark engine's texts); and where
there is no MQL moment the run says so and fits the ages model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from common.config import Config, build_config
from features.fit import fit_names
from features.pipeline import at_mql_names, build_training_set
from features.reader import read_snapshot
from features.spec import feature_meanings
from features.synthetic import generate, write_snapshot
from training.age_line import age_knots
from training.bend import MOMENT_FOLDS, Bend, fit_bend
from training.reasons import ReasonPlan
from training.scorer import Scorer, feature_matrix
from training.scoring import score_frame
from training.train import (
    TrainResult,
    at_mql_weights,
    bend_rows_of,
    feature_frame,
    fit_after,
    lead_folds,
    loss_gain,
    train_model,
)

AGE = "days_since_mql"


def test_folds_keep_a_lead_whole_and_are_about_even() -> None:
    leads = np.repeat(np.arange(400), 3)
    fold = lead_folds(leads, seed=1)
    assert (fold.reshape(400, 3) == fold.reshape(400, 3)[:, :1]).all()
    counts = np.bincount(fold[::3])
    assert counts.tolist() == [400 // MOMENT_FOLDS] * MOMENT_FOLDS


def test_each_fold_booster_learns_from_the_other_folds_alone() -> None:
    """On labels that are noise keyed to each row, a booster scores its own training rows
    well and rows it never saw no better than chance: cross-fitted scores are the second."""
    from sklearn.metrics import roc_auc_score

    from training.model import fit_folds
    from training.scorer import ModelSpec

    rng = np.random.default_rng(4)
    rows = 4000
    x = rng.normal(size=(rows, 3))
    y = (rng.random(rows) < 0.5).astype(np.int64)
    fold = lead_folds(np.arange(rows), seed=2)
    spec = ModelSpec(names=("a", "b", "c"), kinds=("numeric",) * 3, categories={})
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "verbosity": -1,
        "seed": 1,
        "deterministic": True,
        "num_threads": 1,
    }
    boosters = fit_folds((x, y), fold, MOMENT_FOLDS, spec, params, 60)
    assert len(boosters) == MOMENT_FOLDS
    crossed = np.empty(rows)
    for k, booster in enumerate(boosters):
        assert booster.num_trees() == 60
        assert booster is not None
        crossed[fold == k] = booster.predict(x[fold == k], raw_score=True)
        seen = fold != k
        assert roc_auc_score(y[seen], booster.predict(x[seen], raw_score=True)) > 0.75
    assert abs(roc_auc_score(y, crossed) - 0.5) < 0.05
    # every row in one fold: nothing to cross-fit it with; the other folds' boosters see all
    lone = fit_folds((x, y), np.zeros(rows, dtype=np.int64), MOMENT_FOLDS, spec, params, 5)
    assert lone[0] is None
    assert all(b is not None and b.num_trees() == 5 for b in lone[1:])


def test_the_average_curve_is_the_bend_of_each_row() -> None:
    from training.bend import bend_params

    train, valid = _fading(20_000, 5), _fading(5_000, 6)
    bend = fit_bend(train, valid, -1.0, bend_params(20_000, {"seed": 3, "num_threads": 1}), 200, 20)
    age = train[1]
    np.testing.assert_array_equal(bend.at_average(age), bend.bent(np.full_like(age, -1.0), age))
    assert bend.base == pytest.approx(float(bend.at_average(age).mean()), abs=1e-12)


def _fading(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leads whose chance fades with age, the weak ones faster: logit p = s at age 0, less
    one log-odds at 90 days for the strong, and more for the weaker."""
    rng = np.random.default_rng(seed)
    score = rng.normal(-1.0, 1.5, rows)
    age = rng.integers(0, 90, rows).astype(np.float64)
    fade = age / 90.0
    logit = score - fade * (1.0 + np.maximum(0.0, -score))
    return score, age, (rng.random(rows) < expit(logit)).astype(np.int64)


def test_the_bend_keeps_the_order_within_an_age_and_learns_the_fade() -> None:
    from training.bend import bend_params

    train, valid = _fading(40_000, 1), _fading(10_000, 2)
    params = bend_params(40_000, {"seed": 3, "num_threads": 1})
    bend = fit_bend(train, valid, -1.0, params, 500, 30, knots=age_knots(90))
    grid = np.linspace(-5, 4, 200)
    for age in (0.0, 30.0, 85.0):
        bent = bend.bent(grid, np.full_like(grid, age))
        assert (np.diff(bent) > 0).all(), age  # strictly: no ties among leads of one age
    weak, strong = np.array([-3.0]), np.array([3.0])
    old, young = np.array([85.0]), np.array([0.0])
    # the weak lead loses more log-odds with age than the strong one
    weak_drop = bend.bent(weak, young) - bend.bent(weak, old)
    strong_drop = bend.bent(strong, young) - bend.bent(strong, old)
    assert weak_drop[0] > strong_drop[0] + 1.0, (weak_drop, strong_drop)
    again = Bend.from_json(bend.to_json())
    np.testing.assert_array_equal(again.bent(grid, np.zeros_like(grid)), bend.bent(grid, 0 * grid))


def test_the_bends_extra_rows_take_their_leads_score_at_mql_at() -> None:
    moment = np.array([0.5, 9.0, -1.0, 7.0])
    age = np.array([0.0, 12.0, 0.0, 30.0])
    leads = np.array(["a", "a", "b", "c"])  # c has no row at mql_at in this slice
    extra = pd.DataFrame(
        {"lead_id": ["b", "c", "a", "z"], "age_days": [40.0, 5.0, 3.0, 1.0], "label": [1, 0, 0, 1]}
    )
    score, ages, label = bend_rows_of(extra, moment, age, leads) or ((), (), ())
    assert list(score) == [-1.0, 0.5] and list(ages) == [40.0, 3.0] and list(label) == [1, 0]
    assert bend_rows_of(extra.iloc[:0], moment, age, leads) is None
    assert bend_rows_of(None, moment, age, leads) is None


def test_the_rows_at_mql_at_keep_their_share_of_the_bends_weight() -> None:
    feature_ages = np.array([0.0] * 40 + [5.0] * 60)
    ages = np.concatenate([feature_ages, np.full(300, 20.0)])  # the extra rows: all later
    weight = at_mql_weights(ages, feature_ages)
    assert weight.mean() == pytest.approx(1.0)
    assert weight[ages == 0].sum() / weight.sum() == pytest.approx(0.4)
    assert np.ptp(weight[ages > 0]) == 0  # every later row alike
    assert np.allclose(at_mql_weights(feature_ages, feature_ages), 1.0)


def test_a_loss_gain_counts_a_leads_rows_as_one_draw() -> None:
    rng = np.random.default_rng(4)
    leads = np.repeat(np.arange(5_000), 3)  # three rows per lead share its outcome
    truth = np.repeat(rng.normal(-1.5, 1.0, 5_000), 3)
    labels = np.repeat(rng.random(5_000), 3) < expit(truth)
    noise = truth + np.repeat(rng.normal(0.0, 0.05, 5_000), 3)
    # a score that only adds noise does not earn its place; one that knows more does
    gain, error = loss_gain(labels, truth, noise, leads)
    assert gain < 2 * error
    gain, error = loss_gain(labels, np.full_like(truth, -1.5), truth, leads)
    assert gain > 10 * error > 0
    # a lead's three rows as one draw: the error is about sqrt(3) times the rows' own
    _, rows_error = loss_gain(labels, np.full_like(truth, -1.5), truth, np.arange(truth.size))
    assert error == pytest.approx(np.sqrt(3) * rows_error, rel=0.15)


def _after_booster(seed: int, tells: bool) -> tuple[str, float]:
    """`fit_after` on leads seen at three ages each, one outcome per lead, scored by a bend
    (`bent`) that is right unless `tells`: then a demo request raises the chance. A page-view
    count and a per-lead value `x` are noise. Its text and its validation gain."""
    from training.scorer import learn_spec

    rng = np.random.default_rng(seed)
    leads = np.repeat(np.arange(12_000), 3)
    n = leads.size
    features = pd.DataFrame(
        {
            AGE: rng.uniform(0, 90, n),
            "n_demo_request_all": rng.poisson(0.3, n).astype(np.float64),
            "n_page_view_all": rng.poisson(2.0, n).astype(np.float64),
            "x": np.repeat(rng.normal(size=12_000), 3),
        }
    )
    bent = np.repeat(rng.normal(-2.0, 1.0, 12_000), 3) - features[AGE].to_numpy() / 60
    demo = (features["n_demo_request_all"].to_numpy() > 0).astype(np.float64)
    logit = bent + 0.8 * demo if tells else bent
    labels = (np.repeat(rng.random(12_000), 3) < expit(logit)).astype(np.int64)
    train = leads % 5 < 4
    gains: list[float] = []

    def measured(*args: np.ndarray) -> tuple[float, float]:
        gain, error = loss_gain(*args)
        gains.append(gain)
        return gain, error

    params = {"objective": "binary", "learning_rate": 0.1, "seed": 1, "num_threads": 1}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("training.train.loss_gain", measured)
        after = fit_after(
            features.to_numpy(dtype=np.float64),
            labels,
            bent,
            (train, ~train),
            leads[~train],
            learn_spec(features, set(), train),
            {**params, "verbosity": -1, "min_data_in_leaf": 50},
            build_config({"training": {"num_threads": 1}}),
        )
    return after, gains[0]


def test_the_after_booster_stays_where_what_came_after_tells() -> None:
    after, gain = _after_booster(11, tells=True)
    assert after != "" and gain > 0


def test_the_after_booster_goes_where_it_learnt_noise() -> None:
    """Early stopping picks the round at which the validation loss is lowest, so on noise the
    booster often shows a gain there: "any gain" would keep it; a one-sided test at 5% does not."""
    runs = [_after_booster(seed, tells=False) for seed in range(1, 9)]
    assert all(after == "" for after, _ in runs)
    assert sum(gain > 0 for _, gain in runs) >= 2, [gain for _, gain in runs]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("moment") / "snapshot"
    write_snapshot(generate(8000, seed=5), folder)
    return folder


def _config(folder: Path, **overrides: object) -> Config:
    return build_config(
        {
            "source": {"path": str(folder)},
            "training": {"num_threads": 1, "params": {"learning_rate": 0.1}, "model": "moment"},
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def fitted(snapshot: Path) -> tuple[Config, pd.DataFrame, TrainResult]:
    config = _config(snapshot)
    training_set, _ = build_training_set(read_snapshot(config), config)
    return config, training_set, train_model(training_set, config)


@pytest.mark.slow
def test_the_moment_booster_reads_the_mql_moment_alone_and_the_bend_fades_with_age(
    fitted: tuple[Config, pd.DataFrame, TrainResult],
) -> None:
    config, _, result = fitted
    scorer = result.scorer
    assert scorer.kind == "moment" and scorer.bend is not None
    assert not any("training.model moment" in note for note in result.notes)
    used = scorer.booster.trees_to_dataframe().dropna(subset=["split_feature"])
    moment = set(fit_names(config.custom_fields)) | set(at_mql_names(config))
    assert set(used["split_feature"]) <= moment
    # on the generator, a lead of average strength is less likely to convert the older it is
    average = np.array([scorer.bend.moment_mean])
    by_age = [scorer.bend.bent(average, np.array([float(a)]))[0] for a in (0, 28, 56, 84)]
    assert by_age[0] > by_age[2] > by_age[3], by_age


@pytest.mark.slow
def test_a_moment_model_scores_and_explains_alike_on_every_path(
    fitted: tuple[Config, pd.DataFrame, TrainResult], tmp_path: Path
) -> None:
    from serving.model_store import LoadedModel
    from serving.spark_engine import model_from_texts, model_texts
    from training.rules import load_rules

    config, training_set, result = fitted
    scorer = result.scorer
    features = feature_frame(training_set).iloc[:3000]
    plain = scorer.score(features)["probability"].to_numpy()
    plan = ReasonPlan.of(scorer.spec.names, feature_meanings(config))
    explained = score_frame(scorer, features, plan, top=3)
    np.testing.assert_allclose(explained.probability, plain, rtol=1e-10)
    # the contributions sum to the raw score: the reasons add up to the probability
    matrix = feature_matrix(features, scorer.spec)
    contributions = scorer.contributions(matrix)
    np.testing.assert_allclose(contributions.sum(axis=1), scorer.raw_score(matrix), atol=1e-9)
    # the days since mql_at carry the age's own effect: negative for old leads on average
    age = scorer.spec.names.index(AGE)
    old = matrix[:, age] > 56
    assert old.any() and contributions[old, age].mean() < 0
    scorer.save(tmp_path / "model")
    again = Scorer.from_dir(tmp_path / "model")
    assert again.kind == "moment"
    np.testing.assert_array_equal(again.score(features)["probability"].to_numpy(), plain)
    # the Spark engine's executors rebuild the model from plain texts
    rules = load_rules(config.training.rules)
    loaded = LoadedModel(scorer, rules, config, "m", "1", None, "models:/m/1", None, {})
    rebuilt = model_from_texts(model_texts(loaded)).scorer
    assert rebuilt.kind == "moment"
    np.testing.assert_array_equal(rebuilt.score(features)["probability"].to_numpy(), plain)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [{"features": {"at_mql": False}}, {"snapshot_policy": {"sampled_ages": 0}}],
    ids=["no counts at mql_at", "rows at mql_at only"],
)
def test_without_a_moment_or_ages_the_run_says_so_and_fits_the_ages_model(
    snapshot: Path, overrides: dict[str, object]
) -> None:
    """Without counts at mql_at there is no MQL moment to rank on; with rows at mql_at only
    there is no age to bend by, and the moment booster would drop the recency at mql_at that
    one booster on every feature keeps."""
    config = _config(snapshot, **overrides)
    training_set, _ = build_training_set(read_snapshot(config), config)
    result = train_model(training_set, config)
    assert any("training.model moment" in note for note in result.notes)
    assert result.scorer.kind == "ages" and result.scorer.bend is None
