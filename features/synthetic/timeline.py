"""The calendar of a snapshot (seasonal lead and event days), accounts and campaigns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.synthetic.arrays import DAY, FloatArray, IntArray
from features.synthetic.vocab import (
    CAMPAIGN_KIND_SHARES,
    CAMPAIGN_KINDS,
    CAMPAIGN_TOPICS,
    NEWSLETTER,
)


@dataclass(frozen=True)
class Timeline:
    """The snapshot's calendar; internal times are whole seconds after t0."""

    t0: pd.Timestamp  # midnight UTC of the first day; all internal times are seconds after it
    as_of: int  # seconds after t0
    lead_cdf: FloatArray  # cumulative share of lead creation per day (seasonal, growing)
    event_keep: FloatArray  # per day, probability that a generated event is kept (seasonality)


def utc(value: str | pd.Timestamp) -> pd.Timestamp:
    """A time as a UTC timestamp; naive means UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def build_timeline(as_of: pd.Timestamp, months: int) -> Timeline:
    """The calendar of `months` before as_of: seasonal, growing lead days and event thinning."""
    t0 = (as_of - pd.DateOffset(months=months)).floor("D")
    horizon = int((as_of - t0).total_seconds())
    n_days = max(1, -(-horizon // DAY))
    days = pd.date_range(t0, periods=n_days, freq="D")
    weekday = np.asarray(days.day_of_week)
    month = np.asarray(days.month)
    dom = np.asarray(days.day)
    week = np.select([weekday == 5, weekday == 6], [0.3, 0.25], 1.0)
    holiday = ((month == 12) & (dom >= 20)) | ((month == 1) & (dom <= 2))
    season = np.where(holiday, 0.35, np.where(month == 8, 0.65, 1.0))
    trend = 1.0 + 0.5 * np.arange(n_days) / n_days
    weight = week * season * trend
    if horizon % DAY:
        weight[-1] *= (horizon % DAY) / DAY
    event_week = np.select([weekday == 5, weekday == 6], [0.35, 0.3], 1.0)
    event_season = np.where(holiday, 0.4, np.where(month == 8, 0.75, 1.0))
    return Timeline(
        t0=t0,
        as_of=horizon,
        lead_cdf=np.cumsum(weight) / weight.sum(),
        event_keep=np.asarray(event_week * event_season, dtype=np.float64),
    )


def account_sizes(rng: np.random.Generator, n_leads: int) -> IntArray:
    """Leads per account: heavy tailed, ~3 on average, some 20+, summing to n_leads."""
    parts: list[IntArray] = []
    total = 0
    while total < n_leads:
        batch = max(16, (n_leads - total) // 2)
        sizes = 1 + np.floor(np.exp(rng.normal(0.45, 1.0, batch))).astype(np.int64)
        sizes = np.minimum(sizes, 250)
        parts.append(sizes)
        total += int(sizes.sum())
    sizes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    ends = np.cumsum(sizes)
    n_accounts = int(np.searchsorted(ends, n_leads, side="left")) + 1 if n_leads else 0
    sizes = sizes[:n_accounts].copy()
    if n_accounts:
        sizes[-1] -= int(ends[n_accounts - 1]) - n_leads
    return sizes


def chunk_bounds(sizes: IntArray, chunk_leads: int) -> list[tuple[int, int]]:
    """Split accounts into chunks of about chunk_leads leads: (first account, stop account)."""
    if not len(sizes):
        return []
    before = np.cumsum(sizes) - sizes
    chunk_of = before // chunk_leads
    starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
    stops = np.append(starts[1:], len(sizes))
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


@dataclass(frozen=True)
class Campaigns:
    """Marketing campaigns of the whole snapshot, shared by all chunks."""

    start: IntArray  # seconds after t0, sorted
    kind: IntArray  # index into CAMPAIGN_KINDS
    names: tuple[str, ...]  # one per campaign, then the newsletter


def draw_campaigns(rng: np.random.Generator, tl: Timeline) -> Campaigns:
    """About one campaign every three days, on seasonal days, with a kind, topic and name."""
    n_days = len(tl.lead_cdf)
    count = max(4, int(n_days / 3))
    day = np.searchsorted(tl.lead_cdf, rng.random(count), side="right")
    start = np.sort(day * DAY + rng.integers(8 * 3600, 18 * 3600, count))
    start = np.minimum(start, tl.as_of - 1)
    kind = rng.choice(len(CAMPAIGN_KINDS), size=count, p=CAMPAIGN_KIND_SHARES)
    topic = rng.integers(0, len(CAMPAIGN_TOPICS), count)
    months = (tl.t0 + pd.to_timedelta(start, unit="s")).strftime("%Y-%m")
    names = tuple(
        f"{m}_{CAMPAIGN_KINDS[k]}_{CAMPAIGN_TOPICS[t]}"
        for m, k, t in zip(months, kind, topic, strict=True)
    )
    return Campaigns(
        start=start.astype(np.int64), kind=kind.astype(np.int64), names=(*names, NEWSLETTER)
    )
