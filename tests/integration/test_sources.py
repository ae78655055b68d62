"""One snapshot read from a CSV folder, a Parquet folder, SQLite and PostgreSQL gives one result."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from common.config import build_config
from features.contract import ContractError
from features.pipeline import build_training_set
from features.reader import read_snapshot, snapshot_from_frames
from tests.conftest import POSTGRES_URL, random_crm

AS_OF = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return random_crm(n_leads=200, seed=11)


@pytest.fixture(scope="module")
def expected(frames: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    config = build_config({"as_of": AS_OF})
    training_set, _ = build_training_set(snapshot_from_frames(*frames, config), config)
    return training_set


def _training_set(source: dict[str, object]) -> pd.DataFrame:
    config = build_config({"as_of": AS_OF, "source": source})
    training_set, _ = build_training_set(read_snapshot(config), config)
    return training_set


def test_csv_folder(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame], expected: pd.DataFrame
) -> None:
    leads, events = frames
    leads.to_csv(tmp_path / "leads.csv", index=False)
    # ISO 8601 with and without a zone: naive times are UTC
    events.assign(occurred_at=events["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%S")).to_csv(
        tmp_path / "events.csv", index=False
    )
    pd.testing.assert_frame_equal(_training_set({"path": str(tmp_path)}), expected)


def test_parquet_folder(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame], expected: pd.DataFrame
) -> None:
    leads, events = frames
    leads.to_parquet(tmp_path / "leads.parquet")
    events.to_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(_training_set({"path": str(tmp_path)}), expected)


def test_sqlite(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame], expected: pd.DataFrame
) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    leads, events = frames
    leads.to_sql("leads", engine, index=False)
    events.to_sql("events", engine, index=False)
    engine.dispose()
    pd.testing.assert_frame_equal(_training_set({"url": url}), expected)


@pytest.mark.postgres
def test_postgresql(
    postgres_schema: str, frames: tuple[pd.DataFrame, pd.DataFrame], expected: pd.DataFrame
) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    leads, events = frames
    leads.to_sql("crm_leads", engine, schema=postgres_schema, index=False)
    events.to_sql("crm_events", engine, schema=postgres_schema, index=False)
    engine.dispose()
    got = _training_set(
        {
            "url": POSTGRES_URL,
            "schema": postgres_schema,
            "leads": "crm_leads",
            "events": "crm_events",
        }
    )
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.postgres
def test_postgresql_missing_table_is_named(postgres_schema: str) -> None:
    with pytest.raises(ContractError, match=r"table '.*\.leads' not found"):
        _training_set({"url": POSTGRES_URL, "schema": postgres_schema})


def test_missing_files_and_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="snapshot folder not found"):
        _training_set({"path": str(tmp_path / "nope")})
    with pytest.raises(
        ContractError, match=r"no 'leads' file .*leads\.parquet, leads\.pq, leads\.csv"
    ):
        _training_set({"path": str(tmp_path)})
    (tmp_path / "leads.csv").write_text("")
    with pytest.raises(ContractError, match=r"leads\.csv: the file is empty"):
        _training_set({"path": str(tmp_path)})


def test_non_utf8_bytes_are_named(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_bytes(
        "lead_id,created_at,country\nl1,2025-01-01,M\xe9xico\n".encode("latin-1")
    )
    (tmp_path / "events.csv").write_text(
        "lead_id,occurred_at,event_type\nl1,2025-01-02,page_view\n"
    )
    with pytest.raises(ContractError, match="not valid utf-8"):
        _training_set({"path": str(tmp_path), "encoding": "utf-8"})
    got = _training_set({"path": str(tmp_path), "encoding": "latin-1"})
    assert list(got["lead_id"]) == []  # no MQLs, but read cleanly
    # detected by default (source.encoding: auto)
    assert list(_training_set({"path": str(tmp_path)})["lead_id"]) == []
