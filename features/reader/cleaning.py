"""Cleaning the messy values of real exports, column by column.

Each rule is written once, as a scalar function in `features.clean` that the API's one-lead
path calls; the column forms here run it once per distinct value (a column of a million leads
holds a few hundred countries).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.config import MappingConfig
from features import clean


def clean_text(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """Trimmed text with the config's missing placeholders as NA and its value map applied
    (`features.clean`, the API's rule too)."""
    return clean.clean_texts(values, mapping, column)


def clean_category(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """A categorical fit attribute: cleaned, then case-folded so 'USA ' and 'usa' agree."""
    return clean.clean_categories(values, mapping, column)


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
    return clean.free_mail_flags(emails, mapping)


def parse_flags(
    values: pd.Series, mapping: MappingConfig, column: str
) -> tuple[pd.Series, np.ndarray]:
    """Yes/no values as a nullable boolean, with a mask of values that are neither."""
    return clean.flags_of(values, mapping, column)
