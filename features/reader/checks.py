"""Checks of a whole export read from files or a database: what no single posted lead can show.

Two kinds, each refusing with a `ContractError` that names the file, the column and the rows:

- the files themselves, where an export is wrong in ways pandas reads silently: a declared
  as-of time that is a number (it would read as Unix time) or that comes before all the data,
  a table present both as CSV and Parquet, Parquet columns of lists or structs (they would
  become "['Owner']" text), a quote that is never closed (blamed on the line and column where
  it opens, not on wherever pandas gave up), cells too long to be CRM values;
- the export as a whole: implausible dates, leads without a created_at, MQLs before the lead
  was created, an events table none of whose events belongs to a known lead.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.config import Config
from features.contract import LEAD_TIMESTAMPS, TIMELINE_ORDER, ContractError
from features.dialect import AUTO, resolve_dialect
from features.reader.eventlog import EventLog
from features.reader.events import CodedEvents, EventChunk
from features.reader.problems import EXAMPLES, Problem, lead_examples, raise_problems, row_examples
from features.reader.report import ReadReport

#: A text cell longer than this is no CRM value but a broken export (and a drain on memory).
MAX_CELL_CHARS = 10_000
#: Timestamps before this are placeholders (1900-01-01, 0000-01-01), not CRM history.
EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")

# --------------------------------------------------------------------------- files


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


# --------------------------------------------------------------------------- cells


def cell_lengths(values: pd.Series) -> np.ndarray | None:
    """Characters per cell, or None when no cell can exceed `MAX_CELL_CHARS` (the fast path:
    one pass over the byte lengths, which are never below the character counts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arrow = pa.array(values, from_pandas=True)
        if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
            arrow = pa.array(values.astype("str"), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        arrow = pa.array(values.astype("str"), from_pandas=True)
    longest = pc.max(pc.binary_length(arrow)).as_py()
    if longest is None or longest <= MAX_CELL_CHARS:
        return None
    return np.asarray(pc.fill_null(pc.utf8_length(arrow), 0).to_numpy(zero_copy_only=False))


def _text_values(values: pd.Series) -> pd.Series | None:
    """The column as text to measure, or None when it holds no text (or no long category)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        if cell_lengths(pd.Series(values.cat.categories.astype("str"))) is None:
            return None
        return values.astype("str")
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        return values
    return None


def long_cell_problems(
    frame: pd.DataFrame, table: str, columns: Sequence[str] | None = None, row_offset: int = 0
) -> list[Problem]:
    """Text columns with cells longer than `MAX_CELL_CHARS`, one problem per column.

    `columns` limits the check (None: every column); `row_offset` numbers the rows of a chunk
    as rows of its whole table in the examples.
    """
    problems = []
    for column in frame.columns if columns is None else [c for c in columns if c in frame]:
        values = _text_values(frame[column])
        if values is None:
            continue
        lengths = cell_lengths(values)
        if lengths is None:
            continue
        too_long = lengths > MAX_CELL_CHARS
        if too_long.any():
            problems.append(
                Problem(
                    table,
                    str(column),
                    f"are longer than {MAX_CELL_CHARS:,} characters "
                    f"(the longest has {int(lengths.max()):,})",
                    int(too_long.sum()),
                    row_examples(values, too_long, row_offset),
                )
            )
    return problems


def checked_event_chunks(
    chunks: Iterable[EventChunk], table: str, columns: Sequence[str]
) -> Iterator[EventChunk]:
    """Event chunks whose id and type cells are of a sane length (checked as they stream).

    Coded events need only their type names checked: their lead ids are those of the leads,
    whose cells were checked before any event."""
    offset = 0
    for chunk in chunks:
        if isinstance(chunk, CodedEvents):
            names = pd.Series(chunk.type_names.astype("str"))
            if cell_lengths(names) is not None:
                raise_problems(long_cell_problems(chunk.types_frame(), table, columns, offset))
        else:
            raise_problems(long_cell_problems(chunk, table, columns, offset))
        offset += len(chunk)
        yield chunk


def boolean_size_problems(frame: pd.DataFrame, config: Config, table: str) -> list[Problem]:
    """A typed source (Parquet, SQL) with true/false company sizes: no number of employees."""
    column = {v: k for k, v in config.mapping.leads.items()}.get("company_size", "company_size")
    if column not in frame or not pd.api.types.is_bool_dtype(frame[column]):
        return []
    bad = frame[column].notna().to_numpy()
    return [
        Problem(
            table,
            column,
            "are true/false, not a non-negative number of employees",
            int(bad.sum()),
            row_examples(frame[column], bad),
        )
    ]


def swallowed_line_problems(frame: pd.DataFrame, config: Config, table: str) -> list[Problem]:
    """Text cells of a CSV export holding a line break and the delimiter: a quote opened in
    that cell and closed only lines later, so the problem is there, not in the columns after."""
    if config.source.url or not table.endswith((".csv", ".csv.gz", ".tsv")):
        return []
    sep = "\t" if table.endswith(".tsv") else config.source.delimiter
    if sep == AUTO:  # as the file was read
        sep = resolve_dialect(Path(table), config.source).delimiter
    problems = []
    for column in frame.columns:
        if not (pd.api.types.is_string_dtype(frame[column]) or frame[column].dtype == object):
            continue
        bad = line_breaks_with_delimiter(frame[column], sep)
        if bad.any():
            problems.append(
                Problem(
                    table,
                    str(column),
                    "hold a line break and the delimiter: a quote opens there and closes only "
                    'lines later (a missing "?), swallowing the rows in between',
                    int(bad.sum()),
                    row_examples(frame[column], bad),
                )
            )
    return problems


# --------------------------------------------------------------------------- the whole export


def plausible_range(config: Config) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Timestamps outside [1970, max(now, declared as-of) + 1 day] are errors in the export."""
    latest = pd.Timestamp.now(tz="UTC")
    if config.as_of is not None:
        declared = pd.Timestamp(config.as_of)
        declared = declared.tz_localize("UTC") if declared.tzinfo is None else declared
        latest = max(latest, declared.tz_convert("UTC"))
    return EARLIEST, latest + pd.Timedelta(days=1)


def _implausible_times(clean: pd.DataFrame, config: Config, table: str) -> list[Problem]:
    earliest, latest = plausible_range(config)
    problems = []
    for column in LEAD_TIMESTAMPS:
        values = clean[column]
        odd = ((values < earliest) | (values > latest)).fillna(False).to_numpy(dtype=bool)
        if odd.any():
            problems.append(
                Problem(
                    table,
                    column,
                    f"are implausible: before {earliest:%Y-%m-%d} or after {latest:%Y-%m-%d} "
                    "(a placeholder date or a typo?)",
                    int(odd.sum()),
                    lead_examples(clean["lead_id"], values, odd),
                )
            )
    return problems


def _missing_created(clean: pd.DataFrame, config: Config, table: str) -> list[Problem]:
    missing = clean["created_at"].isna().to_numpy()
    if not missing.any():
        return []
    ids = clean["lead_id"]
    odd_ids = ids[missing].astype("str")
    hint = next(
        (
            f" (ids holding {sep!r}: are some rows delimited differently?)"
            for sep in (";", "\t", "|", ",")
            if sep != config.source.delimiter and odd_ids.str.contains(sep, regex=False).any()
        ),
        "",
    )
    return [
        Problem(
            table,
            "created_at",
            "have no created_at, which the contract requires" + hint,
            int(missing.sum()),
            lead_examples(ids, clean["created_at"], missing),
        )
    ]


def _out_of_order(clean: pd.DataFrame, later: str, earlier: str, table: str) -> list[Problem]:
    early = (clean[later] < clean[earlier]).fillna(False).to_numpy(dtype=bool)
    if not early.any():
        return []
    shown = clean[later].astype("str") + f" < {earlier} " + clean[earlier].astype("str")
    return [
        Problem(
            table,
            later,
            f"have {later} before {earlier}",
            int(early.sum()),
            lead_examples(clean["lead_id"], shown, early),
        )
    ]


def check_lead_timeline(clean: pd.DataFrame, config: Config, table: str) -> None:
    """Every lead has a plausible created_at, and no stage time comes before the lead was
    created (`TIMELINE_ORDER`; an SQL before the MQL is refused when the leads are read)."""
    problems = _implausible_times(clean, config, table)
    if not config.source.flat:
        problems += _missing_created(clean, config, table)
        for later, earlier in TIMELINE_ORDER:
            if earlier == "created_at" and later in clean:  # sql_at < mql_at: read_leads
                problems += _out_of_order(clean, later, earlier, table)
    raise_problems(problems)


def check_event_log(
    log: EventLog, leads: pd.DataFrame, report: ReadReport, config: Config, names: tuple[str, str]
) -> None:
    """Events at plausible times, and not every one of them for a lead the leads table lacks."""
    leads_name, events_name = names
    if events_name and not report.events_read:
        raise ContractError(
            f"{events_name}: the table has no rows, so every lead would look unengaged; "
            "an export without events is declared as one (source.events: null, a flat export)"
        )
    if report.events_read and report.events_unknown_lead == report.events_read:
        raise ContractError(
            f"{events_name}: none of its {report.events_read:,} events belongs to a lead in "
            f"{leads_name}: are both files from the same export, with ids written the same way?"
        )
    if not len(log):
        return
    earliest, latest = plausible_range(config)
    lo, hi = earliest.value // 1_000_000, latest.value // 1_000_000  # ns to ms
    odd = (log.at_ms < lo) | (log.at_ms > hi)
    if odd.any():
        where = np.flatnonzero(odd)[:EXAMPLES]
        shown = tuple(
            f"lead {str(leads['lead_id'].iloc[log.lead[i]])[:60]!r}: "
            f"{pd.Timestamp(int(log.at_ms[i]), unit='ms', tz='UTC')}"
            for i in where
        )
        raise_problems(
            [
                Problem(
                    events_name,
                    "occurred_at",
                    f"are implausible: before {earliest:%Y-%m-%d} or after {latest:%Y-%m-%d} "
                    "(a placeholder date or a typo?)",
                    int(odd.sum()),
                    shown,
                )
            ]
        )
