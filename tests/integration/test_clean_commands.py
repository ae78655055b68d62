"""Commands write nothing outside the paths they were given or configured, and nothing at all
when they fail: each runs as a real process in an empty working folder (as a user runs it
outside the repository), with the snapshot elsewhere.

Before, `leadscore predict` there created an empty `mlflow.db` (the default tracking store)
and then failed for want of a model in it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.faults.serve_process import BIN, free_port, serve_process, wait_for_answer

pytestmark = pytest.mark.integration


def _env() -> dict[str, str]:
    """The environment without leadscore or MLflow settings: every default applies."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LEADSCORE", "MLFLOW_"))}


def _leadscore(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "leadscore"), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clean") / "snapshot"
    result = _leadscore(["generate", "--leads", "400", "--seed", "3", "--out", str(folder)], Path())
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_predict_without_a_tracking_store_fails_and_creates_none(
    snapshot: Path, empty: Path
) -> None:
    args = ["predict", "-s", str(snapshot), "--as-of", "2026-05-01T00:00:00Z", "--out", "s.csv"]
    result = _leadscore(args, empty)
    assert result.returncode == 2, result.stderr
    assert f"no MLflow tracking store at {empty / 'mlflow.db'}" in result.stderr
    assert "mlflow.tracking_uri" in result.stderr
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("command", [["promote", "1"], ["rollback"]])
def test_registry_commands_without_a_store_fail_and_create_none(
    command: list[str], empty: Path
) -> None:
    result = _leadscore(command, empty)
    assert result.returncode == 2, result.stderr
    assert "no MLflow tracking store" in result.stderr
    assert list(empty.iterdir()) == []


def test_train_on_a_broken_snapshot_writes_nothing(snapshot: Path, empty: Path) -> None:
    broken = empty.parent / "broken"
    broken.mkdir()
    leads = pd.read_parquet(snapshot / "leads.parquet").drop(columns="created_at")
    leads.to_parquet(broken / "leads.parquet")
    (broken / "events.parquet").write_bytes((snapshot / "events.parquet").read_bytes())
    result = _leadscore(["train", "-s", str(broken)], empty)
    assert result.returncode == 2, result.stderr
    assert "created_at" in result.stderr
    assert list(empty.iterdir()) == []


def test_serve_without_a_store_is_not_ready_and_creates_none(empty: Path, tmp_path: Path) -> None:
    """The server stays up, says why it has no model (503), and leaves the folder empty."""
    port = free_port()
    env = {**_env(), "LEADSCORE__SERVE__STARTUP_ATTEMPTS": "1"}
    with serve_process(env, port, tmp_path / "serve.log", cwd=empty) as process:
        answer = wait_for_answer(f"http://127.0.0.1:{port}/readyz", process, 90)
        assert answer is not None, (tmp_path / "serve.log").read_text()
        status, body = answer
        assert status == 503 and "no MLflow tracking store" in body
    assert list(empty.iterdir()) == []
