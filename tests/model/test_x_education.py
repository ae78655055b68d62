"""The real X Education export through its mapping: honest AUC without the leaking columns,
and the leakage audit pointing at them when they are left in."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.config import build_config, load_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from training.train import cross_validated_auc, train_model

pytestmark = [pytest.mark.slow, pytest.mark.shared]
MAPPING = Path(__file__).resolve().parents[2] / "examples" / "x-education.yaml"


def test_five_fold_auc_without_the_leaking_columns() -> None:
    config = load_config(MAPPING, environ={})
    training_set, _ = build_training_set(read_snapshot(config), config)
    aucs = cross_validated_auc(training_set, config, folds=5)
    assert sum(aucs) / len(aucs) >= 0.88
    assert max(aucs) < 0.95  # no leak left in


def test_the_audit_flags_the_leaking_columns_when_left_in() -> None:
    raw = yaml.safe_load(MAPPING.read_text())
    raw["source"]["path"] = str((MAPPING.parent / raw["source"]["path"]).resolve())
    leaking = raw.pop("exclude")
    raw["custom_fields"] += [{"column": c, "kind": "fit"} for c in leaking]
    config = build_config(raw)
    training_set, _ = build_training_set(read_snapshot(config), config)
    result = train_model(training_set, config)
    assert "custom_tags" in result.flagged  # alone it predicts with AUC > 0.9
    notes = " ".join(result.notes)
    # the model's own AUC gives it away too, naming what it leans on
    assert "more than lead data usually allows" in notes and "'custom_tags'" in notes
