"""The counts frozen at mql_at (`at_mql_names`) for rows at, after and before it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.config import build_config
from features.pipeline import AT_MQL, at_mql_names, build_features
from features.reader import snapshot_from_frames

MQL = pd.Timestamp("2026-03-10T12:00:00Z")


def _features(cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    config = build_config({"as_of": "2026-06-30T00:00:00Z"})
    leads = pd.DataFrame(
        {
            "lead_id": ["a", "b"],
            "account_id": ["x", "x"],
            "created_at": ["2026-01-05T09:00:00Z", "2026-02-01T09:00:00Z"],
            "mql_at": [MQL.isoformat(), None],
        }
    )
    times = [MQL - pd.Timedelta(days=d) for d in (40, 20, 6, 2)]
    times += [MQL + pd.Timedelta(days=d) for d in (1, 3, 9)]
    kinds = ["email_open", "page_view", "pricing_page_view", "email_open"]
    kinds += ["demo_request", "email_open", "page_view"]
    events = pd.DataFrame(
        {
            "lead_id": ["a"] * len(times) + ["b"],
            "occurred_at": [t.isoformat() for t in times] + ["2026-03-01T00:00:00Z"],
            "event_type": [*kinds, "page_view"],
        }
    )
    snapshot = snapshot_from_frames(leads, events, config)
    rows = pd.DataFrame(
        {
            "lead_id": ["a"] * len(cutoffs) + ["b"],
            "cutoff": pd.Series([*cutoffs, MQL]).dt.as_unit("ms").array,
        },
        index=range(10, 11 + len(cutoffs)),
    )
    return build_features(snapshot, rows, config)


def test_rows_at_after_and_before_mql_at_get_the_counts_as_they_stood_at_mql_at() -> None:
    at, later, before = MQL, MQL + pd.Timedelta(days=10), MQL - pd.Timedelta(days=3)
    frame = _features([later, at, before])
    frozen = at_mql_names(build_config({}))
    assert frozen
    plain = [name.removesuffix(AT_MQL) for name in frozen]
    at_row, later_row, before_row, not_mql = (frame.loc[i] for i in (11, 10, 12, 13))
    # at its mql_at a row's frozen counts are its own; later rows keep those, not their own
    assert np.array_equal(at_row[frozen].to_numpy(float), at_row[plain].to_numpy(float))
    assert np.array_equal(later_row[frozen].to_numpy(float), at_row[plain].to_numpy(float))
    assert not np.array_equal(later_row[plain].to_numpy(float), at_row[plain].to_numpy(float))
    # not yet an MQL at the cutoff, or never one: nothing to freeze
    assert before_row[frozen].isna().all() and not_mql[frozen].isna().all()


def test_the_lead_age_at_mql_at_is_the_days_it_took_to_become_an_mql() -> None:
    frame = _features([MQL + pd.Timedelta(days=30), MQL])
    took = (MQL - pd.Timestamp("2026-01-05T09:00:00Z")) / pd.Timedelta(days=1)
    assert frame.loc[10, "days_since_created_at_mql"] == frame.loc[11, "days_since_created"]
    assert frame.loc[10, "days_since_created_at_mql"] == took
    assert frame.loc[10, "days_since_created"] == took + 30
    # recency stays at the scoring time only: a row at mql_at already sees it as it stood
    assert "days_since_demo_request_at_mql" not in frame.columns
