"""The training pipeline (`training.pipeline.run_training`) on a small synthetic snapshot: it
fits exactly what `train_model` fits on the same rows, points and truth; it tells its story
through callbacks in order; and it refuses to register what it cannot gate, touching no
registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import training.baseline
import training.train
from common.config import Config, ConfigError, build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.rows import bend_rows
from features.synthetic import generate, write_snapshot
from features.truth import truth_of_rows
from training.baseline import FITTED_LABEL, rules_baseline
from training.pipeline import (
    TrainOutcome,
    baseline_and_fit,
    bend_rows_for,
    run_training,
    training_data,
)
from training.rules import default_rules_path, load_rules, rule_inputs, score_points
from training.train import train_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline") / "snapshot"
    write_snapshot(generate(6000, seed=5), folder)
    return folder


def _config(folder: Path, tmp: Path) -> Config:
    return build_config(
        {
            "source": {"path": str(folder)},
            "training": {"num_threads": 1, "rules": str(default_rules_path())},
            "mlflow": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        }
    )


@pytest.fixture(scope="module")
def trained(
    snapshot: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainOutcome, list[str], Path]:
    tmp = tmp_path_factory.mktemp("run")
    lines: list[str] = []
    outcome = run_training(
        _config(snapshot, tmp), report_dir=tmp / "report", register=False, say=lines.append
    )
    return outcome, lines, tmp


def test_the_fit_is_train_model_on_the_same_rows_points_and_truth(
    snapshot: Path, trained: tuple[TrainOutcome, list[str], Path]
) -> None:
    outcome, _, tmp = trained
    config = _config(snapshot, tmp)
    snap = read_snapshot(config)
    rows, _ = build_training_set(snap, config)
    rules = load_rules(config.training.rules)
    points = score_points(rule_inputs(snap, rows[["lead_id", "cutoff"]], rules), rules).total
    truth = truth_of_rows(snapshot, rows, config.horizon_days)
    extra = bend_rows(snap.leads, snap.as_of, config.horizon_days, 8, config.training.seed)
    assert config.snapshot_policy.bend_ages == 8 and len(extra) > len(rows)
    direct = train_model(rows, config, points=points, truth=truth, bend_rows=extra)
    result = outcome.result
    assert result is not None
    assert outcome.baseline is not None and outcome.baseline.points is not None
    np.testing.assert_allclose(outcome.baseline.points, points)
    np.testing.assert_allclose(
        result.scored["probability"].to_numpy(), direct.scored["probability"].to_numpy()
    )
    assert result.metrics["test"]["model"] == direct.metrics["test"]["model"]
    # the truth is joined (a synthetic snapshot), and the rules are scored beside the model
    assert np.isfinite(result.scored["p_true"].to_numpy()).all()
    assert "rules" in result.metrics["test"] and "truth" in result.metrics["test"]


def test_it_says_what_happens_in_order_and_writes_the_report(
    trained: tuple[TrainOutcome, list[str], Path],
) -> None:
    outcome, lines, tmp = trained
    rows_line = next(i for i, line in enumerate(lines) if "censored (horizon still open)" in line)
    note_line = next(i for i, line in enumerate(lines) if line.startswith("note: The rules"))
    report_line = lines.index(f"report: {outcome.report}")
    assert rows_line < note_line < report_line == len(lines) - 1, lines
    assert outcome.report is not None and outcome.report.is_file()
    assert f"rules file {default_rules_path()}" in lines[note_line]
    assert outcome.refusals == [] and outcome.version is None  # register=False
    assert not (tmp / "mlflow.db").exists()


def test_a_training_set_alone_is_refused_before_any_registry(
    snapshot: Path, tmp_path: Path
) -> None:
    """A timestamped training-set file without its snapshot has no rule points to gate on."""
    config = _config(snapshot, tmp_path)
    rows, _ = build_training_set(read_snapshot(config), config)
    path = tmp_path / "training_set.parquet"
    rows.to_parquet(path)
    elsewhere = config.model_copy(
        update={"source": config.source.model_copy(update={"path": tmp_path / "nowhere"})}
    )
    data = training_data(elsewhere, training_set_path=path)
    assert data.snapshot is None and data.truth is None
    outcome = run_training(elsewhere, data=data, report_dir=tmp_path / "report")
    assert [r.exit_code for r in outcome.refusals] == [2]
    assert "no rules comparison" in outcome.refusals[0].message
    assert outcome.run_id is None and not (tmp_path / "mlflow.db").exists()


def test_points_fitted_beside_the_feature_matrix_are_those_fitted_first(
    snapshot: Path, tmp_path: Path
) -> None:
    """Without a rules file the baseline's points are fitted on a second thread while the
    model's feature matrix is built: the rules, the points and the model's metrics are those
    of fitting the points first and handing them to `train_model`."""
    config = _config(snapshot, tmp_path)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"rules": None})}
    )
    data = training_data(config)
    baseline, result = baseline_and_fit(data)
    first = rules_baseline(data.training_set, data.settings, data.snapshot)
    assert baseline.label == FITTED_LABEL and baseline.rules == first.rules
    assert baseline.points is not None and first.points is not None
    np.testing.assert_array_equal(baseline.points, first.points)
    direct = train_model(
        data.training_set,
        data.settings,
        points=first.points,
        truth=data.truth,
        bend_rows=bend_rows_for(data),
    )
    assert result.metrics["test"] == direct.metrics["test"]
    np.testing.assert_array_equal(
        result.scored["points"].to_numpy(), direct.scored["points"].to_numpy()
    )


def test_a_baseline_that_fails_beside_the_matrix_stops_the_run_before_the_fit(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline's own error (here a rules file reading a field the export lacks) reaches
    the caller as it is, and no boosting round is run."""
    fits: list[object] = []

    def failing(*args: object) -> None:
        raise ConfigError("the rules read fields the training set lacks: ['budget']")

    monkeypatch.setattr(training.baseline, "rules_baseline", failing)
    monkeypatch.setattr(training.train, "fit_booster", lambda *a, **k: fits.append(a))
    with pytest.raises(ConfigError, match="budget"):
        run_training(_config(snapshot, tmp_path), report_dir=None, register=False)
    assert fits == []
