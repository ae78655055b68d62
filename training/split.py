"""Splitting training rows: in time order by cutoff, never one lead on two sides.

Each lead goes, with all its rows, to the slice its first cutoff falls in, so the test slice is
the most recent period and the model is judged on leads it has never seen. A flat export has
no cutoffs and falls back to a stratified random split (with a warning from the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from common.config import SplitConfig

SLICES = ("train", "validation", "calibration", "test")


@dataclass(frozen=True)
class Split:
    """Slice name per row, and how the split was made."""

    slice_of_row: np.ndarray
    kind: str  # "time" or "stratified"

    def mask(self, name: str) -> np.ndarray:
        return self.slice_of_row == name

    def counts(self) -> dict[str, int]:
        return {name: int(self.mask(name).sum()) for name in SLICES}


def _edges(shares: SplitConfig) -> np.ndarray:
    return np.cumsum([shares.train, shares.validation, shares.calibration])


def time_split(rows: pd.DataFrame, shares: SplitConfig) -> Split:
    """Slices by each lead's first cutoff: oldest leads train, the most recent are the test."""
    first = rows.groupby("lead_id", sort=False)["cutoff"].transform("min")
    order = np.lexsort((rows["lead_id"].to_numpy(), first.to_numpy()))
    position = np.empty(len(rows), dtype=np.float64)
    position[order] = np.arange(len(rows)) / max(len(rows), 1)
    # every row of a lead takes the slice of the lead's earliest-positioned row
    lead_position = pd.Series(position).groupby(rows["lead_id"].to_numpy()).transform("min")
    index = np.searchsorted(_edges(shares), lead_position.to_numpy(), side="right")
    return Split(np.asarray(SLICES, dtype=object)[index], "time")


def stratified_split(labels: np.ndarray, shares: SplitConfig, seed: int) -> Split:
    """A random split that keeps the positive rate equal in every slice (one row per lead)."""
    rng = np.random.default_rng(seed)
    slice_index = np.empty(labels.shape[0], dtype=np.int64)
    edges = _edges(shares)
    for value in np.unique(labels):
        where = np.flatnonzero(labels == value)
        shuffled = rng.permutation(where)
        position = np.arange(shuffled.shape[0]) / max(shuffled.shape[0], 1)
        slice_index[shuffled] = np.searchsorted(edges, position, side="right")
    return Split(np.asarray(SLICES, dtype=object)[slice_index], "stratified")
