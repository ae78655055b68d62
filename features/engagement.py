"""Engagement and account features of (lead, cutoff) rows, from an `EventLog`, in numpy.

Point in time by construction: every count is a binary search for the cutoff in keys sorted
by (lead, time), so only events with `occurred_at < cutoff` are ever counted, and the same
code gives the same numbers for one lead posted to the API or a million in a batch.

Each call handles one chunk of whole accounts; keys pack (lead offset, milliseconds since a
chunk base) into one int64 so that a single `searchsorted` finds where a window starts or
ends among the lead's events. The counts per event type (and of active days) are the
differences of prefix sums between those positions, so each row is searched for once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.contract import EVENT_TYPES

DAY_MS = 86_400_000
NAT_MS = np.iinfo(np.int64).min


@dataclass(frozen=True)
class ChunkLeads:
    """The leads of one chunk: account index per lead (-1: none) and their timestamps in ms."""

    account: np.ndarray
    created_ms: np.ndarray
    mql_ms: np.ndarray
    sql_ms: np.ndarray


def engagement_names(windows: Sequence[int]) -> list[str]:
    """Names of the engagement features, in output order."""
    names: list[str] = []
    for event_type in EVENT_TYPES:
        names += [f"n_{event_type}_{w}d" for w in windows] + [f"n_{event_type}_all"]
        names.append(f"days_since_{event_type}")
    names += [f"n_events_{w}d" for w in windows] + ["n_events_all", "days_since_last_event"]
    names += [f"active_days_{w}d" for w in windows] + ["active_days_all"]
    if len(windows) >= 2:
        names.append(trend_name(windows))
    names += ["days_since_created", "days_since_mql"]
    return names


def account_names(windows: Sequence[int]) -> list[str]:
    """Names of the account features, in output order."""
    return [
        "account_other_leads",
        "account_other_mqls",
        "account_other_sqls",
        *[f"account_other_events_{w}d" for w in windows],
        "account_other_events_all",
    ]


def trend_name(windows: Sequence[int]) -> str:
    return f"trend_{windows[-2]}d_vs_{windows[-1]}d"


def _counts(
    keys: np.ndarray, row_key: np.ndarray, row_start: np.ndarray, windows_ms: Sequence[int]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Per row: index just past the last key < cutoff, counts per window, and the all-time count."""
    hi = np.searchsorted(keys, row_key, side="left")
    per_window = [hi - np.searchsorted(keys, row_key - w, side="left") for w in windows_ms]
    return hi, per_window, hi - np.searchsorted(keys, row_start, side="left")


def _days_since(
    keys: np.ndarray, hi: np.ndarray, n_all: np.ndarray, row_rel: np.ndarray, time_mask: int
) -> np.ndarray:
    """Days from each row's last key before the cutoff to the cutoff; NaN if there was none."""
    last = keys[np.maximum(hi - 1, 0)] & time_mask if keys.size else np.zeros_like(hi)
    days = (row_rel - last) / DAY_MS
    return np.where(n_all > 0, days, np.nan)


def _prefix(flags: np.ndarray) -> np.ndarray:
    """How many of `flags` are set before each position (0..n), as int32: the count of flagged
    events in positions [lo, hi) is `prefix[hi] - prefix[lo]`."""
    prefix = np.zeros(flags.shape[0] + 1, dtype=np.int32)
    np.cumsum(flags, dtype=np.int32, out=prefix[1:])
    return prefix


def _days_since_nth(
    ev_ms: np.ndarray,
    flagged: np.ndarray,
    rank: np.ndarray,
    n_lead: np.ndarray,
    row_cutoff_ms: np.ndarray,
) -> np.ndarray:
    """Days from each row's last flagged event before the cutoff to the cutoff (NaN if the lead
    had none): that event is the `rank`-th flagged one (`flagged`: their positions)."""
    if not flagged.size:
        return np.full(rank.shape[0], np.nan)
    last = ev_ms[flagged[np.maximum(rank - 1, 0)]]
    return np.where(n_lead > 0, (row_cutoff_ms - last) / DAY_MS, np.nan)


def chunk_features(
    ev_lead: np.ndarray,
    ev_ms: np.ndarray,
    ev_kind: np.ndarray,
    row_lead: np.ndarray,
    row_cutoff_ms: np.ndarray,
    leads: ChunkLeads,
    windows: Sequence[int],
) -> dict[str, np.ndarray]:
    """Engagement and account features for rows of one chunk.

    Args:
        ev_lead: lead offset within the chunk of each event, sorted with `ev_ms` by (lead, time).
        ev_ms: event times, ms since the epoch.
        ev_kind: event type index (into EVENT_TYPES).
        row_lead: lead offset within the chunk of each row.
        row_cutoff_ms: the row's cutoff, ms since the epoch.
        leads: accounts and timestamps of the chunk's leads.
        windows: window lengths in days, ascending.
    """
    n_leads = leads.account.shape[0]
    windows_ms = [w * DAY_MS for w in windows]
    reach = max(windows_ms)
    lead_times = np.concatenate([leads.created_ms, leads.mql_ms, leads.sql_ms])
    lead_times = lead_times[lead_times != NAT_MS]
    lows = [int(row_cutoff_ms.min()) - reach - 1] if row_cutoff_ms.size else [0]
    highs = [int(row_cutoff_ms.max()) + 1] if row_cutoff_ms.size else [1]
    for values in (ev_ms, lead_times):
        if values.size:
            lows.append(int(values.min()))
            highs.append(int(values.max()) + 1)
    base = min(lows)
    time_bits = max(max(highs) - base, 1).bit_length()
    lead_bits = max(n_leads, 1).bit_length()
    if time_bits + lead_bits > 62:
        raise ValueError("timestamps span too long a time to index; check for wrong dates")
    mask = (1 << time_bits) - 1

    key = (ev_lead.astype(np.int64) << time_bits) | (ev_ms - base)
    row_rel = row_cutoff_ms - base
    row_start = row_lead.astype(np.int64) << time_bits
    row_key = row_start | row_rel
    out: dict[str, np.ndarray] = {}

    # every count is of events in [row_key - w, row_key) or [lead start, row_key): found once
    # in all the events, then counted per type (and per first event of a day) by prefix sums
    hi, per_window, n_all = _counts(key, row_key, row_start, windows_ms)
    lows = [hi - n for n in per_window]
    start = hi - n_all
    for k, event_type in enumerate(EVENT_TYPES):
        of_type = ev_kind == k
        before = _prefix(of_type)
        at_hi = before[hi]
        for w, lo in zip(windows, lows, strict=True):
            out[f"n_{event_type}_{w}d"] = at_hi - before[lo]
        n_type = at_hi - before[start]
        out[f"n_{event_type}_all"] = n_type
        out[f"days_since_{event_type}"] = _days_since_nth(
            ev_ms, np.flatnonzero(of_type), at_hi, n_type, row_cutoff_ms
        )

    for w, n in zip(windows, per_window, strict=True):
        out[f"n_events_{w}d"] = n.astype(np.int32)
    out["n_events_all"] = n_all.astype(np.int32)
    out["days_since_last_event"] = _days_since(key, hi, n_all, row_rel, mask)

    # A day counts as active once its first event is before the cutoff.
    day = ev_ms // DAY_MS
    first_of_day = np.ones(key.shape[0], dtype=bool)
    first_of_day[1:] = (ev_lead[1:] != ev_lead[:-1]) | (day[1:] != day[:-1])
    before = _prefix(first_of_day)
    at_hi = before[hi]
    for w, lo in zip(windows, lows, strict=True):
        out[f"active_days_{w}d"] = at_hi - before[lo]
    out["active_days_all"] = at_hi - before[start]

    if len(windows) >= 2:
        # log of the recent rate over the earlier rate, both per (wide - recent) days, +1 smoothed:
        # 0 means steady (or no activity), > 0 warming up, < 0 cooling down.
        recent, wide = per_window[-2], per_window[-1]
        scale = (windows[-1] - windows[-2]) / windows[-2]
        out[trend_name(windows)] = np.log((recent * scale + 1) / (wide - recent + 1))

    created = leads.created_ms[row_lead]
    out["days_since_created"] = np.where(
        created != NAT_MS, (row_cutoff_ms - created) / DAY_MS, np.nan
    )
    mql = leads.mql_ms[row_lead]
    out["days_since_mql"] = np.where(
        (mql != NAT_MS) & (mql <= row_cutoff_ms), (row_cutoff_ms - mql) / DAY_MS, np.nan
    )
    out.update(
        _account_features(
            ev_lead,
            ev_ms,
            row_lead,
            row_cutoff_ms,
            leads,
            windows_ms,
            windows,
            base,
            time_bits,
            out,
        )
    )
    return out


def _before(times: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    return (times != NAT_MS) & (times < cutoff)


def _account_features(
    ev_lead: np.ndarray,
    ev_ms: np.ndarray,
    row_lead: np.ndarray,
    row_cutoff_ms: np.ndarray,
    leads: ChunkLeads,
    windows_ms: Sequence[int],
    windows: Sequence[int],
    base: int,
    time_bits: int,
    own: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """What the lead's account did before the cutoff, without the lead itself.

    Leads with no account get NaN: "no other leads" and "unknown account" are different facts.
    """
    has_account = leads.account >= 0
    # Leads without an account become singletons past the real accounts, so keys stay valid.
    n_real = int(leads.account.max()) + 1 if has_account.any() else 0
    account = np.where(has_account, leads.account, n_real + np.arange(leads.account.shape[0]))
    account = account.astype(np.int64)
    row_account = account[row_lead]
    row_rel = row_cutoff_ms - base
    row_start = row_account << time_bits
    row_key = row_start | row_rel
    out: dict[str, np.ndarray] = {}

    for name, times in (
        ("account_other_leads", leads.created_ms),
        ("account_other_mqls", leads.mql_ms),
        ("account_other_sqls", leads.sql_ms),
    ):
        known = times != NAT_MS
        keys = np.sort((account[known] << time_bits) | (times[known] - base))
        _, _, n = _counts(keys, row_key, row_start, ())
        out[name] = (n - _before(times[row_lead], row_cutoff_ms)).astype(np.float64)

    # events come sorted by (lead, time) and leads by account: sorted runs, which timsort merges
    keys = np.sort((account[ev_lead] << time_bits) | (ev_ms - base), kind="stable")
    _, per_window, n_all = _counts(keys, row_key, row_start, windows_ms)
    for w, n in zip(windows, per_window, strict=True):
        out[f"account_other_events_{w}d"] = (n - own[f"n_events_{w}d"]).astype(np.float64)
    out["account_other_events_all"] = (n_all - own["n_events_all"]).astype(np.float64)

    no_account = ~has_account[row_lead]
    for values in out.values():
        values[no_account] = np.nan
    return out
