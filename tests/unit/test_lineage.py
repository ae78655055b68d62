"""The schema logged with a dataset input is MLflow's own, found without its per-value scan;
the digests logged with it tell every change of a value, a type or a column apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.types.utils import _infer_schema

from common.config import build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from training.lineage import SCHEMA_SAMPLE_ROWS, dataset_schema, frame_digest


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


def _mixed(rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    score = rng.random(rows)
    score[::7] = np.nan
    return pd.DataFrame(
        {
            "lead_id": pd.array([f"L{i}" for i in range(rows)], dtype="str"),
            "cutoff": pd.to_datetime(rng.integers(0, 10**6, rows), unit="s", utc=True),
            "visits": rng.integers(0, 50, rows).astype(np.int32),
            "score": score,
            "converted": rng.random(rows) < 0.2,
            "source": pd.Categorical(rng.choice(["web", "event", "partner"], rows)),
        }
    )


def test_equal_frames_share_a_digest_and_any_change_moves_it() -> None:
    frame = _mixed()
    digest = frame_digest(frame)
    assert frame_digest(frame.copy()) == digest
    assert frame_digest(frame, workers=1) == digest  # serially: the same digest
    assert frame_digest(frame.iloc[::-1].iloc[::-1]) == digest  # a view, not a copy
    changed = {}
    for column, value in [
        ("lead_id", "L-other"),
        ("cutoff", pd.Timestamp("2020-01-01", tz="UTC")),
        ("visits", 51),
        ("score", 0.123),
        ("converted", True),
        ("source", "partner"),
    ]:
        other = frame.copy()
        row = 7 if column != "converted" else int(np.flatnonzero(~frame["converted"])[0])
        if column == "source":
            row = int(np.flatnonzero(frame["source"] != "partner")[0])
        other.loc[row, column] = value
        changed[column] = frame_digest(other)
    missing = frame.copy()
    missing.loc[3, "score"] = np.nan  # a value made missing
    changed["score missing"] = frame_digest(missing)
    changed["renamed"] = frame_digest(frame.rename(columns={"visits": "visit_count"}))
    changed["reordered"] = frame_digest(frame[list(reversed(frame.columns))])
    changed["retyped"] = frame_digest(frame.astype({"visits": np.int64}))
    changed["a row less"] = frame_digest(frame.iloc[:-1])
    assert digest not in changed.values(), changed
    assert len(set(changed.values())) == len(changed), changed
