"""Batch scoring and its monitoring: `leadscore predict` and `monitor`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer

from cli.common import (
    ConfigOption,
    SnapshotOption,
    clear_errors,
    console,
    flagged,
    load_settings,
    progress,
)
from common.config import Config
from features.contract import ContractError


# --- leadscore predict (batch scoring; the work is in serving/batch.py and batch_io.py) ---
def predict(
    as_of: Annotated[
        str,
        typer.Option("--as-of", help="Score the MQLs open at this time (ISO 8601; naive: UTC)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Scores file to write (.parquet or .csv).")
    ],
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
    model_uri: Annotated[
        str | None, typer.Option(help="Registry URI; default serve.model_uri (…@champion).")
    ] = None,
    to_sql: Annotated[
        str | None,
        typer.Option("--to-sql", help="Also upsert into this database (SQLAlchemy URL)."),
    ] = None,
    table: Annotated[
        str | None, typer.Option("--table", help="The table for --to-sql (created if missing).")
    ] = None,
    engine: Annotated[
        Literal["pandas", "spark"],
        typer.Option(
            "--engine",
            help="pandas (in this process) or spark (the same functions per group of accounts; "
            "needs the spark extra and Java 17+).",
        ),
    ] = "pandas",
    master: Annotated[
        str | None,
        typer.Option("--master", help="Spark master URL for --engine spark (default local[2])."),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            help="The previous run's scores file, for the changes since it (default: --out "
            "itself, else the newest file beside it whose name sorts before it).",
        ),
    ] = None,
) -> None:
    """Score every open MQL as of a time: probability, tier, points, top reasons.

    Open: an MQL by --as-of, not converted or disqualified by then, its horizon still running.
    Works in chunks of whole accounts; writes the file atomically (a killed run leaves the old
    file or none); with --to-sql, upserts the table in one transaction. Prints the leads per
    tier and what changed since the previous run.
    """
    import logging

    from serving.batch import as_utc
    from serving.batch_io import (
        OutputError,
        check_sql_target,
        check_writable,
        load_and_read,
        predict_job,
    )
    from serving.model_store import ModelUnavailableError, load_model

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with clear_errors():
        if (to_sql is None) != (table is None):
            raise ContractError("--to-sql and --table go together")
        if engine not in ("pandas", "spark") or (master is not None and engine != "spark"):
            raise ContractError("--engine is pandas or spark; --master goes with --engine spark")
        moment = as_utc(as_of, "--as-of")
        check_writable(out)
        if to_sql is not None and table is not None:
            check_sql_target(to_sql, table)  # URL, schema, name: before any work
        if previous is not None and engine == "spark":
            raise ContractError("--previous goes with the pandas engine (spark finds the last run)")
        if previous is not None and not previous.is_file():
            raise ContractError(f"--previous {previous}: no such scores file")
        settings = load_settings(config, snapshot)
        uri = model_uri or settings.serve.model_uri

        def load() -> Any:
            try:
                return load_model(uri, settings.mlflow.tracking_uri)
            except ModelUnavailableError as error:
                raise ContractError(str(error)) from None

        if engine == "spark":  # the same job on Spark: serving/spark_engine.py
            sql = (to_sql, table) if to_sql is not None and table is not None else None
            _predict_on_spark(settings, load(), moment, out, master, sql)
            return
        # the snapshot is read as the model was trained (mapping, custom fields), while the
        # model loads
        model, snap = load_and_read(settings, load)
        for line in snap.report.lines():
            console.print(line, highlight=False)
        try:
            with progress("scoring open MQLs") as update:
                summary = predict_job(
                    snap,
                    model,
                    moment,
                    out,
                    horizon_days=model.config.horizon_days,
                    reasons=settings.serve.reasons,
                    chunk_leads=settings.features.chunk_leads,
                    to_sql=(to_sql, table) if to_sql is not None and table is not None else None,
                    progress=update,
                    workers=settings.features.workers,
                    previous=previous,
                )
        except OutputError as error:
            console.print(flagged("[bold red]error:[/]", error), markup=True, highlight=False)
            raise typer.Exit(code=1) from None
    for line in summary.lines():
        console.print(line, highlight=False)


# --- leadscore predict --engine spark (the work is in serving/spark_engine.py) ---
def _predict_on_spark(
    settings: Config,
    model: Any,
    as_of: pd.Timestamp,
    out: Path,
    master: str | None,
    to_sql: tuple[str, str] | None,
) -> None:
    """Score on Spark (local[2] unless --master), write as the pandas engine, print the same."""
    from serving.batch_io import OutputError
    from serving.spark_engine import (
        DEFAULT_MASTER,
        keys_beside_session,
        predict_spark_job,
        scoring_config,
    )

    # the snapshot's keys are read while the JVM starts; a session already running (a
    # notebook's) is left running
    config, master = scoring_config(settings, model), master or DEFAULT_MASTER
    with keys_beside_session(config, master, "leadscore predict") as (spark, keys):
        try:
            with progress("Spark tasks") as update:
                summary, result = predict_spark_job(
                    spark,
                    settings,
                    model,
                    as_of,
                    out,
                    reasons=settings.serve.reasons,
                    chunk_leads=settings.features.chunk_leads,
                    to_sql=to_sql,
                    progress=update,
                    keys=keys,
                )
        except OutputError as error:
            console.print(flagged("[bold red]error:[/]", error), markup=True, highlight=False)
            raise typer.Exit(code=1) from None
    for line in result.lines() + summary.lines():
        console.print(line, highlight=False)


# --- leadscore monitor (drift against the training reference; the work is in
# training/monitor_report.py) ---
def monitor(
    scores: Annotated[
        list[Path],
        typer.Option(
            "--scores",
            help="A scores file of `leadscore predict`, its <stem>.monitor.json beside it; "
            "repeat for several runs. A folder stands for every such file in it, in name order.",
        ),
    ],
    snapshot: Annotated[
        str | None,
        typer.Option(
            "--snapshot",
            "-s",
            help="A later snapshot (folder or URL): realised conversion of the leads whose "
            "horizon has closed by its as-of time.",
        ),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report-dir", "-r", help="Report folder (default monitor.report_dir)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Compare scoring runs with the model's training reference; alert on drift.

    PSI of every feature and of the probability, the share of leads per tier; with --snapshot,
    realised conversion per tier and calibration by month of scoring. Writes report.html (with
    plots) and monitor.json. Exit status: 0 no threshold passed, 3 a monitor.* threshold
    passed (drift), 2 bad input (missing monitoring record, mixed model versions, bad config).
    """
    from features.reader import read_snapshot
    from serving import monitor_report
    from training.drift import MonitorError

    with clear_errors():
        try:
            settings = load_settings(config, snapshot)
            runs = [monitor_report.read_run(path) for path in monitor_report.scores_files(scores)]
            monitor_report.check_runs(runs)
            leads, snapshot_as_of = None, None
            if snapshot is not None:
                snap = read_snapshot(settings)
                leads, snapshot_as_of = snap.leads, snap.as_of
            result = monitor_report.monitor(
                runs, settings.monitor, leads=leads, snapshot_as_of=snapshot_as_of
            )
        except MonitorError as error:
            raise ContractError(str(error)) from None
    html_path, json_path = monitor_report.write_monitor_report(
        result, report_dir or settings.monitor.report_dir
    )
    for line in monitor_report.summary_lines(result):
        console.print(line, highlight=False)
    console.print(f"report: {html_path} and {json_path}", highlight=False)
    if result.alerting:
        raise typer.Exit(code=monitor_report.ALERT_EXIT)
