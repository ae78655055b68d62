"""Guards around a training run: enough data, the training window, shifts of the base rate,
and the label definition a gate must compare like with like on.

All pure: rows and config in, masks, tables and sentences out. `docs/training-guards.md`
gives the thresholds and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from common.config import Config, ConfigError, TrainingConfig

#: Exit statuses of `leadscore train` and `leadscore retrain` when a guard refuses to register.
EXIT_LEAK = 4  # a feature flagged by the leak guard and not acknowledged
EXIT_TOO_LITTLE_DATA = 5  # fewer labelled rows or outcomes than training.min_*

#: A month is far off the rest when its conversion differs from the other months' by this
#: factor (either way) and by this many standard errors.
MONTH_RATIO = 2.0
MONTH_Z = 3.0
#: The calibration and test slices' base rates differ notably past this ratio and z.
SHIFT_RATIO = 1.25
SHIFT_Z = 3.0


@dataclass(frozen=True)
class Refusal:
    """Why a trained model must not be registered, and the exit status that says so."""

    exit_code: int
    message: str


# --------------------------------------------------------------------------- minimum data


def data_shortfall(labels: np.ndarray, training: TrainingConfig) -> str | None:
    """None when the rows reach every floor; else what is missing and how much more is needed.

    Floors (training.min_rows, min_positives, min_negatives) default to Salesforce Einstein's
    1,000 leads and 120 conversions, and as many non-conversions (Dynamics 365 asks for 40 of
    each); below them a test slice has too few of an outcome to judge a model.
    """
    y = np.asarray(labels)
    rows, positives = int(y.size), int(np.count_nonzero(y == 1))
    negatives = rows - positives
    rate = positives / rows if rows else math.nan
    short: list[str] = []
    if rows < training.min_rows:
        short.append(f"{rows:,} labelled rows of the {training.min_rows:,} needed")
    for have, need, what, share in (
        (positives, training.min_positives, "converted", rate),
        (negatives, training.min_negatives, "not converted", 1 - rate),
    ):
        if have < need:
            more = need - have
            hint = (
                f", about {math.ceil(more / share):,} more rows at the current {share:.1%}"
                if share and not math.isnan(share) and share > 0
                else ""
            )
            short.append(f"{have:,} {what} rows of the {need:,} needed ({more:,} more{hint})")
    if not short:
        return None
    return (
        "too little data to register a model: "
        + "; ".join(short)
        + " (floors: training.min_rows, min_positives, min_negatives)"
    )


# --------------------------------------------------------------------------- training window


def _utc(moment: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def window_mask(cutoffs: pd.Series, training: TrainingConfig) -> tuple[np.ndarray, str | None]:
    """Rows inside `training.since` / `training.window_days`, and a sentence on what was left out.

    window_days counts back from the newest cutoff. Raises ValueError for rows without cutoffs
    (a flat export has no time to window on). The mask is idempotent: applying it to the rows it
    keeps keeps them all.
    """
    if training.since is None and training.window_days is None:
        return np.ones(len(cutoffs), dtype=bool), None
    if cutoffs.isna().any():
        raise ValueError(
            "training.since / training.window_days need cutoff times; this training set has "
            "rows without one (a flat export)"
        )
    at = pd.to_datetime(cutoffs, utc=True)
    keep = np.ones(len(at), dtype=bool)
    bounds = []
    if training.since is not None:
        since = _utc(training.since)
        keep &= (at >= since).to_numpy()
        bounds.append(f"since {since:%Y-%m-%d}")
    if training.window_days is not None and len(at):
        start = at.max() - pd.Timedelta(days=training.window_days)
        keep &= (at >= start).to_numpy()
        bounds.append(f"the last {training.window_days} days of cutoffs (from {start:%Y-%m-%d})")
    left = int((~keep).sum())
    return keep, f"Training window {' and '.join(bounds)}: {left:,} older rows left out."


def apply_window(
    training_set: pd.DataFrame, config: Config
) -> tuple[pd.DataFrame, np.ndarray, str | None]:
    """The rows inside the training window (index reset), the mask and a sentence."""
    keep, note = window_mask(training_set["cutoff"], config.training)
    if keep.all():
        return training_set, keep, note
    return training_set[keep].reset_index(drop=True), keep, note


def window(training_set: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, str | None]:
    """The rows inside the training window and a sentence on it; a `ConfigError` when there
    is no time to window on. Callers apply it before scoring rules or truth, so every array
    stays aligned (`train_model` then finds nothing more to leave out)."""
    try:
        frame, _, note = apply_window(training_set, config)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return frame, note


# --------------------------------------------------------------------------- base rates


def _z(hits_a: float, n_a: float, hits_b: float, n_b: float) -> float:
    """Two-proportion z statistic (pooled); 0 when undefined."""
    if n_a == 0 or n_b == 0:
        return 0.0
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 0.0 if spread == 0 else (hits_a / n_a - hits_b / n_b) / spread


def _far_apart(rate: float, other: float, z: float, ratio: float, z_bound: float) -> bool:
    low, high = sorted((rate, other))
    apart = high > ratio * low if low > 0 else high > 0
    return bool(apart and abs(z) > z_bound)


def monthly_table(cutoffs: pd.Series, labels: np.ndarray) -> pd.DataFrame:
    """Rows and conversion per month of cutoff; `far_off` marks a month whose rate differs from
    the other months' together by `MONTH_RATIO` times and `MONTH_Z` standard errors.

    Empty for rows without cutoffs (a flat export).
    """
    columns = ["month", "rows", "converted", "conversion_rate", "rest_rate", "far_off"]
    if len(cutoffs) == 0 or cutoffs.isna().all():
        return pd.DataFrame(columns=columns)
    at = pd.to_datetime(cutoffs, utc=True)
    month = at.dt.tz_localize(None).dt.to_period("M").astype(str)
    y = np.asarray(labels, dtype=np.float64)
    grouped = pd.DataFrame({"month": month.to_numpy(), "y": y}).groupby("month", sort=True)["y"]
    table = grouped.agg(rows="size", converted="sum").reset_index()
    total_rows, total_hits = float(table["rows"].sum()), float(table["converted"].sum())
    rest_rows = total_rows - table["rows"]
    rest_hits = total_hits - table["converted"]
    table["conversion_rate"] = table["converted"] / table["rows"]
    table["rest_rate"] = (rest_hits / rest_rows.where(rest_rows > 0)).astype(float)
    table["far_off"] = [
        bool(n_rest > 0)
        and _far_apart(
            rate, hits_rest / n_rest, _z(hits, n, hits_rest, n_rest), MONTH_RATIO, MONTH_Z
        )
        for rate, hits, n, hits_rest, n_rest in zip(
            table["conversion_rate"],
            table["converted"],
            table["rows"],
            rest_hits,
            rest_rows,
            strict=True,
        )
    ]
    table["converted"] = table["converted"].astype(np.int64)
    return table[columns]


def month_notes(table: pd.DataFrame) -> list[str]:
    """A sentence per month far off the rest."""
    return [
        f"Month {row.month}: {row.rows:,} rows convert at {row.conversion_rate:.1%} against "
        f"{row.rest_rate:.1%} in the other months; check the export for that period (a table "
        "that starts late, a changed process) or set training.since / training.window_days."
        for row in table[table["far_off"]].itertuples()
    ]


def base_rate_shift(
    labels: np.ndarray, slice_of_row: np.ndarray
) -> tuple[dict[str, float | bool], str | None]:
    """Conversion of the calibration and test slices, their difference, and a warning when
    they differ by `SHIFT_RATIO` times and `SHIFT_Z` standard errors (the calibrator learnt a
    base rate the test period does not have)."""
    y = np.asarray(labels, dtype=np.float64)
    calib, test = slice_of_row == "calibration", slice_of_row == "test"
    n_c, n_t = float(calib.sum()), float(test.sum())
    hits_c, hits_t = float(y[calib].sum()), float(y[test].sum())
    rate_c = hits_c / n_c if n_c else math.nan
    rate_t = hits_t / n_t if n_t else math.nan
    z = _z(hits_c, n_c, hits_t, n_t)
    shifted = bool(n_c and n_t) and _far_apart(rate_c, rate_t, z, SHIFT_RATIO, SHIFT_Z)
    facts: dict[str, float | bool] = {
        "calibration_rate": rate_c,
        "test_rate": rate_t,
        "difference": rate_t - rate_c,
        "z": z,
        "shifted": shifted,
    }
    if not shifted:
        return facts, None
    return facts, (
        f"Base-rate shift: the calibration slice converts at {rate_c:.1%} and the test slice "
        f"at {rate_t:.1%} ({rate_t - rate_c:+.1%}); probabilities calibrated on the first are "
        "off on the second. See the rows per month; training.since or training.window_days "
        "can leave out a period that does not look like today."
    )


# --------------------------------------------------------------------------- label definition


def label_definition(config: Config, flat: bool) -> dict[str, Any]:
    """What a label means: a gate compares a challenger with a champion only on the same one."""
    return {
        "horizon_days": int(config.horizon_days),
        "weekly_weeks": int(config.snapshot_policy.weekly_weeks),
        "flat": bool(flat),
    }


def label_differences(challenger: dict[str, Any], champion: dict[str, Any]) -> list[str]:
    """Each part of the label definition that differs, as `key champion -> challenger`."""
    return [
        f"{key} {champion.get(key)!r} (champion) vs {challenger.get(key)!r} (challenger)"
        for key in ("horizon_days", "weekly_weeks", "flat")
        if key in champion and champion.get(key) != challenger.get(key)
    ]
