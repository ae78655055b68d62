"""Strict checks of a snapshot's files, where an export is wrong in ways pandas reads silently.

Each refuses with a `ContractError` naming the file and what is wrong: a declared as-of time
that is a number (it would read as Unix time) or that comes before all the data, a table
present both as CSV and Parquet, Parquet columns of lists or structs (they would become
"['Owner']" text), and a quote that is never closed (blamed on the line and column where it
opens, not on wherever pandas gave up).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import ContractError


def declared_time(value: object, origin: str) -> pd.Timestamp:
    """An as-of time declared in a file: an ISO 8601 string, as UTC (no zone: UTC).

    A number is refused rather than read as seconds or nanoseconds since 1970.
    """
    if not isinstance(value, str):
        kind = "true/false" if isinstance(value, bool) else type(value).__name__
        raise ContractError(
            f"{origin}: as_of {value!r} ({kind}) must be an ISO 8601 time in quotes "
            '(e.g. "2026-01-31T00:00:00Z"), not a number read as Unix time'
        )
    try:
        stamp = pd.to_datetime(value.strip(), format="ISO8601")
    except (ValueError, OverflowError):
        raise ContractError(f"{origin}: as_of {value!r} is not an ISO 8601 time") from None
    if pd.isna(stamp):
        raise ContractError(f"{origin}: as_of {value!r} is not an ISO 8601 time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def one_file(found: Sequence[Path], name: str, folder: Path) -> None:
    """Refuse a table present in several files (leads.csv and leads.parquet): which one is the
    export is not for the reader to guess."""
    if len(found) > 1:
        shown = " and ".join(p.name for p in found)
        raise ContractError(
            f"{folder}: both {shown} hold the '{name}' table; keep one, or name the file "
            f"(source.{name}: {found[0].name})"
        )


def check_parquet_types(schema: Any, path: Path, columns: Sequence[str] | None = None) -> None:
    """Refuse Parquet columns of lists, structs or maps: no contract column holds one, and
    pandas would turn them into text such as "['Owner']"."""
    import pyarrow as pa

    nested = [
        f"'{field.name}' ({field.type})"
        for field in schema
        if (columns is None or field.name in columns) and pa.types.is_nested(field.type)
    ]
    if nested:
        raise ContractError(
            f"{path}: column(s) {', '.join(nested)} hold lists or records, not single values; "
            "flatten them in the export (e.g. the first item, or one row per item)"
        )


def _opener(path: Path) -> Any:
    return gzip.open if path.suffix == ".gz" else open


def unterminated_quote(path: Path, sep: str, encoding: str) -> str | None:
    """Where a quoted CSV value opens and never closes: 'line L, column C', or None.

    Reads the file once more (only after pandas failed); a line without a quote is skipped
    unless a quoted value is open across it.
    """
    with _opener(path)(path, "rt", encoding=encoding, errors="replace", newline="") as handle:
        header = next(csv.reader([handle.readline()], delimiter=sep), [])
        open_at: tuple[int, int] | None = None  # (line, field) of the quote that is open
        field, at_start = 0, True
        for number, line in enumerate(handle, start=2):
            if open_at is None:
                if '"' not in line:
                    continue
                field, at_start = 0, True  # a new record
            i = 0
            while i < len(line):
                char = line[i]
                if open_at is not None:
                    if char == '"':
                        if line[i + 1 : i + 2] == '"':
                            i += 1  # an escaped quote inside the value
                        else:
                            open_at, at_start = None, False
                elif char == '"' and at_start:
                    open_at = (number, field)
                elif char == sep:
                    field, at_start = field + 1, True
                else:
                    at_start = False
                i += 1
    if open_at is None:
        return None
    line_number, index = open_at
    column = header[index].strip() if index < len(header) else f"#{index + 1}"
    return f"line {line_number}, column '{column}'"


def check_as_of_after_data(
    as_of: pd.Timestamp, created_at: pd.Series, table: str, origin: str
) -> None:
    """Refuse a declared as-of time before every lead was created: nothing was known then, and
    a training set would be empty rather than wrong-looking."""
    first = created_at.min()
    if pd.notna(first) and as_of < first:
        raise ContractError(
            f"{origin}: as_of {as_of.isoformat()} is before every lead in {table} was created "
            f"(the first created_at is {first.isoformat()}): nothing is known as of then; "
            "is it the right snapshot, or the right year?"
        )


def line_breaks_with_delimiter(values: pd.Series, sep: str) -> np.ndarray:
    """Cells holding a line break and the delimiter: a quote opened there swallowed the next
    lines of the file (a value of free text may hold either, rarely both)."""
    text = values.astype("str")
    return (text.str.contains("\n", regex=False) & text.str.contains(sep, regex=False)).to_numpy(
        dtype=bool, na_value=False
    )
