"""Models and the registry: `leadscore train`, `retrain`, `promote`, `rollback` and
`rules suggest`. The work is in training/ (`training.pipeline`, `training.retrain`,
`training.tracking`, `training.baseline`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cli.common import (
    ConfigOption,
    EngineOption,
    MasterOption,
    SnapshotOption,
    check_engine,
    clear_errors,
    console,
    existing_store,
    flagged,
    load_settings,
    progress,
    say,
    spark_training_set,
)
from common.config import Config, ConfigError


def train(
    snapshot: SnapshotOption = None,
    training_set_path: Annotated[
        Path | None,
        typer.Option(
            "--training-set",
            "-t",
            help="A training set built by `leadscore features` (instead of --snapshot).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
    report_dir: Annotated[
        Path, typer.Option("--report-dir", "-r", help="Where to write the HTML report.")
    ] = Path("data/report"),
    register: Annotated[
        bool,
        typer.Option(help="Log to MLflow, register as challenger and apply the champion gate."),
    ] = True,
    cv: Annotated[
        int | None,
        typer.Option(
            "--cv",
            min=2,
            help="Only cross-validate: stratified K-fold AUC (for flat exports with no time "
            "order); nothing is logged or registered.",
        ),
    ] = None,
    engine: EngineOption = "pandas",
    master: MasterOption = None,
) -> None:
    """Train the MQL-to-SQL model: LightGBM, calibrated, tiered, evaluated beside the rules.

    Splits in time order (train, early stopping, calibration, test: the most recent), audits
    each feature for leakage, writes a report with plots, logs one MLflow run with the model,
    registers it as `challenger`, and makes it `champion` if it passes the gate against the
    current champion on the same test slice. Registering takes the registry's retrain lock:
    while a `leadscore retrain` runs, nothing is registered and the exit status is 3.
    Guards (docs/training-guards.md) refuse to register a model with an unacknowledged leak
    (exit 4) or below the minimum data (exit 5); without training.rules the rules baseline is
    points fitted on the training slice.
    """
    from training.pipeline import run_training
    from training.retrain import EXIT_BUSY
    from training.train import TrainingError

    with clear_errors():
        check_engine(engine, master, training_set_path)
        settings = load_settings(config, snapshot)
        build = None
        if engine == "spark":  # the training set on Spark; the rest as with pandas

            def build(snap: Any, built_with: Config, update: Any) -> Any:
                on_spark = spark_training_set(built_with, master)
                return on_spark.training_set, on_spark.counts

        try:
            outcome = run_training(
                settings,
                build=build,
                report_dir=report_dir,
                training_set_path=training_set_path,
                source_named=snapshot is not None,
                register=register,
                cv_folds=cv,
                say=say,
                note=lambda text: console.print(
                    flagged("[yellow]note:[/]", text), markup=True, highlight=False
                ),
                progress=progress,
            )
        except TrainingError as error:
            console.print(flagged("[bold red]error:[/]", error), markup=True, highlight=False)
            raise typer.Exit(code=error.exit_code) from None
    if cv is not None:
        shown = ", ".join(f"{a:.4f}" for a in outcome.cv_aucs)
        console.print(f"{cv}-fold AUC: mean {np.mean(outcome.cv_aucs):.4f} (folds: {shown})")
        return
    if not register:
        return
    for refusal in outcome.refusals:
        console.print(
            flagged("[bold red]refused:[/]", f"{refusal.message}; not logged or registered"),
            markup=True,
            highlight=False,
        )
    if outcome.refusals:
        raise typer.Exit(code=outcome.refusals[0].exit_code)
    if outcome.busy is not None:
        console.print(
            flagged(
                "[bold yellow]busy:[/]",
                f"{outcome.busy}; this model was not logged or registered (its report is "
                f"{outcome.report}): run again when that run ends",
            ),
            markup=True,
            highlight=False,
        )
        raise typer.Exit(code=EXIT_BUSY)
    verdict, version = outcome.verdict, outcome.version
    if verdict.problem is not None:
        console.print(
            flagged(
                "[yellow]gate:[/]",
                f"{verdict.problem}; promote by hand (`leadscore promote VERSION`) "
                "if it should serve",
            ),
            markup=True,
            highlight=False,
        )
    elif verdict.promoted:
        console.print(
            f"gate passed ({'; '.join(verdict.decision.reasons)}): version {version} is champion",
            highlight=False,
        )
    else:
        console.print(
            flagged(
                "[yellow]gate failed:[/]",
                f"{'; '.join(verdict.decision.reasons)}; champion stays "
                f"version {verdict.champion_version}",
            ),
            markup=True,
            highlight=False,
        )
    console.print(
        f"see it: mlflow ui --backend-store-uri {outcome.settings.mlflow.tracking_uri}  "
        f"(then http://127.0.0.1:5000), and open {outcome.report}"
    )


# --- leadscore retrain (the scheduled loop; the work is in training/retrain.py) ---
def retrain(
    snapshot: SnapshotOption = None,
    snapshots_root: Annotated[
        Path | None,
        typer.Option(
            "--snapshots-root",
            help="Folder of snapshot folders: train on the newest (by snapshot.json as_of, "
            "else modification time).",
            file_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
    report_dir: Annotated[
        Path, typer.Option("--report-dir", "-r", help="Where to write the HTML report.")
    ] = Path("data/report"),
    lock_file: Annotated[
        Path | None,
        typer.Option(
            help="Lock file (default: beside a SQLite store; a PostgreSQL store uses an "
            "advisory lock)."
        ),
    ] = None,
) -> None:
    """Retrain from the latest snapshot: train, register as challenger, promote through the gate.

    Safe on a schedule: one run per registry at a time (a second exits 3 at once), and the
    champion moves only as the very last step, so a run that fails leaves it untouched.
    Exit status: 0 registered (promoted or kept out by the gate), 1 failed midway,
    2 bad snapshot, config or training data, 3 another retrain is running, 4 the leak guard
    refused, 5 too little data.
    """
    from training import retrain as loop
    from training.train import TrainingError

    with clear_errors():
        if snapshot is not None and snapshots_root is not None:
            raise ConfigError("give --snapshot or --snapshots-root, not both")
        if snapshots_root is not None:
            snapshot = str(loop.latest_snapshot(snapshots_root))
        settings = load_settings(config, snapshot)
    try:
        with clear_errors(), loop.registry_lock(settings.mlflow, lock_file):
            outcome = loop.retrain(settings, report_dir, say=say, progress=progress)
    except typer.Exit:
        raise
    except loop.RetrainBusyError as error:
        console.print(flagged("[bold yellow]busy:[/]", error), markup=True, highlight=False)
        raise typer.Exit(code=loop.EXIT_BUSY) from None
    except TrainingError as error:
        console.print(flagged("[bold red]error:[/]", error), markup=True, highlight=False)
        raise typer.Exit(code=error.exit_code) from None
    except Exception as error:  # a failure midway: say where, and that the champion stands
        console.print(
            flagged(
                "[bold red]retrain failed:[/]",
                f"{type(error).__name__}: {error}; the champion is unchanged",
            ),
            markup=True,
            highlight=False,
        )
        raise typer.Exit(code=loop.EXIT_FAILED) from None
    verdict = (
        f"gate passed: version {outcome.version} is champion"
        if outcome.promoted
        else f"not promoted: champion stays version {outcome.champion_after or '(none)'}"
    )
    say(f"{verdict} ({'; '.join(outcome.reasons)}); {outcome.seconds:.0f} s")


def promote(
    version: Annotated[str, typer.Argument(help="The model version to make champion.")],
    config: ConfigOption = None,
) -> None:
    """Make a registered model version the champion by hand (the old one is remembered)."""
    from training import tracking

    with clear_errors():
        settings = load_settings(config, None)
        existing_store(settings)
    try:
        previous = tracking.promote(settings.mlflow, version)
    except tracking.RegistryError as error:
        console.print(flagged("[bold red]error:[/]", error), markup=True)
        raise typer.Exit(code=2) from None
    console.print(f"{settings.mlflow.model_name}@champion: version {previous} -> {version}")


def rollback(config: ConfigOption = None) -> None:
    """Give the champion alias back to the previous champion."""
    from training import tracking

    with clear_errors():
        settings = load_settings(config, None)
        existing_store(settings)
    try:
        before, after = tracking.rollback(settings.mlflow)
    except tracking.RegistryError as error:
        console.print(flagged("[bold red]error:[/]", error), markup=True)
        raise typer.Exit(code=2) from None
    console.print(f"{settings.mlflow.model_name}@champion: version {before} -> {after}")


def rules_suggest(
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
    rules_path: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="Rules YAML to re-weight; without it, points are fitted over every field, "
            "custom field and event type the export has.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the suggested rules YAML.")
    ] = Path("data/rules.suggested.yaml"),
) -> None:
    """Fit points to data and write them as a rules YAML that training.rules accepts.

    Without --rules: a points table for every fit field and custom field (numeric ones in
    quantile bands) and points per event for every event type the export has, from a
    regularised logistic regression (training/baseline.py); flat exports included. With
    --rules: the same rules re-weighted. Fitted on the older 70% of rows (by cutoff; a random
    stratified 70% for a flat export) and compared on the other 30%, out of sample.
    """
    from training.baseline import suggest_rules_file

    with clear_errors():
        settings = load_settings(config, snapshot)
        with progress("building rows") as update:
            suggestion = suggest_rules_file(settings, out, rules_path, progress=update)
    if suggestion.table is not None:
        console.print(suggestion.table.to_string(index=False), highlight=False)
    shown = ", ".join(f"{name} {auc:.4f}" for name, auc in suggestion.held_out_auc.items())
    console.print(
        f"AUC on the held-out 30% of rows: {shown}. Wrote {out}; use it with training.rules "
        "in the config.",
        highlight=False,
    )
