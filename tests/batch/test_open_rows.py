"""Which MQLs are open at an as-of time, and the small pure helpers of the batch job."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from common.config import build_config
from features.contract import ContractError
from features.spec import feature_meanings
from serving.batch import (
    after_snapshot_note,
    as_utc,
    open_flat_rows,
    open_mql_rows,
    stale_rows,
    staleness_note,
    threshold_texts,
    tier_changes,
    tier_counts,
)
from training.reasons import ReasonPlan, choose
from training.scoring import reason_texts

AS_OF = pd.Timestamp("2026-05-01T00:00:00Z")
DAY = pd.Timedelta(days=1)
NAT = pd.NaT


def _leads(cases: dict[str, tuple[object, object, object]]) -> pd.DataFrame:
    """lead_id -> (mql_at, sql_at, disqualified_at)."""
    columns = list(zip(*cases.values(), strict=True))
    return pd.DataFrame(
        {
            "lead_id": list(cases),
            "mql_at": pd.to_datetime(pd.Series(columns[0]), utc=True),
            "sql_at": pd.to_datetime(pd.Series(columns[1]), utc=True),
            "disqualified_at": pd.to_datetime(pd.Series(columns[2]), utc=True),
        }
    )


def test_open_mqls_at_the_boundaries() -> None:
    cases = {
        "open": (AS_OF - 10 * DAY, NAT, NAT),
        "not_an_mql": (NAT, NAT, NAT),
        "mql_after_as_of": (AS_OF + pd.Timedelta(seconds=1), NAT, NAT),
        "mql_exactly_at_as_of": (AS_OF, NAT, NAT),
        "converted_before": (AS_OF - 10 * DAY, AS_OF - DAY, NAT),
        "converted_exactly_at_as_of": (AS_OF - 10 * DAY, AS_OF, NAT),
        "converts_later": (AS_OF - 10 * DAY, AS_OF + DAY, NAT),
        "disqualified_before": (AS_OF - 10 * DAY, NAT, AS_OF - DAY),
        "disqualified_exactly_at_as_of": (AS_OF - 10 * DAY, NAT, AS_OF),
        "disqualified_later": (AS_OF - 10 * DAY, NAT, AS_OF + DAY),
        "horizon_closed": (AS_OF - 91 * DAY, NAT, NAT),
        "horizon_ends_exactly_at_as_of": (AS_OF - 90 * DAY, NAT, NAT),
        "horizon_ends_a_second_later": (AS_OF - 90 * DAY + pd.Timedelta(seconds=1), NAT, NAT),
    }
    rows = open_mql_rows(_leads(cases), AS_OF, horizon_days=90)
    assert rows["lead_id"].tolist() == [
        "open",
        "mql_exactly_at_as_of",
        "converts_later",
        "disqualified_later",
        "horizon_ends_a_second_later",
    ]
    assert (rows["cutoff"] == AS_OF).all()
    assert str(rows["cutoff"].dtype) == "datetime64[ms, UTC]"


def test_staleness_note_counts_leads_older_than_the_training_cutoffs() -> None:
    ages = {"fresh": 0, "six_days": 6, "a_week": 7, "three_weeks": 21, "ten_weeks": 70}
    leads = _leads({k: (AS_OF - d * DAY, NAT, NAT) for k, d in ages.items()})
    rows = open_mql_rows(leads, AS_OF, horizon_days=90)
    assert len(rows) == 5
    assert stale_rows(leads, rows, 0) == 3  # 7 days and more
    assert stale_rows(leads, rows, 2) == 2  # 21 days and more: beyond the 2-week cutoff
    assert stale_rows(leads, rows, 10) == 0 and stale_rows(leads, rows.iloc[:0], 0) == 0
    note = staleness_note(3, 5, 0, "leadscore version 3")
    assert note is not None
    assert note.startswith("3 of 5 open MQLs (60%) are 7 or more days past their MQL")
    assert "leadscore version 3" in note and "at mql_at only" in note
    weekly = staleness_note(2, 5, 2, "m")
    assert weekly is not None and weekly.startswith("2 of 5 open MQLs (40%) are 21 or more")
    assert "up to 2 weeks after mql_at" in weekly
    assert staleness_note(0, 5, 0, "m") is None and staleness_note(0, 0, 0, "m") is None


def test_the_horizon_comes_from_the_argument() -> None:
    leads = _leads({"old": (AS_OF - 40 * DAY, NAT, NAT)})
    assert len(open_mql_rows(leads, AS_OF, horizon_days=30)) == 0
    assert len(open_mql_rows(leads, AS_OF, horizon_days=60)) == 1


def test_naive_as_of_is_utc_and_garbage_is_named() -> None:
    assert as_utc("2026-05-01T00:00:00") == AS_OF
    assert as_utc("2026-05-01T02:00:00+02:00") == AS_OF
    for bad in ("yesterday-ish", "", "2026-13-45"):
        with pytest.raises(ContractError, match="--as-of"):
            as_utc(bad, "--as-of")


def test_no_open_mqls_gives_an_empty_frame() -> None:
    rows = open_mql_rows(_leads({"x": (NAT, NAT, NAT)}), AS_OF, 90)
    assert rows.empty and list(rows.columns) == ["lead_id", "cutoff"]


def _plan(names: tuple[str, ...]) -> ReasonPlan:
    return ReasonPlan.of(names, feature_meanings(build_config({})))


def _values(features: pd.DataFrame) -> np.ndarray:
    """The float matrix the booster sees (categories as any number: never absences)."""
    return np.column_stack(
        [
            pd.to_numeric(features[c], errors="coerce").to_numpy(dtype=float)
            if pd.api.types.is_numeric_dtype(features[c])
            else np.where(features[c].isna(), np.nan, 0.0)
            for c in features.columns
        ]
    )


def _texts(
    plan: ReasonPlan, features: pd.DataFrame, values: np.ndarray, contributions: np.ndarray
) -> np.ndarray:
    """The batch job's reason texts, chosen as `training.scoring.score_matrix` chooses them."""
    return reason_texts(plan, features, contributions, choose(plan, values, contributions, 3))


def test_reasons_raising_then_lowering_zero_left_out() -> None:
    names = ("industry", "n_demo_request_30d", "email_free")
    features = pd.DataFrame(
        {"industry": ["software", None], "n_demo_request_30d": [2.0, np.nan], "email_free": [1, 1]}
    )
    contributions = np.array([[0.1, -0.5, 0.0], [0.0, 0.0, 0.0]])
    texts = _texts(_plan(names), features, _values(features), contributions)
    first = json.loads(texts[0])
    assert [r["feature"] for r in first] == ["industry", "n_demo_request_30d"]
    assert first[1]["value"] == 2.0 and first[1]["contribution"] == -0.5
    assert first[1]["sentence"] == "2 demo requests in the last 30 days lowers the chance"
    assert first[0]["sentence"] == "industry: Software raises the chance"
    assert json.loads(texts[1]) == []


def test_thresholds_as_json_lists() -> None:
    thresholds = pd.DataFrame({"mql": [True, True, False], "hot": [False, True, False]})
    assert threshold_texts(thresholds).tolist() == ['["mql"]', '["mql", "hot"]', "[]"]


def test_tier_changes_and_counts() -> None:
    before = pd.DataFrame({"lead_id": ["a", "b", "c", "d"], "tier": ["A", "C", "B", "D"]})
    after = pd.DataFrame({"lead_id": ["a", "b", "c", "e"], "tier": ["B", "A", "B", "A"]})
    changes = tier_changes(before, after)
    assert changes.as_dict() == {"new": 1, "gone": 1, "up": 1, "down": 1, "same": 1}
    assert tier_counts(after["tier"].to_numpy()) == {"A": 2, "B": 2, "C": 0, "D": 0}
    # a lead twice in a file counts once, with its last tier; the files' orders differ
    twice = pd.DataFrame({"lead_id": ["e", "c", "c", "a", "b"], "tier": ["A", "D", "B", "B", "A"]})
    assert tier_changes(before, twice).as_dict() == changes.as_dict()
    assert tier_changes(before, before.iloc[:0]).as_dict() == {
        "new": 0,
        "gone": 4,
        "up": 0,
        "down": 0,
        "same": 0,
    }


def test_reasons_match_a_row_by_row_reading() -> None:
    """The vectorised reasons equal the plain reading of each row: the three strongest that
    raise, then the three strongest that lower (ties: lower feature index), zeros left out,
    an absence only when it lowers the chance, the shared absence ('no activity yet') once,
    worded by `training.reasons.sentence` as the API words them."""
    from features.spec import feature_meanings as meanings_of
    from training.reasons import sentence

    rng = np.random.default_rng(5)
    names = (
        "industry",
        "n_page_view_30d",
        "days_since_last_event",
        "n_events_all",
        "company_size",
        "account_other_leads",
        "account_other_sqls",
    )
    n = 400
    features = pd.DataFrame(
        {
            "industry": rng.choice(np.array(["software", "retail", None], dtype=object), n),
            "n_page_view_30d": rng.integers(0, 4, n).astype(float),
            "days_since_last_event": np.where(rng.random(n) < 0.3, np.nan, rng.random(n) * 50),
            "n_events_all": rng.choice([0.0, 0.0, 3.0], n),
            "company_size": rng.choice([10.0, 125.5, np.nan], n),
            "account_other_leads": rng.choice([np.nan, 0.0, 2.0], n),
            "account_other_sqls": rng.choice([np.nan, 0.0, 1.0], n),
        }
    )
    meanings = meanings_of(build_config({}))
    contributions = np.round(rng.normal(size=(n, len(names))), 2)
    contributions[rng.random((n, len(names))) < 0.2] = 0.0
    values = _values(features)
    got = [json.loads(t) for t in _texts(_plan(names), features, values, contributions)]
    for i in range(n):
        candidates = []
        for j, name in enumerate(names):
            c, v, m = contributions[i, j], values[i, j], meanings[name]
            absent = m.can_be_absent and (np.isnan(v) or (v == 0 and m.unit == "count"))
            if c == 0 or (absent and c > 0):
                continue
            candidates.append(j)

        def says_absence(j: int, i: int = i) -> str | None:
            m, v = meanings[names[j]], values[i, j]
            return m.absence if np.isnan(v) or (v == 0 and m.absence_on_zero) else None

        said: dict[str, int] = {}
        for j in sorted(candidates, key=lambda j: (-abs(contributions[i, j]), j)):
            if (text := says_absence(j)) is not None:
                said.setdefault(text, j)
        kept = [j for j in candidates if says_absence(j) is None or said[says_absence(j)] == j]
        up = sorted(
            (j for j in kept if contributions[i, j] > 0), key=lambda j: (-contributions[i, j], j)
        )
        down = sorted(
            (j for j in kept if contributions[i, j] < 0), key=lambda j: (contributions[i, j], j)
        )
        expected = []
        for j in up[:3] + down[:3]:
            raw = features[names[j]].iloc[i]
            expected.append(
                {
                    "feature": names[j],
                    "value": None if raw is None or pd.isna(raw) else raw,
                    "sentence": sentence(meanings[names[j]], raw, contributions[i, j]),
                    "contribution": contributions[i, j],
                }
            )
        assert got[i] == expected, i
        assert len({r["sentence"] for r in got[i]}) == len(got[i])


def test_a_flat_exports_open_leads_are_those_not_converted() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": ["yes", "no", "unknown", "no2"],
            "converted": pd.array([True, False, pd.NA, False], dtype="boolean"),
        }
    )
    rows = open_flat_rows(leads, pd.Timestamp("2026-05-01"))
    assert rows["lead_id"].tolist() == ["no", "unknown", "no2"]
    assert (rows["cutoff"] == AS_OF).all() and str(rows["cutoff"].dtype) == "datetime64[ms, UTC]"
    every = open_flat_rows(leads.drop(columns="converted"), AS_OF)  # no outcome column
    assert every["lead_id"].tolist() == leads["lead_id"].tolist()


def test_after_snapshot_note_names_the_gap_from_a_day_on() -> None:
    exported = pd.Timestamp("2026-06-30T00:00:00Z")
    note = after_snapshot_note(exported, pd.Timestamp("2026-07-02T06:00:00Z"))
    assert note is not None and "2.2 days after the snapshot's as-of time 2026-06-30" in note
    assert after_snapshot_note(exported, pd.Timestamp("2026-06-30T23:00:00Z")) is None
    assert after_snapshot_note(exported, pd.Timestamp("2026-06-01T00:00:00Z")) is None
    assert after_snapshot_note(None, pd.Timestamp("2026-07-02T00:00:00Z")) is None
