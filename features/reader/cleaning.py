"""Cleaning the messy values of real exports, column by column.

Each function cleans a column once per distinct value (`per_distinct`): a column of a million
leads holds a few hundred countries. The scalar rules live in `features.clean`, which the API's
one-lead path uses too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features import clean
from features.config import MappingConfig
from features.contract import FREE_MAIL_DOMAINS

#: Unicode whitespace as a character class: unlike `\s` it stays on pyarrow's fast regex path.
WHITESPACE = "[" + "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + "]+"


def per_distinct(values: pd.Series, clean: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply `clean` once per distinct value and spread the results back (NA stays NA).

    A column of a million leads has a few hundred countries: clean those, not a million cells.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if 2 * len(uniques) > len(values):
        return clean(values)
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=values.index, dtype="str")
    cleaned = clean(pd.Series(np.asarray(uniques, dtype=object), dtype="str"))
    spread = cleaned.take(np.where(codes < 0, 0, codes)).mask(codes < 0)
    return spread.set_axis(values.index)


def fold_text(values: pd.Series) -> pd.Series:
    """Trim, collapse inner whitespace and case-fold text values."""
    return values.str.strip().str.replace(WHITESPACE, " ", regex=True).str.casefold()


def clean_text(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """Trimmed text with the config's missing placeholders as NA and its value map applied."""
    return per_distinct(values.astype("str"), lambda v: _mapped_text(v, mapping, column))


def _mapped_text(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    text = values.str.strip().str.replace(WHITESPACE, " ", regex=True)
    folded = text.str.casefold()
    text = text.mask(folded.isin(mapping.missing_values) | text.isna())
    value_map = {k.strip().casefold(): v for k, v in mapping.values.get(column, {}).items()}
    if value_map:
        mapped = folded.map(value_map)
        text = mapped.where(mapped.notna(), text)
    return text.astype("str")


def clean_category(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """A categorical fit attribute: cleaned, then case-folded so 'USA ' and 'usa' agree."""
    return per_distinct(values.astype("str"), lambda v: fold_text(_mapped_text(v, mapping, column)))


def parse_timestamps(values: pd.Series, mapping: MappingConfig) -> tuple[pd.Series, np.ndarray]:
    """ISO 8601 timestamps as UTC (a value without a zone is UTC), and a mask of bad rows
    (`features.clean`, the API's parser too)."""
    return clean.parse_timestamps(values, frozenset(mapping.missing_values))


def parse_company_size(values: pd.Series, mapping: MappingConfig) -> tuple[pd.Series, np.ndarray]:
    """Employees as a number; '51-200' reads as its midpoint and '10000+' as 10000.

    Returns the sizes (float, NaN when missing) and a mask of unreadable, negative or infinite
    rows (`features.clean`, the API's parser too).
    """
    if pd.api.types.is_numeric_dtype(values):
        return clean.company_sizes_of_numbers(values)
    return clean.company_sizes_of_text(clean_text(values, mapping, "company_size"))


def free_mail_flag(emails: pd.Series, mapping: MappingConfig) -> pd.Series:
    """Whether each address is at a free-mail provider: the only thing an email may become."""
    text = clean_text(emails, mapping, "email")
    domain = text.str.extract(r"@([^@ ]+)$", expand=False)  # clean_text left no other spaces
    domain = per_distinct(domain, lambda d: d.str.casefold())
    return domain.isin(FREE_MAIL_DOMAINS).astype("boolean").mask(domain.isna())


def parse_flags(
    values: pd.Series, mapping: MappingConfig, column: str
) -> tuple[pd.Series, np.ndarray]:
    """Yes/no values as a nullable boolean, with a mask of values that are neither."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool)
    text = clean_text(values.astype("str"), mapping, column).str.casefold()
    flag = pd.Series(pd.NA, index=values.index, dtype="boolean")
    flag[text.isin(mapping.true_values)] = True
    flag[text.isin(mapping.false_values)] = False
    bad = (text.notna() & flag.isna()).to_numpy()
    return flag, bad
