"""A synthetic snapshot (or chunk) of leads, events and truth, and its Arrow schemas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd
import pyarrow as pa

from features.contract import EVENT_COLUMNS, LEAD_COLUMNS
from features.synthetic.arrays import str_series


@dataclass(frozen=True)
class SyntheticSnapshot:
    """One chunk (a whole set of accounts) or a whole synthetic snapshot.

    Attributes:
        leads: Contract lead columns.
        events: Contract event columns (duplicates, out of time order, unknown types included).
        truth: lead_id, cutoff (== mql_at), p_true, converted_in_horizon; one row per MQL lead.
        as_of: The snapshot's as-of time (UTC); nothing written is later.
        params: The generator's arguments and version (written to snapshot.json).
    """

    leads: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    as_of: pd.Timestamp
    params: Mapping[str, Any] = field(default_factory=dict)


_TS: Final = pa.timestamp("us", tz="UTC")
LEADS_SCHEMA: Final = pa.schema(
    [
        (c, _TS) if c.endswith("_at") else (c, pa.int64() if c == "company_size" else pa.string())
        for c in LEAD_COLUMNS
    ]
)
EVENTS_SCHEMA: Final = pa.schema(
    [(c, _TS if c == "occurred_at" else pa.string()) for c in EVENT_COLUMNS]
)
TRUTH_SCHEMA: Final = pa.schema(
    [
        ("lead_id", pa.string()),
        ("cutoff", _TS),
        ("p_true", pa.float64()),
        ("converted_in_horizon", pa.bool_()),
    ]
)


def empty_snapshot(as_of: pd.Timestamp) -> SyntheticSnapshot:
    """A snapshot without rows, with the written dtypes (for zero leads and writer schemas)."""

    def frame(schema: pa.Schema) -> pd.DataFrame:
        table = schema.empty_table()
        return pd.DataFrame({name: _from_arrow(table.column(name)) for name in schema.names})

    return SyntheticSnapshot(frame(LEADS_SCHEMA), frame(EVENTS_SCHEMA), frame(TRUTH_SCHEMA), as_of)


def _from_arrow(column: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_string(column.type):
        return str_series(column)
    if pa.types.is_timestamp(column.type):
        return pd.Series(pd.DatetimeIndex([], dtype="datetime64[us, UTC]"))
    if pa.types.is_integer(column.type):
        return pd.Series(pd.array([], dtype="Int64"))
    return pd.Series(column.to_numpy())
