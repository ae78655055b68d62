"""The value cleaning rules, each written once, in two forms.

The snapshot reader reads whole columns; the scoring API reads one lead. Both call this module,
so what one accepts the other accepts, with the same value:

- the scalar form is memoised, for the API's one lead: `timestamp_ms`, `company_size_of_text`,
  `company_size_of_number`, and a mapping's `ValueRules` (text, categories, flags, numeric
  fields, free mail, event types, company sizes of any value);
- the column form is the same rule lifted to a column: `clean_texts`, `clean_categories`,
  `flags_of`, `numbers_of`, `free_mail_flags`, `event_kinds` and the company sizes run the
  scalar once per distinct value; timestamps go through pandas' ISO 8601 parser
  (`parse_timestamps`), which the scalar form reproduces on the common shapes and calls itself
  on every other shape (so odd text is slower, never different).

Rules: a timestamp is ISO 8601 text (surrounding whitespace ignored; no zone is UTC; floored to
the millisecond); a bare number is not a timestamp. A company size is a finite non-negative
number of employees, a range such as '51-200' (its midpoint; low above high is refused) or
'10,000+' (its lower bound); true/false is not a size.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from common.config import MappingConfig
from features.contract import EVENT_TYPES, FREE_MAIL_DOMAINS
from features.engagement import NAT_MS

__all__ = [
    "NAT_MS",
    "OTHER",
    "ValueRules",
    "clean_categories",
    "clean_texts",
    "company_size_of_number",
    "company_size_of_text",
    "company_sizes_of_numbers",
    "company_sizes_of_text",
    "event_kinds",
    "flags_of",
    "fold",
    "free_mail_flags",
    "is_missing",
    "is_number",
    "number_value",
    "numbers_of",
    "parse_timestamps",
    "timestamp_ms",
    "value_rules",
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


# --------------------------------------------------------------------------- text and categories

OTHER: Final = EVENT_TYPES.index("other")
_TYPE_INDEX: Final = {name: i for i, name in enumerate(EVENT_TYPES)}
_SNAKE: Final = re.compile(r"[\s\-]+")
_EMAIL_DOMAIN: Final = re.compile(r"@([^@ ]+)$")
#: The same, for pyarrow's `extract_regex` (RE2, a named group).
_EMAIL_DOMAIN_NAMED: Final = r"@(?P<domain>[^@ ]+)$"
_MAX_MEMO: Final = 4096


def is_number(value: Any) -> bool:
    """Whether pandas would hold the value in a numeric column (booleans included)."""
    return isinstance(value, bool | int | float | np.integer | np.floating | np.bool_)


def _as_text(value: Any) -> str | None:
    """The value as `Series.astype("str")` renders it; None when missing."""
    if is_missing(value):
        return None
    return value if isinstance(value, str) else str(value)


def fold(text: str) -> str:
    """Trim, collapse inner whitespace and case-fold."""
    return " ".join(text.split()).casefold()


class ValueRules:
    """A mapping's cleaning rules for one value: the scalar form of every rule.

    The lookups are folded once; categories and event types are memoised (bounded,
    thread-safe: a race only computes a value twice). The column forms below run these same
    methods once per distinct value of a column.
    """

    def __init__(self, mapping: MappingConfig) -> None:
        self.mapping = mapping
        self.missing = frozenset(mapping.missing_values)
        self.true_values = frozenset(mapping.true_values)
        self.false_values = frozenset(mapping.false_values)
        self.value_maps = {
            column: {k.strip().casefold(): v for k, v in values.items()}
            for column, values in mapping.values.items()
        }
        self.event_map = self.value_maps.get("event_type", {})
        self._kinds: dict[str, tuple[int, bool]] = {}
        self._categories: dict[tuple[str, str], str | None] = {}

    def text(self, value: Any, column: str) -> str | None:
        """Trimmed text with inner whitespace collapsed, the mapping's missing placeholders as
        None and its value map for `column` applied (case kept otherwise)."""
        raw = _as_text(value)
        if raw is None:
            return None
        text = " ".join(raw.split())
        folded = text.casefold()
        value_map = self.value_maps.get(column)
        if value_map:
            mapped = value_map.get(folded)
            if mapped is not None:
                return mapped
        return None if folded in self.missing else text

    def category(self, value: Any, column: str) -> str | None:
        """A categorical attribute: `text`, then folded so 'USA ' and 'usa' agree."""
        if not isinstance(value, str):
            text = self.text(value, column)
            return None if text is None else fold(text)
        key = (column, value)
        try:
            return self._categories[key]
        except KeyError:
            pass
        text = self.text(value, column)
        cleaned = None if text is None else fold(text)
        if len(self._categories) >= _MAX_MEMO:
            self._categories.clear()
        self._categories[key] = cleaned
        return cleaned

    def event_kind(self, name: Any) -> tuple[int, bool]:
        """Index into EVENT_TYPES of a raw event type name (after the value map; unknown
        names are `other`) and whether it is reported as unknown."""
        if not isinstance(name, str):
            if is_missing(name):
                return OTHER, True
            name = str(name)
        try:
            return self._kinds[name]
        except KeyError:
            pass
        folded = fold(name)
        mapped = self.event_map.get(folded, folded)
        kind = _TYPE_INDEX.get(_SNAKE.sub("_", mapped.strip().casefold()), OTHER)
        found = (kind, kind == OTHER and name.strip().casefold() != "other")
        if len(self._kinds) >= _MAX_MEMO:
            self._kinds.clear()
        self._kinds[name] = found
        return found

    def flag(self, value: Any, column: str) -> tuple[float, bool]:
        """A yes/no value as 1.0, 0.0 or NaN, and whether it is neither a true nor a false
        value."""
        if isinstance(value, bool | np.bool_):
            return float(value), False
        text = self.text(value, column)
        if text is None:
            return math.nan, False
        folded = text.casefold()
        if folded in self.true_values:
            return 1.0, False
        if folded in self.false_values:
            return 0.0, False
        return math.nan, True

    def number(self, value: Any, column: str) -> tuple[float, bool]:
        """A numeric field and whether it is not a number."""
        if is_number(value):
            return float(value), False
        text = self.text(value, column)
        if text is None:
            return math.nan, False
        number = number_value(text)
        return number, math.isnan(number)

    def company_size(self, value: Any) -> tuple[float, bool]:
        """Employees as a number ('51-200' is 125.5, '10,000+' is 10000) and whether it is
        bad: true/false, negative and infinite sizes are."""
        if isinstance(value, bool | np.bool_):
            return math.nan, True
        if is_number(value):
            return company_size_of_number(float(value))
        text = self.text(value, "company_size")
        if text is None:
            return math.nan, False
        return company_size_of_text(text)

    def free_mail(self, email: Any) -> float:
        """1.0 for an address at a free-mail provider, 0.0 otherwise, NaN when there is none.

        Only the domain's kind leaves this method: the address is never kept or shown.
        """
        text = self.text(email, "email")
        if text is None:
            return math.nan
        found = _EMAIL_DOMAIN.search(text)
        if found is None:
            return math.nan
        return 1.0 if found.group(1).casefold() in FREE_MAIL_DOMAINS else 0.0

    def timestamp(self, value: Any) -> tuple[int, bool]:
        """`timestamp_ms` with this mapping's missing placeholders."""
        return timestamp_ms(value, self.missing)


_RULES: dict[int, ValueRules] = {}
_RULES_LOCK = threading.Lock()


def value_rules(mapping: MappingConfig) -> ValueRules:
    """The rules of a mapping, built once per mapping object."""
    found = _RULES.get(id(mapping))
    if found is not None and found.mapping is mapping:
        return found
    built = ValueRules(mapping)
    with _RULES_LOCK:
        if len(_RULES) >= 16:
            _RULES.clear()
        _RULES[id(mapping)] = built
    return built


# --------------------------------------------------------------------------- column forms


def _distinct(values: pd.Series, rule: Callable[[Any], Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes of a column's distinct texts (as `astype("str")` renders them; -1: missing) and
    `rule` of each distinct text."""
    codes, uniques = pd.factorize(values.astype("str"), use_na_sentinel=True)
    return codes, [rule(u) for u in uniques.tolist()]


def _spread(codes: np.ndarray, read: list[Any], missing: Any, dtype: Any) -> np.ndarray:
    """Per-distinct results spread back over the rows; code -1 (missing) gets `missing`."""
    out = np.empty(len(read) + 1, dtype=dtype)
    out[:-1] = read
    out[-1] = missing
    return out[codes]


#: Text `ValueRules.text` returns as it is (unless missing or mapped): printable ASCII with no
#: space at either end and no two in a row, whose casefold is its lower case.
_PLAIN_ASCII: Final = r"^[!-~](?:[ !-~]*[!-~])?$"


@dataclass(frozen=True)
class _Distinct:
    """A text column's distinct values and, for the plain ones, what the rules make of them
    without a Python call per value: the rest (`slow`) go through the scalar rule."""

    codes: np.ndarray  # per row, index into uniques; -1: missing
    uniques: pa.Array  # the distinct texts
    lower: pa.Array  # their lower case (= casefold where plain)
    missing: np.ndarray  # plain and a missing placeholder
    slow: np.ndarray  # needs the scalar rule: not plain, or hit by the column's value map


def _plain_distinct(values: pd.Series, rules: ValueRules, column: str) -> _Distinct:
    """Factorise a text column and sort its distinct values into plain and slow."""
    codes, uniques = pd.factorize(values.astype("str"), use_na_sentinel=True)
    texts = pa.array(uniques, type=pa.large_string())
    plain = pc.and_(
        pc.match_substring_regex(texts, _PLAIN_ASCII),
        pc.invert(pc.match_substring(texts, "  ")),
    )
    lower = pc.utf8_lower(texts)
    plain_mask = plain.to_numpy(zero_copy_only=False)
    missing = pc.is_in(lower, value_set=pa.array(sorted(rules.missing), pa.large_string()))
    missing_mask = missing.to_numpy(zero_copy_only=False) & plain_mask
    slow = ~plain_mask
    value_map = rules.value_maps.get(column)
    if value_map:
        keys = pa.array(sorted(value_map), pa.large_string())
        slow |= pc.is_in(lower, value_set=keys).to_numpy(zero_copy_only=False)
    return _Distinct(codes, texts, lower, missing_mask & ~slow, slow)


def _slow_values(found: _Distinct) -> list[str]:
    """The distinct texts the scalar rule must see, in order, as Python strings."""
    return found.uniques.filter(pa.array(found.slow)).to_pylist()


def _spread_texts(
    found: _Distinct, kept: pa.Array, slow: list[str | None], index: pd.Index
) -> pd.Series:
    """Per-distinct texts (`kept`, with the missing ones as None and the slow ones' `slow`
    results put in) spread back over the rows as a `str` column."""
    if found.missing.any() or found.slow.any():
        out = kept.to_numpy(zero_copy_only=False)
        out[found.missing] = None
        out[np.flatnonzero(found.slow)] = slow
        kept = pa.array(out, pa.large_string())
    rows = pa.array(found.codes, mask=found.codes < 0, type=pa.int64())
    return pd.Series(pd.array(pc.take(kept, rows), dtype="str"), index=index)


def clean_texts(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """`ValueRules.text` over a column, once per distinct value (plain ASCII without a call)."""
    rules = value_rules(mapping)
    found = _plain_distinct(values, rules, column)
    slow = [rules.text(u, column) for u in _slow_values(found)]
    return _spread_texts(found, found.uniques, slow, values.index)


def clean_categories(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """`ValueRules.category` over a column, once per distinct value (plain ASCII folded
    without a call)."""
    rules = value_rules(mapping)
    found = _plain_distinct(values, rules, column)
    slow = [rules.category(u, column) for u in _slow_values(found)]
    return _spread_texts(found, found.lower, slow, values.index)


def _as_flags(number: np.ndarray, index: pd.Index) -> pd.Series:
    """1.0 / 0.0 / NaN as a nullable boolean."""
    flag = pd.Series(pd.array(number, dtype="Float64"), index=index)
    return flag.mask(np.isnan(number)).astype("boolean")


def flags_of(
    values: pd.Series, mapping: MappingConfig, column: str
) -> tuple[pd.Series, np.ndarray]:
    """`ValueRules.flag` over a column: a nullable boolean and the mask of bad rows."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool)
    rules = value_rules(mapping)
    codes, read = _distinct(values, lambda v: rules.flag(v, column))
    number = _spread(codes, [f for f, _ in read], math.nan, np.float64)
    return _as_flags(number, values.index), _spread(codes, [b for _, b in read], False, bool)


def numbers_of(
    values: pd.Series, mapping: MappingConfig, column: str
) -> tuple[pd.Series, np.ndarray]:
    """`ValueRules.number` over a column: floats and the mask of rows that are not numbers."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64"), np.zeros(len(values), dtype=bool)
    rules = value_rules(mapping)
    codes, read = _distinct(values, lambda v: rules.number(v, column))
    number = _spread(codes, [f for f, _ in read], math.nan, np.float64)
    return pd.Series(number, index=values.index), _spread(codes, [b for _, b in read], False, bool)


def free_mail_flags(emails: pd.Series, mapping: MappingConfig) -> pd.Series:
    """`ValueRules.free_mail` over a column, as a nullable boolean (plain ASCII addresses
    without a call)."""
    rules = value_rules(mapping)
    found = _plain_distinct(emails, rules, "email")
    domain = pc.struct_field(pc.extract_regex(found.lower, _EMAIL_DOMAIN_NAMED), [0])
    free = pc.is_in(domain, value_set=pa.array(sorted(FREE_MAIL_DOMAINS), pa.large_string()))
    flag = np.where(free.to_numpy(zero_copy_only=False), 1.0, 0.0)
    flag[pc.is_null(domain).to_numpy(zero_copy_only=False) | found.missing] = math.nan
    flag[found.slow] = [rules.free_mail(u) for u in _slow_values(found)]
    by_row = np.append(flag, math.nan)[found.codes]  # code -1 (missing) is the last
    return _as_flags(by_row, emails.index)


def event_kinds(names: pd.Series, mapping: MappingConfig) -> np.ndarray:
    """`ValueRules.event_kind` over a column of raw event type names, as int8 indexes."""
    rules = value_rules(mapping)
    codes, uniques = pd.factorize(names, use_na_sentinel=True)
    kinds = [rules.event_kind(u)[0] for u in uniques.tolist()] + [OTHER]
    return np.array(kinds, dtype=np.int8)[codes]
