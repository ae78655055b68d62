"""Encoding an export's events against the leads: chunk by chunk, into one `EventLog`.

Each chunk is renamed onto the contract, checked, and turned into arrays (lead index, ms,
type index); the chunks are encoded side by side and then sorted and de-duplicated once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from common.config import Config, MappingConfig
from features import clean
from features.contract import EVENT_COLUMNS, EVENT_TYPES
from features.parallel import ordered_map, worker_count
from features.quarantine import check_event_share, set_aside_events
from features.reader.cleaning import parse_timestamps
from features.reader.columns import drop_excluded, missing_required, rename_to_contract
from features.reader.eventlog import NAT_MS, EventLog, sort_events
from features.reader.problems import Problem, raise_problems, row_examples
from features.reader.report import ReadReport

#: The type index of events whose type is not in the contract.
OTHER = EVENT_TYPES.index("other")


def event_type_codes(names: pd.Series, mapping: MappingConfig) -> np.ndarray:
    """Event type index per distinct name: contract names after the value map, else `other`
    (`features.clean`, the API's rule too)."""
    return clean.event_kinds(names, mapping)


@dataclass
class EncodedChunk:
    """One chunk of events as arrays (events of unknown leads dropped), with what it counted:
    events of unknown leads, events of unknown types by name, and rows read."""

    lead: np.ndarray
    at_ms: np.ndarray
    kind: np.ndarray
    unknown_lead: int
    unknown_types: dict[str, int]
    rows: int = 0


def _time_problems(
    values: pd.Series, bad: np.ndarray, missing: np.ndarray, table: str, row_offset: int
) -> list[Problem]:
    problems = []
    if bad.any():
        problems.append(
            Problem(
                table,
                "occurred_at",
                "have a timestamp that is not ISO 8601",
                int(bad.sum()),
                row_examples(values, bad, row_offset),
            )
        )
    if missing.any():
        problems.append(
            Problem(
                table,
                "occurred_at",
                "have no timestamp",
                int(missing.sum()),
                row_examples(values, missing, row_offset),
            )
        )
    return problems


def _unknown_types(
    names: pd.Series, per_name: np.ndarray, type_codes: np.ndarray
) -> dict[str, int]:
    """Events per type name read as `other` (a name 'other' itself is no surprise)."""
    counts = np.bincount(type_codes + 1, minlength=len(names) + 1)
    return {
        ("<missing>" if i < 0 else str(names.iloc[i])): int(counts[i + 1])
        for i in range(-1, len(names))
        if per_name[i] == OTHER
        and counts[i + 1] > 0
        and not (i >= 0 and str(names.iloc[i]).strip().casefold() == "other")
    }


def encode_events(
    chunk: pd.DataFrame, lead_index: pd.Index, mapping: MappingConfig, table: str, row_offset: int
) -> EncodedChunk:
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
    raise_problems(_time_problems(chunk["occurred_at"], bad, missing_time, table, row_offset))

    type_codes, type_names = pd.factorize(chunk["event_type"], use_na_sentinel=True)
    names = pd.Series(type_names)
    per_name = np.append(event_type_codes(names, mapping), OTHER).astype(np.int8)
    kind = per_name[type_codes]
    known = lead >= 0
    return EncodedChunk(
        lead[known],
        np.asarray(at_ms)[known],
        kind[known],
        int((~known).sum()),
        _unknown_types(names, per_name, type_codes),
        len(chunk),
    )


def contract_event_chunks(
    chunks: Iterable[pd.DataFrame], config: Config, table: str, report: ReadReport
) -> Iterator[tuple[pd.DataFrame, int]]:
    """Event chunks renamed to the contract, with their first row's offset; raises
    `ContractError` for a missing required column. Under `on_bad_rows: drop` the rows that
    break the contract are set aside into the report's quarantine."""
    required = [c for c, needed in EVENT_COLUMNS.items() if needed]
    offset = 0
    for raw in chunks:
        if offset == 0:
            frame, excluded = drop_excluded(raw, config.exclude)
            report.excluded_columns += excluded
        else:
            frame = raw
        frame, problems = rename_to_contract(frame, config.mapping.events, table, "events")
        raise_problems(problems)
        raise_problems(missing_required(frame, required, table))
        if config.source.on_bad_rows == "drop":
            kept = set_aside_events(frame, config, table, offset, report.quarantine)
            offset += len(frame) - len(kept)
            frame = kept
        yield frame, offset
        offset += len(frame)
    report.events_read = offset  # set-aside events included


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

    def encode(item: tuple[pd.DataFrame, int]) -> EncodedChunk:
        frame, first_row = item
        return encode_events(frame, lead_index, config.mapping, table, first_row)

    # chunks are checked here in order and encoded side by side (features.parallel)
    parts: list[EncodedChunk] = []
    for part in ordered_map(
        encode,
        contract_event_chunks(chunks, config, table, report),
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
    log, dropped = sort_events(
        lead, at_ms, kind, config.features.chunk_leads, worker_count(config.features.workers)
    )
    report.events_duplicate = dropped
    report.events_kept = len(log)
    return log
