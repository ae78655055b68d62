"""The training guards through `leadscore train` and `leadscore rules suggest` with a real
MLflow SQLite store: a flagged leak is refused (exit 4) until acknowledged, a challenger with
another label definition is registered but not promoted, too little data is refused (exit 5)
with no NaN tier, flat exports get a fitted rules baseline, and a training set without the
snapshot its rules need refuses to register."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from features.synthetic import generate, write_snapshot
from tests.fixtures import flat_export, plant_post_outcome_column
from training.guards import EXIT_LEAK, EXIT_TOO_LITTLE_DATA

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {
        "LEADSCORE__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(root / "artifacts"),
        **extra,
    }


def _aliases(root: Path) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    models = client.search_registered_models()
    return {k: str(v) for k, v in models[0].aliases.items()} if models else {}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guards_cli")
    write_snapshot(generate(8_000, seed=3), root / "snapshot")
    plant_post_outcome_column(root / "snapshot")
    config = root / "planted.yaml"
    config.write_text(
        f"source: {{path: {root / 'snapshot'}}}\n"
        "custom_fields: [{column: meeting_held, kind: fit, type: boolean}]\n"
    )
    return config


def test_leak_refused_then_acknowledged_then_label_definition_gate(
    planted: Path, tmp_path: Path
) -> None:
    train = ["train", "-c", str(planted), "-r", str(tmp_path / "report")]
    refused = runner.invoke(app, train, env=_env(tmp_path))
    assert refused.exit_code == EXIT_LEAK, refused.output
    assert "refused: the leak guard flags 'meeting_held'" in refused.output
    assert "depends on it" in refused.output and "acknowledge_leaks" in refused.output
    assert _aliases(tmp_path) == {}

    # rows at mql_at only: the planted column records the outcome of the MQL-time label; with
    # rows at sampled ages too (the default) this 8k-lead model misses the gate's calibration
    # bound (ECE 0.056), which is the gate working, not what this test is about
    acknowledged = _env(
        tmp_path,
        LEADSCORE__TRAINING__ACKNOWLEDGE_LEAKS="[meeting_held]",
        LEADSCORE__SNAPSHOT_POLICY__SAMPLED_AGES="0",
    )
    first = runner.invoke(app, train, env=acknowledged)
    assert first.exit_code == 0, first.output
    assert "acknowledged in the config" in first.output
    assert "version 1 is champion" in first.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["rules_baseline"].startswith("points fitted on the training slice")
    assert "rules" in metrics["test"] and "base_rate" in metrics
    assert metrics["label_definition"] == {
        "horizon_days": 90,
        "weekly_weeks": 0,
        "sampled_ages": 0,
        "flat": False,
    }
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Rows and conversion per month" in page and "Base rate" in page

    # a shorter horizon, trained on the last 600 days of cutoffs only
    other_horizon = {
        **acknowledged,
        "LEADSCORE__HORIZON_DAYS": "60",
        "LEADSCORE__TRAINING__WINDOW_DAYS": "600",
    }
    second = runner.invoke(app, train, env=other_horizon)
    assert second.exit_code == 0, second.output
    assert "Training window the last 600 days" in second.output
    assert "older rows left out" in second.output and " 0 older rows" not in second.output
    assert "label definition differs from the champion's (version 1)" in second.output
    assert "horizon_days 90 (champion) vs 60 (challenger)" in second.output
    assert _aliases(tmp_path) == {"champion": "1", "challenger": "2"}
    assert runner.invoke(app, ["promote", "2"], env=acknowledged).exit_code == 0
    assert _aliases(tmp_path)["champion"] == "2"


def test_a_timestamped_training_set_without_its_snapshot_is_not_registered(
    planted: Path, tmp_path: Path
) -> None:
    features = tmp_path / "ts.parquet"
    built = runner.invoke(app, ["features", "-c", str(planted), "-o", str(features)])
    assert built.exit_code == 0, built.output
    elsewhere = tmp_path / "no-snapshot.yaml"
    elsewhere.write_text(
        f"source: {{path: {tmp_path / 'missing'}}}\n"
        "custom_fields: [{column: meeting_held, kind: fit, type: boolean}]\n"
        "training: {acknowledge_leaks: [meeting_held]}\n"
    )
    result = runner.invoke(
        app,
        ["train", "-t", str(features), "-c", str(elsewhere), "-r", str(tmp_path / "r")],
        env=_env(tmp_path),
    )
    assert result.exit_code == 2, result.output
    assert (
        "No rules comparison" in result.output and "refused: no rules comparison" in result.output
    )
    assert _aliases(tmp_path) == {}


def test_too_little_data_is_refused_and_tiers_are_never_nan(tmp_path: Path) -> None:
    config = flat_export(tmp_path / "small", rows=400)
    result = runner.invoke(
        app, ["train", "-c", str(config), "-r", str(tmp_path / "r")], env=_env(tmp_path)
    )
    assert result.exit_code == EXIT_TOO_LITTLE_DATA, result.output
    assert "too little data to register a model: 400 labelled rows of the 1,000 needed" in (
        result.output
    )
    assert "nan" not in result.output.casefold()
    assert _aliases(tmp_path) == {}
    tiny = flat_export(tmp_path / "tiny", rows=83)
    result = runner.invoke(
        app, ["train", "-c", str(tiny), "-r", str(tmp_path / "r2")], env=_env(tmp_path)
    )
    assert result.exit_code == EXIT_TOO_LITTLE_DATA, result.output
    assert "83 labelled rows" in result.output and "more" in result.output


def test_a_flat_export_gets_a_rules_baseline_that_training_accepts(tmp_path: Path) -> None:
    config = flat_export(tmp_path / "export", rows=2500)
    rules = tmp_path / "rules.yaml"
    suggested = runner.invoke(app, ["rules", "suggest", "-c", str(config), "-o", str(rules)])
    assert suggested.exit_code == 0, suggested.output
    assert "AUC on the held-out 30% of rows: suggested" in suggested.output
    written = yaml.safe_load(rules.read_text())
    assert set(written["fit"]["custom"]) == {"Origin", "Visits", "Do Not Email"}
    assert "bands" in written["fit"]["custom"]["Visits"]

    with_rules = tmp_path / "with-rules.yaml"
    with_rules.write_text(config.read_text() + f"training: {{rules: {rules}}}\n")
    features = tmp_path / "ts.parquet"
    assert runner.invoke(app, ["features", "-c", str(config), "-o", str(features)]).exit_code == 0
    trained = runner.invoke(
        app,
        ["train", "-t", str(features), "-c", str(with_rules), "-r", str(tmp_path / "r")],
        env=_env(tmp_path),
    )
    assert trained.exit_code == 0, trained.output
    assert f"The rules baseline is rules file {rules}" in trained.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["test"]["rules"]["roc_auc"] > 0.6
    assert _aliases(tmp_path)["challenger"] == "1"


def test_rules_suggest_on_a_timestamped_export(planted: Path, tmp_path: Path) -> None:
    fitted = tmp_path / "fitted.yaml"
    result = runner.invoke(app, ["rules", "suggest", "-c", str(planted), "-o", str(fitted)])
    assert result.exit_code == 0, result.output
    assert "the shipped rules" in result.output and "suggested" in result.output
    written = yaml.safe_load(fitted.read_text())
    assert {"seniority", "lead_source", "custom"} <= set(written["fit"])
    assert "demo_request" in written["engagement"]  # every event type the export has
    shipped = Path(__file__).parents[2] / "training" / "default_rules.yaml"
    reweighted = tmp_path / "reweighted.yaml"
    result = runner.invoke(
        app,
        ["rules", "suggest", "-c", str(planted), "--rules", str(shipped), "-o", str(reweighted)],
    )
    assert result.exit_code == 0, result.output
    assert "current_points" in result.output and str(shipped) in result.output
    assert yaml.safe_load(reweighted.read_text())["name"] == "default_suggested"
