"""Arrow tables read from Parquet as pandas frames, without pandas' costly checks where
Arrow already guarantees what they check."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_FROM_FASTPATH = getattr(pd.CategoricalDtype, "_from_fastpath", None)


def unchecked_categories(categories: pd.Index) -> pd.CategoricalDtype | None:
    """A categorical type over `categories` without pandas' check that they are distinct (a
    hash of every value), for categories known to be distinct; None where this pandas has no
    such path (the caller then builds the type the checked way)."""
    if _FROM_FASTPATH is None:
        return None
    dtype: pd.CategoricalDtype = _FROM_FASTPATH(categories, False)
    return dtype


def arrow_frame(table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """`table.to_pandas()`, with each dictionary column of one chunk turned into a categorical
    straight from its indices and dictionary.

    pandas checks a categorical's categories for duplicates by hashing them, and a batch of
    events holds hundreds of thousands of distinct lead ids (or a CRM's email recipients). A
    dictionary that Arrow's Parquet reader hands over is built by its dictionary builder,
    which holds each value once, so the check is skipped for it. Columns of several chunks
    (row groups whose dictionaries differ) and empty dictionaries are left to `to_pandas`."""
    fast = [
        name
        for name, column in zip(table.column_names, table.columns, strict=True)
        if pa.types.is_dictionary(column.type)
        and pa.types.is_string(column.type.value_type)
        and (isinstance(column, pa.Array) or column.num_chunks == 1)
        and len(column.dictionary if isinstance(column, pa.Array) else column.chunk(0).dictionary)
    ]
    if not fast or _FROM_FASTPATH is None:
        return table.to_pandas()
    rest = table.drop_columns(fast).to_pandas()
    parts = {}
    for name in table.column_names:
        if name not in fast:
            parts[name] = rest[name]
            continue
        column = table.column(name)
        array = column if isinstance(column, pa.Array) else column.chunk(0)
        codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False)
        dtype = unchecked_categories(pd.Index(array.dictionary.to_pandas()))
        parts[name] = pd.Series(pd.Categorical.from_codes(codes, dtype=dtype, validate=False))
    index = rest.index if len(rest.columns) else pd.RangeIndex(table.num_rows)
    return pd.DataFrame(parts, index=index)
