"""Calibration: a monotone map from the booster's raw score to a probability.

Isotonic and sigmoid (Platt) calibrators, and where rows carry the lead's age an age-aware one,
are fitted on the held-out rows and the one with the lower cross-validated log loss is kept
(cross-validated, because isotonic regression scores itself too kindly on the rows it was
fitted on). A calibrator is saved as JSON: nothing to unpickle.

The age-aware calibrator (`by_age`) is a small LightGBM model of (raw score, days since
mql_at), the score's direction constrained upward. A lead's chance of an SQL within the horizon
falls with its age, and not by one shift of the log-odds: the weaker leads fall towards a floor
of late SQLs while the strongest keep most of their chance, so one map from the raw score to a
probability cannot be right at every age (docs/nightly-scores.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np

Method = Literal["isotonic", "sigmoid", "by_age"]
EPS = 1e-6
#: The feature the age-aware calibrator reads beside the raw score.
AGE_FEATURE = "days_since_mql"
#: Fewest rows for the age-aware calibrator to be a candidate: it learns each age's curve from
#: the calibration slice alone, where the booster learned the age from the training slice, six
#: times the leads; on fewer rows that curve follows the slice's noise (docs/nightly-scores.md).
BY_AGE_MIN_ROWS = 20_000
#: The age-aware calibrator's own slope on the raw score, under its trees: their map is a step
#: function of the raw score, and leads of one age in one step would tie, losing the booster's
#: order among them; this slope keeps that order and moves a probability by well under 1%.
TIE_SLOPE = 1e-3
#: A small LightGBM of (score, age in days), the score's direction upward: the age-aware
#: calibrator's, and a moment model's bend (`training.bend`).
SCORE_AGE_TREES: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 8,
    "lambda_l2": 1.0,
    "monotone_constraints": [1, 0],
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
_BY_AGE_PARAMS: dict[str, Any] = {**SCORE_AGE_TREES, "num_threads": 1}


@dataclass(frozen=True)
class Calibrator:
    """Maps raw scores (log-odds) to probabilities."""

    method: Method
    x: tuple[float, ...] = ()  # isotonic knots (raw score)
    y: tuple[float, ...] = ()  # isotonic values (probability)
    slope: float = 1.0  # sigmoid: p = 1 / (1 + exp(-(slope * raw + intercept))); by_age: TIE_SLOPE
    intercept: float = 0.0
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    by_age: str = ""  # by_age: the LightGBM model of (raw score, age in days), as text
    _booster: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method == "by_age":
            import lightgbm as lgb

            object.__setattr__(self, "_booster", lgb.Booster(model_str=self.by_age))

    @property
    def needs_age(self) -> bool:
        """Whether `apply` needs each row's age (`AGE_FEATURE`) beside its raw score."""
        return self.method == "by_age"

    def apply(self, raw: np.ndarray, age: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of raw scores; an age-aware calibrator also needs each row's days
        since mql_at."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-(self.slope * raw + self.intercept)))
        else:
            if age is None:
                raise ValueError(f"the by_age calibrator needs each row's {AGE_FEATURE}")
            rows = _by_age_rows(raw, np.asarray(age, dtype=np.float64))
            trees = self._booster.predict(rows, raw_score=True, num_threads=1)
            p = 1.0 / (1.0 + np.exp(-(np.asarray(trees, dtype=np.float64) + self.slope * raw)))
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
                "by_age": self.by_age,
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> Calibrator:
        data: dict[str, Any] = json.loads(text)
        if data.get("method") not in ("isotonic", "sigmoid", "by_age"):
            raise ValueError(f"calibrator: unknown method {data.get('method')!r}")
        return Calibrator(
            method=data["method"],
            x=tuple(float(v) for v in data["x"]),
            y=tuple(float(v) for v in data["y"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            cv_log_loss={k: float(v) for k, v in data.get("cv_log_loss", {}).items()},
            by_age=str(data.get("by_age", "")),
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


def _by_age_rows(raw: np.ndarray, age: np.ndarray) -> np.ndarray:
    return np.column_stack([raw, age])


def _by_age_params(rows: int, seed: int) -> dict[str, Any]:
    # leaves of at least 1% of the rows (50 at least): an age's curve from many leads, not a few
    return {**_BY_AGE_PARAMS, "min_data_in_leaf": max(50, rows // 100), "seed": seed}


def _fit_by_age(
    raw: np.ndarray, age: np.ndarray, y: np.ndarray, seed: int, folds: list[Any]
) -> tuple[Calibrator, float]:
    """The age-aware calibrator, its rounds chosen by early stopping on `folds`, and its
    cross-validated log loss on them (at those rounds)."""
    import lightgbm as lgb

    params = _by_age_params(len(y), seed)
    rows = _by_age_rows(raw, age)
    start = TIE_SLOPE * raw
    history = lgb.cv(
        {**params, "metric": "binary_logloss"},
        lgb.Dataset(rows, label=y, init_score=start, free_raw_data=False),
        num_boost_round=1000,
        folds=folds,
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    losses = cast(list[float], history["valid binary_logloss-mean"])
    data = lgb.Dataset(rows, label=y, init_score=start)
    booster = lgb.train(params, data, num_boost_round=len(losses))
    fitted = Calibrator("by_age", slope=TIE_SLOPE, by_age=booster.model_to_string())
    return fitted, float(losses[-1])


def fit_calibrator(
    raw: np.ndarray,
    y: np.ndarray,
    methods: tuple[Method, ...],
    seed: int,
    folds: int = 5,
    age: np.ndarray | None = None,
    min_rows_by_age: int | None = None,
) -> Calibrator:
    """Fit each method, keep the one with the lower cross-validated log loss on these rows.

    `by_age` is a candidate only with `age` (each row's days since mql_at), rows of more than
    one age (a flat export's rows, all at the one time of the export, have none) and at least
    `min_rows_by_age` rows (None: `BY_AGE_MIN_ROWS`).
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if np.unique(y).shape[0] < 2:
        raise ValueError("calibration slice: needs both converted and unconverted leads")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(raw.reshape(-1, 1), y))
    aged = age is not None and np.unique(np.asarray(age)[~np.isnan(age)]).shape[0] > 1
    if min_rows_by_age is None:
        min_rows_by_age = BY_AGE_MIN_ROWS
    aged = aged and raw.shape[0] >= min_rows_by_age
    candidates: tuple[Method, ...] = tuple(m for m in methods if m != "by_age" or aged)
    if not candidates:
        raise ValueError(
            f"by_age alone needs rows of more than one age, at least {min_rows_by_age:,} of "
            f"them (the calibration slice has {raw.shape[0]:,}): add isotonic or sigmoid"
        )
    losses: dict[str, float] = {}
    fitted: dict[str, Calibrator] = {}
    for method in candidates:
        if method == "by_age":
            assert age is not None
            fitted[method], losses[method] = _fit_by_age(
                raw, np.asarray(age, dtype=np.float64), y, seed, splits
            )
            continue
        predicted = np.empty_like(raw)
        for fit_rows, held_out in splits:
            predicted[held_out] = _fit(method, raw[fit_rows], y[fit_rows]).apply(raw[held_out])
        losses[method] = float(log_loss(y, predicted))
    best: Method = min(candidates, key=lambda m: losses[m])
    chosen = fitted[best] if best in fitted else _fit(best, raw, y)
    return replace(chosen, cv_log_loss=losses)
