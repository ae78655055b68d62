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


def sample_rows(rows: np.ndarray, most: int, seed: int) -> np.ndarray:
    """`rows` when there are at most `most` of them, else a seeded uniform sample of `most`,
    in their order: what the samples of a large training set (the rule points' fit, the leak
    audit, its dominance probe, the drift reference) are drawn with."""
    if rows.size <= most:
        return rows
    chosen = np.random.default_rng(seed).choice(rows.size, size=most, replace=False)
    return rows[np.sort(chosen)]


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


def cutoff_ticks(cutoff: pd.Series) -> np.ndarray:
    """Cutoffs as int64 ticks since the epoch, in the column's own unit (order is all a split
    needs): sorting datetime objects one by one in Python is what made a split slow."""
    return pd.DatetimeIndex(cutoff).asi8


def time_split(rows: pd.DataFrame, shares: SplitConfig) -> Split:
    """Slices by each lead's first cutoff: oldest leads train, the most recent are the test.

    Rows are ranked by (first cutoff of their lead, lead_id); a lead's position is the rank of
    its first row over all rows, and the slice edges cut those positions. Only the leads are
    sorted, on integer keys: a lead's rows are contiguous in that order, so its first row's
    rank is the row count of the leads before it.
    """
    n = len(rows)
    # sort=True: codes follow lead_id order, the tie-break between leads with one first cutoff
    codes, _ = pd.factorize(rows["lead_id"].to_numpy(), sort=True)
    leads = int(codes.max()) + 1 if n else 0
    first = np.full(leads, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, codes, cutoff_ticks(rows["cutoff"]))
    lead_rows = np.bincount(codes, minlength=leads)
    lead_order = np.lexsort((np.arange(leads), first))
    start = np.empty(leads, dtype=np.int64)
    start[lead_order] = np.cumsum(lead_rows[lead_order]) - lead_rows[lead_order]
    lead_position = start / max(n, 1)
    index = np.searchsorted(_edges(shares), lead_position[codes], side="right")
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
