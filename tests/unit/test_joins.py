"""Declared joins: a deals table gives sql_at (the earliest deal counts), an accounts table
gives firmographics; bad declarations are named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.config import JoinConfig, build_config
from features.contract import ContractError
from features.joins import join_one
from features.reader import read_snapshot

LEADS = pd.DataFrame(
    {
        "MQL Id": ["m1", "m2", "m3", "m4"],
        "Company": ["c1", "c1", "c2", ""],
        "First Contact": ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"],
    }
)
DEALS = pd.DataFrame(
    {
        "Deal": ["d1", "d2", "d3", "d4", "d5"],
        "MQL Id": ["m1", "m1", "m2", "nobody", "m1"],
        "Won": ["2025-03-01", "2025-02-01", "2025-02-10", "2025-02-01", ""],
    }
)


def _join(**declared: object) -> tuple[pd.DataFrame, list[str]]:
    join = JoinConfig.model_validate({"table": "deals", "key": "MQL Id", **declared})
    return join_one(LEADS, DEALS, join, ("leads.csv", "deals.csv"))


def test_the_earliest_row_of_a_key_counts_and_leads_without_one_get_missing() -> None:
    joined, notes = _join(columns=["Won"], order_by="Won")
    assert list(joined["Won"].fillna("-")) == ["2025-02-01", "2025-02-10", "-", "-"]
    assert list(joined.columns) == [*LEADS.columns, "Won"]
    assert "1 key(s) have several rows; the earliest by 'Won' counts" in notes[0]
    assert "2 of 4 leads have a row; 1 row(s) match no lead" in notes[1]


def test_pick_latest_and_renamed_columns() -> None:
    joined, _ = _join(columns={"Won": "won_at", "Deal": "deal_id"}, order_by="Won", pick="latest")
    assert list(joined["won_at"].fillna("-")) == ["2025-03-01", "2025-02-10", "-", "-"]
    assert list(joined["deal_id"].fillna("-")) == ["d1", "d3", "-", "-"]


def test_several_rows_without_order_by_is_an_error_naming_the_fix() -> None:
    with pytest.raises(ContractError, match=r"1 key\(s\) of 'MQL Id' have several rows.*'m1'.*"):
        _join(columns=["Won"])


def test_keys_read_as_numbers_on_one_side_match_text_on_the_other() -> None:
    leads = pd.DataFrame({"id": ["7", "8"], "created": ["2025-01-01", "2025-01-02"]})
    firms = pd.DataFrame({"id": [7.0, 9.0], "size": [120, 5]})
    join = JoinConfig(table="firms", key="id")
    joined, _ = join_one(leads, firms, join, ("leads", "firms"))
    assert joined["size"].iloc[0] == 120 and pd.isna(joined["size"].iloc[1])


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({"lead_key": "Lead"}, r"leads.csv: column 'Lead'.*source.joins\[0\].lead_key names a"),
        (
            {"key": "Id", "lead_key": "MQL Id"},
            r"deals.csv: column 'Id'.*source.joins\[0\].key names a column",
        ),
        ({"columns": ["Amount"]}, r"deals.csv: column 'Amount'.*source.joins\[0\].columns"),
        ({"order_by": "Closed"}, r"column 'Closed'.*source.joins\[0\].order_by"),
        (
            {"columns": {"Won": "First Contact"}, "order_by": "Won"},
            r"columns it has already: \['First Contact'\]; rename them under source.joins",
        ),
    ],
)
def test_bad_declarations_name_the_table_column_and_key(
    declared: dict[str, object], expected: str
) -> None:
    with pytest.raises(ContractError, match=expected):
        _join(**declared)


def _export(tmp_path: Path) -> Path:
    LEADS.to_csv(tmp_path / "mqls.csv", index=False)
    DEALS.to_csv(tmp_path / "deals.csv", sep=";", index=False)
    pd.DataFrame({"Company": ["c1", "c2"], "Sector": ["Software", "Retail"]}).to_parquet(
        tmp_path / "firms.parquet"
    )
    return tmp_path


def test_a_folder_export_joins_deals_and_accounts_onto_its_leads(tmp_path: Path) -> None:
    config = build_config(
        {
            "source": {
                "path": str(_export(tmp_path)),
                "leads": "mqls",
                "events": None,
                "joins": [
                    {"table": "deals", "key": "MQL Id", "columns": ["Won"], "order_by": "Won"},
                    {"table": "firms", "key": "Company"},
                ],
            },
            "mapping": {
                "leads": {
                    "MQL Id": "lead_id",
                    "Company": "account_id",
                    "First Contact": ["created_at", "mql_at"],
                    "Won": "sql_at",
                    "Sector": "industry",
                }
            },
        }
    )
    snap = read_snapshot(config)
    got = snap.leads.set_index("lead_id")
    assert got.loc["m1", "sql_at"] == pd.Timestamp("2025-02-01", tz="UTC")
    assert got.loc["m1", "mql_at"] == got.loc["m1", "created_at"]
    assert list(got["industry"].fillna("-")) == ["software", "software", "retail", "-"]
    lines = " | ".join(snap.report.lines())
    assert "deals.csv: detected delimiter ';'" in lines
    assert "firms.parquet: joined on 'Company': 3 of 4 leads have a row" in lines


def test_a_missing_joined_file_is_named(tmp_path: Path) -> None:
    config = build_config(
        {
            "source": {
                "path": str(_export(tmp_path)),
                "leads": "mqls",
                "events": None,
                "joins": [{"table": "outcomes", "key": "MQL Id"}],
            },
            "mapping": {"leads": {"MQL Id": "lead_id", "First Contact": "created_at"}},
        }
    )
    with pytest.raises(ContractError, match="no 'outcomes' file in"):
        read_snapshot(config)
