"""Metrics on a test slice: discrimination, calibration, precision in the top of the list, tiers.

Every function is pure: arrays in, a dict or a frame out. Scorers are compared on the same leads:
the calibrated model, the rule-based points (not probabilities, so ranking metrics only) and, on
synthetic data, the true probability the generator used.

Conventions used throughout:

* Labels `y` are 0/1 (bool, int or float holding only 0 and 1); missing labels are an error.
* A NaN score or probability is an error, never silently dropped.
* Metrics that compare classes (AUCs, calibration slope) raise `ValueError` on single-class `y`.
* Ties in a score are resolved by expectation under random tie-breaking: precision at the top
  k leads and the gains curve count a tie group that straddles the cut in proportion to how much
  of it fits (`precision_at_k` below). Rule points have many ties, so this matters.
* Expected calibration error (ECE) is `sum_b (n_b / n) * |mean(p in b) - mean(y in b)|` over
  non-empty bins b. With `strategy="quantile"` (default, 15 bins) the edges are the quantiles of
  p, so bins hold equal shares of leads up to ties: tied predictions always share a bin and empty
  bins are dropped. The binning is exactly `sklearn.calibration.calibration_curve`'s.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

BinStrategy = Literal["quantile", "uniform"]

PROBABILITY_CLIP = 1e-6
DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.20)


# --------------------------------------------------------------------------- input checks


def _labels(y: npt.ArrayLike, *, both_classes: bool = False) -> np.ndarray:
    """Return `y` as a 1-d int8 array of 0/1, or raise naming what is wrong."""
    try:
        values = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"y must hold only 0 and 1 (no missing values): {error}") from error
    if values.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {values.shape}")
    if values.size == 0:
        raise ValueError("y is empty: there are no leads to evaluate")
    if np.isnan(values).any():
        raise ValueError(f"y has {int(np.isnan(values).sum())} missing labels")
    if not np.isin(values, (0.0, 1.0)).all():
        bad = np.unique(values[~np.isin(values, (0.0, 1.0))])[:5]
        raise ValueError(f"y must hold only 0 and 1, found {bad.tolist()}")
    labels = values.astype(np.int8)
    if both_classes and labels.min() == labels.max():
        raise ValueError(
            f"y has a single class (all {int(labels[0])}): discrimination and calibration "
            "slope are undefined; evaluate on a slice with both converted and "
            "non-converted leads"
        )
    return labels


def _scores(
    score: npt.ArrayLike, n: int, *, name: str = "score", probability: bool = False
) -> np.ndarray:
    """Return a score as a 1-d float array the length of `y`, or raise naming what is wrong."""
    values = np.asarray(score, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}")
    if values.size != n:
        raise ValueError(f"{name} has {values.size} values but y has {n}")
    if np.isnan(values).any():
        raise ValueError(f"{name} has {int(np.isnan(values).sum())} NaN values")
    if probability and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(
            f"{name} must be probabilities in [0, 1], found range "
            f"[{values.min():.6g}, {values.max():.6g}]"
        )
    if not probability and not np.isfinite(values).all():
        raise ValueError(f"{name} has infinite values")
    return values


# --------------------------------------------------------------------------- intervals


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 or n successes,
    which small tiers and sparse calibration bins hit often.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    rate = successes / n
    z2 = z * z
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


# --------------------------------------------------------------------------- calibration


def _bin_ids(p: np.ndarray, bins: int, strategy: BinStrategy) -> np.ndarray:
    """Bin index per prediction, exactly as `sklearn.calibration.calibration_curve` bins."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if strategy == "quantile":
        edges = np.percentile(p, np.linspace(0.0, 1.0, bins + 1) * 100)
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    return np.searchsorted(edges[1:-1], p)


def reliability_table(
    y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10, strategy: BinStrategy = "quantile"
) -> pd.DataFrame:
    """Observed conversion rate against mean predicted probability per bin (non-empty bins).

    Columns: bin (0-based), n, mean_p, observed, ci_low, ci_high (Wilson 95% on observed).
    """
    labels = _labels(y)
    prob = _scores(p, labels.size, name="p", probability=True)
    ids = _bin_ids(prob, bins, strategy)
    total = np.bincount(ids, minlength=bins)
    sum_p = np.bincount(ids, weights=prob, minlength=bins)
    hits = np.bincount(ids, weights=labels, minlength=bins).round().astype(int)
    kept = np.flatnonzero(total)
    intervals = [wilson_interval(int(hits[b]), int(total[b])) for b in kept]
    return pd.DataFrame(
        {
            "bin": kept.astype(int),
            "n": total[kept].astype(int),
            "mean_p": sum_p[kept] / total[kept],
            "observed": hits[kept] / total[kept],
            "ci_low": [low for low, _ in intervals],
            "ci_high": [high for _, high in intervals],
        }
    )


def ece(
    y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 15, strategy: BinStrategy = "quantile"
) -> float:
    """Expected calibration error: bin-share-weighted mean |mean p - observed rate|.

    `strategy="quantile"` gives equal-mass bins (edges at quantiles of p; ties share a bin),
    `"uniform"` gives equal-width bins on [0, 1]. Empty bins are dropped.
    """
    table = reliability_table(y, p, bins=bins, strategy=strategy)
    share = table["n"].to_numpy() / table["n"].sum()
    gap = np.abs(table["mean_p"].to_numpy() - table["observed"].to_numpy())
    return float(np.sum(share * gap))


def ece_floor(p: npt.ArrayLike, bins: int = 15, strategy: BinStrategy = "quantile") -> float:
    """The ECE a perfectly calibrated model with these predictions would show on average.

    Outcomes drawn from p still scatter around it: per bin the observed rate has standard
    deviation sqrt(sum p(1-p)) / n, and E|N(0, s)| = s sqrt(2/pi). On a few thousand test rows
    this floor is about 0.01-0.02, so an ECE bound means little without it.
    """
    prob = _scores(p, np.asarray(p).size, name="p", probability=True)
    ids = _bin_ids(prob, bins, strategy)
    total = np.bincount(ids, minlength=bins)
    variance = np.bincount(ids, weights=prob * (1 - prob), minlength=bins)
    kept = total > 0
    spread = np.sqrt(variance[kept]) / total[kept]
    return float(np.sum(total[kept] / prob.size * spread) * math.sqrt(2 / math.pi))


def _expit(eta: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * eta))


def calibration_slope_intercept(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[float, float]:
    """Unpenalised logistic regression of y on logit(p): (slope, intercept).

    A calibrated p gives slope 1 and intercept 0; slope < 1 means over-confident (predictions
    too extreme), slope > 1 under-confident. p is clipped to [1e-6, 1 - 1e-6]. Fitted by Newton
    steps with step halving. When logit(p) separates the classes (the maximum-likelihood fit does
    not exist, e.g. a perfect ranker or a constant p) both are NaN.
    """
    labels = _labels(y, both_classes=True).astype(float)
    prob = _scores(p, labels.size, name="p", probability=True)
    clipped = np.clip(prob, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    x = np.log(clipped) - np.log1p(-clipped)
    positive, negative = x[labels == 1], x[labels == 0]
    if negative.max() <= positive.min() or positive.max() <= negative.min():
        return (math.nan, math.nan)

    design = np.column_stack([np.ones_like(x), x])

    def log_likelihood(beta: np.ndarray) -> float:
        eta = design @ beta
        return float(np.sum(labels * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(2)
    current = log_likelihood(beta)
    for _ in range(100):
        mu = _expit(design @ beta)
        weight = mu * (1.0 - mu)
        gradient = design.T @ (labels - mu)
        hessian = (design * weight[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return (math.nan, math.nan)
        size = 1.0
        candidate = beta + step
        value = log_likelihood(candidate)
        while value < current - 1e-12 and size > 1e-8:
            size /= 2
            candidate = beta + size * step
            value = log_likelihood(candidate)
        if value < current - 1e-12:
            break
        beta, current = candidate, value
        if np.max(np.abs(size * step)) < 1e-10:
            break
    return (float(beta[1]), float(beta[0]))


def classification_metrics(y: npt.ArrayLike, p: npt.ArrayLike) -> dict[str, float]:
    """Discrimination and calibration of predicted probabilities.

    Keys: n, base_rate, roc_auc, pr_auc (average precision), log_loss, brier, ece (15 equal-mass
    bins), ece_floor (what a calibrated model would show by chance on these rows),
    calibration_slope, calibration_intercept.
    """
    labels = _labels(y, both_classes=True)
    prob = _scores(p, labels.size, name="p", probability=True)
    slope, intercept = calibration_slope_intercept(labels, prob)
    return {
        "n": float(labels.size),
        "base_rate": float(labels.mean()),
        "roc_auc": float(roc_auc_score(labels, prob)),
        "pr_auc": float(average_precision_score(labels, prob)),
        "log_loss": float(log_loss(labels, prob, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, prob)),
        "ece": ece(labels, prob, bins=15, strategy="quantile"),
        "ece_floor": ece_floor(prob, bins=15, strategy="quantile"),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


# --------------------------------------------------------------------------- ranking


def _fraction_label(fraction: float) -> str:
    """'0.05' -> '5pct', '0.025' -> '2.5pct'."""
    return f"{round(fraction * 100, 6):g}pct"


def _top_count(fraction: float, n: int) -> int:
    """Leads contacted when working the top `fraction`: ceil(fraction * n), at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fractions must lie in (0, 1], got {fraction}")
    return max(1, math.ceil(round(fraction * n, 9)))


def precision_at_k(y: npt.ArrayLike, score: npt.ArrayLike, k: int) -> float:
    """Expected precision of the k highest-scored leads under random tie-breaking.

    Leads scoring above the k-th highest score all count; the tie group at the cut contributes
    its conversion rate times the number of places left, i.e. the mean over all orderings of the
    ties. The result does not depend on the row order.
    """
    labels = _labels(y)
    values = _scores(score, labels.size)
    if not 1 <= k <= labels.size:
        raise ValueError(f"k must lie in [1, {labels.size}], got {k}")
    cut = np.sort(values)[::-1][k - 1]
    above = values > cut
    at_cut = values == cut
    places = k - int(above.sum())
    expected = labels[above].sum() + places * labels[at_cut].mean()
    return float(expected / k)


def ranking_metrics(
    y: npt.ArrayLike, score: npt.ArrayLike, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, float]:
    """How well a score orders leads: AUCs, precision and lift in the top fractions.

    Keys: roc_auc, pr_auc, and per fraction f precision_at_{100f}pct and lift_at_{100f}pct
    (precision / base rate), e.g. precision_at_5pct. The top f takes ceil(f * n) leads; ties at
    the cut count by expectation under random tie-breaking (see `precision_at_k`).
    """
    labels = _labels(y, both_classes=True)
    values = _scores(score, labels.size)
    base_rate = float(labels.mean())
    result = {
        "roc_auc": float(roc_auc_score(labels, values)),
        "pr_auc": float(average_precision_score(labels, values)),
    }
    for fraction in fractions:
        precision = precision_at_k(labels, values, _top_count(fraction, labels.size))
        label = _fraction_label(fraction)
        result[f"precision_at_{label}"] = precision
        result[f"lift_at_{label}"] = precision / base_rate
    return result


def gains_table(y: npt.ArrayLike, score: npt.ArrayLike) -> pd.DataFrame:
    """Cumulative gains: working leads from the highest score down, one row per distinct score.

    Columns: threshold (contact leads scoring >= it), contacted, captured (conversions),
    share_contacted, share_captured, lift (share_captured / share_contacted). Joining the rows
    (and the origin) by straight lines gives the expected gains under random tie-breaking.
    """
    labels = _labels(y)
    values = _scores(score, labels.size)
    if labels.sum() == 0:
        raise ValueError("y has no conversions: the share of conversions captured is undefined")
    thresholds, inverse = np.unique(-values, return_inverse=True)
    per_group = np.bincount(inverse, minlength=thresholds.size)
    hits_per_group = np.bincount(inverse, weights=labels, minlength=thresholds.size)
    contacted = np.cumsum(per_group)
    captured = np.cumsum(hits_per_group).round().astype(int)
    share_contacted = contacted / labels.size
    share_captured = captured / labels.sum()
    return pd.DataFrame(
        {
            "threshold": -thresholds,
            "contacted": contacted.astype(int),
            "captured": captured,
            "share_contacted": share_contacted,
            "share_captured": share_captured,
            "lift": share_captured / share_contacted,
        }
    )


def gains_at(table: pd.DataFrame, shares: npt.ArrayLike) -> np.ndarray:
    """Expected share of conversions captured when contacting each share of leads."""
    share_contacted = np.concatenate([[0.0], table["share_contacted"].to_numpy(dtype=float)])
    share_captured = np.concatenate([[0.0], table["share_captured"].to_numpy(dtype=float)])
    return np.interp(np.asarray(shares, dtype=float), share_contacted, share_captured)


# --------------------------------------------------------------------------- tiers


def tier_table(
    y: npt.ArrayLike,
    tiers: npt.ArrayLike,
    order: Sequence[str] = ("A", "B", "C", "D"),
    expected: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Conversion per tier, in `order` (tiers with no leads get n 0 and NaN rates).

    Columns: tier, n, share, conversions, conversion_rate, ci_low, ci_high (Wilson 95%), and
    mean_expected (mean of `expected`, e.g. the model probability) when `expected` is given.
    A tier label not in `order` (including a missing one) is an error.
    """
    labels = _labels(y)
    tier_values = pd.Series(np.asarray(tiers, dtype=object))
    if tier_values.size != labels.size:
        raise ValueError(f"tiers has {tier_values.size} values but y has {labels.size}")
    unknown = sorted({str(t) for t in tier_values[~tier_values.isin(list(order))]})
    if unknown:
        raise ValueError(f"tiers not in order {list(order)}: {unknown[:10]}")
    expectation = None if expected is None else _scores(expected, labels.size, name="expected")
    rows = []
    for tier in order:
        member = (tier_values == tier).to_numpy()
        n = int(member.sum())
        conversions = int(labels[member].sum())
        low, high = wilson_interval(conversions, n)
        row: dict[str, object] = {
            "tier": tier,
            "n": n,
            "share": n / labels.size,
            "conversions": conversions,
            "conversion_rate": conversions / n if n else math.nan,
            "ci_low": low,
            "ci_high": high,
        }
        if expectation is not None:
            row["mean_expected"] = float(expectation[member].mean()) if n else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- comparison


def evaluate_scores(
    y: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    probabilistic: Collection[str] = (),
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, dict[str, float]]:
    """Ranking metrics for every scorer, plus calibration for those that are probabilities.

    Args:
        y: Outcomes on the test slice.
        scores: Scorer name (e.g. "model", "rules", "truth") to its score per lead.
        probabilistic: Names whose scores are probabilities; they also get
            `classification_metrics`. Rule points are not probabilities.
        fractions: Top shares of leads for precision and lift.

    Returns:
        Scorer name to a flat dict of metrics, in the order of `scores`.
    """
    missing = sorted(set(probabilistic) - set(scores))
    if missing:
        raise ValueError(f"probabilistic names without scores: {missing}")
    labels = _labels(y, both_classes=True)
    results: dict[str, dict[str, float]] = {}
    for name, score in scores.items():
        values = _scores(score, labels.size, name=f"scores[{name!r}]")
        metrics: dict[str, float] = {}
        if name in probabilistic:
            metrics.update(classification_metrics(labels, values))
        metrics.update(ranking_metrics(labels, values, fractions))
        results[name] = metrics
    return results


def comparison_table(results: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per metric, one column per scorer; NaN where a scorer lacks a metric."""
    metrics: list[str] = []
    for values in results.values():
        metrics.extend(name for name in values if name not in metrics)
    frame = pd.DataFrame(
        {
            scorer: [float(values.get(metric, math.nan)) for metric in metrics]
            for scorer, values in results.items()
        },
        index=pd.Index(metrics, name="metric"),
    )
    return frame


def percentile_rank(score: npt.ArrayLike) -> np.ndarray:
    """Each lead's place in the list, from 0 (lowest score) to 1 (highest); ties share the mean
    place, so the many ties of rule points get one value each."""
    values = _scores(score, np.asarray(score).size)
    if values.size < 2:
        return np.full(values.size, 0.5)
    ranks = pd.Series(values).rank(method="average").to_numpy(dtype=np.float64)
    return (ranks - 1.0) / (values.size - 1)


def rank_disagreement(model: npt.ArrayLike, rules: npt.ArrayLike) -> np.ndarray:
    """How much higher the model places each lead in the list than the rules do, in [-1, 1].

    The model's percentile rank minus the rules' (`percentile_rank`): +0.8 is a lead the model
    puts near the top and the rules near the bottom, -0.8 the opposite. Ranks, not values,
    because points and probabilities are on different scales.
    """
    model_values = np.asarray(model, dtype=float)
    rules_values = _scores(rules, model_values.size, name="rules")
    return percentile_rank(model_values) - percentile_rank(rules_values)
