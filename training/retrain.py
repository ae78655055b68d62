"""The retraining loop: the latest snapshot in, a new model version out, promoted only through
the gate; safe to run on a schedule.

- **Which snapshot.** A given folder or URL, or the newest sub-folder of a snapshots root:
  newest by its `snapshot.json` `as_of`; a folder without one counts by its modification time;
  ties go to the greater name. A sub-folder whose `snapshot.json` is unreadable is an error,
  not skipped: silently training on an older snapshot would hide the broken export.
- **One run at a time.** A run holds a lock for its registry until it ends: an exclusive
  `flock` on a file beside a SQLite store (`mlflow.db.retrain.lock`) or in the file store's
  folder, and a PostgreSQL advisory lock for a registry kept in PostgreSQL. A second run does
  not wait: it fails at once with `RetrainBusyError` (exit status 3 in the CLI). The kernel
  drops both locks when their process dies, so a killed run never leaves a stale lock.
- **The champion moves last.** Every step that can fail (reading, training, logging,
  registering, scoring the champion) comes before `set_champion`, one alias assignment: a run
  that fails midway leaves `champion` where it was.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.config import Config, MlflowConfig
from features.contract import ContractError
from features.reader import shown_url
from features.truth import truth_of_rows

#: Exit statuses of `leadscore retrain`, for schedulers.
EXIT_OK = 0  # a new version is registered; promoted, or kept out by the gate
EXIT_FAILED = 1  # failed midway (registry, artifact store, unexpected); champion unchanged
EXIT_BAD_INPUT = 2  # bad snapshot or config, or training refused the data; champion unchanged
EXIT_BUSY = 3  # another retrain holds the lock; nothing done
# 4 and 5: a guard refused to register (training.guards.EXIT_LEAK, EXIT_TOO_LITTLE_DATA)

Progress = Callable[[int, int], None]
ProgressFactory = Callable[[str], AbstractContextManager[Progress]]
Say = Callable[[str], None]


class RetrainBusyError(RuntimeError):
    """Another retrain of the same registry is running; the message says which lock."""


class RetrainError(RuntimeError):
    """A retrain step failed; the message names the step. The champion is unchanged."""


# --------------------------------------------------------------------------- the snapshot


def declared_as_of(folder: Path) -> pd.Timestamp | None:
    """The `as_of` a snapshot folder declares in its `snapshot.json`, or None."""
    manifest = folder / "snapshot.json"
    if not manifest.is_file():
        return None
    try:
        loaded = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ContractError(f"{manifest}: not a readable JSON object: {error}") from None
    if not isinstance(loaded, dict):
        raise ContractError(f"{manifest}: must hold a JSON object")
    if loaded.get("as_of") is None:
        return None
    try:
        stamp = pd.Timestamp(loaded["as_of"])
    except (ValueError, TypeError):
        raise ContractError(
            f"{manifest}: as_of {loaded['as_of']!r} is not an ISO 8601 time"
        ) from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def latest_snapshot(root: Path) -> Path:
    """The newest snapshot folder under `root` (see the module docstring for the order)."""
    if not root.is_dir():
        raise ContractError(f"snapshots root not found: {root}")
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not folders:
        raise ContractError(f"no snapshot folders in {root}")

    def newest(folder: Path) -> tuple[pd.Timestamp, str]:
        stamp = declared_as_of(folder)
        if stamp is None:
            stamp = pd.Timestamp(folder.stat().st_mtime, unit="s", tz="UTC")
        return stamp, folder.name

    return max(folders, key=newest)


# --------------------------------------------------------------------------- the lock


def default_lock_path(settings: MlflowConfig) -> Path:
    """Beside a SQLite store, in a local file store's folder, else under data/."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if database and database != ":memory:":
            db = Path(database)
            return db.with_name(f"{db.name}.retrain.lock")
    elif uri.startswith("file:") or "://" not in uri:
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
        return folder / ".leadscore-retrain.lock"
    return Path("data") / f".{settings.model_name}-retrain.lock"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path`, taken without waiting; RetrainBusyError if held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise RetrainBusyError(
                f"another retrain is running (lock {path} held by {holder}); not starting a "
                "second one"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} since {started}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)  # the file stays: deleting a lock file races with the next taker


def advisory_key(model_name: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for this model's retraining."""
    digest = hashlib.sha256(f"leadscore-retrain:{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _psycopg_url(uri: str) -> str:
    """MLflow's `postgresql://` means psycopg2; use psycopg 3 (installed) for the lock."""
    scheme, rest = uri.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else uri


@contextmanager
def advisory_lock(uri: str, model_name: str) -> Iterator[None]:
    """A session-level PostgreSQL advisory lock, taken without waiting; released by the
    server if this process dies (its connection closes)."""
    import sqlalchemy as sa

    engine = sa.create_engine(_psycopg_url(uri), poolclass=sa.pool.NullPool)
    key = advisory_key(model_name)
    try:
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise RetrainBusyError(
                    f"another retrain is running (PostgreSQL advisory lock {key} on "
                    f"{shown_url(uri)} is held); "
                    "not starting a second one"
                )
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


def registry_lock(settings: MlflowConfig, lock_file: Path | None = None) -> Any:
    """The lock that serialises retrains of this registry (see the module docstring)."""
    uri = settings.tracking_uri
    if lock_file is None and uri.split(":", 1)[0].split("+")[0] in ("postgresql", "postgres"):
        return advisory_lock(uri, settings.model_name)
    return file_lock(lock_file or default_lock_path(settings))


# --------------------------------------------------------------------------- the run


@dataclass
class RetrainOutcome:
    """What one retrain did."""

    snapshot: str
    rows: int = 0
    run_id: str | None = None
    version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    promoted: bool = False
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _truth(folder: Path | None, rows: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """The generator's true probabilities per row, for synthetic snapshots (the report's oracle)."""
    return truth_of_rows(folder, rows, horizon_days)


def _no_progress(label: str) -> AbstractContextManager[Progress]:
    return nullcontext(lambda done, total: None)


def retrain(
    settings: Config,
    report_dir: Path,
    *,
    say: Say = print,
    progress: ProgressFactory = _no_progress,
) -> RetrainOutcome:
    """Read, train, log, register as challenger, gate, and promote if it passes.

    Call it while holding `registry_lock`. Contract, config and training errors propagate as
    they are (bad input); any other failure becomes a `RetrainError` naming the step.
    """
    import training.rules as rules_module
    from features.custom_types import with_custom_fields
    from features.pipeline import build_training_set
    from features.quarantine import write_quarantine
    from features.reader import read_snapshot
    from training import tracking
    from training.baseline import rules_baseline
    from training.guards import window
    from training.lineage import data_words, run_name, shown_location
    from training.reporting import TrainingReport, summary_lines
    from training.train import TrainingError, train_model

    started = time.perf_counter()
    started_at = datetime.now(UTC)  # the MLflow run spans the whole retrain
    source = settings.source.url or str(settings.source.path)
    outcome = RetrainOutcome(snapshot=source)
    outcome.champion_before = outcome.champion_after = _step(
        "reading the registry", lambda: tracking.alias_version(settings.mlflow, tracking.CHAMPION)
    )
    say(f"retraining from {source}; champion now: version {outcome.champion_before or '(none)'}")

    snap = read_snapshot(settings)
    settings = with_custom_fields(settings, snap.custom_fields)  # inferred types travel
    for line in snap.report.lines():
        say(line)
    if snap.flat:
        raise ContractError("retrain needs a timestamped snapshot; this is a flat export")
    with progress("building features") as update:
        training_set, counts = build_training_set(snap, settings, update)
    training_set, window_note = window(training_set, settings)  # training.since, window_days
    outcome.rows = len(training_set)
    say(f"{counts.kept:,} rows, {counts.censored:,} censored (horizon still open)")
    baseline = rules_baseline(training_set, settings, snap)
    rule_set = baseline.rules
    truth = _truth(settings.source.path, training_set, settings.horizon_days)
    with progress("boosting rounds") as update:
        result = train_model(
            training_set, settings, points=baseline.points, truth=truth, progress=update
        )
    result.metrics["rules_baseline"] = baseline.label
    result.notes[:0] = [window_note] if window_note else []
    for line in result.notes + summary_lines(result):
        say(line)
    refusals = result.refusals()
    if refusals:  # the guards' exit codes (training.guards), or 2
        raise TrainingError(
            "; ".join(r.message for r in refusals) + "; not registered", refusals[0].exit_code
        )
    pages = _step(
        "drawing the report",
        lambda: TrainingReport.build(
            result,
            config=settings,
            thresholds=dict(rule_set.thresholds),
            source=data_words(source, snap.as_of),
            extra_metrics={"read": snap.report.quarantine.counts()},
        ),
    )
    _step(
        "writing the quarantine",
        lambda: write_quarantine(
            snap.report.quarantine, settings.source.quarantine or report_dir / "quarantine.csv"
        ),
    )
    report = _step("writing the report", lambda: pages.write(report_dir))
    run_id, model_uri = _step(
        "logging the run to MLflow",
        lambda: tracking.log_training(
            result,
            settings,
            training_set,
            report_dir=report_dir,
            rules_yaml=rules_module.rules_to_yaml(rule_set),
            tags={
                "trigger": "retrain",
                "snapshot": shown_location(source),
                "rules_baseline": baseline.label,
            },
            run_name=run_name("retrain", source, snap.as_of),
            started_at=started_at,
            snapshot=snap,
            snapshot_location=source,
            read_counts=snap.report.quarantine.counts(),
        ),
    )
    outcome.run_id = run_id
    outcome.version = _step(
        "registering the model", lambda: tracking.register(settings.mlflow, model_uri)
    )
    say(f"MLflow run {run_id}; version {outcome.version} is challenger; report {report}")
    version = str(outcome.version)
    verdict = tracking.challenge(settings.mlflow, result, version, step=_step)
    # after the gate (which may have moved the champion): a failure here is only said
    tracking.record_verdict(
        settings.mlflow, version, verdict, result, run_id, pages, report_dir, say
    )
    outcome.reasons = list(verdict.decision.reasons)
    if verdict.problem is not None:
        outcome.reasons = [verdict.problem]
    elif verdict.promoted:
        outcome.promoted = True
        outcome.champion_after = outcome.version
    else:
        outcome.champion_after = verdict.champion_version
    outcome.seconds = time.perf_counter() - started
    return outcome


def _step(name: str, action: Callable[[], Any]) -> Any:
    """Run one registry or storage step; its failure becomes a RetrainError naming it."""
    try:
        return action()
    except (ContractError, RetrainError):
        raise
    except Exception as error:
        raise RetrainError(f"{name} failed: {type(error).__name__}: {error}") from error
