"""The default model is right at every age of a lead, judged against the generator's truth.

A nightly run scores open MQLs of every age, so a score must mean P(SQL within the horizon
after the scoring time | open then) at any age. On a CI-sized snapshot the default model
(`training.model: moment`: the lead as it stood at mql_at, its score bent by its age; rows at
sampled ages, and the bend's own label-only rows) is trained once, and held-out leads are scored at
mql_at and every week after it while open; each age group's mean probability must sit near
the truth's at that age. A model trained at mql_at only fails the same check at later ages,
which shows the check can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import Config, build_config
from features.pipeline import build_features
from features.synthetic import generate, write_snapshot
from features.truth import truth_of_rows
from training.ages import weekly_age_rows
from training.pipeline import bend_rows_for, training_data
from training.train import train_model

pytestmark = pytest.mark.slow
#: At 12k leads the check sat within its own noise: with the default learning rate, the code
#: before the counts at mql_at grew (all-time and account counts) missed the quintile bound on
#: 2 of 3 training seeds (weeks 9-12: 0.067, 0.082, 0.026), and with them 0.089, 0.101, 0.044.
#: At 24k both meet it on every seed (0.014-0.046) and the model at mql_at only still fails.
LEADS = 24_000
#: Age groups (weeks since mql_at) whose mean probability is held against the truth's.
GROUPS = {"0": (0, 0), "1-4": (1, 4), "5-8": (5, 8), "9-12": (9, 12)}


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ages") / "snapshot"
    write_snapshot(generate(LEADS, seed=131, months=18), folder)
    return folder


def _scored_by_age(folder: Path, overrides: dict) -> pd.DataFrame:
    """Train with the config overrides; the held-out leads at mql_at and every week after it
    while open: week, probability and the truth at that age."""
    # a faster learning rate than the default keeps this CI-sized check quick
    training = {"params": {"learning_rate": 0.1}, **overrides.pop("training", {})}
    config: Config = build_config(
        {"source": {"path": str(folder)}, "training": training, **overrides}
    )
    data = training_data(config)  # as `leadscore train` reads it, with the bend's own rows
    snapshot = data.snapshot
    assert snapshot is not None and snapshot.as_of is not None
    result = train_model(data.training_set, data.settings, bend_rows=bend_rows_for(data))
    # leads the booster did not learn from (validation, calibration and test slices): the test
    # slice alone, the newest leads, has few rows weeks after the MQL on a snapshot this small
    held_out = ~result.split.mask("train")
    leads = result.scored.loc[held_out, "lead_id"].unique()
    rows = weekly_age_rows(snapshot.leads, leads, snapshot.as_of, config.horizon_days)
    probability = result.scorer.score(build_features(snapshot, rows, config))["probability"]
    truth = truth_of_rows(folder, rows, config.horizon_days)
    assert truth is not None and not np.isnan(truth).any()
    return pd.DataFrame({"week": rows["age_weeks"], "p": probability.to_numpy(), "truth": truth})


def _groups(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        name: frame[(frame["week"] >= low) & (frame["week"] <= high)]
        for name, (low, high) in GROUPS.items()
    }


def _mean_by_age(frame: pd.DataFrame) -> pd.DataFrame:
    """Per age group: mean probability, mean truth and rows."""
    records = [
        {"ages": name, "n": len(group), "p": group["p"].mean(), "truth": group["truth"].mean()}
        for name, group in _groups(frame).items()
    ]
    return pd.DataFrame(records).set_index("ages")


@pytest.fixture(scope="module")
def default_scored(snapshot_dir: Path) -> pd.DataFrame:
    return _scored_by_age(snapshot_dir, {})


@pytest.fixture(scope="module")
def default_model(default_scored: pd.DataFrame) -> pd.DataFrame:
    return _mean_by_age(default_scored)


def test_the_default_model_is_calibrated_at_every_age(default_model: pd.DataFrame) -> None:
    assert (default_model["n"] > 150).all(), default_model
    gap = (default_model["p"] - default_model["truth"]).abs()
    # bench/quality.py measures the goals on the demo snapshot (ECE per week <= 0.015); on
    # this one's few thousand rows a model learns less, so the bound is wider
    assert (gap < 0.025).all(), default_model


@pytest.fixture(scope="module")
def at_mql_scored(snapshot_dir: Path) -> pd.DataFrame:
    """Today's model before issue 13: trained at mql_at only."""
    return _scored_by_age(
        snapshot_dir, {"snapshot_policy": {"sampled_ages": 0}, "features": {"at_mql": False}}
    )


def test_a_model_trained_at_mql_at_only_overstates_older_leads(
    at_mql_scored: pd.DataFrame, default_model: pd.DataFrame
) -> None:
    at_mql = _mean_by_age(at_mql_scored)
    gap = at_mql["p"] - at_mql["truth"]
    # near where it was trained: on these held-out leads it sits 0.020-0.027 under the truth
    # at age 0 (3 training seeds, with and without training.increasing_events)
    assert abs(gap["0"]) < 0.035, at_mql
    assert gap["5-8"] > 0.025 and gap["9-12"] > 0.025, at_mql  # the check can fail
    assert (gap.abs() > (default_model["p"] - default_model["truth"]).abs())[["5-8", "9-12"]].all()


def _worst_quintile_gap(scored: pd.DataFrame) -> dict[str, float]:
    """Per age group: the largest |mean p - mean truth| over the model's quintiles there."""
    worst = {}
    for name, group in _groups(scored).items():
        quintile = pd.qcut(group["p"].rank(method="first"), 5, labels=False)
        means = group.groupby(quintile)[["p", "truth"]].mean()
        worst[name] = float((means["p"] - means["truth"]).abs().max())
        # and the ranking follows the truth's: its top quintile is truly the likeliest
        assert means["truth"].iloc[-1] > 2 * means["truth"].iloc[0], (name, means)
    return worst


def test_the_default_model_is_calibrated_within_each_age(
    default_scored: pd.DataFrame, at_mql_scored: pd.DataFrame
) -> None:
    """Not only on average: within each age group, the leads the model scores high and low
    (its quintiles) get the truth's probability on average, so a tier means the same at any
    age. The model trained at mql_at only fails it at the older groups."""
    worst = _worst_quintile_gap(default_scored)
    # bench/quality.py holds each week's ECE to 0.015 on 100k+ leads; on this snapshot's few
    # thousand rows per group a quintile is up to 0.05 off the truth (3 training seeds)
    assert max(worst.values()) < 0.07, worst
    assert _worst_quintile_gap(at_mql_scored)["9-12"] > 0.07
