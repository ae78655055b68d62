"""A property's value as of a cutoff, found by a maximum per lead, equals what a walk over
each lead's changes in row order gives: ties in time, missing times, missing cutoffs, rows
without a lead, a subset of the history's rows, with and without Salesforce's old values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.presets.common import value_as_of

BASE = pd.Timestamp("2025-01-01", tz="UTC")


def expected(
    current: list[str], cutoff: pd.Series, history: pd.DataFrame, rows: np.ndarray
) -> tuple[list[object], int]:
    """Lead by lead: the last change at or before the cutoff (the later row on a tie), else
    the old value of the first later change (the earlier row on a tie) or missing."""
    out: list[object] = list(current)
    taken = 0
    for lead in range(len(current)):
        mine = [
            r for r in rows if history["pos"].iloc[r] == lead and pd.notna(history["at"].iloc[r])
        ]
        if not mine or pd.isna(cutoff.iloc[lead]):
            continue
        taken += 1
        at = {r: history["at"].iloc[r] for r in mine}
        before = [r for r in mine if at[r] <= cutoff.iloc[lead]]
        after = [r for r in mine if at[r] > cutoff.iloc[lead]]
        value: object = pd.NA
        if before:
            value = history["value"].iloc[max(before, key=lambda r: (at[r], r))]
        elif after and "old" in history:
            value = history["old"].iloc[min(after, key=lambda r: (at[r], r))]
        out[lead] = value
    return out, taken


def text(values: list[object]) -> list[object]:
    return ["<NA>" if pd.isna(v) else v for v in values]  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(40))
def test_as_of_equals_a_walk_over_each_leads_changes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 30)), int(rng.integers(0, 60))
    at = pd.Series(BASE + pd.to_timedelta(rng.integers(0, 5, m), unit="D"))  # many ties
    at[rng.random(m) < 0.1] = pd.NaT
    history = pd.DataFrame(
        {
            "pos": rng.integers(-1, n, m),  # -1: a change of a contact that is not a lead
            "at": at.astype("datetime64[us, UTC]"),
            "value": pd.Series(
                [None if rng.random() < 0.1 else f"v{i}" for i in range(m)], dtype="string"
            ),
            "old": pd.Series(
                [None if rng.random() < 0.2 else f"o{i}" for i in range(m)], dtype="string"
            ),
        }
    )
    cutoff = pd.Series(BASE + pd.to_timedelta(rng.integers(0, 5, n), unit="D"))
    cutoff = cutoff.astype("datetime64[us, UTC]")
    cutoff[rng.random(n) < 0.15] = pd.NaT
    current = [f"c{i}" for i in range(n)]
    subset = np.sort(rng.choice(m, size=int(rng.integers(0, m + 1)), replace=False))
    for rows in (None, subset):
        for kept in (history, history.drop(columns="old")):  # Salesforce, HubSpot
            values, taken = value_as_of(pd.Series(current, dtype="string"), cutoff, kept, rows)
            want, want_taken = expected(
                current, cutoff, kept, np.arange(m) if rows is None else rows
            )
            assert text(values.tolist()) == text(want)
            assert taken == want_taken
