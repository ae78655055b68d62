"""Reading: mapping, messy values, and errors that name the table, column, count and rows."""

import itertools

import numpy as np
import pandas as pd
import pytest

from common.config import build_config
from features.contract import EVENT_TYPES, ContractError
from features.reader import eventlog, snapshot_from_frames, sort_events


def _leads(**overrides: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "lead_id": ["a", "b", "c"],
        "account_id": ["x", "x", ""],
        "created_at": ["2025-01-01", "2025-01-02T00:00:00Z", "2025-01-03T10:00:00+02:00"],
        "mql_at": ["2025-01-10", "", "N/A"],
        "sql_at": ["2025-02-01", "", ""],
    }
    base.update(overrides)
    return pd.DataFrame(base, dtype="str")


def _events(**overrides: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "lead_id": ["a", "a", "zz", " c"],
        "occurred_at": ["2025-01-05T10:00:00Z", "2025-01-05 10:00:00", "2025-01-01", "2025-01-09"],
        "event_type": ["Email Open", "email_open", "page_view", "Chat Started"],
    }
    base.update(overrides)
    return pd.DataFrame(base, dtype="str")


def test_messy_values_are_cleaned_not_rejected() -> None:
    leads = _leads(
        country=[" United  States", "UNITED STATES", "n/a"],
        industry=["Software ", "software", "Select"],
        company_size=["51-200", "10,000+", "7"],
        email=["a@Gmail.com", "b@acme.com", ""],
    )
    config = build_config({"mapping": {"missing_values": ["", "n/a", "select"]}})
    snap = snapshot_from_frames(leads, _events(), config)
    got = snap.leads.set_index("lead_id")
    assert list(got["country"].fillna("<NA>")) == ["united states", "united states", "<NA>"]
    assert list(got["industry"].fillna("<NA>")) == ["software", "software", "<NA>"]
    assert list(got["company_size"]) == [125.5, 10000.0, 7.0]
    assert list(got["email_free"].astype("object").fillna("?")) == [True, False, "?"]
    assert "email" not in snap.leads  # personal data does not travel past the reader
    # naive and zoned timestamps are both UTC; mql_at 'N/A' is missing
    assert got.loc["c", "created_at"] == pd.Timestamp("2025-01-03T08:00:00Z")
    assert pd.isna(got.loc["c", "mql_at"])


def test_events_unknown_leads_types_and_duplicates_are_counted() -> None:
    snap = snapshot_from_frames(_leads(), _events(), build_config())
    report = snap.report
    assert report.events_read == 4
    assert report.events_unknown_lead == 1  # 'zz'
    assert report.events_duplicate == 1  # the two email opens at the same instant
    assert report.unknown_event_types == {"Chat Started": 1}
    assert len(snap.events) == 2
    kinds = [EVENT_TYPES[k] for k in snap.events.kind]
    assert sorted(kinds) == ["email_open", "other"]
    assert "1 events of unknown types kept as 'other'" in " ".join(report.lines())


def test_mapping_renames_columns_and_values() -> None:
    leads = _leads().rename(columns={"lead_id": "Prospect ID", "created_at": "Created"})
    events = _events(event_type=["Opened", "Opened", "Opened", "Demo"])
    config = build_config(
        {
            "mapping": {
                "leads": {"Prospect ID": "lead_id", "Created": "created_at"},
                "values": {"event_type": {"opened": "email_open", "DEMO": "demo_request"}},
            }
        }
    )
    snap = snapshot_from_frames(leads, events, config)
    assert sorted(EVENT_TYPES[k] for k in snap.events.kind) == ["demo_request", "email_open"]
    assert snap.report.unknown_event_types == {}


@pytest.mark.parametrize(
    ("leads", "events", "expected"),
    [
        (
            _leads().drop(columns="created_at"),
            None,
            r"leads: column 'created_at': .*required column is missing",
        ),
        (
            _leads(lead_id=["a", "a", "c"]),
            None,
            r"column 'lead_id': 2 row\(s\) share a lead_id.*row 1: 'a'",
        ),
        (
            _leads(created_at=["2025-01-01", "yesterday", "31/12/2024"]),
            None,
            r"column 'created_at': 2 row\(s\) have a timestamp that is not ISO 8601; "
            r"e.g. row 2: 'yesterday'",
        ),
        (
            _leads(sql_at=["2025-01-09", "", ""]),
            None,
            r"column 'sql_at': 1 row\(s\) have sql_at before mql_at",
        ),
        (_leads(company_size=["-5", "10", "many"]), None, r"column 'company_size': 2 row\(s\)"),
        (
            _leads(),
            _events(occurred_at=["2025-01-05", "soon", "2025-01-01", ""]),
            r"events: column 'occurred_at': 1 row\(s\) have a timestamp that is not ISO 8601; "
            r"e.g. row 2: 'soon'",
        ),
        (_leads(), _events().drop(columns="event_type"), r"events: column 'event_type'.*missing"),
    ],
)
def test_contract_breaches_name_table_column_and_rows(
    leads: pd.DataFrame, events: pd.DataFrame | None, expected: str
) -> None:
    with pytest.raises(ContractError, match=expected):
        snapshot_from_frames(leads, events if events is not None else _events(), build_config())


def test_every_problem_is_reported_at_once() -> None:
    leads = _leads(lead_id=["a", "a", "c"], created_at=["2025-01-01", "bad", "2025-01-01"])
    with pytest.raises(ContractError) as caught:
        snapshot_from_frames(leads, _events(), build_config())
    assert "lead_id" in str(caught.value) and "created_at" in str(caught.value)


def test_wrong_delimiter_gets_a_hint() -> None:
    squashed = pd.DataFrame({"lead_id;created_at": ["a;2025-01-01"]})
    with pytest.raises(ContractError, match="delimiter wrong"):
        snapshot_from_frames(squashed, None, build_config())


def test_leads_are_ordered_by_account_and_events_by_lead_and_time() -> None:
    snap = snapshot_from_frames(_leads(), _events(), build_config())
    assert list(snap.leads["lead_id"]) == ["a", "b", "c"]  # account x first, no account last
    assert np.all(np.diff(snap.events.lead) >= 0)


def test_sort_events_matches_lexsort_and_drops_exact_duplicates() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    lead = rng.integers(0, 500, n).astype(np.int32)
    at_ms = rng.integers(1_700_000_000_000, 1_700_000_100_000, n)
    kind = rng.integers(0, 16, n).astype(np.int8)
    log, dropped = sort_events(lead, at_ms, kind, bucket_leads=64)
    expected = np.unique(np.stack([lead.astype(np.int64), at_ms, kind.astype(np.int64)]), axis=1)
    assert dropped == n - expected.shape[1]
    assert np.array_equal(log.lead, expected[0]) and np.array_equal(log.at_ms, expected[1])
    assert np.array_equal(log.kind, expected[2])


def test_sort_events_in_lead_buckets_matches_lexsort() -> None:
    """Lead ids and a time span too wide for one packed key: the events are sorted bucket by
    bucket of leads (the path a one-key log never takes)."""
    rng = np.random.default_rng(4)
    n = 20_000
    lead = rng.integers(0, 1_000_000, n).astype(np.int32)
    lead[:50] = lead[50:100]  # some leads with several events, and exact duplicates
    at_ms = rng.integers(0, 30 * 365 * 86_400_000, n)
    at_ms[:50] = at_ms[50:100]
    kind = rng.integers(0, 16, n).astype(np.int8)
    kind[:50] = kind[50:100]
    log, dropped = sort_events(lead, at_ms, kind, bucket_leads=1_000)
    expected = np.unique(np.stack([lead.astype(np.int64), at_ms, kind.astype(np.int64)]), axis=1)
    assert dropped == n - expected.shape[1] == 50
    assert np.array_equal(log.lead, expected[0]) and np.array_equal(log.at_ms, expected[1])
    assert np.array_equal(log.kind, expected[2])


@pytest.mark.parametrize("wide", [False, True])
def test_sorting_parts_in_slices_is_one_lexsort(
    wide: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of uneven sizes, packed and unpacked in slices of 700 events on up to 3 threads,
    with duplicates that straddle slices and parts: the log of the concatenated events, with
    each distinct event once. `wide`: ids and times too wide for one key (4 lead buckets)."""
    monkeypatch.setattr(eventlog, "SLICE_EVENTS", 700)
    monkeypatch.setattr(eventlog, "PARALLEL_SORT_KEYS", 1_000)
    rng = np.random.default_rng(6)
    n = 9_000
    lead = rng.integers(0, 1_000_000 if wide else 300, n).astype(np.int32)
    span = 10 * 365 * 86_400_000 if wide else 40_000
    at_ms = rng.integers(0, span, n) + (0 if wide else 1_700_000_000_000)
    kind = rng.integers(0, 16, n).astype(np.int8)
    twins = rng.choice(n, 8_000, replace=False)  # 4,000 copies: some straddle each cut
    lead[twins[:4_000]], at_ms[twins[:4_000]] = lead[twins[4_000:]], at_ms[twins[4_000:]]
    kind[twins[:4_000]] = kind[twins[4_000:]]
    expected = np.unique(np.stack([lead.astype(np.int64), at_ms, kind.astype(np.int64)]), axis=1)
    cuts = [0, 1, 650, 2_300, 2_300, 8_999, n]  # an empty part and one of a single event
    parts = [(lead[a:b], at_ms[a:b], kind[a:b]) for a, b in itertools.pairwise(cuts)]
    for workers in (1, 2, 3):
        log, dropped = eventlog.sort_event_parts(parts, bucket_leads=250_000, workers=workers)
        assert dropped == n - expected.shape[1] > 3_000
        assert log.lead.dtype == np.int32 and log.at_ms.dtype == np.int64
        assert log.kind.dtype == np.int8
        assert np.array_equal(log.lead, expected[0]) and np.array_equal(log.at_ms, expected[1])
        assert np.array_equal(log.kind, expected[2])


@pytest.mark.parametrize("bucket_leads", [64, 100_000])
def test_sort_events_on_threads_is_the_serial_log(
    bucket_leads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # split sorts start at 1M keys; lowered so that a small log takes the threaded path
    monkeypatch.setattr(eventlog, "PARALLEL_SORT_KEYS", 1_000)
    rng = np.random.default_rng(5)
    n = 20_000
    lead = rng.integers(0, 500, n).astype(np.int32)
    at_ms = rng.integers(1_700_000_000_000, 1_700_000_050_000, n)
    kind = rng.integers(0, 16, n).astype(np.int8)
    serial, serial_dropped = sort_events(lead, at_ms, kind, bucket_leads=bucket_leads)
    for workers in (2, 3):
        log, dropped = sort_events(lead, at_ms, kind, bucket_leads=bucket_leads, workers=workers)
        assert dropped == serial_dropped > 0
        for field in ("lead", "at_ms", "kind"):
            ours, theirs = getattr(log, field), getattr(serial, field)
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
