"""A real-shaped export end to end: leads, a deals table giving sql_at and an accounts table
joined by key, custom fields, ';'-delimited Latin-1 CSVs and one bad row, through
`leadscore validate`, `features` and `train`; and the same joins from PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from common.config import build_config
from features.contract import ContractError
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from cli import app
from tests.conftest import POSTGRES_URL
from tests.own_export import write_export

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own_export")
    write_snapshot(generate(8000, seed=3), root / "snapshot")
    return write_export(root / "snapshot", root / "export")


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_validate_features_and_train_a_joined_latin1_export(export: Path, tmp_path: Path) -> None:
    output = _run("validate", "-c", str(export))
    for said in (
        "mqls.csv: detected delimiter ';' and encoding cp1252",
        "deals.csv: joined on 'MQL Id': 723 of 2,839 leads have a row; 5 row(s) match no lead",
        "key(s) have several rows; the earliest by 'Won Date' counts",
        "custom field 'Web Visits': numeric (inferred",
        "custom field 'Newsletter': boolean (inferred",
        "custom field 'Catégorie': categorical (inferred",
        "1 of 2,839 leads (0.04%) set aside as breaking the contract (on_bad_rows: drop)",
        "set aside for: 1 sql_at before mql_at",
        "contract OK",
    ):
        assert said in output, output
    assert not list(export.parent.glob("*quarantine*"))  # validate writes only where told

    training_set = tmp_path / "ts.parquet"
    _run("features", "-c", str(export), "-o", str(training_set))
    summary = json.loads(training_set.with_suffix(".json").read_text())
    assert summary["quarantine"]["quarantined_leads"] == 1
    assert {f["column"]: f["type"] for f in summary["custom_fields"]} == {
        "Web Visits": "numeric",
        "Newsletter": "boolean",
        "Catégorie": "categorical",
    }
    quarantine = pd.read_csv(tmp_path / "ts.quarantine.csv", dtype="str")
    assert list(quarantine["reason"]) == ["sql_at before mql_at"]
    rows = pd.read_parquet(training_set)
    assert rows["label"].sum() > 300 and rows["custom_catégorie"].notna().all()
    assert set(rows["custom_newsletter"].dropna()) == {0.0, 1.0}

    report = tmp_path / "report"
    output = _run("train", "-c", str(export), "--no-register", "-r", str(report))
    assert "model: AUC" in output and "rules: AUC" in output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["read"]["quarantined_leads"] == 1
    assert metrics["test"]["model"]["roc_auc"] > metrics["test"]["rules"]["roc_auc"]
    assert (report / "quarantine.csv").is_file()


@pytest.mark.slow
def test_mlflow_gets_the_counts_and_the_inferred_types(export: Path, tmp_path: Path) -> None:
    training_set = tmp_path / "ts.parquet"
    _run("features", "-c", str(export), "-o", str(training_set))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": uri,
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
    }
    # from the training set file: its summary carries the counts and the types
    _run("train", "-t", str(training_set), "-c", str(export), "-r", str(tmp_path / "r"), env=env)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("leadscore")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id])[0]
    assert run.data.metrics["read_quarantined_leads"] == 1.0
    assert run.data.metrics["read_events_of_quarantined_leads"] > 0
    logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.json")
    assert [f["type"] for f in logged["custom_fields"]] == ["numeric", "boolean", "categorical"]


def _sql_config(schema: str, joins: list[dict[str, object]]) -> dict[str, object]:
    return {
        "as_of": "2026-01-01T00:00:00Z",
        "source": {
            "url": POSTGRES_URL,
            "schema": schema,
            "leads": "mqls",
            "events": "activity",
            "joins": joins,
        },
        "mapping": {
            "leads": {
                "mql_id": "lead_id",
                "first_contact": ["created_at", "mql_at"],
                "won_at": "sql_at",
                "employees": "company_size",
            },
            "events": {"mql_id": "lead_id"},
        },
    }


@pytest.mark.postgres
def test_postgresql_tables_join_by_key(postgres_schema: str) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    stamp = pd.Timestamp("2025-03-01", tz="UTC")
    pd.DataFrame(
        {
            "mql_id": [1, 2, 3],
            "company": ["c1", "c2", "c1"],
            "first_contact": [stamp, stamp, stamp],
        }
    ).to_sql("mqls", engine, schema=postgres_schema, index=False)
    pd.DataFrame(
        {
            "lead": [1, 1, 3],
            "won_at": [stamp + pd.Timedelta(days=20), stamp + pd.Timedelta(days=9), pd.NaT],
        }
    ).to_sql("deals", engine, schema=postgres_schema, index=False)
    pd.DataFrame({"company": ["c1", "c2"], "employees": [120, 8]}).to_sql(
        "firms", engine, schema=postgres_schema, index=False
    )
    pd.DataFrame(
        {"mql_id": [1, 2], "occurred_at": [stamp, stamp], "event_type": ["page_view"] * 2}
    ).to_sql("activity", engine, schema=postgres_schema, index=False)
    engine.dispose()
    joins: list[dict[str, object]] = [
        {
            "table": "deals",
            "key": "lead",
            "lead_key": "mql_id",
            "columns": ["won_at"],
            "order_by": "won_at",
        },
        {"table": "firms", "key": "company"},
    ]
    snap = read_snapshot(build_config(_sql_config(postgres_schema, joins)))
    got = snap.leads.set_index("lead_id")
    assert got.loc["1", "sql_at"] == stamp + pd.Timedelta(days=9)  # the earliest deal
    assert pd.isna(got.loc["2", "sql_at"]) and pd.isna(got.loc["3", "sql_at"])
    assert list(got.loc[["1", "2", "3"], "company_size"]) == [120.0, 8.0, 120.0]
    assert len(snap.events) == 2
    lines = " | ".join(snap.report.lines())
    assert f"{postgres_schema}.deals: joined on 'lead': 2 of 3 leads have a row" in lines

    missing = _sql_config(postgres_schema, [{"table": "outcomes", "key": "lead"}])
    with pytest.raises(ContractError, match=rf"table '{postgres_schema}.outcomes' not found"):
        read_snapshot(build_config(missing))


def _small_export(folder: Path, bad_rows: int) -> Path:
    """40 leads (the first `bad_rows` with sql_at before mql_at), their events, a config."""
    folder.mkdir(parents=True, exist_ok=True)
    created = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(range(40), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i:02d}" for i in range(40)],
            "created_at": created,
            "mql_at": created + pd.Timedelta(days=1),
            "sql_at": [
                created[i] - pd.Timedelta(days=1) if i < bad_rows else pd.NaT for i in range(40)
            ],
        }
    )
    leads.to_csv(folder / "leads.csv", index=False)
    pd.DataFrame(
        {"lead_id": leads["lead_id"], "occurred_at": created, "event_type": "page_view"}
    ).to_csv(folder / "events.csv", index=False)
    config = folder / "c.yaml"
    config.write_text(
        f"source: {{path: ., on_bad_rows: drop, max_bad_share: 0.05, "
        f"quarantine: {folder / 'set-aside.csv'}}}\nas_of: '2026-01-01T00:00:00Z'\n"
    )
    return config


def test_validate_writes_the_quarantine_only_where_configured(tmp_path: Path) -> None:
    config = _small_export(tmp_path / "export", bad_rows=1)
    output = _run("validate", "-c", str(config))
    assert "1 of 40 leads (2.50%) set aside" in output and "contract OK" in output
    written = pd.read_csv(tmp_path / "export" / "set-aside.csv", dtype="str")
    assert list(written["lead_id"]) == ["L00"] and list(written["row"]) == ["1"]


def test_above_the_share_nothing_is_written(tmp_path: Path) -> None:
    config = _small_export(tmp_path / "export", bad_rows=3)  # 7.5% > 5%
    out = tmp_path / "out" / "ts.parquet"
    result = runner.invoke(app, ["features", "-c", str(config), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "3 of 40 rows (7.50%) break the contract, above source.max_bad_share 5.00%" in (
        result.output
    )
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert not (tmp_path / "export" / "set-aside.csv").exists()
