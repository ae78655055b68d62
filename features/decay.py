"""Time-decayed event counts of (lead, cutoff) rows: each event weighs 0.5 ** (age / half-life).

An event of age `a` days at the row's cutoff counts `0.5 ** (a / h)` for half-life `h`: 1 when
it just happened, 0.5 after one half-life. Only events with `occurred_at < cutoff` count, so the
numbers are point in time by construction, like the window counts in `features.engagement`.

How it is computed, without a Python loop per row or per lead, and without overflow:

1. Per event type, the decayed count *as of each event* `D_j = sum_{i <= j} exp(-r (t_j - t_i))`
   (same lead, `r = ln 2 / h`) follows the recurrence `D_j = 1 + f_j D_{j-1}` with the decay
   factor `f_j = exp(-r (t_j - t_{j-1}))` in [0, 1] (0 at the lead's first event, which cuts
   the chain between leads exactly). The recurrence is a scan of affine maps, done in blocks of
   32 consecutive events scanned side by side, the blocks' carries by the same scan one level
   up: O(n) work in a fixed number of vectorised steps, whatever the leads' lengths.
2. Per row, one binary search on packed (lead, time) keys finds the lead's last event `j`
   before the cutoff, and the row's value is `D_j * exp(-r (cutoff - t_j))`.

The textbook alternative, a cumulative sum of `exp(r (t_i - t_first))` rescaled at the cutoff,
overflows after about 1,000 half-lives (three years at a one-day half-life) and, done as one
cumulative sum over all leads, loses the precision of small leads behind large ones. The scan
only multiplies numbers in [0, 1] and adds positive ones, so nothing can overflow, `D_j` lies in
[1, n] and the relative error stays near machine precision whatever the span (1e-13 at a
15-minute half-life over years). A weight below ~1e-308 underflows to 0, its value to the last
bit. Events after a lead's latest cutoff are dropped first: no row counts them.

When each lead has at most one row (a nightly run scores every open lead once, the API one
lead), no event needs the counts as of the events before it: each event's weight at its row's
cutoff, `exp(-r (cutoff - t_i))`, is summed straight into the row's column, for every event
type in one pass over the events. The weights are in [0, 1], so nothing can overflow there
either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.contract import EVENT_TYPES, ContractError
from features.engagement import DAY_MS, NAT_MS
from features.pipeline import row_leads, utc_ms
from features.reader import EventLog, Snapshot

_TYPE_INDEX = {name: i for i, name in enumerate(EVENT_TYPES)}
_BLOCK = 32


def decayed_name(event_type: str) -> str:
    """The column name of an event type's decayed count."""
    return f"decayed_{event_type}"


def decay_rate(half_life_days: float) -> float:
    """Decay rate per millisecond of a half-life in days; raises ValueError unless positive."""
    if not (math.isfinite(half_life_days) and half_life_days > 0):
        raise ValueError(f"a half-life must be a positive number of days, got {half_life_days!r}")
    return math.log(2.0) / (half_life_days * DAY_MS)


def _affine_scan(factor: np.ndarray, step: np.ndarray) -> np.ndarray:
    """`y_i = factor_i * y_{i-1} + step_i` with `y_{-1} = 0` for every i; overwrites both inputs.

    Both arrays are 2-D views (blocks, `_BLOCK`) of consecutive elements; all blocks are scanned
    together one position at a time (a loop of `_BLOCK` vectorised steps), then each block gets
    its carry-in, the value at the end of the block before, by scanning the blocks' end maps the
    same way (recursively, 1/32 of the size).

    Returns:
        `step` holding y.
    """
    if factor.shape[0] == 1:
        # one block (a short history, e.g. the API's one lead): the same multiply-adds in
        # order on Python floats, without a vectorised step per position
        y = 0.0
        scanned = []
        for f, s in zip(factor[0].tolist(), step[0].tolist(), strict=True):
            y = s + f * y
            scanned.append(y)
        step[0] = scanned
        return step
    for j in range(1, factor.shape[1]):
        step[:, j] += factor[:, j] * step[:, j - 1]
        factor[:, j] *= factor[:, j - 1]
    if factor.shape[0] > 1:
        at_end = _affine_scan(*(_blocks(a[:, -1], 0.0) for a in (factor, step)))
        np.multiply(factor[1:], at_end.reshape(-1)[: factor.shape[0] - 1, None], out=factor[1:])
        step[1:] += factor[1:]
    return step


def _blocks(values: np.ndarray, pad: float) -> np.ndarray:
    """`values` padded to whole blocks, as a (blocks, `_BLOCK`) array."""
    n = values.shape[0]
    out = np.full(-(-n // _BLOCK) * _BLOCK, pad, dtype=np.float64)
    out[:n] = values
    return out.reshape(-1, _BLOCK)


def _decayed_at_events(ev_lead: np.ndarray, ev_ms: np.ndarray, rate: float) -> np.ndarray:
    """Each event's decayed count of its lead's events up to and including itself.

    Args:
        ev_lead: lead of each event, sorted with `ev_ms` by (lead, time).
        ev_ms: event times, ms since the epoch.
        rate: decay rate per millisecond (see `decay_rate`).

    Returns:
        `D_j = sum_{i <= j, same lead} exp(-rate (t_j - t_i))`, each in [1, events of the lead].
    """
    n = ev_lead.shape[0]
    if n < 2:
        return np.ones(n, dtype=np.float64)
    # The factor f_j = exp(-rate (t_j - t_{j-1})), computed in place in the padded block buffer;
    # padding (f = 0, step = 0) after the last event changes nothing before it.
    size = -(-n // _BLOCK) * _BLOCK
    factor = np.zeros(size, dtype=np.float64)
    gap = factor[1:n]
    np.subtract(ev_ms[1:], ev_ms[:-1], out=gap)
    np.maximum(gap, 0.0, out=gap)  # negative only across leads, zeroed below
    np.multiply(gap, -rate, out=gap)
    np.exp(gap, out=gap)
    gap[ev_lead[1:] != ev_lead[:-1]] = 0.0  # a lead's first event carries nothing in
    step = np.zeros(size, dtype=np.float64)
    step[:n] = 1.0
    at = _affine_scan(factor.reshape(-1, _BLOCK), step.reshape(-1, _BLOCK))
    return at.reshape(-1)[:n]


def _last_before(
    ev_lead: np.ndarray, ev_ms: np.ndarray, row_lead: np.ndarray, row_cutoff_ms: np.ndarray
) -> np.ndarray:
    """Per row, the index of its lead's last event before the cutoff; -1 if there is none.

    One binary search on int64 keys packing (lead, time since a base), like
    `features.engagement`; leads are taken in ranges small enough for the key to fit.
    """
    last = np.full(row_lead.shape[0], -1, dtype=np.int64)
    if ev_lead.shape[0] == 0 or row_lead.shape[0] == 0:
        return last
    base = min(int(ev_ms.min()), int(row_cutoff_ms.min()))
    time_bits = (max(int(ev_ms.max()), int(row_cutoff_ms.max())) - base + 1).bit_length()
    if time_bits > 60:
        raise ValueError("timestamps span too long a time to index; check for wrong dates")
    per_range = 1 << (62 - time_bits)
    n_leads = int(max(ev_lead.max(), row_lead.max())) + 1
    for first in range(0, n_leads, per_range):
        stop = first + per_range
        e0, e1 = (int(i) for i in np.searchsorted(ev_lead, [first, stop], side="left"))
        rows = (
            np.flatnonzero((row_lead >= first) & (row_lead < stop))
            if n_leads > per_range
            else np.arange(row_lead.shape[0])
        )
        key = (ev_lead[e0:e1].astype(np.int64) - first) << time_bits
        key |= ev_ms[e0:e1] - base
        row_key = (row_lead[rows].astype(np.int64) - first) << time_bits
        row_key |= row_cutoff_ms[rows] - base
        before = e0 + np.searchsorted(key, row_key, side="left") - 1  # the last key below
        ours = (before >= e0) & (ev_lead[np.maximum(before, 0)] == row_lead[rows])
        last[rows] = np.where(ours, before, -1)
    return last


def decayed_sums(
    ev_lead: np.ndarray,
    ev_ms: np.ndarray,
    row_lead: np.ndarray,
    row_cutoff_ms: np.ndarray,
    half_life_days: float,
) -> np.ndarray:
    """Per row, the sum of `0.5 ** (age_days / half_life_days)` over its lead's earlier events.

    Args:
        ev_lead: lead of each event (of one type), sorted with `ev_ms` by (lead, time).
        ev_ms: event times, ms since the epoch.
        row_lead: lead of each row.
        row_cutoff_ms: the row's cutoff, ms since the epoch; events at or after it do not count.
        half_life_days: days after which an event counts half.
    """
    rate = decay_rate(half_life_days)
    out = np.zeros(row_lead.shape[0], dtype=np.float64)
    if ev_lead.shape[0] == 0 or row_lead.shape[0] == 0:
        return out
    last = _last_before(ev_lead, ev_ms, row_lead, row_cutoff_ms)
    hit = last >= 0
    last = last[hit]
    at_last = _decayed_at_events(ev_lead, ev_ms, rate)[last]
    age = (row_cutoff_ms[hit] - ev_ms[last]).astype(np.float64)
    out[hit] = at_last * np.exp(-rate * age)
    return out


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenated index ranges [lo, hi), vectorised."""
    lengths = hi - lo
    before = np.cumsum(lengths) - lengths
    return np.repeat(lo - before, lengths) + np.arange(int(lengths.sum()))


def _relevant_events(
    events: EventLog, row_lead: np.ndarray, row_cutoff_ms: np.ndarray, n_leads: int
) -> EventLog:
    """The events of the rows' leads, without those after the lead's latest cutoff (no row
    counts them) when that drops many."""
    present = np.zeros(n_leads, dtype=bool)
    present[row_lead] = True
    leads = np.flatnonzero(present)
    if leads.shape[0] * 4 <= n_leads:  # few leads (e.g. one, from the API): take their events
        keep = _ranges(
            np.searchsorted(events.lead, leads, side="left"),
            np.searchsorted(events.lead, leads, side="right"),
        )
        events = EventLog(events.lead[keep], events.at_ms[keep], events.kind[keep])
    latest = np.full(n_leads, NAT_MS, dtype=np.int64)
    np.maximum.at(latest, row_lead, row_cutoff_ms)
    # Dropping pays only when it drops many (not when scoring as of now): look at a sample.
    sample = slice(None, None, max(len(events) // 65_536, 1))
    if len(events) == 0 or (events.at_ms[sample] < latest[events.lead[sample]]).mean() > 0.8:
        return events
    counted = events.at_ms < latest[events.lead]
    return EventLog(events.lead[counted], events.at_ms[counted], events.kind[counted])


def check_half_lives(half_life_days: Mapping[str, float]) -> None:
    """Raises ValueError for an event type outside the contract or a half-life that is not a
    positive number of days."""
    unknown = [t for t in half_life_days if t not in _TYPE_INDEX]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; the contract has {list(EVENT_TYPES)}")
    for half_life in half_life_days.values():
        decay_rate(half_life)


def decayed_of_events(
    events: EventLog,
    row_lead: np.ndarray,
    cutoff_ms: np.ndarray,
    half_life_days: Mapping[str, float],
) -> dict[str, np.ndarray]:
    """Per row (lead position, cutoff), the decayed count of each event type asked for, on
    plain arrays (`events` sorted by lead and time): `decayed_counts` for a snapshot, and
    the scoring API for its one lead."""
    row_of_lead = _row_of_lead(events, row_lead)
    if row_of_lead is not None:
        return _decayed_at_cutoffs(events, row_of_lead, cutoff_ms, half_life_days)
    columns: dict[str, np.ndarray] = {}
    for event_type, half_life in half_life_days.items():
        of_type = np.flatnonzero(events.kind == _TYPE_INDEX[event_type])
        columns[decayed_name(event_type)] = decayed_sums(
            events.lead[of_type], events.at_ms[of_type], row_lead, cutoff_ms, half_life
        )
    return columns


def _row_of_lead(events: EventLog, row_lead: np.ndarray) -> np.ndarray | None:
    """Each lead's row (-1: none), indexed by lead position up to the last lead of the rows
    and events; None when a lead has several rows."""
    last = max(int(row_lead.max(initial=-1)), int(events.lead.max(initial=-1)))
    row_of_lead = np.full(last + 1, -1, dtype=np.int64)
    rows = np.arange(row_lead.shape[0])
    row_of_lead[row_lead] = rows  # of a lead with several rows, the last one stays
    if (row_of_lead[row_lead] != rows).any():
        return None
    return row_of_lead


def _decayed_at_cutoffs(
    events: EventLog,
    row_of_lead: np.ndarray,
    cutoff_ms: np.ndarray,
    half_life_days: Mapping[str, float],
) -> dict[str, np.ndarray]:
    """`decayed_of_events` where each lead has at most one row (`row_of_lead`): each event
    of a type asked for, before its row's cutoff, adds its weight at that cutoff."""
    n_rows, n_types = cutoff_ms.shape[0], len(half_life_days)
    if n_rows == 0 or events.lead.shape[0] == 0:
        return {decayed_name(t): np.zeros(n_rows, dtype=np.float64) for t in half_life_days}
    column = np.full(len(EVENT_TYPES), -1, dtype=np.int64)
    rate = np.empty(n_types, dtype=np.float64)
    for j, (event_type, half_life) in enumerate(half_life_days.items()):
        column[_TYPE_INDEX[event_type]] = j
        rate[j] = decay_rate(half_life)
    # whole-array steps, no compaction: an event that does not count weighs 0 in slot 0
    row = row_of_lead[events.lead]
    of_type = column[events.kind]
    age = cutoff_ms[row] - events.at_ms  # row -1 (no row) is masked below
    counted = (row >= 0) & (of_type >= 0) & (age > 0)  # strictly before the cutoff
    np.maximum(age, 0, out=age)
    weight = rate[of_type] * age
    np.negative(weight, out=weight)
    np.exp(weight, out=weight)
    weight[~counted] = 0.0
    row *= n_types
    row += of_type
    row[~counted] = 0
    sums = np.bincount(row, weights=weight, minlength=n_rows * n_types)
    sums = sums.reshape(n_rows, n_types)
    return {
        decayed_name(event_type): np.ascontiguousarray(sums[:, j])
        for j, event_type in enumerate(half_life_days)
    }


def decayed_counts(
    snapshot: Snapshot,
    rows: pd.DataFrame,
    half_life_days: Mapping[str, float],
    *,
    row_lead: np.ndarray | None = None,
) -> pd.DataFrame:
    """Time-decayed event counts of each (lead_id, cutoff) row, one column per event type.

    Args:
        snapshot: the snapshot whose events are counted.
        rows: lead_id and cutoff (UTC timestamps) per row.
        half_life_days: event type -> half-life in days, for each column wanted.
        row_lead: each row's lead position, when the caller knows it (`row_leads` otherwise).

    Returns:
        A frame aligned with `rows` (same index) with a float column `decayed_<event_type>` per
        event type: the sum over the lead's events of that type with `occurred_at < cutoff` of
        `0.5 ** (age_days / half_life)`. A flat snapshot (no events) gives NaN: unknown.
    """
    check_half_lives(half_life_days)
    names = [decayed_name(t) for t in half_life_days]
    if snapshot.flat:
        return pd.DataFrame(np.nan, index=rows.index, columns=names, dtype=np.float64)
    row_lead = row_leads(snapshot, rows) if row_lead is None else row_lead
    cutoff_ms = utc_ms(rows["cutoff"])
    if (cutoff_ms == NAT_MS).any():
        raise ContractError(
            "rows: column 'cutoff': every row of a timestamped snapshot needs a cutoff"
        )
    events = _relevant_events(snapshot.events, row_lead, cutoff_ms, len(snapshot.leads))
    columns = decayed_of_events(events, row_lead, cutoff_ms, half_life_days)
    return pd.DataFrame(columns, index=rows.index, columns=names, dtype=np.float64)
