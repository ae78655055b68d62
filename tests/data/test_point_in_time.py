"""Point-in-time correctness: a row's features use only what was known before its cutoff.

Each check perturbs the future of one row (events at or after its cutoff, for the lead and its
account; other leads' outcomes moved to after the cutoff) and requires the row's features to
be exactly unchanged. `test_a_leaking_kernel_is_caught` proves the checks can fail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from features import engagement
from common.config import Config, build_config
from features.contract import EVENT_TYPES
from features.pipeline import build_features
from features.rows import training_rows
from features.reader import snapshot_from_frames
from tests.conftest import random_crm

SAMPLE_ROWS = 25


@pytest.fixture(scope="module")
def weekly() -> Config:
    return build_config({"as_of": "2026-01-01", "snapshot_policy": {"weekly_weeks": 3}})


def _features(
    leads: pd.DataFrame, events: pd.DataFrame, config: Config, rows: pd.DataFrame | None = None
) -> pd.DataFrame:
    snap = snapshot_from_frames(leads, events, config)
    if rows is None:
        rows, _ = training_rows(snap.leads, snap.as_of, config, snap.flat)
    return build_features(snap, rows, config).set_axis(
        pd.MultiIndex.from_frame(rows[["lead_id", "cutoff"]])
    )


def _sampled_rows(features: pd.DataFrame, seed: int = 1) -> list[tuple[str, pd.Timestamp]]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(features), size=min(SAMPLE_ROWS, len(features)), replace=False)
    return [features.index[i] for i in picks]


def _account_of(leads: pd.DataFrame, lead_id: str) -> pd.DataFrame:
    """The lead and the other leads of its account (just the lead when it has none)."""
    own = leads[leads["lead_id"] == lead_id]
    account = own["account_id"].iloc[0]
    if pd.isna(account) or account == "":
        return own
    return leads[leads["account_id"] == account]


def _one_row(lead_id: str, cutoff: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": [lead_id], "cutoff": pd.Series([cutoff]).dt.as_unit("ms")})


def _assert_same(expected: pd.Series, got: pd.Series, what: str) -> None:
    differ = [
        name
        for name in expected.index
        if not (expected[name] == got[name] or (pd.isna(expected[name]) and pd.isna(got[name])))
    ]
    shown = differ[:5]
    before, after = expected[shown].tolist(), got[shown].tolist()
    assert not differ, f"{what} changed {shown}: {before} -> {after}"


def future_events_change(config: Config, seed: int = 0) -> None:
    """Add events at and after each sampled row's cutoff, for its lead and account peers."""
    leads, events = random_crm(seed=seed)
    base = _features(leads, events, config)
    rng = np.random.default_rng(seed)
    for lead_id, cutoff in _sampled_rows(base):
        peers = _account_of(leads, lead_id)["lead_id"].to_numpy()
        offsets_ms = np.r_[0, 1, rng.integers(0, 60 * 86_400_000, 30)]
        future = pd.DataFrame(
            {
                "lead_id": rng.choice(peers, offsets_ms.shape[0]),
                "occurred_at": cutoff + pd.to_timedelta(offsets_ms, unit="ms"),
                "event_type": rng.choice(list(EVENT_TYPES), offsets_ms.shape[0]),
            }
        )
        future.loc[0, "lead_id"] = lead_id  # one event of the lead exactly at its cutoff
        row = _one_row(lead_id, cutoff)
        got = _features(leads, pd.concat([events, future], ignore_index=True), config, row)
        _assert_same(
            base.loc[(lead_id, cutoff)], got.iloc[0], f"future events of {lead_id}@{cutoff}"
        )


def test_future_events_change_no_feature(weekly: Config) -> None:
    future_events_change(weekly)


def test_future_outcomes_of_other_leads_change_no_feature(weekly: Config) -> None:
    leads, events = random_crm(seed=2)
    base = _features(leads, events, weekly)
    times = ["created_at", "mql_at", "sql_at"]
    for lead_id, cutoff in _sampled_rows(base, seed=2):
        moved = leads.copy()
        peers = moved["lead_id"].isin(_account_of(leads, lead_id)["lead_id"])
        for column in times:
            # every peer fact at or after the cutoff moves to exactly the cutoff
            later = peers & (moved[column].isna() | (moved[column] >= cutoff))
            if column == "created_at":
                later &= moved["lead_id"] != lead_id
            moved.loc[later & moved[column].notna(), column] = cutoff
        # not-yet SQL peers become SQLs right at the cutoff, and the lead's own SQL moves too
        open_peers = peers & moved["sql_at"].isna() & (moved["lead_id"] != lead_id)
        moved.loc[open_peers, "sql_at"] = (
            moved.loc[open_peers, ["mql_at"]].max(axis=1).fillna(cutoff).clip(lower=cutoff)
        )
        own = moved["lead_id"] == lead_id
        moved.loc[own, "sql_at"] = cutoff + pd.Timedelta(days=1)
        got = _features(moved, events, weekly, _one_row(lead_id, cutoff))
        _assert_same(
            base.loc[(lead_id, cutoff)], got.iloc[0], f"moved outcomes around {lead_id}@{cutoff}"
        )


def test_a_lead_scored_alone_gets_the_same_features(weekly: Config) -> None:
    leads, events = random_crm(seed=3)
    base = _features(leads, events, weekly)
    account_columns = [c for c in base.columns if c.startswith("account_")]
    for lead_id, cutoff in _sampled_rows(base, seed=3):
        row = _one_row(lead_id, cutoff)
        with_account = _account_of(leads, lead_id)
        own_events = events[events["lead_id"].isin(with_account["lead_id"])]
        got = _features(with_account, own_events, weekly, row)
        _assert_same(base.loc[(lead_id, cutoff)], got.iloc[0], f"{lead_id} with its account only")
        alone = leads[leads["lead_id"] == lead_id]
        got = _features(alone, events[events["lead_id"] == lead_id], weekly, row)
        _assert_same(
            base.loc[(lead_id, cutoff)].drop(account_columns),
            got.iloc[0].drop(account_columns),
            f"{lead_id} alone",
        )


def test_chunk_size_changes_nothing(weekly: Config) -> None:
    leads, events = random_crm(seed=4)
    small = build_config({**weekly.model_dump(), "features": {"chunk_leads": 5}})
    pd.testing.assert_frame_equal(_features(leads, events, weekly), _features(leads, events, small))


def test_row_order_changes_nothing(weekly: Config) -> None:
    leads, events = random_crm(seed=5)
    base = _features(leads, events, weekly)
    shuffled = base.index.to_frame(index=False).sample(frac=1.0, random_state=1)
    again = _features(leads, events.sample(frac=1.0, random_state=2), weekly, shuffled)
    pd.testing.assert_frame_equal(base.loc[again.index], again)


def _leaky_counts(
    keys: np.ndarray, row_key: np.ndarray, row_start: np.ndarray, windows_ms: list[int]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """A kernel with an off-by-one: counts events at exactly the cutoff."""
    hi = np.searchsorted(keys, row_key, side="right")
    per_window = [hi - np.searchsorted(keys, row_key - w, side="left") for w in windows_ms]
    return hi, per_window, hi - np.searchsorted(keys, row_start, side="left")


def _leaky_before(times: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """Account history that forgets to compare with the cutoff."""
    return times != engagement.NAT_MS


@pytest.mark.parametrize(
    ("name", "leak", "check"),
    [
        ("_counts", _leaky_counts, "events"),
        ("_before", _leaky_before, "outcomes"),
    ],
)
def test_a_leaking_kernel_is_caught(
    monkeypatch: pytest.MonkeyPatch,
    weekly: Config,
    name: str,
    leak: Callable[..., object],
    check: str,
) -> None:
    monkeypatch.setattr(engagement, name, leak)
    checks = {
        "events": lambda: future_events_change(weekly),
        "outcomes": lambda: test_future_outcomes_of_other_leads_change_no_feature(weekly),
    }
    with pytest.raises(AssertionError, match="changed"):
        checks[check]()
