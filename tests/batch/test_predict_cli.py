"""`leadscore predict` end to end in process: files, the summary, the monitoring record, and
clear errors with nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app as cli
from serving.batch import COLUMNS, tier_changes
from serving.batch_io import OUTPUT_COLUMNS, write_scores
from tests.batch.conftest import AS_OF

pytestmark = pytest.mark.integration


def _predict(registry: dict[str, str], *args: str) -> tuple[int, str]:
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
    }
    result = CliRunner().invoke(
        cli, ["predict", "-s", registry["snapshot"], *args], env=env, catch_exceptions=False
    )
    return result.exit_code, result.output


def test_two_runs_write_scores_and_report_the_changes(
    registry: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    code, output = _predict(registry, "--as-of", AS_OF.isoformat(), "--out", str(out))
    assert code == 0, output
    first = pd.read_parquet(out)
    assert tuple(first.columns) == OUTPUT_COLUMNS and len(first) > 100
    assert f"scored {len(first):,} open MQLs" in output
    counts = first["tier"].value_counts()
    assert f"A {counts.get('A', 0):,}, B {counts.get('B', 0):,}" in output
    assert "no previous run to compare with" in output
    # the fixture's model is trained at sampled ages (the default): no open MQL is older than
    # what it covers, so there is no staleness note (tests/batch/test_open_rows.py words it)
    assert "days past their MQL" not in output, output
    record = json.loads((tmp_path / "scores.monitor.json").read_text())
    assert record["counts"]["rows"] == len(first)
    assert sum(record["counts"]["tiers"]) == len(first)

    later = (AS_OF + pd.Timedelta(days=10)).isoformat()
    code, output = _predict(registry, "--as-of", later, "--out", str(out))
    assert code == 0, output
    second = pd.read_parquet(out)
    c = tier_changes(first, second)
    assert c.new > 0 and c.gone > 0  # ten days on, some leads closed and new MQLs arrived
    assert (
        f"{c.new:,} new, {c.gone:,} gone, {c.up:,} moved up a tier, {c.down:,} moved down, "
        f"{c.same:,} unchanged"
    ) in output
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_past_the_snapshots_as_of_time_says_so(
    registry: dict[str, str], tmp_path: Path
) -> None:
    """Scoring days after the export reads every lead as silent since: the run says by how
    much; at the export's own time it says nothing."""
    meta = json.loads((Path(registry["snapshot"]) / "snapshot.json").read_text())
    exported = pd.Timestamp(meta["as_of"])
    out = tmp_path / "scores.parquet"
    later = (exported + pd.Timedelta(days=3, hours=12)).isoformat()
    code, output = _predict(registry, "--as-of", later, "--out", str(out))
    assert code == 0, output
    flat = " ".join(output.split())
    assert f"3.5 days after the snapshot's as-of time {exported.isoformat()}" in flat, flat
    code, output = _predict(registry, "--as-of", exported.isoformat(), "--out", str(out))
    assert code == 0, output
    assert "after the snapshot's as-of time" not in " ".join(output.split())


def test_csv_holds_the_same_scores(registry: dict[str, str], tmp_path: Path) -> None:
    parquet, csv = tmp_path / "s.parquet", tmp_path / "s.csv"
    for out in (parquet, csv):
        code, output = _predict(registry, "--as-of", AS_OF.isoformat(), "--out", str(out))
        assert code == 0, output
    a = pd.read_parquet(parquet).drop(columns="scored_at")
    b = pd.read_csv(csv, dtype={"model_version": str}).drop(columns="scored_at")
    assert a["lead_id"].tolist() == b["lead_id"].tolist()
    pd.testing.assert_series_equal(a["probability"], b["probability"], rtol=0, atol=1e-15)
    assert a["reasons"].tolist() == b["reasons"].tolist()
    assert (pd.to_datetime(b["as_of"], utc=True) == AS_OF).all()


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"the previous run's file")

    def chunks() -> Iterator[pd.DataFrame]:
        yield pd.DataFrame({c: ["x"] for c in COLUMNS}).assign(
            as_of=AS_OF, scored_at=AS_OF, probability=0.5, points=1.0
        )
        raise RuntimeError("killed mid-run")

    with pytest.raises(RuntimeError, match="killed mid-run"):
        write_scores(chunks(), out)
    assert out.read_bytes() == b"the previous run's file"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "next tuesday"], "--as-of: 'next tuesday' is not an ISO 8601 time"),
        (["--as-of", AS_OF.isoformat(), "--model-uri", "models:/nope@champion"], "nope"),
        (["--as-of", AS_OF.isoformat(), "--to-sql", "sqlite://"], "--table go together"),
        ([], "--as-of"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    registry: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "scores.parquet"
    code, output = _predict(registry, *args, "--out", str(out))
    assert code == 2
    assert message in " ".join(output.split())
    assert not out.exists()


def test_unwritable_out_is_named_before_any_work(registry: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out, message in (
        (blocker / "scores.parquet", "is not a folder"),
        (tmp_path / "scores.json", "write .parquet or .csv"),
        (tmp_path, "is a folder"),
    ):
        code, output = _predict(registry, "--as-of", AS_OF.isoformat(), "--out", str(out))
        assert code == 2, output
        assert message in output and str(out) in " ".join(output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_sqlite_table_is_upserted_too(registry: dict[str, str], tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    out = tmp_path / "scores.parquet"
    for _ in range(2):
        code, output = _predict(
            registry, "--as-of", AS_OF.isoformat(), "--out", str(out), "--to-sql", url,
            "--table", "scores",
        )  # fmt: skip
        assert code == 0, output
    written = pd.read_parquet(out)
    assert f"0 new, 0 gone, 0 moved up a tier, 0 moved down, {len(written):,} unchanged" in output
    engine = sa.create_engine(url)
    table = pd.read_sql_table("scores", engine).sort_values("lead_id", ignore_index=True)
    engine.dispose()
    written = written.sort_values("lead_id", ignore_index=True)
    assert table["lead_id"].tolist() == written["lead_id"].tolist()
    assert table["tier"].tolist() == written["tier"].tolist()
    assert table["reasons"].tolist() == written["reasons"].tolist()
    assert (table["probability"] == written["probability"]).all()
