"""Real faults in the batch job: the SQL table upserted idempotently, PostgreSQL going away
mid-upsert, and `leadscore predict` killed with SIGKILL mid-run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli import app as cli
from tests.batch.conftest import AS_OF, LEADSCORE
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.integration
LATER = (AS_OF + pd.Timedelta(days=10)).isoformat()


def _predict(registry: dict[str, str], as_of: str, out: Path, *args: str) -> str:
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
    }
    result = CliRunner().invoke(
        cli,
        ["predict", "-s", registry["snapshot"], "--as-of", as_of, "--out", str(out), *args],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def _table(schema: str) -> pd.DataFrame:
    engine = sa.create_engine(POSTGRES_URL)
    with engine.connect() as connection:
        frame = pd.read_sql_table("scores", connection, schema=schema)
    engine.dispose()
    return frame.sort_values("lead_id", ignore_index=True)


def _without_scored_at(frame: pd.DataFrame) -> pd.DataFrame:
    """Without what every run stamps afresh: when it scored and its run id."""
    stamps = [c for c in ("scored_at", "run_id") if c in frame]
    return frame.drop(columns=stamps).sort_values("lead_id", ignore_index=True)


@pytest.mark.postgres
def test_upsert_is_idempotent_and_follows_the_open_mqls(
    registry: dict[str, str], postgres_schema: str, tmp_path: Path
) -> None:
    sql = ["--to-sql", POSTGRES_URL, "--table", f"{postgres_schema}.scores"]
    out = tmp_path / "scores.parquet"
    _predict(registry, AS_OF.isoformat(), out, *sql)
    first = _table(postgres_schema)
    written = pd.read_parquet(out)
    assert len(first) == len(written) > 100
    pd.testing.assert_frame_equal(
        _without_scored_at(first)[["lead_id", "tier", "points", "reasons"]],
        _without_scored_at(written)[["lead_id", "tier", "points", "reasons"]],
    )
    assert (
        first["probability"]
        == written.set_index("lead_id").loc[first["lead_id"], "probability"].to_numpy()
    ).all()

    output = _predict(registry, AS_OF.isoformat(), out, *sql)
    again = _table(postgres_schema)
    pd.testing.assert_frame_equal(_without_scored_at(again), _without_scored_at(first))
    assert f"0 new, 0 gone, 0 moved up a tier, 0 moved down, {len(first):,} unchanged" in output
    assert f"(table {postgres_schema}.scores)" in output

    _predict(registry, LATER, out, *sql)
    later = _table(postgres_schema)
    assert sorted(later["lead_id"]) == sorted(pd.read_parquet(out)["lead_id"])  # gone leads left
    assert (later["as_of"] == pd.Timestamp(LATER)).all()


@pytest.mark.postgres
def test_postgres_going_away_mid_upsert_leaves_table_and_file(
    registry: dict[str, str], postgres_schema: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """A second connection holds a row lock, so the job's upsert waits mid-statement (rows
    already staged and partly written); then its backend is terminated."""
    table = f"{postgres_schema}.scores"
    out = tmp_path / "scores.parquet"
    _predict(registry, AS_OF.isoformat(), out, "--to-sql", POSTGRES_URL, "--table", table)
    before = _table(postgres_schema)
    file_before = out.read_bytes()
    later_ids = set(pd.read_parquet(_scores_at(registry, LATER, tmp_path))["lead_id"])
    # a lead in both runs, far down the table: the upsert writes many rows before it waits
    locked = sorted(later_ids & set(before["lead_id"]))[-1]

    engine = sa.create_engine(POSTGRES_URL)
    with engine.connect() as locker:
        locker.execute(
            sa.text(f'SELECT 1 FROM "{postgres_schema}".scores WHERE lead_id = :id FOR UPDATE'),
            {"id": locked},
        )
        job = subprocess.Popen(
            [LEADSCORE, "predict", "-s", registry["snapshot"], "--as-of", LATER, "--out", str(out),
             "--to-sql", POSTGRES_URL, "--table", table],
            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            pid = _waiting_backend(engine, job)
            with engine.connect() as admin:
                assert admin.execute(
                    sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}
                ).scalar()
            _, stderr = job.communicate(timeout=120)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        locker.rollback()
    engine.dispose()
    message = " ".join(stderr.split())
    assert job.returncode == 1, stderr
    assert f"table {table} at postgresql+psycopg://postgres@127.0.0.1:5432/test" in message
    assert "the upsert failed and was rolled back, the table is as it was" in message
    pd.testing.assert_frame_equal(_table(postgres_schema), before)
    assert out.read_bytes() == file_before  # the file is replaced only after the table
    assert not list(tmp_path.glob(".scores.parquet.*.tmp"))


def _scores_at(registry: dict[str, str], as_of: str, folder: Path) -> Path:
    out = folder / f"reference-{as_of[:10]}.parquet"
    _predict(registry, as_of, out)
    return out


def _waiting_backend(engine: sa.Engine, job: subprocess.Popen[str]) -> int:
    """The job's backend once it waits on the row lock."""
    query = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'leadscore predict' "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()
        with engine.connect() as connection:
            pid = connection.execute(query).scalar()
        if pid is not None:
            return int(pid)
        time.sleep(0.1)
    raise AssertionError("the job never reached the upsert")


def test_sigkill_mid_run_leaves_the_old_file_and_a_rerun_completes(
    registry: dict[str, str], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "scores.parquet"
    _predict(registry, AS_OF.isoformat(), out)
    old = out.read_bytes()
    expected = pd.read_parquet(_scores_at(registry, LATER, tmp_path))

    command = [
        LEADSCORE,
        "predict",
        "-s",
        registry["snapshot"],
        "--as-of",
        LATER,
        "--out",
        str(out),
    ]
    # small chunks: the run spends seconds writing chunk after chunk
    env = {**cli_env, "LEADSCORE__FEATURES__CHUNK_LEADS": "60"}
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".scores.parquet.*.tmp")):
        assert job.poll() is None, "the job ended before it was killed"
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.01)
    time.sleep(0.3)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    assert out.read_bytes() == old  # the killed run changed nothing readers see

    _predict(registry, LATER, out)  # the re-run, in process
    pd.testing.assert_frame_equal(
        _without_scored_at(pd.read_parquet(out)), _without_scored_at(expected)
    )
    assert not list(tmp_path.glob(".scores.parquet.*.tmp"))  # the killed run's leftovers went
