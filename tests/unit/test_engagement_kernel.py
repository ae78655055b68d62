"""The feature kernel against the features' definitions, counted row by row in plain Python.

`chunk_features` finds each row's events once and counts them per type by prefix sums; here
every count is a loop over the lead's (or account's) events, so the two share nothing but
the definitions.
"""

import numpy as np
import pytest

from features.contract import EVENT_TYPES
from features.engagement import DAY_MS, NAT_MS, ChunkLeads, chunk_features

WINDOWS = (7, 30, 90)
START = 1_700_000_000_000


def _chunk(seed: int) -> tuple[dict[str, np.ndarray], ChunkLeads, np.ndarray, np.ndarray]:
    """Leads (some without an account, one without events), their events sorted by (lead,
    time, type) with several on one day and at one millisecond, and rows with cutoffs on,
    between and after the events."""
    rng = np.random.default_rng(seed)
    n_leads = 40
    account = np.sort(rng.integers(-1, 12, n_leads))
    account = np.concatenate([account[account >= 0], account[account < 0]])  # none: last
    created = START + rng.integers(0, 50, n_leads) * DAY_MS
    mql = np.where(
        rng.random(n_leads) < 0.8, created + rng.integers(0, 60, n_leads) * DAY_MS, NAT_MS
    )
    sql = np.where(
        rng.random(n_leads) < 0.3, created + rng.integers(5, 150, n_leads) * DAY_MS, NAT_MS
    )
    n_events = 1_500
    lead = rng.integers(0, n_leads - 1, n_events)  # the last lead has no events
    at = START + rng.integers(0, 200 * 24, n_events) * 3_600_000 + rng.integers(0, 3, n_events)
    kind = rng.integers(0, len(EVENT_TYPES), n_events)
    triples = np.unique(np.stack([lead, at, kind]), axis=1)
    events = {
        "lead": triples[0],
        "at": triples[1].astype(np.int64),
        "kind": triples[2].astype(np.int8),
    }
    row_lead = np.sort(rng.integers(0, n_leads, 120))
    on_event = events["at"][rng.integers(0, events["at"].shape[0], 120)]
    anywhere = START + rng.integers(0, 260 * 86_400, 120) * 1_000
    cutoff = np.where(rng.random(120) < 0.3, on_event, anywhere).astype(np.int64)
    leads = ChunkLeads(account.astype(np.int64), created, mql, sql)
    return events, leads, row_lead, cutoff


def _expected(
    events: dict[str, np.ndarray], leads: ChunkLeads, lead: int, cutoff: int
) -> dict[str, float]:
    own = [
        (int(t), int(k))
        for ev_lead, t, k in zip(events["lead"], events["at"], events["kind"], strict=True)
        if ev_lead == lead and t < cutoff
    ]
    out: dict[str, float] = {}
    for k, name in enumerate(EVENT_TYPES):
        times = [t for t, kind in own if kind == k]
        for w in WINDOWS:
            out[f"n_{name}_{w}d"] = sum(t >= cutoff - w * DAY_MS for t in times)
        out[f"n_{name}_all"] = len(times)
        out[f"days_since_{name}"] = (cutoff - max(times)) / DAY_MS if times else np.nan
    times = [t for t, _ in own]
    for w in WINDOWS:
        out[f"n_events_{w}d"] = sum(t >= cutoff - w * DAY_MS for t in times)
    out["n_events_all"] = len(times)
    out["days_since_last_event"] = (cutoff - max(times)) / DAY_MS if times else np.nan
    first_of_day: dict[int, int] = {}
    for t in times:
        first_of_day[t // DAY_MS] = min(t, first_of_day.get(t // DAY_MS, t))
    for w in WINDOWS:
        out[f"active_days_{w}d"] = sum(t >= cutoff - w * DAY_MS for t in first_of_day.values())
    out["active_days_all"] = len(first_of_day)
    account = leads.account[lead]
    others = [o for o in range(leads.account.shape[0]) if o != lead and leads.account[o] == account]
    for name, stamps in (
        ("account_other_leads", leads.created_ms),
        ("account_other_mqls", leads.mql_ms),
        ("account_other_sqls", leads.sql_ms),
    ):
        counted = sum(stamps[o] != NAT_MS and stamps[o] < cutoff for o in others)
        out[name] = np.nan if account < 0 else counted
    theirs = [
        int(t)
        for ev_lead, t in zip(events["lead"], events["at"], strict=True)
        if ev_lead in others and t < cutoff
    ]
    for w in WINDOWS:
        counted = sum(t >= cutoff - w * DAY_MS for t in theirs)
        out[f"account_other_events_{w}d"] = np.nan if account < 0 else counted
    out["account_other_events_all"] = np.nan if account < 0 else len(theirs)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernel_counts_are_the_definitions_counted_row_by_row(seed: int) -> None:
    events, leads, row_lead, cutoff = _chunk(seed)
    got = chunk_features(
        events["lead"], events["at"], events["kind"], row_lead, cutoff, leads, WINDOWS
    )
    checked = 0
    for row, (lead, at) in enumerate(zip(row_lead, cutoff, strict=True)):
        for name, value in _expected(events, leads, int(lead), int(at)).items():
            assert got[name][row] == pytest.approx(value, nan_ok=True), (name, row)
            checked += 1
    assert checked == 120 * (len(EVENT_TYPES) * 5 + 5 + 4 + 7)
    # the sample holds what the definitions turn on
    assert np.isnan(got["account_other_leads"]).any() and (got["account_other_events_7d"] > 0).any()
    assert (got["n_events_all"] == 0).any() and (got["active_days_7d"] > 1).any()
