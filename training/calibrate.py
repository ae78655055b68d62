"""Calibration: a monotone map from the booster's raw score to a probability.

Both isotonic and sigmoid (Platt) calibrators are fitted on the calibration slice and the one
with the lower cross-validated log loss is kept (cross-validated, because isotonic regression
scores itself too kindly on the rows it was fitted on). A calibrator is a handful of numbers
saved as JSON: nothing to unpickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Method = Literal["isotonic", "sigmoid"]
EPS = 1e-6


@dataclass(frozen=True)
class Calibrator:
    """Maps raw scores (log-odds) to probabilities."""

    method: Method
    x: tuple[float, ...] = ()  # isotonic knots (raw score)
    y: tuple[float, ...] = ()  # isotonic values (probability)
    slope: float = 1.0  # sigmoid: p = 1 / (1 + exp(-(slope * raw + intercept)))
    intercept: float = 0.0
    cv_log_loss: dict[str, float] = field(default_factory=dict)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        else:
            p = 1.0 / (1.0 + np.exp(-(self.slope * raw + self.intercept)))
        return np.clip(p, EPS, 1.0 - EPS)

    def to_json(self) -> str:
        return json.dumps(
            {
                "method": self.method,
                "x": list(self.x),
                "y": list(self.y),
                "slope": self.slope,
                "intercept": self.intercept,
                "cv_log_loss": self.cv_log_loss,
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> Calibrator:
        data: dict[str, Any] = json.loads(text)
        if data.get("method") not in ("isotonic", "sigmoid"):
            raise ValueError(f"calibrator: unknown method {data.get('method')!r}")
        return Calibrator(
            method=data["method"],
            x=tuple(float(v) for v in data["x"]),
            y=tuple(float(v) for v in data["y"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            cv_log_loss={k: float(v) for k, v in data.get("cv_log_loss", {}).items()},
        )


def _fit(method: Method, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "isotonic":
        iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(raw, y)
        return Calibrator(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
        )
    logistic = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return Calibrator(
        "sigmoid", slope=float(logistic.coef_[0, 0]), intercept=float(logistic.intercept_[0])
    )


def fit_calibrator(
    raw: np.ndarray, y: np.ndarray, methods: tuple[Method, ...], seed: int, folds: int = 5
) -> Calibrator:
    """Fit each method, keep the one with the lower cross-validated log loss on these rows."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if np.unique(y).shape[0] < 2:
        raise ValueError("calibration slice: needs both converted and unconverted leads")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    losses: dict[str, float] = {}
    for method in methods:
        predicted = np.empty_like(raw)
        for fit_rows, held_out in splitter.split(raw.reshape(-1, 1), y):
            predicted[held_out] = _fit(method, raw[fit_rows], y[fit_rows]).apply(raw[held_out])
        losses[method] = float(log_loss(y, predicted))
    best: Method = min(methods, key=lambda m: losses[m])
    chosen = _fit(best, raw, y)
    return Calibrator(chosen.method, chosen.x, chosen.y, chosen.slope, chosen.intercept, losses)
