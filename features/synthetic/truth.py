"""The truth: p_true, the conversion probability, from what the snapshot shows before mql_at.

All weights are in logit units. Points rules see fit attributes one at a time and per-type
event counts with caps and decay; most of the weight here sits where they cannot look: the
account's buying group, who can buy at which company size, recency shape and tire-kicking.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from features.synthetic.arrays import FloatArray

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


def count_name(event_type: str, window: int | None) -> str:
    """Column name of an event count, e.g. n_pricing_page_view_7d or n_demo_request_all."""
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
    *(count_name(t, w) for t, w in TRUTH_COUNTS),
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


def fit_logit(f: pd.DataFrame) -> FloatArray:
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


def engagement_logit(f: pd.DataFrame) -> FloatArray:
    """What the lead and its account did before the cutoff, as sales reads it, not as points
    add up: conditional hand-raisers, recency, tire-kicking, freshness, the buying group."""

    def n(event_type: str, window: int | None) -> FloatArray:
        return f[count_name(event_type, window)].to_numpy(dtype=np.float64)

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


def static_logit(features: pd.DataFrame) -> FloatArray:
    """The logit without the account-SQL term (which depends on other leads' outcomes)."""
    return _INTERCEPT + fit_logit(features) + engagement_logit(features)


def account_sql_logit(account_sql_before: FloatArray | pd.Series) -> FloatArray:
    """An account already in the pipeline: other leads of it became SQLs before the cutoff."""
    return 2.2 * _saturate(account_sql_before, 1.0)


def probability(logit: FloatArray) -> FloatArray:
    """A logit as a probability, clipped to logits in [-9, 9]."""
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
    logit = static_logit(features) + account_sql_logit(features["account_sql_before"])
    return probability(logit)
