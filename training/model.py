"""The booster: LightGBM on the feature matrix, with native categoricals and early stopping.

Deterministic for a seed: the same rows, parameters and seed give the same model file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from training.progress import reporting, staged

if TYPE_CHECKING:
    from training.scorer import ModelSpec

#: What early stopping watches on the validation slice. Only the first metric stops the
#: rounds, and nothing reads another, so no other is computed (an AUC each round cost about
#: a tenth of the moment model's fit).
VALIDATION_METRIC = "binary_logloss"


def booster_params(params: Mapping[str, Any], seed: int, num_threads: int) -> dict[str, Any]:
    """The configured parameters plus what makes a run reproducible."""
    return {
        **params,
        "objective": "binary",
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }


def monotone_directions(names: Collection[str], events: Collection[str]) -> dict[str, int]:
    """How the score may move with each feature of `events` among `names`: up with their
    counts (`n_<event>_<window>`, now or `_at_mql`: +1), down with the days since the last
    one (`days_since_<event>`: -1). A hand-raiser never counts against a lead, however many
    there were and however recent the last."""
    if not events:
        return {}
    either = "|".join(map(re.escape, events))
    count = re.compile(rf"n_({either})_(\d+d|all)(_at_mql)?")
    since = re.compile(rf"days_since_({either})")
    out = {n: 1 for n in names if count.fullmatch(n)}
    return out | {n: -1 for n in names if since.fullmatch(n)}


#: LightGBM's names for the learning rate, and its own default.
LEARNING_RATE_NAMES = ("learning_rate", "shrinkage_rate", "eta")
DEFAULT_LEARNING_RATE = 0.1


def paced(params: Mapping[str, Any], pace: float) -> dict[str, Any]:
    """`params` learning `pace` times as fast (under whichever of its names the rate was set)."""
    rate = next((float(params[k]) for k in LEARNING_RATE_NAMES if k in params), None)
    kept = {k: v for k, v in params.items() if k not in LEARNING_RATE_NAMES}
    return {**kept, "learning_rate": (DEFAULT_LEARNING_RATE if rate is None else rate) * pace}


def constrained(
    params: Mapping[str, Any], spec: ModelSpec, monotone: Mapping[str, int] | None
) -> dict[str, Any]:
    """`params` with LightGBM's monotone constraints for the features named in `monotone`."""
    if monotone and any(name in monotone for name in spec.names):
        return {**params, "monotone_constraints": [monotone.get(n, 0) for n in spec.names]}
    return dict(params)


def dataset_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """`lgb.Dataset`'s keywords for a matrix laid out as `spec` says."""
    return {
        "feature_name": list(spec.names),
        "categorical_feature": spec.categorical_index,
        "free_raw_data": False,
    }


def fit_booster(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    spec: ModelSpec,
    params: Mapping[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    progress: Callable[[int, int], None] | None = None,
    monotone: Mapping[str, int] | None = None,
    init_model: lgb.Booster | None = None,
    init_score: tuple[np.ndarray, np.ndarray] | None = None,
) -> lgb.Booster:
    """Train on `train`, stop when log loss on `validation` stops improving; the score only
    rises (+1) or falls (-1) with the features named in `monotone` (LightGBM's monotone
    constraints). With `init_model`, boosting goes on from its trees (their scores are both
    sets' starting point), and the booster returned holds them all. With `init_score` (train,
    validation), boosting starts from those raw scores, which the booster does not hold."""
    params = constrained(params, spec, monotone)
    kwargs = dataset_kwargs(spec)
    start = (None, None) if init_score is None else init_score
    train_set = lgb.Dataset(
        train[0], label=train[1], init_score=start[0], params=dict(params), **kwargs
    )
    valid_set = lgb.Dataset(
        validation[0], label=validation[1], init_score=start[1], reference=train_set, **kwargs
    )
    return train_stopped(
        params, (train_set, valid_set), num_boost_round, early_stopping_rounds, progress, init_model
    )


def train_stopped(
    params: Mapping[str, Any],
    sets: tuple[lgb.Dataset, lgb.Dataset],
    num_boost_round: int,
    early_stopping_rounds: int,
    progress: Callable[[int, int], None] | None = None,
    init_model: lgb.Booster | None = None,
) -> lgb.Booster:
    """`lgb.train` on `sets` (train, validation), stopped when the validation log loss
    (`VALIDATION_METRIC`) has not improved for `early_stopping_rounds`; each round reported."""
    callbacks: list[Callable[..., None]] = [
        lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False),
        *reporting(progress, num_boost_round),
    ]
    return lgb.train(
        {**params, "metric": VALIDATION_METRIC},
        sets[0],
        num_boost_round=num_boost_round,
        valid_sets=[sets[1]],
        valid_names=["validation"],
        callbacks=callbacks,
        init_model=init_model,
    )


def moment_columns(names: Sequence[str], moment: Collection[str]) -> np.ndarray:
    """Which of the booster's features `names` belong to the MQL moment (`moment`: the fit
    attributes and the `_at_mql` counts): a boolean mask in `names` order."""
    return np.fromiter((name in moment for name in names), dtype=bool, count=len(names))


def moment_only(matrix: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """`matrix`'s `rows` (a mask), copied once, with every column outside `columns` missing: a
    booster fitted on them never splits on those features, so it scores any row as of the
    lead's MQL moment."""
    out = matrix[rows]  # a boolean index copies
    out[:, ~columns] = np.nan
    return out


def fit_folds(
    train: tuple[np.ndarray, np.ndarray],
    fold: np.ndarray,
    folds: int,
    spec: ModelSpec,
    params: Mapping[str, Any],
    rounds: int,
    progress: Callable[[int, int], None] | None = None,
    monotone: Mapping[str, int] | None = None,
) -> list[lgb.Booster | None]:
    """One booster per fold k of `folds` (`fold`: each row's, 0 to `folds` - 1), fitted on the
    rows of every other fold for `rounds` rounds, with no validation slice; None for a fold
    with no rows outside it (every row in that one fold: too few to cross-fit).

    The rows are binned once and each fold's booster trains on a subset of that Dataset, so
    every fold shares one binning (that of all `train`'s rows) and nothing is binned k times.
    The rounds are given (a booster on all the rows stopped early there), not stopped early
    per fold: cross-fitted scores need boosters like that one, not a validation slice each.
    """
    params = constrained(params, spec, monotone)
    whole = lgb.Dataset(train[0], label=train[1], params=dict(params), **dataset_kwargs(spec))
    whole.construct()
    boosters: list[lgb.Booster | None] = []
    for k in range(folds):
        others = np.flatnonzero(fold != k)
        if others.size == 0:
            boosters.append(None)
            continue
        callbacks = reporting(staged(progress, f"cross-fitting {k + 1} of {folds}"), rounds)
        part = whole.subset(others.tolist())
        booster = lgb.train(dict(params), part, num_boost_round=rounds, callbacks=callbacks)
        booster.free_dataset()
        boosters.append(booster)
    return boosters
