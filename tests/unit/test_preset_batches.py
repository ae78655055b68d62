"""A preset's event table read in batches of row groups, worked on side by side, gives what a
whole read gives, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.presets import tables as presets_tables
from features.presets.common import id_positions, positions
from features.presets.tables import ConnectorTables, batch_runs
from tests.fixtures import RowGroupMetadata


def test_batch_runs_keep_large_row_groups_alone_and_join_small_ones() -> None:
    assert batch_runs(RowGroupMetadata([5, 5, 5]), 8) == [[0], [1], [2]]
    assert batch_runs(RowGroupMetadata([1, 1, 1, 6, 1]), 8) == [[0, 1], [2, 3], [4]]
    assert batch_runs(RowGroupMetadata([]), 8) == []
    assert batch_runs(RowGroupMetadata([4, 9]), 8) is None


def test_map_batches_gives_the_batches_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presets_tables, "BATCH_ROWS", 400)
    ids = [f"00Q{i % 7:015d}" for i in range(1000)]
    table = pa.table({"Who_Id": ids, "n": list(range(1000))})
    pq.write_table(table, tmp_path / "task.parquet", row_group_size=150)
    tables = ConnectorTables(path=tmp_path)
    whole = tables.read("task", ["who_id", "n"], dictionary=["who_id"])
    for workers in (1, 3):
        parts = list(
            tables.map_batches(
                "task", ["who_id", "n"], lambda f: f, dictionary=["who_id"], workers=workers
            )
        )
        assert len(parts) > 1
        got = pd.concat(parts, ignore_index=True)
        assert got["n"].tolist() == whole["n"].tolist()
        assert got["who_id"].astype(str).tolist() == ids
    batches = pd.concat(tables.batches("task", ["who_id", "n"], rows=300), ignore_index=True)
    assert batches["n"].tolist() == list(range(1000))


@pytest.mark.parametrize(
    "keys",
    [
        pd.Series([7, 5, 3, 100, 1000, -4], dtype="int64"),
        pd.Series([7, None, 9, 5], dtype="Int64"),
        pd.Series([3_000, 3_001, 10**15, -(10**15), 4], dtype="int64"),  # past either end
        pd.Series([9, 5, 2], dtype="int32"),
        pd.Series([100, 8], dtype="Int64"),  # nullable, no gap: the table
        pd.Series(["7", "9", "x"], dtype="str"),
        pd.Series([], dtype="int64"),
    ],
)
def test_id_positions_find_what_positions_finds(keys: pd.Series) -> None:
    """Contact ids found by a table give the hash lookup's positions, and keys the table
    cannot take (text, gaps in a nullable column) go to the hash lookup."""
    index = pd.Index(np.array([5, 7, 9, 100, 3_000], dtype=np.int64))
    found = id_positions(index)
    assert found.table is not None
    assert found(keys).tolist() == positions(index, keys).tolist()
    sparse = id_positions(pd.Index(np.array([1, 10**12], dtype=np.int64)))
    assert sparse.table is None  # ids too spread out for a table
    assert sparse(keys).tolist() == positions(sparse.index, keys).tolist()


def test_fold_addresses_folds_as_python_casefold_does() -> None:
    from features.presets.addresses import fold_addresses

    raw = [" Jane.Doe@Acme.COM ", "STRASSE@Straße.de", None, "ǅx@y", " İx@Y ", "\tA@B\n", ""]
    for values in (
        pd.Series(raw, dtype="str"),
        pd.Series(raw, dtype=object, index=range(10, 17)),
        pd.Series(raw, dtype="category"),
    ):
        folded = fold_addresses(values)
        expected = values.astype("string").str.strip().str.casefold()
        assert folded.index.equals(values.index)
        assert folded.isna().tolist() == expected.isna().tolist()
        assert folded.dropna().tolist() == expected.dropna().tolist()
        assert folded.iloc[1] == "strasse@strasse.de"  # not ascii: Python's casefold


def test_utc_ticks_are_the_utc_microseconds_of_any_zone_and_unit() -> None:
    """The same instants in another zone or unit give the same ticks; NaT gives int64's
    minimum, as the zone-dropping conversion it replaces did."""
    from features.presets.common import utc_ticks

    utc = pd.Series(pd.to_datetime(["2025-03-30 00:59:59.123456", None], utc=True))
    expected = utc.dt.tz_localize(None).astype("datetime64[us]").to_numpy().view(np.int64)
    for stamps in (
        utc,
        utc.astype("datetime64[us, UTC]"),
        utc.dt.tz_convert("Europe/Berlin"),
        utc.astype("datetime64[ns, UTC]"),
    ):
        assert utc_ticks(stamps).tolist() == expected.tolist()
    assert expected[1] == np.iinfo(np.int64).min


@pytest.mark.parametrize("row_group_size", [10_000, 7])
def test_arrow_frame_gives_what_to_pandas_gives(tmp_path: Path, row_group_size: int) -> None:
    """Dictionary columns turned into categoricals without pandas' check give the same frame
    as `to_pandas`: the same categories, codes and missing values, other columns untouched;
    several row groups (a dictionary per chunk) take `to_pandas` itself."""
    from features.reader.arrow_frame import arrow_frame

    rng = np.random.default_rng(5)
    words = np.array(["a@x.io", "B@y.io", "c", "", "ß@z.de"], dtype=object)
    text = [None if i % 11 == 0 else words[k] for i, k in enumerate(rng.integers(0, 5, 40))]
    table = pa.table(
        {
            "recipient": text,
            "n": np.arange(40),
            "type": [None] * 39 + ["OPEN"],
            "at": pa.array(
                np.datetime64("2025-01-01", "us") + np.arange(40).astype("timedelta64[h]"),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=row_group_size)
    read = pq.read_table(tmp_path / "t.parquet", read_dictionary=["recipient", "type"])
    got, want = arrow_frame(read), read.to_pandas()
    pd.testing.assert_frame_equal(got, want)
    assert isinstance(got["recipient"].dtype, pd.CategoricalDtype)
    assert got["recipient"].cat.categories.dtype == want["recipient"].cat.categories.dtype
    for batch in read.to_batches():
        pd.testing.assert_frame_equal(arrow_frame(batch), batch.to_pandas())
    only = read.select(["recipient"])
    pd.testing.assert_frame_equal(arrow_frame(only), only.to_pandas())
