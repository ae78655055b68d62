"""The leakage audit: how well each feature alone predicts the label on the training slice.

A feature that alone ranks leads with AUC above ~0.9 usually records the outcome (a sales
status filled in after contact) rather than predicting it. Categories are target-encoded out of
fold, so a many-valued column cannot look predictive just by memorising rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from features.config import custom_feature_name


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
        auc = float(roc_auc_score(y, score)) if np.unique(score).shape[0] > 1 else 0.5
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
