"""The fast paths of a training run give what the plain definitions give, on generated rows:
the time split, the audit's single-feature AUCs, and a training run that scores only the
rows it uses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import training.baseline
import training.train
from common.config import Config, SplitConfig, build_config
from features.pipeline import build_training_set
from features.reader import Snapshot, read_snapshot
from features.synthetic import generate, write_snapshot
from training.audit import rank_auc, single_feature_auc
from training.baseline import rule_inputs_for, rules_baseline
from training.rules import score_points
from training.scorer import learn_spec
from training.split import SLICES, time_split
from training.tracking import training_reference
from training.train import categorical_columns, feature_frame, train_model


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Snapshot, Config]:
    folder = tmp_path_factory.mktemp("cost") / "snapshot"
    write_snapshot(generate(3000, seed=11), folder)
    config = build_config({"source": {"path": str(folder)}, "snapshot_policy": {"weekly_weeks": 3}})
    snapshot = read_snapshot(config)
    training_set, _ = build_training_set(snapshot, config)
    return training_set, snapshot, config


@pytest.fixture(scope="module")
def rows(built: tuple[pd.DataFrame, Snapshot, Config]) -> pd.DataFrame:
    return built[0]


def _same(metrics: dict, other: dict) -> bool:
    """Equal metrics, NaN equal to NaN (a tier with no test leads has NaN rates)."""
    return json.dumps(metrics, sort_keys=True, default=str) == json.dumps(
        other, sort_keys=True, default=str
    )


def _split_by_definition(rows: pd.DataFrame, shares: SplitConfig) -> np.ndarray:
    """Leads ranked by (first cutoff, lead_id); a lead's position is the share of rows of the
    leads before it; the slice edges cut positions (one lead at a time, in Python)."""
    first = rows.groupby("lead_id")["cutoff"].min()
    count = rows.groupby("lead_id").size()
    edges = np.cumsum([shares.train, shares.validation, shares.calibration])
    slice_of_lead = {}
    before = 0
    for lead in sorted(first.index, key=lambda lead: (first[lead], lead)):
        slice_of_lead[lead] = SLICES[int(np.searchsorted(edges, before / len(rows), "right"))]
        before += int(count[lead])
    return rows["lead_id"].map(slice_of_lead).to_numpy(dtype=object)


def test_the_time_split_is_its_definition_in_any_row_order_and_with_ties(
    rows: pd.DataFrame,
) -> None:
    shares = SplitConfig()
    shuffled = rows.sample(frac=1.0, random_state=4).reset_index(drop=True)
    # whole days: many leads share a first cutoff, so lead_id breaks the ties
    tied = shuffled.assign(cutoff=shuffled["cutoff"].dt.floor("D"))
    assert tied.groupby("lead_id")["cutoff"].min().duplicated().sum() > 100
    for frame in (rows, shuffled, tied):
        split = time_split(frame, shares)
        np.testing.assert_array_equal(split.slice_of_row, _split_by_definition(frame, shares))
        assert split.kind == "time"
        assert all(split.counts()[name] > 0 for name in SLICES)
    assert time_split(rows.iloc[:0], shares).slice_of_row.size == 0


def test_rank_auc_is_roc_auc_score_on_every_feature(rows: pd.DataFrame) -> None:
    labels = rows["label"].to_numpy()
    features = feature_frame(rows)
    categorical = categorical_columns(features)
    checked = 0
    for name in features.columns:
        if name in categorical:
            continue
        values = features[name].to_numpy(dtype=np.float64, na_value=np.nan)
        score = np.where(np.isnan(values), -1.0, values)
        if score.min() == score.max():
            assert rank_auc(score, labels) == 0.5
            continue
        assert rank_auc(score, labels) == pytest.approx(roc_auc_score(labels, score), abs=1e-12)
        checked += 1
    assert checked > 50
    assert rank_auc(np.arange(4.0), np.array([0, 0, 1, 1])) == 1.0
    assert rank_auc(np.array([1.0, 1.0, 2.0, 2.0]), np.array([0, 1, 0, 1])) == 0.5
    assert rank_auc(np.arange(3.0), np.zeros(3, dtype=int)) == 0.5


def test_single_feature_auc_ranks_an_outcome_column_first(rows: pd.DataFrame) -> None:
    labels = rows["label"].to_numpy()
    features = feature_frame(rows).assign(sales_status=np.where(labels == 1, "won", "open"))
    table = single_feature_auc(features, labels, sorted(categorical_columns(features)), seed=0)
    assert table["feature"].iloc[0] == "sales_status"
    assert table["auc"].iloc[0] > 0.99
    assert table["auc"].between(0.5, 1.0).all()


def test_training_scores_only_the_rows_it_uses_and_the_model_is_unchanged(
    rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config({"training": {"num_threads": 1}, "snapshot_policy": {"weekly_weeks": 3}})
    every = train_model(rows, config)
    assert every.reference is not None and every.reference.all()
    assert np.isfinite(every.scored["probability"].to_numpy()).all()
    monkeypatch.setattr(training.train, "REFERENCE_ROWS", len(rows) // 4)
    sampled = train_model(rows, config)
    assert sampled.reference is not None and sampled.reference.sum() == len(rows) // 4
    assert sampled.scorer.calibrator.to_json() == every.scorer.calibrator.to_json()
    assert sampled.scorer.tiers.as_dict() == every.scorer.tiers.as_dict()
    assert _same(sampled.metrics, every.metrics)
    used = sampled.split.mask("calibration") | sampled.split.mask("test") | sampled.reference
    probability = sampled.scored["probability"].to_numpy()
    np.testing.assert_array_equal(probability[used], every.scored["probability"].to_numpy()[used])
    assert np.isnan(probability[~used]).all() and (~used).sum() > 0
    tier = sampled.scored["tier"].to_numpy()
    assert (tier[used] == every.scored["tier"].to_numpy()[used]).all()
    assert pd.isna(tier[~used]).all()
    # the drift reference profiles the sample's rows after mql_at, with their probabilities
    reference = training_reference(sampled, config, rows)
    after_mql = feature_frame(rows)["days_since_mql"].to_numpy(dtype=np.float64) > 0
    assert reference["rows"] == int((sampled.reference & after_mql).sum())
    assert "sample" in reference["rows_from"]
    full = training_reference(every, config, rows)
    assert full["rows"] == int(after_mql.sum()) and "sample" not in full["rows_from"]


def test_the_audit_measures_a_sample_of_the_training_slice_past_audit_rows(
    rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `AUDIT_ROWS` the single-feature AUCs are those of a seeded sample of the training
    slice, the constant features still those of the whole slice, and the model unchanged."""
    config = build_config({"training": {"num_threads": 1}, "snapshot_policy": {"weekly_weeks": 3}})
    labels = rows["label"].to_numpy()
    every = train_model(rows, config)
    train = every.split.mask("train")
    monkeypatch.setattr(training.train, "AUDIT_ROWS", int(train.sum()) // 3)
    sampled = train_model(rows, config)
    audited = training.train.audit_rows(train, config.training.seed)
    assert audited.size == int(train.sum()) // 3 and train[audited].all()
    assert np.array_equal(audited, np.sort(audited))
    features = feature_frame(rows).iloc[audited].drop(columns=sampled.constant)
    expected = single_feature_auc(
        features, labels[audited], sorted(categorical_columns(features)), config.training.seed
    )
    pd.testing.assert_frame_equal(sampled.audit[["feature", "auc"]], expected)
    assert not sampled.audit[["feature", "auc"]].equals(every.audit[["feature", "auc"]])
    assert sampled.constant == every.constant
    whole = feature_frame(rows)[train]
    assert every.constant == [c for c in whole.columns if whole[c].nunique(dropna=False) <= 1]
    assert _same(sampled.metrics, every.metrics)


def test_a_spec_learned_on_chosen_rows_is_that_of_the_slice(rows: pd.DataFrame) -> None:
    features = feature_frame(rows)
    categorical = categorical_columns(features)
    train = time_split(rows, SplitConfig()).mask("train")
    chosen = train & (features["lead_source"] != "webinar").to_numpy()
    expected = learn_spec(features[chosen], categorical)
    assert "webinar" not in expected.categories["lead_source"]
    assert "webinar" in learn_spec(features, categorical).categories["lead_source"]
    assert learn_spec(features, categorical, chosen) == expected
    assert learn_spec(features, categorical, np.flatnonzero(chosen)) == expected
    shifted = features.set_axis(np.arange(len(features)) + 7)  # positions, not labels
    assert learn_spec(shifted, categorical, np.flatnonzero(chosen)) == expected


def test_fitted_points_on_a_sample_are_those_of_every_row_where_they_are_read(
    built: tuple[pd.DataFrame, Snapshot, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules baseline fits its points on a sample of the training slice past `FIT_ROWS`
    and scores only the test slice's and the fitted rows: each of those gets the points that
    scoring every row gives, the rest stay NaN, and the sample's points rank the test slice as
    the whole slice's do."""
    training_set, snapshot, config = built
    split = training.train.split_rows(training_set, config, [])
    test = split.mask("test")
    whole = rules_baseline(training_set, config, snapshot)
    assert whole.points is not None and np.isfinite(whole.points[test]).all()
    train_rows = int(split.mask("train").sum())
    monkeypatch.setattr(training.baseline, "FIT_ROWS", train_rows // 3)
    sampled = rules_baseline(training_set, config, snapshot)
    again = rules_baseline(training_set, config, snapshot)
    assert sampled.points is not None and sampled.rules == again.rules
    assert np.isfinite(sampled.points[test]).all()
    scored = np.isfinite(sampled.points)
    assert scored.sum() == test.sum() + train_rows // 3
    every_row = rule_inputs_for(training_set, snapshot, sampled.rules)
    assert every_row is not None
    expected = score_points(every_row, sampled.rules).total
    np.testing.assert_array_equal(sampled.points[scored], expected[scored])
    labels = training_set["label"].to_numpy()[test]
    gap = roc_auc_score(labels, whole.points[test]) - roc_auc_score(labels, sampled.points[test])
    assert abs(gap) < 0.03
