"""Evaluation metrics: exact against sklearn, calibration on synthetic truth, ties, intervals."""

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from training.evaluate import (
    calibration_slope_intercept,
    classification_metrics,
    comparison_table,
    ece,
    evaluate_scores,
    gains_at,
    gains_table,
    precision_at_k,
    ranking_metrics,
    reliability_table,
    tier_table,
    wilson_interval,
)


def calibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and outcomes drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.5, 6.0, n)
    y = (rng.random(n) < p).astype(int)
    return y, p


def sharpen(p: np.ndarray, power: float) -> np.ndarray:
    """Scale the log-odds: power > 1 makes predictions over-confident."""
    logit = np.log(p) - np.log1p(-p)
    return 1.0 / (1.0 + np.exp(-power * logit))


def test_classification_metrics_match_sklearn() -> None:
    y, p = calibrated(3000, seed=1)
    p = np.clip(p + np.random.default_rng(2).normal(0, 0.05, p.size), 0, 1)
    metrics = classification_metrics(y, p)
    assert metrics["n"] == 3000
    assert metrics["base_rate"] == pytest.approx(y.mean(), abs=0)
    assert metrics["roc_auc"] == roc_auc_score(y, p)
    assert metrics["pr_auc"] == average_precision_score(y, p)
    assert metrics["log_loss"] == log_loss(y, p)
    assert metrics["brier"] == brier_score_loss(y, p)


def test_reliability_table_bins_like_sklearn_calibration_curve() -> None:
    y, p = calibrated(2000, seed=3)
    p = np.round(p, 2)  # ties across bin edges
    for strategy in ("quantile", "uniform"):
        table = reliability_table(y, p, bins=10, strategy=strategy)
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy=strategy)
        np.testing.assert_allclose(table["observed"], observed, rtol=1e-12)
        np.testing.assert_allclose(table["mean_p"], predicted, rtol=1e-12)
        assert table["n"].sum() == 2000
        assert (table["ci_low"] <= table["observed"]).all()
        assert (table["observed"] <= table["ci_high"]).all()


def test_ece_is_the_bin_weighted_gap() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.1, 0.1, 0.9, 0.9, 0.9])
    # Two bins, {0.1 x3} and {0.9 x3}: |0.1 - 1/3| and |0.9 - 2/3|, each weighted by one half.
    assert ece(y, p, bins=2) == pytest.approx(0.5 * abs(0.1 - 1 / 3) + 0.5 * abs(0.9 - 2 / 3))
    assert ece(y, p, bins=4, strategy="uniform") == pytest.approx(
        0.5 * abs(0.1 - 1 / 3) + 0.5 * abs(0.9 - 2 / 3)
    )


def test_ece_small_when_calibrated_and_large_when_distorted() -> None:
    y, p = calibrated(200_000, seed=4)
    assert ece(y, p) < 0.005
    assert ece(y, p, strategy="uniform") < 0.005
    assert ece(y, sharpen(p, 2.5)) > 0.05
    assert ece(y, np.clip(p + 0.1, 0, 1)) > 0.09


def test_calibration_slope_and_intercept() -> None:
    y, p = calibrated(100_000, seed=5)
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.03)
    assert intercept == pytest.approx(0.0, abs=0.05)
    over_slope, _ = calibration_slope_intercept(y, sharpen(p, 2.0))
    assert over_slope == pytest.approx(0.5, abs=0.02)
    under_slope, _ = calibration_slope_intercept(y, sharpen(p, 0.5))
    assert under_slope == pytest.approx(2.0, abs=0.08)
    metrics = classification_metrics(y, p)
    assert (metrics["calibration_slope"], metrics["calibration_intercept"]) == (slope, intercept)


def test_calibration_slope_matches_unpenalised_logistic_regression() -> None:
    y, p = calibrated(4000, seed=6)
    p = sharpen(p, 1.7)
    slope, intercept = calibration_slope_intercept(y, p)
    logit = np.log(p) - np.log1p(-p)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    reference.fit(logit[:, None], y)
    assert slope == pytest.approx(reference.coef_[0, 0], abs=1e-4)
    assert intercept == pytest.approx(reference.intercept_[0], abs=1e-4)


def test_calibration_slope_clips_extreme_probabilities() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.0, 1.0, 0.3, 0.4, 0.6, 0.7])
    slope, intercept = calibration_slope_intercept(y, p)
    assert math.isfinite(slope)
    assert math.isfinite(intercept)


def test_calibration_slope_is_nan_when_probabilities_separate_the_classes() -> None:
    y = np.array([0, 0, 1, 1])
    assert all(math.isnan(v) for v in calibration_slope_intercept(y, [0.1, 0.2, 0.3, 0.4]))
    assert all(math.isnan(v) for v in calibration_slope_intercept(y, [0.5] * 4))


def test_ranking_metrics_match_sklearn_and_count_the_top() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(1000) < 0.2).astype(int)
    score = rng.normal(size=1000) + y
    metrics = ranking_metrics(y, score)
    assert metrics["roc_auc"] == roc_auc_score(y, score)
    assert metrics["pr_auc"] == average_precision_score(y, score)
    top = np.argsort(-score)
    for fraction, label in ((0.05, "5pct"), (0.10, "10pct"), (0.20, "20pct")):
        k = math.ceil(fraction * 1000)
        precision = y[top[:k]].mean()
        assert metrics[f"precision_at_{label}"] == pytest.approx(precision)
        assert metrics[f"lift_at_{label}"] == pytest.approx(precision / y.mean())


def test_ranking_metrics_take_ceil_of_the_fraction() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])  # 11 leads: top 10% is 2 leads
    score = np.arange(11, 0, -1)
    metrics = ranking_metrics(y, score, fractions=(0.10, 0.025))
    assert metrics["precision_at_10pct"] == 0.5
    assert metrics["precision_at_2.5pct"] == 1.0


def test_precision_at_k_with_ties_is_the_expectation_over_tie_orders() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0])
    points = np.array([30, 20, 20, 20, 20, 10, 10])
    # Brute force: every ordering of the tied leads, each counted equally.
    for k in range(1, 8):
        precisions = []
        for order in itertools.permutations(range(7)):
            ranked = sorted(order, key=lambda i: -points[i])  # stable: permutation breaks ties
            precisions.append(y[ranked[:k]].mean())
        assert precision_at_k(y, points, k) == pytest.approx(np.mean(precisions))


def test_precision_with_many_ties_does_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(8)
    points = rng.integers(0, 5, 500) * 10
    y = (rng.random(500) < 0.1 + points / 100).astype(int)
    shuffled = rng.permutation(500)
    first = ranking_metrics(y, points)
    second = ranking_metrics(y[shuffled], points[shuffled])
    assert first == pytest.approx(second)
    # Expected value: whole groups above the cut plus a share of the group at it.
    k = 100
    cut = np.sort(points)[::-1][k - 1]
    above, at = points > cut, points == cut
    expected = (y[above].sum() + (k - above.sum()) * y[at].mean()) / k
    assert first["precision_at_20pct"] == pytest.approx(expected)


def test_gains_table_runs_through_tie_groups_to_everyone() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    points = np.array([30, 20, 20, 20, 20, 10, 10, 10])
    table = gains_table(y, points)
    assert table["threshold"].tolist() == [30, 20, 10]
    assert table["contacted"].tolist() == [1, 5, 8]
    assert table["captured"].tolist() == [1, 2, 3]
    assert table["share_captured"].iloc[-1] == 1.0
    np.testing.assert_allclose(table["lift"], table["share_captured"] / table["share_contacted"])
    # Halfway through the tie group at 20: 1 + 2 * (1/4) conversions of 3.
    assert gains_at(table, [3 / 8])[0] == pytest.approx(1.5 / 3)
    assert gains_at(table, [0.0])[0] == 0.0


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_interval_known_values(successes: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[0] == 0.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    wide, narrow = wilson_interval(5, 10, z=2.58), wilson_interval(5, 10)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_tier_table_counts_add_up() -> None:
    rng = np.random.default_rng(9)
    tiers = rng.choice(["A", "B", "C"], 400)  # no D on purpose
    y = (rng.random(400) < np.where(tiers == "A", 0.5, 0.1)).astype(int)
    expected = rng.random(400)
    table = tier_table(y, tiers, expected=expected)
    assert table["tier"].tolist() == ["A", "B", "C", "D"]
    assert table["n"].sum() == 400
    assert table["conversions"].sum() == y.sum()
    assert table["share"].sum() == pytest.approx(1.0)
    a = table.set_index("tier").loc["A"]
    assert a["conversion_rate"] == pytest.approx(y[tiers == "A"].mean())
    assert a["mean_expected"] == pytest.approx(expected[tiers == "A"].mean())
    assert (a["ci_low"], a["ci_high"]) == wilson_interval(int(a["conversions"]), int(a["n"]))
    d = table.set_index("tier").loc["D"]
    assert d["n"] == 0 and math.isnan(d["conversion_rate"]) and math.isnan(d["mean_expected"])
    assert "mean_expected" not in tier_table(y, tiers).columns


def test_tier_table_rejects_unknown_tiers() -> None:
    with pytest.raises(ValueError, match="not in order"):
        tier_table([0, 1], np.array(["A", "E"], dtype=object))
    with pytest.raises(ValueError, match="not in order"):
        tier_table([0, 1], np.array(["A", None], dtype=object))


def test_evaluate_scores_compares_scorers() -> None:
    y, truth = calibrated(2000, seed=10)
    model = np.clip(truth + np.random.default_rng(11).normal(0, 0.03, truth.size), 0, 1)
    points = np.round(truth * 10) * 10
    results = evaluate_scores(
        y, {"model": model, "rules": points, "truth": truth}, probabilistic=["model", "truth"]
    )
    assert list(results) == ["model", "rules", "truth"]
    assert "ece" in results["model"] and "ece" not in results["rules"]
    assert results["rules"]["roc_auc"] == roc_auc_score(y, points)
    assert results["model"] == {**classification_metrics(y, model), **ranking_metrics(y, model)}
    table = comparison_table(results)
    assert list(table.columns) == ["model", "rules", "truth"]
    assert math.isnan(table.loc["ece", "rules"])
    with pytest.raises(ValueError, match="without scores"):
        evaluate_scores(y, {"rules": points}, probabilistic=["model"])
    with pytest.raises(ValueError, match="probabilities"):
        evaluate_scores(y, {"rules": points}, probabilistic=["rules"])


@pytest.mark.parametrize(
    "call",
    [
        lambda y, p: classification_metrics(y, p),
        lambda y, p: ranking_metrics(y, p),
        lambda y, p: evaluate_scores(y, {"model": p}, ["model"]),
        lambda y, p: calibration_slope_intercept(y, p),
    ],
)
def test_single_class_is_an_error(call: Callable[[np.ndarray, np.ndarray], object]) -> None:
    with pytest.raises(ValueError, match="single class"):
        call(np.ones(10), np.linspace(0.1, 0.9, 10))


def test_bad_inputs_are_errors_naming_the_problem() -> None:
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics(y, [0.1, np.nan, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(y, [1, 2, np.nan, 3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_metrics(y, [0.1, 1.2, 0.2, 0.3])
    with pytest.raises(ValueError, match="3 values but y has 4"):
        classification_metrics(y, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        classification_metrics([0, 2, 0, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="missing labels"):
        ranking_metrics(pd.array([0, 1, None, 1], dtype="Float64"), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [])
    with pytest.raises(ValueError, match="fractions"):
        ranking_metrics(y, [1, 2, 3, 4], fractions=(0.0,))
    with pytest.raises(ValueError, match="no conversions"):
        gains_table([0, 0], [1, 2])


def test_ece_floor_matches_the_ece_of_calibrated_draws() -> None:
    from training.evaluate import ece, ece_floor

    rng = np.random.default_rng(12)
    p = rng.beta(1.0, 3.0, 3000)
    draws = [ece((rng.random(p.size) < p).astype(int), p) for _ in range(200)]
    assert ece_floor(p) == pytest.approx(np.mean(draws), rel=0.1)
