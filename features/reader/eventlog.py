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


def sort_events(
    lead: np.ndarray,
    at_ms: np.ndarray,
    kind: np.ndarray,
    bucket_leads: int = 100_000,
    workers: int = 1,
) -> tuple[EventLog, int]:
    """Sort events by (lead, time, type) and drop exact duplicates; returns the log and the count.

    Events are bucketed by lead range first (a radix pass), then each bucket is sorted on one
    packed int64 key (lead offset | time | type), which is several times faster than lexsort,
    on up to `workers` threads (`sort_keys`).
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
    if bucket_leads > int(lead.max()):  # one bucket: no bucket array to build and search
        n_buckets, starts = 1, np.array([0, n])
    else:
        bucket = (lead // bucket_leads).astype(np.int32)
        n_buckets = int(bucket.max()) + 1
        order = np.argsort(bucket.astype(np.int16) if n_buckets < 2**15 else bucket, kind="stable")
        lead, at_ms, kind, bucket = lead[order], at_ms[order], kind[order], bucket[order]
        del order
        edges = np.arange(n_buckets + 1, dtype=bucket.dtype)  # no int64 copy of `bucket`
        starts = np.searchsorted(bucket, edges, side="left")
        del bucket
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
        sort_keys(key, workers)
        keep = np.ones(key.shape[0], dtype=bool)
        keep[1:] = key[1:] != key[:-1]
        dropped += int(key.shape[0] - keep.sum())
        key = key[keep]
        out_lead.append((key >> (time_bits + 5)).astype(np.int32) + first)
        out_ms.append(((key >> 5) & ((1 << time_bits) - 1)) + base)
        out_kind.append((key & 31).astype(np.int8))
    log = EventLog(np.concatenate(out_lead), np.concatenate(out_ms), np.concatenate(out_kind))
    return log, dropped
