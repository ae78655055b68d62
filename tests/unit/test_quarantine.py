"""Bad rows: with on_bad_rows: drop they are set aside with a reason each, counted, and the
read still fails above source.max_bad_share; by default they stop the read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.config import Config, build_config
from features.contract import ContractError
from features.quarantine import write_quarantine
from features.reader import check_lead_timeline, read_snapshot, snapshot_from_frames

AS_OF = "2026-01-01T00:00:00Z"
N = 200


def _leads() -> pd.DataFrame:
    days = pd.Series(range(N)) % 300
    created = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(days, unit="D")
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i:03d}" for i in range(N)],
            "created_at": created.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mql_at": (created + pd.Timedelta(days=2)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sql_at": "",
            "disqualified_at": "",
            "company_size": "50",
            "Visits": "3",
        }
    )
    return frame.astype("str")


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"L{i % N:03d}" for i in range(3 * N)],
            "occurred_at": "2025-06-01T00:00:00Z",
            "event_type": ["email_open", "page_view", "demo_request"] * N,
        }
    ).astype("str")


def _config(**source: object) -> Config:
    return build_config(
        {
            "as_of": AS_OF,
            "source": {"on_bad_rows": "drop", **source},
            "custom_fields": [{"column": "Visits", "kind": "engagement", "type": "numeric"}],
        }
    )


#: (row rule, change one row of the leads, the reason the quarantine gives)
BREACHES = [
    ("sql before mql", {"sql_at": "2024-12-01"}, "sql_at before mql_at"),
    ("bad timestamp", {"created_at": "yesterday"}, "created_at is not an ISO 8601 timestamp"),
    ("no created_at", {"created_at": ""}, "no created_at"),
    ("mql before created", {"mql_at": "2024-01-01"}, "mql_at before created_at"),
    (
        "disqualified before created",
        {"disqualified_at": "2024-01-01"},
        "disqualified_at before created_at",
    ),
    ("implausible", {"sql_at": "2999-01-01"}, "sql_at is implausible"),
    ("negative size", {"company_size": "-5"}, "company_size is no non-negative number"),
    ("size not a number", {"company_size": "lots"}, "company_size is no non-negative number"),
    ("custom not a number", {"Visits": "many"}, "Visits is not a number"),
    ("no id", {"lead_id": ""}, "no lead_id"),
    ("huge cell", {"Visits": "x" * 10_001}, "Visits is longer than 10,000 characters"),
]


@pytest.mark.parametrize(("rule", "change", "reason"), BREACHES, ids=[b[0] for b in BREACHES])
def test_each_row_rule_fails_by_default_and_sets_the_row_aside_with_drop(
    rule: str, change: dict[str, str], reason: str
) -> None:
    leads = _leads()
    for column, value in change.items():
        leads.loc[7, column] = value
    default = _config().model_copy(
        update={"source": _config().source.model_copy(update={"on_bad_rows": "fail"})}
    )
    with pytest.raises(ContractError):  # the timeline rules are checked on read, as here
        snap = snapshot_from_frames(leads, _events(), default)
        check_lead_timeline(snap.leads, default, "leads")
    snap = snapshot_from_frames(leads, _events(), _config())
    quarantine = snap.report.quarantine
    assert quarantine.lead_rows == 1 and len(snap.leads) == N - 1
    row = quarantine.frame().iloc[0]
    assert (row["table"], row["row"]) == ("leads", 8)  # data rows counted from 1
    assert reason in row["reason"], row["reason"]
    assert "L007" not in set(snap.leads["lead_id"])
    if rule != "no id":  # its events have no lead to belong to: dropped and counted
        assert quarantine.events_of_set_aside_leads == 3
        assert len(snap.events) == 3 * (N - 1)


def test_duplicate_ids_set_both_rows_aside_and_several_reasons_are_joined() -> None:
    leads = _leads()
    leads.loc[3, "lead_id"] = "L004"
    leads.loc[3, "sql_at"] = "2020-01-01"
    snap = snapshot_from_frames(leads, _events(), _config())
    frame = snap.report.quarantine.frame()
    assert list(frame["row"]) == [4, 5]
    assert frame["reason"].iloc[0] == "lead_id shared with another row; sql_at before mql_at"
    assert frame["reason"].iloc[1] == "lead_id shared with another row"


def test_above_the_share_the_read_still_fails_naming_share_and_threshold() -> None:
    leads = _leads()
    leads.loc[:2, "sql_at"] = "2024-12-01"  # 3 of 200 = 1.5% > 1%
    with pytest.raises(
        ContractError,
        match=r"(?s)leads: 3 of 200 rows \(1.50%\) break the contract, above "
        r"source.max_bad_share 1.00%.*3 row\(s\): sql_at before mql_at",
    ):
        snapshot_from_frames(leads, _events(), _config())
    snap = snapshot_from_frames(leads, _events(), _config(max_bad_share=0.02))
    assert snap.report.quarantine.lead_rows == 3


def test_bad_events_are_set_aside_and_their_share_checked() -> None:
    events = _events()
    events.loc[10, "occurred_at"] = "soon"
    events.loc[11, "occurred_at"] = ""
    events.loc[12, "occurred_at"] = "1900-01-01"
    snap = snapshot_from_frames(_leads(), events, _config())
    frame = snap.report.quarantine.frame()
    assert list(frame["table"]) == ["events"] * 3 and list(frame["row"]) == [11, 12, 13]
    assert list(frame["reason"]) == [
        "occurred_at is not an ISO 8601 timestamp",
        "no occurred_at",
        "occurred_at is implausible (before 1970 or in the future)",
    ]
    assert snap.report.events_read == 3 * N and len(snap.events) == 3 * N - 3
    lines = " | ".join(snap.report.lines())
    assert "3 of 600 events (0.50%) set aside" in lines
    events.loc[13:20, "occurred_at"] = "never"
    with pytest.raises(ContractError, match=r"events: 11 of 600 rows \(1.83%\)"):
        snapshot_from_frames(_leads(), events, _config())


def test_the_quarantine_file_is_written_atomically_and_only_when_rows_were_set_aside(
    tmp_path: Path,
) -> None:
    clean = snapshot_from_frames(_leads(), _events(), _config())
    assert write_quarantine(clean.report.quarantine, tmp_path / "q.csv") is None
    assert not (tmp_path / "q.csv").exists()
    leads = _leads()
    leads.loc[5, "sql_at"] = "2024-12-01"
    snap = snapshot_from_frames(leads, _events(), _config())
    written = write_quarantine(snap.report.quarantine, tmp_path / "q.csv")
    assert written == tmp_path / "q.csv"
    back = pd.read_csv(written, dtype="str", keep_default_na=False)
    assert list(back.columns[:4]) == ["table", "row", "reason", "lead_id"]
    assert back.loc[0, "lead_id"] == "L005" and back.loc[0, "sql_at"] == "2024-12-01"
    assert [p.name for p in tmp_path.iterdir()] == ["q.csv"]  # no temporary file left


def test_read_snapshot_counts_them_in_its_summary(tmp_path: Path) -> None:
    leads = _leads()
    leads.loc[5, "sql_at"] = "2024-12-01"
    leads.to_csv(tmp_path / "leads.csv", index=False)
    _events().to_csv(tmp_path / "events.csv", index=False)
    snap = read_snapshot(_config(path=str(tmp_path)))
    assert snap.report.quarantine.counts() == {
        "quarantined_leads": 1,
        "quarantined_events": 0,
        "events_of_quarantined_leads": 3,
    }
    lines = snap.report.lines()
    assert "1 of 200 leads (0.50%) set aside as breaking the contract (on_bad_rows: drop)" in lines
    assert "set aside for: 1 sql_at before mql_at" in lines
