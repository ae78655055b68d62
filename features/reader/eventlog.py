"""Engagement events held as three sorted numpy arrays.

An `EventLog` is (lead index, milliseconds since the epoch, event type index), sorted by lead
and time: 50M events fit in well under a gigabyte, and a single lead posted to the API needs no
pandas machinery at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from features.contract import EVENT_TYPES, ContractError
from features.parallel import ordered_map

#: The int64 value of a missing timestamp (NaT) in milliseconds.
NAT_MS = np.iinfo(np.int64).min
#: Keys sorted by one thread below this many: splitting a small sort costs more than it saves.
PARALLEL_SORT_KEYS = 1_000_000


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


def sort_keys(key: np.ndarray, workers: int = 1) -> None:
    """Sort `key` (int64) in place on up to `workers` threads: the same array as `key.sort()`.

    `partition` first moves the keys (in place, one linear pass) so that no key before a split
    is larger than any key after it; the slices between the splits are then sorted side by
    side (numpy releases the GIL while sorting), which leaves the whole array sorted.
    """
    if workers <= 1 or key.shape[0] < PARALLEL_SORT_KEYS:
        key.sort()
        return
    n = key.shape[0]
    splits = [n * i // workers for i in range(1, workers)]
    key.partition(splits)
    edges = [0, *splits, n]

    def sort_slice(bounds: tuple[int, int]) -> None:
        key[bounds[0] : bounds[1]].sort()

    for _ in ordered_map(sort_slice, list(pairwise(edges)), workers):
        pass


#: One part of the events before sorting: lead index (int32), ms (int64), type index (int8).
EventArrays = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Events per slice of the element-wise passes that threads share (a few MB per array).
SLICE_EVENTS = 1 << 22


def _pieces(sizes: list[int]) -> list[tuple[int, int, int, int]]:
    """Slices of consecutive parts as (part, start, stop, offset in the whole)."""
    pieces, offset, size = [], 0, SLICE_EVENTS
    for part, n in enumerate(sizes):
        pieces += [(part, lo, min(lo + size, n), offset + lo) for lo in range(0, n, size)]
        offset += n
    return pieces


def _pack(
    parts: list[EventArrays], first: int, base: int, time_bits: int, workers: int
) -> np.ndarray:
    """One int64 key per event, (lead - first) | time - base | type, packed slice by slice on
    up to `workers` threads straight from the parts (no concatenated copy of them)."""
    sizes = [p[0].shape[0] for p in parts]
    key = np.empty(sum(sizes), dtype=np.int64)

    def pack(piece: tuple[int, int, int, int]) -> None:
        part, lo, hi, at = piece
        lead, at_ms, kind = parts[part]
        k = key[at : at + hi - lo]
        k[...] = lead[lo:hi]
        if first:
            k -= first
        k <<= time_bits + 5
        t = at_ms[lo:hi] - base
        t <<= 5
        k |= t
        k |= kind[lo:hi]

    for _ in ordered_map(pack, _pieces(sizes), workers):
        pass
    return key


def _unpack_distinct(
    key: np.ndarray, first: int, base: int, time_bits: int, workers: int
) -> EventLog:
    """The log of sorted keys, each distinct key once, unpacked slice by slice on threads."""
    pieces = _pieces([key.shape[0]])

    def keep_of(piece: tuple[int, int, int, int]) -> np.ndarray:
        _, lo, hi, _ = piece
        keep = np.empty(hi - lo, dtype=bool)
        keep[0] = lo == 0 or key[lo] != key[lo - 1]
        np.not_equal(key[lo + 1 : hi], key[lo : hi - 1], out=keep[1:])
        return keep

    keeps = list(ordered_map(keep_of, pieces, workers))
    starts = np.concatenate([[0], np.cumsum([np.count_nonzero(k) for k in keeps])])
    total = int(starts[-1])
    lead = np.empty(total, dtype=np.int32)
    at_ms = np.empty(total, dtype=np.int64)
    kind = np.empty(total, dtype=np.int8)
    time_mask = (1 << time_bits) - 1

    def unpack(i: int) -> None:
        _, lo, hi, _ = pieces[i]
        a, b = int(starts[i]), int(starts[i + 1])
        k = key[lo:hi][keeps[i]]
        kind[a:b] = k & 31
        k >>= 5
        lead[a:b] = k >> time_bits
        if first:
            lead[a:b] += first
        k &= time_mask
        k += base
        at_ms[a:b] = k

    for _ in ordered_map(unpack, range(len(pieces)), workers):
        pass
    return EventLog(lead, at_ms, kind)


def sort_events(
    lead: np.ndarray,
    at_ms: np.ndarray,
    kind: np.ndarray,
    bucket_leads: int = 100_000,
    workers: int = 1,
) -> tuple[EventLog, int]:
    """Sort events by (lead, time, type) and drop exact duplicates; returns the log and the count.

    Each event becomes one packed int64 key (lead offset | time | type), several times faster
    to sort than a lexsort; see `sort_event_parts`.
    """
    return sort_event_parts([(lead, at_ms, kind)], bucket_leads, workers)


def small_int_order(values: np.ndarray) -> np.ndarray:
    """The positions that sort non-negative ints stably, as int16 where they fit: numpy sorts
    16-bit ints stably by radix, in linear time (buckets, a few per core or chunk)."""
    fits = len(values) == 0 or int(values.max()) < 2**15
    return np.argsort(values.astype(np.int16) if fits else values, kind="stable")


def sort_event_parts(
    parts: list[EventArrays], bucket_leads: int = 100_000, workers: int = 1
) -> tuple[EventLog, int]:
    """`sort_events` of the events of several parts (the reader's encoded chunks), as if they
    were concatenated: the same log and count of duplicates.

    When every lead fits one packed key beside the time span, the keys are packed from the
    parts directly and sorted once; otherwise the events are bucketed by lead range first (a
    radix pass) and each bucket sorted on its own key. Packing, de-duplicating and unpacking
    run slice by slice and the sort (`sort_keys`) part by part on up to `workers` threads:
    numpy releases the GIL in each, and the slices write disjoint parts of the outputs.
    """
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return EventLog.empty(), 0

    def extremes(piece: tuple[int, int, int, int]) -> tuple[int, int, int]:
        part, lo, hi, _ = piece
        lead, at_ms, _ = parts[part]
        return int(at_ms[lo:hi].min()), int(at_ms[lo:hi].max()), int(lead[lo:hi].max())

    found = list(ordered_map(extremes, _pieces([p[0].shape[0] for p in parts]), workers))
    base = min(f[0] for f in found)
    span = max(f[1] for f in found) - base
    last_lead = max(f[2] for f in found)
    time_bits = max(span.bit_length(), 1)
    n = sum(p[0].shape[0] for p in parts)
    if max(last_lead.bit_length(), 1) + time_bits + 5 <= 63:
        key = _pack(parts, 0, base, time_bits, workers)  # one key for all: no buckets
        sort_keys(key, workers)
        log = _unpack_distinct(key, 0, base, time_bits, workers)
        return log, n - len(log)
    if max((bucket_leads - 1).bit_length(), 1) + time_bits + 5 > 63:
        raise ContractError(
            f"events: column 'occurred_at': the events span {span / 86_400_000 / 365.25:.0f} "
            "years, too long to index; check for wrong dates"
        )
    lead, at_ms, kind = (np.concatenate([p[i] for p in parts]) for i in range(3))
    bucket = (lead // bucket_leads).astype(np.int32)
    n_buckets = int(bucket.max()) + 1
    order = small_int_order(bucket)
    lead, at_ms, kind, bucket = lead[order], at_ms[order], kind[order], bucket[order]
    del order
    edges = np.arange(n_buckets + 1, dtype=bucket.dtype)  # no int64 copy of `bucket`
    starts = np.searchsorted(bucket, edges, side="left")
    del bucket
    logs = []
    for b in range(n_buckets):
        lo, hi = int(starts[b]), int(starts[b + 1])
        if lo == hi:
            continue
        first = b * bucket_leads
        key = _pack([(lead[lo:hi], at_ms[lo:hi], kind[lo:hi])], first, base, time_bits, workers)
        sort_keys(key, workers)
        logs.append(_unpack_distinct(key, first, base, time_bits, workers))
    log = EventLog(
        *(np.concatenate([getattr(g, f) for g in logs]) for f in ("lead", "at_ms", "kind"))
    )
    return log, n - len(log)
