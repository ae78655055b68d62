"""The fast paths of a training run give what the plain definitions give, on generated rows:
the time split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.config import SplitConfig, build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from training.split import SLICES, time_split


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("cost") / "snapshot"
    write_snapshot(generate(3000, seed=11), folder)
    config = build_config({"source": {"path": str(folder)}, "snapshot_policy": {"weekly_weeks": 3}})
    training_set, _ = build_training_set(read_snapshot(config), config)
    return training_set


def _split_by_definition(rows: pd.DataFrame, shares: SplitConfig) -> np.ndarray:
    """Leads ranked by (first cutoff, lead_id); a lead's position is the share of rows of the
    leads before it; the slice edges cut positions (one lead at a time, in Python)."""
    first = rows.groupby("lead_id")["cutoff"].min()
    count = rows.groupby("lead_id").size()
    edges = np.cumsum([shares.train, shares.validation, shares.calibration])
    slice_of_lead = {}
    before = 0
    for lead in sorted(first.index, key=lambda lead: (first[lead], lead)):
        slice_of_lead[lead] = SLICES[int(np.searchsorted(edges, before / len(rows), "right"))]
        before += int(count[lead])
    return rows["lead_id"].map(slice_of_lead).to_numpy(dtype=object)


def test_the_time_split_is_its_definition_in_any_row_order_and_with_ties(
    rows: pd.DataFrame,
) -> None:
    shares = SplitConfig()
    shuffled = rows.sample(frac=1.0, random_state=4).reset_index(drop=True)
    # whole days: many leads share a first cutoff, so lead_id breaks the ties
    tied = shuffled.assign(cutoff=shuffled["cutoff"].dt.floor("D"))
    assert tied.groupby("lead_id")["cutoff"].min().duplicated().sum() > 100
    for frame in (rows, shuffled, tied):
        split = time_split(frame, shares)
        np.testing.assert_array_equal(split.slice_of_row, _split_by_definition(frame, shares))
        assert split.kind == "time"
        assert all(split.counts()[name] > 0 for name in SLICES)
    assert time_split(rows.iloc[:0], shares).slice_of_row.size == 0
