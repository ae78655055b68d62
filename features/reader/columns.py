"""Putting an export's columns onto the contract: renaming, exclusion, required columns.

Shared by the leads and the events, and by the Spark engine, which renames each chunk of
events it reads on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from common.config import Config
from features.contract import EVENT_COLUMNS
from features.dialect import delimiter_hint
from features.reader.problems import Problem


def rename_to_contract(
    frame: pd.DataFrame, renames: dict[str, str], table: str, key: str
) -> tuple[pd.DataFrame, list[Problem]]:
    """The frame with trimmed header names, renamed by `renames` (export name -> contract name).

    `key` is the mapping section the renames come from (`leads`, `events`), for the message. A
    rename of a column the frame lacks is a problem naming the columns it does have (and a
    wrong delimiter, when the header looks like one); the frame is then returned unchanged.
    """
    columns = {str(c).strip(): c for c in frame.columns}
    missing = [name for name in renames if name not in columns]
    if missing:
        shown = ", ".join(repr(c) for c in list(columns)[:12])
        problem = Problem(
            table,
            missing[0],
            f"(all): mapping.{key} names columns not in the file: {missing}; "
            f"its columns are {shown}" + delimiter_hint(list(columns), ""),
            len(frame),
        )
        return frame, [problem]
    frame = frame.rename(columns={c: str(c).strip() for c in frame.columns})
    return frame.rename(columns=renames), []


def drop_excluded(frame: pd.DataFrame, exclude: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The frame without the columns the config's `exclude` names, and the names dropped.

    Excluded columns (personal data, say) are never read further, whatever the mapping says.
    """
    wanted = {e.strip() for e in exclude}
    hits = [c for c in frame.columns if str(c) in wanted]
    return frame.drop(columns=hits), [str(c) for c in hits]


def one_column_hint(frame: pd.DataFrame) -> str:
    """A hint when the frame is a single column whose name holds a delimiter: misread CSV."""
    if frame.shape[1] == 1:
        header = str(frame.columns[0])
        for sep in (";", "\t", "|", ","):
            if sep in header:
                return f" (one column only, whose name holds {sep!r}: is the delimiter wrong?)"
    return ""


def missing_required(frame: pd.DataFrame, required: Sequence[str], table: str) -> list[Problem]:
    """One problem per required contract column the (renamed) frame lacks."""
    missing = [c for c in required if c not in frame.columns]
    if not missing:
        return []
    found = ", ".join(repr(str(c)) for c in frame.columns[:12])
    return [
        Problem(
            table,
            c,
            f"(all): required column is missing; found {found}" + one_column_hint(frame),
            len(frame),
        )
        for c in missing
    ]


def event_source_columns(config: Config) -> list[str]:
    """Export names of the event columns features need (context columns are not read).

    Readers of events ask for these columns only: Parquet and SQL read nothing else.
    """
    reverse = {v: k for k, v in config.mapping.events.items()}
    return [reverse.get(c, c) for c, needed in EVENT_COLUMNS.items() if needed]
