"""`leadscore train` scores the current champion on the new test slice (the gate): a champion
whose code was tampered with is refused by name there too, and its code never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from features.synthetic import generate, write_snapshot
from tests.fixtures import copy_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_never_runs_a_tampered_champions_code(
    trained_store: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(trained_store, tmp_path / "registry")
    newer = tmp_path / "newer"  # a small new snapshot: the gate scores the champion on it
    write_snapshot(generate(3_000, seed=23), newer)
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": registry["LEADSCORE__MLFLOW__ARTIFACT_LOCATION"],
        "LEADSCORE__MLFLOW__GATE__MAX_ECE": "1",
        "LEADSCORE__MLFLOW__GATE__BEAT_RULES": "false",
        "LEADSCORE__TRAINING__SHAP_SAMPLE": "100",
    }
    marker = tmp_path / "champion-code-ran"
    (code,) = Path(registry["root"]).glob("artifacts/models/*/artifacts/mlflow_model.py")
    with code.open("a", encoding="utf-8") as handle:
        handle.write(f"\nopen({str(marker)!r}, 'w').close()\n")
    champion = CliRunner().invoke(app, ["promote", "1"], env=env)
    assert champion.exit_code == 0, champion.output
    result = CliRunner().invoke(
        app, ["train", "-s", str(newer), "-r", str(tmp_path / "report2")], env=env
    )
    said = " ".join(result.output.split())
    assert "file 'mlflow_model.py'" in said and "tampered" in said, said
    assert not marker.exists()
