"""Reading a CRM snapshot and holding it to the data contract.

The edges (`read_snapshot`, `read_tables`) open a folder of CSV/Parquet files or SQL tables.
The middle is pure: `prepare_leads` and `encode_events` map an export onto the contract,
clean the messy values real exports have, and collect every breach of the contract into one
`ContractError` that names the table, the column, how many rows are bad and a few examples.

Events are held as an `EventLog` of three numpy arrays (lead index, milliseconds since the
epoch, event type index), sorted by lead and time: 50M events fit in well under a gigabyte,
and a single lead posted to the API needs no pandas machinery at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import clean
from features.columns import fan_out, with_row_ids
from common.config import Config, CustomField, MappingConfig, SourceConfig
from features.contract import (
    CONVERTED,
    EVENT_COLUMNS,
    EVENT_TYPES,
    FREE_MAIL_DOMAINS,
    LEAD_CATEGORIES,
    LEAD_COLUMNS,
    LEAD_TIMESTAMPS,
    ContractError,
)
from features.custom_types import typed_custom_fields
from features.dialect import AUTO, delimiter_hint, resolve_dialect, with_dialect
from features.joins import join_tables
from features.parallel import ordered_map, worker_count
from features.quarantine import Quarantine, check_event_share, set_aside_events, set_aside_leads
from features.snapshot_checks import (
    check_as_of_after_data,
    check_parquet_types,
    declared_time,
    line_breaks_with_delimiter,
    one_file,
    unterminated_quote,
)

NAT_MS = np.iinfo(np.int64).min
OTHER = EVENT_TYPES.index("other")
_EXAMPLES = 3
_EVENT_BATCH_ROWS = 2_000_000
_EXTENSIONS = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")
_TYPE_INDEX = {name: i for i, name in enumerate(EVENT_TYPES)}


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


def _examples(values: pd.Series, mask: np.ndarray, row_offset: int = 0) -> tuple[str, ...]:
    """A few `row N: 'value'` examples of the masked rows (rows numbered from 1, as data lines)."""
    where = np.flatnonzero(mask)[:_EXAMPLES]
    shown = []
    for i in where:
        value = values.iloc[i]
        text = "<missing>" if pd.isna(value) else repr(str(value)[:60])
        shown.append(f"row {row_offset + int(i) + 1}: {text}")
    return tuple(shown)


@dataclass(frozen=True)
class EventLog:
    """Engagement events as arrays sorted by (lead, at_ms, kind), exact duplicates removed.

    `lead` indexes the rows of the snapshot's leads frame, `at_ms` is milliseconds since the
    Unix epoch (UTC) and `kind` indexes `EVENT_TYPES`.
    """

    lead: np.ndarray
    at_ms: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.lead.shape[0])

    @staticmethod
    def empty() -> EventLog:
        return EventLog(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int8))

    def lead_bounds(self, first: int, stop: int) -> tuple[int, int]:
        """The slice of events that belong to leads first..stop-1."""
        # needles of the log's own dtype: a list would cast the whole array to int64 each call
        needles = np.array([first, stop], dtype=self.lead.dtype)
        lo, hi = np.searchsorted(self.lead, needles, side="left")
        return int(lo), int(hi)

    def to_frame(self, lead_ids: pd.Series) -> pd.DataFrame:
        """The events as a contract frame (for notebooks and exports)."""
        return pd.DataFrame(
            {
                "lead_id": lead_ids.to_numpy()[self.lead],
                "occurred_at": pd.to_datetime(self.at_ms, unit="ms", utc=True),
                "event_type": pd.Categorical.from_codes(
                    self.kind, categories=pd.Index(EVENT_TYPES)
                ),
            }
        )


def sort_events(
    lead: np.ndarray, at_ms: np.ndarray, kind: np.ndarray, bucket_leads: int = 100_000
) -> tuple[EventLog, int]:
    """Sort events by (lead, time, type) and drop exact duplicates; returns the log and the count.

    Events are bucketed by lead range first (a radix pass), then each bucket is sorted on one
    packed int64 key (lead offset | time | type), which is several times faster than lexsort.
    """
    n = lead.shape[0]
    if n == 0:
        return EventLog.empty(), 0
    base = int(at_ms.min())
    span = int(at_ms.max()) - base
    time_bits = max(span.bit_length(), 1)
    lead_bits = max((bucket_leads - 1).bit_length(), 1)
    if max(int(lead.max()).bit_length(), 1) + time_bits + 5 <= 63:
        bucket_leads = int(lead.max()) + 1  # everything fits one packed key: one sort, no buckets
        lead_bits = max((bucket_leads - 1).bit_length(), 1)
    if lead_bits + time_bits + 5 > 63:
        raise ContractError(
            f"events: column 'occurred_at': the events span {span / 86_400_000 / 365.25:.0f} "
            "years, too long to index; check for wrong dates"
        )
    bucket = (lead // bucket_leads).astype(np.int32)
    n_buckets = int(bucket.max()) + 1
    if n_buckets > 1:
        order = np.argsort(bucket.astype(np.int16) if n_buckets < 2**15 else bucket, kind="stable")
        lead, at_ms, kind, bucket = lead[order], at_ms[order], kind[order], bucket[order]
        del order
    starts = np.searchsorted(bucket, np.arange(n_buckets + 1), side="left")
    out_lead, out_ms, out_kind = [], [], []
    dropped = 0
    for b in range(n_buckets):
        lo, hi = int(starts[b]), int(starts[b + 1])
        if lo == hi:
            continue
        first = b * bucket_leads
        key = (lead[lo:hi].astype(np.int64) - first) << (time_bits + 5)
        key |= (at_ms[lo:hi] - base) << 5
        key |= kind[lo:hi].astype(np.int64)
        key.sort()
        keep = np.ones(key.shape[0], dtype=bool)
        keep[1:] = key[1:] != key[:-1]
        dropped += int(key.shape[0] - keep.sum())
        key = key[keep]
        out_lead.append((key >> (time_bits + 5)).astype(np.int32) + first)
        out_ms.append(((key >> 5) & ((1 << time_bits) - 1)) + base)
        out_kind.append((key & 31).astype(np.int8))
    log = EventLog(np.concatenate(out_lead), np.concatenate(out_ms), np.concatenate(out_kind))
    return log, dropped


@dataclass
class ReadReport:
    """What reading the snapshot dropped, replaced or ignored, for the log and the report."""

    leads: int = 0
    events_read: int = 0
    events_kept: int = 0
    events_unknown_lead: int = 0
    events_duplicate: int = 0
    unknown_event_types: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    excluded_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantine: Quarantine = field(default_factory=Quarantine)

    def lines(self) -> list[str]:
        lines = [
            f"{self.leads:,} leads, {self.events_kept:,} events kept of {self.events_read:,} read"
        ]
        if self.events_unknown_lead:
            lines.append(f"{self.events_unknown_lead:,} events of unknown leads dropped")
        if self.events_duplicate:
            lines.append(f"{self.events_duplicate:,} duplicate events dropped")
        if self.unknown_event_types:
            top = sorted(self.unknown_event_types.items(), key=lambda kv: -kv[1])[:5]
            shown = ", ".join(f"{k!r}: {v:,}" for k, v in top)
            total = sum(self.unknown_event_types.values())
            lines.append(f"{total:,} events of unknown types kept as 'other' ({shown})")
        if self.excluded_columns:
            lines.append(f"excluded columns: {', '.join(self.excluded_columns)}")
        if self.ignored_columns:
            lines.append(f"columns not in the contract, ignored: {', '.join(self.ignored_columns)}")
        return lines + self.notes + self.quarantine.lines()


@dataclass(frozen=True)
class Snapshot:
    """A snapshot held to the contract.

    `leads` is ordered by (account_id, lead_id), so each account's leads are adjacent, and its
    row position is the lead index used by `events`. `email` is replaced by `email_free`.
    """

    leads: pd.DataFrame
    events: EventLog
    as_of: pd.Timestamp | None
    flat: bool
    custom_fields: tuple[CustomField, ...]
    report: ReadReport


# --------------------------------------------------------------------------- cleaning


#: Unicode whitespace as a character class: unlike `\s` it stays on pyarrow's fast regex path.
_WHITESPACE = "[" + "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + "]+"


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


def _fold(values: pd.Series) -> pd.Series:
    """Trim, collapse inner whitespace and case-fold text values."""
    return values.str.strip().str.replace(_WHITESPACE, " ", regex=True).str.casefold()


def clean_text(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """Trimmed text with the config's missing placeholders as NA and its value map applied."""
    return per_distinct(values.astype("str"), lambda v: _clean_text(v, mapping, column))


def _clean_text(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    text = values.str.strip().str.replace(_WHITESPACE, " ", regex=True)
    folded = text.str.casefold()
    text = text.mask(folded.isin(mapping.missing_values) | text.isna())
    value_map = {k.strip().casefold(): v for k, v in mapping.values.get(column, {}).items()}
    if value_map:
        mapped = folded.map(value_map)
        text = mapped.where(mapped.notna(), text)
    return text.astype("str")


def clean_category(values: pd.Series, mapping: MappingConfig, column: str) -> pd.Series:
    """A categorical fit attribute: cleaned, then case-folded so 'USA ' and 'usa' agree."""
    return per_distinct(values.astype("str"), lambda v: _fold(_clean_text(v, mapping, column)))


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


# --------------------------------------------------------------------------- leads


def _rename(
    frame: pd.DataFrame, renames: dict[str, str], table: str, key: str
) -> tuple[pd.DataFrame, list[Problem]]:
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


def _delimiter_hint(frame: pd.DataFrame) -> str:
    if frame.shape[1] == 1:
        header = str(frame.columns[0])
        for sep in (";", "\t", "|", ","):
            if sep in header:
                return f" (one column only, whose name holds {sep!r}: is the delimiter wrong?)"
    return ""


def _drop_excluded(frame: pd.DataFrame, exclude: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    wanted = {e.strip() for e in exclude}
    hits = [c for c in frame.columns if str(c) in wanted]
    return frame.drop(columns=hits), [str(c) for c in hits]


def prepare_leads(
    raw: pd.DataFrame, config: Config, table: str = "leads"
) -> tuple[pd.DataFrame, ReadReport]:
    """Map, clean and check the leads table; raises `ContractError` listing every problem.

    The result holds the contract columns (email replaced by `email_free`), `converted` for a
    flat export, and one `custom_*` column per custom field, ordered by (account_id, lead_id).
    """
    report = ReadReport()
    mapping, flat = config.mapping, config.source.flat
    frame, excluded = _drop_excluded(raw, config.exclude)
    frame = fan_out(frame, mapping, table)
    frame, problems = _rename(frame, mapping.leads, table, "leads")
    frame, excluded_after = _drop_excluded(frame, config.exclude)
    report.excluded_columns = excluded + excluded_after
    raise_problems(problems)
    frame, report.notes = with_row_ids(frame, config, table)

    required = [c for c, needed in LEAD_COLUMNS.items() if needed and not (flat and c != "lead_id")]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns[:12])
        raise_problems(
            [
                Problem(
                    table,
                    c,
                    f"(all): required column is missing; found {found}" + _delimiter_hint(frame),
                    len(frame),
                )
                for c in missing
            ]
        )

    custom = {cf.column.strip(): cf for cf in config.custom_fields}
    absent = [name for name in custom if name not in frame.columns]
    raise_problems(
        [
            Problem(
                table,
                n,
                "(all): custom field column is not in the table"
                + delimiter_hint([str(c) for c in frame.columns], ""),
                len(frame),
            )
            for n in absent
        ]
    )
    if config.source.on_bad_rows == "drop":
        frame = set_aside_leads(frame, config, table, custom, report.quarantine)
    known = set(LEAD_COLUMNS) | {CONVERTED} | set(custom)
    report.ignored_columns = [str(c) for c in frame.columns if str(c) not in known]

    out = pd.DataFrame(index=frame.index)
    problems = []
    ids = clean_text(frame["lead_id"], mapping, "lead_id")
    if ids.isna().any():
        problems.append(
            Problem(
                table,
                "lead_id",
                "have no lead_id",
                int(ids.isna().sum()),
                _examples(frame["lead_id"], ids.isna().to_numpy()),
            )
        )
    dup = ids.duplicated(keep=False) & ids.notna()
    if dup.any():
        problems.append(
            Problem(
                table,
                "lead_id",
                "share a lead_id with another row (duplicate ids)",
                int(dup.sum()),
                _examples(ids, dup.to_numpy()),
            )
        )
    out["lead_id"] = ids
    out["account_id"] = (
        clean_text(frame["account_id"], mapping, "account_id")
        if "account_id" in frame
        else pd.Series(pd.NA, index=frame.index, dtype="str")
    )
    for column in LEAD_TIMESTAMPS:
        if column in frame:
            parsed, bad = parse_timestamps(frame[column], mapping)
            if bad.any():
                problems.append(
                    Problem(
                        table,
                        column,
                        "have a timestamp that is not ISO 8601",
                        int(bad.sum()),
                        _examples(frame[column], bad),
                    )
                )
            out[column] = parsed
        else:
            out[column] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ms, UTC]")
    if "mql_at" in frame and "sql_at" in frame:
        early = (out["sql_at"] < out["mql_at"]).fillna(False).to_numpy()
        if early.any():
            shown = frame["sql_at"].astype("str") + " < mql_at " + frame["mql_at"].astype("str")
            problems.append(
                Problem(
                    table,
                    "sql_at",
                    "have sql_at before mql_at",
                    int(early.sum()),
                    _examples(shown, early),
                )
            )
    out["job_title"] = (
        clean_text(frame["job_title"], mapping, "job_title")
        if "job_title" in frame
        else pd.Series(pd.NA, index=frame.index, dtype="str")
    )
    for column in LEAD_CATEGORIES:
        out[column] = (
            clean_category(frame[column], mapping, column)
            if column in frame
            else pd.Series(pd.NA, index=frame.index, dtype="str")
        )
    if "company_size" in frame:
        size, bad = parse_company_size(frame["company_size"], mapping)
        if bad.any():
            problems.append(
                Problem(
                    table,
                    "company_size",
                    "are not a non-negative number of employees",
                    int(bad.sum()),
                    _examples(frame["company_size"], bad),
                )
            )
        out["company_size"] = size
    else:
        out["company_size"] = np.nan
    out["email_free"] = (
        free_mail_flag(frame["email"], mapping)
        if "email" in frame
        else pd.Series(pd.NA, index=frame.index, dtype="boolean")
    )
    if CONVERTED in frame:
        flag, bad = parse_flags(frame[CONVERTED], mapping, CONVERTED)
        if bad.any():
            problems.append(
                Problem(
                    table,
                    CONVERTED,
                    "are neither a true nor a false value",
                    int(bad.sum()),
                    _examples(frame[CONVERTED], bad),
                )
            )
        out[CONVERTED] = flag
    for name, cf in custom.items():
        values = frame[name]
        if cf.value_type == "categorical":
            out[cf.feature] = clean_category(values, mapping, name)
        elif cf.value_type == "boolean":
            flag, bad = parse_flags(values, mapping, name)
            if bad.any():
                problems.append(
                    Problem(
                        table,
                        name,
                        "are neither a true nor a false value",
                        int(bad.sum()),
                        _examples(values, bad),
                    )
                )
            out[cf.feature] = flag.astype("float64")
        else:
            if pd.api.types.is_numeric_dtype(values):
                number = values.astype("float64")
                bad = np.zeros(len(values), dtype=bool)
            else:
                text = clean_text(values, mapping, name)
                number = pd.to_numeric(text, errors="coerce").astype("float64")
                bad = (text.notna() & number.isna()).to_numpy()
            if bad.any():
                problems.append(
                    Problem(table, name, "are not numbers", int(bad.sum()), _examples(values, bad))
                )
            out[cf.feature] = number
    raise_problems(problems)

    out = out.sort_values(["account_id", "lead_id"], na_position="last", kind="stable")
    report.leads = len(out)
    return out.reset_index(drop=True), report


# --------------------------------------------------------------------------- events


def event_type_codes(names: pd.Series, mapping: MappingConfig) -> np.ndarray:
    """Event type index per distinct name: contract names after the value map, else `other`."""
    value_map = {k.strip().casefold(): v for k, v in mapping.values.get("event_type", {}).items()}
    folded = _fold(names.astype("str"))
    mapped = folded.map(lambda v: value_map.get(v, v) if isinstance(v, str) else v)
    snake = mapped.str.strip().str.casefold().str.replace(r"[\s\-]+", "_", regex=True)
    return snake.map(_TYPE_INDEX).fillna(OTHER).astype(np.int8).to_numpy()


@dataclass
class _EventChunk:
    lead: np.ndarray
    at_ms: np.ndarray
    kind: np.ndarray
    unknown_lead: int
    unknown_types: dict[str, int]
    rows: int = 0


def encode_events(
    chunk: pd.DataFrame, lead_index: pd.Index, mapping: MappingConfig, table: str, row_offset: int
) -> _EventChunk:
    """Turn one chunk of contract-named event rows into arrays; checks timestamps.

    Each column is factorised first and only its distinct values are cleaned, which keeps
    50M rows cheap. Events of leads not in `lead_index` are dropped and counted.
    """
    codes, uniques = pd.factorize(chunk["lead_id"], use_na_sentinel=True)
    cleaned = pd.Series(uniques).astype("str").str.strip()
    lookup = np.append(lead_index.get_indexer(pd.Index(cleaned)), -1).astype(np.int32)
    lead = lookup[codes]

    parsed, bad = parse_timestamps(chunk["occurred_at"], mapping)
    at_ms = parsed.array.asi8 if hasattr(parsed.array, "asi8") else parsed.to_numpy().view("i8")
    missing_time = (at_ms == NAT_MS) & ~bad
    if bad.any() or missing_time.any():
        problems = []
        if bad.any():
            problems.append(
                Problem(
                    table,
                    "occurred_at",
                    "have a timestamp that is not ISO 8601",
                    int(bad.sum()),
                    _examples(chunk["occurred_at"], bad, row_offset),
                )
            )
        if missing_time.any():
            problems.append(
                Problem(
                    table,
                    "occurred_at",
                    "have no timestamp",
                    int(missing_time.sum()),
                    _examples(chunk["occurred_at"], missing_time, row_offset),
                )
            )
        raise_problems(problems)

    type_codes, type_names = pd.factorize(chunk["event_type"], use_na_sentinel=True)
    names = pd.Series(type_names)
    per_name = np.append(event_type_codes(names, mapping), OTHER).astype(np.int8)
    kind = per_name[type_codes]
    counts = np.bincount(type_codes + 1, minlength=len(names) + 1)
    unknown_types = {
        ("<missing>" if i < 0 else str(names.iloc[i])): int(counts[i + 1])
        for i in range(-1, len(names))
        if per_name[i] == OTHER
        and counts[i + 1] > 0
        and not (i >= 0 and str(names.iloc[i]).strip().casefold() == "other")
    }
    known = lead >= 0
    return _EventChunk(
        lead[known],
        np.asarray(at_ms)[known],
        kind[known],
        int((~known).sum()),
        unknown_types,
        len(chunk),
    )


def collect_events(
    chunks: Iterable[pd.DataFrame],
    leads: pd.DataFrame,
    config: Config,
    table: str,
    report: ReadReport,
) -> EventLog:
    """Encode event chunks against the leads, then sort and de-duplicate them into one log."""
    lead_index = pd.Index(leads["lead_id"].to_numpy())
    # its hash table is built here, once: the workers that encode the chunks only read it
    lead_index.get_indexer(lead_index[:1])

    def encode(item: tuple[pd.DataFrame, int]) -> _EventChunk:
        frame, first_row = item
        return encode_events(frame, lead_index, config.mapping, table, first_row)

    # chunks are checked here in order and encoded side by side (features.parallel)
    parts: list[_EventChunk] = []
    for part in ordered_map(
        encode,
        _contract_event_chunks(chunks, config, table, report),
        worker_count(config.features.workers),
    ):
        parts.append(part)
        report.events_unknown_lead += part.unknown_lead
        for name, count in part.unknown_types.items():
            report.unknown_event_types[name] = report.unknown_event_types.get(name, 0) + count
    check_event_share(report.quarantine, config, table)
    if not parts:
        return EventLog.empty()
    lead = np.concatenate([p.lead for p in parts])
    at_ms = np.concatenate([p.at_ms for p in parts])
    kind = np.concatenate([p.kind for p in parts])
    del parts
    log, dropped = sort_events(lead, at_ms, kind, config.features.chunk_leads)
    report.events_duplicate = dropped
    report.events_kept = len(log)
    return log


def _contract_event_chunks(
    chunks: Iterable[pd.DataFrame], config: Config, table: str, report: ReadReport
) -> Iterator[tuple[pd.DataFrame, int]]:
    """Event chunks renamed to the contract, with their first row's offset; raises
    `ContractError` for a missing required column."""
    offset = 0
    for raw in chunks:
        if offset == 0:
            frame, excluded = _drop_excluded(raw, config.exclude)
            report.excluded_columns += excluded
        else:
            frame = raw
        frame, problems = _rename(frame, config.mapping.events, table, "events")
        raise_problems(problems)
        missing = [c for c, needed in EVENT_COLUMNS.items() if needed and c not in frame.columns]
        if missing:
            found = ", ".join(repr(str(c)) for c in frame.columns[:12])
            raise_problems(
                [
                    Problem(
                        table,
                        c,
                        f"(all): required column is missing; found {found}"
                        + _delimiter_hint(frame),
                        len(frame),
                    )
                    for c in missing
                ]
            )
        if config.source.on_bad_rows == "drop":
            kept = set_aside_events(frame, config, table, offset, report.quarantine)
            offset += len(frame) - len(kept)
            frame = kept
        yield frame, offset
        offset += len(frame)
    report.events_read = offset  # set-aside events included


def snapshot_from_frames(
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    config: Config,
    names: tuple[str, str] = ("leads", "events"),
) -> Snapshot:
    """Build a `Snapshot` from in-memory frames (as exported, before mapping)."""
    clean, report = prepare_leads(leads, config, names[0])
    chunks = [] if events is None else [events]
    log = collect_events(chunks, clean, config, names[1], report)
    return Snapshot(
        clean, log, _as_of(config, clean, log), config.source.flat, config.custom_fields, report
    )


def _as_of(config: Config, leads: pd.DataFrame, events: EventLog) -> pd.Timestamp | None:
    if config.as_of is not None:
        stamp = pd.Timestamp(config.as_of)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    latest = [leads[c].max() for c in LEAD_TIMESTAMPS if c in leads and leads[c].notna().any()]
    if len(events):
        latest.append(pd.Timestamp(int(events.at_ms.max()), unit="ms", tz="UTC"))
    return max(latest) if latest else None


# --------------------------------------------------------------------------- sources


def _find_file(folder: Path, name: str) -> Path:
    direct = folder / name
    if direct.suffix and direct.is_file():
        return direct
    tried = [folder / f"{name}{ext}" for ext in _EXTENSIONS]
    found = [candidate for candidate in tried if candidate.is_file()]
    one_file(found, name, folder)
    if found:
        return found[0]
    shown = ", ".join(p.name for p in tried)
    raise ContractError(f"no '{name}' file in {folder} (looked for {shown})")


def _encoding(source: SourceConfig) -> str:
    """UTF-8 reads as utf-8-sig: a byte-order mark (as Excel writes) is not part of the header."""
    return (
        "utf-8-sig"
        if source.encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        else (source.encoding)
    )


def _check_header(path: Path, sep: str, source: SourceConfig) -> None:
    """Refuse a header that names one column twice (pandas would rename the second `x.1`)."""
    import csv
    import gzip

    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=_encoding(source), newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
    except (UnicodeDecodeError, csv.Error, OSError, EOFError):
        return  # pandas reports these with the file name
    names = [name.strip() for name in header]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ContractError(f"{path}: the header names these columns more than once: {twice}")


def _read_csv(path: Path, source: SourceConfig, chunksize: int | None = None) -> Any:
    source = with_dialect(source, resolve_dialect(path, source))
    sep = "\t" if path.suffix == ".tsv" else source.delimiter
    _check_header(path, sep, source)
    try:
        return pd.read_csv(
            path,
            sep=sep,
            dtype="str",
            keep_default_na=False,
            na_filter=False,
            encoding=_encoding(source),
            chunksize=chunksize,
            skipinitialspace=False,
        )
    except pd.errors.EmptyDataError:
        raise ContractError(f"{path}: the file is empty (no header row)") from None
    except UnicodeDecodeError as error:
        raise ContractError(
            f"{path}: not valid {source.encoding} text at byte {error.start}; "
            "set source.encoding (e.g. latin-1)"
        ) from None
    except pd.errors.ParserError as error:
        raise _csv_error(path, sep, source, error) from None


def _csv_error(path: Path, sep: str, source: SourceConfig, error: Exception) -> ContractError:
    """pandas' parse error, or where the quote that swallowed the rest of the file opens."""
    if "EOF inside string" in str(error):
        where = unterminated_quote(path, sep, _encoding(source))
        if where is not None:
            return ContractError(
                f"{path}: {where}: a quoted value opens here and is never closed (a missing "
                '"), so the rest of the file would be read into it'
            )
    return ContractError(f"{path}: not a readable CSV file: {error}")


def _read_table_file(path: Path, source: SourceConfig) -> pd.DataFrame:
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except Exception as error:  # pyarrow raises several unrelated types
            raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
        check_parquet_types(schema, path)
        try:
            frame = pd.read_parquet(path)
        except Exception as error:
            raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
        return frame
    frame = _read_csv(path, source)
    assert isinstance(frame, pd.DataFrame)
    return frame


def _csv_chunks(path: Path, source: SourceConfig) -> Iterator[pd.DataFrame]:
    reader = _read_csv(path, source, chunksize=_EVENT_BATCH_ROWS)
    try:
        yield from reader
    except UnicodeDecodeError as error:
        raise ContractError(
            f"{path}: not valid {source.encoding} text at byte {error.start}; set source.encoding"
        ) from None
    except pd.errors.ParserError as error:
        sep = "\t" if path.suffix == ".tsv" else source.delimiter
        raise _csv_error(path, sep, source, error) from None


def _parquet_chunks(path: Path, wanted: Sequence[str], workers: int = 1) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as error:
        raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
    check_parquet_types(schema, path, wanted)
    names = schema.names
    try:
        # ids and types as dictionaries: each distinct string is read and hashed once
        dictionaries = [c for c in names if c in wanted]
        file = pq.ParquetFile(path, read_dictionary=dictionaries)
    except Exception as error:
        raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
    columns = [c for c in file.schema_arrow.names if c in wanted] or None
    groups = row_group_runs(file.metadata, _EVENT_BATCH_ROWS)
    if groups is None:  # a row group too large to hold at once: streamed in batches
        for batch in file.iter_batches(batch_size=_EVENT_BATCH_ROWS, columns=columns):
            yield batch.to_pandas()
        return

    def read(run: list[int]) -> pd.DataFrame:
        # a reader per run: runs are decoded side by side (features.parallel)
        own = pq.ParquetFile(path, read_dictionary=dictionaries)
        return own.read_row_groups(run, columns=columns, use_threads=workers <= 1).to_pandas()

    yield from ordered_map(read, groups, workers)


def row_group_runs(metadata: Any, max_rows: int) -> list[list[int]] | None:
    """Consecutive row groups in runs of at most `max_rows` rows (the chunks read at once), or
    None when a single row group is larger than that."""
    runs: list[list[int]] = []
    rows = 0
    for index in range(metadata.num_row_groups):
        size = metadata.row_group(index).num_rows
        if size > max_rows:
            return None
        if not runs or rows + size > max_rows:
            runs.append([])
            rows = 0
        runs[-1].append(index)
        rows += size
    return runs


def _event_source_columns(config: Config) -> list[str]:
    """Export names of the event columns features need (context columns are not read)."""
    reverse = {v: k for k, v in config.mapping.events.items()}
    return [reverse.get(c, c) for c, needed in EVENT_COLUMNS.items() if needed]


def _file_source(path: Path, source: SourceConfig, notes: list[str]) -> SourceConfig:
    """The source with this CSV file's delimiter and encoding (detected where auto), noted."""
    if path.suffix in (".parquet", ".pq"):
        return source
    dialect = resolve_dialect(path, source)
    note = dialect.note(path)
    if note:
        notes.append(note)
    return with_dialect(source, dialect)


def read_tables(
    config: Config, notes: list[str] | None = None
) -> tuple[pd.DataFrame, Iterator[pd.DataFrame] | None, tuple[str, str]]:
    """Open the configured source: the leads frame (with `source.joins` applied), event chunks
    (None if flat) and their names. What was detected or joined is appended to `notes`."""
    notes = [] if notes is None else notes
    source = config.source
    if source.url:
        return _read_sql_tables(config, notes)
    folder = source.path or Path("data/snapshot")
    if not folder.is_dir():
        raise ContractError(f"snapshot folder not found: {folder}")
    leads_path = _find_file(folder, source.leads)
    leads = _read_table_file(leads_path, _file_source(leads_path, source, notes))

    def joined(name: str) -> tuple[pd.DataFrame, str]:
        path = _find_file(folder, name)
        return _read_table_file(path, _file_source(path, source, notes)), str(path)

    leads, found = join_tables(leads, source.joins, joined, str(leads_path))
    notes += found
    if source.events is None:
        return leads, None, (str(leads_path), "")
    events_path = _find_file(folder, source.events)
    if events_path.suffix in (".parquet", ".pq"):
        workers = worker_count(config.features.workers)
        chunks = _parquet_chunks(events_path, _event_source_columns(config), workers)
    else:
        chunks = _csv_chunks(events_path, _file_source(events_path, source, notes))
    return leads, chunks, (str(leads_path), str(events_path))


def shown_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _read_sql_tables(
    config: Config, notes: list[str] | None = None
) -> tuple[pd.DataFrame, Iterator[pd.DataFrame] | None, tuple[str, str]]:
    import sqlalchemy as sa

    source = config.source
    assert source.url is not None
    try:
        engine = sa.create_engine(source.url)
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names(schema=source.db_schema))
    except Exception as error:
        raise ContractError(f"cannot open the database {shown_url(source.url)}: {error}") from None

    def named(table: str) -> str:
        return f"{source.db_schema}.{table}" if source.db_schema else table

    wanted = [source.leads] + ([source.events] if source.events else [])
    wanted += [join.table for join in source.joins]
    for table in wanted:
        if table not in tables:
            raise ContractError(f"table {named(table)!r} not found (tables: {sorted(tables)[:12]})")

    def select(table: str, columns: Sequence[str] | None = None) -> Any:
        meta = sa.Table(table, sa.MetaData(), schema=source.db_schema, autoload_with=engine)
        cols = [meta.c[c] for c in columns if c in meta.c] if columns else list(meta.c)
        return sa.select(*cols)

    with engine.connect() as conn:
        leads = pd.read_sql(select(source.leads), conn)
        leads, found = join_tables(
            leads,
            source.joins,
            lambda table: (pd.read_sql(select(table), conn), named(table)),
            named(source.leads),
        )
    if notes is not None:
        notes += found
    if source.events is None:
        return leads, None, (named(source.leads), "")
    events_table = source.events

    def chunks() -> Iterator[pd.DataFrame]:
        with engine.connect() as conn:
            query = select(events_table, _event_source_columns(config))
            yield from pd.read_sql(query, conn, chunksize=_EVENT_BATCH_ROWS)
        engine.dispose()

    return leads, chunks(), (named(source.leads), named(events_table))


def _declared_as_of(config: Config) -> Config:
    """A folder may declare its as-of time in `snapshot.json`; the config's value wins."""
    folder = config.source.path
    if config.as_of is not None or config.source.url or folder is None:
        return config
    manifest = folder / "snapshot.json"
    if not manifest.is_file():
        return config
    try:
        loaded = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as error:  # also bytes that are not UTF-8
        raise ContractError(f"{manifest}: not a readable JSON object: {error}") from None
    if not isinstance(loaded, dict):
        raise ContractError(f"{manifest}: must hold a JSON object, not {type(loaded).__name__}")
    declared = loaded.get("as_of")
    if declared is None:
        return config
    stamp = declared_time(declared, str(manifest))
    return config.model_copy(update={"as_of": stamp.to_pydatetime()})


# --------------------------------------------------------------------------- edge checks
# Checks of a whole export read from files or a database: what no single posted lead can show.

#: A text cell longer than this is no CRM value but a broken export (and a drain on memory).
MAX_CELL_CHARS = 10_000
#: Timestamps before this are placeholders (1900-01-01, 0000-01-01), not CRM history.
EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")


def _char_lengths(values: pd.Series) -> np.ndarray | None:
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


def _long_cells(
    frame: pd.DataFrame, table: str, columns: Sequence[str] | None = None, row_offset: int = 0
) -> list[Problem]:
    """Text columns with cells longer than `MAX_CELL_CHARS`, one problem per column."""
    problems = []
    for column in frame.columns if columns is None else [c for c in columns if c in frame]:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            if _char_lengths(pd.Series(values.cat.categories.astype("str"))) is None:
                continue
            values = values.astype("str")
        elif not (pd.api.types.is_string_dtype(values) or values.dtype == object):
            continue
        lengths = _char_lengths(values)
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
                    _examples(values, too_long, row_offset),
                )
            )
    return problems


def _boolean_sizes(frame: pd.DataFrame, config: Config, table: str) -> list[Problem]:
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
            _examples(frame[column], bad),
        )
    ]


def _swallowed_lines(frame: pd.DataFrame, config: Config, table: str) -> list[Problem]:
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
                    _examples(frame[column], bad),
                )
            )
    return problems


def _checked_chunks(
    chunks: Iterable[pd.DataFrame], table: str, columns: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """Event chunks whose id and type cells are of a sane length (checked as they stream)."""
    offset = 0
    for chunk in chunks:
        raise_problems(_long_cells(chunk, table, columns, offset))
        offset += len(chunk)
        yield chunk


def plausible_range(config: Config) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Timestamps outside [1970, max(now, declared as-of) + 1 day] are errors in the export."""
    latest = pd.Timestamp.now(tz="UTC")
    if config.as_of is not None:
        declared = pd.Timestamp(config.as_of)
        declared = declared.tz_localize("UTC") if declared.tzinfo is None else declared
        latest = max(latest, declared.tz_convert("UTC"))
    return EARLIEST, latest + pd.Timedelta(days=1)


def _by_lead(ids: pd.Series, values: pd.Series, mask: np.ndarray) -> tuple[str, ...]:
    where = np.flatnonzero(mask)[:_EXAMPLES]
    shown = []
    for i in where:
        value = values.iloc[i]
        text = "<missing>" if pd.isna(value) else str(value)[:60]
        shown.append(f"lead {str(ids.iloc[i])[:60]!r}: {text}")
    return tuple(shown)


def check_lead_timeline(clean: pd.DataFrame, config: Config, table: str) -> None:
    """Every lead has a plausible created_at, and no MQL comes before the lead was created."""
    problems = []
    earliest, latest = plausible_range(config)
    ids = clean["lead_id"]
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
                    _by_lead(ids, values, odd),
                )
            )
    if not config.source.flat:
        missing = clean["created_at"].isna().to_numpy()
        if missing.any():
            odd_ids = ids[missing].astype("str")
            hint = next(
                (
                    f" (ids holding {sep!r}: are some rows delimited differently?)"
                    for sep in (";", "\t", "|", ",")
                    if sep != config.source.delimiter
                    and odd_ids.str.contains(sep, regex=False).any()
                ),
                "",
            )
            problems.append(
                Problem(
                    table,
                    "created_at",
                    "have no created_at, which the contract requires" + hint,
                    int(missing.sum()),
                    _by_lead(ids, clean["created_at"], missing),
                )
            )
        early = (clean["mql_at"] < clean["created_at"]).fillna(False).to_numpy(dtype=bool)
        if early.any():
            shown = (
                clean["mql_at"].astype("str") + " < created_at " + clean["created_at"].astype("str")
            )
            problems.append(
                Problem(
                    table,
                    "mql_at",
                    "have mql_at before created_at",
                    int(early.sum()),
                    _by_lead(ids, shown, early),
                )
            )
    if "disqualified_at" in clean and not config.source.flat:
        early = (clean["disqualified_at"] < clean["created_at"]).fillna(False).to_numpy(dtype=bool)
        if early.any():
            shown = (
                clean["disqualified_at"].astype("str")
                + " < created_at "
                + clean["created_at"].astype("str")
            )
            problems.append(
                Problem(
                    table,
                    "disqualified_at",
                    "have disqualified_at before created_at",
                    int(early.sum()),
                    _by_lead(ids, shown, early),
                )
            )
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
        where = np.flatnonzero(odd)[:_EXAMPLES]
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


def read_snapshot(config: Config) -> Snapshot:
    """Read and check the configured snapshot (folder or database).

    The as-of time is the config's, else the folder's `snapshot.json` `as_of`, else the latest
    timestamp in the data.
    """
    declared = _declared_as_of(config)
    origin = (
        "the config's as_of"
        if config.as_of is not None
        else str((config.source.path or Path()) / "snapshot.json")
    )
    config = declared
    notes: list[str] = []
    raw_leads, chunks, (leads_name, events_name) = read_tables(config, notes)
    if len(raw_leads) == 0:
        only = " (a header only)" if len(raw_leads.columns) else ""
        raise ContractError(f"{leads_name}: the table has no rows{only}")
    long_cells = [] if config.source.on_bad_rows == "drop" else _long_cells(raw_leads, leads_name)
    raise_problems(
        long_cells
        + _boolean_sizes(raw_leads, config, leads_name)
        + _swallowed_lines(raw_leads, config, leads_name)
    )
    custom_fields, typed = typed_custom_fields(raw_leads, config)
    config = config.model_copy(update={"custom_fields": custom_fields})
    clean, report = prepare_leads(raw_leads, config, leads_name)
    report.notes = notes + typed + report.notes
    del raw_leads
    check_lead_timeline(clean, config, leads_name)
    if config.as_of is not None and not config.source.flat:
        as_of = _as_of(config, clean, EventLog.empty())
        assert as_of is not None
        check_as_of_after_data(as_of, clean["created_at"], leads_name, origin)
    if chunks is not None:
        chunks = _checked_chunks(chunks, events_name, _event_source_columns(config))
    log = collect_events(chunks or [], clean, config, events_name, report)
    check_event_log(log, clean, report, config, (leads_name, events_name))
    return Snapshot(
        clean, log, _as_of(config, clean, log), config.source.flat, config.custom_fields, report
    )
