"""Time-decayed event counts: exact against a naive sum, strictly before the cutoff, no overflow."""

import math

import numpy as np
import pandas as pd
import pytest

from common.config import build_config
from features.contract import EVENT_TYPES, ContractError
from features.decay import decay_rate, decayed_counts, decayed_of_events, decayed_sums
from features.reader import Snapshot, snapshot_from_frames
from tests.conftest import random_crm

DAY_MS = 86_400_000
CUTOFF = pd.Timestamp("2025-03-01", tz="UTC")


def _naive(
    ev_lead: np.ndarray,
    ev_ms: np.ndarray,
    row_lead: np.ndarray,
    row_cutoff_ms: np.ndarray,
    half_life_days: float,
) -> np.ndarray:
    """The definition, one row at a time: sum of 0.5 ** (age_days / half-life) before the cutoff."""
    out = []
    for lead, cutoff in zip(row_lead, row_cutoff_ms, strict=True):
        before = (ev_lead == lead) & (ev_ms < cutoff)
        age_days = (cutoff - ev_ms[before]) / DAY_MS
        out.append(float(np.sum(0.5 ** (age_days / half_life_days))))
    return np.array(out)


def _snapshot(events: list[tuple[str, str, str]], leads: tuple[str, ...] = ("a", "b")) -> Snapshot:
    leads_frame = pd.DataFrame(
        {"lead_id": list(leads), "created_at": ["2024-01-01"] * len(leads)}, dtype="str"
    )
    events_frame = pd.DataFrame(events, columns=["lead_id", "occurred_at", "event_type"])
    return snapshot_from_frames(leads_frame, events_frame, build_config({"as_of": "2026-01-01"}))


def _rows(leads: list[str], cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": leads, "cutoff": pd.Series(cutoffs).dt.as_unit("ms")})


def test_one_half_life_halves_and_the_cutoff_is_strict() -> None:
    at = CUTOFF.isoformat()
    snapshot = _snapshot(
        [
            ("a", (CUTOFF - pd.Timedelta(days=30)).isoformat(), "pricing_page_view"),  # 0.5
            ("a", (CUTOFF - pd.Timedelta(days=60)).isoformat(), "pricing_page_view"),  # 0.25
            ("a", at, "pricing_page_view"),  # exactly at the cutoff: not before it
            ("a", (CUTOFF + pd.Timedelta(days=1)).isoformat(), "pricing_page_view"),  # future
            ("a", (CUTOFF - pd.Timedelta(milliseconds=1)).isoformat(), "demo_request"),  # ~1
            ("b", (CUTOFF - pd.Timedelta(days=14)).isoformat(), "email_open"),
        ]
    )
    rows = _rows(["a", "b", "a"], [CUTOFF, CUTOFF, CUTOFF + pd.Timedelta(milliseconds=1)])
    rows.index = pd.Index([10, 11, 12])
    half_lives = {"pricing_page_view": 30.0, "demo_request": 60.0, "email_open": 14.0}
    counts = decayed_counts(snapshot, rows, half_lives)

    assert list(counts.columns) == [
        "decayed_pricing_page_view",
        "decayed_demo_request",
        "decayed_email_open",
    ]
    assert list(counts.index) == [10, 11, 12]
    assert counts.loc[10, "decayed_pricing_page_view"] == pytest.approx(0.75, rel=1e-12)
    assert counts.loc[10, "decayed_demo_request"] == pytest.approx(1.0, rel=1e-9)
    assert counts.loc[10, "decayed_email_open"] == 0.0
    assert list(counts.loc[11]) == pytest.approx([0.0, 0.0, 0.5], rel=1e-12)
    # one millisecond later, the event at the old cutoff counts in full
    assert counts.loc[12, "decayed_pricing_page_view"] == pytest.approx(1.75, rel=1e-9)


@pytest.mark.parametrize("half_life_days", [0.05, 1.0, 30.0, 365.0])
def test_matches_the_naive_sum_on_a_random_snapshot(half_life_days: float) -> None:
    leads, events = random_crm(n_leads=200, seed=3, events_per_lead=60)
    snapshot = snapshot_from_frames(leads, events, build_config({"as_of": "2026-01-01"}))
    rng = np.random.default_rng(4)
    row_ids = rng.choice(leads["lead_id"].to_numpy(), 600)
    offsets = pd.to_timedelta(rng.integers(0, 400 * 86_400, 600), unit="s")
    rows = _rows(list(row_ids), list(pd.Timestamp("2025-01-01", tz="UTC") + offsets))
    types = ("email_open", "pricing_page_view", "demo_request")
    counts = decayed_counts(snapshot, rows, dict.fromkeys(types, half_life_days))

    log = snapshot.events
    row_lead = pd.Index(snapshot.leads["lead_id"]).get_indexer(row_ids)
    cutoff_ms = rows["cutoff"].array.asi8
    for event_type in types:
        of_type = log.kind == EVENT_TYPES.index(event_type)
        expected = _naive(
            log.lead[of_type], log.at_ms[of_type], row_lead, cutoff_ms, half_life_days
        )
        assert (expected > 0).sum() > 100  # the check has teeth
        np.testing.assert_allclose(counts[f"decayed_{event_type}"], expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("half_life_days", [0.01, 1.0, 30.0, 365.0])
def test_one_row_per_lead_matches_the_naive_sum_and_the_scan(half_life_days: float) -> None:
    """Rows of distinct leads (a nightly run, the API) are summed at their cutoffs directly;
    the same rows with one lead repeated go through the scan: both give the definition."""
    leads, events = random_crm(n_leads=300, seed=8, events_per_lead=40)
    snapshot = snapshot_from_frames(leads, events, build_config({"as_of": "2026-01-01"}))
    rng = np.random.default_rng(9)
    row_ids = rng.permutation(leads["lead_id"].to_numpy())[:250]  # 50 leads without a row
    offsets = pd.to_timedelta(rng.integers(0, 400 * 86_400, 250), unit="s")
    cutoffs = list(pd.Timestamp("2025-01-01", tz="UTC") + offsets)
    for i in range(40):  # cutoffs at one of the lead's events: that event does not count
        own = events.loc[events["lead_id"] == row_ids[i], "occurred_at"]
        cutoffs[i] = pd.Timestamp(own.iloc[len(own) // 2]).tz_convert("UTC")
    rows = _rows(list(row_ids), cutoffs)
    rows.index = pd.RangeIndex(100, 350)
    types = ("email_open", "pricing_page_view", "demo_request")
    half_lives = dict.fromkeys(types, half_life_days) | {"email_click": 2 * half_life_days}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        direct = decayed_counts(snapshot, rows, half_lives)
    scanned = decayed_counts(snapshot, pd.concat([rows, rows.iloc[:1]]), half_lives)
    np.testing.assert_allclose(direct, scanned.iloc[:-1], rtol=1e-12, atol=1e-300)
    assert list(direct.index) == list(rows.index)

    log = snapshot.events
    row_lead = pd.Index(snapshot.leads["lead_id"]).get_indexer(row_ids)
    cutoff_ms = rows["cutoff"].array.asi8
    # all events, none dropped as after every cutoff (as `decayed_counts` drops them first)
    every = decayed_of_events(log, row_lead, cutoff_ms, half_lives)
    for event_type, half_life in half_lives.items():
        of_type = log.kind == EVENT_TYPES.index(event_type)
        expected = _naive(log.lead[of_type], log.at_ms[of_type], row_lead, cutoff_ms, half_life)
        assert (expected > 0).sum() > 10  # the check has teeth
        meaningful = expected > 1e-250
        for got in (direct[f"decayed_{event_type}"].to_numpy(), every[f"decayed_{event_type}"]):
            np.testing.assert_allclose(got[meaningful], expected[meaningful], rtol=1e-9, atol=0)


def test_a_lead_alone_scores_as_inside_a_big_snapshot() -> None:
    leads, events = random_crm(n_leads=300, seed=5, events_per_lead=20)
    config = build_config({"as_of": "2026-01-01"})
    big = snapshot_from_frames(leads, events, config)
    lead_id = leads["lead_id"].iloc[137]
    alone = snapshot_from_frames(
        leads[leads["lead_id"] == lead_id], events[events["lead_id"] == lead_id], config
    )
    cutoffs = [pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=d) for d in (20, 90, 300)]
    rows = _rows([lead_id] * 3, cutoffs)
    half_lives = dict.fromkeys(EVENT_TYPES, 7.0)
    in_big = decayed_counts(big, rows, half_lives)
    by_itself = decayed_counts(alone, rows, half_lives)
    assert in_big.to_numpy().sum() > 0
    np.testing.assert_allclose(by_itself, in_big, rtol=1e-12, atol=0)


def test_no_overflow_with_short_half_lives_over_years() -> None:
    """Years of events at a 15-minute half-life: exp(rate * span) overflows, the scan does not."""
    rng = np.random.default_rng(6)
    span_ms = 5 * 365 * DAY_MS
    ev_lead = np.repeat(np.arange(4), [3000, 1, 40, 900]).astype(np.int32)
    ev_ms = np.concatenate(
        [np.sort(rng.choice(span_ms, n, replace=False)) for n in (3000, 1, 40, 900)]
    )
    row_lead = np.repeat(np.arange(5), 40)
    # cutoffs just after random events (large values) and anywhere (mostly tiny values)
    near = ev_ms[rng.integers(0, ev_ms.shape[0], 100)] + rng.integers(1, 3_600_000, 100)
    row_cutoff_ms = np.concatenate([near, rng.integers(0, span_ms + DAY_MS, 100)])
    half_life = 0.01
    assert decay_rate(half_life) * span_ms > np.log(np.finfo(np.float64).max)  # textbook: inf
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = decayed_sums(ev_lead, ev_ms, row_lead, row_cutoff_ms, half_life)
    expected = _naive(ev_lead, ev_ms, row_lead, row_cutoff_ms, half_life)
    assert np.isfinite(got).all() and (got >= 0).all()
    meaningful = expected > 1e-250
    assert meaningful.sum() > 50
    np.testing.assert_allclose(got[meaningful], expected[meaningful], rtol=1e-9, atol=0)
    assert np.all(got[~meaningful] <= 1e-250)


def test_times_far_apart_still_index_exactly() -> None:
    """Keys that would not fit one int64 are searched in ranges of leads."""
    ev_lead = np.repeat(np.arange(20), 5).astype(np.int32)
    ev_ms = np.tile(np.array([0, 10, 20, 2**58, 2**58 + 5]), 20)
    row_lead = np.arange(21)  # lead 20 has no events
    row_cutoff_ms = np.where(row_lead % 2 == 0, 15, 2**58 + 5)
    got = decayed_sums(ev_lead, ev_ms, row_lead, row_cutoff_ms, 1e9)
    expected = _naive(ev_lead, ev_ms, row_lead, row_cutoff_ms, 1e9)
    assert expected.tolist()[:2] == pytest.approx([2.0, 1 + 3 * 0.5 ** (2**58 / DAY_MS / 1e9)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_flat_snapshot_gives_unknown_counts() -> None:
    config = build_config({"source": {"flat": True, "events": None}})
    leads = pd.DataFrame({"lead_id": ["a", "b"], "converted": ["1", "0"]})
    snapshot = snapshot_from_frames(leads, None, config)
    rows = pd.DataFrame({"lead_id": ["a", "b"], "cutoff": pd.NaT})
    counts = decayed_counts(snapshot, rows, {"email_open": 14.0})
    assert counts["decayed_email_open"].isna().all()


def test_bad_arguments_are_named() -> None:
    snapshot = _snapshot([("a", "2025-01-01", "email_open")])
    rows = _rows(["a"], [CUTOFF])
    with pytest.raises(ValueError, match="email_opened"):
        decayed_counts(snapshot, rows, {"email_opened": 14.0})
    with pytest.raises(ValueError, match="half-life"):
        decayed_counts(snapshot, rows, {"email_open": 0.0})
    with pytest.raises(ValueError, match="half-life"):
        decayed_counts(snapshot, rows, {"email_open": math.inf})
    with pytest.raises(ContractError, match="lead_id"):
        decayed_counts(snapshot, _rows(["zz"], [CUTOFF]), {"email_open": 14.0})
    no_cutoff = pd.DataFrame({"lead_id": ["a"], "cutoff": pd.Series([pd.NaT], dtype="M8[ms, UTC]")})
    with pytest.raises(ContractError, match="cutoff"):
        decayed_counts(snapshot, no_cutoff, {"email_open": 14.0})
    assert decayed_counts(snapshot, rows.iloc[:0], {"email_open": 14.0}).shape == (0, 1)
