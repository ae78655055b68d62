"""Split, calibration, tiers and the leakage audit on small seeded data."""

import numpy as np
import pandas as pd
import pytest

from common.config import SplitConfig, TierPolicy
from training.audit import excluded_still_present, single_feature_auc
from training.calibrate import Calibrator, fit_calibrator
from training.split import stratified_split, time_split
from training.tiers import Tiers, choose_tiers


def _rows(n_leads: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 365, n_leads), unit="D"
    )
    weeks = rng.integers(1, 4, n_leads)
    lead = np.repeat([f"L{i}" for i in range(n_leads)], weeks)
    cutoff = np.concatenate(
        [
            [f + pd.Timedelta(days=7 * k) for k in range(w)]
            for f, w in zip(first, weeks, strict=True)
        ]
    )
    return pd.DataFrame({"lead_id": lead, "cutoff": cutoff, "label": rng.integers(0, 2, lead.size)})


def test_time_split_keeps_leads_whole_and_tests_on_the_most_recent() -> None:
    rows = _rows()
    split = time_split(rows, SplitConfig())
    sides = rows.assign(slice=split.slice_of_row).groupby("lead_id")["slice"].nunique()
    assert sides.max() == 1  # no lead on two sides
    first = rows.groupby("lead_id")["cutoff"].transform("min")
    order = ["train", "validation", "calibration", "test"]
    latest = [first[split.mask(s)].max() for s in order]
    earliest = [first[split.mask(s)].min() for s in order]
    assert all(latest[i] <= earliest[i + 1] for i in range(3))  # slices follow each other in time
    shares = np.array(list(split.counts().values())) / len(rows)
    assert shares == pytest.approx([0.6, 0.1, 0.1, 0.2], abs=0.03)


def test_stratified_split_keeps_the_positive_rate() -> None:
    labels = (np.random.default_rng(1).random(5000) < 0.3).astype(int)
    split = stratified_split(labels, SplitConfig(), seed=3)
    rates = [labels[split.mask(s)].mean() for s in ("train", "validation", "calibration", "test")]
    assert max(rates) - min(rates) < 0.01
    assert split.kind == "stratified"


def test_calibration_picks_sigmoid_for_a_logistic_truth_and_round_trips() -> None:
    rng = np.random.default_rng(2)
    raw = rng.normal(0, 2, 20_000)
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-(0.5 * raw - 1)))).astype(int)
    calibrator = fit_calibrator(raw, y, ("isotonic", "sigmoid"), seed=0)
    assert calibrator.method == "sigmoid"
    assert calibrator.slope == pytest.approx(0.5, abs=0.05)
    again = Calibrator.from_json(calibrator.to_json())
    np.testing.assert_array_equal(again.apply(raw[:50]), calibrator.apply(raw[:50]))


def test_calibration_picks_isotonic_for_a_step_truth() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(0, 2, 20_000)
    y = (rng.random(raw.size) < np.where(raw > 1, 0.9, 0.05)).astype(int)
    calibrator = fit_calibrator(raw, y, ("isotonic", "sigmoid"), seed=0)
    assert calibrator.method == "isotonic"
    assert calibrator.cv_log_loss["isotonic"] < calibrator.cv_log_loss["sigmoid"]


def _aged(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw scores whose meaning changes with age, as a lead's does: the older the lead, the
    closer every weak lead's chance sits to a floor, while strong leads keep most of theirs."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(-1.5, 1.5, n)
    age = rng.uniform(0, 90, n)
    young = 1 / (1 + np.exp(-raw))
    share = age / 90
    p = (1 - share) * young + share * (0.03 + 0.6 * young**2)
    return raw, age, (rng.random(n) < p).astype(int)


def test_an_age_aware_calibrator_is_kept_where_the_score_means_less_with_age() -> None:
    raw, age, y = _aged(40_000, 5)
    calibrator = fit_calibrator(raw, y, ("isotonic", "sigmoid", "by_age"), seed=0, age=age)
    assert calibrator.method == "by_age" and calibrator.needs_age
    assert calibrator.cv_log_loss["by_age"] < min(
        calibrator.cv_log_loss["isotonic"], calibrator.cv_log_loss["sigmoid"]
    )
    # calibrated at each age on new rows, where the best one-map calibrator is not
    raw2, age2, y2 = _aged(40_000, 6)
    one_map = fit_calibrator(raw, y, ("isotonic", "sigmoid"), seed=0)
    old = age2 > 70
    assert abs(calibrator.apply(raw2, age2)[old].mean() - y2[old].mean()) < 0.01
    assert abs(one_map.apply(raw2)[old].mean() - y2[old].mean()) > 0.03
    # higher for a higher raw score at one age, never tied (the booster's order is kept); and
    # it round-trips through JSON
    grid = np.linspace(-6, 4, 400)
    for days in (0.0, 45.0, 89.0):
        assert (np.diff(calibrator.apply(grid, np.full(grid.size, days))) > 0).all()
    again = Calibrator.from_json(calibrator.to_json())
    np.testing.assert_array_equal(
        again.apply(raw2[:50], age2[:50]), calibrator.apply(raw2[:50], age2[:50])
    )
    with pytest.raises(ValueError, match="days_since_mql"):
        calibrator.apply(raw2[:5])


def test_without_ages_the_age_aware_calibrator_is_no_candidate() -> None:
    raw, _, y = _aged(5_000, 7)
    calibrator = fit_calibrator(raw, y, ("isotonic", "sigmoid", "by_age"), seed=0)
    assert set(calibrator.cv_log_loss) == {"isotonic", "sigmoid"}
    flat = fit_calibrator(raw, y, ("sigmoid", "by_age"), seed=0, age=np.zeros(raw.size))
    assert flat.method == "sigmoid"
    # nor on a slice too small to learn each age's curve from
    raw, age, y = _aged(5_000, 8)
    small = fit_calibrator(raw, y, ("isotonic", "sigmoid", "by_age"), seed=0, age=age)
    assert "by_age" not in small.cv_log_loss
    with pytest.raises(ValueError, match=r"at least 20,000 of them .* has 5,000"):
        fit_calibrator(raw, y, ("by_age",), seed=0, age=age)


def test_capacity_tiers_take_their_shares() -> None:
    p = np.random.default_rng(4).random(10_000)
    tiers = choose_tiers(p, np.zeros(p.size), TierPolicy(kind="capacity"))
    shares = pd.Series(tiers.assign(p)).value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4}, abs=0.002)
    assert Tiers.from_json(tiers.to_json()) == tiers


def test_precision_tiers_meet_their_targets() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(1.0, 3.0, 20_000)  # a realistic base rate near 25%
    y = (rng.random(p.size) < p).astype(int)
    tiers = choose_tiers(p, y, TierPolicy(kind="precision"))
    tier = tiers.assign(p)
    assert y[tier == "A"].mean() >= 0.65
    assert y[np.isin(tier, ["A", "B"])].mean() >= 0.45
    assert y[np.isin(tier, ["A", "B", "C"])].mean() >= 0.30
    assert tiers.cuts[0] > tiers.cuts[1] > tiers.cuts[2]
    # the cuts are the deepest that meet the targets: one lead more would miss A's
    below_a = p[p < tiers.cuts[0]].max()
    assert y[p >= below_a].mean() < 0.65 + 0.002


def test_audit_flags_a_column_that_records_the_outcome() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 3000)
    features = pd.DataFrame(
        {
            "status": pd.Series(np.where(y == 1, "won", "lost"), dtype="str").where(
                rng.random(3000) > 0.03, "open"
            ),
            "noise": rng.normal(size=3000),
            "signal": y + rng.normal(0, 1.5, 3000),
            "lead_number": np.arange(3000).astype(str),  # many values: memorising must not pass
        }
    )
    table = single_feature_auc(features, y, ["status", "lead_number"]).set_index("feature")["auc"]
    assert table["status"] > 0.95
    assert table["noise"] < 0.56 and table["lead_number"] < 0.56
    assert 0.6 < table["signal"] < 0.9


def test_excluded_columns_are_found_as_custom_features() -> None:
    columns = ["seniority", "custom_lead_quality", "Tags"]
    assert excluded_still_present(columns, ["Lead Quality", "Tags", "City"]) == [
        "Lead Quality",
        "Tags",
    ]


def test_gate() -> None:
    from common.config import GateConfig
    from training.tracking import gate

    bounds = GateConfig(auc_tolerance=0.005, max_ece=0.02)
    good = {"roc_auc": 0.80, "ece": 0.025, "ece_floor": 0.01}
    assert gate(good, None, bounds).passed  # first model: calibration only
    assert gate(good, {"roc_auc": 0.804, "ece": 0.01}, bounds).passed  # within tolerance
    worse = gate(good, {"roc_auc": 0.81, "ece": 0.01}, bounds)
    assert not worse.passed and "below the champion" in worse.reasons[0]
    no_better = gate(good, None, bounds, rules={"roc_auc": 0.85})  # than the points
    assert not no_better.passed and "no better than the rules" in no_better.reasons[0]
    assert gate(good, None, bounds, rules={"roc_auc": 0.7}).passed
    lenient = GateConfig(auc_tolerance=0.005, max_ece=0.02, beat_rules=False)
    assert gate(good, None, lenient, rules={"roc_auc": 0.85}).passed
    miscalibrated = gate({**good, "ece": 0.04}, None, bounds)
    assert not miscalibrated.passed and "calibration error" in miscalibrated.reasons[0]
