"""The training pipeline: a snapshot (or a training-set file) in, a gated model version out.

One function, `run_training`, does what `leadscore train`, `leadscore retrain`, the notebooks
and bench/train.py all need, in this order:

1. **Data.** Read the snapshot (when there is one to read) and build the training set, or take
   a training-set file built by `leadscore features`; keep the rows inside the training
   window; join the generator's truth onto them (synthetic snapshots only).
2. **Baseline.** The rules the model is compared with: the configured rules file, or points
   fitted on the training slice (`training.baseline.rules_baseline`), computed on a second
   thread while step 3 builds its feature matrix (`baseline_and_fit`).
3. **Fit.** `fit`: LightGBM, calibration, tiers, evaluation and the leakage audit
   (`training.train.train_model`). It is the one place a model option plugs in.
4. **Report.** The HTML report and the rows reading set aside.
5. **Guards.** A model a guard refuses (docs/training-guards.md) is neither logged nor
   registered: the outcome lists why.
6. **Register.** Log one MLflow run, register the model as challenger and gate it against the
   champion, holding the registry's retrain lock (unless the caller already holds it).

The pipeline prints nothing: it tells its caller what happens through `say` (a line of the
run's story), `note` (a caveat on the model) and `progress` (a bar per long step), and returns
a `TrainOutcome` with everything the caller shows afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from common.config import Config, SourceConfig
from features.contract import ContractError
from features.reader import Snapshot
from features.rows import RowCounts
from training.baseline import Baseline
from training.guards import Refusal
from training.train import RulePoints, TrainResult

Progress = Callable[[int, int], None]
ProgressFactory = Callable[[str], AbstractContextManager[Progress]]
Say = Callable[[str], Any]
Trigger = Literal["train", "retrain"]
#: What builds the training set from a snapshot (`build_training_set`, or the Spark engine's).
BuildTrainingSet = Callable[[Snapshot, Config, Progress | None], tuple[pd.DataFrame, RowCounts]]


class StepError(RuntimeError):
    """A registry or storage step failed; the message names the step."""


def no_progress(label: str) -> AbstractContextManager[Progress]:
    """A progress factory that shows nothing."""
    return nullcontext(lambda done, total: None)


def _silent(line: str) -> None:
    return None


@dataclass
class TrainingData:
    """The rows a model is trained on, and where they came from."""

    settings: Config  # the config with the export's custom fields' inferred types
    training_set: pd.DataFrame  # inside the training window
    snapshot: Snapshot | None
    read_counts: dict[str, int]  # what reading the export set aside
    training_set_path: Path | None = None
    window_note: str | None = None
    truth: np.ndarray | None = None  # the generator's truth per row (synthetic snapshots)

    @property
    def source(self) -> str | None:
        """The snapshot's folder or URL, None when training from a training-set file alone."""
        if self.snapshot is None:
            return None
        return self.settings.source.url or str(self.settings.source.path)


@dataclass
class TrainOutcome:
    """What one training run did, for its caller to show.

    `result` is None for a cross-validation run (`cv_aucs` holds its fold AUCs). A run that a
    guard refused has `refusals`; one that found another run holding the registry lock has
    `busy`; otherwise, when registering, `run_id`, `version` and `verdict` say what happened.
    """

    data: TrainingData
    baseline: Baseline | None = None
    result: TrainResult | None = None
    cv_aucs: list[float] = field(default_factory=list)
    pages: Any = None  # the TrainingReport
    report: Path | None = None
    quarantined: Path | None = None
    refusals: list[Refusal] = field(default_factory=list)
    busy: str | None = None
    run_id: str | None = None
    version: str | None = None
    verdict: Any = None  # tracking.Challenge
    seconds: float = 0.0

    @property
    def settings(self) -> Config:
        return self.data.settings

    @property
    def training_set(self) -> pd.DataFrame:
        return self.data.training_set


def source_exists(source: SourceConfig) -> bool:
    """A configured source that is there to read: a URL, or a folder that exists."""
    return source.url is not None or (source.path is not None and Path(source.path).exists())


def step(name: str, action: Callable[[], Any]) -> Any:
    """Run one registry or storage step; its failure becomes a `StepError` naming it.

    Contract errors (bad input) and step errors pass through as they are.
    """
    try:
        return action()
    except (ContractError, StepError):
        raise
    except Exception as error:
        raise StepError(f"{name} failed: {type(error).__name__}: {error}") from error


# --------------------------------------------------------------------------- 1. data


def truth_of(
    source: SourceConfig, snapshot: Snapshot | None, rows: pd.DataFrame, horizon_days: int
) -> np.ndarray | None:
    """The generator's true probability per row, when the rows come from a synthetic snapshot
    (the report's oracle); None for a training-set file alone, a flat export or real data.
    The one place training joins the truth."""
    from features.truth import truth_of_rows

    if snapshot is None or snapshot.flat:
        return None
    return truth_of_rows(source.path, rows, horizon_days)


def training_data(
    settings: Config,
    *,
    training_set_path: Path | None = None,
    source_named: bool = False,
    timestamped_only: bool = False,
    say: Say = _silent,
    progress: ProgressFactory = no_progress,
    build: BuildTrainingSet | None = None,
) -> TrainingData:
    """Read the rows to train on: the training-set file, or the training set built from the
    snapshot; the snapshot is read whenever there is one (it gives the rules' event points and
    the truth), i.e. without a file, when `source_named`, or when the configured source exists.
    `build` replaces `build_training_set` (`leadscore train --engine spark`).
    """
    from features.custom_types import types_of_training_set, with_custom_fields
    from features.pipeline import build_training_set
    from features.quarantine import summary_counts
    from features.reader import read_snapshot
    from training.guards import window

    snap = None
    read_counts: dict[str, int] = {}
    training_set: pd.DataFrame | None = None
    if training_set_path is not None:
        training_set = pd.read_parquet(training_set_path)
        say(f"read {len(training_set):,} rows from {training_set_path}")
        summary = training_set_path.with_suffix(".json")
        settings = types_of_training_set(settings, training_set, summary)
        read_counts = summary_counts(summary)
    if training_set_path is None or source_named or source_exists(settings.source):
        snap = read_snapshot(settings)
        settings = with_custom_fields(settings, snap.custom_fields)  # inferred types travel
        read_counts = snap.report.quarantine.counts()
        for line in snap.report.lines():
            say(line)
        if timestamped_only and snap.flat:
            raise ContractError("retrain needs a timestamped snapshot; this is a flat export")
        if training_set is None:
            with progress("building features") as update:
                training_set, counts = (build or build_training_set)(snap, settings, update)
            say(f"{counts.kept:,} rows, {counts.censored:,} censored (horizon still open)")
    assert training_set is not None
    training_set, window_note = window(training_set, settings)  # training.since, window_days
    return TrainingData(
        settings=settings,
        training_set=training_set,
        snapshot=snap,
        read_counts=read_counts,
        training_set_path=training_set_path,
        window_note=window_note,
        truth=truth_of(settings.source, snap, training_set, settings.horizon_days),
    )


# --------------------------------------------------------------------------- 3. fit


def fit(
    data: TrainingData, points: RulePoints, progress: ProgressFactory = no_progress
) -> TrainResult:
    """Fit, calibrate, tier and evaluate the model beside the rules' points and the truth.

    `points` may be a function (a baseline still being computed on another thread): it is
    called once the feature matrix is built, just before the fit takes every core.
    """
    from training.train import train_model

    with progress("boosting rounds") as update:
        return train_model(
            data.training_set,
            data.settings,
            points=points,
            truth=data.truth,
            progress=update,
            bend_rows=bend_rows_for(data),
        )


def bend_rows_for(data: TrainingData) -> pd.DataFrame | None:
    """A moment model's extra rows for its bend (`features.rows.bend_rows`), from the snapshot's
    leads; None for another model, a flat export or a training set read without a snapshot."""
    from features.rows import bend_rows

    settings = data.settings
    snapshot = data.snapshot
    moment = settings.training.model == "moment"
    if not moment or snapshot is None or snapshot.flat or snapshot.as_of is None:
        return None
    return bend_rows(
        snapshot.leads,
        snapshot.as_of,
        settings.horizon_days,
        settings.snapshot_policy.bend_ages,
        settings.training.seed,
    )


def baseline_and_fit(
    data: TrainingData, progress: ProgressFactory = no_progress
) -> tuple[Baseline, TrainResult]:
    """The rules baseline and the fitted model.

    Both start with single-threaded work (the baseline's event points and regression; the
    model's split and feature matrix) that needs nothing from the other, so the baseline runs
    on a second thread while the matrix is built; the fit waits for it, then has every core.
    """
    from training.baseline import rules_baseline

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rules-baseline") as beside:
        pending = beside.submit(rules_baseline, data.training_set, data.settings, data.snapshot)
        result = fit(data, lambda: pending.result().points, progress)
        return pending.result(), result


# --------------------------------------------------------------------------- the run


def run_training(
    settings: Config,
    *,
    report_dir: Path | None,
    data: TrainingData | None = None,
    training_set_path: Path | None = None,
    source_named: bool = False,
    register: bool = True,
    cv_folds: int | None = None,
    trigger: Trigger = "train",
    hold_lock: bool = True,
    say: Say = _silent,
    note: Say | None = None,
    progress: ProgressFactory = no_progress,
    started_at: datetime | None = None,
    build: BuildTrainingSet | None = None,
) -> TrainOutcome:
    """Train, report, and (with `register`) log, register and gate one model; see the module.

    `report_dir`: where the report goes (None: no report; registering needs one). `data`:
    rows already read (`training_data`); without it they are read here from
    `training_set_path` and the config's source. `cv_folds`: only cross-validate (nothing is
    written). `trigger` names the run in MLflow ("train" or "retrain"). `hold_lock`: take the
    registry's retrain lock around registering; a caller already holding it passes False.

    Contract, config and training errors propagate (bad input); a failed registry or storage
    step raises `StepError` naming it.
    """
    from training.reporting import summary_lines, tier_lines
    from training.retrain import RetrainBusyError, registry_lock
    from training.train import cross_validated_auc

    if register and report_dir is None and cv_folds is None:
        raise ValueError("registering a model needs a report_dir for its report")
    clock = time.perf_counter()
    started_at = started_at or datetime.now(UTC)  # the MLflow run spans the whole job
    note = note or (lambda text: say(f"note: {text}"))
    if data is None:
        data = training_data(
            settings,
            training_set_path=training_set_path,
            source_named=source_named,
            timestamped_only=trigger == "retrain",
            say=say,
            progress=progress,
            build=build,
        )
    outcome = TrainOutcome(data)
    if cv_folds is not None:
        outcome.cv_aucs = cross_validated_auc(data.training_set, data.settings, cv_folds)
        return _timed(outcome, clock)
    outcome.baseline, outcome.result = baseline_and_fit(data, progress)
    result = outcome.result
    _annotate(result, data, outcome.baseline)
    for text in result.notes:
        note(text)
    for line in summary_lines(result) + tier_lines(result):
        say(line)
    if report_dir is not None:
        write_report(outcome, report_dir, say)
    if not register or report_dir is None:
        return _timed(outcome, clock)
    outcome.refusals = refusals(result, outcome.baseline)
    if outcome.refusals:
        return _timed(outcome, clock)
    lock = registry_lock(data.settings.mlflow) if hold_lock else nullcontext()
    try:
        with lock:
            register_model(outcome, report_dir, trigger, started_at, say)
    except RetrainBusyError as error:
        outcome.busy = str(error)
    return _timed(outcome, clock)


def _timed(outcome: TrainOutcome, clock: float) -> TrainOutcome:
    outcome.seconds = time.perf_counter() - clock
    return outcome


def _annotate(result: TrainResult, data: TrainingData, baseline: Baseline) -> None:
    """The baseline and the training window, in the result's metrics and notes."""
    result.metrics["rules_baseline"] = baseline.label
    result.notes[:0] = [data.window_note] if data.window_note else []
    result.notes.append(
        f"The rules baseline is {baseline.label}."
        if baseline.points is not None
        else f"No rules comparison: {baseline.problem}."
    )


def refusals(result: TrainResult, baseline: Baseline) -> list[Refusal]:
    """Why the model must not be registered (empty: it may be), most basic first."""
    found = result.refusals()
    if baseline.points is None:
        found.append(
            Refusal(
                2,
                f"no rules comparison for the gate ({baseline.problem}): pass --snapshot with "
                "the export the training set was built from, or --no-register",
            )
        )
    return found


# --------------------------------------------------------------------------- 4. report


def write_report(outcome: TrainOutcome, report_dir: Path, say: Say) -> None:
    """Build and write the HTML report, and the rows reading set aside beside it."""
    from features.quarantine import write_quarantine
    from training.lineage import data_words
    from training.reporting import TrainingReport

    data, baseline, result = outcome.data, outcome.baseline, outcome.result
    assert baseline is not None and result is not None
    source, snap = data.source, data.snapshot
    outcome.pages = step(
        "drawing the report",
        lambda: TrainingReport.build(
            result,
            config=data.settings,
            thresholds=dict(baseline.rules.thresholds) if baseline.points is not None else None,
            source=None if snap is None or source is None else data_words(source, snap.as_of),
            extra_metrics={"read": data.read_counts},
        ),
    )
    outcome.report = step("writing the report", lambda: outcome.pages.write(report_dir))
    say(f"report: {outcome.report}")
    if snap is not None:
        quarantine = data.settings.source.quarantine or report_dir / "quarantine.csv"
        outcome.quarantined = step(
            "writing the quarantine",
            lambda: write_quarantine(snap.report.quarantine, quarantine),
        )
        if outcome.quarantined is not None:
            say(f"set-aside rows: {outcome.quarantined}")


# --------------------------------------------------------------------------- 6. register


def register_model(
    outcome: TrainOutcome, report_dir: Path, trigger: Trigger, started_at: datetime, say: Say
) -> None:
    """Log the run, register the model as challenger, gate it and record the verdict."""
    import training.rules as rules_module
    from training import tracking
    from training.lineage import run_name, shown_location

    data, baseline, result = outcome.data, outcome.baseline, outcome.result
    assert baseline is not None and result is not None
    settings, snap, source = data.settings, data.snapshot, data.source
    tags = {"rules_baseline": baseline.label}
    if trigger == "retrain" and source is not None:
        tags = {"trigger": "retrain", "snapshot": shown_location(source), **tags}
    run_id, model_uri = step(
        "logging the run to MLflow",
        lambda: tracking.log_training(
            result,
            settings,
            data.training_set,
            report_dir=report_dir,
            rules_yaml=rules_module.rules_to_yaml(baseline.rules),
            run_name=run_name(
                trigger,
                source or data.training_set_path,
                None if snap is None else snap.as_of,
            ),
            started_at=started_at,
            snapshot=snap,
            snapshot_location=source,
            training_set_location=data.training_set_path,
            read_counts=data.read_counts,
            tags=tags,
        ),
    )
    outcome.run_id = run_id
    version = str(
        step("registering the model", lambda: tracking.register(settings.mlflow, model_uri))
    )
    outcome.version = version
    say(
        f"MLflow run {run_id}; registered {settings.mlflow.model_name} version {version} as "
        "challenger"
    )
    outcome.verdict = tracking.challenge(settings.mlflow, result, version, step=step)
    # after the gate (which may have moved the champion): a failure here is only said
    tracking.record_verdict(
        settings.mlflow, version, outcome.verdict, result, run_id, outcome.pages, report_dir, say
    )
