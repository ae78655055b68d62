"""Rows that break the contract, set aside instead of stopping the read (`on_bad_rows: drop`).

With `source.on_bad_rows: drop` the reader removes each lead row that breaks a row rule of the
contract (no or a duplicate lead_id, a timestamp that is not ISO 8601 or is implausible, no
created_at, mql_at before created_at, sql_at before mql_at, a company size that is no
non-negative number, an outcome or custom value of the wrong type, a cell over 10,000
characters) and each event row without a readable, plausible time; it keeps them here with
one reason per row, to be written as a quarantine CSV. Events of a set-aside lead are dropped
and counted. When more than `source.max_bad_share` of the leads (or of the events) would be
set aside the read still fails: a broken export must not silently shrink.

The checks reuse the reader's own parsers, so a row passes here exactly when the reader
would accept it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.config import Config, CustomField
from features.contract import CONVERTED, LEAD_TIMESTAMPS, TIMELINE_ORDER, ContractError

#: The quarantine file's own columns, before the row's cells.
HEAD = ("table", "row", "reason")


@dataclass
class Quarantine:
    """Rows set aside while reading, with their reasons; empty under `on_bad_rows: fail`."""

    leads: list[pd.DataFrame] = field(default_factory=list)
    events: list[pd.DataFrame] = field(default_factory=list)
    leads_read: int = 0
    events_read: int = 0
    events_of_set_aside_leads: int = 0
    lead_ids: set[str] = field(default_factory=set)

    @property
    def lead_rows(self) -> int:
        return sum(len(f) for f in self.leads)

    @property
    def event_rows(self) -> int:
        return sum(len(f) for f in self.events)

    def counts(self) -> dict[str, int]:
        """Numbers for summaries, reports and MLflow."""
        return {
            "quarantined_leads": self.lead_rows,
            "quarantined_events": self.event_rows,
            "events_of_quarantined_leads": self.events_of_set_aside_leads,
        }

    def reasons(self) -> Counter[str]:
        """How many rows each rule set aside (a row may break several)."""
        counted: Counter[str] = Counter()
        for frame in self.leads + self.events:
            for reasons in frame["reason"]:
                counted.update(r.split(":", 1)[0] for r in str(reasons).split("; "))
        return counted

    def lines(self) -> list[str]:
        if not self.lead_rows and not self.event_rows:
            return []
        top = ", ".join(f"{n:,} {reason}" for reason, n in self.reasons().most_common(5))
        lines = []
        if self.lead_rows:
            share = self.lead_rows / max(self.leads_read, 1)
            lines.append(
                f"{self.lead_rows:,} of {self.leads_read:,} leads ({share:.2%}) set aside as "
                "breaking the contract (on_bad_rows: drop)"
            )
        if self.event_rows:
            share = self.event_rows / max(self.events_read, 1)
            lines.append(
                f"{self.event_rows:,} of {self.events_read:,} events ({share:.2%}) set aside "
                "as breaking the contract"
            )
        lines.append(f"set aside for: {top}")
        if self.events_of_set_aside_leads:
            lines.append(f"{self.events_of_set_aside_leads:,} events of set-aside leads dropped")
        return lines

    def frame(self) -> pd.DataFrame:
        """Every set-aside row: table, row (as the reader numbers rows: data rows from 1),
        reason, then the row's cells (lead columns as mapped onto the contract)."""
        parts = self.leads + self.events
        if not parts:
            return pd.DataFrame(columns=list(HEAD))
        return pd.concat(parts, ignore_index=True)


def _reason_column(reasons: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, pd.Series]:
    """One '; '-joined reason text per row, and the mask of rows with any."""
    bad = np.zeros(n, dtype=bool)
    text = pd.Series("", index=range(n), dtype="str")
    for reason, mask in reasons.items():
        if not mask.any():
            continue
        bad |= mask
        joined = text.where(text == "", text + "; ")
        text = text.mask(mask, joined + reason)
    return bad, text


def _set_aside(
    frame: pd.DataFrame, bad: np.ndarray, text: pd.Series, table: str, row_offset: int
) -> pd.DataFrame:
    rows = frame.loc[bad].astype("str").reset_index(drop=True)
    head = pd.DataFrame(
        {
            "table": table,
            "row": np.flatnonzero(bad) + row_offset + 1,
            "reason": text[bad].to_numpy(),
        }
    )
    return pd.concat([head, rows], axis=1)


def _custom_reasons(
    frame: pd.DataFrame, custom: Mapping[str, CustomField], config: Config
) -> dict[str, np.ndarray]:
    from features.reader import clean_text, parse_flags

    reasons: dict[str, np.ndarray] = {}
    for name, cf in custom.items():
        values = frame[name]
        if cf.value_type == "boolean":
            _, bad = parse_flags(values, config.mapping, name)
            reasons[f"{name} is neither true nor false"] = bad
        elif cf.value_type == "numeric" and not pd.api.types.is_numeric_dtype(values):
            text = clean_text(values, config.mapping, name)
            number = pd.to_numeric(text, errors="coerce")
            reasons[f"{name} is not a number"] = (text.notna() & number.isna()).to_numpy()
    return reasons


def lead_reasons(
    frame: pd.DataFrame, config: Config, custom: Mapping[str, CustomField]
) -> dict[str, np.ndarray]:
    """Each row rule of the contract (reason -> mask of rows breaking it), on a leads frame
    already renamed onto the contract, as `prepare_leads` and `check_lead_timeline` apply
    them."""
    from features.reader import (
        MAX_CELL_CHARS,
        cell_lengths,
        clean_text,
        parse_company_size,
        parse_flags,
        parse_timestamps,
        plausible_range,
    )

    mapping, n = config.mapping, len(frame)
    reasons: dict[str, np.ndarray] = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_string_dtype(values) or values.dtype == object:
            lengths = cell_lengths(values)
            if lengths is not None:
                reasons[f"{column} is longer than {MAX_CELL_CHARS:,} characters"] = (
                    lengths > MAX_CELL_CHARS
                )
    ids = clean_text(frame["lead_id"], mapping, "lead_id")
    reasons["no lead_id"] = ids.isna().to_numpy()
    reasons["lead_id shared with another row"] = (
        ids.duplicated(keep=False) & ids.notna()
    ).to_numpy()
    earliest, latest = plausible_range(config)
    stamps: dict[str, pd.Series] = {}
    for column in LEAD_TIMESTAMPS:
        if column not in frame:
            continue
        parsed, bad = parse_timestamps(frame[column], mapping)
        stamps[column] = parsed
        reasons[f"{column} is not an ISO 8601 timestamp"] = bad
        odd = ((parsed < earliest) | (parsed > latest)).fillna(False).to_numpy(dtype=bool)
        reasons[f"{column} is implausible (before 1970 or in the future)"] = odd
    created = stamps.get("created_at")
    if not config.source.flat and created is not None:
        unreadable = reasons["created_at is not an ISO 8601 timestamp"]
        reasons["no created_at"] = created.isna().to_numpy() & ~unreadable
    for later, earlier in TIMELINE_ORDER:
        if later in stamps and earlier in stamps:
            if earlier == "created_at" and config.source.flat:
                continue  # as the reader, a flat export's created_at is not checked
            early = (stamps[later] < stamps[earlier]).fillna(False).to_numpy(dtype=bool)
            reasons[f"{later} before {earlier}"] = early
    if "company_size" in frame:
        _, bad = parse_company_size(frame["company_size"], mapping)
        reasons["company_size is no non-negative number"] = np.asarray(bad)
    if CONVERTED in frame:
        _, bad = parse_flags(frame[CONVERTED], mapping, CONVERTED)
        reasons[f"{CONVERTED} is neither true nor false"] = bad
    reasons.update(_custom_reasons(frame, custom, config))
    return {k: np.asarray(v, dtype=bool)[:n] for k, v in reasons.items()}


def _too_many(what: str, bad: int, total: int, config: Config, problems: list[str]) -> None:
    share = bad / total if total else 0.0
    if share > config.source.max_bad_share:
        shown = "\n".join(f"  - {p}" for p in problems[:8])
        raise ContractError(
            f"{what}: {bad:,} of {total:,} rows ({share:.2%}) break the contract, above "
            f"source.max_bad_share {config.source.max_bad_share:.2%}: the export looks "
            f"broken, not a few bad rows; nothing was written\n{shown}"
        )


def set_aside_leads(
    frame: pd.DataFrame,
    config: Config,
    table: str,
    custom: Mapping[str, CustomField],
    quarantine: Quarantine,
) -> pd.DataFrame:
    """The leads frame (contract names) without the rows that break the contract; those go
    to `quarantine`. Raises when their share is above `source.max_bad_share`."""
    from features.reader import clean_text

    reasons = lead_reasons(frame, config, custom)
    bad, text = _reason_column(reasons, len(frame))
    quarantine.leads_read += len(frame)
    if not bad.any():
        return frame
    counted = [f"{int(m.sum()):,} row(s): {r}" for r, m in reasons.items() if m.any()]
    _too_many(table, int(bad.sum()), len(frame), config, counted)
    quarantine.leads.append(_set_aside(frame, bad, text, table, 0))
    ids = clean_text(frame["lead_id"], config.mapping, "lead_id")[bad].dropna()
    quarantine.lead_ids |= set(map(str, ids))
    return frame.loc[~bad]


def set_aside_events(
    frame: pd.DataFrame, config: Config, table: str, row_offset: int, quarantine: Quarantine
) -> pd.DataFrame:
    """One chunk of events (contract names) without rows whose time is missing, unreadable
    or implausible (into `quarantine`) and without the events of set-aside leads (counted)."""
    from features.reader import parse_timestamps, plausible_range

    quarantine.events_read += len(frame)
    parsed, unreadable = parse_timestamps(frame["occurred_at"], config.mapping)
    earliest, latest = plausible_range(config)
    odd = ((parsed < earliest) | (parsed > latest)).fillna(False).to_numpy(dtype=bool)
    reasons = {
        "occurred_at is not an ISO 8601 timestamp": unreadable,
        "no occurred_at": parsed.isna().to_numpy() & ~unreadable,
        "occurred_at is implausible (before 1970 or in the future)": odd,
    }
    bad, text = _reason_column(reasons, len(frame))
    if bad.any():
        quarantine.events.append(_set_aside(frame, bad, text, table, row_offset))
    keep = ~bad
    if quarantine.lead_ids:
        codes, uniques = pd.factorize(frame["lead_id"], use_na_sentinel=True)
        cleaned = pd.Series(uniques).astype("str").str.strip()
        of_set_aside = np.append(cleaned.isin(quarantine.lead_ids).to_numpy(), False)[codes]
        quarantine.events_of_set_aside_leads += int((of_set_aside & keep).sum())
        keep &= ~of_set_aside
    return frame.loc[keep] if not keep.all() else frame


def check_event_share(quarantine: Quarantine, config: Config, table: str) -> None:
    """Fail when more than `source.max_bad_share` of the events were set aside."""
    if quarantine.event_rows:
        counted = [f"{n:,} row(s): {r}" for r, n in quarantine.reasons().items()]
        _too_many(table, quarantine.event_rows, quarantine.events_read, config, counted)


def write_quarantine(quarantine: Quarantine, target: Path) -> Path | None:
    """Write the set-aside rows as CSV, atomically; None (and nothing written) when none."""
    from common.io import write_atomic

    frame = quarantine.frame()
    if frame.empty:
        return None
    write_atomic(target, lambda p: frame.to_csv(p, index=False))
    return target


def summary_counts(summary: Path) -> dict[str, int]:
    """The set-aside counts a training set's summary JSON records (none when it has none)."""
    import json

    try:
        loaded = json.loads(summary.read_text(encoding="utf-8"))
        recorded = loaded.get("quarantine") or {}
        return {k: int(v) for k, v in recorded.items() if k != "file" and v is not None}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
