"""The leak guard on real-shaped data: a column filled in after the outcome, planted in a
synthetic export, is caught by the dominance test (it is not strong enough alone for the
0.9 bound), and the same export without it flags nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import Config, build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from tests.fixtures import plant_post_outcome_column
from training.audit import leak_flags
from training.guards import EXIT_LEAK
from training.train import TrainResult, train_model

pytestmark = pytest.mark.slow
PLANTED = {"column": "meeting_held", "kind": "fit", "type": "boolean"}


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("guards") / "snapshot"
    write_snapshot(generate(8_000, seed=3), folder)
    plant_post_outcome_column(folder)
    return folder


def _train(snapshot_dir: Path, custom: list[dict[str, str]]) -> tuple[TrainResult, Config]:
    config = build_config({"source": {"path": str(snapshot_dir)}, "custom_fields": custom})
    training_set, _ = build_training_set(read_snapshot(config), config)
    return train_model(training_set, config), config


def test_a_post_outcome_column_is_flagged_as_dominant(snapshot_dir: Path) -> None:
    result, config = _train(snapshot_dir, [PLANTED])
    row = result.audit.set_index("feature").loc["custom_meeting_held"]
    assert config.training.leak_alone_auc <= row["auc"] <= config.training.audit_auc
    assert row["share_lost"] >= config.training.leak_share
    assert [f.column for f in result.leaks] == ["meeting_held"]
    refusals = result.refusals()
    assert [r.exit_code for r in refusals] == [EXIT_LEAK]
    assert "'meeting_held'" in refusals[0].message and "depends on it" in refusals[0].message
    assert not result.registrable
    # acknowledged by name, the same audit no longer blocks
    acknowledged = build_config({"training": {"acknowledge_leaks": ["meeting_held"]}})
    flags = leak_flags(result.audit, acknowledged.training, config.custom_fields)
    assert [f.acknowledged for f in flags] == [True]


def test_the_honest_synthetic_features_are_not_flagged(snapshot_dir: Path) -> None:
    result, _ = _train(snapshot_dir, [])
    assert result.leaks == [] and result.registrable
    assert result.audit["auc"].max() < 0.75  # nothing even reaches the probe
    # rows at sampled ages (the default age model): days_since_mql varies, nothing is constant
    assert result.constant == []
    assert "days_since_mql" in set(result.audit["feature"])
    assert result.monthly["rows"].sum() == len(result.scored)
