"""Timestamps and company sizes, read by one definition in two forms.

The snapshot reader reads whole columns; the scoring API reads one lead. Both call this module,
so what one accepts the other accepts, with the same value:

- the scalar form (`timestamp_ms`, `company_size_of_text`, `company_size_of_number`) is
  memoised, for the API's one lead;
- the column form (`parse_timestamps`, `company_sizes_of_text`, `company_sizes_of_numbers`) is
  the same rule lifted to a column: company sizes per distinct value through the scalar, and
  timestamps through pandas' ISO 8601 parser, which the scalar form reproduces on the common
  shapes and calls itself on every other shape (so odd text is slower, never different).

Rules: a timestamp is ISO 8601 text (surrounding whitespace ignored; no zone is UTC; floored to
the millisecond); a bare number is not a timestamp. A company size is a finite non-negative
number of employees, a range such as '51-200' (its midpoint; low above high is refused) or
'10,000+' (its lower bound); true/false is not a size.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd

from features.engagement import NAT_MS

__all__ = [
    "NAT_MS",
    "company_size_of_number",
    "company_size_of_text",
    "company_sizes_of_numbers",
    "company_sizes_of_text",
    "is_missing",
    "number_value",
    "parse_timestamps",
    "timestamp_ms",
]

_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)

#: ISO 8601 forms parsed in Python; anything else goes to pandas' own ISO 8601 parser.
_ISO: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
#: Plain decimals that `pd.to_numeric` and `float` read alike (15 digits at most, no exponent).
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
#: A superset of what `pd.to_numeric` can read: text outside it is NaN without asking pandas.
_NUMBER_LIKE: Final = re.compile(
    r"\s*[+-]?(?:[0-9]*\.?[0-9]*(?:e[+-]?[0-9]*)?|inf|infinity|nan)\s*", re.IGNORECASE
)
RANGE: Final = re.compile(r"^\s*(\d[\d,]*)\s*(?:-|–|to)\s*(\d[\d,]*)\s*$")
PLUS: Final = re.compile(r"^\s*(\d[\d,]*)\s*\+\s*$")


def is_missing(value: Any) -> bool:
    """None, NaN, pd.NA or NaT: what a pandas column holds as missing."""
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


# --------------------------------------------------------------------------- numbers


def number_value(text: str) -> float:
    """`pd.to_numeric(..., errors="coerce")` of one string: NaN when it is not a number.

    Plain decimals of up to 15 digits are read by `float` (pandas' parser reads them to the
    same double); anything else is handed to pandas, whose parser differs from `float` on long
    mantissas, exponents, underscores and non-ASCII digits.
    """
    if _PLAIN_NUMBER.fullmatch(text) and len(text) - text.count(".") - (text[0] in "+-") <= 15:
        return float(text)
    if not _NUMBER_LIKE.fullmatch(text):
        return math.nan
    parsed = pd.to_numeric(pd.Series([text], dtype="str"), errors="coerce")
    return float(parsed.astype("float64").iloc[0])


# --------------------------------------------------------------------------- company size


def company_size_of_number(size: float) -> tuple[float, bool]:
    """A numeric company size and whether it is bad (negative, infinite)."""
    return size, not math.isnan(size) and (size < 0 or math.isinf(size))


@lru_cache(maxsize=65536)
def company_size_of_text(text: str) -> tuple[float, bool]:
    """A cleaned text company size ('350', '51-200', '10,000+') and whether it is bad.

    A range reads as its midpoint and 'N+' as N; a range whose low end is above its high end,
    an infinite or negative number, and text that is none of these are bad.
    """
    size = number_value(text.replace(",", ""))
    if math.isnan(size):
        if (found := RANGE.match(text)) is not None:
            low, high = (number_value(g.replace(",", "")) for g in found.groups())
            return (low + high) / 2, low > high
        if (found := PLUS.match(text)) is not None:
            return number_value(found.group(1).replace(",", "")), False
        return math.nan, True
    return size, size < 0 or math.isinf(size)


def company_sizes_of_numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """`company_size_of_number` over a numeric column (the same rule, vectorised); a
    true/false column is bad wherever it holds a value."""
    if pd.api.types.is_bool_dtype(values):
        bad = values.notna().to_numpy(dtype=bool)
        return pd.Series(np.nan, index=values.index, dtype="float64"), bad
    size = values.astype("float64")
    array = size.to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(array) & ((array < 0) | np.isinf(array))
    return size, bad


def company_sizes_of_text(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """`company_size_of_text` over a cleaned text column, once per distinct value."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    read = [company_size_of_text(str(u)) for u in uniques]
    sizes = np.array([s for s, _ in read] + [math.nan], dtype=np.float64)
    bads = np.array([b for _, b in read] + [False], dtype=bool)
    return pd.Series(sizes[codes], index=text.index, dtype="float64"), bads[codes]


# --------------------------------------------------------------------------- timestamps


def _pandas_timestamp_ms(text: str) -> int:
    """pandas' ISO 8601 reading of one string (the column form itself); NAT_MS if unread."""
    parsed, _ = _parse_text(pd.Series([text], dtype="str"))
    return int(parsed.array.asi8[0])


def _iso_ms(text: str) -> int | None:
    """Milliseconds of a common ISO 8601 form, floored; None for anything else.

    `datetime.fromisoformat` reads these forms as pandas does (digits past the microsecond are
    dropped, which floors like pandas' nanoseconds do); it is asked only after the regex. Left
    to pandas: hour 24 and offset minutes of 60 or more (some Pythons take them), and
    nanoseconds near or outside datetime64[ns]'s years (pandas refuses those), and years
    whose UTC time leaves datetime's range.
    """
    found = _ISO.fullmatch(text)
    if found is None:
        return None
    year, hour, fraction, zone = found.group(1, 4, 7, 8)
    if (hour is not None and hour >= "24") or (zone and zone != "Z" and zone[4:] >= "60"):
        return None
    if fraction and len(fraction) > 6 and not "1678" <= year <= "2261":
        return None  # nanoseconds: pandas reads them only within datetime64[ns]'s range
    try:
        parsed = datetime.fromisoformat(text)
        return (parsed - (_EPOCH_UTC if parsed.tzinfo is not None else _EPOCH)) // _ONE_MS
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=65536)
def _text_ms(text: str) -> int:
    ms = _iso_ms(text)
    return _pandas_timestamp_ms(text) if ms is None else ms


def timestamp_ms(value: Any, missing: frozenset[str]) -> tuple[int, bool]:
    """One timestamp as milliseconds since the epoch (UTC; naive is UTC; floored to the
    millisecond) and whether it is bad (not ISO 8601). Missing values and the mapping's
    missing placeholders (`missing`, case-folded) give `NAT_MS`, not bad."""
    if not isinstance(value, str):
        if is_missing(value):
            return NAT_MS, False
        if isinstance(value, datetime):
            try:
                if isinstance(value, pd.Timestamp):
                    return int(value.value) // 1_000_000, False
                offset = value.utcoffset()
                naive = value.replace(tzinfo=None)
                if offset:
                    naive = naive - offset
                return (naive - _EPOCH) // _ONE_MS, False
            except (OverflowError, ValueError):
                pass  # out of datetime's range: pandas reads its text below
        elif isinstance(value, bool | int | float | np.integer | np.floating):
            return NAT_MS, True  # a bare number is not a timestamp (nor Unix time)
        value = str(value)
    text = value.strip()
    if text.casefold() in missing:
        return NAT_MS, False
    ms = _text_ms(text)
    return ms, ms == NAT_MS


def _parse_text(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    return parsed.dt.as_unit("ms"), (text.notna() & parsed.isna()).to_numpy()


def parse_timestamps(values: pd.Series, missing: frozenset[str]) -> tuple[pd.Series, np.ndarray]:
    """ISO 8601 timestamps as UTC milliseconds (a value without a zone is UTC), and a mask of
    bad rows: `timestamp_ms` over a column."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        return pd.to_datetime(values, utc=True).dt.as_unit("ms"), np.zeros(len(values), bool)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # a typed number column (Parquet, SQL): not timestamps, as `timestamp_ms` refuses them
        bad = values.notna().to_numpy()
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ms, UTC]"), bad
    text = values.astype("str").str.strip()
    text = text.mask(text.str.casefold().isin(list(missing)))
    return _parse_text(text)
