"""Training sets on Spark equal the pandas engine's, to the byte.

A real local Spark (local[2], the machine's Java, one session for the file) runs
`leadscore features --engine spark` (`serving.spark_features`) on a small generated snapshot
with custom fields whose types are inferred, weekly and sampled ages; the pandas engine
(`leadscore features`, `features.pipeline.build_training_set`) is the reference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from cli import app as cli
from common.config import Config, build_config
from features.contract import ContractError
from features.custom_types import with_custom_fields
from features.pipeline import build_training_set
from features.reader import read_snapshot
from tests.conftest import REQUIRE_ALL

pytestmark = [pytest.mark.spark, pytest.mark.integration]
if importlib.util.find_spec("pyspark") is None and os.environ.get(REQUIRE_ALL) != "1":
    pytest.skip("spark: pyspark is not installed: pip install '.[spark]'", allow_module_level=True)

from serving import spark_engine, spark_features  # noqa: E402  (after the skip: pyspark)

LEADS = 2_500
#: Custom fields without a type: the reader infers numeric, boolean and categorical.
CUSTOM = [
    {"column": "employees_band", "kind": "fit"},
    {"column": "has_partner", "kind": "fit"},
    {"column": "crm_stage", "kind": "fit"},
]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_engine.spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated snapshot (declared as-of) whose leads carry three custom columns."""
    out = tmp_path_factory.mktemp("spark-features") / "snapshot"
    result = CliRunner().invoke(cli, ["generate", "-o", str(out), "-n", str(LEADS), "--seed", "3"])
    assert result.exit_code == 0, result.output
    leads = pd.read_parquet(out / "leads.parquet")
    rng = np.random.default_rng(5)
    size = leads["company_size"].astype("float64")
    leads["employees_band"] = np.where(rng.random(len(leads)) < 0.1, np.nan, np.log1p(size))
    leads["has_partner"] = pd.Series(rng.choice(["yes", "no", ""], len(leads)), dtype="str")
    leads["crm_stage"] = pd.Series(rng.choice(["new", "working", "nurture"], len(leads)))
    leads.to_parquet(out / "leads.parquet", index=False)
    return out


def _config_file(path: Path, **policy: int) -> Path:
    values = {
        "custom_fields": CUSTOM,
        "snapshot_policy": policy,
        "mapping": {"true_values": ["yes"], "false_values": ["no"]},
    }
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def _features(folder: Path, config: Path, out: Path, engine: str) -> str:
    args = ["features", "-s", str(folder), "-c", str(config), "-o", str(out), "--engine", engine]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_features_on_spark_write_the_pandas_engines_bytes(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    """The same Parquet file, byte for byte, and the same JSON summary (rows, counts, read
    report, inferred custom types), with weekly and sampled ages, in several buckets."""
    config = _config_file(tmp_path / "config.yaml", weekly_weeks=3, sampled_ages=2)
    said = {}
    for engine in ("pandas", "spark"):
        said[engine] = _features(folder, config, tmp_path / engine / "ts.parquet", engine)
    pandas_file, spark_file = tmp_path / "pandas" / "ts.parquet", tmp_path / "spark" / "ts.parquet"
    frame = pd.read_parquet(pandas_file)
    assert len(frame) > LEADS and frame["label"].sum() > 100  # weekly and sampled rows
    assert {"custom_employees_band", "custom_has_partner", "custom_crm_stage"} <= set(frame)
    assert pandas_file.read_bytes() == spark_file.read_bytes()
    summary = json.loads(pandas_file.with_suffix(".json").read_text())
    assert [f["type"] for f in summary["custom_fields"]] == ["numeric", "boolean", "categorical"]
    summaries = [f.with_suffix(".json").read_text() for f in (pandas_file, spark_file)]
    assert summaries[0] == summaries[1]
    lines = [s.split(" in ")[0] for s in said["pandas"].splitlines() if "wrote" not in s]
    assert [s.split(" in ")[0] for s in said["spark"].splitlines() if "wrote" not in s] == lines


def _on_both_engines(
    spark: Any, folder: Path, custom: list[dict[str, str]], buckets: int
) -> tuple[Any, pd.DataFrame, Any, Any]:
    """The pandas engine's snapshot, training set and counts, and Spark's build of the same."""
    settings = build_config(
        {"source": {"path": str(folder)}, "custom_fields": custom, "features": {"workers": 1}}
        | {"mapping": {"true_values": ["yes"], "false_values": ["no"]}}
    )
    snapshot = read_snapshot(settings)
    expected, counts = build_training_set(
        snapshot, with_custom_fields(settings, snapshot.custom_fields)
    )
    return (
        snapshot,
        expected,
        counts,
        spark_features.build_on_spark(spark, settings, buckets=buckets),
    )


def test_an_undeclared_as_of_is_the_whole_snapshots_latest_time(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    """Without snapshot.json the as-of time is the latest timestamp of the whole snapshot, which
    no bucket sees alone: the driver labels and censors the buckets' rows at it, as the
    pandas engine does (same rows, values, types, counts and as-of)."""
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "snapshot.json").unlink()
    snapshot, expected, counts, got = _on_both_engines(spark, bare, CUSTOM, buckets=5)
    assert got.buckets == 5
    assert got.snapshot.as_of == snapshot.as_of
    assert got.counts == counts and counts.censored > 0
    pd.testing.assert_frame_equal(got.training_set, expected, check_exact=True)
    assert got.snapshot.report.lines() == snapshot.report.lines()


def test_flat_exports_and_set_aside_rows_stay_with_the_pandas_engine(
    spark: Any, folder: Path
) -> None:
    def settings(**source: Any) -> Config:
        return build_config({"source": {"path": str(folder), **source}})

    with pytest.raises(ContractError, match="flat export"):
        spark_features.build_on_spark(spark, settings(events=None))
    with pytest.raises(ContractError, match="on_bad_rows: drop"):
        spark_features.build_on_spark(spark, settings(on_bad_rows="drop"))


def test_train_with_engine_spark_trains_on_the_same_training_set(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    """`leadscore train --engine spark` builds its training set on Spark: the same rows, so
    the same model, metrics and tiers as the pandas engine's run."""
    config = _config_file(tmp_path / "config.yaml", weekly_weeks=0, sampled_ages=2)
    said = {}
    for engine in ("pandas", "spark"):
        args = ["train", "-s", str(folder), "-c", str(config), "--no-register"]
        args += ["-r", str(tmp_path / engine), "--engine", engine]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        said[engine] = [s for s in result.output.splitlines() if str(tmp_path) not in s]
    assert any("rows," in s and "censored" in s for s in said["pandas"])
    assert any("AUC" in s for s in said["pandas"])
    assert said["spark"] == said["pandas"]


def _both_refuse(settings: Config, spark: Any) -> str:
    """The pandas engine's error and Spark's for the same snapshot: the same message."""
    with pytest.raises(ContractError) as on_pandas:
        snapshot = read_snapshot(settings)
        build_training_set(snapshot, with_custom_fields(settings, snapshot.custom_fields))
    with pytest.raises(ContractError) as on_spark:
        spark_features.build_on_spark(spark, settings, buckets=3)
    assert str(on_spark.value) == str(on_pandas.value)
    return str(on_pandas.value)


def _copy_leads(folder: Path, out: Path, edit: Any, csv: bool = False) -> Path:
    """`folder` with its leads edited (and both tables as CSV with `csv`)."""
    shutil.copytree(folder, out)
    leads = edit(pd.read_parquet(out / "leads.parquet"))
    if csv:
        for name in ("leads", "events"):
            (out / f"{name}.parquet").unlink()
        leads.to_csv(out / "leads.csv", index=False)
        pd.read_parquet(folder / "events.parquet").to_csv(out / "events.csv", index=False)
    else:
        leads.to_parquet(out / "leads.parquet", index=False)
    return out


def test_true_false_company_sizes_fail_as_on_the_pandas_engine(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    """A Parquet export whose company sizes are true/false: the reader's whole-export check,
    with the table's row numbers, not a bucket's."""
    sizes = _copy_leads(folder, tmp_path / "sizes", lambda f: f.assign(company_size=True))
    said = _both_refuse(build_config({"source": {"path": str(sizes)}}), spark)
    assert f"company_size': {LEADS} row(s) are true/false" in said


def test_swallowed_lines_fail_as_on_the_pandas_engine(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    """A CSV export where a quote swallowed lines (a cell holding a line break and the
    delimiter) fails on Spark as with pandas, naming the cell's column and row."""

    def swallow(leads: pd.DataFrame) -> pd.DataFrame:
        title = leads["job_title"].astype(object)
        title.iloc[7] = 'Manager,\nL9,2025-01-01,"'
        return leads.assign(job_title=title)

    broken = _copy_leads(folder, tmp_path / "swallowed", swallow, csv=True)
    said = _both_refuse(build_config({"source": {"path": str(broken)}}), spark)
    assert "job_title': 1 row(s) hold a line break and the delimiter" in said


def test_an_as_of_before_every_lead_fails_as_on_the_pandas_engine(spark: Any, folder: Path) -> None:
    """A declared as-of before the first created_at of the whole export (no bucket sees it
    alone) is refused with the reader's message, naming where it was declared."""
    early = build_config({"source": {"path": str(folder)}, "as_of": "2000-01-01T00:00:00Z"})
    said = _both_refuse(early, spark)
    assert "the config's as_of: as_of 2000-01-01T00:00:00+00:00 is before every lead" in said


def test_leads_in_many_row_groups_keep_the_readers_types(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    """A Parquet leads file in several row groups (one task each, each with its rows'
    buckets), with a categorical column and a whole-number column with gaps: the tasks read
    it as the reader does, so the training set equals the pandas engine's, types included."""

    def retype(leads: pd.DataFrame) -> pd.DataFrame:
        employees = leads["company_size"].astype("Int64").mask(leads.index % 7 == 0)
        return leads.assign(crm_stage=leads["crm_stage"].astype("category"), employees=employees)

    out = tmp_path / "row-groups"
    shutil.copytree(folder, out)
    leads = retype(pd.read_parquet(out / "leads.parquet"))
    leads.to_parquet(out / "leads.parquet", index=False, row_group_size=400)
    assert pq.ParquetFile(out / "leads.parquet").metadata.num_row_groups == 7
    assert isinstance(
        pd.read_parquet(out / "leads.parquet")["crm_stage"].dtype, pd.CategoricalDtype
    )
    custom = [*CUSTOM, {"column": "employees", "kind": "fit"}]
    snapshot, expected, counts, got = _on_both_engines(spark, out, custom, buckets=4)
    assert got.counts == counts
    pd.testing.assert_frame_equal(got.training_set, expected, check_exact=True)
    assert got.snapshot.report.lines() == snapshot.report.lines()


def test_a_bad_snapshot_fails_on_spark_as_on_pandas_through_the_cli(
    folder: Path, tmp_path: Path
) -> None:
    """The driver reads the snapshot's keys while the JVM starts: a leads table without its
    lead id column fails with the pandas engine's message and exit code, and writes nothing."""
    broken = _copy_leads(folder, tmp_path / "no-ids", lambda f: f.drop(columns=["lead_id"]))
    config = _config_file(tmp_path / "config.yaml")
    said, codes = {}, {}
    for engine in ("pandas", "spark"):
        out = tmp_path / engine / "ts.parquet"
        args = ["features", "-s", str(broken), "-c", str(config), "-o", str(out)]
        result = CliRunner().invoke(cli, [*args, "--engine", engine])
        assert not out.parent.exists() or not any(out.parent.iterdir())
        said[engine], codes[engine] = result.output, result.exit_code
    assert codes["pandas"] == 2 and "column 'lead_id'" in said["pandas"]
    assert (codes["spark"], said["spark"]) == (codes["pandas"], said["pandas"])
