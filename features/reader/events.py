"""Encoding an export's events against the leads: chunk by chunk, into one `EventLog`.

Each chunk is renamed onto the contract, checked, and turned into arrays (lead index, ms,
type index); the chunks are encoded side by side and then sorted and de-duplicated once.
An adapter that already holds its events as integers (a CRM preset, `features.presets`)
hands them over as `CodedEvents` instead: lead positions, times and type codes that need no
cleaning or lookup per row, only a translation per lead and per type name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd

from common.config import Config, MappingConfig
from features import clean
from features.contract import EVENT_COLUMNS, EVENT_TYPES
from features.parallel import ordered_map, worker_count
from features.quarantine import check_event_share, set_aside_events
from features.reader.cleaning import parse_timestamps
from features.reader.columns import drop_excluded, missing_required, rename_to_contract
from features.reader.eventlog import NAT_MS, EventLog, sort_event_parts
from features.reader.problems import Problem, raise_problems, row_examples
from features.reader.report import ReadReport

#: The type index of events whose type is not in the contract.
OTHER = EVENT_TYPES.index("other")


@dataclass(frozen=True)
class CodedEvents:
    """A batch of contract events that an adapter has encoded itself, against its own leads.

    `lead` holds positions into `lead_ids` (the lead ids of the leads frame the adapter hands
    the reader, in its order), `at_ms` milliseconds since the epoch (UTC, never missing) and
    `type_codes` positions into `type_names` (the event types as the adapter names them, never
    missing). The reader turns the positions into rows of its own leads once per lead and the
    names into `EVENT_TYPES` once per batch, with the same rules as for a contract frame whose
    `lead_id` column holds `lead_ids[lead]` and whose `event_type` holds the named types.
    """

    lead_ids: pd.Index
    lead: np.ndarray
    at_ms: np.ndarray
    type_codes: np.ndarray
    type_names: pd.Index

    def __len__(self) -> int:
        return int(self.lead.shape[0])

    def types_frame(self) -> pd.DataFrame:
        """The batch's event types as a contract frame's column (for the checks of cells)."""
        types = pd.Categorical.from_codes(self.type_codes, categories=self.type_names)
        return pd.DataFrame({"event_type": types})


#: A chunk of events as a source hands it over: contract (or export) rows, or coded events.
EventChunk: TypeAlias = pd.DataFrame | CodedEvents


def takes_coded_events(config: Config) -> bool:
    """Whether the config lets an adapter hand over `CodedEvents`: only when nothing in it
    acts on the event rows as a frame (renamed or excluded event columns, rows set aside under
    `on_bad_rows: drop`), so that both forms read alike."""
    excluded = {name.strip() for name in config.exclude} & set(EVENT_COLUMNS)
    return not config.mapping.events and not excluded and config.source.on_bad_rows != "drop"


class LeadLookup:
    """The reader's lead ids, for finding the rows of many chunks' ids in them.

    Each id's 64-bit hash (pandas' `hash_array`) is kept sorted beside its row, so a chunk's
    ids are found by a binary search of their hashes and then checked as text: exactly the
    rows pandas' hash table gives. That table, of a million or more Python strings, answers a
    chunk's scattered ids several times slower, a few cache misses per id, and more as the
    leads grow; an export's event rows come in time order, so each chunk's ids are scattered.
    Lead ids that are not text, or whose hashes collide, are looked up in the hash table.
    """

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self._values = np.asarray(index, dtype=object)
        self._order: np.ndarray | None = None
        self._sorted = np.empty(0, dtype=np.uint64)
        if len(index) and pd.api.types.is_string_dtype(index.dtype):
            try:
                hashes = pd.util.hash_array(self._values, categorize=False)
            except TypeError:  # an id that is neither text nor missing
                hashes = None
            if hashes is not None:
                order = np.argsort(hashes, kind="stable")
                ordered = hashes[order]
                if not bool((ordered[1:] == ordered[:-1]).any()):
                    self._order, self._sorted = order, ordered
        if self._order is None:
            index.get_indexer(index[:1])  # the hash table, built now rather than by a worker

    def rows(self, ids: pd.Series) -> np.ndarray:
        """The row of each of `ids` (trimmed text, none missing) among the leads, or -1."""
        if self._order is None:
            return np.asarray(self.index.get_indexer(pd.Index(ids)))
        wanted = np.asarray(ids, dtype=object)
        hashes = pd.util.hash_array(wanted, categorize=False)
        at = np.searchsorted(self._sorted, hashes).clip(max=len(self._sorted) - 1)
        rows = np.where(self._sorted[at] == hashes, self._order[at], -1)
        found = np.flatnonzero(rows >= 0)
        rows[found[self._values[rows[found]] != wanted[found]]] = -1
        return rows


def _index_of(leads: pd.Index | LeadLookup) -> pd.Index:
    return leads.index if isinstance(leads, LeadLookup) else leads


def lead_rows(
    lead_ids: pd.Index, lead_index: pd.Index | LeadLookup, placed: np.ndarray | None = None
) -> np.ndarray:
    """The row in `lead_index` of each of `lead_ids` (-1: none), matched as trimmed text, a
    missing id matching nothing: a frame's distinct ids (`encode_events`) and an adapter's
    coded events' ids alike (`placed`: as `same_lead_rows` takes it)."""
    same = same_lead_rows(lead_ids, _index_of(lead_index), placed)
    return same if same is not None else hashed_lead_rows(lead_ids, lead_index)


def hashed_lead_rows(lead_ids: pd.Index, lead_index: pd.Index | LeadLookup) -> np.ndarray:
    """`lead_rows` by looking each trimmed id up among the leads (`LeadLookup`, or the index's
    hash table)."""
    present = ~np.asarray(pd.isna(lead_ids), dtype=bool)
    rows = np.full(len(lead_ids), -1, dtype=np.int32)
    cleaned = pd.Series(lead_ids[present]).astype("str").str.strip()
    if isinstance(lead_index, LeadLookup):
        rows[present] = lead_index.rows(cleaned)
    else:
        rows[present] = lead_index.get_indexer(pd.Index(cleaned))
    return rows


def same_lead_rows(
    lead_ids: pd.Index, lead_index: pd.Index, placed: np.ndarray | None = None
) -> np.ndarray | None:
    """`lead_rows` without hashing when `lead_ids`, trimmed, are `lead_index`'s values one for
    one: the reader's lead at row r is `lead_ids[placed[r]]` (an adapter's leads as the
    reader prepared them; `placed` from `prepare_leads_placed`, or in order when None). None
    when they are not (the lead index is unique, so each id then finds its own row)."""
    if len(lead_ids) != len(lead_index) or pd.isna(lead_ids).any():
        return None
    if placed is None:
        placed = np.arange(len(lead_index))
    if len(placed) != len(lead_index):
        return None
    if len(placed) and (placed.min() < 0 or placed.max() >= len(lead_ids)):
        return None
    cleaned = pd.Series(lead_ids).astype("str").str.strip().to_numpy()
    index = pd.Series(lead_index.to_numpy(), dtype="str").to_numpy()
    # the index's ids are distinct, so matching text also means no place is taken twice
    if not bool((cleaned[placed] == index).all()):
        return None
    rows = np.empty(len(lead_ids), dtype=np.int32)
    rows[placed] = np.arange(len(placed), dtype=np.int32)
    return rows


def event_type_codes(names: pd.Series, mapping: MappingConfig) -> np.ndarray:
    """Event type index per distinct name: contract names after the value map, else `other`
    (`features.clean`, the API's rule too)."""
    return clean.event_kinds(names, mapping)


def type_lookup(names: pd.Series, mapping: MappingConfig) -> np.ndarray:
    """`event_type_codes` of each distinct name, with `other` appended for the missing
    type's code (-1), so that `type_lookup(names)[codes]` types every event."""
    return np.append(event_type_codes(names, mapping), OTHER).astype(np.int8)


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
    chunk: pd.DataFrame,
    lead_index: pd.Index | LeadLookup,
    mapping: MappingConfig,
    table: str,
    row_offset: int,
) -> EncodedChunk:
    """Turn one chunk of contract-named event rows into arrays; checks timestamps.

    Each column is factorised first and only its distinct values are cleaned, which keeps
    50M rows cheap. Events of leads not in `lead_index` are dropped and counted.
    """
    codes, uniques = pd.factorize(chunk["lead_id"], use_na_sentinel=True)
    lead = np.append(lead_rows(pd.Index(uniques), lead_index), np.int32(-1))[codes]

    parsed, bad = parse_timestamps(chunk["occurred_at"], mapping)
    at_ms = parsed.array.asi8 if hasattr(parsed.array, "asi8") else parsed.to_numpy().view("i8")
    missing_time = (at_ms == NAT_MS) & ~bad
    raise_problems(_time_problems(chunk["occurred_at"], bad, missing_time, table, row_offset))

    type_codes, type_names = pd.factorize(chunk["event_type"], use_na_sentinel=True)
    names = pd.Series(type_names)
    per_name = type_lookup(names, mapping)
    kind = per_name[type_codes]
    return EncodedChunk(
        *_known_leads_only(lead, np.asarray(at_ms), kind),
        _unknown_types(names, per_name, type_codes),
        len(chunk),
    )


def _known_leads_only(
    lead: np.ndarray, at_ms: np.ndarray, kind: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The events of known leads (row >= 0) and how many were not: the arrays themselves,
    uncopied, when every lead is known (the usual case)."""
    known = lead >= 0
    unknown = len(lead) - int(np.count_nonzero(known))
    if unknown:
        return lead[known], at_ms[known], kind[known], unknown
    return lead, at_ms, kind, 0


def encode_coded_events(
    coded: CodedEvents, rows: np.ndarray, mapping: MappingConfig
) -> EncodedChunk:
    """`encode_events` of coded events, given the reader's row of each of their `lead_ids`
    (`lead_rows`): what it keeps and counts is what it would of the same events as a frame."""
    lead = rows[coded.lead]
    names = pd.Series(coded.type_names)
    per_name = type_lookup(names, mapping)
    kind = per_name[coded.type_codes]
    return EncodedChunk(
        *_known_leads_only(lead, coded.at_ms, kind),
        _coded_unknown_types(names, per_name, coded.type_codes),
        len(coded),
    )


def _coded_unknown_types(
    names: pd.Series, per_name: np.ndarray, type_codes: np.ndarray
) -> dict[str, int]:
    """`_unknown_types` of coded types, the names in the order their first events come (as a
    frame's types are factorised)."""
    candidates = [
        i
        for i in range(len(names))
        if per_name[i] == OTHER and str(names.iloc[i]).strip().casefold() != "other"
    ]
    if not candidates:  # the usual case: no event is counted, so none is looked at
        return {}
    counts = np.bincount(type_codes, minlength=len(names))
    unknown = [i for i in candidates if counts[i] > 0]
    first = {i: int(np.argmax(type_codes == i)) for i in unknown}
    return {str(names.iloc[i]): int(counts[i]) for i in sorted(unknown, key=first.__getitem__)}


def contract_event_chunks(
    chunks: Iterable[EventChunk], config: Config, table: str, report: ReadReport
) -> Iterator[tuple[EventChunk, int]]:
    """Event chunks renamed to the contract, with their first row's offset; raises
    `ContractError` for a missing required column. Under `on_bad_rows: drop` the rows that
    break the contract are set aside into the report's quarantine. Coded events pass as they
    are (`takes_coded_events`: the config has nothing to do to them)."""
    required = [c for c, needed in EVENT_COLUMNS.items() if needed]
    offset = 0
    for raw in chunks:
        if isinstance(raw, CodedEvents):
            yield raw, offset
            offset += len(raw)
            continue
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
    chunks: Iterable[EventChunk],
    leads: pd.DataFrame,
    config: Config,
    table: str,
    report: ReadReport,
    placed: np.ndarray | None = None,
) -> EventLog:
    """Encode event chunks against the leads, then sort and de-duplicate them into one log.

    `placed`: the row of the adapter's leads frame each of `leads` came from
    (`prepare_leads_placed`), by which an adapter's coded events find their leads."""
    lead_index = pd.Index(leads["lead_id"].to_numpy())
    # the lookup is built once, under the lock, before any worker looks an id up in it; an
    # adapter's coded events of the reader's own leads, one for one, never need it
    lookup: LeadLookup | None = None

    # the reader's row of each lead of an adapter's coded events, by its lead ids (one array
    # for every batch that shares them, computed once: the workers wait for the first)
    rows_of: dict[int, tuple[pd.Index, np.ndarray]] = {}
    rows_lock = threading.Lock()

    def lead_lookup() -> LeadLookup:
        nonlocal lookup
        if lookup is None:
            lookup = LeadLookup(lead_index)
        return lookup

    def rows_for(ids: pd.Index) -> np.ndarray:
        with rows_lock:
            known = rows_of.get(id(ids))
            if known is None or known[0] is not ids:
                known = (ids, lead_rows(ids, lead_index, placed))
                rows_of[id(ids)] = known
            return known[1]

    def encode(item: tuple[EventChunk, int]) -> EncodedChunk:
        frame, first_row = item
        if isinstance(frame, CodedEvents):
            return encode_coded_events(frame, rows_for(frame.lead_ids), config.mapping)
        with rows_lock:
            found = lead_lookup()
        return encode_events(frame, found, config.mapping, table, first_row)

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
    arrays = [(p.lead, p.at_ms, p.kind) for p in parts]
    del parts
    log, dropped = sort_event_parts(
        arrays, config.features.chunk_leads, worker_count(config.features.workers)
    )
    report.events_duplicate = dropped
    report.events_kept = len(log)
    return log
