"""The Spark engine scores the same rows as the pandas engine, with the same values.

A real local Spark (local[2], the machine's Java, one session for the file) runs
`serving.spark_engine` on the batch tests' snapshot and registered model; the pandas engine
(`serving.batch.score_rows`) is the reference. CI installs the spark extra (`make test`), so
these run there; they skip only where pyspark is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app as cli
from common.config import Config, build_config
from features.contract import ContractError
from features.reader import Snapshot
from serving.batch import COLUMNS, open_mql_rows, score_rows
from serving.batch_io import read_snapshot_for
from serving.model_store import LoadedModel
from tests.batch.conftest import AS_OF
from tests.conftest import REQUIRE_ALL

pytestmark = [pytest.mark.spark, pytest.mark.integration]
if importlib.util.find_spec("pyspark") is None and os.environ.get(REQUIRE_ALL) != "1":
    pytest.skip("spark: pyspark is not installed: pip install '.[spark]'", allow_module_level=True)

from serving import spark_engine  # noqa: E402  (after the skip: it imports pyspark)

SCORED_AT = pd.Timestamp("2026-04-16T08:00:00Z")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_engine.spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def pandas_scores(snapshot: Snapshot, model: LoadedModel) -> pd.DataFrame:
    rows = open_mql_rows(snapshot.leads, AS_OF, model.config.horizon_days)
    assert len(rows) > 100
    scores = score_rows(snapshot, rows, model, reasons=3, scored_at=SCORED_AT)
    return scores.reset_index(drop=True)


def _settings(folder: str | Path) -> Config:
    return build_config({"source": {"path": str(folder)}})


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert tuple(got.columns) == COLUMNS
    assert got["lead_id"].tolist() == expected["lead_id"].tolist()
    np.testing.assert_allclose(got["probability"], expected["probability"], rtol=0, atol=1e-9)
    for name in COLUMNS:
        if name != "probability":
            assert got[name].tolist() == expected[name].tolist(), name


def test_spark_gives_the_pandas_engines_rows_and_values(
    spark: Any, registry: dict[str, str], model: LoadedModel, pandas_scores: pd.DataFrame
) -> None:
    """Same open MQLs in the same order; probabilities within 1e-9; tiers, points, thresholds,
    reasons (JSON text, sentences and contributions), account, times and model identical."""
    result = spark_engine.score_on_spark(
        spark,
        _settings(registry["snapshot"]),
        model,
        AS_OF,
        reasons=3,
        chunk_leads=model.config.features.chunk_leads,
        scored_at=SCORED_AT,
        buckets=7,  # several groups, some holding many accounts
    )
    _assert_same(result.scores, pandas_scores)
    assert result.buckets == 7
    assert result.leads == len(pd.read_parquet(Path(registry["snapshot"]) / "leads.parquet"))
    assert result.events_kept > 0 and result.events_unknown_lead == 0


def test_predict_cli_with_engine_spark_writes_the_pandas_engines_file(
    spark: Any, registry: dict[str, str], tmp_path: Path, pandas_scores: pd.DataFrame
) -> None:
    """`leadscore predict --engine spark` and the default engine write the same scores file
    (all but scored_at, the time of each run)."""
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
    }
    files, notes = {}, {}
    for engine in ("pandas", "spark"):
        out = tmp_path / engine / "scores.parquet"
        args = ["predict", "-s", registry["snapshot"], "--as-of", AS_OF.isoformat(), "--out"]
        result = CliRunner().invoke(cli, [*args, str(out), "--engine", engine], env=env)
        assert result.exit_code == 0, result.output
        assert f"scored {len(pandas_scores):,} open MQLs" in result.output
        files[engine] = pd.read_parquet(out)
        # the note on open MQLs older than the model's cutoffs, counted per bucket on Spark
        flat = " ".join(result.output.split())
        # (none with the default age model, which covers every age up to the horizon)
        notes[engine] = (
            flat[flat.index("note: ") :].split(" open MQLs")[0] if "note: " in flat else None
        )
    assert notes["spark"] == notes["pandas"]
    pandas_file, spark_file = files["pandas"], files["spark"]
    assert tuple(spark_file.columns) == (*COLUMNS, "run_id")
    assert spark_file["run_id"].nunique() == 1 and pandas_file["run_id"].nunique() == 1
    _assert_same(
        spark_file.drop(columns=["scored_at", "run_id"]).assign(scored_at=SCORED_AT),
        pandas_file.drop(columns=["scored_at", "run_id"]).assign(scored_at=SCORED_AT),
    )
    assert spark_file["scored_at"].nunique() == 1


def test_nanosecond_timestamps_and_contract_errors_from_the_workers(
    spark: Any, registry: dict[str, str], model: LoadedModel, tmp_path: Path
) -> None:
    """Parquet with nanosecond timestamps (as pandas writes them; Spark cannot read them as
    timestamps) scores as in the pandas engine. A lead id given twice (in different accounts,
    so different groups) and a timestamp that is not ISO 8601 fail with the reader's messages,
    not a Java stack trace."""
    folder = tmp_path / "snapshot"
    shutil.copytree(registry["snapshot"], folder)
    leads = pd.read_parquet(folder / "leads.parquet").head(600)  # small: quick runs
    events = pd.read_parquet(folder / "events.parquet")
    events = events[events["lead_id"].isin(leads["lead_id"])]
    nanos = pd.Timedelta(nanoseconds=123_456_789)
    times = {c: leads[c].dt.as_unit("ns") + nanos for c in ("created_at", "mql_at")}
    leads.assign(**times).to_parquet(folder / "leads.parquet", index=False)
    shifted = events.assign(occurred_at=events["occurred_at"].dt.as_unit("ns") + nanos)
    shifted.to_parquet(folder / "events.parquet", index=False)
    snapshot = read_snapshot_for(model.config, _settings(folder))
    rows = open_mql_rows(snapshot.leads, AS_OF, model.config.horizon_days)
    assert len(rows) > 10
    expected = score_rows(snapshot, rows, model, scored_at=SCORED_AT).reset_index(drop=True)
    got = spark_engine.score_on_spark(
        spark, _settings(folder), model, AS_OF, reasons=3, chunk_leads=100, scored_at=SCORED_AT
    )
    _assert_same(got.scores, expected)

    events.to_parquet(folder / "events.parquet", index=False)
    twin = leads[leads["account_id"].notna()].iloc[[0]].assign(account_id="A-other")
    pd.concat([leads, twin]).to_parquet(folder / "leads.parquet", index=False)
    with pytest.raises(ContractError, match=r"lead_id.*1 row|duplicate ids") as caught:
        spark_engine.score_on_spark(
            spark, _settings(folder), model, AS_OF, reasons=3, chunk_leads=10_000
        )
    assert str(twin["lead_id"].iloc[0]) in str(caught.value)

    bad = leads.astype({"mql_at": "str"})
    bad.loc[5, "mql_at"] = "last tuesday"
    bad.to_parquet(folder / "leads.parquet", index=False)
    with pytest.raises(ContractError) as caught:
        spark_engine.score_on_spark(
            spark, _settings(folder), model, AS_OF, reasons=3, chunk_leads=10_000
        )
    message = str(caught.value)
    assert "column 'mql_at'" in message and "not ISO 8601" in message
    assert "'last tuesday'" in message and "Traceback" not in message


def test_csv_snapshot_events_encoded_on_the_driver(
    spark: Any, registry: dict[str, str], model: LoadedModel, tmp_path: Path
) -> None:
    """A CSV snapshot is read by the project's reader on the driver, its events encoded there
    (not by the Parquet row-group tasks): the same scores and counts as the pandas engine,
    events of an unknown lead and of an unknown type included."""
    folder = tmp_path / "csv"
    folder.mkdir()
    leads = pd.read_parquet(Path(registry["snapshot"]) / "leads.parquet").head(600)
    events = pd.read_parquet(Path(registry["snapshot"]) / "events.parquet")
    events = events[events["lead_id"].isin(leads["lead_id"])]
    stray = events.iloc[[0, 1]].assign(lead_id=["nobody", events["lead_id"].iloc[1]])
    stray = stray.astype({"event_type": "str"}).assign(event_type=["Chat Started"] * 2)
    leads.to_csv(folder / "leads.csv", index=False)
    pd.concat([events, stray]).to_csv(folder / "events.csv", index=False)
    settings = build_config(
        {"source": {"path": str(folder), "leads": "leads.csv", "events": "events.csv"}}
    )
    snapshot = read_snapshot_for(model.config, settings)
    rows = open_mql_rows(snapshot.leads, AS_OF, model.config.horizon_days)
    assert len(rows) > 10
    expected = score_rows(snapshot, rows, model, scored_at=SCORED_AT).reset_index(drop=True)
    got = spark_engine.score_on_spark(
        spark, settings, model, AS_OF, reasons=3, chunk_leads=100, scored_at=SCORED_AT, buckets=3
    )
    _assert_same(got.scores, expected)
    report = snapshot.report
    assert (got.events_read, got.events_kept) == (report.events_read, report.events_kept)
    assert got.events_unknown_lead == report.events_unknown_lead == 1
    assert got.unknown_event_types == report.unknown_event_types
    assert got.unknown_event_types.get("Chat Started") == 2


def test_shuffle_keys_send_bucket_b_to_partition_b(spark: Any) -> None:
    """The driver's Murmur3 is Spark's `hash` of an int, so the shuffle keys it finds (no
    Spark job) fill the partitions of `repartition(n, key)` one bucket each."""
    from pyspark.sql import functions as F  # noqa: N812

    ints = spark.range(-300, 300).select(F.col("id").cast("int").alias("k"))
    hashed = ints.select("k", F.hash("k").alias("h")).collect()
    assert [spark_engine.spark_hash_int(r["k"]) for r in hashed] == [r["h"] for r in hashed]
    for n in (2, 4, 7, 16):
        keys = spark_engine.shuffle_keys(n)
        frame = spark.createDataFrame([(k, b) for b, k in enumerate(keys)], "k int, b int")
        placed = frame.repartition(n, "k").select("b", F.spark_partition_id().alias("p"))
        assert sorted((r["b"], r["p"]) for r in placed.collect()) == [(b, b) for b in range(n)]


def test_a_declared_as_of_before_every_lead_fails_as_on_the_pandas_engine(
    spark: Any, registry: dict[str, str], model: LoadedModel, tmp_path: Path
) -> None:
    """A snapshot.json as-of before the first created_at of the whole export (no bucket sees
    it alone) is refused with the reader's message, naming the file, as the pandas engine's
    `predict` refuses it."""
    import json

    folder = tmp_path / "early"
    shutil.copytree(registry["snapshot"], folder)
    declared = folder / "snapshot.json"
    meta = json.loads(declared.read_text()) if declared.is_file() else {}
    declared.write_text(json.dumps(meta | {"as_of": "2000-01-01T00:00:00Z"}))
    with pytest.raises(ContractError) as pandas_error:
        read_snapshot_for(model.config, _settings(folder))
    with pytest.raises(ContractError) as spark_error:
        spark_engine.score_on_spark(
            spark, _settings(folder), model, AS_OF, reasons=3, chunk_leads=10_000
        )
    said = str(spark_error.value)
    assert said == str(pandas_error.value)
    assert f"{declared}: as_of 2000-01-01T00:00:00+00:00 is before every lead" in said
