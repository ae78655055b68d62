"""Tests of the synthetic CRM snapshot generator (features.synthetic)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import EVENT_COLUMNS, EVENT_TYPES, FREE_MAIL_DOMAINS, LEAD_COLUMNS
from features.synthetic import (
    TITLES,
    TRUTH_COUNTS,
    TRUTH_FEATURES,
    UNKNOWN_EVENT_TYPES,
    SyntheticSnapshot,
    generate,
    generate_snapshot,
    true_probability,
    write_snapshot,
)
from features.titles import parse_title, parse_titles

N = 4_000
SEED = 7
DAY = pd.Timedelta(days=1)
HAND_RAISERS = ("form_submission", "demo_request", "trial_signup")


@pytest.fixture(scope="module")
def snap() -> SyntheticSnapshot:
    return generate_snapshot(N, seed=SEED)


@pytest.fixture(scope="module")
def big() -> SyntheticSnapshot:
    return generate_snapshot(12_000, seed=11)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    ranks = pd.Series(p).rank().to_numpy()
    pos = int(y.sum())
    neg = len(y) - pos
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _norm(values: pd.Series) -> pd.Series:
    out = values.str.strip().str.lower()
    return out.where(~out.isin(["", "n/a"]))


def _reference_features(leads: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """TRUTH_FEATURES computed independently, with plain pandas, from the written frames."""
    mql = leads[leads["mql_at"].notna()].reset_index(drop=True)
    cut = mql[["lead_id", "account_id", "mql_at"]].rename(columns={"mql_at": "cutoff"})
    seniority, function = parse_titles(mql["job_title"])
    f = pd.DataFrame({"lead_id": mql["lead_id"], "seniority": seniority, "function": function})
    f["company_size"] = mql["company_size"].astype("float64")
    for column in ("industry", "country", "lead_source"):
        f[column] = _norm(mql[column]).to_numpy()
    domain = mql["email"].str.lower().str.split("@").str[-1]
    f["free_mail"] = np.where(
        mql["email"].isna(), np.nan, domain.isin(FREE_MAIL_DOMAINS).astype(float)
    )

    ev = events.drop_duplicates().merge(cut[["lead_id", "cutoff"]], on="lead_id")
    ev = ev[ev["occurred_at"] < ev["cutoff"]]
    age = ev["cutoff"] - ev["occurred_at"]

    def count(mask: pd.Series) -> np.ndarray:
        counts = ev[mask].groupby("lead_id").size()
        return counts.reindex(f["lead_id"], fill_value=0).to_numpy()

    for event_type, window in TRUTH_COUNTS:
        in_window = pd.Series(True, index=ev.index) if window is None else age <= window * DAY
        name = f"n_{event_type}_{'all' if window is None else f'{window}d'}"
        f[name] = count((ev["event_type"] == event_type) & in_window)
    f["n_events_30d"] = count(age <= 30 * DAY)
    last = ev.groupby("lead_id")["occurred_at"].max().reindex(f["lead_id"])
    f["days_since_last_event"] = ((mql["mql_at"].to_numpy() - last.to_numpy()) / DAY).astype(float)
    f["days_since_created"] = (mql["mql_at"] - mql["created_at"]).dt.total_seconds() / 86_400

    others = cut.merge(
        leads[["lead_id", "account_id", "sql_at"]], on="account_id", suffixes=("", "_o")
    )
    others = others[others["lead_id"] != others["lead_id_o"]]
    sql_before = others[others["sql_at"] < others["cutoff"]].groupby("lead_id").size()
    f["account_sql_before"] = sql_before.reindex(f["lead_id"], fill_value=0).to_numpy()
    acc_ev = events.drop_duplicates().merge(leads[["lead_id", "account_id"]], on="lead_id")
    pairs = cut.merge(acc_ev, on="account_id", suffixes=("", "_o"))
    pairs = pairs[
        (pairs["lead_id"] != pairs["lead_id_o"])
        & (pairs["occurred_at"] < pairs["cutoff"])
        & (pairs["occurred_at"] >= pairs["cutoff"] - 30 * DAY)
    ]
    f["account_events_30d"] = (
        pairs.groupby("lead_id").size().reindex(f["lead_id"], fill_value=0).to_numpy()
    )
    return f


# ---------------------------------------------------------------------------------------------
# Determinism, contract, truth
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_equal_frames_and_other_seed_differs(snap: SyntheticSnapshot) -> None:
    again = generate_snapshot(N, seed=SEED)
    pd.testing.assert_frame_equal(snap.leads, again.leads)
    pd.testing.assert_frame_equal(snap.events, again.events)
    pd.testing.assert_frame_equal(snap.truth, again.truth)
    other = generate_snapshot(N, seed=SEED + 1)
    assert not other.leads.equals(snap.leads)
    assert not other.events["occurred_at"].equals(snap.events["occurred_at"])


def test_chunks_hold_whole_accounts_and_report_progress() -> None:
    calls: list[tuple[int, int]] = []
    chunks = list(
        generate(3_000, seed=3, chunk_leads=700, progress=lambda d, t: calls.append((d, t)))
    )
    assert len(chunks) >= 4
    assert calls[-1] == (3_000, 3_000)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    accounts = [set(c.leads["account_id"]) for c in chunks]
    assert sum(len(a) for a in accounts) == len(set().union(*accounts))
    leads = pd.concat([c.leads for c in chunks])
    assert leads["lead_id"].is_unique and len(leads) == 3_000
    for c in chunks:
        assert set(c.events["lead_id"]) <= set(c.leads["lead_id"])
        assert set(c.truth["lead_id"]) <= set(c.leads["lead_id"])


def test_bad_arguments_raise_at_call() -> None:
    with pytest.raises(ValueError):
        generate(-1, seed=1)
    with pytest.raises(ValueError):
        generate(10, seed=1, chunk_leads=0)


def test_contract_columns_and_dtypes(snap: SyntheticSnapshot) -> None:
    assert list(snap.leads.columns) == list(LEAD_COLUMNS)
    assert list(snap.events.columns) == list(EVENT_COLUMNS)
    assert list(snap.truth.columns) == ["lead_id", "cutoff", "p_true", "converted_in_horizon"]
    utc = pd.DatetimeTZDtype("us", "UTC")
    for column in ("created_at", "mql_at", "sql_at", "disqualified_at"):
        assert snap.leads[column].dtype == utc, column
    assert snap.events["occurred_at"].dtype == utc
    assert snap.truth["cutoff"].dtype == utc
    for frame, columns in (
        (
            snap.leads,
            ("lead_id", "account_id", "job_title", "country", "industry", "lead_source", "email"),
        ),
        (snap.events, ("lead_id", "event_type", "campaign", "url")),
        (snap.truth, ("lead_id",)),
    ):
        for column in columns:
            assert frame[column].dtype == "str", column
    assert snap.leads["company_size"].dtype == "Int64"
    assert snap.truth["p_true"].dtype == "float64"
    assert snap.truth["converted_in_horizon"].dtype == "bool"
    assert snap.leads["lead_id"].is_unique
    assert snap.leads["lead_id"].str.fullmatch(r"L\d{7}").all()
    assert snap.leads["account_id"].str.fullmatch(r"A\d{6}").all()
    assert snap.leads["created_at"].notna().all()
    assert set(snap.events["lead_id"]) <= set(snap.leads["lead_id"])
    assert snap.as_of == pd.Timestamp("2026-06-30", tz="UTC")


def test_truth_has_one_row_per_mql_lead(snap: SyntheticSnapshot) -> None:
    leads, truth = snap.leads, snap.truth
    mql = leads[leads["mql_at"].notna()]
    assert truth["lead_id"].is_unique
    assert set(truth["lead_id"]) == set(mql["lead_id"])
    joined = truth.merge(mql[["lead_id", "mql_at"]], on="lead_id")
    assert (joined["cutoff"] == joined["mql_at"]).all()
    assert ((truth["p_true"] > 0) & (truth["p_true"] < 1)).all()
    assert truth["p_true"].std() > 0.1


def test_drawn_outcomes_match_p_true(big: SyntheticSnapshot) -> None:
    p = big.truth["p_true"].to_numpy()
    y = big.truth["converted_in_horizon"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(y.mean() - p.mean()) < 4 * se
    # Calibration by decile of p_true, not only on average.
    decile = pd.qcut(p, 5, labels=False)
    for d in range(5):
        sel = decile == d
        se_d = np.sqrt((p[sel] * (1 - p[sel])).sum()) / sel.sum()
        assert abs(y[sel].mean() - p[sel].mean()) < 4.5 * se_d + 1e-3


def test_p_true_is_reproducible_from_the_written_snapshot(tmp_path: Path) -> None:
    """The essential property: p_true is a function of snapshot observables before mql_at."""
    snap = generate_snapshot(3_000, seed=5)
    write_snapshot([snap], tmp_path)
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    events = pd.read_parquet(tmp_path / "events.parquet")
    truth = pd.read_parquet(tmp_path / "truth.parquet")
    features = _reference_features(leads, events)
    assert set(TRUTH_FEATURES) <= set(features.columns)
    expected = truth.set_index("lead_id")["p_true"].reindex(features["lead_id"]).to_numpy()
    np.testing.assert_allclose(true_probability(features), expected, rtol=1e-9, atol=1e-12)
    # The account term and the free-mail flag are really exercised.
    assert (features["account_sql_before"] > 0).sum() > 20
    assert (features["account_events_30d"] > 0).sum() > 100


def test_p_true_ignores_events_at_or_after_mql() -> None:
    snap = generate_snapshot(3_000, seed=5)
    features = _reference_features(snap.leads, snap.events)
    # Dropping every event at/after the last cutoff of its account must not change the truth.
    last_cutoff = snap.leads.groupby("account_id")["mql_at"].max().rename("last_cutoff")
    merged = snap.events.merge(snap.leads[["lead_id", "account_id"]], on="lead_id")
    merged = merged.merge(last_cutoff, left_on="account_id", right_index=True)
    early = merged[merged["occurred_at"] < merged["last_cutoff"]]
    assert len(early) < 0.8 * len(snap.events)
    trimmed = _reference_features(snap.leads, early[list(EVENT_COLUMNS)])
    np.testing.assert_allclose(true_probability(trimmed), true_probability(features))
    # ...while the counts do matter: dropping pricing views changes it.
    no_pricing = snap.events[snap.events["event_type"] != "pricing_page_view"]
    changed = true_probability(_reference_features(snap.leads, no_pricing))
    assert np.abs(changed - true_probability(features)).max() > 0.05


def test_truth_is_informative_and_rates_are_realistic(big: SyntheticSnapshot) -> None:
    leads, truth = big.leads, big.truth
    mql_rate = leads["mql_at"].notna().mean()
    assert 0.3 <= mql_rate <= 0.5
    assert 0.2 <= truth["converted_in_horizon"].mean() <= 0.3
    auc = _auc(truth["converted_in_horizon"].to_numpy(), truth["p_true"].to_numpy())
    assert 0.76 <= auc <= 0.87
    per_account = leads.groupby("account_id").size()
    assert 2.5 <= per_account.mean() <= 3.6
    assert per_account.max() >= 20
    assert 40 <= len(big.events) / len(leads) <= 60


# ---------------------------------------------------------------------------------------------
# Timing logic
# ---------------------------------------------------------------------------------------------


def test_mql_follows_created_and_a_triggering_event(snap: SyntheticSnapshot) -> None:
    mql = snap.leads[snap.leads["mql_at"].notna()]
    assert (mql["mql_at"] > mql["created_at"]).all()
    ev = snap.events.merge(mql[["lead_id", "mql_at"]], on="lead_id")
    gap = ev["mql_at"] - ev["occurred_at"]
    # Every MQL has a triggering event between 5 minutes and 6 hours before mql_at.
    trig = ev[(gap >= pd.Timedelta(minutes=5)) & (gap <= pd.Timedelta(hours=6))]
    assert set(trig["lead_id"]) == set(mql["lead_id"])
    # A hand-raiser before mql_at makes an MQL at the first one: mql_at is at most 6 hours later.
    hands = ev[ev["event_type"].isin(HAND_RAISERS)]
    first_hand = hands.groupby("lead_id")["occurred_at"].min()
    lag = mql.set_index("lead_id")["mql_at"].reindex(first_hand.index) - first_hand
    assert (lag[lag > pd.Timedelta(0)] <= pd.Timedelta(hours=6)).all()
    # Leads that never MQL'd never raised their hand (unless the MQL moment fell after as_of).
    non_mql = snap.leads.loc[snap.leads["mql_at"].isna(), ["lead_id"]]
    raised = non_mql.merge(snap.events[snap.events["event_type"].isin(HAND_RAISERS)], on="lead_id")
    assert (raised["occurred_at"] > snap.as_of - pd.Timedelta(hours=6)).all()


def test_sql_and_disqualification_follow_mql(snap: SyntheticSnapshot) -> None:
    leads = snap.leads
    assert leads.loc[leads["mql_at"].isna(), ["sql_at", "disqualified_at"]].isna().all().all()
    sql = leads[leads["sql_at"].notna()]
    assert (sql["sql_at"] > sql["mql_at"]).all()
    dq = leads[leads["disqualified_at"].notna()]
    assert (dq["disqualified_at"] > dq["mql_at"]).all()
    assert (dq["disqualified_at"] - dq["mql_at"] <= 120 * DAY).all()
    assert not (leads["sql_at"].notna() & leads["disqualified_at"].notna()).any()
    t = snap.truth.merge(leads[["lead_id", "sql_at"]], on="lead_id")
    delay = t["sql_at"] - t["cutoff"]
    conv = t["converted_in_horizon"]
    assert (delay[conv & t["sql_at"].notna()] <= 90 * DAY).all()
    late = delay[~conv & t["sql_at"].notna()]
    assert len(late) > 0 and (late > 90 * DAY).all() and (late <= 200 * DAY).all()
    # Fast and slow conversions both occur.
    fast = (delay[conv] < 7 * DAY).mean()
    assert 0.2 < fast < 0.8


def test_nothing_is_after_as_of_and_late_outcomes_are_hidden(snap: SyntheticSnapshot) -> None:
    as_of = snap.as_of
    for column in ("created_at", "mql_at", "sql_at", "disqualified_at"):
        assert (snap.leads[column].dropna() <= as_of).all(), column
    assert (snap.events["occurred_at"] <= as_of).all()
    t = snap.truth.merge(snap.leads[["lead_id", "sql_at"]], on="lead_id")
    hidden = t[t["converted_in_horizon"] & t["sql_at"].isna()]
    assert len(hidden) > 0
    assert (hidden["cutoff"] > as_of - 90 * DAY).all()
    assert (
        t.loc[t["converted_in_horizon"] & (t["cutoff"] < as_of - 90 * DAY), "sql_at"].notna().all()
    )


# ---------------------------------------------------------------------------------------------
# Realism and nuisances
# ---------------------------------------------------------------------------------------------


def test_every_title_parses_to_its_intended_seniority() -> None:
    for title, seniority, *_ in TITLES:
        assert parse_title(title)[0] == seniority, title
    assert {t[1] for t in TITLES} == {
        "c_level",
        "vp",
        "director",
        "manager",
        "individual",
        "intern",
    }


def test_fit_fields_have_missing_values(snap: SyntheticSnapshot) -> None:
    for column in ("job_title", "country", "industry", "lead_source", "company_size", "email"):
        values = snap.leads[column]
        missing = values.isna() | (values.astype("str").str.strip().isin(["", "N/A"]))
        assert 0.04 <= missing.mean() <= 0.16, column
    assert (snap.leads["industry"] == "N/A").sum() > 0
    assert (snap.leads["job_title"] == "").sum() > 0


def test_categories_have_messy_case_and_whitespace(snap: SyntheticSnapshot) -> None:
    for column in ("country", "industry", "lead_source"):
        raw = snap.leads[column].dropna()
        assert raw.nunique() > 2 * _norm(raw).nunique(), column
        assert (raw != raw.str.strip()).sum() > 0, column
        assert (raw == raw.str.upper().str.strip()).sum() > 0, column
    countries = set(snap.leads["country"].dropna())
    assert "United States" in countries
    assert countries & {" united states", "UNITED STATES ", "united states"}


def test_free_mail_company_mail_and_students(snap: SyntheticSnapshot) -> None:
    email = snap.leads["email"].dropna()
    assert email.str.contains("@").all()
    domain = email.str.lower().str.split("@").str[-1]
    free = domain.isin(FREE_MAIL_DOMAINS)
    assert 0.15 <= free.mean() <= 0.3
    assert (email != email.str.lower()).sum() > 0
    leads = snap.leads.loc[email.index]
    seniority = pd.Series(parse_titles(leads["job_title"])[0], index=leads.index)
    assert free[seniority == "intern"].mean() > free[seniority != "intern"].mean() + 0.2
    # Leads of one account share the company domain and firmographics.
    company = leads[~free].assign(domain=domain[~free])
    assert (company.groupby("account_id")["domain"].nunique() == 1).mean() > 0.95
    sizes = (
        snap.leads.dropna(subset=["company_size"]).groupby("account_id")["company_size"].nunique()
    )
    assert (sizes == 1).all()


def test_event_nuisances(snap: SyntheticSnapshot) -> None:
    ev = snap.events
    dup_rate = ev.duplicated().mean()
    assert 0.005 <= dup_rate <= 0.02
    # Duplicates are exact rows; a reader keying on (lead, time, type with unknowns as 'other')
    # drops exactly the same rows.
    kind = ev["event_type"].where(~ev["event_type"].isin(UNKNOWN_EVENT_TYPES), "other")
    narrow = ev[["lead_id", "occurred_at"]].assign(kind=kind).duplicated()
    assert (narrow == ev.duplicated()).all()
    assert not ev["occurred_at"].is_monotonic_increasing
    per_lead_sorted = ev.groupby("lead_id")["occurred_at"].apply(
        lambda s: s.is_monotonic_increasing
    )
    assert (~per_lead_sorted).sum() > 10
    unknown = ev["event_type"].isin(UNKNOWN_EVENT_TYPES)
    assert 0.002 <= unknown.mean() <= 0.01
    assert set(ev["event_type"]) <= set(EVENT_TYPES) - {"other"} | set(UNKNOWN_EVENT_TYPES)
    assert set(ev["event_type"]) & set(UNKNOWN_EVENT_TYPES) == set(UNKNOWN_EVENT_TYPES)
    assert 0.05 < ev["campaign"].isna().mean() < 0.95
    assert 0.05 < ev["url"].isna().mean() < 0.95
    joined = ev.merge(snap.leads[["lead_id", "mql_at", "sql_at"]], on="lead_id")
    assert (joined["occurred_at"] > joined["sql_at"]).sum() > 100
    assert (joined["occurred_at"] > joined["mql_at"]).sum() > 1000
    assert (joined["occurred_at"] > joined["sql_at"]).groupby(joined["lead_id"]).any().sum() > 20


def test_event_mix_seasonality_and_drift(big: SyntheticSnapshot) -> None:
    ev = big.events
    share = ev["event_type"].value_counts(normalize=True)
    assert share.index[0] in ("page_view", "email_open") and share.index[1] in (
        "page_view",
        "email_open",
    )
    assert share["email_open"] > 0.15 and share["page_view"] > 0.15
    for rare in ("demo_request", "trial_signup", "form_submission"):
        assert 0 < share[rare] < 0.01
    weekday = ev["occurred_at"].dt.day_of_week
    assert (weekday >= 5).mean() < 0.6 * 2 / 7
    created = big.leads["created_at"]
    per_month = created.dt.month.value_counts()
    assert per_month[8] < 0.8 * per_month[[5, 6, 9, 10]].mean()
    late_december = ((created.dt.month == 12) & (created.dt.day >= 20)).sum() / 12
    early_december = ((created.dt.month == 12) & (created.dt.day < 20)).sum() / 19
    assert late_december < 0.6 * early_december
    # Email open share declines; paid social's share of new leads grows.
    third = pd.qcut(ev["occurred_at"].astype("int64"), 3, labels=False)
    open_share = (ev["event_type"] == "email_open").groupby(third).mean()
    assert open_share[2] < open_share[0] - 0.02
    source = _norm(big.leads["lead_source"])
    year_third = pd.qcut(created.astype("int64"), 3, labels=False)
    social = (source == "paid_social").groupby(year_third).mean()
    assert social[2] > social[0] + 0.03


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def test_write_parquet_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    snap = generate_snapshot(N, seed=SEED, chunk_leads=1_500)
    counts = write_snapshot(generate(N, seed=SEED, chunk_leads=1_500), out)
    assert counts == {
        "leads": len(snap.leads),
        "events": len(snap.events),
        "truth": len(snap.truth),
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "events.parquet",
        "leads.parquet",
        "snapshot.json",
        "truth.parquet",
    ]
    schema = pq.read_schema(out / "events.parquet")
    assert schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    meta = json.loads((out / "snapshot.json").read_text())
    assert meta["seed"] == SEED and meta["n_leads"] == N and meta["row_counts"] == counts
    assert meta["as_of"].startswith("2026-06-30") and meta["generator_version"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "leads.parquet"), snap.leads)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "events.parquet"), snap.events)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "truth.parquet"), snap.truth)
    whole = SyntheticSnapshot(
        pd.read_parquet(out / "leads.parquet"),
        pd.read_parquet(out / "events.parquet"),
        pd.read_parquet(out / "truth.parquet"),
        snap.as_of,
    )
    write_snapshot([whole], tmp_path / "again")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "again" / "truth.parquet"), whole.truth
    )


def test_write_csv_has_naive_timestamps_and_reads_back(tmp_path: Path) -> None:
    snap = generate_snapshot(1_500, seed=4)
    counts = write_snapshot([snap], tmp_path, fmt="csv")
    assert (tmp_path / "leads.csv").exists() and (tmp_path / "truth.parquet").exists()
    assert counts["events"] == len(snap.events)
    raw = pd.read_csv(tmp_path / "events.csv", dtype=str, keep_default_na=False)
    assert len(raw) == len(snap.events)
    naive = ~raw["occurred_at"].str.contains(r"(?:Z|[+-]\d\d:\d\d)$")
    assert 0.05 < naive.mean() < 0.15
    parsed = pd.to_datetime(raw["occurred_at"], utc=True, format="ISO8601")
    assert (parsed.to_numpy() == snap.events["occurred_at"].to_numpy()).all()
    leads = pd.read_csv(tmp_path / "leads.csv", dtype={"company_size": "Int64"})
    mql = pd.to_datetime(leads["mql_at"], utc=True, format="ISO8601")
    assert mql.isna().sum() == snap.leads["mql_at"].isna().sum()
    assert (mql.dropna().to_numpy() == snap.leads["mql_at"].dropna().to_numpy()).all()
    assert leads["company_size"].equals(snap.leads["company_size"])


def _failing(chunks: Iterator[SyntheticSnapshot], after: int) -> Iterator[SyntheticSnapshot]:
    for i, chunk in enumerate(chunks):
        if i == after:
            raise RuntimeError("boom")
        yield chunk


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        write_snapshot(_failing(generate(2_000, seed=1, chunk_leads=500), 2), tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []

    out = tmp_path / "old"
    counts = write_snapshot(generate(500, seed=1), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError, match="boom"):
        write_snapshot(_failing(generate(2_000, seed=2, chunk_leads=500), 3), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(pd.read_parquet(out / "leads.parquet")) == counts["leads"] == 500


def test_write_failing_writer_leaves_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "snap"
    write_snapshot(generate(300, seed=1), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(generate(300, seed=2), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_empty_snapshot(tmp_path: Path) -> None:
    snap = generate_snapshot(0, seed=1)
    assert len(snap.leads) == 0 and list(snap.leads.columns) == list(LEAD_COLUMNS)
    assert write_snapshot(generate(0, seed=1), tmp_path) == {"leads": 0, "events": 0, "truth": 0}


def test_raw_events_are_unique_on_the_readers_narrow_key() -> None:
    """Same lead, second and type (unknown types all read as 'other') keeps one event, even
    when campaign or URL differ, so the truth counts what a de-duplicating reader counts."""
    from features.synthetic.events import Events, dedupe_sorted
    from features.synthetic.vocab import EVENT_CODE

    unknown = [EVENT_CODE[t] for t in UNKNOWN_EVENT_TYPES]
    pricing = EVENT_CODE["pricing_page_view"]
    ev = Events(
        lead=np.array([1, 0, 0, 0, 0, 0, 1]),
        time=np.array([5, 10, 10, 10, 10, 11, 5]),
        etype=np.array([pricing, pricing, pricing, unknown[0], unknown[1], pricing, pricing]),
        campaign=np.array([-1, 3, 4, -1, -1, 3, -1]),
        url=np.array([2, 1, 1, -1, -1, 1, 2]),
    )
    out = dedupe_sorted(ev)
    assert out.lead.tolist() == [0, 0, 0, 1]
    assert out.time.tolist() == [10, 10, 11, 5]
    at_ten = out.etype[:2].tolist()
    assert pricing in at_ten and sum(t in unknown for t in at_ten) == 1


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_feature_pipeline_reproduces_p_true_exactly(tmp_path: Path, fmt: str) -> None:
    """Known truth, end to end: read the written files back through the reader and the one
    feature function, and the oracle gives back every p_true. So a model of these features can
    in principle reach the truth, and reader and pipeline agree with the generator's definitions.
    """
    from common.config import build_config
    from features.pipeline import build_features
    from features.reader import read_snapshot

    write_snapshot(generate(5_000, seed=23), tmp_path, fmt=fmt)
    config = build_config({"source": {"path": str(tmp_path)}})
    snapshot = read_snapshot(config)
    truth = pd.read_parquet(tmp_path / "truth.parquet")
    rows = pd.DataFrame({"lead_id": truth["lead_id"], "cutoff": truth["cutoff"].dt.as_unit("ms")})
    features = build_features(snapshot, rows, config).rename(
        columns={
            "job_function": "function",
            "email_free": "free_mail",
            "account_other_sqls": "account_sql_before",
            "account_other_events_30d": "account_events_30d",
        }
    )
    p = true_probability(features[list(TRUTH_FEATURES)])
    np.testing.assert_allclose(p, truth["p_true"].to_numpy(), rtol=0, atol=1e-12)
    assert snapshot.as_of == pd.Timestamp("2026-06-30", tz="UTC")  # from snapshot.json


def test_truth_at_age_matches_the_outcome_draws() -> None:
    """probability_at_age against the generator's own draws: 300k leads at three true
    probabilities, the share converting within 90 days after each age among those still open."""
    from features.synthetic.arrays import DAY
    from features.synthetic.outcomes import draw_outcomes, probability_at_age
    from features.synthetic.timeline import Timeline

    n = 300_000
    rng = np.random.default_rng(5)
    timeline = Timeline(
        t0=pd.Timestamp("2020-01-01", tz="UTC"),
        as_of=10**9,
        lead_cdf=np.ones(1),
        event_keep=np.ones(1),
    )
    p = rng.choice([0.05, 0.2, 0.5], n)
    drawn = draw_outcomes(
        rng, timeline, np.arange(n), np.zeros(n, dtype=np.int64), np.log(p / (1 - p))
    )
    sql = np.where(drawn.sql >= 0, drawn.sql / DAY, np.inf)
    disqualified = np.where(drawn.disqualified >= 0, drawn.disqualified / DAY, np.inf)
    for age in (0.0, 3.5, 7.0, 28.0, 63.0, 84.0):
        still_open = (sql > age) & (disqualified > age)
        converts = (sql > age) & (sql <= age + 90)
        for level in (0.05, 0.2, 0.5):
            chosen = still_open & np.isclose(drawn.p, level)
            expected = probability_at_age(np.array([level]), np.array([age]))[0]
            observed = converts[chosen].mean()
            assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / chosen.sum())
    # at mql_at it is p_true itself, bit for bit
    assert probability_at_age(drawn.p, np.zeros(n)).tolist() == drawn.p.tolist()


def test_a_planted_shift_changes_only_what_comes_after_its_date() -> None:
    from features.synthetic import MarketShift, generate_snapshot

    after = pd.Timestamp("2026-03-01", tz="UTC")
    usual = generate_snapshot(2_000, seed=8, months=12)
    for kind, column in (("lead_source", "lead_source"), ("company_size", "company_size")):
        shifted = generate_snapshot(2_000, seed=8, months=12, shift=MarketShift(kind, after))  # type: ignore[arg-type]
        before = usual.leads["created_at"] < after
        pd.testing.assert_frame_equal(usual.leads[before], shifted.leads[before])
        pd.testing.assert_frame_equal(usual.events, shifted.events)
        assert not usual.leads.loc[~before, column].equals(shifted.leads.loc[~before, column])
    conversion = generate_snapshot(2_000, seed=8, months=12, shift=MarketShift("conversion", after))
    late = conversion.truth["cutoff"] >= after
    assert (conversion.truth.loc[late, "p_true"] < usual.truth.loc[late, "p_true"]).all()
    assert conversion.truth.loc[~late, "p_true"].equals(usual.truth.loc[~late, "p_true"])
