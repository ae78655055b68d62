"""The one scorer: for feature rows, the calibrated probability, the tier, the SHAP
contributions and the reasons, the same for training's report, the batch job and the API.

`score_matrix` (or `score_frame` for a feature frame) does the numbers: given the model's
reason plan, LightGBM's contributions (`pred_contrib`) are computed once and the raw score is
their sum (`Scorer.raw_with`; a hazard model's is computed), so the probability, the tier and
the reasons all come from the same numbers; without one, the plain prediction, many times
cheaper. The words come from
`training.reasons`, in two forms of the same choice: `row_reasons` for one row (the API, the
report's waterfalls) and `reason_texts`, every row's reasons as JSON text, worded once per
distinct value (the batch job).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.reasons import Chosen, ReasonPlan, choose, sentence, wording_keys
from training.scorer import Scorer, feature_matrix


@dataclass(frozen=True, eq=False)
class Scores:
    """Scores of feature rows, in the rows' order.

    Attributes:
        probability: calibrated probability per row.
        tier: tier name per row.
        matrix: the float matrix the booster saw (`feature_matrix`).
        contributions: SHAP values in log-odds, (rows, features + 1) with the expected value
            last; None when scored without a reason plan.
        chosen: the reasons chosen per row (`training.reasons.choose`); None without a plan.
    """

    probability: np.ndarray
    tier: np.ndarray
    matrix: np.ndarray
    contributions: np.ndarray | None = None
    chosen: Chosen | None = None


def score_matrix(
    scorer: Scorer,
    matrix: np.ndarray,
    plan: ReasonPlan | None = None,
    top: int = 0,
    *,
    num_threads: int | None = None,
) -> Scores:
    """Score a feature matrix; with `plan`, also the contributions and the `top` reasons of
    each sign per row (none for `top` 0); without, the plain prediction.

    `num_threads`: LightGBM's threads for this call (one row is fastest on one thread: the
    threads only add start-up cost); None leaves LightGBM's default.
    """
    if plan is None:
        probability = scorer.calibrate(scorer.raw_score(matrix, num_threads or 0), matrix)
        return Scores(probability, scorer.tiers.assign(probability), matrix)
    contributions = scorer.contributions(matrix, num_threads)
    # the raw score as the sum of the contributions, so the reasons add up to the probability
    # (a hazard model's is computed: its contributions are its first period's)
    probability = scorer.calibrate(scorer.raw_with(matrix, contributions), matrix)
    chosen = choose(plan, matrix, contributions[:, :-1], top)
    return Scores(probability, scorer.tiers.assign(probability), matrix, contributions, chosen)


def score_frame(
    scorer: Scorer, features: pd.DataFrame, plan: ReasonPlan | None = None, top: int = 0
) -> Scores:
    """`score_matrix` of a feature frame (as `features.pipeline.build_features` builds it)."""
    return score_matrix(scorer, feature_matrix(features, scorer.spec), plan, top)


# --------------------------------------------------------------------------- one row's reasons


@dataclass(frozen=True)
class ReasonItem:
    """One reason: the feature, its value (None when missing), its contribution in log-odds
    and the sentence a salesperson reads."""

    feature: str
    value: Any
    contribution: float
    sentence: str


def row_reasons(
    plan: ReasonPlan,
    scores: Scores,
    values: Mapping[str, Any] | pd.Series,
    row: int = 0,
    posted: Mapping[str, Any] | None = None,
) -> tuple[list[ReasonItem], list[ReasonItem]]:
    """The reasons of one scored row that raise the chance and those that lower it, strongest
    first.

    `values`: the row's feature values by name (a dict, or a row of the feature frame);
    `posted`: values as the lead gave them (a company size range), kept for the wording.
    """
    if scores.contributions is None or scores.chosen is None:
        return [], []
    contributions = scores.contributions[row]
    shown_as = posted or {}

    def item(i: int) -> ReasonItem:
        name = plan.names[i]
        value = values.get(name)
        contribution = float(contributions[i])
        return ReasonItem(
            feature=name,
            value=None if _is_missing(value) else value,
            contribution=contribution,
            sentence=sentence(plan.meanings[i], value, contribution, shown_as.get(name)),
        )

    raising = [item(int(i)) for i in scores.chosen.raising[row] if i >= 0]
    lowering = [item(int(i)) for i in scores.chosen.lowering[row] if i >= 0]
    return raising, lowering


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- every row's reasons


def _json_string(text: str) -> str:
    """`json.dumps(text, ensure_ascii=False)`, without the encoder for the common text that
    needs no escaping (printable, no quote or backslash: control characters are not
    printable, and non-ASCII letters are kept as they are either way)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def _json_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float | int | np.floating | np.integer):
        number = float(value)
        # json.dumps writes a finite float as repr() does
        return repr(number) if math.isfinite(number) else json.dumps(number)
    return _json_string(str(value))


def frame_reason_texts(plan: ReasonPlan, features: pd.DataFrame, scores: Scores) -> np.ndarray:
    """Each scored row's reasons as JSON text (`reason_texts`); '[]' without reasons."""
    if scores.contributions is None or scores.chosen is None:
        return np.full(len(features), "[]", dtype=object)
    return reason_texts(plan, features, scores.contributions[:, :-1], scores.chosen)


def reason_texts(
    plan: ReasonPlan,
    features: pd.DataFrame,
    contributions: np.ndarray,
    chosen: Chosen,
) -> np.ndarray:
    """Each row's reasons as JSON text: the chosen ones that raise the chance, then those that
    lower it, each strongest first; a list of {feature, value, sentence, contribution}.

    `contributions` has no bias column; the shown values come from `features`. A (feature,
    value, direction) is worded once per call and reused, so the cost per reason is small.
    """
    n, width = contributions.shape
    out = np.full(n, "[]", dtype=object)
    order = np.concatenate([chosen.raising, chosen.lowering], axis=1)
    k = order.shape[1]
    if n == 0 or k == 0 or width == 0:
        return out
    valid = order >= 0
    taken = np.take_along_axis(contributions, np.maximum(order, 0), axis=1)
    # each reason's value and sentence as JSON text: the value per distinct value, the
    # sentence per distinct wording and direction (`wording_keys`): Python work per distinct
    # value, not per row
    value_texts = np.empty((n, k), dtype=object)
    sentence_texts = np.empty((n, k), dtype=object)
    # the (row, slot) places of each feature: one stable sort of the chosen feature indices
    flat = np.where(valid, order, width).ravel()
    by_feature = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[by_feature], np.arange(width + 1))
    for j, name in enumerate(plan.names):
        places = by_feature[bounds[j] : bounds[j + 1]]
        if places.shape[0] == 0:
            continue
        rows, slots = np.divmod(places, k)
        column = features[name]
        meaning = plan.meanings[j]
        # a missing value as the API holds it: NaN for a number, None for a category
        numeric = pd.api.types.is_numeric_dtype(column.dtype)
        missing = math.nan if numeric else None
        # numbers stay float64 (no object array of the whole column); categories as objects
        picked = column.to_numpy(dtype=np.float64 if numeric else object)[rows]
        codes, uniques = pd.factorize(picked)  # missing: -1, shown as the last entry
        shown = [_json_value(u) for u in uniques.tolist()] + ["null"]
        value_texts[rows, slots] = np.asarray(shown, dtype=object)[codes]
        wording = pd.factorize(wording_keys(meaning, picked))[0] if numeric else codes
        key = 2 * (wording + 1) + (taken[rows, slots] > 0)
        used, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        texts = [
            _json_string(sentence(meaning, missing if u < 2 else picked[i], 1.0 if u % 2 else -1.0))
            for u, i in zip(used.tolist(), first.tolist(), strict=True)
        ]
        sentence_texts[rows, slots] = np.asarray(texts, dtype=object)[inverse.reshape(-1)]
    names = np.asarray([_json_string(name) for name in plan.names], dtype=object)
    # each reason, with the shortest round-trip text of its contribution (repr)
    keep = valid.ravel()
    pieces = [
        f'{{"feature": {f}, "value": {v}, "sentence": {t}, "contribution": {c!r}}}'
        for f, v, t, c in zip(
            names[order.ravel()[keep]].tolist(),
            value_texts.ravel()[keep].tolist(),
            sentence_texts.ravel()[keep].tolist(),
            taken.ravel()[keep].tolist(),
            strict=True,
        )
    ]
    ends = np.cumsum(valid.sum(axis=1)).tolist()
    starts = [0, *ends[:-1]]
    out[:] = ["[" + ", ".join(pieces[a:b]) + "]" for a, b in zip(starts, ends, strict=True)]
    return out
