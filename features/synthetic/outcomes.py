"""The outcome law: when an MQL lead with a given p_true becomes an SQL, is disqualified or
stays open, and the true probability at any age after mql_at derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from features.synthetic.arrays import DAY, KEY, BoolArray, FloatArray, IntArray, segment_starts
from features.synthetic.timeline import Timeline
from features.synthetic.truth import account_sql_logit, probability

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
class Outcomes:
    """Per MQL lead: p_true, whether it converts, and the sql_at and disqualified_at written."""

    p: FloatArray
    converted: BoolArray
    sql: IntArray  # -1 when none written
    disqualified: IntArray  # -1 when none written


def draw_outcomes(
    rng: np.random.Generator, tl: Timeline, account: IntArray, cutoff: IntArray, static: FloatArray
) -> Outcomes:
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
    rank[order] = np.arange(n) - np.repeat(segment_starts(counts.astype(np.int64)), counts)
    p = np.zeros(n)
    sql = np.full(n, -1, dtype=np.int64)
    prior = np.zeros(n, dtype=np.int64)
    done_keys = np.zeros(0, dtype=np.int64)
    for r in range(int(rank.max()) + 1 if n else 0):
        sel = np.flatnonzero(rank == r)
        if len(done_keys):
            acc = account[sel]
            prior[sel] = np.searchsorted(
                done_keys, acc * KEY + cutoff[sel], "left"
            ) - np.searchsorted(done_keys, acc * KEY, "left")
        p[sel] = probability(static[sel] + account_sql_logit(prior[sel].astype(np.float64)))
        conv = u[sel] < p[sel]
        late = ~conv & (fate[sel] < _LATE_SHARE)
        when = cutoff[sel] + np.where(conv, delay_in[sel], delay_late[sel])
        written = (conv | late) & (when <= tl.as_of)
        sql[sel] = np.where(written, when, -1)
        new = account[sel][written] * KEY + when[written]
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
    return Outcomes(p=p, converted=converted, sql=sql, disqualified=np.where(dq, dq_when, -1))


def _sql_delay_cdf(days: FloatArray) -> FloatArray:
    """P(a converting lead's SQL comes within `days` of its cutoff), as `draw_outcomes` draws it."""
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
    truth at mql_at) converts with that probability after a delay drawn by `draw_outcomes`; if it
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
