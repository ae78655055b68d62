"""The discrete-time hazard model's law: from per-period hazards to the score's probability.

A hazard booster gives h, the probability of an SQL within one period for a lead open at the
period's start, from the features at that start; an exit booster gives e, the probability that
the lead leaves the open state within the period (an SQL or a disqualification). A score means
P(SQL within `horizon_days` after the scoring time | open then), so from a lead's features at
the scoring time

    P = sum_k w_k h_k prod_{j<k} (1 - e_j)

over the periods k = 0, 1, ... that cover the horizon from the scoring time; w_k is the share
of period k inside the horizon (the last one may be partial). Disqualification is a competing
risk: a lead disqualified in week 3 cannot convert in week 5, so the plain 1 - prod(1 - h_k)
overstates P by the more the older the horizon reaches. Without an exit booster (`exit` None)
that plain form is used. The future periods' features are
not known yet: they are projected from today's with the lead's age (`days_since_mql`,
`days_since_created`) advanced by k periods: "a lead that looks like this one now, k periods
older". Advancing the times since each event too would pair today's windowed counts with
stale activity, a mix no training row shows. The raw score is the logit of P, which the
calibrator then maps as it maps an ages booster's raw score.

This module imports only numpy and lightgbm: MLflow bundles it with the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

#: The lead's age: advanced for the later periods.
AGE_FEATURES = ("days_since_mql", "days_since_created")
#: P is kept inside (EPS, 1 - EPS) before its logit.
EPS = 1e-9


@dataclass(frozen=True)
class HazardSpec:
    """How a hazard booster's per-period hazards make a horizon probability."""

    period_days: int
    horizon_days: int
    advanced: tuple[int, ...]  # feature columns advanced by one period per period ahead
    exit: lgb.Booster | None = None  # P(the lead leaves the open state within a period)

    def weights(self) -> np.ndarray:
        """Share of each period inside the horizon, from the scoring time."""
        count = math.ceil(self.horizon_days / self.period_days)
        ends = np.minimum((np.arange(count) + 1) * self.period_days, self.horizon_days)
        return (ends - np.arange(count) * self.period_days) / self.period_days

    def to_json(self) -> str:
        return json.dumps(
            {
                "period_days": self.period_days,
                "horizon_days": self.horizon_days,
                "advanced": list(self.advanced),
                "exit": None if self.exit is None else self.exit.model_to_string(),
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> HazardSpec:
        data = json.loads(text)
        return HazardSpec(
            int(data["period_days"]),
            int(data["horizon_days"]),
            tuple(int(i) for i in data["advanced"]),
            None if data.get("exit") is None else lgb.Booster(model_str=data["exit"]),
        )


def hazard_spec(
    names: tuple[str, ...], period_days: int, horizon_days: int, exit: lgb.Booster | None = None
) -> HazardSpec:
    """The spec of a booster over these feature names."""
    advanced = tuple(i for i, name in enumerate(names) if name in AGE_FEATURES)
    return HazardSpec(period_days, horizon_days, advanced, exit)


def projected(matrix: np.ndarray, spec: HazardSpec, periods: int) -> np.ndarray:
    """The rows of `matrix` at each of `periods` period starts, period-major: (periods * n, f)."""
    stacked = np.tile(matrix, (periods, 1))
    n = matrix.shape[0]
    shift = np.repeat(np.arange(periods, dtype=np.float64) * spec.period_days, n)
    for column in spec.advanced:
        stacked[:, column] += shift  # NaN (never happened) stays NaN
    return stacked


def horizon_probability(
    booster: lgb.Booster, matrix: np.ndarray, spec: HazardSpec, num_threads: int = 0
) -> np.ndarray:
    """P(SQL within the horizon | open) of each row, from its features at the scoring time."""
    weights = spec.weights()
    n = matrix.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.float64)
    rows = projected(matrix, spec, weights.size)
    kwargs: dict[str, Any] = {"num_threads": num_threads} if num_threads else {}
    hazards = np.asarray(booster.predict(rows, **kwargs), dtype=np.float64).reshape(-1, n)
    if spec.exit is None:
        log_open = (weights[:, None] * np.log1p(-np.clip(hazards, 0.0, 1.0 - EPS))).sum(axis=0)
        return np.asarray(-np.expm1(log_open), dtype=np.float64)
    exits = np.asarray(spec.exit.predict(rows, **kwargs), dtype=np.float64).reshape(-1, n)
    exits = np.clip(np.maximum(exits, hazards), 0.0, 1.0)  # an SQL is an exit
    still_open = np.vstack([np.ones((1, n)), np.cumprod(1.0 - exits, axis=0)[:-1]])
    return np.asarray((weights[:, None] * hazards * still_open).sum(axis=0), dtype=np.float64)


def horizon_raw(
    booster: lgb.Booster, matrix: np.ndarray, spec: HazardSpec, num_threads: int = 0
) -> np.ndarray:
    """The logit of `horizon_probability`: the raw score the calibrator maps."""
    p = np.clip(horizon_probability(booster, matrix, spec, num_threads), EPS, 1.0 - EPS)
    return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)
