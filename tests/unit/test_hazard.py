"""The hazard model's parts: lead x period rows, and from weekly hazards to a horizon's P."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.periods import CLOSED, PERIOD, label_periods, period_cutoffs
from training.hazard import HazardSpec, hazard_spec, horizon_probability, projected

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2026-01-01", tz="UTC")


def _leads() -> pd.DataFrame:
    """A converts on day 10, B is disqualified on day 15, C stays open; D never became an MQL."""
    nat = pd.NaT
    return pd.DataFrame(
        {
            "lead_id": ["A", "B", "C", "D"],
            "mql_at": [START, START, START, nat],
            "sql_at": [START + 10 * DAY, nat, nat, nat],
            "disqualified_at": [nat, START + 15 * DAY, nat, nat],
        }
    ).astype(dict.fromkeys(("mql_at", "sql_at", "disqualified_at"), "datetime64[ms, UTC]"))


def test_period_rows_follow_each_lead_while_open_and_observed() -> None:
    leads = _leads()
    candidates = period_cutoffs(leads, periods=8, period_days=7, row_share=1.0, seed=0)
    assert set(candidates["lead_id"]) == {"A", "B", "C"} and len(candidates) == 24
    rows, counts = label_periods(candidates, leads, START + 30 * DAY, period_days=7)
    got = {
        (r.lead_id, int(getattr(r, PERIOD))): (int(r.label), int(getattr(r, CLOSED)))
        for r in rows.itertuples()
    }
    assert got == {
        ("A", 0): (0, 0),
        ("A", 1): (1, 1),  # the SQL on day 10 falls in week 1
        ("B", 0): (0, 0),
        ("B", 1): (0, 0),
        ("B", 2): (0, 1),  # disqualified on day 15: an exit, not an SQL
        ("C", 0): (0, 0),  # open and censored: still every week it was observed
        ("C", 1): (0, 0),
        ("C", 2): (0, 0),
        ("C", 3): (0, 0),  # week 4 (days 28-35) runs past the as-of time (day 30)
    }
    assert counts.kept == 9


def test_period_rows_are_thinned_independently_of_the_outcome() -> None:
    ids = [f"L{i}" for i in range(4_000)]
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "mql_at": pd.Series([START] * len(ids), dtype="datetime64[ms, UTC]"),
        }
    )
    rows = period_cutoffs(leads, periods=10, period_days=7, row_share=0.25, seed=3)
    assert len(rows) == pytest.approx(10_000, rel=0.05)
    assert rows.groupby(PERIOD).size().between(900, 1100).all()
    again = period_cutoffs(leads.iloc[::-1], periods=10, period_days=7, row_share=0.25, seed=3)
    assert set(zip(again["lead_id"], again[PERIOD], strict=True)) == set(
        zip(rows["lead_id"], rows[PERIOD], strict=True)
    )


class _Constant:
    """A booster stand-in whose probability depends on the age column only."""

    def __init__(self, by_week: dict[int, float]) -> None:
        self.by_week = by_week

    def predict(self, rows: np.ndarray, **_: Any) -> np.ndarray:
        return np.array([self.by_week[int(age // 7)] for age in rows[:, 0]])


def test_the_horizon_probability_sums_weekly_hazards_of_leads_still_open() -> None:
    names = ("days_since_mql", "n_events_7d")
    spec = hazard_spec(names, period_days=7, horizon_days=14)
    assert spec.advanced == (0,) and spec.weights().tolist() == [1.0, 1.0]
    matrix = np.array([[0.0, 5.0], [7.0, 5.0]])
    stacked = projected(matrix, spec, 2)
    assert stacked[:, 0].tolist() == [0.0, 7.0, 7.0, 14.0] and (stacked[:, 1] == 5).all()
    hazards = _Constant({0: 0.1, 1: 0.2, 2: 0.3})
    plain = horizon_probability(hazards, matrix, spec)  # type: ignore[arg-type]
    assert plain == pytest.approx([1 - 0.9 * 0.8, 1 - 0.8 * 0.7])
    # with exits (SQL or disqualification) 0.5 a week, half the leads are gone by week 2
    exits = _Constant({0: 0.5, 1: 0.5, 2: 0.5})
    competing = HazardSpec(7, 14, (0,), exits)  # type: ignore[arg-type]
    p = horizon_probability(hazards, matrix, competing)  # type: ignore[arg-type]
    assert p == pytest.approx([0.1 + 0.5 * 0.2, 0.2 + 0.5 * 0.3])
    # a partial last week counts by its share of the horizon
    ten = HazardSpec(7, 10, (0,), exits)  # type: ignore[arg-type]
    assert ten.weights() == pytest.approx([1.0, 3 / 7])
    p = horizon_probability(hazards, matrix[:1], ten)  # type: ignore[arg-type]
    assert p == pytest.approx([0.1 + 0.5 * 0.2 * 3 / 7])


def test_hazard_spec_round_trips_through_json() -> None:
    spec = HazardSpec(7, 90, (3, 5))
    assert HazardSpec.from_json(spec.to_json()) == spec
