"""A synthetic CRM snapshot with known truth: leads, events and the true conversion probability.

The generator builds accounts with firmographics, several leads per account, engagement streams
(campaign bursts, decaying background activity, seasonality, drift), MQL moments reached through
engagement, and SQL outcomes drawn from a known probability `p_true`.

`p_true` is a nonlinear function of *only* what the written snapshot shows strictly before the
lead's `mql_at` (see `true_probability` and `TRUTH_FEATURES`), so a perfect model of features
computed from the snapshot can reach it. Exact duplicate events are counted once, as the reader
drops them. It is written the way sales reads a lead, not the way points add up: small marginal
fit effects, buying authority by company size, hand-raisers that count only from people who can
buy, stalled pricing interest, tire-kicking, freshness, the account's buying group and its open
deals. Points rules see some of this (measured: rules AUC 0.65 against the truth's 0.84), so a
model has something to find (version 1.1; 1.0 leaned on what points score, rules AUC 0.76).

Generation is chunked by whole accounts and vectorised with numpy; `write_snapshot` streams chunks
to Parquet or CSV files and replaces them atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import EVENT_COLUMNS, EVENT_TYPES, LEAD_COLUMNS
from features.titles import parse_titles

GENERATOR_VERSION: Final = "1.1.0"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY: Final = 86_400
#: Times are whole seconds; keys pack (entity, time) into one int64 as entity * _KEY + seconds.
_KEY: Final = 1 << 34

#: Event types outside the contract, written for ~0.5% of events; a reader keeps them as `other`.
UNKNOWN_EVENT_TYPES: Final = ("chat_started", "Sales Call", "video_watched")
#: Every event type written: the contract's (without `other`), then the unknown ones.
WRITTEN_EVENT_TYPES: Final = tuple(t for t in EVENT_TYPES if t != "other") + UNKNOWN_EVENT_TYPES
_T: Final = {name: code for code, name in enumerate(WRITTEN_EVENT_TYPES)}
_N_TYPES: Final = len(WRITTEN_EVENT_TYPES)


# --------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------

INDUSTRIES: Final[tuple[tuple[str, float], ...]] = (
    ("Software", 0.20),
    ("Financial Services", 0.10),
    ("Healthcare", 0.09),
    ("Manufacturing", 0.10),
    ("Retail", 0.08),
    ("Education", 0.06),
    ("Government", 0.04),
    ("Professional Services", 0.10),
    ("Media", 0.05),
    ("Telecommunications", 0.04),
    ("Energy", 0.04),
    ("Nonprofit", 0.03),
    ("Logistics", 0.04),
    ("Real Estate", 0.03),
)
COUNTRIES: Final[tuple[tuple[str, float], ...]] = (
    ("United States", 0.40),
    ("United Kingdom", 0.10),
    ("Germany", 0.08),
    ("France", 0.06),
    ("Canada", 0.06),
    ("India", 0.07),
    ("Australia", 0.04),
    ("Netherlands", 0.03),
    ("Brazil", 0.04),
    ("Spain", 0.03),
    ("Japan", 0.03),
    ("Singapore", 0.02),
    ("Sweden", 0.02),
    ("Mexico", 0.02),
)
#: Lead sources: (name, base log-weight, drift of the log-weight over the whole period).
LEAD_SOURCES: Final[tuple[tuple[str, float, float], ...]] = (
    ("organic_search", 1.2, -0.3),
    ("paid_search", 1.0, 0.0),
    ("paid_social", 0.1, 1.4),
    ("webinar", 0.5, 0.0),
    ("content_syndication", 0.6, -0.4),
    ("referral", 0.3, 0.0),
    ("event", 0.4, -0.2),
    ("direct", 0.7, 0.0),
    ("partner", 0.0, 0.4),
)

#: Job titles: (title as written, intended seniority, weight at small / mid / large companies).
TITLES: Final[tuple[tuple[str, str, float, float, float], ...]] = (
    ("CEO", "c_level", 5.0, 1.0, 0.2),
    ("Founder", "c_level", 4.0, 0.5, 0.05),
    ("CTO & Co-founder", "c_level", 3.0, 0.5, 0.05),
    ("Co-Founder & CEO", "c_level", 2.0, 0.3, 0.05),
    ("Owner", "c_level", 3.0, 0.3, 0.05),
    ("Chief Marketing Officer", "c_level", 1.0, 0.8, 0.3),
    ("CMO", "c_level", 1.0, 0.6, 0.2),
    ("Chief Revenue Officer", "c_level", 0.5, 0.5, 0.2),
    ("COO", "c_level", 0.8, 0.5, 0.2),
    ("CFO", "c_level", 0.5, 0.5, 0.2),
    ("Managing Director", "c_level", 1.0, 0.5, 0.3),
    ("President", "c_level", 0.8, 0.3, 0.1),
    ("VP Marketing", "vp", 1.0, 2.0, 1.5),
    ("vp marketing", "vp", 0.3, 0.6, 0.4),
    ("VP of Sales", "vp", 0.8, 1.5, 1.2),
    ("VP, Engineering", "vp", 0.3, 0.8, 1.0),
    ("SVP Growth", "vp", 0.1, 0.4, 0.6),
    ("VP, Demand Generation", "vp", 0.2, 0.6, 0.6),
    ("VP Product", "vp", 0.3, 0.6, 0.6),
    ("Head of Growth", "director", 1.0, 1.5, 1.0),
    ("Director, Sales", "director", 0.5, 1.5, 1.5),
    ("Marketing Director", "director", 0.8, 2.0, 1.5),
    ("Director of Engineering", "director", 0.3, 1.0, 1.2),
    ("Head of Data", "director", 0.3, 0.8, 1.0),
    ("Sr. Director, Marketing Operations", "director", 0.0, 0.5, 1.0),
    ("IT Director", "director", 0.2, 1.0, 1.2),
    ("Head of People", "director", 0.3, 0.6, 0.5),
    ("director of demand gen", "director", 0.1, 0.4, 0.4),
    ("marketing manager", "manager", 1.0, 2.0, 2.0),
    ("Marketing Manager", "manager", 2.0, 4.0, 4.0),
    ("MARKETING MANAGER", "manager", 0.2, 0.4, 0.4),
    ("Sales Manager", "manager", 1.0, 2.0, 2.0),
    ("Engineering Manager", "manager", 0.3, 1.2, 1.5),
    ("Product Manager", "manager", 0.5, 1.5, 2.0),
    ("Growth Marketing Manager", "manager", 0.5, 1.5, 1.0),
    ("Team Lead, Customer Success", "manager", 0.2, 0.8, 1.0),
    ("IT Manager", "manager", 0.3, 1.2, 1.5),
    ("Mktg Mgr", "manager", 0.1, 0.3, 0.3),
    ("Sr. Software Engineer", "individual", 0.5, 2.0, 3.0),
    ("Software Engineer", "individual", 0.8, 2.5, 3.5),
    ("DevOps Engineer", "individual", 0.2, 0.8, 1.2),
    ("Data Scientist", "individual", 0.3, 1.0, 1.5),
    ("Data Analyst", "individual", 0.3, 1.0, 1.5),
    ("Marketing Specialist", "individual", 0.8, 2.0, 2.5),
    ("Digital Marketing Specialist", "individual", 0.5, 1.5, 1.5),
    ("Content Writer", "individual", 0.5, 0.8, 0.8),
    ("Account Executive", "individual", 0.5, 1.5, 2.0),
    ("SDR", "individual", 0.3, 1.0, 1.5),
    ("Business Development Representative", "individual", 0.3, 0.8, 1.0),
    ("Solutions Architect", "individual", 0.2, 0.8, 1.0),
    ("UX Designer", "individual", 0.3, 0.6, 0.8),
    ("Accountant", "individual", 0.5, 0.6, 0.6),
    ("Recruiter", "individual", 0.2, 0.5, 0.8),
    ("Consultant", "individual", 1.0, 0.8, 0.8),
    ("Operations Analyst", "individual", 0.2, 0.6, 0.8),
    ("Freelance", "individual", 1.0, 0.2, 0.1),
    ("Marketing", "individual", 0.5, 0.5, 0.5),
    ("  Software Engineer ", "individual", 0.1, 0.2, 0.2),
    ("Marketing Intern", "intern", 0.5, 1.0, 1.2),
    ("Software Engineering Intern", "intern", 0.3, 0.6, 0.8),
    ("Intern", "intern", 0.3, 0.5, 0.5),
    ("Student", "intern", 1.5, 1.5, 1.5),
    ("MBA Student", "intern", 0.3, 0.3, 0.3),
    ("Werkstudent Marketing", "intern", 0.1, 0.2, 0.3),
    ("Trainee", "intern", 0.1, 0.2, 0.3),
)

_DOMAIN_WORDS: Final = (
    "acme", "nimbus", "vertex", "bluepeak", "orbit", "quanta", "northwind", "lumen", "helix",
    "cobalt", "redwood", "summit", "atlas", "zephyr", "ember", "granite", "harbor", "ionic",
    "juniper", "kestrel", "lattice", "meridian", "nova", "onyx", "pioneer", "quartz", "riverton",
    "sable", "tundra", "umbra", "vantage", "willow", "xeno", "yonder", "zenith", "arcadia",
    "bramble", "cinder", "dynamo", "evergreen", "falcon", "glacier", "horizon", "indigo", "jasper",
)  # fmt: skip
_DOMAIN_SUFFIXES: Final = (
    "",
    "labs",
    "tech",
    "group",
    "systems",
    "-hq",
    "soft",
    "works",
    "ai",
    "data",
)
_TLDS: Final = (".com", ".com", ".com", ".io", ".co", ".net", ".de", ".co.uk", ".fr")
_FIRST_NAMES: Final = (
    "james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "david",
    "elizabeth", "william", "susan", "priya", "rahul", "wei", "li", "anna", "lukas", "sofia",
    "mateo", "emma", "noah", "olivia", "liam", "ava", "lucas", "mia", "hiro", "yuki", "fatima",
)  # fmt: skip
_LAST_NAMES: Final = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "martinez",
    "lopez", "mueller", "schmidt", "dubois", "martin", "rossi", "sharma", "patel", "wang", "zhang",
    "kim", "tanaka", "silva", "santos", "nielsen", "andersson", "novak", "kowalski", "oconnor",
)  # fmt: skip
#: Free mail providers written, most common first (all in the contract's FREE_MAIL_DOMAINS).
_FREE_DOMAINS: Final = (
    ("gmail.com", 0.45), ("yahoo.com", 0.12), ("hotmail.com", 0.1), ("outlook.com", 0.1),
    ("icloud.com", 0.06), ("gmx.de", 0.04), ("web.de", 0.03), ("yahoo.co.uk", 0.03),
    ("proton.me", 0.03), ("aol.com", 0.02), ("qq.com", 0.02),
)  # fmt: skip

_SITE: Final = "https://www.example-saas.com"
#: URL vocabulary per event type (paths on the vendor's site); absent types have no URL.
_URLS: Final[dict[str, tuple[str, ...]]] = {
    "page_view": (
        "/", "/product", "/features/automation", "/features/analytics", "/integrations",
        "/customers", "/blog/lead-scoring-101", "/blog/mql-vs-sql", "/blog/attribution",
        "/docs/getting-started", "/about", "/careers",
    ),
    "pricing_page_view": ("/pricing", "/pricing?plan=team", "/pricing?plan=enterprise"),
    "content_download": (
        "/resources/ebook-lead-scoring", "/resources/benchmark-report-2025",
        "/resources/whitepaper-revops", "/resources/checklist-demand-gen",
    ),
    "webinar_registration": ("/webinars/register",),
    "webinar_attendance": ("/webinars/live",),
    "form_submission": ("/contact", "/contact-sales"),
    "demo_request": ("/demo",),
    "trial_signup": ("/signup", "/signup?plan=trial"),
    "ad_click": ("/lp/paid-social", "/lp/paid-search", "/lp/retargeting"),
    "email_click": ("/blog/mql-vs-sql", "/resources/ebook-lead-scoring", "/webinars/register"),
}  # fmt: skip

_CAMPAIGN_KINDS: Final = ("email", "webinar", "paid_social", "content", "event")
_CAMPAIGN_KIND_P: Final = (0.45, 0.15, 0.15, 0.15, 0.10)
_CAMPAIGN_TOPICS: Final = (
    "lead-scoring", "revops", "ai-assistant", "data-quality", "attribution", "abm", "forecasting",
    "pipeline-review", "customer-stories", "product-launch",
)  # fmt: skip
_NEWSLETTER: Final = "Monthly Newsletter"

#: Event type mix of background activity (no campaign) and of each campaign kind's bursts.
_TYPE_MIX: Final[dict[str, dict[str, float]]] = {
    "background": {
        "page_view": 0.45, "email_open": 0.25, "email_click": 0.05, "ad_click": 0.06,
        "social_engagement": 0.07, "content_download": 0.03, "pricing_page_view": 0.03,
        "webinar_registration": 0.01, "email_unsubscribe": 0.002, "email_bounce": 0.003,
        "email_reply": 0.002,
    },
    "email": {
        "email_open": 0.66, "email_click": 0.16, "page_view": 0.14, "email_reply": 0.005,
        "email_unsubscribe": 0.006, "email_bounce": 0.008, "content_download": 0.02,
    },
    "webinar": {
        "email_open": 0.35, "webinar_registration": 0.2, "webinar_attendance": 0.1,
        "page_view": 0.25, "email_click": 0.1,
    },
    "paid_social": {"ad_click": 0.3, "social_engagement": 0.35, "page_view": 0.35},
    "content": {"content_download": 0.2, "page_view": 0.4, "email_open": 0.3, "email_click": 0.1},
    "event": {"page_view": 0.5, "email_open": 0.35, "email_click": 0.1, "content_download": 0.05},
}  # fmt: skip
#: Types an intent-driven event is drawn from (the "upgrade" of an ordinary event).
_INTENT_MIX: Final = {
    "pricing_page_view": 0.47, "content_download": 0.17, "webinar_attendance": 0.1,
    "email_reply": 0.05, "form_submission": 0.07, "demo_request": 0.07, "trial_signup": 0.07,
}  # fmt: skip

#: Points of the generator's own MQL rule (a running sum; hand-raisers trigger at once).
_POINTS: Final = {
    "email_open": 1, "email_click": 4, "email_reply": 10, "email_unsubscribe": -15,
    "email_bounce": -5, "page_view": 1, "pricing_page_view": 8, "content_download": 6,
    "webinar_registration": 4, "webinar_attendance": 10, "ad_click": 2, "social_engagement": 1,
}  # fmt: skip
_HAND_RAISERS: Final = ("form_submission", "demo_request", "trial_signup")
_MQL_THRESHOLD: Final = 110

# --------------------------------------------------------------------------------------------
# The truth: p_true from observables
# --------------------------------------------------------------------------------------------
#
# All weights are in logit units. Points rules see fit attributes one at a time and per-type
# event counts with caps and decay; most of the weight here sits where they cannot look: the
# account's buying group, who can buy at which company size, recency shape and tire-kicking.

#: Marginal fit effects: small, since the rules score these tables directly (job function and
#: country, which the rules also score, carry no weight at all).
_SENIORITY_EFFECT: Final = {
    "c_level": 0.15, "vp": 0.3, "director": 0.25, "manager": 0.1, "individual": -0.1,
    "intern": -0.9, "unknown": -0.25,
}  # fmt: skip
_INDUSTRY_EFFECT: Final = {
    "software": 0.2, "financial services": 0.1, "healthcare": 0.0, "manufacturing": -0.05,
    "retail": -0.05, "education": -0.2, "government": -0.2, "professional services": 0.05,
    "media": 0.0, "telecommunications": 0.05, "energy": 0.0, "nonprofit": -0.25,
    "logistics": 0.0, "real estate": -0.05,
}  # fmt: skip
_SOURCE_EFFECT: Final = {
    "organic_search": 0.05, "paid_search": 0.0, "paid_social": -0.15, "webinar": 0.05,
    "content_syndication": -0.2, "referral": 0.3, "event": 0.1, "direct": 0.1, "partner": 0.2,
}  # fmt: skip
_MISSING_EFFECT: Final = {"industry": -0.05, "lead_source": -0.05}
_INTERCEPT: Final = -2.8


def _count_name(event_type: str, window: int | None) -> str:
    return f"n_{event_type}_{'all' if window is None else f'{window}d'}"


#: Event counts the truth uses: (event type, window in days or None for all time).
TRUTH_COUNTS: Final = (
    ("pricing_page_view", 7),
    ("pricing_page_view", 30),
    ("pricing_page_view", 90),
    ("demo_request", None),
    ("trial_signup", None),
    ("form_submission", None),
    ("webinar_attendance", 90),
    ("content_download", 90),
    ("email_reply", None),
    ("email_open", 90),
    ("email_click", 90),
    ("email_unsubscribe", None),
    ("email_bounce", None),
)

#: Columns of the frame `true_probability` reads, one row per MQL lead at its cutoff (mql_at).
TRUTH_FEATURES: Final = (
    "seniority",  # parse_title(job_title)[0]; missing/empty title: 'unknown'
    "company_size",  # float, NaN when missing
    "industry",  # trimmed + lower-cased; NaN when missing or 'N/A'
    "lead_source",
    "free_mail",  # 1.0 / 0.0 from the email's domain (lower-cased); NaN when email missing
    *(_count_name(t, w) for t, w in TRUTH_COUNTS),
    "days_since_created",
    "account_sql_before",  # other leads of the account with sql_at < cutoff (as written)
    "account_events_30d",  # other account leads' events (any type) in the 30 days before cutoff
)


def _saturate(x: pd.Series | FloatArray, scale: float) -> FloatArray:
    return np.asarray(1.0 - np.exp(-np.asarray(x, dtype=np.float64) / scale))


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _authority(f: pd.DataFrame) -> FloatArray:
    """Who can sign at this company size, in -1..1.

    A C-level is the buyer at a 20-person company and a tourist at a 20,000-person one (from
    +1 well below ~300 employees to -1 well above); VPs and directors buy from mid-size up
    (-0.3 at the smallest companies to +0.5 above ~300); everyone else, and an unknown
    size, is -0.2.
    """
    seniority = f["seniority"].astype("str")
    size = f["company_size"].astype("float64").to_numpy(na_value=np.nan)
    has_size = ~np.isnan(size)
    log_size = np.log10(np.where(has_size, np.maximum(size, 1.0), 1.0))
    authority = np.select(
        [
            (seniority == "c_level").to_numpy(),
            seniority.isin(["vp", "director"]).to_numpy(),
        ],
        [
            1.0 - 2.0 * _sigmoid((log_size - 2.5) * 4.0),
            0.8 * _sigmoid((log_size - 2.0) * 4.0) - 0.3,
        ],
        -0.2,
    )
    return np.asarray(np.where(has_size, authority, -0.2), dtype=np.float64)


def _company_mail(f: pd.DataFrame) -> FloatArray:
    """1 for a company address, 0 for free mail, 0.5 when the email is missing."""
    free = f["free_mail"].astype("float64").to_numpy()
    return np.asarray(np.where(np.isnan(free), 0.5, 1.0 - free), dtype=np.float64)


def _fit_logit(f: pd.DataFrame) -> FloatArray:
    """Who the lead is: small marginal effects, buying authority (an interaction), mail kind."""
    out = np.array(
        f["seniority"].astype("str").map(_SENIORITY_EFFECT).astype("float64").to_numpy(),
        dtype=np.float64,
    )
    for column, effects in (("industry", _INDUSTRY_EFFECT), ("lead_source", _SOURCE_EFFECT)):
        values = f[column].map(effects).astype("float64")
        out += values.fillna(_MISSING_EFFECT[column]).to_numpy()
    out += 1.1 * _authority(f)
    free = f["free_mail"].astype("float64").to_numpy()
    out += np.where(np.isnan(free), -0.3, np.where(free == 1.0, -0.7, 0.0))
    return np.asarray(out, dtype=np.float64)


def _engagement_logit(f: pd.DataFrame) -> FloatArray:
    """What the lead and its account did before the cutoff, as sales reads it, not as points
    add up: conditional hand-raisers, recency, tire-kicking, freshness, the buying group."""

    def n(event_type: str, window: int | None) -> FloatArray:
        return f[_count_name(event_type, window)].to_numpy(dtype=np.float64)

    # Hand-raisers count only from people who can buy: a demo request from a decision maker
    # at a fitting company is the strongest signal there is; one from a student, or from a
    # tourist at the wrong-sized company, is noise. Free-mail trials are tire-kickers.
    company_mail = _company_mail(f)
    fits = _sigmoid(3.0 * (_authority(f) + 0.3 * company_mail - 0.2))
    out = _saturate(n("demo_request", None), 1.0) * (2.0 * fits + 0.2)
    out += _saturate(n("trial_signup", None), 1.0) * (1.2 * company_mail * fits)
    # Pricing views count when recent; older ones with no decision since are a stalled deal.
    pricing_7, pricing_30 = n("pricing_page_view", 7), n("pricing_page_view", 30)
    out += (
        1.4 * _saturate(pricing_7, 1.2)
        - 0.2 * _saturate(pricing_30 - pricing_7, 2.0)
        - 0.3 * _saturate(n("pricing_page_view", 90) - pricing_30, 2.0)
    )
    # Tire-kickers open many mails and click (almost) none; content collectors download a lot.
    opens, clicks = n("email_open", 90), n("email_click", 90)
    out -= 1.2 * _saturate(opens, 8.0) * np.exp(-clicks / 1.5)
    out += (
        0.6 * _saturate(n("form_submission", None), 1.0)
        + 0.6 * _saturate(n("webinar_attendance", 90), 1.5)
        - 0.1 * _saturate(n("content_download", 90), 2.0)
        + 0.85 * _saturate(n("email_reply", None), 1.0)
        - 1.1 * (n("email_unsubscribe", None) > 0)
        - 0.55 * (n("email_bounce", None) > 0)
    )
    # Freshness: an MQL days after the lead appeared is hot; one recycled after months is not.
    age = f["days_since_created"].to_numpy(dtype=np.float64)
    out += 0.55 * np.exp(-age / 7.0) - 0.55 * np.tanh(np.maximum(age - 60.0, 0.0) / 120.0)
    # The buying group: other people of the account active in the 30 days before the cutoff.
    out += 1.8 * _saturate(f["account_events_30d"].to_numpy(dtype=np.float64), 25.0)
    return np.asarray(out, dtype=np.float64)


def _static_logit(features: pd.DataFrame) -> FloatArray:
    """The logit without the account-SQL term (which depends on other leads' outcomes)."""
    return _INTERCEPT + _fit_logit(features) + _engagement_logit(features)


def _account_sql_logit(account_sql_before: FloatArray | pd.Series) -> FloatArray:
    """An account already in the pipeline: other leads of it became SQLs before the cutoff."""
    return 2.2 * _saturate(account_sql_before, 1.0)


def _probability(logit: FloatArray) -> FloatArray:
    return _sigmoid(np.clip(logit, -9.0, 9.0))


def true_probability(features: pd.DataFrame) -> FloatArray:
    """The generator's conversion probability from observable features.

    Args:
        features: One row per MQL lead with the columns in `TRUTH_FEATURES`, computed from the
            written snapshot at the lead's cutoff (`mql_at`).

    Returns:
        p_true per row, in (0, 1).
    """
    missing = [c for c in TRUTH_FEATURES if c not in features.columns]
    if missing:
        raise KeyError(f"missing truth features: {missing}")
    logit = _static_logit(features) + _account_sql_logit(features["account_sql_before"])
    return _probability(logit)


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSnapshot:
    """One chunk (a whole set of accounts) or a whole synthetic snapshot.

    Attributes:
        leads: Contract lead columns.
        events: Contract event columns (duplicates, out of time order, unknown types included).
        truth: lead_id, cutoff (== mql_at), p_true, converted_in_horizon; one row per MQL lead.
        as_of: The snapshot's as-of time (UTC); nothing written is later.
        params: The generator's arguments and version (written to snapshot.json).
    """

    leads: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    as_of: pd.Timestamp
    params: Mapping[str, Any] = field(default_factory=dict)


#: Kinds of planted shift `MarketShift` knows.
SHIFT_KINDS: Final = ("lead_source", "conversion", "company_size")


@dataclass(frozen=True)
class MarketShift:
    """A change of market planted after a date, to test that monitoring sees real drift.

    Without a shift the generator's output is unchanged; with one, only leads created (for
    `lead_source` and `company_size`) or MQL'd (for `conversion`) after `after` differ, and the
    truth stays exact for the shifted world.

    Attributes:
        kind: `lead_source`: half of the new leads come from paid social; `conversion`: the
            odds of converting are multiplied by exp(`size`) (default size -0.8: about half the
            conversions); `company_size`: new leads' companies are `exp(size)` times larger
            (default size 2.0: about 7x).
        after: The date (UTC) the shift starts.
        size: Its strength, in the kind's unit (see above); None: the kind's default.
    """

    kind: Literal["lead_source", "conversion", "company_size"]
    after: pd.Timestamp
    size: float | None = None

    def strength(self) -> float:
        default = {"lead_source": 0.5, "conversion": -0.8, "company_size": 2.0}[self.kind]
        return default if self.size is None else float(self.size)


def _shift_leads(leads: _Leads, tl: _Timeline, shift: MarketShift | None) -> None:
    """Plant a lead_source or company_size shift on leads created after the shift's date."""
    if shift is None or shift.kind == "conversion":
        return
    start = int((_utc(shift.after) - tl.t0).total_seconds())
    new = leads.created >= start
    if shift.kind == "lead_source":
        # every other new lead (by position: no random draw, so nothing else moves)
        chosen = new & (np.arange(len(new)) % max(1, round(1 / shift.strength())) == 0)
        paid_social = [name for name, _, _ in LEAD_SOURCES].index("paid_social")
        leads.source = np.where(chosen & (leads.source >= 0), paid_social, leads.source)
    else:
        larger = np.clip(np.round(leads.size * np.exp(shift.strength())), 1, 500_000)
        leads.size = np.where(new, larger, leads.size)


def _shift_logit(
    static: FloatArray, cutoff: IntArray, tl: _Timeline, shift: MarketShift | None
) -> FloatArray:
    """Plant a conversion shift: the logit of MQLs after the shift's date moves by its size."""
    if shift is None or shift.kind != "conversion":
        return static
    start = int((_utc(shift.after) - tl.t0).total_seconds())
    return np.asarray(static + np.where(cutoff >= start, shift.strength(), 0.0))


# --------------------------------------------------------------------------------------------
# Timeline, accounts and campaigns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timeline:
    t0: pd.Timestamp  # midnight UTC of the first day; all internal times are seconds after it
    as_of: int  # seconds after t0
    lead_cdf: FloatArray  # cumulative share of lead creation per day (seasonal, growing)
    event_keep: FloatArray  # per day, probability that a generated event is kept (seasonality)


def _utc(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _timeline(as_of: pd.Timestamp, months: int) -> _Timeline:
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
    return _Timeline(
        t0=t0,
        as_of=horizon,
        lead_cdf=np.cumsum(weight) / weight.sum(),
        event_keep=np.asarray(event_week * event_season, dtype=np.float64),
    )


def _account_sizes(rng: np.random.Generator, n_leads: int) -> IntArray:
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


def _chunk_bounds(sizes: IntArray, chunk_leads: int) -> list[tuple[int, int]]:
    """Split accounts into chunks of about chunk_leads leads: (first account, stop account)."""
    if not len(sizes):
        return []
    before = np.cumsum(sizes) - sizes
    chunk_of = before // chunk_leads
    starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
    stops = np.append(starts[1:], len(sizes))
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


@dataclass(frozen=True)
class _Campaigns:
    start: IntArray  # seconds after t0, sorted
    kind: IntArray  # index into _CAMPAIGN_KINDS
    names: tuple[str, ...]  # one per campaign, then the newsletter


def _campaigns(rng: np.random.Generator, tl: _Timeline) -> _Campaigns:
    n_days = len(tl.lead_cdf)
    count = max(4, int(n_days / 3))
    day = np.searchsorted(tl.lead_cdf, rng.random(count), side="right")
    start = np.sort(day * DAY + rng.integers(8 * 3600, 18 * 3600, count))
    start = np.minimum(start, tl.as_of - 1)
    kind = rng.choice(len(_CAMPAIGN_KINDS), size=count, p=_CAMPAIGN_KIND_P)
    topic = rng.integers(0, len(_CAMPAIGN_TOPICS), count)
    months = (tl.t0 + pd.to_timedelta(start, unit="s")).strftime("%Y-%m")
    names = tuple(
        f"{m}_{_CAMPAIGN_KINDS[k]}_{_CAMPAIGN_TOPICS[t]}"
        for m, k, t in zip(months, kind, topic, strict=True)
    )
    return _Campaigns(
        start=start.astype(np.int64), kind=kind.astype(np.int64), names=(*names, _NEWSLETTER)
    )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, weights: Iterable[float], size: int) -> IntArray:
    p = np.asarray(list(weights), dtype=np.float64)
    return rng.choice(len(p), size=size, p=p / p.sum()).astype(np.int64)


def _decode(codes: IntArray, vocabulary: Iterable[str]) -> pa.Array:
    """Codes into a string array; negative codes are null."""
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(
        indices, pa.array(list(vocabulary), pa.string())
    ).dictionary_decode()


def _str_series(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(values, dtype="str")


def _ids(prefix: str, numbers: IntArray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _timestamps(seconds: IntArray, t0: pd.Timestamp, valid: BoolArray | None = None) -> pd.Series:
    """Seconds after t0 as datetime64[us, UTC]; invalid entries are NaT."""
    base = int(t0.value // 1000)
    micros = base + seconds.astype(np.int64) * 1_000_000
    values = micros.astype("datetime64[us]")
    if valid is not None:
        values[~valid] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")


def _variants(rng: np.random.Generator, codes: IntArray, rate: float) -> IntArray:
    """Code of a messy case/whitespace variant (see _variant_vocabulary) of each canonical code."""
    kind = np.where(rng.random(len(codes)) < rate, rng.integers(1, 6, len(codes)), 0)
    return np.where(codes < 0, codes, codes * 6 + kind)


def _variant_vocabulary(canonical: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in canonical:
        out += [v, v.lower(), v.upper(), " " + v.lower(), v.upper() + " ", " " + v + " "]
    return out


def _segment_starts(counts: IntArray) -> IntArray:
    return np.asarray(np.cumsum(counts) - counts, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# One chunk
# --------------------------------------------------------------------------------------------


@dataclass
class _Leads:
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


@dataclass
class _Events:
    lead: IntArray
    time: IntArray
    etype: IntArray
    campaign: IntArray  # -1 missing
    url: IntArray  # -1 missing


def _firmographics(rng: np.random.Generator, n_accounts: int) -> dict[str, Any]:
    """Per account: industry, country, size (lognormal), mail domain, latent intent, timing."""
    size = np.exp(rng.normal(np.log(120.0), 1.7, n_accounts))
    domain = pc.binary_join_element_wise(
        _decode(rng.integers(0, len(_DOMAIN_WORDS), n_accounts), _DOMAIN_WORDS),
        _decode(rng.integers(0, len(_DOMAIN_SUFFIXES), n_accounts), _DOMAIN_SUFFIXES),
        _decode(rng.integers(0, len(_TLDS), n_accounts), _TLDS),
        "",
    )
    return {
        "industry": _choice(rng, (w for _, w in INDUSTRIES), n_accounts),
        "country": _choice(rng, (w for _, w in COUNTRIES), n_accounts),
        "size": np.clip(np.round(size), 1, 500_000),
        "domain": domain,
        "intent": rng.normal(0.0, 0.7, n_accounts),
        "u": rng.random(n_accounts),
    }


def _created_times(rng: np.random.Generator, tl: _Timeline, account_u: FloatArray) -> IntArray:
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
        title[sel] = _choice(rng, (float(t[2:][b]) for t in TITLES), len(sel))
    r = rng.random(len(size))
    return np.where(r < 0.07, -1, np.where(r < 0.09, -2, title))


def _emails(
    rng: np.random.Generator, domain: pa.Array, junior: BoolArray
) -> tuple[pa.Array, FloatArray]:
    """Addresses at the company domain or a free provider (more for juniors), some missing.

    Returns the addresses and the free-mail flag (1/0, NaN when missing).
    """
    n = len(junior)
    first = _decode(rng.integers(0, len(_FIRST_NAMES), n), _FIRST_NAMES)
    last = _decode(rng.integers(0, len(_LAST_NAMES), n), _LAST_NAMES)
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
    free_domain = _decode(
        _choice(rng, (w for _, w in _FREE_DOMAINS), n), (d for d, _ in _FREE_DOMAINS)
    )
    email = pc.binary_join_element_wise(local, pc.if_else(pa.array(free), free_domain, domain), "@")
    email = pc.if_else(pa.array(rng.random(n) < 0.03), pc.utf8_upper(email), email)
    missing = rng.random(n) < 0.06
    email = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), email)
    return email, np.where(missing, np.nan, free.astype(np.float64))


def _sources(rng: np.random.Generator, tl: _Timeline, created: IntArray) -> IntArray:
    """Lead source per lead from a mix that drifts with the creation time."""
    frac = (created / max(tl.as_of, 1))[:, None]
    base = np.array([s[1] for s in LEAD_SOURCES])
    drift = np.array([s[2] for s in LEAD_SOURCES])
    weight = np.exp(base[None, :] + drift[None, :] * frac)
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:]
    code = (cdf < rng.random(len(created))[:, None]).sum(axis=1)
    return np.minimum(code, len(LEAD_SOURCES) - 1).astype(np.int64)


def _leads(rng: np.random.Generator, tl: _Timeline, sizes: IntArray) -> _Leads:
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
    return _Leads(
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


def _type_probabilities(mix: Mapping[str, float]) -> FloatArray:
    """A type mix as a probability vector over WRITTEN_EVENT_TYPES."""
    p = np.zeros(_N_TYPES)
    for name, weight in mix.items():
        p[_T[name]] = weight
    return p / p.sum()


def _draw_types(rng: np.random.Generator, group: IntArray, upgrade: BoolArray) -> IntArray:
    """Event types per group (0 background, 1.. campaign kinds); upgraded events show intent."""
    etype = np.empty(len(group), dtype=np.int64)
    mixes = [_TYPE_MIX["background"], *(_TYPE_MIX[k] for k in _CAMPAIGN_KINDS)]
    for g, mix in enumerate(mixes):
        sel = np.flatnonzero(group == g)
        etype[sel] = rng.choice(_N_TYPES, size=len(sel), p=_type_probabilities(mix))
    sel = np.flatnonzero(upgrade)
    etype[sel] = rng.choice(_N_TYPES, size=len(sel), p=_type_probabilities(_INTENT_MIX))
    unknown = np.flatnonzero(rng.random(len(group)) < 0.005)
    etype[unknown] = _T[UNKNOWN_EVENT_TYPES[0]] + rng.integers(
        0, len(UNKNOWN_EVENT_TYPES), len(unknown)
    )
    return etype


def _url_vocabulary() -> tuple[list[str], IntArray, IntArray]:
    """All URLs, and per event type the [low, high) range of its URLs (empty: no URL)."""
    urls: list[str] = []
    low = np.zeros(_N_TYPES, dtype=np.int64)
    high = np.zeros(_N_TYPES, dtype=np.int64)
    for name, paths in _URLS.items():
        low[_T[name]] = len(urls)
        urls += [_SITE + p for p in paths]
        high[_T[name]] = len(urls)
    return urls, low, high


def _event_times(
    rng: np.random.Generator, tl: _Timeline, leads: _Leads, camps: _Campaigns, lam: FloatArray
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
    burst_first = _segment_starts(n_bursts)
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


def _events(
    rng: np.random.Generator,
    tl: _Timeline,
    leads: _Leads,
    camps: _Campaigns,
    events_per_lead: float,
) -> _Events:
    lam = events_per_lead * 1.37 * leads.activity
    lead, time, camp = _event_times(rng, tl, leads, camps, lam)
    group = np.where(camp >= 0, camps.kind[np.maximum(camp, 0)] + 1, 0)
    upgrade_p = np.minimum(0.012 * np.exp(0.9 * leads.intent), 0.35)[lead]
    etype = _draw_types(rng, group, rng.random(len(lead)) < upgrade_p)
    # Seasonality (weekends, August, year end) and a declining email open rate thin the stream.
    day = np.clip(time // DAY, 0, len(tl.event_keep) - 1)
    keep = tl.event_keep[day]
    keep = keep * np.where(etype == _T["email_open"], 1.0 - 0.35 * time / max(tl.as_of, 1), 1.0)
    kept = (rng.random(len(lead)) < keep) & (time <= tl.as_of)
    lead, time, etype, camp = lead[kept], time[kept], etype[kept], camp[kept]
    # Campaign column: burst campaign (10% lost); background mail is the newsletter, background
    # ads belong to the latest paid-social campaign.
    m = len(lead)
    newsletter = len(camps.names) - 1
    is_mail = np.isin(etype, [_T["email_open"], _T["email_click"], _T["email_unsubscribe"]])
    paid = np.flatnonzero(camps.kind == _CAMPAIGN_KINDS.index("paid_social"))
    latest_paid = (
        np.searchsorted(camps.start[paid], time, side="right") - 1 if len(paid) else np.full(m, -1)
    )
    is_ad = np.isin(etype, [_T["ad_click"], _T["social_engagement"]]) & (latest_paid >= 0)
    background = np.where(
        is_mail,
        newsletter,
        np.where(is_ad, paid[np.maximum(latest_paid, 0)] if len(paid) else -1, -1),
    )
    campaign = np.where(camp >= 0, np.where(rng.random(m) < 0.1, -1, camp), background)
    _, low, high = _url_vocabulary()
    has_url = (high[etype] > low[etype]) & (rng.random(m) < 0.95)
    url = np.where(
        has_url, low[etype] + np.floor(rng.random(m) * (high - low)[etype]).astype(np.int64), -1
    )
    return _dedupe_sorted(_Events(lead=lead, time=time, etype=etype, campaign=campaign, url=url))


def _dedupe_sorted(ev: _Events) -> _Events:
    """Sort by (lead, time) and keep one event per (lead, second, type as a reader sees it).

    Readers may drop duplicates on (lead_id, occurred_at, event_type) with every unknown type
    read as `other`, or on all columns; making raw events unique on the narrower key keeps the
    truth's counts right under either rule (the injected duplicates are identical rows).
    """
    kind = np.minimum(ev.etype, _T[UNKNOWN_EVENT_TYPES[0]])  # unknown types collapse to one
    order = np.lexsort((ev.url, ev.campaign, kind, ev.time, ev.lead))
    lead, time, kind_sorted = ev.lead[order], ev.time[order], kind[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (
        (lead[1:] != lead[:-1]) | (time[1:] != time[:-1]) | (kind_sorted[1:] != kind_sorted[:-1])
    )
    rows = order[keep]
    return _Events(
        lead=ev.lead[rows],
        time=ev.time[rows],
        etype=ev.etype[rows],
        campaign=ev.campaign[rows],
        url=ev.url[rows],
    )


def _mql_times(
    rng: np.random.Generator, tl: _Timeline, ev: _Events, n_leads: int
) -> tuple[IntArray, IntArray]:
    """(trigger event index, mql time) per lead; -1 when the lead is no MQL by as_of.

    A lead becomes an MQL when its running points first reach the threshold or it raises its
    hand; mql_at follows the trigger by minutes to hours.
    """
    delay = np.clip(np.exp(rng.normal(np.log(2400.0), 1.0, n_leads)), 300, 6 * 3600)
    if not len(ev.lead):
        none = np.full(n_leads, -1, dtype=np.int64)
        return none, none.copy()
    points = np.zeros(_N_TYPES, dtype=np.int64)
    for name, value in _POINTS.items():
        points[_T[name]] = value
    hand = np.zeros(_N_TYPES, dtype=bool)
    hand[[_T[h] for h in _HAND_RAISERS]] = True
    cum = np.cumsum(points[ev.etype])
    counts = np.bincount(ev.lead, minlength=n_leads).astype(np.int64)
    starts = _segment_starts(counts)
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    running = cum - before[ev.lead]
    hits = np.flatnonzero((running >= _MQL_THRESHOLD) | hand[ev.etype])
    hit_leads, first = np.unique(ev.lead[hits], return_index=True)
    trigger = np.full(n_leads, -1, dtype=np.int64)
    trigger[hit_leads] = hits[first]
    mql = np.where(trigger >= 0, ev.time[np.maximum(trigger, 0)] + delay.astype(np.int64), -1)
    late = mql > tl.as_of
    return np.where(late, -1, trigger), np.where(late, -1, mql)


def _window_counts(
    keys: IntArray, entity: IntArray, cutoff: IntArray, days: int | None
) -> IntArray:
    """Events with entity key in [cutoff - days, cutoff); keys sorted (entity * _KEY + time)."""
    lower = entity * _KEY + (0 if days is None else np.maximum(cutoff - days * DAY, 0))
    upper = entity * _KEY + cutoff
    return (np.searchsorted(keys, upper, "left") - np.searchsorted(keys, lower, "left")).astype(
        np.int64
    )


def _category(codes: IntArray, vocabulary: Iterable[str]) -> pd.Series:
    """Canonical codes as the written value would read after trimming and lower-casing."""
    values = np.array([*(v.lower() for v in vocabulary), None], dtype=object)
    return pd.Series(values[codes], dtype=object)  # code -1 picks the trailing None


def _observables(leads: _Leads, ev: _Events, mql_leads: IntArray, cutoff: IntArray) -> pd.DataFrame:
    """TRUTH_FEATURES (without account_sql_before) of the MQL leads at their cutoffs."""
    title_text = [t[0] for t in TITLES]
    titles = pd.Series(
        np.array([*title_text, None, ""], dtype=object)[leads.title[mql_leads]], dtype="str"
    )
    f: dict[str, Any] = {"seniority": parse_titles(titles)[0]}
    f["company_size"] = leads.size[mql_leads]
    f["industry"] = _category(leads.industry[mql_leads], (i for i, _ in INDUSTRIES))
    f["lead_source"] = _category(leads.source[mql_leads], (s for s, _, _ in LEAD_SOURCES))
    f["free_mail"] = leads.free_mail[mql_leads]
    lead_keys = ev.lead * _KEY + ev.time  # sorted: events are sorted by (lead, time)
    for event_type, window in TRUTH_COUNTS:
        sel = ev.etype == _T[event_type]
        f[_count_name(event_type, window)] = _window_counts(
            lead_keys[sel], mql_leads, cutoff, window
        )
    own_30 = _window_counts(lead_keys, mql_leads, cutoff, 30)
    f["days_since_created"] = (cutoff - leads.created[mql_leads]) / DAY
    account_keys = np.sort(leads.account[ev.lead] * _KEY + ev.time)
    account_30 = _window_counts(account_keys, leads.account[mql_leads], cutoff, 30)
    f["account_events_30d"] = account_30 - own_30
    return pd.DataFrame(f)


#: When an outcome happens after the cutoff (mql_at). A converting lead's SQL comes after a
#: delay: with probability _FAST_SHARE a log-normal one (median _FAST_MEDIAN_DAYS, log-sd
#: _FAST_SIGMA, clipped to [_FAST_MIN_SECONDS, _SLOW_DAYS[1] days]), else uniform over _SLOW_DAYS.
#: A non-converting lead's fate: below _LATE_SHARE an SQL after the horizon (uniform over
#: _LATE_DAYS), below _DQ_FATE_END a disqualification (uniform over _DQ_DAYS), else open for good.
_FAST_SHARE: Final = 0.5
_FAST_MEDIAN_DAYS: Final = 3.0
_FAST_SIGMA: Final = 1.0
_FAST_MIN_SECONDS: Final = 60
_SLOW_DAYS: Final = (10, 90)
_LATE_SHARE: Final = 0.03
_LATE_DAYS: Final = (91, 200)
_DQ_FATE_END: Final = 0.43
_DQ_DAYS: Final = (1, 120)


@dataclass
class _Outcomes:
    p: FloatArray
    converted: BoolArray
    sql: IntArray  # -1 when none written
    disqualified: IntArray  # -1 when none written


def _outcomes(
    rng: np.random.Generator, tl: _Timeline, account: IntArray, cutoff: IntArray, static: FloatArray
) -> _Outcomes:
    """Draw p_true, the outcome, sql_at and disqualified_at of each MQL lead.

    Leads are handled in rounds of their rank among their account's MQLs, so that each lead's
    account_sql_before counts the written SQLs of the account's earlier MQLs.
    """
    n = len(cutoff)
    u = rng.random(n)
    fast = rng.random(n) < _FAST_SHARE
    delay_in = np.where(
        fast,
        np.clip(
            np.exp(rng.normal(np.log(_FAST_MEDIAN_DAYS * DAY), _FAST_SIGMA, n)),
            _FAST_MIN_SECONDS,
            _SLOW_DAYS[1] * DAY,
        ),
        rng.uniform(_SLOW_DAYS[0] * DAY, _SLOW_DAYS[1] * DAY, n),
    ).astype(np.int64)
    fate = rng.random(n)
    delay_late = rng.uniform(_LATE_DAYS[0] * DAY, _LATE_DAYS[1] * DAY, n).astype(np.int64)
    delay_dq = rng.uniform(_DQ_DAYS[0] * DAY, _DQ_DAYS[1] * DAY, n).astype(np.int64)
    order = np.lexsort((cutoff, account))
    counts = np.bincount(account[order]) if n else np.zeros(0, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(_segment_starts(counts.astype(np.int64)), counts)
    p = np.zeros(n)
    sql = np.full(n, -1, dtype=np.int64)
    prior = np.zeros(n, dtype=np.int64)
    done_keys = np.zeros(0, dtype=np.int64)
    for r in range(int(rank.max()) + 1 if n else 0):
        sel = np.flatnonzero(rank == r)
        if len(done_keys):
            acc = account[sel]
            prior[sel] = np.searchsorted(
                done_keys, acc * _KEY + cutoff[sel], "left"
            ) - np.searchsorted(done_keys, acc * _KEY, "left")
        p[sel] = _probability(static[sel] + _account_sql_logit(prior[sel].astype(np.float64)))
        conv = u[sel] < p[sel]
        late = ~conv & (fate[sel] < _LATE_SHARE)
        when = cutoff[sel] + np.where(conv, delay_in[sel], delay_late[sel])
        written = (conv | late) & (when <= tl.as_of)
        sql[sel] = np.where(written, when, -1)
        new = account[sel][written] * _KEY + when[written]
        done_keys = np.sort(np.concatenate([done_keys, new]))
    converted = u < p
    late_sql = ~converted & (fate < _LATE_SHARE)
    dq_when = cutoff + delay_dq
    dq = (
        ~converted
        & ~late_sql
        & (fate >= _LATE_SHARE)
        & (fate < _DQ_FATE_END)
        & (dq_when <= tl.as_of)
    )
    return _Outcomes(p=p, converted=converted, sql=sql, disqualified=np.where(dq, dq_when, -1))


def _sql_delay_cdf(days: FloatArray) -> FloatArray:
    """P(a converting lead's SQL comes within `days` of its cutoff), as `_outcomes` draws it."""
    from scipy.special import ndtr

    seconds = days * DAY
    fast = np.where(
        seconds < _FAST_MIN_SECONDS,
        0.0,
        ndtr((np.log(np.maximum(seconds, 1.0)) - np.log(_FAST_MEDIAN_DAYS * DAY)) / _FAST_SIGMA),
    )
    fast = np.where(days >= _SLOW_DAYS[1], 1.0, fast)
    return _FAST_SHARE * fast + (1.0 - _FAST_SHARE) * _uniform_cdf(days, _SLOW_DAYS)


def _uniform_cdf(days: FloatArray, bounds: tuple[int, int]) -> FloatArray:
    return np.asarray(np.clip((days - bounds[0]) / (bounds[1] - bounds[0]), 0.0, 1.0))


def probability_at_age(
    p_true: FloatArray | pd.Series, age_days: FloatArray | pd.Series, horizon_days: float = 90.0
) -> FloatArray:
    """The true P(SQL within `horizon_days` after a cutoff `age_days` after mql_at | still open).

    Derived from the generator's own outcome law, not simulated: a lead with `p_true` (its
    truth at mql_at) converts with that probability after a delay drawn by `_outcomes`; if it
    does not, it may still become an SQL after the 90-day horizon, be disqualified, or stay
    open. Open at the cutoff means no SQL and no disqualification by then. Nothing seen after
    mql_at tells more about the outcome (the draw depends on mql_at's observables alone), so
    this is the best score any model can give at that age. At age 0 with the default horizon
    it is `p_true` itself, returned exactly.
    """
    p = np.asarray(p_true, dtype=np.float64)
    age = np.maximum(np.asarray(age_days, dtype=np.float64), 0.0)
    end = age + horizon_days
    late, dq_share = _LATE_SHARE, _DQ_FATE_END - _LATE_SHARE
    converting_open = 1.0 - _sql_delay_cdf(age)
    converting_sql = _sql_delay_cdf(end) - _sql_delay_cdf(age)
    late_open = 1.0 - _uniform_cdf(age, _LATE_DAYS)
    late_sql = _uniform_cdf(end, _LATE_DAYS) - _uniform_cdf(age, _LATE_DAYS)
    dq_open = 1.0 - _uniform_cdf(age, _DQ_DAYS)
    never = 1.0 - _DQ_FATE_END
    sql = p * converting_sql + (1.0 - p) * late * late_sql
    still_open = p * converting_open + (1.0 - p) * (late * late_open + dq_share * dq_open + never)
    with np.errstate(invalid="ignore", divide="ignore"):
        at_age = np.where(still_open > 0, sql / still_open, 0.0)
    exact = (age == 0.0) & (horizon_days == 90.0)
    return np.asarray(np.where(exact, p, at_age), dtype=np.float64)


def _messy_events(rng: np.random.Generator, ev: _Events) -> IntArray:
    """Write order: ~1% exact duplicates added, ~3% events arriving late (out of time order)."""
    m = len(ev.lead)
    dup = np.flatnonzero(rng.random(m) < 0.01)
    rows = np.concatenate([np.arange(m, dtype=np.int64), dup])
    ingest = ev.time[rows] + np.where(
        rng.random(len(rows)) < 0.03, rng.exponential(2.0 * DAY, len(rows)).astype(np.int64), 0
    )
    return rows[np.argsort(ingest, kind="stable")]


def _chunk(
    rng: np.random.Generator,
    tl: _Timeline,
    camps: _Campaigns,
    sizes: IntArray,
    first_lead: int,
    first_account: int,
    id_width: tuple[int, int],
    events_per_lead: float,
    params: Mapping[str, Any],
    shift: MarketShift | None = None,
) -> SyntheticSnapshot:
    """Generate one chunk: the leads of `sizes` accounts, their events, outcomes and truth."""
    leads = _leads(rng, tl, sizes)
    _shift_leads(leads, tl, shift)
    n = len(leads.created)
    ev = _events(rng, tl, leads, camps, events_per_lead)
    _, mql = _mql_times(rng, tl, ev, n)
    mql_leads = np.flatnonzero(mql >= 0)
    cutoff = mql[mql_leads]
    feats = _observables(leads, ev, mql_leads, cutoff)
    static = _shift_logit(_static_logit(feats), cutoff, tl, shift)
    outcome = _outcomes(rng, tl, leads.account[mql_leads], cutoff, static)
    sql = np.full(n, -1, dtype=np.int64)
    dq = np.full(n, -1, dtype=np.int64)
    sql[mql_leads] = outcome.sql
    dq[mql_leads] = outcome.disqualified
    lead_ids = _ids("L", np.arange(first_lead + 1, first_lead + n + 1), id_width[0])
    account_ids = _ids("A", first_account + 1 + leads.account, id_width[1])
    frame = _lead_frame(rng, tl, leads, lead_ids, account_ids, mql, sql, dq)
    rows = _messy_events(rng, ev)
    events = pd.DataFrame(
        {
            "lead_id": _str_series(pc.take(lead_ids, pa.array(ev.lead[rows]))),
            "occurred_at": _timestamps(ev.time[rows], tl.t0),
            "event_type": _str_series(_decode(ev.etype[rows], WRITTEN_EVENT_TYPES)),
            "campaign": _str_series(_decode(ev.campaign[rows], camps.names)),
            "url": _str_series(_decode(ev.url[rows], _url_vocabulary()[0])),
        }
    )
    truth = pd.DataFrame(
        {
            "lead_id": _str_series(pc.take(lead_ids, pa.array(mql_leads))),
            "cutoff": _timestamps(cutoff, tl.t0),
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
    tl: _Timeline,
    leads: _Leads,
    lead_ids: pa.Array,
    account_ids: pa.Array,
    mql: IntArray,
    sql: IntArray,
    dq: IntArray,
) -> pd.DataFrame:
    n = len(leads.created)
    title_vocab = [t[0] for t in TITLES] + [""]
    title = np.where(leads.title == -2, len(TITLES), leads.title)
    industry = _variants(rng, leads.industry, 0.12)
    placeholder = (leads.industry < 0) & (rng.random(n) < 0.4)
    industry_vocab = [*_variant_vocabulary(i for i, _ in INDUSTRIES), "N/A"]
    industry = np.where(placeholder, len(industry_vocab) - 1, industry)
    size = pd.array(np.where(np.isnan(leads.size), 0, leads.size).astype(np.int64), dtype="Int64")
    size[np.isnan(leads.size)] = pd.NA
    return pd.DataFrame(
        {
            "lead_id": _str_series(lead_ids),
            "account_id": _str_series(account_ids),
            "created_at": _timestamps(leads.created, tl.t0),
            "mql_at": _timestamps(mql, tl.t0, mql >= 0),
            "sql_at": _timestamps(sql, tl.t0, sql >= 0),
            "disqualified_at": _timestamps(dq, tl.t0, dq >= 0),
            "job_title": _str_series(_decode(title, title_vocab)),
            "country": _str_series(
                _decode(
                    _variants(rng, leads.country, 0.12),
                    _variant_vocabulary(c for c, _ in COUNTRIES),
                )
            ),
            "industry": _str_series(_decode(industry, industry_vocab)),
            "lead_source": _str_series(
                _decode(
                    _variants(rng, leads.source, 0.1),
                    _variant_vocabulary(s for s, _, _ in LEAD_SOURCES),
                )
            ),
            "company_size": pd.Series(size),
            "email": _str_series(leads.email),
        }
    )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
    stamp = _utc(as_of)
    tl = _timeline(stamp, months)
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
            "after": _utc(shift.after).isoformat(),
            "size": shift.strength(),
        }
    return _chunks(n_leads, seed, tl, events_per_lead, chunk_leads, progress, params, shift)


def _chunks(
    n_leads: int,
    seed: int,
    tl: _Timeline,
    events_per_lead: float,
    chunk_leads: int,
    progress: Callable[[int, int], None] | None,
    params: Mapping[str, Any],
    shift: MarketShift | None = None,
) -> Iterator[SyntheticSnapshot]:
    size_seq, campaign_seq, chunk_seq = np.random.SeedSequence(seed).spawn(3)
    sizes = _account_sizes(np.random.default_rng(size_seq), n_leads)
    camps = _campaigns(np.random.default_rng(campaign_seq), tl)
    bounds = _chunk_bounds(sizes, chunk_leads)
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
        empty = _empty_snapshot(_utc(kwargs.get("as_of", "2026-06-30")))
        return SyntheticSnapshot(empty.leads, empty.events, empty.truth, empty.as_of)

    def cat(name: str) -> pd.DataFrame:
        return pd.concat([getattr(c, name) for c in chunks], ignore_index=True)

    return SyntheticSnapshot(
        cat("leads"), cat("events"), cat("truth"), chunks[0].as_of, chunks[0].params
    )


def _empty_snapshot(as_of: pd.Timestamp) -> SyntheticSnapshot:
    def frame(schema: pa.Schema) -> pd.DataFrame:
        table = schema.empty_table()
        return pd.DataFrame({name: _from_arrow(table.column(name)) for name in schema.names})

    return SyntheticSnapshot(
        frame(_LEADS_SCHEMA), frame(_EVENTS_SCHEMA), frame(_TRUTH_SCHEMA), as_of
    )


def _from_arrow(column: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_string(column.type):
        return _str_series(column)
    if pa.types.is_timestamp(column.type):
        return pd.Series(pd.DatetimeIndex([], dtype="datetime64[us, UTC]"))
    if pa.types.is_integer(column.type):
        return pd.Series(pd.array([], dtype="Int64"))
    return pd.Series(column.to_numpy())


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_TS: Final = pa.timestamp("us", tz="UTC")
_LEADS_SCHEMA: Final = pa.schema(
    [
        (c, _TS) if c.endswith("_at") else (c, pa.int64() if c == "company_size" else pa.string())
        for c in LEAD_COLUMNS
    ]
)
_EVENTS_SCHEMA: Final = pa.schema(
    [(c, _TS if c == "occurred_at" else pa.string()) for c in EVENT_COLUMNS]
)
_TRUTH_SCHEMA: Final = pa.schema(
    [
        ("lead_id", pa.string()),
        ("cutoff", _TS),
        ("p_true", pa.float64()),
        ("converted_in_horizon", pa.bool_()),
    ]
)


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [(f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type) for f in schema]
    )


def _iso_strings(column: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> pa.Array:
    """ISO 8601 text: mostly 'Z', some '+00:00', ~10% without a zone (naive means UTC)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    text = pc.strftime(array, format="%Y-%m-%dT%H:%M:%S", locale="C")
    r = rng.random(len(array))
    suffix = _decode(
        np.where(r < 0.1, 2, np.where(r < 0.35, 1, 0)).astype(np.int64), ("Z", "+00:00", "")
    )
    return pc.binary_join_element_wise(text, suffix, "")


def _csv_table(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    columns = [
        _iso_strings(table.column(f.name), rng)
        if pa.types.is_timestamp(f.type)
        else table.column(f.name)
        for f in table.schema
    ]
    return pa.table(columns, schema=_csv_schema(table.schema))


def _writer_schemas() -> dict[str, pa.Schema]:
    """Arrow schemas with pandas metadata, so pandas reads back the same dtypes (e.g. Int64)."""
    empty = _empty_snapshot(pd.Timestamp(0, tz="UTC"))
    return {
        key: pa.Table.from_pandas(frame, schema=schema, preserve_index=False).schema
        for key, frame, schema in (
            ("leads", empty.leads, _LEADS_SCHEMA),
            ("events", empty.events, _EVENTS_SCHEMA),
            ("truth", empty.truth, _TRUTH_SCHEMA),
        )
    }


def write_snapshot(
    chunks: Iterable[SyntheticSnapshot],
    out_dir: Path,
    *,
    fmt: Literal["parquet", "csv"] = "parquet",
) -> dict[str, int]:
    """Stream chunks into leads.<fmt>, events.<fmt>, truth.parquet and snapshot.json.

    Every file is written under a temporary name in out_dir and moved into place only when all
    chunks are written; on failure the temporaries are removed and earlier files stay as they were.

    Args:
        chunks: Chunks from `generate` (or one whole `SyntheticSnapshot`).
        out_dir: Folder to write into; created if missing.
        fmt: Format of leads and events; truth is always Parquet.

    Returns:
        Row counts: {"leads": ..., "events": ..., "truth": ...}.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    token = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    names = {
        "leads": f"leads.{fmt}",
        "events": f"events.{fmt}",
        "truth": "truth.parquet",
        "meta": "snapshot.json",
    }
    temps = {key: out_dir / f".{name}{token}" for key, name in names.items()}
    schemas = _writer_schemas()
    writers: dict[str, Any] = {}
    counts = {"leads": 0, "events": 0, "truth": 0}
    try:
        for key, schema in schemas.items():
            if fmt == "csv" and key != "truth":
                writers[key] = pacsv.CSVWriter(str(temps[key]), _csv_schema(schema))
            else:
                writers[key] = pq.ParquetWriter(str(temps[key]), schema, compression="zstd")
        params: Mapping[str, Any] = {}
        as_of: pd.Timestamp | None = None
        for i, chunk in enumerate(chunks):
            params = params or chunk.params
            as_of = chunk.as_of
            rng = np.random.default_rng([20_260_630, i])
            for key, frame in (
                ("leads", chunk.leads),
                ("events", chunk.events),
                ("truth", chunk.truth),
            ):
                table = pa.Table.from_pandas(frame, schema=schemas[key], preserve_index=False)
                if fmt == "csv" and key != "truth":
                    table = _csv_table(table, rng)
                writers[key].write_table(table)
                counts[key] += table.num_rows
        for writer in writers.values():
            writer.close()
        meta = {
            **dict(params),
            "as_of": None if as_of is None else as_of.isoformat(),
            "format": fmt,
            "files": {k: names[k] for k in schemas},
            "row_counts": counts,
        }
        meta["n_leads"] = counts["leads"]
        temps["meta"].write_text(
            json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        for key, name in names.items():
            temps[key].replace(out_dir / name)
    except BaseException:
        for writer in writers.values():
            with contextlib.suppress(Exception):  # cleanup must not mask the original error
                writer.close()
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    return counts
