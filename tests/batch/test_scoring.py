"""Batch scores agree with the API lead by lead, and do not depend on how rows are chunked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.reader import Snapshot, snapshot_from_frames
from serving.accounts import build_book
from serving.batch import COLUMNS, open_mql_rows, score_rows
from serving.model_store import LoadedModel
from serving.schemas import ScoreRequest
from serving.scoring import score
from tests.api.conftest import request_for
from tests.batch.conftest import AS_OF


@pytest.fixture(scope="module")
def scores(snapshot: Snapshot, model: LoadedModel) -> pd.DataFrame:
    rows = open_mql_rows(snapshot.leads, AS_OF, model.config.horizon_days)
    assert len(rows) > 100
    return score_rows(snapshot, rows, model, reasons=3)


def test_columns_and_values(scores: pd.DataFrame, model: LoadedModel) -> None:
    assert tuple(scores.columns) == COLUMNS
    assert scores["lead_id"].is_unique
    assert ((scores["probability"] > 0) & (scores["probability"] < 1)).all()
    assert set(scores["tier"]) <= {"A", "B", "C", "D"} and scores["tier"].nunique() > 1
    assert (scores["as_of"] == AS_OF).all()
    assert (scores["model_version"] == model.version).all()
    assert scores["scored_at"].nunique() == 1
    for text in scores["reasons"]:
        reasons = json.loads(text)
        assert 1 <= len(reasons) <= 6  # the 3 strongest that raise, then the 3 that lower
        raising = [r["contribution"] for r in reasons if r["contribution"] > 0]
        lowering = [r["contribution"] for r in reasons if r["contribution"] < 0]
        assert [r["contribution"] for r in reasons] == raising + lowering
        assert raising == sorted(raising, reverse=True) and len(raising) <= 3
        assert lowering == sorted(lowering) and len(lowering) <= 3
        assert len({r["sentence"] for r in reasons}) == len(reasons)


def test_the_api_scores_each_lead_the_same(
    scores: pd.DataFrame, model: LoadedModel, registry: dict[str, str]
) -> None:
    """The same lead posted to the scoring function at the same as-of time: the same
    probability (1e-9), tier, points, thresholds and reasons. The API sees no other account
    leads, so both sides get the leads without their account (batch: a snapshot of just these
    leads, built from frames as a Spark job builds its groups)."""
    folder = Path(registry["snapshot"])
    leads = pd.read_parquet(folder / "leads.parquet")
    events = pd.read_parquet(folder / "events.parquet")
    ids = scores["lead_id"].head(25).tolist()
    alone = leads[leads["lead_id"].isin(ids)].assign(account_id=None)
    own = events[events["lead_id"].isin(ids)]
    snap = snapshot_from_frames(alone, own, model.config)
    batch = score_rows(snap, open_mql_rows(snap.leads, AS_OF, model.config.horizon_days), model)
    assert sorted(batch["lead_id"]) == sorted(ids)
    for row in batch.itertuples():
        request = ScoreRequest.model_validate(request_for(alone, own, str(row.lead_id), AS_OF))
        api = score(model, request)
        assert api.probability == pytest.approx(row.probability, abs=1e-9)
        assert api.tier == row.tier
        assert api.points.total == row.points
        assert api.points.thresholds_passed == json.loads(str(row.thresholds_passed))
        # one selection rule: the batch's reasons are the API's, in the same order and words
        shown = api.reasons_positive + api.reasons_negative
        batch_reasons = json.loads(str(row.reasons))
        assert [r["feature"] for r in batch_reasons] == [r.feature for r in shown]
        for reason, same in zip(batch_reasons, shown, strict=True):
            assert same.contribution == pytest.approx(reason["contribution"], abs=1e-9)
            assert same.sentence == reason["sentence"]


def test_with_the_account_history_the_api_scores_the_whole_snapshot_the_same(
    scores: pd.DataFrame, snapshot: Snapshot, model: LoadedModel, registry: dict[str, str]
) -> None:
    """With the snapshot as its account history (`serve.accounts`), the API gives a lead of an
    account the batch job's probability, tier and reasons, account features included."""
    folder = Path(registry["snapshot"])
    leads = pd.read_parquet(folder / "leads.parquet")
    events = pd.read_parquet(folder / "events.parquet")
    with_history = replace(model, accounts=build_book(snapshot, str(folder)))
    batch = scores.set_index("lead_id")
    has_account = set(leads.loc[leads["account_id"].notna(), "lead_id"])
    ids = [i for i in batch.index if i in has_account][:25]
    assert len(ids) == 25
    reasons_by_account = 0
    for lead_id in ids:
        row = batch.loc[lead_id]
        request = ScoreRequest.model_validate(request_for(leads, events, lead_id, AS_OF))
        api = score(with_history, request)
        assert api.account is not None and api.account.known
        assert api.probability == pytest.approx(row["probability"], abs=1e-9)
        assert api.tier == row["tier"]
        shown = api.reasons_positive + api.reasons_negative
        batch_reasons = json.loads(str(row["reasons"]))
        assert [r["feature"] for r in batch_reasons] == [r.feature for r in shown]
        for reason, same in zip(batch_reasons, shown, strict=True):
            assert same.contribution == pytest.approx(reason["contribution"], abs=1e-9)
            assert same.sentence == reason["sentence"]
            reasons_by_account += reason["feature"].startswith("account_")
    assert reasons_by_account > 0  # account features are among the reasons compared


def test_chunking_changes_nothing(
    scores: pd.DataFrame, snapshot: Snapshot, model: LoadedModel
) -> None:
    """Small chunks of whole accounts (as a Spark job's groups would be) give the same scores."""
    rows = open_mql_rows(snapshot.leads, AS_OF, model.config.horizon_days)
    small = score_rows(
        snapshot, rows, model, reasons=3, chunk_leads=500, scored_at=scores["scored_at"].iloc[0]
    )
    pd.testing.assert_frame_equal(small, scores)


def test_any_rows_in_their_order(snapshot: Snapshot, model: LoadedModel) -> None:
    """Rows in any order, several cutoffs of one lead: the result follows the rows."""
    ids = snapshot.leads.loc[snapshot.leads["mql_at"].notna(), "lead_id"].to_numpy()[[40, 3, 17]]
    rows = pd.DataFrame(
        {
            "lead_id": [ids[0], ids[1], ids[2], ids[0]],
            "cutoff": pd.to_datetime(
                ["2026-05-01", "2026-05-01", "2026-05-01", "2026-06-01"], utc=True
            ).as_unit("ms"),
        },
        index=[10, 11, 12, 13],
    )
    got = score_rows(snapshot, rows, model)
    assert got.index.tolist() == [10, 11, 12, 13]
    assert got["lead_id"].tolist() == rows["lead_id"].tolist()
    alone = score_rows(snapshot, rows.iloc[[3]], model, scored_at=got["scored_at"].iloc[0])
    assert np.isclose(alone["probability"].iloc[0], got["probability"].iloc[3], atol=0, rtol=0)


def test_points_are_the_rules_points(
    scores: pd.DataFrame, snapshot: Snapshot, model: LoadedModel
) -> None:
    """Every row's points and thresholds are those `training.rules` gives on its inputs."""
    from training.rules import rule_inputs, score_points

    rows = open_mql_rows(snapshot.leads, AS_OF, model.config.horizon_days)
    points = score_points(rule_inputs(snapshot, rows, model.rules), model.rules)
    assert (scores["points"].to_numpy() == points.total).all()
    passed = points.thresholds.to_numpy(dtype=bool)
    names = list(points.thresholds.columns)
    expected = [json.dumps([n for n, p in zip(names, row, strict=True) if p]) for row in passed]
    assert scores["thresholds_passed"].tolist() == expected
