"""Tiers A-D: probability cut points chosen on the calibration slice by a policy.

capacity: A is the top share of MQLs sales can work first, then B, C; D is the rest.
precision: A starts at the lowest probability where the leads at or above it still convert at
the target rate (e.g. 65%); B where A and B together convert at B's target, and C likewise.
Cut points are probabilities, so new leads are tiered without re-ranking anyone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from common.config import TierPolicy

TIER_NAMES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Tiers:
    """Minimum probability of tiers A, B and C (descending); below C is D."""

    cuts: tuple[float, float, float]
    policy: str

    def assign(self, probability: np.ndarray) -> np.ndarray:
        p = np.asarray(probability, dtype=np.float64)
        index = np.searchsorted(-np.asarray(self.cuts), -p, side="left")  # p == cut: upper tier
        return np.asarray(TIER_NAMES, dtype=object)[index]

    def as_dict(self) -> dict[str, float | str]:
        return {"A": self.cuts[0], "B": self.cuts[1], "C": self.cuts[2], "policy": self.policy}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1)

    @staticmethod
    def from_json(text: str) -> Tiers:
        data = json.loads(text)
        return Tiers((float(data["A"]), float(data["B"]), float(data["C"])), str(data["policy"]))


def _capacity_cuts(p: np.ndarray, shares: dict[str, float]) -> tuple[float, float, float]:
    cumulative = np.cumsum([shares["A"], shares["B"], shares["C"]])
    if cumulative[-1] >= 1:
        raise ValueError("tier capacities A + B + C must leave room for D (sum below 1)")
    descending = np.sort(p)[::-1]
    counts = np.maximum(np.ceil(cumulative * p.shape[0]).astype(int), 1)
    a, b, c = (float(descending[min(k, p.shape[0]) - 1]) for k in counts)
    return a, b, c


def _precision_cuts(
    p: np.ndarray, y: np.ndarray, targets: dict[str, float]
) -> tuple[float, float, float]:
    """For each tier, the lowest cut where the leads at or above it convert at the target rate.

    Targets are cumulative ("work A and B and 45% convert"), so cut points descend.
    """
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order].astype(np.float64)
    rate = np.cumsum(y_sorted) / np.arange(1, p.shape[0] + 1)
    # a cut must fall between distinct probabilities, never inside a run of ties
    boundary = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    cuts: list[float] = []
    for name in ("A", "B", "C"):
        ok = np.flatnonzero((rate >= targets[name]) & boundary)
        # unreachable target: an empty tier, its cut just above the highest probability
        cut = float(p_sorted[ok[-1]]) if ok.size else float(np.nextafter(p_sorted[0], 2.0))
        cuts.append(min(cut, cuts[-1]) if cuts else cut)
    return cuts[0], cuts[1], cuts[2]


def choose_tiers(probability: np.ndarray, labels: np.ndarray, policy: TierPolicy) -> Tiers:
    """Cut points on the calibration slice for the configured policy."""
    p = np.asarray(probability, dtype=np.float64)
    if policy.kind == "capacity":
        return Tiers(_capacity_cuts(p, policy.capacity), "capacity")
    return Tiers(_precision_cuts(p, np.asarray(labels), policy.precision), "precision")
