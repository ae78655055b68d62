"""Generation: a snapshot in chunks of whole accounts, each chunk simulated end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic.arrays import (
    IntArray,
    decode,
    messy_variants,
    padded_ids,
    str_series,
    timestamps,
    variant_vocabulary,
)
from features.synthetic.events import draw_events, messy_write_order, mql_times, url_vocabulary
from features.synthetic.leads import Leads, draw_leads
from features.synthetic.observe import observables
from features.synthetic.outcomes import draw_outcomes
from features.synthetic.shift import SHIFT_KINDS, MarketShift, shift_leads, shift_logit
from features.synthetic.snapshot import SyntheticSnapshot, empty_snapshot
from features.synthetic.timeline import (
    Campaigns,
    Timeline,
    account_sizes,
    build_timeline,
    chunk_bounds,
    draw_campaigns,
    utc,
)
from features.synthetic.truth import static_logit
from features.synthetic.vocab import (
    COUNTRIES,
    INDUSTRIES,
    LEAD_SOURCES,
    TITLES,
    WRITTEN_EVENT_TYPES,
)

GENERATOR_VERSION: Final = "1.1.0"


def _chunk(
    rng: np.random.Generator,
    tl: Timeline,
    camps: Campaigns,
    sizes: IntArray,
    first_lead: int,
    first_account: int,
    id_width: tuple[int, int],
    events_per_lead: float,
    params: Mapping[str, Any],
    shift: MarketShift | None = None,
) -> SyntheticSnapshot:
    """Generate one chunk: the leads of `sizes` accounts, their events, outcomes and truth."""
    leads = draw_leads(rng, tl, sizes)
    shift_leads(leads, tl, shift)
    n = len(leads.created)
    ev = draw_events(rng, tl, leads, camps, events_per_lead)
    _, mql = mql_times(rng, tl, ev, n)
    mql_leads = np.flatnonzero(mql >= 0)
    cutoff = mql[mql_leads]
    feats = observables(leads, ev, mql_leads, cutoff)
    static = shift_logit(static_logit(feats), cutoff, tl, shift)
    outcome = draw_outcomes(rng, tl, leads.account[mql_leads], cutoff, static)
    sql = np.full(n, -1, dtype=np.int64)
    dq = np.full(n, -1, dtype=np.int64)
    sql[mql_leads] = outcome.sql
    dq[mql_leads] = outcome.disqualified
    lead_ids = padded_ids("L", np.arange(first_lead + 1, first_lead + n + 1), id_width[0])
    account_ids = padded_ids("A", first_account + 1 + leads.account, id_width[1])
    frame = _lead_frame(rng, tl, leads, lead_ids, account_ids, mql, sql, dq)
    rows = messy_write_order(rng, ev)
    events = pd.DataFrame(
        {
            "lead_id": str_series(pc.take(lead_ids, pa.array(ev.lead[rows]))),
            "occurred_at": timestamps(ev.time[rows], tl.t0),
            "event_type": str_series(decode(ev.etype[rows], WRITTEN_EVENT_TYPES)),
            "campaign": str_series(decode(ev.campaign[rows], camps.names)),
            "url": str_series(decode(ev.url[rows], url_vocabulary()[0])),
        }
    )
    truth = pd.DataFrame(
        {
            "lead_id": str_series(pc.take(lead_ids, pa.array(mql_leads))),
            "cutoff": timestamps(cutoff, tl.t0),
            "p_true": outcome.p,
            "converted_in_horizon": outcome.converted,
        }
    )
    as_of = tl.t0 + pd.Timedelta(seconds=tl.as_of)
    return SyntheticSnapshot(
        leads=frame, events=events, truth=truth, as_of=as_of, params=dict(params)
    )


def _lead_frame(
    rng: np.random.Generator,
    tl: Timeline,
    leads: Leads,
    lead_ids: pa.Array,
    account_ids: pa.Array,
    mql: IntArray,
    sql: IntArray,
    dq: IntArray,
) -> pd.DataFrame:
    n = len(leads.created)
    title_vocab = [t[0] for t in TITLES] + [""]
    title = np.where(leads.title == -2, len(TITLES), leads.title)
    industry = messy_variants(rng, leads.industry, 0.12)
    placeholder = (leads.industry < 0) & (rng.random(n) < 0.4)
    industry_vocab = [*variant_vocabulary(i for i, _ in INDUSTRIES), "N/A"]
    industry = np.where(placeholder, len(industry_vocab) - 1, industry)
    size = pd.array(np.where(np.isnan(leads.size), 0, leads.size).astype(np.int64), dtype="Int64")
    size[np.isnan(leads.size)] = pd.NA
    return pd.DataFrame(
        {
            "lead_id": str_series(lead_ids),
            "account_id": str_series(account_ids),
            "created_at": timestamps(leads.created, tl.t0),
            "mql_at": timestamps(mql, tl.t0, mql >= 0),
            "sql_at": timestamps(sql, tl.t0, sql >= 0),
            "disqualified_at": timestamps(dq, tl.t0, dq >= 0),
            "job_title": str_series(decode(title, title_vocab)),
            "country": str_series(
                decode(
                    messy_variants(rng, leads.country, 0.12),
                    variant_vocabulary(c for c, _ in COUNTRIES),
                )
            ),
            "industry": str_series(decode(industry, industry_vocab)),
            "lead_source": str_series(
                decode(
                    messy_variants(rng, leads.source, 0.1),
                    variant_vocabulary(s for s, _, _ in LEAD_SOURCES),
                )
            ),
            "company_size": pd.Series(size),
            "email": str_series(leads.email),
        }
    )


def generate(
    n_leads: int,
    seed: int,
    *,
    as_of: str | pd.Timestamp = "2026-06-30",
    months: int = 30,
    events_per_lead: float = 50.0,
    chunk_leads: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
    shift: MarketShift | None = None,
) -> Iterator[SyntheticSnapshot]:
    """Generate a synthetic snapshot in chunks of whole accounts.

    Args:
        n_leads: Number of leads in total.
        seed: Seed; equal arguments give equal frames.
        as_of: The snapshot's as-of time (naive means UTC); nothing written is later.
        months: Months of history before as_of.
        events_per_lead: Mean events per lead (roughly, after seasonality and truncation).
        chunk_leads: About this many leads per chunk (chunks hold whole accounts).
        progress: Called with (leads done, n_leads) after each chunk.
        shift: A change of market planted after a date (None: the usual market).

    Returns:
        An iterator of chunks.

    Raises:
        ValueError: An argument is out of range.
    """
    if n_leads < 0 or months < 1 or events_per_lead < 0 or chunk_leads < 1:
        raise ValueError("need n_leads >= 0, months >= 1, events_per_lead >= 0, chunk_leads >= 1")
    stamp = utc(as_of)
    tl = build_timeline(stamp, months)
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_leads": n_leads,
        "seed": seed,
        "as_of": stamp.isoformat(),
        "months": months,
        "events_per_lead": events_per_lead,
        "chunk_leads": chunk_leads,
    }
    if shift is not None:
        if shift.kind not in SHIFT_KINDS:
            raise ValueError(f"shift kind {shift.kind!r}: expected one of {list(SHIFT_KINDS)}")
        params["shift"] = {
            "kind": shift.kind,
            "after": utc(shift.after).isoformat(),
            "size": shift.strength(),
        }
    return _chunks(n_leads, seed, tl, events_per_lead, chunk_leads, progress, params, shift)


def _chunks(
    n_leads: int,
    seed: int,
    tl: Timeline,
    events_per_lead: float,
    chunk_leads: int,
    progress: Callable[[int, int], None] | None,
    params: Mapping[str, Any],
    shift: MarketShift | None = None,
) -> Iterator[SyntheticSnapshot]:
    size_seq, campaign_seq, chunk_seq = np.random.SeedSequence(seed).spawn(3)
    sizes = account_sizes(np.random.default_rng(size_seq), n_leads)
    camps = draw_campaigns(np.random.default_rng(campaign_seq), tl)
    bounds = chunk_bounds(sizes, chunk_leads)
    width = (max(7, len(str(n_leads))), max(6, len(str(len(sizes)))))
    done = 0
    for (start, stop), child in zip(bounds, chunk_seq.spawn(len(bounds)), strict=True):
        chunk_sizes = sizes[start:stop]
        yield _chunk(
            np.random.default_rng(child),
            tl,
            camps,
            chunk_sizes,
            done,
            start,
            width,
            events_per_lead,
            params,
            shift,
        )
        done += int(chunk_sizes.sum())
        if progress is not None:
            progress(done, n_leads)


def generate_snapshot(n_leads: int, seed: int, **kwargs: Any) -> SyntheticSnapshot:
    """Generate a whole snapshot in memory (all chunks concatenated); for tests and small data.

    Args:
        n_leads: Number of leads.
        seed: Seed.
        **kwargs: Keyword arguments of `generate`.

    Returns:
        The snapshot.
    """
    chunks = list(generate(n_leads, seed, **kwargs))
    if not chunks:
        empty = empty_snapshot(utc(kwargs.get("as_of", "2026-06-30")))
        return SyntheticSnapshot(empty.leads, empty.events, empty.truth, empty.as_of)

    def cat(name: str) -> pd.DataFrame:
        return pd.concat([getattr(c, name) for c in chunks], ignore_index=True)

    return SyntheticSnapshot(
        cat("leads"), cat("events"), cat("truth"), chunks[0].as_of, chunks[0].params
    )
