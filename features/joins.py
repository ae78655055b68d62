"""Joining the other tables of an export onto its leads table, as `source.joins` declares.

Real exports come in several tables: the MQLs, a deals (outcomes) table giving `sql_at`, an
accounts table giving firmographics. Each join is a left join by key, made on the raw tables
before mapping, so the joined columns are mapped, cleaned and checked like any lead column.
A key with several rows gives one row per lead: the earliest (or latest) by `order_by`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from common.config import JoinConfig
from features.contract import ContractError


def _key_text(values: pd.Series) -> pd.Series:
    """Keys as trimmed text; integer-valued numbers without a '.0' (a key read as a number on
    one side and as text on the other still matches); empty and missing keys are NA."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if len(finite) and np.all(np.mod(finite.to_numpy(), 1) == 0):
            values = values.astype("Int64")
    text = values.astype("str").str.strip()
    return text.mask(values.isna() | (text == ""))


def _columns(frame: pd.DataFrame) -> dict[str, str]:
    """Column names stripped, as the reader compares them, to the frame's own names."""
    return {str(c).strip(): c for c in frame.columns}


def _order_values(values: pd.Series) -> pd.Series:
    """A sortable form of `order_by`: timestamps when its values read as ISO 8601, numbers
    when they read as numbers, else the text itself."""
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values
    text = values.astype("str").str.strip()
    text = text.mask(text == "")
    present = text.notna()
    stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    if present.any() and stamps[present].notna().mean() >= 0.5:
        return stamps
    numbers = pd.to_numeric(text, errors="coerce")
    if present.any() and numbers[present].notna().mean() >= 0.5:
        return numbers
    return text


def _missing_column(table: str, column: str, key: str, columns: Sequence[str], rows: int) -> str:
    from features.dialect import delimiter_hint

    shown = ", ".join(repr(c) for c in list(columns)[:12])
    return (
        f"{table}: column '{column}': {rows} row(s) (all): {key} names a column not in the "
        f"table; its columns are {shown}" + delimiter_hint(list(columns), "")
    )


def join_one(
    leads: pd.DataFrame,
    other: pd.DataFrame,
    join: JoinConfig,
    names: tuple[str, str],
    position: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """`leads` with the joined columns of `other` (one row per lead), and notes for the
    reader's summary. `names` are the leads table's and the joined table's, for messages."""
    leads_name, table = names
    where = f"source.joins[{position}]"
    lead_columns, other_columns = _columns(leads), _columns(other)
    lead_key = (join.lead_key or join.key).strip()
    if lead_key not in lead_columns:
        raise ContractError(
            _missing_column(
                leads_name, lead_key, f"{where}.lead_key", list(lead_columns), len(leads)
            )
        )
    wanted = {k.strip(): v.strip() for k, v in join.columns.items()} or {
        c: c for c in other_columns if c != join.key.strip()
    }
    needed = [join.key.strip(), *wanted] + ([join.order_by.strip()] if join.order_by else [])
    for column in needed:
        if column not in other_columns:
            key = f"{where}.{'key' if column == join.key.strip() else 'columns'}"
            if join.order_by and column == join.order_by.strip():
                key = f"{where}.order_by"
            raise ContractError(
                _missing_column(table, column, key, list(other_columns), len(other))
            )
    clashes = [new for new in wanted.values() if new in lead_columns]
    if clashes:
        raise ContractError(
            f"{table}: joining would give the leads table columns it has already: {clashes}; "
            f"rename them under {where}.columns, e.g. {{{clashes[0]!r}: "
            f"{(table.rsplit('/', 1)[-1].split('.')[0] + '_' + clashes[0])!r}}}"
        )

    keys = _key_text(other[other_columns[join.key.strip()]])
    keyed = other.loc[keys.notna()]
    keys = keys[keys.notna()]
    notes: list[str] = []
    no_key = len(other) - len(keyed)
    if no_key:
        notes.append(f"{table}: {no_key:,} row(s) without a {join.key!r} key ignored")
    several = keys.duplicated(keep=False)
    if several.any():
        shared = int(keys[several].nunique())
        if join.order_by is None:
            examples = ", ".join(repr(k) for k in keys[several].unique()[:3])
            raise ContractError(
                f"{table}: {shared:,} key(s) of {join.key!r} have several rows (e.g. {examples}); "
                f"set {where}.order_by to the column that ranks them (the earliest row counts, "
                f"or the latest with {where}.pick: latest)"
            )
        order = _order_values(keyed[other_columns[join.order_by.strip()]])
        ranked = pd.DataFrame({"key": keys.to_numpy(), "order": order.to_numpy()})
        ranked = ranked.sort_values(
            ["key", "order"],
            ascending=[True, join.pick == "earliest"],
            na_position="last",
            kind="stable",
        )
        first = ranked.drop_duplicates("key", keep="first").index.to_numpy()
        keyed, keys = keyed.iloc[np.sort(first)], keys.iloc[np.sort(first)]
        notes.append(
            f"{table}: {shared:,} key(s) have several rows; the {join.pick} by "
            f"{join.order_by!r} counts"
        )
    picked = keyed[[other_columns[c] for c in wanted]].set_axis(list(wanted.values()), axis=1)
    picked.index = pd.Index(keys.to_numpy())
    lead_keys = _key_text(leads[lead_columns[lead_key]])
    position_of = picked.index.get_indexer(pd.Index(lead_keys.to_numpy()))
    matched = position_of >= 0
    unmatched_rows = len(picked) - len(np.unique(position_of[matched]))
    joined = leads.copy()
    for column in picked.columns:
        values = picked[column]
        taken = values.take(np.where(matched, position_of, 0)).where(matched)
        if not matched.any():
            taken = pd.Series(pd.NA, index=range(len(leads)), dtype="str")
        joined[column] = taken.set_axis(leads.index)
    notes.append(
        f"{table}: joined on {join.key!r}: {int(matched.sum()):,} of {len(leads):,} leads have a "
        f"row" + (f"; {unmatched_rows:,} row(s) match no lead" if unmatched_rows else "")
    )
    return joined, notes


def join_tables(
    leads: pd.DataFrame,
    joins: Sequence[JoinConfig],
    read: Callable[[str], tuple[pd.DataFrame, str]],
    leads_name: str,
) -> tuple[pd.DataFrame, list[str]]:
    """Apply every declared join in order; `read(table)` gives a table and its name."""
    notes: list[str] = []
    for position, join in enumerate(joins):
        other, name = read(join.table)
        leads, found = join_one(leads, other, join, (leads_name, name), position)
        notes += found
    return leads, notes
