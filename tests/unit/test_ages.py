"""Scores at every age: sampled training ages, what a model covers, the previous nightly run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import build_config
from features.rows import bend_rows, candidate_cutoffs, covered_weeks, label_rows, sampled_ages_of
from serving.batch_io import OutputError, previous_run
from serving.scoring import coverage_note


def test_sampled_ages_are_stable_per_lead_and_cover_the_horizon() -> None:
    ids = np.array([f"L{i}" for i in range(20_000)], dtype=object)
    ages = sampled_ages_of(ids, 0, 90, seed=42)
    assert ages.min() >= 0 and ages.max() < 90 * 86_400_000
    # uniform over the horizon: each 10-day band holds about a ninth
    bands = np.bincount(ages // (10 * 86_400_000), minlength=9) / ages.size
    assert np.allclose(bands, 1 / 9, atol=0.01)
    # a lead's age depends on the lead, not on the others or their order
    assert sampled_ages_of(ids[::-1], 0, 90, seed=42).tolist() == ages[::-1].tolist()
    assert not np.array_equal(sampled_ages_of(ids, 1, 90, seed=42), ages)


def test_candidate_cutoffs_add_sampled_ages_after_mql_at() -> None:
    mql = pd.Timestamp("2026-01-01", tz="UTC")
    leads = pd.DataFrame(
        {"lead_id": ["a", "b", "c"], "mql_at": [mql, pd.NaT, mql + pd.Timedelta(days=3)]}
    )
    rows = candidate_cutoffs(leads, 0, sampled_ages=2, horizon_days=90, seed=1)
    assert rows["lead_id"].tolist() == ["a", "a", "a", "c", "c", "c"]
    age = rows["cutoff"] - rows["lead_id"].map({"a": mql, "c": mql + pd.Timedelta(days=3)})
    assert (age >= pd.Timedelta(0)).all() and (age < pd.Timedelta(days=90)).all()
    assert (age == pd.Timedelta(0)).sum() == 2  # mql_at itself, once per lead


def test_the_bends_rows_are_labelled_and_kept_as_the_feature_rows_are() -> None:
    t = pd.Timestamp("2025-01-01", tz="UTC")
    day = pd.Timedelta(days=1)
    leads = pd.DataFrame(
        {
            "lead_id": ["converts", "disqualified", "open", "censored", "never"],
            "mql_at": [t, t, t, t + 350 * day, pd.NaT],
            "sql_at": [t + 30 * day, pd.NaT, pd.NaT, pd.NaT, pd.NaT],
            "disqualified_at": [pd.NaT, t + 20 * day, pd.NaT, pd.NaT, pd.NaT],
        }
    )
    as_of = t + 400 * day
    rows = bend_rows(leads, as_of, 90, ages=8, seed=1)
    by_lead = rows.groupby("lead_id")["age_days"]
    assert set(rows["lead_id"]) == {"converts", "disqualified", "open"}  # open, horizon closed
    assert by_lead.size()["open"] == 8 and (rows["age_days"] > 0).all()
    assert by_lead.max()["converts"] < 30 and by_lead.max()["disqualified"] < 20
    mql_at = rows["lead_id"].map(leads.set_index("lead_id")["mql_at"])
    age = (rows["cutoff"] - mql_at).dt.total_seconds() / 86_400
    assert np.allclose(age, rows["age_days"])
    # the same label as a feature row at that cutoff: an SQL within the horizon after it
    expected, _ = label_rows(rows[["lead_id", "cutoff"]], leads, as_of, 90)
    assert rows["label"].tolist() == expected["label"].tolist()
    assert rows.loc[rows["lead_id"] == "converts", "label"].eq(1).all()
    assert rows.loc[rows["lead_id"] != "converts", "label"].eq(0).all()
    # not the feature rows' ages (another hash key), and none without an age to learn
    ids = np.array(["open"], dtype=object)
    feature_ages = {sampled_ages_of(ids, d, 90, seed=1)[0] / 86_400_000 for d in range(8)}
    assert not feature_ages & set(rows.loc[rows["lead_id"] == "open", "age_days"])
    assert bend_rows(leads, as_of, 90, ages=0, seed=1).empty


def test_what_a_model_covers_follows_its_snapshot_policy() -> None:
    default = build_config({})
    at_mql = build_config({"snapshot_policy": {"sampled_ages": 0}})
    weekly = build_config({"snapshot_policy": {"sampled_ages": 0, "weekly_weeks": 4}})
    assert covered_weeks(default.snapshot_policy, 90) == 13
    assert covered_weeks(at_mql.snapshot_policy, 90) == 0
    assert coverage_note(0.0, default) is None
    assert coverage_note(60.0, default) is None  # sampled ages cover the whole horizon
    assert coverage_note(60.0, at_mql) is not None and "60 days old" in str(
        coverage_note(60.0, at_mql)
    )
    assert coverage_note(20.0, weekly) is None and coverage_note(40.0, weekly) is not None
    assert coverage_note(95.0, default) is not None  # past the horizon: not an open MQL
    assert "no mql_at" in str(coverage_note(None, default))


def test_the_previous_run_is_found_beside_the_output(tmp_path: Path) -> None:
    out = tmp_path / "2026-07-03.parquet"
    assert previous_run(out) is None
    for name in ("2026-07-01.parquet", "2026-07-02.parquet", "2026-07-04.parquet", "x.csv"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "2026-07-02.monitor.json").write_text("{}")
    assert previous_run(out) == tmp_path / "2026-07-02.parquet"
    out.write_bytes(b"")
    assert previous_run(out) == out  # a re-run compares with the file it replaces
    given = tmp_path / "2026-07-01.parquet"
    assert previous_run(out, given) == given
    with pytest.raises(OutputError, match="no such scores file"):
        previous_run(out, tmp_path / "missing.parquet")


def test_a_training_set_beside_the_output_is_not_a_previous_run(tmp_path: Path) -> None:
    """The README's x-education run writes data/x-education-scores.parquet beside the demo's
    data/training_set.parquet: that file sorts before it but holds no tiers."""
    import pandas as pd

    from serving.batch_io import read_previous

    training_set = tmp_path / "training_set.parquet"
    pd.DataFrame({"lead_id": ["a", "b"], "label": [0, 1]}).to_parquet(training_set)
    out = tmp_path / "x-education-scores.parquet"
    assert previous_run(out) is None
    assert read_previous(training_set) is None  # given as --previous: no comparison, no crash
    scores = tmp_path / "a-scores.parquet"
    pd.DataFrame({"lead_id": ["a"], "tier": ["A"]}).to_parquet(scores)
    assert previous_run(out) == scores
    pd.DataFrame({"lead_id": ["a"], "tier": ["B"]}).to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "bz.csv").write_text("lead_id,label\na,1\n")
    assert previous_run(tmp_path / "c.csv") == tmp_path / "b.csv"
