"""Percentile ranks and the model-against-rules disagreement the explain notebook sorts by."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.truth import truth_of_rows
from training.evaluate import percentile_rank, rank_disagreement


def test_percentile_rank_runs_from_zero_to_one_and_ties_share_a_place() -> None:
    ranks = percentile_rank([10.0, 30.0, 20.0, 20.0, 40.0])
    assert ranks.tolist() == [0.0, 0.75, 0.375, 0.375, 1.0]


def test_disagreement_is_the_model_rank_minus_the_rules_rank() -> None:
    probability = np.array([0.9, 0.1, 0.5, 0.3])
    points = np.array([0.0, 80.0, 40.0, 40.0])
    disagreement = rank_disagreement(probability, points)
    # lead 0: top of the model's list, bottom of the rules'; lead 1: the opposite
    assert disagreement[0] == pytest.approx(1.0)
    assert disagreement[1] == pytest.approx(-1.0)
    assert disagreement[2] == pytest.approx(2 / 3 - 0.5)
    assert disagreement[3] == pytest.approx(1 / 3 - 0.5)


def test_agreeing_scores_do_not_disagree_whatever_their_scale() -> None:
    probability = np.linspace(0.01, 0.9, 50)
    assert np.allclose(rank_disagreement(probability, 100 * probability + 7), 0.0)


def test_disagreement_refuses_missing_points_and_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="rules has 1 NaN"):
        rank_disagreement([0.1, 0.2], [1.0, np.nan])
    with pytest.raises(ValueError, match="rules has 3 values"):
        rank_disagreement([0.1, 0.2], [1.0, 2.0, 3.0])


def test_truth_joins_on_lead_and_cutoff_and_is_none_without_a_truth_file(tmp_path: Path) -> None:
    at = pd.Timestamp("2026-01-05 10:00", tz="UTC")
    pd.DataFrame({"lead_id": ["L1", "L2"], "cutoff": [at, at], "p_true": [0.2, 0.7]}).to_parquet(
        tmp_path / "truth.parquet"
    )
    rows = pd.DataFrame({"lead_id": ["L2", "L1", "L3"], "cutoff": [at, at, at]})
    truth = truth_of_rows(tmp_path, rows)
    assert truth is not None
    assert truth[:2].tolist() == [0.7, 0.2]
    assert np.isnan(truth[2])  # not in the truth file
    assert truth_of_rows(tmp_path / "elsewhere", rows) is None
    assert truth_of_rows(None, rows) is None
