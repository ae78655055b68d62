"""The bend's line by age: a shift and a scale of its log-odds that move smoothly with the age.

The bend (`training.bend`) is a boosted model of (moment score, age), stopped early on a loss
that the young ages dominate: most rows are young, and most SQLs come early. So at the oldest
ages, where few leads are still open and fewer convert, it stops while still too steep: the
strongest old leads keep too much of their chance and the weakest fall below the floor of late
SQLs (docs/nightly-scores.md, session 26). The line refits the bent log-odds `r` of a lead of
age `a` as

    shift(a) + scale(a) * r

with `shift` and `scale` piecewise linear between knots a week apart (`age_knots`), by
maximum likelihood on the bend's own rows, with a small ridge that pulls each knot towards no
change (shift 0, scale 1), so a knot with no rows near it changes nothing. Two numbers a week
are learnt from every row of that week, so the line follows the oldest ages' slope without the
variance of more trees. A positive scale keeps the order of leads of one age.

Fitted by Newton's method here rather than with scikit-learn's `LogisticRegression`: that has
no offset, so its penalty would pull each knot towards a flat line instead of towards the bend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Days between the knots of the line.
KNOT_DAYS = 7
#: The ridge on each knot's move away from (shift 0, scale 1), in units of one row's log loss.
RIDGE = 1.0
#: The smallest scale kept at a knot: the leads of one age stay in the bend's order.
MIN_SCALE = 0.02
_MAX_STEPS = 50
_TOLERANCE = 1e-7


@dataclass(frozen=True)
class AgeLine:
    """Shift and scale of the bent log-odds at each knot (days since mql_at); between knots
    they are interpolated, beyond the last or before the first they stay at its value."""

    knots: tuple[float, ...] = ()
    shift: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.knots) == len(self.shift) == len(self.scale):
            raise ValueError("age line: knots, shift and scale must be of one length")
        if any(b <= a for a, b in zip(self.knots, self.knots[1:], strict=False)):
            raise ValueError("age line: knots must increase")
        if any(s <= 0 for s in self.scale):
            raise ValueError("age line: every scale must be positive")

    def apply(self, raw: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The bent log-odds `raw` of rows of these ages (days), shifted and scaled; `raw`
        itself when the line has no knots, and where the age is unknown (NaN: a lead with no
        mql_at, which the bend's trees also take down their missing-value side)."""
        raw = np.asarray(raw, dtype=np.float64)
        if not self.knots:
            return raw
        age = np.asarray(age, dtype=np.float64)
        known = ~np.isnan(age)
        shift = np.where(known, np.interp(age, self.knots, self.shift), 0.0)
        scale = np.where(known, np.interp(age, self.knots, self.scale), 1.0)
        return np.asarray(shift + scale * raw, dtype=np.float64)

    def as_dict(self) -> dict[str, list[float]]:
        return {"knots": list(self.knots), "shift": list(self.shift), "scale": list(self.scale)}


def age_knots(horizon_days: int) -> np.ndarray:
    """Knots a week apart from mql_at, and one at the horizon: the rows' ages run from 0 to it."""
    weekly = np.arange(0.0, float(horizon_days), KNOT_DAYS)
    return np.unique(np.append(weekly, float(horizon_days)))


def _layout(age: np.ndarray, raw: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's four nonzero columns of the design (its two knots' shifts, then their
    scales) and their values: the row's hat weights (1 - t, t) and those times `raw`."""
    size = len(knots)
    clipped = np.clip(age, knots[0], knots[-1])
    left = np.clip(np.searchsorted(knots, clipped, side="right") - 1, 0, size - 2)
    t = (clipped - knots[left]) / (knots[left + 1] - knots[left])
    columns = np.column_stack([left, left + 1, size + left, size + left + 1])
    values = np.column_stack([1.0 - t, t, (1.0 - t) * raw, t * raw])
    return columns, values


def _derivatives(
    eta: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    columns: np.ndarray,
    values: np.ndarray,
    theta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The penalised log loss's gradient and Hessian in `theta`, from each row's four nonzero
    columns of the design (`_layout`) and its log-odds `eta`."""
    width = theta.size
    p = 1.0 / (1.0 + np.exp(-eta))
    residual = w * (p - y)
    fit = np.bincount(
        columns.ravel(), weights=(values * residual[:, None]).ravel(), minlength=width
    )
    curvature = w * p * (1.0 - p)
    upper = np.zeros(width * width)
    for a in range(4):
        for b in range(a, 4):  # the Hessian is symmetric: its upper half, then mirrored
            upper += np.bincount(
                columns[:, a] * width + columns[:, b],
                weights=curvature * values[:, a] * values[:, b],
                minlength=width * width,
            )
    square = upper.reshape(width, width)
    hessian = square + square.T - np.diag(np.diag(square)) + RIDGE * np.eye(width)
    return np.asarray(fit, dtype=np.float64) + RIDGE * theta, hessian


def fit_age_line(
    raw: np.ndarray,
    age: np.ndarray,
    label: np.ndarray,
    knots: np.ndarray,
    weight: np.ndarray | None = None,
) -> AgeLine:
    """The line by age through the bent log-odds `raw` of rows of these ages and labels.

    Args:
        raw: the bend's log-odds of each row.
        age: each row's days since mql_at.
        label: 1 where the row converted within the horizon.
        knots: `age_knots`; fewer than two give the line that changes nothing.
        weight: the rows' weights (None: equal).
    """
    age = np.asarray(age, dtype=np.float64)
    known = ~np.isnan(age)  # rows of no age: the line leaves them as they are (`AgeLine.apply`)
    raw = np.asarray(raw, dtype=np.float64)[known]
    knots = np.asarray(knots, dtype=np.float64)
    if len(knots) < 2 or raw.size == 0:
        return AgeLine()
    y = np.asarray(label, dtype=np.float64)[known]
    w = np.ones_like(raw) if weight is None else np.asarray(weight, dtype=np.float64)[known]
    columns, values = _layout(age[known], raw, knots)
    width = 2 * len(knots)
    theta = np.zeros(width)  # each knot's move from (shift 0, scale 1)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = raw + (values * theta[columns]).sum(axis=1)
        rows = np.logaddexp(0.0, eta) - y * eta
        return float(w @ rows + 0.5 * RIDGE * theta @ theta), eta

    current, eta = loss(theta)
    for _ in range(_MAX_STEPS):
        gradient, hessian = _derivatives(eta, y, w, columns, values, theta)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        new, new_eta = loss(theta - step)
        while new > current and size >= 1e-4:  # halve the step until the penalised loss falls
            size /= 2
            new, new_eta = loss(theta - size * step)
        if new > current:
            break  # no step lowers it: this is the optimum, to rounding
        theta, eta, moved, current = theta - size * step, new_eta, current - new, new
        if np.max(np.abs(size * step)) < _TOLERANCE or moved < _TOLERANCE * max(1.0, current):
            break
    shift = theta[: len(knots)]
    scale = np.maximum(1.0 + theta[len(knots) :], MIN_SCALE)
    return AgeLine(
        knots=tuple(float(k) for k in knots),
        shift=tuple(float(v) for v in shift),
        scale=tuple(float(v) for v in scale),
    )
