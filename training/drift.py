"""The drift profile: a reference at training time, counts of a scoring run in its bins, PSI.

The reference is computed in training on **all the training set's rows** (train, validation,
calibration and test slices; a seeded uniform sample of `training.train.REFERENCE_ROWS` of them
on a larger set): the population the model learned from. Not the test slice alone:
with weekly cutoffs (`snapshot_policy.weekly_weeks`) the test slice holds the newest leads,
whose later weekly rows are still censored, so it under-represents leads weeks after their MQL,
which batch runs score. Probabilities of training rows are in-sample, a small effect with the
default small trees. It holds, for each model feature, fixed bins (numeric: up to 10 quantile
bins of the reference plus a missing bin; categorical: the most frequent training categories,
`other` and `missing`) and the reference share of each bin; the same for the calibrated
probability; and the share of each tier.

A scoring run counts its rows into the reference's bins (`profile_counts`, chunk by chunk with
`merge_counts`, so memory stays bounded); the batch job writes those counts in a monitoring
record beside its scores (`serving.monitor`) and `leadscore monitor` compares them with the
reference (`serving.monitor_report`). Training needs the reference and serving the counts, so
the bins live here, below both.

Everything here is JSON-able plain data, and this module imports only numpy and pandas (and
the scorer's spec).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.scorer import ModelSpec
from training.tiers import TIER_NAMES

REFERENCE_FORMAT = "leadscore.reference/1"
COUNTS_FORMAT = "leadscore.counts/1"
#: Quantile bins of a numeric feature (fewer when values tie, e.g. zero-inflated counts).
NUMERIC_BINS = 10
#: Most categories of a categorical feature kept as their own bin; the rest are `other`.
TOP_CATEGORIES = 20
#: Share floor for empty bins in PSI (ln(0) is undefined).
PSI_EPSILON = 1e-4
OTHER = "other"
MISSING = "missing"
SCORE = "probability"


class MonitorError(ValueError):
    """Monitoring data cannot be used as given; the message says which file or key and why."""


# --------------------------------------------------------------------------- binning


def _numeric_values(values: npt.ArrayLike) -> np.ndarray:
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def quantile_edges(values: npt.ArrayLike, bins: int = NUMERIC_BINS) -> list[float]:
    """Inner bin edges: the distinct 1/bins .. (bins-1)/bins quantiles of the non-missing values.

    A value equal to an edge falls in the bin below it, so a feature that is mostly zero gets a
    bin of exactly zero. No values: no edges (one bin plus missing).
    """
    numbers = _numeric_values(values)
    numbers = numbers[np.isfinite(numbers)]
    if numbers.size == 0:
        return []
    quantiles = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(edge) for edge in np.unique(quantiles)]


def numeric_bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable names of the bins `(-inf, e0], (e0, e1], ..., (ek, inf)` and `missing`."""
    if not edges:
        return ["all", MISSING]
    labels = [f"<= {edges[0]:.4g}"]
    labels += [f"({low:.4g}, {high:.4g}]" for low, high in itertools.pairwise(edges)]
    labels.append(f"> {edges[-1]:.4g}")
    return [*labels, MISSING]


def numeric_bin_counts(values: npt.ArrayLike, edges: Sequence[float]) -> np.ndarray:
    """Counts per numeric bin (last: missing, which includes non-finite values)."""
    numbers = _numeric_values(values)
    finite = int(np.count_nonzero(np.isfinite(numbers)))
    # bin i holds edges[i-1] < x <= edges[i]: count the x <= each edge (a compare per edge,
    # cheaper than a binary search per value); NaN compares false, -inf is missing
    below = int(np.count_nonzero(numbers == -np.inf))
    at_most = [int(np.count_nonzero(numbers <= edge)) - below for edge in edges]
    counts = np.diff(np.array([0, *at_most, finite], dtype=np.int64))
    return np.append(counts, numbers.shape[0] - finite).astype(np.int64)


def numeric_bin_index(values: npt.ArrayLike, edges: Sequence[float]) -> np.ndarray:
    """The numeric bin of each value, as `numeric_bin_counts` counts them (missing: last)."""
    numbers = _numeric_values(values)
    finite = np.isfinite(numbers)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.where(finite, numbers, 0.0))
    return np.where(finite, index, len(edges) + 1).astype(np.int64)


def categorical_bin_index(values: npt.ArrayLike, categories: Sequence[str]) -> np.ndarray:
    """The bin of each value, as `categorical_bin_counts` counts them."""
    found, missing = _positions(values, categories)
    return np.where(missing, len(categories) + 1, np.where(found < 0, len(categories), found))


#: Fewest rows of a period for it to count in `calendar_psi` (fewer: mostly chance).
CALENDAR_MIN_ROWS = 50
#: The calendar allowance is the largest of the reference's last this many periods (weeks: a
#: year, one turn of the seasons). Nightly runs come after them; the earlier weeks hold the
#: start of the CRM's history, when no lead was old yet and no engagement history long (on
#: the demo, PSI up to 4 against the whole), which would excuse almost any drift.
CALENDAR_PERIODS = 52


def calendar_share_difference(
    tier: np.ndarray, period_codes: np.ndarray, judged: np.ndarray | None = None
) -> list[float]:
    """Per tier: the largest difference beyond chance (two standard errors) between one
    period's share of the tier and all rows' share (0 if none exceeds); the calendar's part of
    a run's tier shares, as `calendar_psi` is for PSI. `judged`: as for `calendar_psi`."""
    found, _ = _positions(pd.Series(np.asarray(tier, dtype=object), dtype=object), TIER_NAMES)
    n_tiers = len(TIER_NAMES)
    n_periods = int(period_codes.max()) + 1 if period_codes.size else 0
    table = np.bincount(
        period_codes * n_tiers + np.maximum(found, 0), minlength=n_periods * n_tiers
    ).reshape(n_periods, n_tiers)
    overall = table.sum(axis=0) / max(int(table.sum()), 1)
    largest = np.zeros(n_tiers)
    for code, row in enumerate(table):
        rows = int(row.sum())
        if rows < CALENDAR_MIN_ROWS or (judged is not None and not judged[code]):
            continue
        chance = 2.0 * np.sqrt(overall * (1.0 - overall) / rows)
        largest = np.maximum(largest, np.abs(row / rows - overall) - chance)
    return [float(v) for v in largest]


def recent_periods(labels: npt.ArrayLike, count: int = CALENDAR_PERIODS) -> np.ndarray:
    """A flag per period label: True for the last `count` of them in sorted order (labels
    such as '2026-03-30/2026-04-05' sort as time does)."""
    labels = np.asarray(labels)
    judged = np.zeros(labels.size, dtype=bool)
    judged[np.argsort(labels, kind="stable")[max(labels.size - count, 0) :]] = True
    return judged


def calendar_psi(
    bin_index: np.ndarray, n_bins: int, period_codes: np.ndarray, judged: np.ndarray | None = None
) -> float:
    """The largest PSI beyond chance of one period's rows against all rows (0 if none exceeds).

    `bin_index` and `period_codes` are per row; periods with fewer than `CALENDAR_MIN_ROWS`
    rows are skipped, and so are those `judged` (a flag per period code) leaves out; every
    period's rows still make up the whole they are compared with.
    """
    n_periods = int(period_codes.max()) + 1 if period_codes.size else 0
    table = np.bincount(period_codes * n_bins + bin_index, minlength=n_periods * n_bins)
    table = table.reshape(n_periods, n_bins).astype(np.float64)
    overall = table.sum(axis=0) / max(table.sum(), 1.0)
    largest = 0.0
    for code, row in enumerate(table):
        rows = int(row.sum())
        if rows < CALENDAR_MIN_ROWS or (judged is not None and not judged[code]):
            continue
        share = row / rows
        used = int(((overall > 0) | (share > 0)).sum())
        excess = psi(overall, share, max(PSI_EPSILON, 0.5 / rows)) - psi_floor(
            used, rows, int(table.sum())
        )
        largest = max(largest, excess)
    return float(largest)


def _category_text(values: npt.ArrayLike) -> pd.Series:
    """A categorical column as pandas strings, missing values kept missing."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    return series if isinstance(series.dtype, pd.StringDtype) else series.astype("str")


def top_categories(
    values: npt.ArrayLike, known: Sequence[str], limit: int = TOP_CATEGORIES
) -> list[str]:
    """The `limit` known categories most frequent in `values` (ties by name), in that order."""
    frequency = _category_text(values).value_counts(dropna=True)
    ranked = sorted(known, key=lambda c: (-int(frequency.get(c, 0)), c))
    return [str(c) for c in ranked[:limit]]


def _positions(values: npt.ArrayLike, categories: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(position of each value in `categories`, -1 if absent; missing mask), hashing each
    distinct value once."""
    codes, uniques = pd.factorize(_category_text(values), use_na_sentinel=True)
    lookup = pd.Index(list(categories), dtype=object).get_indexer(pd.Index(uniques, dtype=object))
    missing = codes < 0
    return np.where(
        missing, -1, lookup[np.where(missing, 0, codes)] if lookup.size else -1
    ), missing


def categorical_bin_counts(values: npt.ArrayLike, categories: Sequence[str]) -> np.ndarray:
    """Counts per category in order, then `other` (any other value), then `missing`."""
    found, missing = _positions(values, categories)
    position = np.where(missing, len(categories) + 1, np.where(found < 0, len(categories), found))
    return np.bincount(position, minlength=len(categories) + 2).astype(np.int64)


def tier_counts(tier: npt.ArrayLike) -> np.ndarray:
    """Leads per tier A-D; a label outside A-D (or a missing one) is an error naming it."""
    found, _ = _positions(pd.Series(np.asarray(tier, dtype=object), dtype=object), TIER_NAMES)
    if (found < 0).any():
        values = np.asarray(tier, dtype=object)[found < 0]
        unknown = sorted({str(t) for t in values})
        raise MonitorError(f"tier: values outside {list(TIER_NAMES)}: {unknown[:5]}")
    return np.bincount(found, minlength=len(TIER_NAMES)).astype(np.int64)


def _shares(counts: np.ndarray) -> list[float]:
    total = int(counts.sum())
    return [float(c) / total if total else 0.0 for c in counts]


# --------------------------------------------------------------------------- reference


def _check_inputs(
    features: pd.DataFrame, probability: np.ndarray, tier: np.ndarray, names: Sequence[str]
) -> None:
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise MonitorError(
            f"features: {len(missing)} model feature(s) missing from the frame, e.g. {missing[:5]}"
        )
    n = len(features)
    if len(probability) != n or len(tier) != n:
        raise MonitorError(
            f"features has {n} rows but probability has {len(probability)} and tier {len(tier)}"
        )


def reference_id(reference: Mapping[str, Any]) -> str:
    """A hash of the reference's bins: runs counted in the same bins share it."""
    bins = {
        "features": {
            name: [item["kind"], item.get("edges"), item.get("categories")]
            for name, item in reference["features"].items()
        },
        "score": reference["score"]["edges"],
    }
    text = json.dumps(bins, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_profile(
    features: pd.DataFrame,
    probability: np.ndarray,
    tier: np.ndarray,
    spec: ModelSpec,
    *,
    horizon_days: int | None = None,
    weekly_weeks: int | None = None,
    rows_from: str = "reference rows",
    periods: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """The reference distributions of a model's features, probability and tiers (JSON-able).

    Args:
        features: the reference rows (training uses all its rows), with the model features.
        probability: the calibrated probability of each row.
        tier: the tier (A-D) of each row.
        spec: the model's feature spec (names, kinds, training categories).
        horizon_days: the model's horizon, kept so that realised conversion is judged on it.
        weekly_weeks: the snapshot policy of the training rows (0: at mql_at only).
        rows_from: which rows these are, for the report.
        periods: a label per row that sorts as time does (e.g. the week of its cutoff).
            Each feature and the probability then also keep `calendar_psi`: the largest PSI
            beyond chance that the rows of one of the last `CALENDAR_PERIODS` periods show
            against all of them. That much a scoring run shows without any change of market
            (campaigns, seasons, the slow drift of the mix), so alerts count only PSI beyond it.
    """
    probability = np.asarray(probability, dtype=np.float64)
    tier = np.asarray(tier, dtype=object)
    _check_inputs(features, probability, tier, spec.names)
    if len(features) == 0:
        raise MonitorError("the reference needs at least one row")
    period_codes, judged = None, None
    if periods is not None:
        period_codes, labels = pd.factorize(np.asarray(periods))
        judged = recent_periods(labels)
    profile: dict[str, dict[str, Any]] = {}
    for name, kind in zip(spec.names, spec.kinds, strict=True):
        column = features[name]
        if kind == "categorical":
            categories = top_categories(column, spec.categories.get(name, ()))
            index = categorical_bin_index(column, categories)
            counts = np.bincount(index, minlength=len(categories) + 2)
            profile[name] = {
                "kind": "categorical",
                "categories": categories,
                "bins": [*categories, OTHER, MISSING],
                "shares": _shares(counts),
            }
        else:
            edges = quantile_edges(column)
            index = numeric_bin_index(column, edges)
            counts = np.bincount(index, minlength=len(edges) + 2)
            profile[name] = {
                "kind": "numeric",
                "edges": edges,
                "bins": numeric_bin_labels(edges),
                "shares": _shares(counts),
            }
        if period_codes is not None:
            profile[name]["calendar_psi"] = calendar_psi(index, counts.size, period_codes, judged)
    score_edges = quantile_edges(probability)
    score_index = numeric_bin_index(probability, score_edges)
    score_counts = np.bincount(score_index, minlength=len(score_edges) + 2)
    reference: dict[str, Any] = {
        "format": REFERENCE_FORMAT,
        "rows": len(features),
        "rows_from": rows_from,
        "horizon_days": horizon_days,
        "weekly_weeks": weekly_weeks,
        "features": profile,
        "score": {
            "kind": "numeric",
            "edges": score_edges,
            "bins": numeric_bin_labels(score_edges),
            "shares": _shares(score_counts),
            "mean": float(np.mean(probability)),
            **(
                {}
                if period_codes is None
                else {
                    "calendar_psi": calendar_psi(
                        score_index, score_counts.size, period_codes, judged
                    )
                }
            ),
        },
        "tiers": {
            "names": list(TIER_NAMES),
            "shares": _shares(tier_counts(tier)),
            **(
                {}
                if period_codes is None
                else {"calendar_difference": calendar_share_difference(tier, period_codes, judged)}
            ),
        },
    }
    reference["id"] = reference_id(reference)
    return reference


def check_reference(reference: Mapping[str, Any], origin: str = "reference") -> None:
    """Raise MonitorError unless `reference` is a reference profile this code can read."""
    if not isinstance(reference, Mapping) or reference.get("format") != REFERENCE_FORMAT:
        got = reference.get("format") if isinstance(reference, Mapping) else type(reference)
        raise MonitorError(f"{origin}: not a {REFERENCE_FORMAT} reference (format {got!r})")
    for key in ("id", "features", "score", "tiers"):
        if key not in reference:
            raise MonitorError(f"{origin}: key '{key}' is missing")


# --------------------------------------------------------------------------- counts


def profile_counts(
    features: pd.DataFrame,
    probability: np.ndarray,
    tier: np.ndarray,
    reference: Mapping[str, Any],
) -> dict[str, Any]:
    """Counts of scored rows in the reference's bins (JSON-able); add chunks with merge_counts."""
    check_reference(reference)
    probability = np.asarray(probability, dtype=np.float64)
    tier = np.asarray(tier, dtype=object)
    _check_inputs(features, probability, tier, list(reference["features"]))
    counts: dict[str, list[int]] = {}
    for name, item in reference["features"].items():
        if item["kind"] == "categorical":
            values = categorical_bin_counts(features[name], item["categories"])
        else:
            values = numeric_bin_counts(features[name], item["edges"])
        counts[name] = [int(v) for v in values]
    score = numeric_bin_counts(probability, reference["score"]["edges"])
    return {
        "format": COUNTS_FORMAT,
        "reference_id": reference["id"],
        "rows": len(features),
        "features": counts,
        "score": [int(v) for v in score],
        "score_sum": float(np.nansum(probability)),
        "tiers": [int(v) for v in tier_counts(tier)],
    }


def empty_counts(reference: Mapping[str, Any]) -> dict[str, Any]:
    """Zero counts in the reference's bins: the start of a chunked count."""
    check_reference(reference)
    return {
        "format": COUNTS_FORMAT,
        "reference_id": reference["id"],
        "rows": 0,
        "features": {
            name: [0] * len(item["shares"]) for name, item in reference["features"].items()
        },
        "score": [0] * len(reference["score"]["shares"]),
        "score_sum": 0.0,
        "tiers": [0] * len(TIER_NAMES),
    }


def _same_bins(a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    if a.get("format") != COUNTS_FORMAT or b.get("format") != COUNTS_FORMAT:
        raise MonitorError(f"merge_counts takes {COUNTS_FORMAT} counts")
    if a["reference_id"] != b["reference_id"]:
        raise MonitorError(
            f"counts of different references ({a['reference_id']} and {b['reference_id']}) "
            "cannot be added"
        )
    if set(a["features"]) != set(b["features"]):
        raise MonitorError("counts over different features cannot be added")
    for name, values in a["features"].items():
        if len(values) != len(b["features"][name]):
            raise MonitorError(f"feature '{name}': counts over different bins cannot be added")


def merge_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The counts of two sets of rows counted in the same reference's bins (inputs unchanged)."""
    _same_bins(a, b)

    def add(x: Sequence[int], y: Sequence[int]) -> list[int]:
        return [int(p) + int(q) for p, q in zip(x, y, strict=True)]

    return {
        "format": COUNTS_FORMAT,
        "reference_id": a["reference_id"],
        "rows": int(a["rows"]) + int(b["rows"]),
        "features": {
            name: add(values, b["features"][name]) for name, values in a["features"].items()
        },
        "score": add(a["score"], b["score"]),
        "score_sum": float(a["score_sum"]) + float(b["score_sum"]),
        "tiers": add(a["tiers"], b["tiers"]),
    }


# --------------------------------------------------------------------------- PSI


def psi(
    expected_share: npt.ArrayLike, actual_share: npt.ArrayLike, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected).

    Shares below `epsilon` (empty bins) are floored at it. Rules of thumb: below 0.1 stable,
    0.1-0.25 a moderate shift, above 0.25 a major one.
    """
    expected = np.asarray(expected_share, dtype=np.float64)
    actual = np.asarray(actual_share, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"{expected.size} expected shares but {actual.size} actual shares")
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    e = np.maximum(expected, epsilon)
    a = np.maximum(actual, epsilon)
    value = float(np.sum((a - e) * np.log(a / e)))
    return value if math.isfinite(value) else math.inf


def psi_floor(bins: int, rows: int, reference_rows: int) -> float:
    """The PSI two samples of one distribution show by chance: (bins - 1)(1/rows + 1/reference).

    PSI is close to a chi-square statistic scaled by 1/rows + 1/reference_rows, with bins - 1
    degrees of freedom, so a small run shows PSI even without drift (62 leads in 10 bins
    against 800 reference rows: about 0.16). Alerts compare the PSI beyond this floor.
    """
    if rows <= 0 or reference_rows <= 0:
        return math.inf
    return max(bins - 1, 0) * (1.0 / rows + 1.0 / reference_rows)
