"""Test helpers shared by several test folders' conftests (plain functions, not fixtures)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from features.synthetic import generate, write_snapshot
from serving.cli import app as cli


def trained_registry(root: Path, *, leads: int, seed: int) -> tuple[dict[str, str], str]:
    """Generate a synthetic snapshot of `leads` leads in `root` and `leadscore train` it into a
    temporary MLflow sqlite store there (the run must succeed).

    Returns ({snapshot, tracking, root, and the LEADSCORE__MLFLOW__ variables naming the
    store}, the command's output).
    """
    snapshot = root / "snapshot"
    write_snapshot(generate(leads, seed=seed), snapshot)
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": tracking,
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(root / "artifacts"),
    }
    result = CliRunner().invoke(
        cli, ["train", "-s", str(snapshot), "-r", str(root / "report")], env=env
    )
    assert result.exit_code == 0, result.output
    return {
        "snapshot": str(snapshot),
        "tracking": tracking,
        "root": str(root),
        **env,
    }, result.output
