"""The training guards on tiny frames: minimum data, the training window, months far off the
rest, base-rate shifts, label definitions, leak flags and their acknowledgement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.config import CustomField, build_config
from training.audit import leak_flags
from training.guards import (
    base_rate_shift,
    data_shortfall,
    label_definition,
    label_differences,
    monthly_table,
    window_mask,
)
from training.scorer import feature_matrix, learn_spec
from training.train import constant_columns


def test_too_little_data_says_how_much_more_is_needed() -> None:
    training = build_config().training
    labels = np.r_[np.ones(10), np.zeros(73)]  # the 83 rows that used to train "successfully"
    message = data_shortfall(labels, training)
    assert message is not None
    assert "83 labelled rows of the 1,000 needed" in message
    assert "10 converted rows of the 120 needed (110 more" in message
    assert "73 not converted rows of the 120 needed (47 more" in message
    enough = np.r_[np.ones(200), np.zeros(1000)]
    assert data_shortfall(enough, training) is None
    lowered = build_config({"training": {"min_rows": 50, "min_positives": 5, "min_negatives": 5}})
    assert data_shortfall(labels, lowered.training) is None


def _cutoffs(days: list[int]) -> pd.Series:
    start = pd.Timestamp("2025-01-01", tz="UTC")
    return pd.Series([start + pd.Timedelta(days=d) for d in days])


def test_training_window_since_and_days() -> None:
    cutoffs = _cutoffs([0, 10, 100, 200, 300])
    since = build_config({"training": {"since": "2025-04-01"}}).training
    keep, note = window_mask(cutoffs, since)
    assert keep.tolist() == [False, False, True, True, True]
    assert note is not None and "2 older rows left out" in note
    recent = build_config({"training": {"window_days": 150}}).training
    keep, _ = window_mask(cutoffs, recent)
    assert keep.tolist() == [False, False, False, True, True]
    again, _ = window_mask(cutoffs[keep].reset_index(drop=True), recent)
    assert again.all()  # idempotent: the CLI and train_model may both apply it
    with pytest.raises(ValueError, match="flat export"):
        window_mask(pd.Series([pd.NaT, pd.NaT]), recent)
    everything, no_note = window_mask(cutoffs, build_config().training)
    assert everything.all() and no_note is None


def test_a_month_far_off_the_rest_is_marked() -> None:
    rng = np.random.default_rng(0)
    cutoffs, labels = [], []
    for month in range(6):
        rate = 0.003 if month == 0 else 0.14  # the outcome table starts late
        first = pd.Timestamp(2025, month + 1, 1, tz="UTC")
        cutoffs += [first + pd.Timedelta(days=int(d)) for d in rng.integers(0, 28, 400)]
        labels += (rng.random(400) < rate).astype(int).tolist()
    table = monthly_table(pd.Series(cutoffs), np.asarray(labels))
    assert table["month"].tolist()[0] == "2025-01"
    assert table["far_off"].tolist() == [True, False, False, False, False, False]
    assert table["rows"].sum() == 2400
    flat = monthly_table(pd.Series([pd.NaT] * 3), np.array([0, 1, 0]))
    assert flat.empty


def test_base_rate_shift_between_calibration_and_test() -> None:
    n = 2000
    slices = np.array(["calibration"] * n + ["test"] * n, dtype=object)
    shifted = np.r_[np.arange(n) < 0.14 * n, np.arange(n) < 0.08 * n].astype(int)
    facts, note = base_rate_shift(shifted, slices)
    assert facts["shifted"] and note is not None
    assert "14.0%" in note and "8.0%" in note
    same = np.r_[np.arange(n) < 0.10 * n, np.arange(n) < 0.105 * n].astype(int)
    facts, note = base_rate_shift(same, slices)
    assert not facts["shifted"] and note is None


def test_label_definition_differences() -> None:
    ninety = label_definition(build_config(), flat=False)
    half_year = label_definition(build_config({"horizon_days": 180}), flat=False)
    assert label_differences(ninety, ninety) == []
    assert label_differences(ninety, half_year) == [
        "horizon_days 180 (champion) vs 90 (challenger)"
    ]
    assert "flat" in label_differences(label_definition(build_config(), flat=True), ninety)[0]
    at_mql_only = build_config({"snapshot_policy": {"sampled_ages": 0}})
    assert label_differences(label_definition(at_mql_only, flat=False), ninety) == [
        "sampled_ages 2 (champion) vs 0 (challenger)"
    ]
    older = {k: v for k, v in ninety.items() if k != "sampled_ages"}  # logged before it existed
    assert label_differences(label_definition(at_mql_only, flat=False), older) == []
    assert label_differences(ninety, {}) == []  # an unknown definition has nothing to differ


def test_leak_flags_alone_dominant_and_acknowledged() -> None:
    audit = pd.DataFrame(
        {
            "feature": ["custom_tags", "custom_meeting_held", "seniority", "custom_visits"],
            "auc": [0.95, 0.82, 0.62, 0.65],
            "full_auc": [np.nan, 0.95, np.nan, 0.90],
            "without_auc": [np.nan, 0.80, np.nan, 0.85],
            "share_lost": [np.nan, (0.95 - 0.80) / 0.45, np.nan, 0.05 / 0.4],
        }
    )
    custom = (
        CustomField(column="Tags", kind="fit"),
        CustomField(column="Meeting Held", kind="fit"),
        CustomField(column="Visits", kind="engagement"),
    )
    training = build_config({"training": {"acknowledge_leaks": ["meeting held"]}}).training
    flags = {f.feature: f for f in leak_flags(audit, training, custom)}
    assert set(flags) == {"custom_tags", "custom_meeting_held"}
    assert flags["custom_tags"].column == "Tags" and "alone" in flags["custom_tags"].reason
    assert not flags["custom_tags"].acknowledged
    dominant = flags["custom_meeting_held"]
    assert "0.950 with it, 0.800 without" in dominant.reason and dominant.acknowledged


def _constant_on(frame: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """`constant_columns` as training calls it: the spec learned on the rows, the matrix of all."""
    categorical = {str(c) for c in frame.columns if frame[c].dtype == "str"}
    spec = learn_spec(frame[rows], categorical)
    return constant_columns(feature_matrix(frame, spec), rows, spec.names)


def test_constant_columns() -> None:
    frame = pd.DataFrame(
        {
            "a": [1, 1, 1, 5],
            "b": [np.nan] * 3 + [2.0],
            "c": [1, 2, 1, 1],
            "d": pd.array(["x", None, "x", "x"], dtype="str"),
            "e": pd.array(["x", "x", "x", "y"], dtype="str"),
            "f": pd.array([None, None, None, "y"], dtype="str"),
            "g": [0.0, -0.0, 0.0, 1.0],
            "h": [np.inf, np.inf, np.inf, 1.0],
            "i": [np.nan, 1.0, 1.0, 1.0],
        }
    )
    first_three = np.array([True, True, True, False])
    assert _constant_on(frame, first_three) == ["a", "b", "e", "f", "g", "h"]
    assert _constant_on(frame, np.ones(4, dtype=bool)) == []


def test_constant_columns_match_pandas_on_random_slices() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        rows = 40
        frame = pd.DataFrame(
            {
                "few": rng.choice([0.0, 1.0, np.nan], rows, p=[0.9, 0.05, 0.05]),
                "count": rng.poisson(0.05, rows).astype(np.int32),
                "kind": pd.Series(rng.choice(["a", "b", "-"], rows, p=[0.9, 0.05, 0.05]))
                .replace("-", None)
                .astype("str"),
            }
        )
        chosen = rng.random(rows) < 0.3
        expected = [c for c in frame.columns if frame[c][chosen].nunique(dropna=False) <= 1]
        assert _constant_on(frame, chosen) == expected
