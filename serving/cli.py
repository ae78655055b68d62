"""`leadscore`: every job of the project as a subcommand.

This is an edge: it reads config and files, calls the pure stages, and writes results
atomically. Contract and config errors print a clear message and exit with status 2,
leaving no output behind.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.config import Config, ConfigError, load_config
from features.contract import ContractError
from serving.cli_help import Typer

app = Typer(
    name="leadscore",
    help="Predict which marketing qualified leads (MQLs) become sales qualified leads (SQLs).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


def _show_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"leadscore {version('leadscore')}")
        raise typer.Exit()


@app.callback()
def _every_job(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # one progress style: the rich bars below, not MLflow's own tqdm bars for artifact copies
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (see examples/). Without it, defaults apply; LEADSCORE__* variables "
        "override either.",
        exists=True,
        dir_okay=False,
    ),
]
SnapshotOption = Annotated[
    str | None,
    typer.Option(
        "--snapshot",
        "-s",
        help="Snapshot folder (CSV or Parquet files) or SQLAlchemy URL; "
        "overrides the config's source.",
    ),
]


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn contract and config errors into one message and exit status 2."""
    try:
        yield
    except (ContractError, ConfigError) as error:
        console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=2) from None


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar whose callback takes (done, total); silent when stderr is not a terminal.

    When the work ends early (LightGBM's early stopping ends the boosting rounds long before
    the round limit), the bar ends full at what was done, not stopped part way.
    """
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
        bar.update(task, total=bar.tasks[0].completed)


def _source_exists(source: Any) -> bool:
    """A configured source that is there to read: a URL, or a folder that exists."""
    return source.url is not None or (source.path is not None and Path(source.path).exists())


def _config(config: Path | None, snapshot: str | None) -> Config:
    loaded = load_config(config)
    if snapshot is None:
        return loaded
    source: dict[str, Any] = loaded.source.model_dump(by_alias=True)
    if "://" in snapshot:
        source.update(url=snapshot, path=None)
    else:
        source.update(path=Path(snapshot), url=None)
    values = loaded.model_dump(by_alias=True)
    values["source"] = source
    return Config.model_validate(values)


@app.command()
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the snapshot into.")
    ] = Path("data/snapshot"),
    leads: Annotated[int, typer.Option("--leads", "-n", min=1, help="Number of leads.")] = 50_000,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives the same snapshot.")
    ] = 7,
    as_of: Annotated[
        str, typer.Option("--as-of", help="The snapshot's as-of date.")
    ] = "2026-06-30",
    events_per_lead: Annotated[
        float, typer.Option(help="Average engagement events per lead.")
    ] = 50.0,
    file_format: Annotated[
        Literal["parquet", "csv"], typer.Option("--format", help="File format of the tables.")
    ] = "parquet",
    layout: Annotated[
        Literal["contract", "hubspot", "salesforce", "hubspot-export", "salesforce-export"],
        typer.Option(
            help="Tables to write: the data contract, a CRM's connector tables, or its own CSV"
            " export (always CSV)."
        ),
    ] = "contract",
    shift: Annotated[
        str | None,
        typer.Option(
            help="Plant a change of market after --shift-after, to test monitoring: "
            "lead_source, conversion or company_size."
        ),
    ] = None,
    shift_after: Annotated[
        str | None, typer.Option("--shift-after", help="The date the planted shift starts.")
    ] = None,
    shift_size: Annotated[
        float | None, typer.Option("--shift-size", help="The shift's strength (kind's default).")
    ] = None,
) -> None:
    """Generate a synthetic CRM snapshot with known truth.

    Writes leads and events in the data contract (or the same CRM as HubSpot's or Salesforce's
    warehouse tables, see docs/crm-layouts.md) plus truth.parquet: the true conversion
    probability each MQL's outcome was drawn from, for judging models against the best possible.
    """
    from features.layouts import write_layout
    from features.synthetic import SHIFT_KINDS, MarketShift
    from features.synthetic import generate as generate_chunks

    planted = None
    if shift is not None or shift_after is not None:
        if shift not in SHIFT_KINDS or shift_after is None:
            raise typer.BadParameter(
                f"--shift takes one of {list(SHIFT_KINDS)} and needs --shift-after DATE"
            )
        try:
            after = pd.Timestamp(shift_after)
        except ValueError:
            raise typer.BadParameter(f"--shift-after {shift_after!r} is not a date") from None
        planted = MarketShift(shift, after, shift_size)  # type: ignore[arg-type]
    started = time.perf_counter()
    with _clear_errors(), _progress("generating leads") as update:
        chunks = generate_chunks(
            leads,
            seed,
            as_of=as_of,
            events_per_lead=events_per_lead,
            progress=update,
            shift=planted,
        )
        counts = write_layout(chunks, out, layout=layout, fmt=file_format)
    shown = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    console.print(f"wrote {out}: {shown} in {time.perf_counter() - started:.1f} s")


@app.command()
def validate(
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
) -> None:
    """Check a snapshot against the data contract and report what reading it dropped or replaced.

    Exits 2 with every problem listed (file or table, column, bad row count, examples).
    """
    from features.quarantine import write_quarantine
    from features.reader import read_snapshot

    with _clear_errors():
        settings = _config(config, snapshot)
        snap = read_snapshot(settings)
    for line in snap.report.lines():
        console.print(line, highlight=False)
    if settings.source.quarantine is not None:  # validate writes only where told to
        written = write_quarantine(snap.report.quarantine, settings.source.quarantine)
        if written is not None:
            console.print(f"set-aside rows: {written}", highlight=False)
    console.print(
        f"as of {snap.as_of}; {'flat export' if snap.flat else 'timestamped'}: contract OK"
    )


@app.command()
def features(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Training set file to write (.parquet).")
    ],
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
    weekly_weeks: Annotated[
        int | None,
        typer.Option(help="Also add a row each week after mql_at while the lead is open, up to N."),
    ] = None,
    horizon_days: Annotated[
        int | None,
        typer.Option(help="An SQL within this many days after the cutoff is a positive."),
    ] = None,
) -> None:
    """Build the training set: point-in-time features and labels of (lead, cutoff) rows.

    Rows follow the snapshot policy (one at mql_at by default). Rows whose horizon has not
    closed by the snapshot's as-of time are censored: left out and counted. Writes the
    Parquet file and a JSON summary beside it, atomically.
    """
    from features.custom_types import with_custom_fields
    from common.io import write_json, write_parquet
    from features.pipeline import build_training_set, feature_spec
    from features.quarantine import write_quarantine
    from features.reader import read_snapshot

    started = time.perf_counter()
    with _clear_errors():
        settings = _config(config, snapshot)
        overrides: dict[str, Any] = {}
        if weekly_weeks is not None:
            overrides["snapshot_policy"] = {"weekly_weeks": weekly_weeks}
        if horizon_days is not None:
            overrides["horizon_days"] = horizon_days
        if overrides:
            settings = Config.model_validate({**settings.model_dump(by_alias=True), **overrides})
        snap = read_snapshot(settings)
        settings = with_custom_fields(settings, snap.custom_fields)  # inferred types
        for line in snap.report.lines():
            console.print(line, highlight=False)
        with _progress("building features") as update:
            training_set, counts = build_training_set(snap, settings, update)
        spec = feature_spec(settings, snap.flat)
        write_parquet(training_set, out)
        quarantined = write_quarantine(
            snap.report.quarantine,
            settings.source.quarantine or out.with_name(f"{out.stem}.quarantine.csv"),
        )
        summary_path = out.with_suffix(".json")
        write_json(
            {
                "as_of": snap.as_of,
                "flat": snap.flat,
                "horizon_days": settings.horizon_days,
                "snapshot_policy": settings.snapshot_policy.model_dump(),
                "rows": counts.as_dict(),
                "features": [
                    {"name": n, "kind": k} for n, k in zip(spec.names, spec.kinds, strict=True)
                ],
                "read": snap.report.lines(),
                "quarantine": {**snap.report.quarantine.counts(), "file": quarantined},
                "custom_fields": [f.model_dump() for f in settings.custom_fields],
            },
            summary_path,
        )
        if quarantined is not None:
            console.print(f"set-aside rows: {quarantined}", highlight=False)
    rate = counts.positives / counts.kept if counts.kept else float("nan")
    console.print(
        f"{counts.kept:,} rows ({counts.positives:,} positive, {rate:.1%}), "
        f"{len(spec.names)} features; left out: {counts.censored:,} censored, "
        f"{counts.converted_before_cutoff:,} converted before the cutoff, "
        f"{counts.disqualified_before_cutoff:,} disqualified before it, "
        f"{counts.no_outcome:,} without an outcome",
        highlight=False,
    )
    console.print(f"wrote {out} and {summary_path} in {time.perf_counter() - started:.1f} s")


@app.command()
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
    from datetime import UTC, datetime

    import training.retrain as retrain_loop
    import training.rules as rules_module
    from features.custom_types import types_of_training_set, with_custom_fields
    from features.pipeline import build_training_set
    from features.quarantine import summary_counts, write_quarantine
    from features.reader import read_snapshot
    from features.truth import truth_of_rows
    from training import tracking
    from training.baseline import rules_baseline
    from training.guards import Refusal, window
    from training.lineage import data_words, run_name
    from training.reporting import TrainingReport, summary_lines, tier_lines
    from training.train import TrainingError, cross_validated_auc, train_model

    started_at = datetime.now(UTC)  # the MLflow run spans the whole job
    with _clear_errors():
        settings = _config(config, snapshot)
        truth: np.ndarray | None = None
        snap = None
        read_counts: dict[str, int] = {}
        if training_set_path is not None:
            training_set = pd.read_parquet(training_set_path)
            console.print(f"read {len(training_set):,} rows from {training_set_path}")
            summary = training_set_path.with_suffix(".json")
            settings = types_of_training_set(settings, training_set, summary)
            read_counts = summary_counts(summary)
        # the snapshot, when there is one, also gives the rules' points and the truth
        if training_set_path is None or snapshot is not None or _source_exists(settings.source):
            snap = read_snapshot(settings)
            settings = with_custom_fields(settings, snap.custom_fields)  # inferred types
            read_counts = snap.report.quarantine.counts()
            for line in snap.report.lines():
                console.print(line, highlight=False)
            if training_set_path is None:
                with _progress("building features") as update:
                    training_set, counts = build_training_set(snap, settings, update)
                console.print(
                    f"{counts.kept:,} rows, {counts.censored:,} censored (horizon still open)",
                    highlight=False,
                )
        training_set, window_note = window(training_set, settings)  # training.since, window_days
        if snap is not None and not snap.flat:
            truth = truth_of_rows(settings.source.path, training_set, settings.horizon_days)
        if cv is not None:
            aucs = cross_validated_auc(training_set, settings, cv)
            shown = ", ".join(f"{a:.4f}" for a in aucs)
            console.print(f"{cv}-fold AUC: mean {np.mean(aucs):.4f} (folds: {shown})")
            return
        baseline = rules_baseline(training_set, settings, snap)
        rule_set, points = baseline.rules, baseline.points
        try:
            with _progress("boosting rounds") as update:
                result = train_model(
                    training_set, settings, points=points, truth=truth, progress=update
                )
        except TrainingError as error:
            console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
            raise typer.Exit(code=error.exit_code) from None
    result.metrics["rules_baseline"] = baseline.label
    result.notes[:0] = [window_note] if window_note else []
    result.notes.append(
        f"The rules baseline is {baseline.label}."
        if points is not None
        else f"No rules comparison: {baseline.problem}."
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", markup=True, highlight=False)
    for line in summary_lines(result) + tier_lines(result):
        console.print(line, highlight=False)
    source = None if snap is None else settings.source.url or str(settings.source.path)
    pages = TrainingReport.build(
        result,
        config=settings,
        thresholds=dict(rule_set.thresholds) if points is not None else None,
        source=None if snap is None or source is None else data_words(source, snap.as_of),
        extra_metrics={"read": read_counts},
    )
    report = pages.write(report_dir)
    console.print(f"report: {report}")
    if snap is not None:
        quarantined = write_quarantine(
            snap.report.quarantine, settings.source.quarantine or report_dir / "quarantine.csv"
        )
        if quarantined is not None:
            console.print(f"set-aside rows: {quarantined}", highlight=False)
    if not register:
        return
    refusals = result.refusals()
    if points is None:
        refusals.append(
            Refusal(
                2,
                f"no rules comparison for the gate ({baseline.problem}): pass --snapshot with "
                "the export the training set was built from, or --no-register",
            )
        )
    for refusal in refusals:
        console.print(
            f"[bold red]refused:[/] {refusal.message}; not logged or registered",
            markup=True,
            highlight=False,
        )
    if refusals:
        raise typer.Exit(code=refusals[0].exit_code)
    try:
        # the retrain lock: a scheduled retrain and this run never gate and promote at once
        with retrain_loop.registry_lock(settings.mlflow):
            run_id, model_uri = tracking.log_training(
                result,
                settings,
                training_set,
                report_dir=report_dir,
                rules_yaml=rules_module.rules_to_yaml(rule_set),
                run_name=run_name(
                    "train", source or training_set_path, None if snap is None else snap.as_of
                ),
                started_at=started_at,
                snapshot=snap,
                snapshot_location=source,
                training_set_location=training_set_path,
                read_counts=read_counts,
                tags={"rules_baseline": baseline.label},
            )
            version = tracking.register(settings.mlflow, model_uri)
            console.print(
                f"MLflow run {run_id}; registered {settings.mlflow.model_name} version "
                f"{version} as challenger"
            )
            verdict = tracking.challenge(settings.mlflow, result, version)
            tracking.record_verdict(
                settings.mlflow, version, verdict, result, run_id, pages, report_dir, console.print
            )
    except retrain_loop.RetrainBusyError as error:
        console.print(
            f"[bold yellow]busy:[/] {error}; this model was not logged or registered (its "
            f"report is {report}): run again when that run ends",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(code=retrain_loop.EXIT_BUSY) from None
    if verdict.problem is not None:
        console.print(
            f"[yellow]gate:[/] {verdict.problem}; promote by hand (`leadscore promote VERSION`) "
            "if it should serve",
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
            f"[yellow]gate failed:[/] {'; '.join(verdict.decision.reasons)}; champion stays "
            f"version {verdict.champion_version}",
            markup=True,
            highlight=False,
        )
    console.print(
        f"see it: mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}  "
        f"(then http://127.0.0.1:5000), and open {report}"
    )


# --- leadscore retrain (the scheduled loop; the work is in training/retrain.py) ---
@app.command()
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

    def say(line: str) -> None:
        console.print(line, highlight=False)

    with _clear_errors():
        if snapshot is not None and snapshots_root is not None:
            raise ConfigError("give --snapshot or --snapshots-root, not both")
        if snapshots_root is not None:
            snapshot = str(loop.latest_snapshot(snapshots_root))
        settings = _config(config, snapshot)
    try:
        with _clear_errors(), loop.registry_lock(settings.mlflow, lock_file):
            outcome = loop.retrain(settings, report_dir, say=say, progress=_progress)
    except typer.Exit:
        raise
    except loop.RetrainBusyError as error:
        console.print(f"[bold yellow]busy:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=loop.EXIT_BUSY) from None
    except TrainingError as error:
        console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=error.exit_code) from None
    except Exception as error:  # a failure midway: say where, and that the champion stands
        console.print(
            f"[bold red]retrain failed:[/] {type(error).__name__}: {error}; the champion is "
            "unchanged",
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


def _existing_store(settings: Config) -> None:
    """A command that only reads or moves aliases needs a store that exists: opening a
    missing local one would create it (an empty mlflow.db wherever the command ran)."""
    from serving.model_store import ModelUnavailableError, require_store

    try:
        require_store(settings.mlflow.tracking_uri)
    except ModelUnavailableError as error:
        raise ContractError(str(error)) from None


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The model version to make champion.")],
    config: ConfigOption = None,
) -> None:
    """Make a registered model version the champion by hand (the old one is remembered)."""
    from training import tracking

    with _clear_errors():
        settings = _config(config, None)
        _existing_store(settings)
    try:
        previous = tracking.promote(settings.mlflow, version)
    except tracking.RegistryError as error:
        console.print(f"[bold red]error:[/] {error}", markup=True)
        raise typer.Exit(code=2) from None
    console.print(f"{settings.mlflow.model_name}@champion: version {previous} -> {version}")


@app.command()
def rollback(config: ConfigOption = None) -> None:
    """Give the champion alias back to the previous champion."""
    from training import tracking

    with _clear_errors():
        settings = _config(config, None)
        _existing_store(settings)
    try:
        before, after = tracking.rollback(settings.mlflow)
    except tracking.RegistryError as error:
        console.print(f"[bold red]error:[/] {error}", markup=True)
        raise typer.Exit(code=2) from None
    console.print(f"{settings.mlflow.model_name}@champion: version {before} -> {after}")


@app.command()
def serve(
    config: ConfigOption = None,
    model_uri: Annotated[
        str | None, typer.Option(help="Registry URI to serve; default models:/leadscore@champion.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    accounts: Annotated[
        str | None,
        typer.Option(
            help="Snapshot folder or database URL giving each lead its account's history "
            "(serve.accounts); without it account features are unknown."
        ),
    ] = None,
) -> None:
    """Run the scoring API under uvicorn: POST /v1/score, /v1/score/batch; GET /v1/model,
    /healthz, /readyz, /metrics; docs at /docs.

    The model is loaded once at start-up (with bounded retries) and reloaded by POST
    /v1/admin/reload or, with serve.poll_seconds, when its alias moves. With --accounts, the
    snapshot's account history is read with the model (and again when its files change).
    Set LEADSCORE_API_KEYS and LEADSCORE_ADMIN_KEYS (comma-separated) to require keys in the
    X-API-Key header.
    """
    import logging

    import uvicorn

    from serving.app import create_app
    from serving.guard import uvicorn_settings

    with _clear_errors():
        settings = _config(config, None)
        overrides = {
            k: v
            for k, v in {
                "model_uri": model_uri,
                "host": host,
                "port": port,
                "accounts": accounts,
            }.items()
            if v
        }
        if overrides:
            values = settings.model_dump(by_alias=True)
            values["serve"] = {**values["serve"], **overrides}
            settings = Config.model_validate(values)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    api = create_app(settings)
    uvicorn.run(
        api,
        host=settings.serve.host,
        port=settings.serve.port,
        access_log=False,  # per-request log lines cost ~0.1 ms each (bench/serve.py)
        # head timeout and size, connections, and shedding before a task is made
        **uvicorn_settings(settings.serve.limits, api.state.pressure),
    )


# --- leadscore predict (batch scoring; the work is in serving/batch.py and batch_io.py) ---
@app.command()
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
    from serving.batch_io import OutputError, check_sql_target, check_writable, predict_job
    from serving.model_store import ModelUnavailableError, load_model

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with _clear_errors():
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
        settings = _config(config, snapshot)
        uri = model_uri or settings.serve.model_uri
        try:
            model = load_model(uri, settings.mlflow.tracking_uri)
        except ModelUnavailableError as error:
            raise ContractError(str(error)) from None
        if engine == "spark":  # the same job on Spark: serving/spark_engine.py
            sql = (to_sql, table) if to_sql is not None and table is not None else None
            _predict_on_spark(settings, model, moment, out, master, sql)
            return
        # the snapshot is read as the model was trained (mapping, custom fields)
        snap = read_snapshot_for(model.config, settings)
        for line in snap.report.lines():
            console.print(line, highlight=False)
        try:
            with _progress("scoring open MQLs") as update:
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
            console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
            raise typer.Exit(code=1) from None
    for line in summary.lines():
        console.print(line, highlight=False)


def read_snapshot_for(model_config: Config, settings: Config) -> Any:
    """Read the settings' source with the model's mapping and custom fields (and the
    settings' `features.workers`: how this machine reads, not how the model was trained)."""
    from features.reader import read_snapshot

    features = model_config.features.model_copy(update={"workers": settings.features.workers})
    return read_snapshot(
        model_config.model_copy(update={"source": settings.source, "features": features})
    )


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
        predict_spark_job,
        session_running,
        spark_session,
    )

    ours = not session_running()  # a session already running (a notebook's) is left running
    spark = spark_session(master or DEFAULT_MASTER)
    try:
        with _progress("Spark tasks") as update:
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
            )
    except OutputError as error:
        console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=1) from None
    finally:
        if ours:
            spark.stop()
    for line in result.lines() + summary.lines():
        console.print(line, highlight=False)


# --- leadscore monitor (drift against the training reference; the work is in
# training/monitor_report.py) ---
@app.command()
def monitor(
    scores: Annotated[
        list[Path],
        typer.Option(
            "--scores",
            help="A scores file of `leadscore predict`, its <stem>.monitor.json beside it; "
            "repeat for several runs.",
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
    from training import monitor_report
    from training.monitor import MonitorError

    with _clear_errors():
        try:
            settings = _config(config, snapshot)
            runs = [monitor_report.read_run(path) for path in scores]
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


rules_app = Typer(help="The rule-based points model marketing teams use.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@rules_app.command("suggest")
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
    import training.rules as rules_module
    from common.io import write_atomic
    from features.pipeline import build_training_set
    from features.reader import read_snapshot
    from training.baseline import suggest_rules

    with _clear_errors():
        settings = _config(config, snapshot)
        snap = read_snapshot(settings)
        with _progress("building rows") as update:
            training_set, _ = build_training_set(snap, settings, update)
        suggestion = suggest_rules(training_set, snap, settings, rules_path)
    text = rules_module.rules_to_yaml(suggestion.rules)

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    write_atomic(out, write)
    if suggestion.table is not None:
        console.print(suggestion.table.to_string(index=False), highlight=False)
    shown = ", ".join(f"{name} {auc:.4f}" for name, auc in suggestion.held_out_auc.items())
    console.print(
        f"AUC on the held-out 30% of rows: {shown}. Wrote {out}; use it with training.rules "
        "in the config.",
        highlight=False,
    )


def main() -> None:  # pragma: no cover - the console script
    from serving.model_store import quiet_mlflow

    quiet_mlflow()  # no "Downloading artifacts" bars (train's gate loads the champion too)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
