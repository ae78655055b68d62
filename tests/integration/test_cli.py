"""The CLI end to end: generate, validate, features; bad input exits non-zero and writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from common.config import build_config
from cli import app

runner = CliRunner()
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "snapshot"
    result = runner.invoke(app, ["generate", "--leads", "3000", "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_generate_then_features(snapshot: Path, tmp_path: Path) -> None:
    assert {"leads.parquet", "events.parquet", "truth.parquet"} <= {
        p.name for p in snapshot.iterdir()
    }
    out = tmp_path / "training_set.parquet"
    result = runner.invoke(app, ["features", "--snapshot", str(snapshot), "--out", str(out)])
    assert result.exit_code == 0, result.output
    training_set = pd.read_parquet(out)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["rows"]["kept"] == len(training_set) > 0
    assert summary["rows"]["censored"] > 0  # MQLs of the last 90 days have no outcome yet
    assert list(training_set.columns[:3]) == ["lead_id", "cutoff", "label"]
    assert list(training_set.columns[3:]) == [f["name"] for f in summary["features"]]
    truth = pd.read_parquet(snapshot / "truth.parquet")
    assert set(training_set["lead_id"]) <= set(truth["lead_id"])
    assert "rows (" in result.output and "censored" in result.output


def test_weekly_policy_adds_rows(snapshot: Path, tmp_path: Path) -> None:
    single, weekly = tmp_path / "single.parquet", tmp_path / "weekly.parquet"
    assert runner.invoke(app, ["features", "-s", str(snapshot), "-o", str(single)]).exit_code == 0
    result = runner.invoke(
        app, ["features", "-s", str(snapshot), "-o", str(weekly), "--weekly-weeks", "4"]
    )
    assert result.exit_code == 0, result.output
    a, b = pd.read_parquet(single), pd.read_parquet(weekly)
    assert len(b) > len(a)
    sampled = build_config({}).snapshot_policy.sampled_ages  # the default age model's rows
    assert a.groupby("lead_id").size().max() <= 1 + sampled
    assert b.groupby("lead_id").size().max() <= 1 + 4 + sampled


def test_validate_reports(snapshot: Path) -> None:
    result = runner.invoke(app, ["validate", "--snapshot", str(snapshot)])
    assert result.exit_code == 0, result.output
    assert "contract OK" in result.output and "duplicate events dropped" in result.output


def test_bad_snapshot_exits_2_and_writes_nothing(snapshot: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(snapshot, broken)
    leads = pd.read_parquet(broken / "leads.parquet")
    leads.loc[:4, "lead_id"] = leads.loc[0, "lead_id"]
    leads.to_parquet(broken / "leads.parquet")
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["features", "-s", str(broken), "-o", str(out)])
    assert result.exit_code == 2
    assert "column 'lead_id': 5 row(s) share a lead_id" in result.output
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert list(tmp_path.glob(".out.parquet*")) == []  # no temporary left behind


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("horizon_days: soon\n")
    result = runner.invoke(app, ["validate", "-c", str(config)])
    assert result.exit_code == 2 and "horizon_days" in result.output


def test_every_command_explains_itself() -> None:
    for command in ("generate", "validate", "features"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and len(result.output) > 200


def test_console_script_runs_in_a_real_process(snapshot: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("leadscore")
    out = tmp_path / "ts.parquet"
    done = subprocess.run(
        [str(script), "features", "-s", str(snapshot), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.exists()
    missing = subprocess.run(
        [str(script), "features", "-s", str(tmp_path / "none"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert missing.returncode == 2 and "snapshot folder not found" in missing.stderr
