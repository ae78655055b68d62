"""`training.model: moment`: each lead ranked as it stood at mql_at, its score bent by its age.

A lead's chance of an SQL within the horizon falls with its age, and not by one shift of the
log-odds: the weaker leads fall towards a floor of late SQLs while the strongest keep most of
their chance. A booster with the age among its features has to rebuild each lead's score in
every range of ages, from fewer and older rows, to bend it by an amount that depends on the
score; that is where the ranking at later ages is lost (docs/nightly-scores.md). This model
splits the work in three:

1. **The moment booster** (`Scorer.booster`): the rows at mql_at alone, the MQL moment's
   features alone (fit attributes, counts as they stood at mql_at). Its raw score `s` ranks a
   lead the same at any age.
2. **The bend** (`Bend.trees`): a small LightGBM of (s, days since mql_at), monotone up in s,
   on the training slice's rows of every age, stopped early on the validation slice. Within
   one age it keeps the moment's order; across ages it learns how each strength of lead fades.
   A slope of `TIE_SLOPE` under its trees keeps leads of one age in one leaf from tying.
   Its line by age (`Bend.line`, `training.age_line`) then shifts and scales the trees'
   log-odds by two numbers a week, fitted on the same rows: the trees stop while still too
   steep at the oldest ages, where few rows are.
3. **After** (`Bend.after`, when it earns its rounds): boosting from the bent score on today's
   features but the age (the bend's alone) and the days since a hand-raiser (a first one must
   never lower a score, and LightGBM cannot constrain where a missing value goes), for what
   happened after the MQL moment.

The raw score is `bend(s, age) + after(x)`, and the usual one-dimensional calibrator maps it.
Reasons: the moment booster's SHAP values, each scaled by how much the bend passed on of the
whole move of `s` from its expected value (the bend is monotone, so no sign flips), the age's
own effect at an average lead in the days column, and the after booster's SHAP values added:
they sum to the raw score exactly, as LightGBM's own contributions do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np

from training.age_line import AgeLine, fit_age_line
from training.calibrate import SCORE_AGE_TREES, TIE_SLOPE
from training.model import train_stopped
from training.progress import staged

#: Written beside the model files by a moment model only.
BEND_FILE = ("bend", "bend.json")
#: Folds of the training slice's leads over which the bend's moment scores are cross-fitted.
MOMENT_FOLDS = 4
#: How many times the moment booster's learning rate the folds' boosters learn at, for as
#: many times fewer rounds.
FOLD_PACE = 2
#: Fewest rows in a leaf of the bend: each age's curve is learned from many leads.
BEND_MIN_LEAF = 2000
#: The bend's learning rate: twice the age-aware calibrator's, for half the rounds; its line
#: by age fits what the trees would refine in their later rounds (docs/nightly-scores.md).
BEND_LEARNING_RATE = 0.1


@dataclass(frozen=True)
class Bend:
    """The age bend of a moment model and its after booster; see the module's docstring."""

    trees: str  # LightGBM of (moment score, days since mql_at), as text
    moment_mean: float  # the moment booster's expected raw score (its SHAP base value)
    base: float  # the bent score of an average lead, averaged over the training rows' ages
    after: str = ""  # LightGBM on every feature from the bent score, as text; "" when none
    slope: float = TIE_SLOPE
    line: AgeLine = field(default_factory=AgeLine)  # the trees' log-odds by age (none: as they are)
    _trees: Any = field(default=None, init=False, repr=False, compare=False)
    _after: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_trees", lgb.Booster(model_str=self.trees))
        if self.after:
            object.__setattr__(self, "_after", lgb.Booster(model_str=self.after))

    def bent(self, moment: np.ndarray, age: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The bend of moment scores at these ages (days since mql_at), in log-odds."""
        moment = np.asarray(moment, dtype=np.float64)
        rows = np.column_stack([moment, np.asarray(age, dtype=np.float64)])
        trees = self._trees.predict(rows, raw_score=True, **_threads(num_threads))
        trees = np.asarray(trees, dtype=np.float64)
        return self.line.apply(trees + self.slope * moment, rows[:, 1])

    def at_average(self, age: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The bent score of an average lead (moment score `moment_mean`) at these ages: the
        bend of each distinct age once, as ages repeat across many rows."""
        ages, where = np.unique(np.asarray(age, dtype=np.float64), return_inverse=True)
        curve = self.bent(np.full(ages.shape, self.moment_mean), ages, num_threads)
        return np.asarray(curve[where.reshape(-1)], dtype=np.float64)

    def raw(
        self, moment: np.ndarray, age: np.ndarray, matrix: np.ndarray, num_threads: int = 0
    ) -> np.ndarray:
        """The model's raw score: the bent moment score plus the after booster's."""
        raw = self.bent(moment, age, num_threads)
        if self._after is not None:
            after = self._after.predict(matrix, raw_score=True, **_threads(num_threads))
            raw = raw + np.asarray(after, dtype=np.float64)
        return raw

    def contributions(
        self, moment: np.ndarray, age_column: int, matrix: np.ndarray, num_threads: int = 0
    ) -> np.ndarray:
        """Per-feature log-odds that sum, with the base value last, to `raw` exactly.

        Args:
            moment: the moment booster's contributions of `matrix`, (rows, features + 1).
            age_column: the days since mql_at's column in `matrix`.
            matrix: the feature rows.
            num_threads: LightGBM's threads (0: its default).
        """
        moment = np.asarray(moment, dtype=np.float64)
        age = matrix[:, age_column]
        score = moment.sum(axis=1)
        bent = self.bent(score, age, num_threads)
        at_average = self.at_average(age, num_threads)
        move = score - self.moment_mean
        passed = np.full_like(score, self.slope)  # at the average itself: the slope alone
        moved = np.abs(move) > 1e-12
        passed[moved] = (bent[moved] - at_average[moved]) / move[moved]
        out = moment * passed[:, None]
        out[:, age_column] += at_average - self.base
        out[:, -1] = self.base
        if self._after is not None:
            after = self._after.predict(matrix, pred_contrib=True, **_threads(num_threads))
            out += np.asarray(after, dtype=np.float64)
        return out

    def describe(self) -> dict[str, int]:
        """How many trees the bend and the after booster hold, and its line's knots."""
        after = 0 if self._after is None else int(self._after.num_trees())
        return {
            "bend_trees": int(self._trees.num_trees()),
            "after_trees": after,
            "line_knots": len(self.line.knots),
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "trees": self.trees,
                "moment_mean": self.moment_mean,
                "base": self.base,
                "after": self.after,
                "slope": self.slope,
                "line": self.line.as_dict(),
            }
        )

    @staticmethod
    def from_json(text: str) -> Bend:
        data: dict[str, Any] = json.loads(text)
        missing = [k for k in ("trees", "moment_mean", "base") if k not in data]
        if missing:
            raise ValueError(f"bend: missing {missing}")
        return Bend(
            trees=str(data["trees"]),
            moment_mean=float(data["moment_mean"]),
            base=float(data["base"]),
            after=str(data.get("after", "")),
            slope=float(data.get("slope", TIE_SLOPE)),
            line=_line_of(data.get("line", {})),
        )


def _line_of(data: Mapping[str, Any]) -> AgeLine:
    """A saved `AgeLine` (a model saved before it had one: the line that changes nothing)."""
    return AgeLine(
        knots=tuple(float(v) for v in data.get("knots", ())),
        shift=tuple(float(v) for v in data.get("shift", ())),
        scale=tuple(float(v) for v in data.get("scale", ())),
    )


def _threads(num_threads: int) -> dict[str, Any]:
    """LightGBM's predict keyword for `num_threads` (0: its default, no keyword)."""
    return {"num_threads": num_threads} if num_threads else {}


def bend_params(rows: int, booster: Mapping[str, Any]) -> dict[str, Any]:
    """The bend's LightGBM parameters for a training slice of `rows` rows, beside the
    booster's parameters `booster` (`training.model.booster_params`): its seed and threads, and
    leaves never smaller than the booster's."""
    leaf = max(50, min(BEND_MIN_LEAF, rows // 100), int(booster.get("min_data_in_leaf", 0)))
    return {
        **SCORE_AGE_TREES,
        "learning_rate": BEND_LEARNING_RATE,
        "min_data_in_leaf": leaf,
        "seed": booster["seed"],
        "num_threads": booster["num_threads"],
    }


def fit_bend(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    moment_mean: float,
    params: Mapping[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    progress: Callable[[int, int], None] | None = None,
    weight: np.ndarray | None = None,
    valid_weight: np.ndarray | None = None,
    knots: np.ndarray | None = None,
) -> Bend:
    """The bend of (moment score, age) -> label, stopped early on `validation`, then its line
    by age through the rows of both slices.

    Args:
        train, validation: (moment score, days since mql_at, label) of each slice's rows.
        moment_mean: the moment booster's expected raw score.
        params: `bend_params`.
        weight, valid_weight: the rows' weights in each slice (None: equal).
        knots: the line's knots (`training.age_line.age_knots`); None: no line.
    """

    def dataset(part: tuple[np.ndarray, np.ndarray, np.ndarray], **extra: Any) -> lgb.Dataset:
        score, age, label = part
        return lgb.Dataset(
            np.column_stack([score, age]),
            label=label,
            init_score=TIE_SLOPE * score,
            free_raw_data=False,
            **extra,
        )

    train_set = dataset(train, params=dict(params), weight=weight)
    valid_set = dataset(validation, reference=train_set, weight=valid_weight)
    booster = train_stopped(
        params,
        (train_set, valid_set),
        num_boost_round,
        early_stopping_rounds,
        staged(progress, "the bend by age"),
    )
    trees = booster.model_to_string(num_iteration=booster.best_iteration)
    partial = Bend(trees=trees, moment_mean=moment_mean, base=0.0)
    if knots is not None:
        line = line_through(partial, train, validation, weight, valid_weight, knots)
        partial = replace(partial, line=line)
    _, age, _ = train
    base = float(np.average(partial.at_average(age), weights=weight))
    return replace(partial, base=base)


def line_through(
    bend: Bend,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    weight: np.ndarray | None,
    valid_weight: np.ndarray | None,
    knots: np.ndarray,
) -> AgeLine:
    """The line by age of `bend`'s trees through the rows of both slices, each slice's rows
    at its weights: the validation slice's rows only stopped the trees, and the line has two
    numbers a week to learn."""
    score, age, label = (np.concatenate(pair) for pair in zip(train, validation, strict=True))
    weights = None
    if weight is not None or valid_weight is not None:
        weights = np.concatenate(
            [
                np.ones(len(train[0])) if weight is None else weight,
                np.ones(len(validation[0])) if valid_weight is None else valid_weight,
            ]
        )
    return fit_age_line(bend.bent(score, age), age, label, knots, weights)
