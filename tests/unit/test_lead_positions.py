"""`features.rows.lead_positions`: the rows of lead ids among the leads, as pandas' index
finds them, whatever the ids' dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.rows import lead_positions

LEADS = ["L-3", "L-1", "l-1", "L-2 ", "Ünïcode-7", "L-10"]


def _index_rows(wanted: list, among: list) -> np.ndarray:
    return np.asarray(pd.Index(among, dtype=object).get_indexer(wanted), dtype=np.int64)


@pytest.mark.parametrize("dtype", ["str", object])
def test_text_ids_match_exactly_absent_and_missing_give_minus_one(dtype: object) -> None:
    among = pd.Series(LEADS, dtype=dtype)
    wanted = ["L-1", "L-10", "L-2", "L-2 ", "l-1", "Ünïcode-7", "L-99", None, "L-3", "L-1"]
    got = lead_positions(pd.Series(wanted, dtype=dtype), among)
    assert got.tolist() == [1, 5, -1, 3, 2, 4, -1, -1, 0, 1]
    assert got.dtype == np.int64
    # the same as pandas' index, for every id that is not missing
    present = [w for w in wanted if w is not None]
    assert got[[w is not None for w in wanted]].tolist() == _index_rows(present, LEADS).tolist()


def test_numpy_ids_and_numeric_ids_take_the_index_path() -> None:
    among = pd.Series([30, 10, 20])
    assert lead_positions(np.array([20, 40, 30]), among).tolist() == [2, -1, 0]
    text = pd.Series(LEADS, dtype="str")
    assert lead_positions(np.array(["L-10", "x"], dtype=object), text).tolist() == [5, -1]


def test_an_empty_side() -> None:
    empty = pd.Series([], dtype="str")
    assert lead_positions(pd.Series(["a"], dtype="str"), empty).tolist() == [-1]
    assert lead_positions(empty, pd.Series(LEADS, dtype="str")).tolist() == []
