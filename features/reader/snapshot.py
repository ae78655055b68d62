"""The reader's entry: a snapshot read, cleaned and held to the data contract.

`read_snapshot` opens the configured source (`features.reader.sources`), checks the export as a
whole (`features.reader.checks`), prepares the leads (`features.reader.leads`) and encodes the
events against them (`features.reader.events`). `snapshot_from_frames` does the same for frames
already in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.config import Config, CustomField
from features.contract import LEAD_TIMESTAMPS, ContractError
from features.custom_types import typed_custom_fields
from features.reader.checks import (
    boolean_size_problems,
    check_as_of_after_data,
    check_event_log,
    check_lead_timeline,
    checked_event_chunks,
    long_cell_problems,
    swallowed_line_problems,
)
from features.reader.columns import event_source_columns
from features.reader.eventlog import EventLog
from features.reader.events import collect_events, takes_coded_events
from features.reader.leads import prepare_leads, prepare_leads_placed
from features.reader.problems import raise_problems
from features.reader.report import ReadReport
from features.reader.sources import read_tables, with_declared_as_of


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


def snapshot_as_of(config: Config, leads: pd.DataFrame, events: EventLog) -> pd.Timestamp | None:
    """The snapshot's as-of time: the config's (as UTC), else the latest timestamp in the
    cleaned leads and the events, else None (nothing dated at all)."""
    if config.as_of is not None:
        stamp = pd.Timestamp(config.as_of)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    latest = [leads[c].max() for c in LEAD_TIMESTAMPS if c in leads and leads[c].notna().any()]
    if len(events):
        latest.append(pd.Timestamp(int(events.at_ms.max()), unit="ms", tz="UTC"))
    return max(latest) if latest else None


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
    as_of = snapshot_as_of(config, clean, log)
    return Snapshot(clean, log, as_of, config.source.flat, config.custom_fields, report)


def _check_raw_leads(raw_leads: pd.DataFrame, config: Config, table: str) -> None:
    """The whole-export checks of the leads as read: rows present, cells of a sane length
    (set aside instead under `on_bad_rows: drop`), no true/false sizes, no swallowed lines."""
    if len(raw_leads) == 0:
        only = " (a header only)" if len(raw_leads.columns) else ""
        raise ContractError(f"{table}: the table has no rows{only}")
    long_cells = [] if config.source.on_bad_rows == "drop" else long_cell_problems(raw_leads, table)
    raise_problems(
        long_cells
        + boolean_size_problems(raw_leads, config, table)
        + swallowed_line_problems(raw_leads, config, table)
    )


def read_snapshot(config: Config) -> Snapshot:
    """Read and check the configured snapshot (folder or database).

    The as-of time is the config's, else the folder's `snapshot.json` `as_of`, else the latest
    timestamp in the data.
    """
    origin = (
        "the config's as_of"
        if config.as_of is not None
        else str((config.source.path or Path()) / "snapshot.json")
    )
    config = with_declared_as_of(config)
    notes: list[str] = []
    raw_leads, chunks, (leads_name, events_name) = read_tables(
        config, notes, takes_coded_events(config)
    )
    _check_raw_leads(raw_leads, config, leads_name)
    custom_fields, typed = typed_custom_fields(raw_leads, config)
    config = config.model_copy(update={"custom_fields": custom_fields})
    clean, report, placed = prepare_leads_placed(raw_leads, config, leads_name)
    report.notes = notes + typed + report.notes
    del raw_leads
    check_lead_timeline(clean, config, leads_name)
    if config.as_of is not None and not config.source.flat:
        as_of = snapshot_as_of(config, clean, EventLog.empty())
        assert as_of is not None
        check_as_of_after_data(as_of, clean["created_at"], leads_name, origin)
    if chunks is not None:
        chunks = checked_event_chunks(chunks, events_name, event_source_columns(config))
    log = collect_events(chunks or [], clean, config, events_name, report, placed)
    check_event_log(log, clean, report, config, (leads_name, events_name))
    as_of = snapshot_as_of(config, clean, log)
    return Snapshot(clean, log, as_of, config.source.flat, config.custom_fields, report)
