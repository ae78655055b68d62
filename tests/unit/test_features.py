"""Feature values on a tiny hand-checked snapshot, and the training rows' labels and censoring."""

import itertools

import numpy as np
import pandas as pd
import pytest

from common.config import build_config
from features.pipeline import account_chunks, build_training_set, feature_spec
from features.reader import snapshot_from_frames

LEADS = pd.DataFrame(
    {
        "lead_id": ["a", "b", "c", "d", "e"],
        "account_id": ["x", "x", "", "y", "z"],
        "created_at": ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-01", "2025-11-01"],
        "mql_at": ["2025-01-10", "2025-01-20", "2025-01-10", "2025-11-20", "2025-11-20"],
        "sql_at": ["2025-03-01", "2025-01-25", "", "", "2025-11-25"],
        "disqualified_at": ["", "", "2025-02-01", "", ""],
        "job_title": ["VP Marketing", "", "Marketing Intern", "CEO", "CTO"],
        "email": ["a@gmail.com", "b@acme.com", "", "d@y.com", "e@z.com"],
    },
    dtype="str",
)
EVENTS = pd.DataFrame(
    {
        "lead_id": ["a", "a", "a", "a", "b", "c", "a"],
        "occurred_at": [
            "2025-01-04T00:00:00Z",
            "2025-01-05T10:00:00Z",
            "2025-01-05T12:00:00Z",
            "2025-01-10T00:00:00Z",  # exactly at a's cutoff: not before it
            "2025-01-01T00:00:00Z",
            "2025-01-09T00:00:00Z",
            "2025-01-12T00:00:00Z",
        ],
        "event_type": [
            "webinar",
            "pricing_page_view",
            "email_open",
            "demo_request",
            "page_view",
            "demo_request",
            "demo_request",
        ],
    },
    dtype="str",
)


@pytest.fixture
def training_set() -> pd.DataFrame:
    config = build_config(
        {"as_of": "2025-12-01", "snapshot_policy": {"weekly_weeks": 2, "sampled_ages": 0}}
    )
    frame, _ = build_training_set(snapshot_from_frames(LEADS, EVENTS, config), config)
    return frame.set_index(["lead_id", "cutoff"])


def _row(frame: pd.DataFrame, lead: str, cutoff: str) -> pd.Series:
    return frame.loc[(lead, pd.Timestamp(cutoff, tz="UTC"))]


def test_engagement_counts_only_before_the_cutoff(training_set: pd.DataFrame) -> None:
    a = _row(training_set, "a", "2025-01-10")
    assert a["n_events_all"] == 3  # the demo request at exactly the cutoff is not counted
    assert a["n_demo_request_all"] == 0 and np.isnan(a["days_since_demo_request"])
    assert a["n_other_7d"] == 1 and a["days_since_other"] == 6.0  # 'webinar' is not a contract type
    assert a["n_pricing_page_view_7d"] == 1
    assert a["days_since_last_event"] == pytest.approx(4.5)
    assert a["active_days_all"] == 2
    assert a["days_since_created"] == 9.0 and a["days_since_mql"] == 0.0
    later = _row(training_set, "a", "2025-01-24")
    assert later["n_demo_request_all"] == 2 and later["days_since_demo_request"] == 12.0
    assert later["days_since_mql"] == 14.0 and later["n_events_7d"] == 0


def test_account_features_exclude_the_lead_and_the_future(training_set: pd.DataFrame) -> None:
    a0 = _row(training_set, "a", "2025-01-10")
    assert a0["account_other_leads"] == 1 and a0["account_other_mqls"] == 0
    assert a0["account_other_events_all"] == 1  # b's page view on Jan 1
    a2 = _row(training_set, "a", "2025-01-24")
    assert a2["account_other_mqls"] == 1  # b became an MQL on Jan 20
    assert a2["account_other_sqls"] == 0  # b's SQL on Jan 25 is still in the future
    b = _row(training_set, "b", "2025-01-20")
    assert b["account_other_events_all"] == 5  # all five of a's events before Jan 20
    c = _row(training_set, "c", "2025-01-10")
    assert np.isnan(c["account_other_leads"])  # no account: unknown, not zero


def test_fit_features(training_set: pd.DataFrame) -> None:
    a = _row(training_set, "a", "2025-01-10")
    assert (a["seniority"], a["job_function"], a["email_free"]) == ("vp", "marketing", 1.0)
    c = _row(training_set, "c", "2025-01-10")
    assert c["seniority"] == "intern" and np.isnan(c["email_free"])


def test_rows_labels_and_censoring() -> None:
    config = build_config(
        {"as_of": "2025-12-01", "snapshot_policy": {"weekly_weeks": 2, "sampled_ages": 0}}
    )
    frame, counts = build_training_set(snapshot_from_frames(LEADS, EVENTS, config), config)
    labels = {(r.lead_id, r.cutoff.strftime("%m-%d")): r.label for r in frame.itertuples()}
    # a: SQL on Mar 1, within 90 days of each weekly cutoff
    assert labels[("a", "01-10")] == labels[("a", "01-24")] == 1
    # b: one row; its weekly cutoff on Jan 27 comes after its SQL on Jan 25
    assert labels[("b", "01-20")] == 1 and ("b", "01-27") not in labels
    # c: disqualified on Feb 1: negative rows at Jan 10, 17, 24 (the outcome is known)
    assert [labels[("c", d)] for d in ("01-10", "01-17", "01-24")] == [0, 0, 0]
    # d: MQL on Nov 20, no outcome yet and its horizon runs past Dec 1: censored, counted;
    # its third weekly cutoff (Dec 4) lies after the as-of time
    assert not any(lead == "d" for lead, _ in labels)
    # e: converted within its still-open window: censored too, or recent rows skew positive
    assert not any(lead == "e" for lead, _ in labels)
    assert counts.candidates == 15 and counts.censored == 3 and counts.after_as_of == 2
    assert counts.converted_before_cutoff == 3 and counts.kept == 7 and counts.positives == 4


def test_feature_spec_matches_columns(training_set: pd.DataFrame) -> None:
    spec = feature_spec(build_config(), flat=False)
    assert list(training_set.columns[1:]) == list(spec.names)
    assert "seniority" in spec.categorical and "n_demo_request_7d" not in spec.categorical


def test_account_chunks_keep_accounts_whole() -> None:
    account = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, -1, -1])
    chunks = account_chunks(account, 4)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(account)
    for first, _ in chunks:
        assert first == 0 or account[first] < 0 or account[first] != account[first - 1]
    assert all(b[0] == a[1] for a, b in itertools.pairwise(chunks))
