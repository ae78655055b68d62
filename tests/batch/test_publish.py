"""The scores file, its monitoring record and the SQL table are published as one run (issue
16.7): one run id in all three; a SIGKILL between any two steps leaves the old run or the new
one whole once settled; `monitor` refuses a record of another run; a full disk is a clear
error with the old outputs untouched; `--to-sql` problems are found before any work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from serving.batch_io import settle_interrupted
from cli import app as cli
from tests.batch.conftest import AS_OF
from tests.conftest import POSTGRES_URL
from training.monitor import MonitorError, monitor_path, publish_journal_path
from training.monitor_report import read_run

pytestmark = pytest.mark.integration
LATER = (AS_OF + pd.Timedelta(days=10)).isoformat()


def _env(registry: dict[str, str]) -> dict[str, str]:
    return {
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
    }


def _predict(registry: dict[str, str], out: Path, *args: str, as_of: str = LATER) -> str:
    result = CliRunner().invoke(
        cli,
        ["predict", "-s", registry["snapshot"], "--as-of", as_of, "--out", str(out), *args],
        env=_env(registry),
    )
    assert result.exit_code == 0, result.output
    return result.output


def _file_run(out: Path) -> str:
    ids = pd.read_parquet(out, columns=["run_id"])["run_id"].unique()
    assert len(ids) == 1, ids
    return str(ids[0])


def _record_run(out: Path) -> str:
    return str(json.loads(monitor_path(out).read_text())["run_id"])


def _table_runs(schema: str) -> list[str]:
    engine = sa.create_engine(POSTGRES_URL)
    with engine.connect() as connection:
        found = connection.execute(sa.text(f'SELECT DISTINCT run_id FROM "{schema}".scores'))
        ids = sorted(str(row[0]) for row in found)
    engine.dispose()
    return ids


@pytest.mark.postgres
def test_one_run_id_in_the_file_its_record_and_the_table(
    registry: dict[str, str], postgres_schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    said = _predict(registry, out, "--to-sql", POSTGRES_URL, "--table", f"{postgres_schema}.scores")
    run = _file_run(out)
    assert _record_run(out) == run and _table_runs(postgres_schema) == [run]
    assert f"(run {run})" in said
    assert read_run(out).record["run_id"] == run  # monitor accepts the pair


def test_monitor_refuses_a_record_of_another_run_of_the_same_size(
    registry: dict[str, str], tmp_path: Path
) -> None:
    """Two runs of one model over the same MQLs: same version, same row count; only the run
    id tells their records apart."""
    first, second = tmp_path / "a" / "scores.parquet", tmp_path / "b" / "scores.parquet"
    _predict(registry, first)
    _predict(registry, second)
    assert len(pd.read_parquet(first)) == len(pd.read_parquet(second))
    shutil.copy(monitor_path(first), monitor_path(second))
    with pytest.raises(MonitorError, match="the record belongs to another run"):
        read_run(second)
    result = CliRunner().invoke(cli, ["monitor", "--scores", str(second)])
    assert result.exit_code != 0 and "belongs to another run" in result.output


# --------------------------------------------------------------------------- SIGKILL

#: Runs `leadscore predict` in a child that SIGKILLs itself at one step of publishing: before
#: or after the n-th rename into the output folder (1: the journal, 2: the scores, 3: the
#: record), or before or after the database commit. Only library calls are wrapped.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    import psycopg

    point, folder = sys.argv[1], Path(sys.argv[2]).resolve()
    kind, *rest = point.split(":")

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "replace":
        nth, when = int(rest[0]), rest[1]
        real_replace, seen = os.replace, [0]

        def replace(source, target, *args, **kwargs):
            ours = Path(target).resolve().parent == folder
            seen[0] += ours
            if ours and seen[0] == nth and when == "before":
                die()
            real_replace(source, target, *args, **kwargs)
            if ours and seen[0] == nth and when == "after":
                die()

        os.replace = replace
    else:
        real_commit = psycopg.Connection.commit

        def commit(self):
            if rest[0] == "before":
                die()
            real_commit(self)
            die()

        psycopg.Connection.commit = commit

    from serving.cli import app

    app(sys.argv[3:])
    """
)

#: (kill point, the run that must be whole once settled)
KILL_POINTS = [
    ("replace:1:before", "old"),  # temporary files written, no journal yet
    ("replace:1:after", "old"),  # journal written, database not committed
    ("commit:before", "old"),
    ("commit:after", "new"),  # committed: the run is done, its files follow
    ("replace:2:after", "new"),  # new scores beside the old record
    ("replace:3:after", "new"),  # both moved, the journal left
]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize(("point", "whole"), KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_sigkill_at_each_step_leaves_the_old_or_the_new_run_whole(
    registry: dict[str, str],
    postgres_schema: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    point: str,
    whole: str,
) -> None:
    out = tmp_path / "out" / "scores.parquet"
    sql = ("--to-sql", POSTGRES_URL, "--table", f"{postgres_schema}.scores")
    _predict(registry, out, *sql, as_of=AS_OF.isoformat())
    old = _file_run(out)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    command = [sys.executable, str(killer), point, str(out.parent), "predict"]
    command += ["-s", registry["snapshot"], "--as-of", LATER, "--out", str(out), *sql]
    done = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr

    # before it is settled, monitor reads one run whole or refuses: never a mixed pair
    try:
        run = read_run(out)
        assert run.record["run_id"] == _file_run(out)
    except MonitorError as error:
        assert "belongs to another run" in str(error), error

    settled = settle_interrupted(out, (POSTGRES_URL, f"{postgres_schema}.scores"))
    assert (settled is None) == (point == "replace:1:before")
    run_id = _file_run(out)
    assert _record_run(out) == run_id and _table_runs(postgres_schema) == [run_id]
    assert (run_id == old) == (whole == "old"), (point, settled)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        ".scores.parquet.lock",
        "scores.monitor.json",
        "scores.parquet",
    ]
    assert read_run(out).record["run_id"] == run_id


def test_an_interrupted_run_of_another_table_is_not_settled_blindly(
    registry: dict[str, str], tmp_path: Path
) -> None:
    """A journal naming a table this run cannot look at: a clear error, nothing changed."""
    out = tmp_path / "scores.parquet"
    _predict(registry, out)
    before = out.read_bytes()
    journal = publish_journal_path(out)
    journal.write_text(
        json.dumps(
            {
                "format": "leadscore.publish/1",
                "run_id": "r1",
                "moves": [[".scores.parquet.x.tmp", "scores.parquet"]],
                "table": "elsewhere",
                "database": "postgresql://db/x",
                "rows": 3,
            }
        )
    )
    result = CliRunner().invoke(
        cli,
        ["predict", "-s", registry["snapshot"], "--as-of", LATER, "--out", str(out)],
        env=_env(registry),
    )
    assert result.exit_code == 1, result.output
    assert "may have committed to table elsewhere" in " ".join(result.output.split())
    assert out.read_bytes() == before and journal.exists()


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (needs root): a real file system that fills up."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "leadscore-test", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_full_disk_is_a_clear_error_and_the_old_outputs_stay(
    registry: dict[str, str], small_disk: Path, suffix: str
) -> None:
    out = small_disk / f"scores{suffix}"
    _predict(registry, out)
    old_scores, old_record = out.read_bytes(), monitor_path(out).read_bytes()
    # fill the disk but for 8 KiB: the new scores cannot be written
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 8192))
    result = CliRunner().invoke(
        cli,
        ["predict", "-s", registry["snapshot"], "--as-of", AS_OF.isoformat(), "--out", str(out)],
        env=_env(registry),
    )
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert "Traceback" not in said and "No space left on device" in said, said
    assert f"cannot write {small_disk}" in said and "nothing was published" in said
    assert out.read_bytes() == old_scores and monitor_path(out).read_bytes() == old_record
    left = sorted(p.name for p in small_disk.iterdir())
    assert left == sorted([f".scores{suffix}.lock", "filler", out.name, monitor_path(out).name])


# --------------------------------------------------------------------------- --to-sql


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("url", "table", "said"),
    [
        ("not a url", "scores", "--to-sql <unparseable URL>: not a usable database URL"),
        ("nosuchdb://x/y", "scores", "not a usable database URL"),
        (
            "postgresql+psycopg://postgres:secret@127.0.0.1:1/test",
            "scores",
            "--to-sql postgresql+psycopg://postgres:***@127.0.0.1:1/test: cannot connect",
        ),
        (POSTGRES_URL, "no_such_schema_16.scores", "schema 'no_such_schema_16' does not exist"),
        (POSTGRES_URL, "s" * 64, "is 64 characters; PostgreSQL keeps 63"),
        (POSTGRES_URL, '"Scores"', "write the names without quotes"),
        (POSTGRES_URL, 'public."Scores"', "write the names without quotes"),
        (POSTGRES_URL, "a.b.c", "write table or schema.table"),
        (POSTGRES_URL, "1scores", "is not a plain name"),
    ],
    ids=[
        "not-a-url",
        "unknown-dialect",
        "unreachable",
        "missing-schema",
        "64-chars",
        "quoted",
        "quoted-in-schema",
        "three-parts",
        "leading-digit",
    ],
)
def test_to_sql_problems_are_named_before_any_work(
    registry: dict[str, str], tmp_path: Path, url: str, table: str, said: str
) -> None:
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(
        cli,
        [
            *("predict", "-s", registry["snapshot"], "--as-of", LATER, "--out", str(out)),
            *("--to-sql", url, "--table", table),
        ],
        env=_env(registry),
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert said in output and "secret" not in output, output
    assert "leads," not in output and "scored" not in output  # the snapshot was never read
    assert not out.exists()


@pytest.mark.postgres
def test_a_mixed_case_name_keeps_its_case_and_an_old_table_gets_a_run_id(
    registry: dict[str, str], postgres_schema: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as connection:  # a table as the version before run ids made it
        connection.execute(
            sa.text(
                f'CREATE TABLE "{postgres_schema}"."Scores" (lead_id TEXT PRIMARY KEY, '
                "account_id TEXT, as_of TIMESTAMPTZ, probability FLOAT, tier TEXT, points FLOAT, "
                "thresholds_passed TEXT, reasons TEXT, model_name TEXT, model_version TEXT, "
                "scored_at TIMESTAMPTZ)"
            )
        )
    out = tmp_path / "scores.parquet"
    _predict(registry, out, "--to-sql", POSTGRES_URL, "--table", f"{postgres_schema}.Scores")
    with engine.connect() as connection:
        ids = connection.execute(
            sa.text(f'SELECT DISTINCT run_id FROM "{postgres_schema}"."Scores"')
        ).all()
    engine.dispose()
    assert [str(i[0]) for i in ids] == [_file_run(out)]


def test_run_ids_differ_between_runs() -> None:
    from serving.batch_io import new_run_id

    assert len({new_run_id() for _ in range(100)}) == 100
    assert new_run_id()[:8] == pd.Timestamp.now(tz="UTC").strftime("%Y%m%d")


@pytest.mark.slow
def test_sigkill_between_the_two_renames_without_a_table_finishes_the_new_run(
    registry: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """No table: the journal alone is the commit point; the next run's settling finishes."""
    out = tmp_path / "out" / "scores.parquet"
    _predict(registry, out, as_of=AS_OF.isoformat())
    old = _file_run(out)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    command = [sys.executable, str(killer), "replace:2:after", str(out.parent), "predict"]
    command += ["-s", registry["snapshot"], "--as-of", LATER, "--out", str(out)]
    done = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    with pytest.raises(MonitorError, match=r"belongs to another run.*interrupted run left"):
        read_run(out)
    said = _predict(registry, out)  # the next run settles it first, then publishes its own
    assert "a previous run was interrupted: finished run" in " ".join(said.split())
    assert _file_run(out) == _record_run(out) != old
