"""The leakage audit: how well each feature alone predicts the label on the training slice.

A feature that alone ranks leads with AUC above ~0.9 usually records the outcome (a sales
status filled in after contact) rather than predicting it. Categories are target-encoded out of
fold, so a many-valued column cannot look predictive just by memorising rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from common.config import CustomField, TrainingConfig, custom_feature_name
from training.scorer import ModelSpec

#: The drop-column probe: a quick booster, retrained without each candidate feature.
DOMINANCE_ROUNDS = 150
DOMINANCE_LEARNING_RATE = 0.1
DOMINANCE_EARLY_STOPPING = 20


def _out_of_fold_rate(values: pd.Series, y: np.ndarray, seed: int) -> np.ndarray:
    codes = pd.factorize(values.astype("str"), use_na_sentinel=False)[0]
    encoded = np.empty(y.shape[0], dtype=np.float64)
    prior = float(y.mean())
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    for fit_rows, held_out in folds.split(codes.reshape(-1, 1), y):
        hits = np.bincount(codes[fit_rows], weights=y[fit_rows], minlength=codes.max() + 1)
        seen = np.bincount(codes[fit_rows], minlength=codes.max() + 1)
        rate = (hits + 10 * prior) / (seen + 10)  # smoothed towards the base rate
        encoded[held_out] = rate[codes[held_out]]
    return encoded


def rank_auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of `score` for labels `y` (0/1): the Mann-Whitney U over both outcomes' counts.

    Each positive counts the negatives scored below it, plus half of those tied with it, as
    `roc_auc_score` does; only the two outcomes' scores are sorted (no argsort, no curve),
    which is what makes an audit of every feature affordable on a large training slice.
    0.5 when either outcome is absent or every score is equal.
    """
    positive = y.astype(bool)
    negatives = np.sort(score[~positive])
    positives = np.sort(score[positive])
    if negatives.size == 0 or positives.size == 0 or score.min() == score.max():
        return 0.5
    below = np.searchsorted(negatives, positives, side="left")
    up_to = np.searchsorted(negatives, positives, side="right")
    wins = 2 * int(below.sum()) + int((up_to - below).sum())  # twice U: integers, exact
    return wins / (2 * negatives.size * positives.size)


def single_feature_auc(
    features: pd.DataFrame, labels: np.ndarray, categorical: Sequence[str], seed: int = 0
) -> pd.DataFrame:
    """AUC of each feature alone (direction-free: max(auc, 1 - auc)), highest first."""
    y = np.asarray(labels).astype(np.int64)
    rows = []
    for name in features.columns:
        column = features[name]
        if name in categorical:
            score = _out_of_fold_rate(column, y, seed)
        else:
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            missing = np.isnan(values)
            # missing ranks below every value: "absent" is information, not noise
            low = np.nanmin(values) - 1 if (~missing).any() else 0.0
            score = np.where(missing, low, values)
        auc = rank_auc(score, y)
        rows.append({"feature": name, "auc": max(auc, 1 - auc)})
    return pd.DataFrame(rows).sort_values("auc", ascending=False, ignore_index=True)


def excluded_still_present(columns: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Excluded columns that are still among the features (as themselves or a custom_ feature)."""
    names = set(columns)
    present = []
    for column in exclude:
        if column in names or custom_feature_name(column) in names:
            present.append(column)
    return present


def drop_column_costs(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    spec: ModelSpec,
    candidates: Sequence[str],
    params: Mapping[str, Any],
    leave_out: Sequence[str] = (),
) -> tuple[float, dict[str, float]]:
    """Validation AUC of a quick booster on every feature but `leave_out`, and without each
    candidate as well.

    The quick booster (`DOMINANCE_ROUNDS` trees at learning rate `DOMINANCE_LEARNING_RATE`,
    leaves of at least 20 rows or 1% of the rows, stopped early on the validation rows) is only
    a probe: it is refitted once per candidate,
    so the cost is 1 + len(candidates) small fits, not a full training each.
    """
    from training.model import fit_booster

    # leaves may be smaller than the model's: a column a small training set cannot yet
    # exploit under min_data_in_leaf is still a leak the next, larger training would use
    leaf = min(int(params.get("min_data_in_leaf", 20)), max(20, train[1].size // 100))
    quick = {**params, "learning_rate": DOMINANCE_LEARNING_RATE, "min_data_in_leaf": leaf}

    def validation_auc(keep: np.ndarray) -> float:
        if not keep.any():
            return 0.5
        names = tuple(n for n, k in zip(spec.names, keep, strict=True) if k)
        kinds = tuple(k for k, kept in zip(spec.kinds, keep, strict=True) if kept)
        sub = ModelSpec(names, kinds, {n: c for n, c in spec.categories.items() if n in names})
        booster = fit_booster(
            (train[0][:, keep], train[1]),
            (validation[0][:, keep], validation[1]),
            sub,
            quick,
            DOMINANCE_ROUNDS,
            DOMINANCE_EARLY_STOPPING,
        )
        raw = booster.predict(validation[0][:, keep], num_iteration=booster.best_iteration)
        return float(roc_auc_score(validation[1], raw))

    base = np.array([n not in set(leave_out) for n in spec.names], dtype=bool)
    full = validation_auc(base)
    without: dict[str, float] = {}
    for name in candidates:
        keep = base.copy()
        keep[spec.names.index(name)] = False
        without[name] = validation_auc(keep)
    return full, without


@dataclass(frozen=True)
class LeakFlag:
    """A feature the leak guard flags: its export column, why, and whether the config
    acknowledges it (training.acknowledge_leaks)."""

    feature: str
    column: str
    reason: str
    acknowledged: bool

    def sentence(self) -> str:
        return f"'{self.column}' ({self.feature}): {self.reason}"


def column_of(feature: str, custom_fields: Sequence[CustomField]) -> str:
    """The export column a feature comes from (a custom field's column), else the feature."""
    for field in custom_fields:
        if field.feature == feature:
            return field.column
    return feature


def leak_flags(
    audit: pd.DataFrame, training: TrainingConfig, custom_fields: Sequence[CustomField]
) -> list[LeakFlag]:
    """Flags from an audit table (feature, auc, and for probed features without_auc, full_auc).

    Alone: single-feature AUC above training.audit_auc. Dominant: single-feature AUC at least
    training.leak_alone_auc and removing it loses at least training.leak_share of the probe's
    validation AUC above 0.5.
    """
    acknowledged = {name.strip().casefold() for name in training.acknowledge_leaks}
    flags = []
    for row in audit.to_dict(orient="records"):
        feature, auc = str(row["feature"]), float(row["auc"])
        reasons = []
        if auc > training.audit_auc:
            reasons.append(
                f"alone it predicts the label with AUC {auc:.3f} on the training slice "
                f"(above training.audit_auc {training.audit_auc})"
            )
        share = float(row.get("share_lost", math.nan))
        if not math.isnan(share) and share >= training.leak_share:
            reasons.append(
                f"the model depends on it: validation AUC {row['full_auc']:.3f} with it, "
                f"{row['without_auc']:.3f} without ({share:.0%} of its lift above 0.5, at least "
                f"training.leak_share {training.leak_share:.0%}), while alone it scores "
                f"{auc:.3f} (at least training.leak_alone_auc {training.leak_alone_auc})"
            )
        if reasons:
            column = column_of(feature, custom_fields)
            ok = column.casefold() in acknowledged or feature.casefold() in acknowledged
            flags.append(LeakFlag(feature, column, "; ".join(reasons), ok))
    return flags


def export_time_flags(
    preset: str | None, custom_fields: Sequence[CustomField], training: TrainingConfig
) -> list[LeakFlag]:
    """Flags for custom fields that the preset's CRM fills with a current value or an
    export-time aggregate (lifecycle stage, lead status, scores, counts, last-* dates): at the
    MQL moment such a column already knows the lead's future, however weak it looks alone."""
    from features.presets import as_of_export_columns

    acknowledged = {name.strip().casefold() for name in training.acknowledge_leaks}
    columns = [field.column for field in custom_fields]
    flags = []
    for field in custom_fields:
        if field.column not in as_of_export_columns(preset, columns):
            continue
        ok = field.column.casefold() in acknowledged or field.feature.casefold() in acknowledged
        reason = (
            f"the {preset} preset knows it as a value as of the export (a current value or an "
            "aggregate over the lead's whole history), not as of the cutoff"
        )
        flags.append(LeakFlag(field.feature, field.column, reason, ok))
    return flags
