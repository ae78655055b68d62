"""Breaches of the data contract, collected so one error lists every one of them.

A `Problem` names the table, the column, how many rows are bad and a few examples; the reader
gathers them per step and raises them together with `raise_problems`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import ContractError

#: How many bad rows a problem shows as examples.
EXAMPLES = 3


@dataclass(frozen=True)
class Problem:
    """One breach of the contract in one column."""

    table: str
    column: str
    issue: str
    rows: int
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.table}: column '{self.column}': {self.rows} row(s) {self.issue}{shown}"


def raise_problems(problems: Sequence[Problem]) -> None:
    """Raise one `ContractError` listing every problem, if there are any."""
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ContractError(f"the snapshot breaks the data contract:\n{lines}")


def row_examples(values: pd.Series, mask: np.ndarray, row_offset: int = 0) -> tuple[str, ...]:
    """A few `row N: 'value'` examples of the masked rows (rows numbered from 1, as data lines)."""
    where = np.flatnonzero(mask)[:EXAMPLES]
    shown = []
    for i in where:
        value = values.iloc[i]
        text = "<missing>" if pd.isna(value) else repr(str(value)[:60])
        shown.append(f"row {row_offset + int(i) + 1}: {text}")
    return tuple(shown)


def lead_examples(ids: pd.Series, values: pd.Series, mask: np.ndarray) -> tuple[str, ...]:
    """A few `lead 'id': value` examples of the masked rows, for checks of cleaned leads."""
    where = np.flatnonzero(mask)[:EXAMPLES]
    shown = []
    for i in where:
        value = values.iloc[i]
        text = "<missing>" if pd.isna(value) else str(value)[:60]
        shown.append(f"lead {str(ids.iloc[i])[:60]!r}: {text}")
    return tuple(shown)
