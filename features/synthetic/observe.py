"""What the written snapshot shows of each MQL lead at its cutoff: the truth's features,
computed from the generator's own arrays."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from features.synthetic.arrays import DAY, KEY, IntArray
from features.synthetic.events import Events
from features.synthetic.leads import Leads
from features.synthetic.truth import TRUTH_COUNTS, count_name
from features.synthetic.vocab import EVENT_CODE, INDUSTRIES, LEAD_SOURCES, TITLES
from features.titles import parse_titles


def _window_counts(
    keys: IntArray, entity: IntArray, cutoff: IntArray, days: int | None
) -> IntArray:
    """Events with entity key in [cutoff - days, cutoff); keys sorted (entity * KEY + time)."""
    lower = entity * KEY + (0 if days is None else np.maximum(cutoff - days * DAY, 0))
    upper = entity * KEY + cutoff
    return (np.searchsorted(keys, upper, "left") - np.searchsorted(keys, lower, "left")).astype(
        np.int64
    )


def _category(codes: IntArray, vocabulary: Iterable[str]) -> pd.Series:
    """Canonical codes as the written value would read after trimming and lower-casing."""
    values = np.array([*(v.lower() for v in vocabulary), None], dtype=object)
    return pd.Series(values[codes], dtype=object)  # code -1 picks the trailing None


def observables(leads: Leads, ev: Events, mql_leads: IntArray, cutoff: IntArray) -> pd.DataFrame:
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
    lead_keys = ev.lead * KEY + ev.time  # sorted: events are sorted by (lead, time)
    for event_type, window in TRUTH_COUNTS:
        sel = ev.etype == EVENT_CODE[event_type]
        f[count_name(event_type, window)] = _window_counts(
            lead_keys[sel], mql_leads, cutoff, window
        )
    own_30 = _window_counts(lead_keys, mql_leads, cutoff, 30)
    f["days_since_created"] = (cutoff - leads.created[mql_leads]) / DAY
    account_keys = np.sort(leads.account[ev.lead] * KEY + ev.time)
    account_30 = _window_counts(account_keys, leads.account[mql_leads], cutoff, 30)
    f["account_events_30d"] = account_30 - own_30
    return pd.DataFrame(f)
