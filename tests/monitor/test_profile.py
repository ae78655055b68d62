"""The reference profile, counts in its bins, merging chunk counts, and PSI: tiny frames."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from serving.monitor import monitor_path, monitor_record
from training.drift import (
    CALENDAR_PERIODS,
    MonitorError,
    categorical_bin_counts,
    empty_counts,
    merge_counts,
    numeric_bin_counts,
    numeric_bin_index,
    profile_counts,
    psi,
    quantile_edges,
    recent_periods,
    reference_profile,
)
from training.scorer import ModelSpec

SPEC = ModelSpec(
    ("engagement", "industry"),
    ("numeric", "categorical"),
    {"industry": ("finance", "retail", "software")},
)


def scored_frame(
    n: int, seed: int, shift: float = 0.0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    engagement = rng.poisson(2.0 + shift, n).astype(np.float64)
    engagement[rng.random(n) < 0.05] = np.nan
    names = np.array(["software", "retail", "finance", "mining", ""], dtype=object)
    picked = names[rng.choice(5, n, p=[0.4, 0.3, 0.2, 0.05, 0.05])]
    industry = pd.Series(picked, dtype="str").replace("", None)
    probability = np.clip(rng.beta(2, 8, n) + shift / 10, 0, 1)
    tier = np.where(
        probability > 0.4,
        "A",
        np.where(probability > 0.3, "B", np.where(probability > 0.15, "C", "D")),
    )
    frame = pd.DataFrame({"engagement": engagement, "industry": industry, "unused": 1})
    return frame, probability, tier.astype(object)


def test_psi_matches_a_hand_computation() -> None:
    expected = [0.5, 0.3, 0.2]
    actual = [0.4, 0.4, 0.2]
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3) + 0.0
    assert psi(expected, actual) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.05108, abs=1e-5)
    assert psi(expected, expected) == 0.0


def test_psi_floors_empty_bins() -> None:
    # an empty actual bin counts as 1e-4, not as ln(0)
    value = psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-4)
    by_hand = (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert value == pytest.approx(by_hand)
    assert math.isfinite(value)
    with pytest.raises(ValueError, match="2 expected shares but 3"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_numeric_bins_put_edge_values_below_and_missing_last() -> None:
    edges = quantile_edges([0, 0, 0, 0, 0, 0, 1, 2, 3, 10])
    assert edges[0] == 0.0  # a zero-inflated count gets a bin of exactly zero
    counts = numeric_bin_counts([0.0, 0.0, 1.0, np.nan, np.inf, 100.0], [0.0, 1.0])
    assert counts.tolist() == [2, 1, 1, 2]  # <= 0, (0, 1], > 1, missing (NaN and inf)
    assert quantile_edges([np.nan, np.nan]) == []
    assert numeric_bin_counts([np.nan, 3.0], []).tolist() == [1, 1]


def test_numeric_bin_counts_are_each_values_bin_counted() -> None:
    """The counts (a compare per edge) against the bin of each value (`numeric_bin_index`, a
    binary search per value), on values that fall on the edges, both infinities and NaN."""
    rng = np.random.default_rng(8)
    edges = [-2.0, -0.5, 0.0, 0.25, 1.0, 3.0]
    values = rng.normal(0, 2, 5_000)
    values[rng.choice(5_000, 900, replace=False)] = rng.choice(
        [*edges, np.inf, -np.inf, np.nan], 900
    )
    expected = np.bincount(numeric_bin_index(values, edges), minlength=len(edges) + 2)
    assert numeric_bin_counts(values, edges).tolist() == expected.tolist()
    assert expected[-1] > 200 and expected.sum() == 5_000


def test_categorical_bins_are_categories_then_other_then_missing() -> None:
    values = pd.Series(["a", "b", "zzz", None, "a"], dtype="str")
    assert categorical_bin_counts(values, ["a", "b"]).tolist() == [2, 1, 1, 1]


def test_reference_is_json_and_shares_sum_to_one() -> None:
    frame, probability, tier = scored_frame(2_000, seed=1)
    reference = reference_profile(frame, probability, tier, SPEC, horizon_days=90)
    assert json.loads(json.dumps(reference, allow_nan=False)) == reference
    assert set(reference["features"]) == {"engagement", "industry"}  # model features only
    industry = reference["features"]["industry"]
    assert industry["bins"][-2:] == ["other", "missing"]
    assert industry["categories"][0] == "software"  # most frequent first
    # `mining` was not a training category: it counts as other
    assert industry["shares"][-2] == pytest.approx(np.mean(frame["industry"] == "mining"))
    for item in [*reference["features"].values(), reference["score"], reference["tiers"]]:
        assert sum(item["shares"]) == pytest.approx(1.0)
    assert reference["horizon_days"] == 90
    assert reference["score"]["mean"] == pytest.approx(probability.mean())


def _weekly(weeks: int, warm_up: int, recent_shift: float = 0.0) -> dict:
    """A reference over `weeks` weeks of 400 rows, the first `warm_up` of them unlike the rest
    (the start of a CRM's history), the last one shifted by `recent_shift`; weeks out of order."""
    parts = []
    for week in range(weeks):
        shift = 3.0 if week < warm_up else (recent_shift if week == weeks - 1 else 0.0)
        frame, probability, tier = scored_frame(400, seed=100 + week, shift=shift)
        label = str(pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=week))
        parts.append((frame.assign(week=label), probability, tier))
    order = np.random.default_rng(0).permutation(weeks)
    frame = pd.concat([parts[i][0] for i in order], ignore_index=True)
    probability = np.concatenate([parts[i][1] for i in order])
    tier = np.concatenate([parts[i][2] for i in order])
    return reference_profile(
        frame, probability, tier, SPEC, horizon_days=90, periods=frame["week"].to_numpy()
    )


def test_the_calendar_allowance_is_the_last_year_not_the_start_of_history() -> None:
    calm = _weekly(80, warm_up=0)["features"]["engagement"]["calendar_psi"]
    assert calm < 0.05  # weeks of one market: within chance
    # a start of history unlike any later week, more than a year (CALENDAR_PERIODS) back: only
    # its share of the whole moves the later weeks (about 0.17), not its own PSI (over 1.5)
    old_start = _weekly(80, warm_up=10)
    recent_start = _weekly(CALENDAR_PERIODS, warm_up=10)
    for part in ("features", "score"):
        old = old_start[part]["engagement"] if part == "features" else old_start[part]
        recent = recent_start[part]["engagement"] if part == "features" else recent_start[part]
        assert old["calendar_psi"] < 0.3 and recent["calendar_psi"] > 1.0
    assert max(old_start["tiers"]["calendar_difference"]) < 0.1
    assert max(recent_start["tiers"]["calendar_difference"]) > 0.2
    # a recent week that moved still counts
    moved = _weekly(80, warm_up=10, recent_shift=2.0)["features"]["engagement"]["calendar_psi"]
    assert moved > old_start["features"]["engagement"]["calendar_psi"] + 0.2


def test_recent_periods_flags_the_last_ones_in_sorted_order() -> None:
    labels = np.array(["2024-03", "2024-01", "2024-04", "2024-02"])
    assert recent_periods(labels, 2).tolist() == [True, False, True, False]
    assert recent_periods(labels, 9).all()
    assert not recent_periods(labels, 0).any()


def test_counts_in_reference_bins_reproduce_reference_shares() -> None:
    frame, probability, tier = scored_frame(2_000, seed=1)
    reference = reference_profile(frame, probability, tier, SPEC)
    counts = profile_counts(frame, probability, tier, reference)
    assert counts["rows"] == 2_000
    for name, item in reference["features"].items():
        shares = np.asarray(counts["features"][name]) / counts["rows"]
        assert shares.tolist() == pytest.approx(item["shares"])
    assert (np.asarray(counts["tiers"]) / 2_000).tolist() == pytest.approx(
        reference["tiers"]["shares"]
    )


def test_merge_counts_equals_counting_all_at_once() -> None:
    frame, probability, tier = scored_frame(1_000, seed=2)
    reference = reference_profile(frame, probability, tier, SPEC)
    later, p_later, t_later = scored_frame(999, seed=3, shift=1.0)
    whole = profile_counts(later, p_later, t_later, reference)
    merged = empty_counts(reference)
    for start in range(0, len(later), 250):
        stop = start + 250
        chunk = profile_counts(
            later.iloc[start:stop], p_later[start:stop], t_later[start:stop], reference
        )
        merged = merge_counts(merged, chunk)
    assert merged["score_sum"] == pytest.approx(whole["score_sum"])
    assert {**merged, "score_sum": 0} == {**whole, "score_sum": 0}


def test_merge_refuses_counts_of_another_reference() -> None:
    frame, probability, tier = scored_frame(500, seed=4)
    one = reference_profile(frame, probability, tier, SPEC)
    other = reference_profile(frame.iloc[:100], probability[:100], tier[:100], SPEC)
    assert one["id"] != other["id"]
    with pytest.raises(MonitorError, match="different references"):
        merge_counts(
            profile_counts(frame, probability, tier, one),
            profile_counts(frame, probability, tier, other),
        )


def test_bad_inputs_name_the_problem() -> None:
    frame, probability, tier = scored_frame(100, seed=5)
    reference = reference_profile(frame, probability, tier, SPEC)
    with pytest.raises(MonitorError, match=r"missing from the frame.*industry"):
        profile_counts(frame.drop(columns=["industry"]), probability, tier, reference)
    with pytest.raises(MonitorError, match="100 rows but probability has 99"):
        profile_counts(frame, probability[:99], tier, reference)
    bad_tier = tier.copy()
    bad_tier[0] = "Z"
    with pytest.raises(MonitorError, match=r"outside.*'Z'"):
        profile_counts(frame, probability, bad_tier, reference)
    with pytest.raises(MonitorError, match=r"not a leadscore\.reference/1"):
        profile_counts(frame, probability, tier, {"format": "something else"})


def test_monitor_record_sits_beside_the_scores() -> None:
    frame, probability, tier = scored_frame(100, seed=6)
    reference = reference_profile(frame, probability, tier, SPEC)
    counts = profile_counts(frame, probability, tier, reference)
    record = monitor_record(
        counts, reference, model_name="leadscore", model_version="3", as_of="2026-07-01"
    )
    assert record["as_of"] == "2026-07-01T00:00:00+00:00"
    assert record["reference"]["id"] == counts["reference_id"]
    assert monitor_path("out/scores.parquet").as_posix() == "out/scores.monitor.json"
