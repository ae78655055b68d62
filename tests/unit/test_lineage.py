"""The schema logged with a dataset input is MLflow's own, found without its per-value scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.types.utils import _infer_schema

from common.config import build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from training.lineage import SCHEMA_SAMPLE_ROWS, dataset_schema


def test_a_training_sets_schema_is_the_one_mlflow_infers(tmp_path: Path) -> None:
    folder = tmp_path / "snapshot"
    write_snapshot(generate(3000, seed=3), folder)
    config = build_config({"source": {"path": str(folder)}})
    snapshot = read_snapshot(config)
    rows, _ = build_training_set(snapshot, config)
    for frame in (rows, snapshot.leads):
        assert dataset_schema(frame).to_json() == _infer_schema(frame).to_json()


def test_values_past_the_sample_still_decide_required_and_type() -> None:
    n = SCHEMA_SAMPLE_ROWS * 3
    late_missing = np.ones(n)
    late_missing[-1] = np.nan
    frame = pd.DataFrame(
        {
            "late_missing": late_missing,
            "late_text": pd.array([pd.NA] * (n - 5) + ["x"] * 5, dtype="str"),
            "never_missing": np.arange(n),
        }
    )
    ours = dataset_schema(frame)
    assert ours.to_json() == _infer_schema(frame).to_json()
    required = {spec.name: spec.required for spec in ours.inputs}
    assert required == {"late_missing": False, "late_text": False, "never_missing": True}
