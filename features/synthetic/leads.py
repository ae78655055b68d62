"""Leads: accounts with firmographics, and their people with title, email and latent intent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic.arrays import DAY, BoolArray, FloatArray, IntArray, choice, decode
from features.synthetic.timeline import Timeline
from features.synthetic.vocab import (
    COUNTRIES,
    DOMAIN_SUFFIXES,
    DOMAIN_WORDS,
    FIRST_NAMES,
    FREE_MAIL_PROVIDERS,
    INDUSTRIES,
    LAST_NAMES,
    LEAD_SOURCES,
    TITLES,
    TLDS,
)


@dataclass
class Leads:
    """Leads of a chunk as codes, with the latent intent and activity that drive engagement."""

    account: IntArray  # account index within the chunk
    created: IntArray  # seconds after t0
    title: IntArray  # index into TITLES, -1 missing, -2 empty string
    industry: IntArray  # canonical code, -1 missing
    country: IntArray
    source: IntArray
    size: FloatArray  # NaN when missing
    free_mail: FloatArray  # 1/0, NaN when email missing
    email: pa.Array
    intent: FloatArray  # latent; drives engagement only
    activity: FloatArray  # latent volume multiplier


def _firmographics(rng: np.random.Generator, n_accounts: int) -> dict[str, Any]:
    """Per account: industry, country, size (lognormal), mail domain, latent intent, timing."""
    size = np.exp(rng.normal(np.log(120.0), 1.7, n_accounts))
    domain = pc.binary_join_element_wise(
        decode(rng.integers(0, len(DOMAIN_WORDS), n_accounts), DOMAIN_WORDS),
        decode(rng.integers(0, len(DOMAIN_SUFFIXES), n_accounts), DOMAIN_SUFFIXES),
        decode(rng.integers(0, len(TLDS), n_accounts), TLDS),
        "",
    )
    return {
        "industry": choice(rng, (w for _, w in INDUSTRIES), n_accounts),
        "country": choice(rng, (w for _, w in COUNTRIES), n_accounts),
        "size": np.clip(np.round(size), 1, 500_000),
        "domain": domain,
        "intent": rng.normal(0.0, 0.7, n_accounts),
        "u": rng.random(n_accounts),
    }


def _created_times(rng: np.random.Generator, tl: Timeline, account_u: FloatArray) -> IntArray:
    """Creation times clustered around the account's moment, seasonal via the lead-day CDF."""
    n = len(account_u)
    u = np.where(rng.random(n) < 0.3, rng.random(n), account_u + rng.laplace(0.0, 0.015, n))
    u = np.abs(u)
    u = 1.0 - np.abs(1.0 - u)
    day = np.minimum(np.searchsorted(tl.lead_cdf, u, side="right"), len(tl.lead_cdf) - 1)
    hour = np.clip(rng.normal(14.0, 3.5, n), 0.0, 23.99)
    seconds = day * DAY + (hour * 3600).astype(np.int64)
    return np.minimum(seconds, tl.as_of - 1).astype(np.int64)


def _titles(rng: np.random.Generator, size: FloatArray) -> IntArray:
    """Title index per lead, weighted by company size; -1 missing, -2 empty string."""
    bucket = np.digitize(size, [50.0, 1000.0])
    title = np.empty(len(size), dtype=np.int64)
    for b in range(3):
        sel = np.flatnonzero(bucket == b)
        title[sel] = choice(rng, (float(t[2:][b]) for t in TITLES), len(sel))
    r = rng.random(len(size))
    return np.where(r < 0.07, -1, np.where(r < 0.09, -2, title))


def _emails(
    rng: np.random.Generator, domain: pa.Array, junior: BoolArray
) -> tuple[pa.Array, FloatArray]:
    """Addresses at the company domain or a free provider (more for juniors), some missing.

    Returns the addresses and the free-mail flag (1/0, NaN when missing).
    """
    n = len(junior)
    first = decode(rng.integers(0, len(FIRST_NAMES), n), FIRST_NAMES)
    last = decode(rng.integers(0, len(LAST_NAMES), n), LAST_NAMES)
    initial = pc.utf8_slice_codeunits(first, 0, 1)
    style = rng.integers(0, 4, n)
    local = pc.case_when(
        pc.make_struct(pa.array(style == 0), pa.array(style == 1), pa.array(style == 2)),
        pc.binary_join_element_wise(first, last, "."),
        pc.binary_join_element_wise(initial, last, ""),
        pc.binary_join_element_wise(first, last, "_"),
        first,
    )
    free = rng.random(n) < np.where(junior, 0.6, 0.17)
    free_domain = decode(
        choice(rng, (w for _, w in FREE_MAIL_PROVIDERS), n), (d for d, _ in FREE_MAIL_PROVIDERS)
    )
    email = pc.binary_join_element_wise(local, pc.if_else(pa.array(free), free_domain, domain), "@")
    email = pc.if_else(pa.array(rng.random(n) < 0.03), pc.utf8_upper(email), email)
    missing = rng.random(n) < 0.06
    email = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), email)
    return email, np.where(missing, np.nan, free.astype(np.float64))


def _sources(rng: np.random.Generator, tl: Timeline, created: IntArray) -> IntArray:
    """Lead source per lead from a mix that drifts with the creation time."""
    frac = (created / max(tl.as_of, 1))[:, None]
    base = np.array([s[1] for s in LEAD_SOURCES])
    drift = np.array([s[2] for s in LEAD_SOURCES])
    weight = np.exp(base[None, :] + drift[None, :] * frac)
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:]
    code = (cdf < rng.random(len(created))[:, None]).sum(axis=1)
    return np.minimum(code, len(LEAD_SOURCES) - 1).astype(np.int64)


def draw_leads(rng: np.random.Generator, tl: Timeline, sizes: IntArray) -> Leads:
    """Leads of the accounts (sizes: leads per account), inheriting account firmographics."""
    acc = _firmographics(rng, len(sizes))
    account = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    n = len(account)
    created = _created_times(rng, tl, acc["u"][account])
    size = acc["size"][account]
    title = _titles(rng, size)
    seniority = np.array([t[1] for t in TITLES] + ["unknown", "unknown"])[title]
    junior = seniority == "intern"
    email, free_mail = _emails(rng, pc.take(acc["domain"], pa.array(account)), junior)
    senior = np.isin(seniority, ["c_level", "vp", "director"])
    intent = acc["intent"][account] + rng.normal(0.0, 0.8, n) + 0.3 * senior - 0.4 * junior
    intent -= 0.3 * np.nan_to_num(free_mail)
    activity = np.exp(rng.normal(-0.245, 0.7, n) + 0.3 * intent - 0.045)
    return Leads(
        account=account,
        created=created,
        title=title,
        industry=np.where(rng.random(n) < 0.08, -1, acc["industry"][account]),
        country=np.where(rng.random(n) < 0.06, -1, acc["country"][account]),
        source=np.where(rng.random(n) < 0.065, -1, _sources(rng, tl, created)),
        size=np.where(rng.random(n) < 0.10, np.nan, size),
        free_mail=free_mail,
        email=email,
        intent=intent,
        activity=activity,
    )
