"""`leadscore predict` writes the same scores file, byte for byte, with 1, 2 or 3 workers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.reader import Snapshot
from serving.batch_io import predict_job
from serving.model_store import LoadedModel
from tests.batch.conftest import AS_OF


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_scores_file_is_the_same_with_any_workers(
    snapshot: Snapshot, model: LoadedModel, tmp_path: Path, suffix: str
) -> None:
    scored_at = pd.Timestamp("2026-04-16T03:00:00Z")
    written = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"scores-{workers}{suffix}"
        summary = predict_job(
            snapshot,
            model,
            AS_OF,
            out,
            horizon_days=model.config.horizon_days,
            reasons=3,
            chunk_leads=300,  # many chunks of whole accounts for the workers to share
            workers=workers,
            scored_at=scored_at,
        )
        assert summary.rows > 100
        written[workers] = _without_run_id(out, summary.run_id)
    assert written[2] == written[1]
    assert written[3] == written[1]


def _without_run_id(out: Path, run_id: str) -> object:
    """The file's content but its run id, which every run draws anew (serving.publish): the
    CSV's bytes with the id blanked, the Parquet table's columns but `run_id`, compared exactly."""
    if out.suffix == ".csv":
        data = out.read_bytes()
        assert data.count(run_id.encode()) > 100
        return data.replace(run_id.encode(), b"RUN")
    table = pq.read_table(out)
    assert set(table.column("run_id").to_pylist()) == {run_id}
    return table.drop(["run_id"])
