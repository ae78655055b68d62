"""Engagement: each lead's events (campaign bursts, decaying background, intent), its MQL
moment by the generator's points rule, and the messy order events are written in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from features.synthetic.arrays import DAY, BoolArray, FloatArray, IntArray, segment_starts
from features.synthetic.leads import Leads
from features.synthetic.timeline import Campaigns, Timeline
from features.synthetic.vocab import (
    CAMPAIGN_KINDS,
    EVENT_CODE,
    HAND_RAISERS,
    INTENT_MIX,
    MQL_POINTS,
    MQL_THRESHOLD,
    N_EVENT_TYPES,
    SITE,
    TYPE_MIX,
    UNKNOWN_EVENT_TYPES,
    URLS,
)


@dataclass
class Events:
    """Raw events of a chunk as codes, one entry per event."""

    lead: IntArray
    time: IntArray
    etype: IntArray
    campaign: IntArray  # -1 missing
    url: IntArray  # -1 missing


def _type_probabilities(mix: Mapping[str, float]) -> FloatArray:
    """A type mix as a probability vector over WRITTEN_EVENT_TYPES."""
    p = np.zeros(N_EVENT_TYPES)
    for name, weight in mix.items():
        p[EVENT_CODE[name]] = weight
    return p / p.sum()


def _draw_types(rng: np.random.Generator, group: IntArray, upgrade: BoolArray) -> IntArray:
    """Event types per group (0 background, 1.. campaign kinds); upgraded events show intent."""
    etype = np.empty(len(group), dtype=np.int64)
    mixes = [TYPE_MIX["background"], *(TYPE_MIX[k] for k in CAMPAIGN_KINDS)]
    for g, mix in enumerate(mixes):
        sel = np.flatnonzero(group == g)
        etype[sel] = rng.choice(N_EVENT_TYPES, size=len(sel), p=_type_probabilities(mix))
    sel = np.flatnonzero(upgrade)
    etype[sel] = rng.choice(N_EVENT_TYPES, size=len(sel), p=_type_probabilities(INTENT_MIX))
    unknown = np.flatnonzero(rng.random(len(group)) < 0.005)
    etype[unknown] = EVENT_CODE[UNKNOWN_EVENT_TYPES[0]] + rng.integers(
        0, len(UNKNOWN_EVENT_TYPES), len(unknown)
    )
    return etype


def url_vocabulary() -> tuple[list[str], IntArray, IntArray]:
    """All URLs, and per event type the [low, high) range of its URLs (empty: no URL)."""
    urls: list[str] = []
    low = np.zeros(N_EVENT_TYPES, dtype=np.int64)
    high = np.zeros(N_EVENT_TYPES, dtype=np.int64)
    for name, paths in URLS.items():
        low[EVENT_CODE[name]] = len(urls)
        urls += [SITE + p for p in paths]
        high[EVENT_CODE[name]] = len(urls)
    return urls, low, high


def _event_times(
    rng: np.random.Generator, tl: Timeline, leads: Leads, camps: Campaigns, lam: FloatArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Draw (lead, time, campaign or -1) of raw events: campaign bursts plus decaying background."""
    n = len(leads.created)
    horizon_days = np.exp(rng.normal(np.log(45.0), 0.8, n))
    # Bursts: campaigns a lead takes part in, mostly soon after it was created.
    k = rng.poisson(2.2 * np.sqrt(leads.activity))
    burst_lead = np.repeat(np.arange(n, dtype=np.int64), k)
    per_day = len(camps.start) / max(len(tl.lead_cdf), 1)
    first = np.searchsorted(camps.start, leads.created[burst_lead], side="left")
    burst_camp = first + np.floor(rng.exponential(horizon_days[burst_lead] * per_day)).astype(
        np.int64
    )
    ok = burst_camp < len(camps.start)
    burst_lead, burst_camp = burst_lead[ok], burst_camp[ok]
    n_bursts = np.bincount(burst_lead, minlength=n).astype(np.int64)
    burst_first = segment_starts(n_bursts)
    # Events per lead, then each event's component.
    count = rng.poisson(lam)
    lead = np.repeat(np.arange(n, dtype=np.int64), count)
    m = len(lead)
    in_burst = (n_bursts[lead] > 0) & (rng.random(m) < 0.6)
    b = burst_first[lead] + np.floor(rng.random(m) * n_bursts[lead]).astype(np.int64)
    camp = np.where(
        in_burst,
        burst_camp[np.minimum(b, max(len(burst_camp) - 1, 0))] if len(burst_camp) else -1,
        -1,
    )
    camp_start = (
        camps.start[np.maximum(camp, 0)] if len(camps.start) else np.zeros(m, dtype=np.int64)
    )
    burst_offset = rng.exponential(1.5 * DAY, m)
    decay_offset = rng.exponential(horizon_days[lead] * DAY)
    late = rng.random(m) < 0.15
    uniform_offset = rng.random(m) * np.maximum(tl.as_of - leads.created[lead], 1)
    base = np.where(in_burst, np.maximum(camp_start, leads.created[lead]), leads.created[lead])
    offset = np.where(in_burst, burst_offset, np.where(late, uniform_offset, decay_offset))
    time = base + 1 + np.floor(offset).astype(np.int64)
    return lead, time, np.where(in_burst, camp, -1)


def draw_events(
    rng: np.random.Generator,
    tl: Timeline,
    leads: Leads,
    camps: Campaigns,
    events_per_lead: float,
) -> Events:
    """Draw each lead's events, thin them by season, give campaigns and URLs, de-duplicate."""
    lam = events_per_lead * 1.37 * leads.activity
    lead, time, camp = _event_times(rng, tl, leads, camps, lam)
    group = np.where(camp >= 0, camps.kind[np.maximum(camp, 0)] + 1, 0)
    upgrade_p = np.minimum(0.012 * np.exp(0.9 * leads.intent), 0.35)[lead]
    etype = _draw_types(rng, group, rng.random(len(lead)) < upgrade_p)
    # Seasonality (weekends, August, year end) and a declining email open rate thin the stream.
    day = np.clip(time // DAY, 0, len(tl.event_keep) - 1)
    keep = tl.event_keep[day]
    keep = keep * np.where(
        etype == EVENT_CODE["email_open"], 1.0 - 0.35 * time / max(tl.as_of, 1), 1.0
    )
    kept = (rng.random(len(lead)) < keep) & (time <= tl.as_of)
    lead, time, etype, camp = lead[kept], time[kept], etype[kept], camp[kept]
    # Campaign column: burst campaign (10% lost); background mail is the newsletter, background
    # ads belong to the latest paid-social campaign.
    m = len(lead)
    newsletter = len(camps.names) - 1
    is_mail = np.isin(
        etype,
        [EVENT_CODE["email_open"], EVENT_CODE["email_click"], EVENT_CODE["email_unsubscribe"]],
    )
    paid = np.flatnonzero(camps.kind == CAMPAIGN_KINDS.index("paid_social"))
    latest_paid = (
        np.searchsorted(camps.start[paid], time, side="right") - 1 if len(paid) else np.full(m, -1)
    )
    is_ad = np.isin(etype, [EVENT_CODE["ad_click"], EVENT_CODE["social_engagement"]]) & (
        latest_paid >= 0
    )
    background = np.where(
        is_mail,
        newsletter,
        np.where(is_ad, paid[np.maximum(latest_paid, 0)] if len(paid) else -1, -1),
    )
    campaign = np.where(camp >= 0, np.where(rng.random(m) < 0.1, -1, camp), background)
    _, low, high = url_vocabulary()
    has_url = (high[etype] > low[etype]) & (rng.random(m) < 0.95)
    url = np.where(
        has_url, low[etype] + np.floor(rng.random(m) * (high - low)[etype]).astype(np.int64), -1
    )
    return dedupe_sorted(Events(lead=lead, time=time, etype=etype, campaign=campaign, url=url))


def dedupe_sorted(ev: Events) -> Events:
    """Sort by (lead, time) and keep one event per (lead, second, type as a reader sees it).

    Readers may drop duplicates on (lead_id, occurred_at, event_type) with every unknown type
    read as `other`, or on all columns; making raw events unique on the narrower key keeps the
    truth's counts right under either rule (the injected duplicates are identical rows).
    """
    kind = np.minimum(ev.etype, EVENT_CODE[UNKNOWN_EVENT_TYPES[0]])  # unknown types collapse to one
    order = np.lexsort((ev.url, ev.campaign, kind, ev.time, ev.lead))
    lead, time, kind_sorted = ev.lead[order], ev.time[order], kind[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (
        (lead[1:] != lead[:-1]) | (time[1:] != time[:-1]) | (kind_sorted[1:] != kind_sorted[:-1])
    )
    rows = order[keep]
    return Events(
        lead=ev.lead[rows],
        time=ev.time[rows],
        etype=ev.etype[rows],
        campaign=ev.campaign[rows],
        url=ev.url[rows],
    )


def mql_times(
    rng: np.random.Generator, tl: Timeline, ev: Events, n_leads: int
) -> tuple[IntArray, IntArray]:
    """(trigger event index, mql time) per lead; -1 when the lead is no MQL by as_of.

    A lead becomes an MQL when its running points first reach the threshold or it raises its
    hand; mql_at follows the trigger by minutes to hours.
    """
    delay = np.clip(np.exp(rng.normal(np.log(2400.0), 1.0, n_leads)), 300, 6 * 3600)
    if not len(ev.lead):
        none = np.full(n_leads, -1, dtype=np.int64)
        return none, none.copy()
    points = np.zeros(N_EVENT_TYPES, dtype=np.int64)
    for name, value in MQL_POINTS.items():
        points[EVENT_CODE[name]] = value
    hand = np.zeros(N_EVENT_TYPES, dtype=bool)
    hand[[EVENT_CODE[h] for h in HAND_RAISERS]] = True
    cum = np.cumsum(points[ev.etype])
    counts = np.bincount(ev.lead, minlength=n_leads).astype(np.int64)
    starts = segment_starts(counts)
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    running = cum - before[ev.lead]
    hits = np.flatnonzero((running >= MQL_THRESHOLD) | hand[ev.etype])
    hit_leads, first = np.unique(ev.lead[hits], return_index=True)
    trigger = np.full(n_leads, -1, dtype=np.int64)
    trigger[hit_leads] = hits[first]
    mql = np.where(trigger >= 0, ev.time[np.maximum(trigger, 0)] + delay.astype(np.int64), -1)
    late = mql > tl.as_of
    return np.where(late, -1, trigger), np.where(late, -1, mql)


def messy_write_order(rng: np.random.Generator, ev: Events) -> IntArray:
    """Write order: ~1% exact duplicates added, ~3% events arriving late (out of time order)."""
    m = len(ev.lead)
    dup = np.flatnonzero(rng.random(m) < 0.01)
    rows = np.concatenate([np.arange(m, dtype=np.int64), dup])
    ingest = ev.time[rows] + np.where(
        rng.random(len(rows)) < 0.03, rng.exponential(2.0 * DAY, len(rows)).astype(np.int64), 0
    )
    return rows[np.argsort(ingest, kind="stable")]
