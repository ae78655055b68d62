"""MLflow: one run per training, the model as one pyfunc from code, the registry and its aliases.

A new version gets the alias `challenger`; it becomes `champion` only if it passes the gate
against the current champion, both scored on the same recent test slice. `promote` and
`rollback` move the alias by hand; the previous champion is remembered in a registry tag.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.config import Config, GateConfig, MlflowConfig
from features.reader import Snapshot
from training.drift import reference_profile
from training.evaluate import classification_metrics
from training.guards import label_differences
from training.hazard_fit import split_periods
from training.integrity import (
    DIGESTS_KEY,
    FILES_KEY,
    artifact_digests,
    digests_digest,
    files_tag,
    folder_digests,
    load_verified,
)
from training.train import TrainResult, feature_frame

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_TAG = "previous_champion"
#: The run tag holding what a label means (horizon, snapshot policy, flat or timestamped).
LABEL_TAG = "label_definition"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why."""


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger may replace the champion, and why."""

    passed: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def gate(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    bounds: GateConfig,
    rules: Mapping[str, float] | None = None,
) -> GateDecision:
    """Compare metrics measured on the same test slice (pure: no registry access).

    `rules`, when the rules' points were scored on the slice too: a model that ranks no better
    than the points marketing already has is not worth serving, champion or not.
    """
    reasons = []
    passed = True
    if bounds.beat_rules and rules is not None and challenger["roc_auc"] <= rules["roc_auc"]:
        passed = False
        reasons.append(
            f"AUC {challenger['roc_auc']:.4f} no better than the rules' points "
            f"({rules['roc_auc']:.4f})"
        )
    # the bound is on the calibration error beyond what chance alone gives on these rows
    bound = bounds.max_ece + challenger.get("ece_floor", 0.0)
    if challenger["ece"] > bound:
        passed = False
        reasons.append(
            f"calibration error {challenger['ece']:.4f} above {bound:.4f} "
            f"({bounds.max_ece} beyond the {challenger.get('ece_floor', 0.0):.4f} of chance)"
        )
    if champion is None:
        reasons.append("no champion yet")
    elif challenger["roc_auc"] < champion["roc_auc"] - bounds.auc_tolerance:
        passed = False
        reasons.append(
            f"AUC {challenger['roc_auc']:.4f} below the champion's {champion['roc_auc']:.4f} "
            f"by more than {bounds.auc_tolerance}"
        )
    else:
        reasons.append(
            f"AUC {challenger['roc_auc']:.4f} against the champion's {champion['roc_auc']:.4f}"
        )
    return GateDecision(
        passed, reasons, dict(challenger), None if champion is None else dict(champion)
    )


def _mlflow() -> Any:
    import logging
    import os

    # a terminal job: no per-artifact progress bars or store-migration chatter
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import mlflow

    return mlflow


def connect(settings: MlflowConfig) -> str:
    """Point MLflow at the configured store; returns the experiment id (created if needed)."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.artifact_location
    if location and "://" not in location:
        location = Path(location).resolve().as_uri()
    return str(mlflow.create_experiment(settings.experiment, artifact_location=location))


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).parent,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def fingerprint(training_set: pd.DataFrame) -> str:
    """A hash of the rows (lead, cutoff, label) and feature names: which data trained the model."""
    hashed = pd.util.hash_pandas_object(
        training_set[["lead_id", "cutoff", "label"]], index=False
    ).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update("|".join(map(str, training_set.columns)).encode())
    return digest.hexdigest()[:16]


def _flat_params(config: Config, result: TrainResult) -> dict[str, Any]:
    params: dict[str, Any] = {f"lgb.{k}": v for k, v in config.training.params.items()}
    params.update(
        {
            "seed": config.training.seed,
            "horizon_days": config.horizon_days,
            "weekly_weeks": config.snapshot_policy.weekly_weeks,
            "sampled_ages": config.snapshot_policy.sampled_ages,
            "bend_ages": config.snapshot_policy.bend_ages,
            "at_mql": config.features.at_mql,
            "windows_days": ",".join(map(str, config.features.windows_days)),
            "increasing_events": ",".join(config.training.increasing_events) or "none",
            "split": result.split.kind,
            "calibration": result.scorer.calibrator.method,
            "tier_policy": config.training.tiers.kind,
            "best_iteration": result.scorer.booster.current_iteration(),
            "n_features": len(result.scorer.spec.names),
        }
    )
    return params


def _flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for scorer, values in metrics["test"].items():
        for key, value in values.items():
            if isinstance(value, int | float) and np.isfinite(value):
                flat[f"test_{scorer}_{key}"] = float(value)
    return flat


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "lightgbm", "pandas", "numpy", "pyarrow")]


def training_reference(
    result: TrainResult, config: Config, training_set: pd.DataFrame
) -> dict[str, Any]:
    """The drift reference of a trained model, built like the runs it will be compared with.

    Rows of every slice, not the test slice alone: the test slice (the newest leads) lacks
    its leads' later rows, still censored (see `training.drift`); on a large training set, the
    uniform sample of them that training scored for it (`TrainResult.reference`). With
    `snapshot_policy.sampled_ages`, only the rows after `mql_at`: their ages are drawn over
    each lead's open life, the mix a nightly run of open MQLs shows, while the extra rows at
    `mql_at` would overweight new MQLs. Rows are grouped by the week of their cutoff, so the
    reference also knows how far one week drifts from the whole by the calendar alone.

    A flat export's batch run scores the leads not converted (`serving.batch.open_flat_rows`),
    whose scores sit far below those of all leads: its reference holds the rows labelled 0
    only, else every run of it would read as drift in the probability and the tiers.
    """
    training_set = split_periods(training_set)[0]  # the rows `result.scored` holds
    features = feature_frame(training_set)
    probability = result.scored["probability"].to_numpy()
    tier = result.scored["tier"].to_numpy()
    rows_from = "train, validation, calibration and test slices"
    chosen = np.ones(len(training_set), dtype=bool)
    if result.reference is not None and not result.reference.all():
        chosen = result.reference.copy()
        rows_from += f", a seeded uniform sample of {int(chosen.sum()):,} of their rows"
    cutoff = training_set["cutoff"]
    if cutoff.isna().all():
        chosen &= training_set["label"].to_numpy() == 0
        rows_from += ", rows not converted (the leads a flat export's batch run scores)"
    elif config.snapshot_policy.sampled_ages > 0 and "days_since_mql" in features:
        chosen &= features["days_since_mql"].to_numpy(dtype=np.float64, na_value=np.nan) > 0
        rows_from += ", rows after mql_at (ages as a nightly run meets them)"
    periods = None
    if cutoff.notna().all():
        periods = cutoff.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("W").astype(str)
        periods = periods.to_numpy()[chosen]
    reference = reference_profile(
        features[chosen],
        probability[chosen],
        tier[chosen],
        result.scorer.spec,
        horizon_days=config.horizon_days,
        weekly_weeks=config.snapshot_policy.weekly_weeks,
        rows_from=rows_from,
        periods=periods,
    )
    reference["sampled_ages"] = config.snapshot_policy.sampled_ages
    return reference


def log_training(
    result: TrainResult,
    config: Config,
    training_set: pd.DataFrame,
    *,
    report_dir: Path | None,
    rules_yaml: str | None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    started_at: datetime | None = None,
    snapshot: Snapshot | None = None,
    snapshot_location: str | Path | None = None,
    training_set_location: str | Path | None = None,
    read_counts: Mapping[str, int] | None = None,
) -> tuple[str, str]:
    """Log one run: params, config, data fingerprint, git commit, metrics, report, the model,
    and the snapshot and training set as dataset inputs (`training.lineage`).

    `started_at`: when the job began (reading the snapshot), so that the run spans the whole
    training, not only the logging; default: when `train_model` began. `read_counts`: what
    reading the export set aside (e.g. `quarantined_leads`), logged as metrics `read_<name>`.
    Returns (run_id, model_uri).
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    from training import lineage

    experiment_id = connect(config.mlflow)
    example = result.test_features.head(5).reset_index(drop=True)
    example = example.astype(dict.fromkeys(example.select_dtypes("number").columns, "float64"))
    output = result.scorer.score(example)
    signature = infer_signature(example, output)
    began = started_at or result.started_at
    created = mlflow.MlflowClient().create_run(
        experiment_id,
        start_time=None if began is None else int(began.timestamp() * 1000),
        run_name=run_name,
    )
    with (
        mlflow.start_run(run_id=created.info.run_id) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        lineage.log_inputs(
            training_set,
            training_set_location,
            snapshot,
            snapshot_location,
            workers=config.features.workers,
        )
        mlflow.log_params(_flat_params(config, result))
        mlflow.log_dict(config.model_dump(mode="json"), "config.json")
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "data_fingerprint": fingerprint(training_set),
                "rows": str(len(training_set)),
                **{f"rows_{k}": str(v) for k, v in result.split.counts().items()},
                LABEL_TAG: json.dumps(result.label_definition, sort_keys=True),
                **(tags or {}),
            }
        )
        mlflow.log_metrics(_flat_metrics(result.metrics))
        if read_counts:
            mlflow.log_metrics({f"read_{k}": float(v) for k, v in read_counts.items()})
        if report_dir is not None:
            mlflow.log_artifacts(str(report_dir), "report")
        artifacts = {k: str(v) for k, v in result.scorer.save(Path(tmp) / "model").items()}
        if rules_yaml is not None:
            rules_path = Path(tmp) / "model" / "rules.yaml"
            rules_path.write_text(rules_yaml, encoding="utf-8")
            artifacts["rules"] = str(rules_path)
        # the drift reference (the test slice's distributions), for `leadscore monitor`
        reference_path = Path(tmp) / "model" / "reference.json"
        reference_path.write_text(
            json.dumps(training_reference(result, config, training_set), indent=1), encoding="utf-8"
        )
        artifacts["reference"] = str(reference_path)
        # how features are built (windows, mapping, custom fields): serving must build the same
        config_path = Path(tmp) / "model" / "config.json"
        config_path.write_text(config.model_dump_json(indent=1), encoding="utf-8")
        artifacts["config"] = str(config_path)
        # what was logged, byte for byte: checked at every load (training.integrity); a
        # digest of these digests goes on the model version when it is registered
        digests = artifact_digests(artifacts)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            model_config={DIGESTS_KEY: digests},
            code_paths=[str(MODEL_CODE.parent)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )
        # every file of the model as logged (its code too), kept outside the artifact store:
        # loaders check a downloaded folder against it before MLflow runs any of it
        (Path(tmp) / "logged").mkdir()
        logged = mlflow.artifacts.download_artifacts(
            artifact_uri=info.model_uri, dst_path=str(Path(tmp) / "logged")
        )
        mlflow.set_tag(FILES_KEY, files_tag(folder_digests(Path(logged))))
    return str(run.info.run_id), str(info.model_uri)


def _client(settings: MlflowConfig) -> Any:
    mlflow = _mlflow()
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def alias_version(settings: MlflowConfig, alias: str) -> str | None:
    """The version behind an alias, or None."""
    client = _client(settings)
    try:
        return str(client.get_model_version_by_alias(settings.model_name, alias).version)
    except Exception:  # MlflowException when the model or alias does not exist
        return None


def register(settings: MlflowConfig, model_uri: str) -> str:
    """Register the logged model as a new version with the alias `challenger`, tagged with
    one digest of its artifacts' digests (a copy outside the artifact store, checked at load
    by `serving.model_store`)."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(settings.tracking_uri)
    flavor = mlflow.models.get_model_info(model_uri).flavors.get("python_function", {})
    digests = (flavor.get("config") or {}).get(DIGESTS_KEY)
    tags = {DIGESTS_KEY: digests_digest(digests)} if digests else None
    version = mlflow.register_model(model_uri, settings.model_name, tags=tags)
    _client(settings).set_registered_model_alias(settings.model_name, CHALLENGER, version.version)
    return str(version.version)


def describe_version(
    settings: MlflowConfig, version: str, verdict: Challenge, result: TrainResult
) -> None:
    """Write the gate's verdict on the model version: a description in words and `gate.*`
    tags with its figures (run after `challenge`, whatever it decided)."""
    from training import lineage
    from training.reporting import verdict as verdict_of

    client = _client(settings)
    test = result.metrics["test"]
    words = verdict_of(
        test["model"], test.get("rules"), settings.gate, registration_of(settings, version, verdict)
    )
    headline = f"{'Ready' if words.ready else 'Not ready'}: {words.detail}"
    client.update_model_version(
        settings.model_name,
        version,
        description=lineage.version_description(verdict, test.get("rules"), headline),
    )
    for key, value in lineage.gate_tags(verdict).items():
        client.set_model_version_tag(settings.model_name, version, key, value)


def registration_of(settings: MlflowConfig, version: str, verdict: Challenge) -> Any:
    """The report's view of a registered, gated version (`training.reporting.Registration`)."""
    from training.reporting import Registration

    return Registration(
        name=settings.model_name,
        version=version,
        promoted=verdict.promoted,
        passed=verdict.decision.passed and verdict.problem is None,
        reasons=tuple(verdict.decision.reasons),
        champion_version=verdict.champion_version,
        champion=verdict.decision.champion,
        problem=verdict.problem,
    )


def record_verdict(
    settings: MlflowConfig,
    version: str,
    verdict: Challenge,
    result: TrainResult,
    run_id: str,
    pages: Any,
    report_dir: Path,
    say: Callable[[str], Any],
) -> bool:
    """After the gate: the verdict on the model version (`describe_version`), the report
    rewritten with the version and the verdict, and logged to the run again.

    The gate may already have moved the champion, so a failure here is said, not raised;
    returns whether everything was written.
    """
    try:
        describe_version(settings, version, verdict, result)
        pages.write(report_dir, registration_of(settings, version, verdict))
        log_report(settings, run_id, report_dir)
    except Exception as error:
        say(
            f"warning: the gate's verdict was not written on version {version} or in the "
            f"report: {type(error).__name__}: {error}"
        )
        return False
    return True


def log_report(settings: MlflowConfig, run_id: str, report_dir: Path) -> None:
    """Log (again) the report folder to a run, e.g. once the page names its version."""
    _client(settings).log_artifacts(run_id, str(report_dir), "report")


def champion_metrics(
    settings: MlflowConfig, features: pd.DataFrame, labels: np.ndarray
) -> tuple[str | None, dict[str, float] | None, str | None]:
    """Score the current champion on these test rows: (version, metrics, problem)."""
    version = alias_version(settings, CHAMPION)
    if version is None:
        return None, None, None
    client = _client(settings)
    try:
        run_id = client.get_model_version(settings.model_name, version).run_id
        tags = client.get_run(run_id).data.tags if run_id else None
        # checked before MLflow runs its code: a tampered champion never runs at training
        model = load_verified(settings.model_name, version, tags)
        spec_names = model.metadata.get_input_schema().input_names()
        scored = model.predict(features[spec_names])
    except Exception as error:  # the champion may expect features this data no longer has
        return (
            version,
            None,
            f"the champion (version {version}) cannot score this test slice: {error}",
        )
    return version, classification_metrics(labels, scored["probability"].to_numpy()), None


def version_label_definition(settings: MlflowConfig, version: str) -> dict[str, Any]:
    """The label definition a registered version was trained with: its run's tag, or for runs
    logged before the tag existed, its parameters (horizon_days, weekly_weeks, split)."""
    client = _client(settings)
    run = client.get_run(client.get_model_version(settings.model_name, version).run_id)
    tagged = run.data.tags.get(LABEL_TAG)
    if tagged:
        return dict(json.loads(tagged))
    params = run.data.params
    known: dict[str, Any] = {}
    for key in ("horizon_days", "weekly_weeks"):
        if key in params:
            known[key] = int(params[key])
    if "split" in params:
        known["flat"] = params["split"] == "stratified"
    return known


def set_champion(settings: MlflowConfig, version: str) -> str | None:
    """Move `champion` to `version`, remembering the one it replaces; returns that one."""
    client = _client(settings)
    previous = alias_version(settings, CHAMPION)
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    if previous is not None and previous != version:
        client.set_registered_model_tag(settings.model_name, PREVIOUS_TAG, previous)
    return previous


@dataclass(frozen=True)
class Challenge:
    """A registered challenger against the champion: the gate's decision and what it did."""

    decision: GateDecision
    champion_version: str | None  # the champion it was compared with (None: there was none)
    problem: str | None  # the champion could not score the test slice: nothing was promoted
    promoted: bool


def _run_step(name: str, action: Callable[[], Any]) -> Any:
    return action()


def challenge(
    settings: MlflowConfig,
    result: TrainResult,
    version: str,
    *,
    step: Callable[[str, Callable[[], Any]], Any] = _run_step,
) -> Challenge:
    """Score the champion on the challenger's test slice, gate the challenger (against the
    rules' points too, when they were scored) and make `version` champion if it passes.

    A challenger whose label definition (horizon, snapshot policy, flat or timestamped)
    differs from the champion's is neither compared nor promoted: `problem` says so.

    `step(name, action)` runs the registry steps ("scoring the champion", "promoting"), so a
    caller can name their failures; by default it just runs them.
    """
    champion_now = step("reading the champion", lambda: alias_version(settings, CHAMPION))
    if champion_now is not None and result.label_definition:
        theirs = step(
            "reading the champion's label definition",
            lambda: version_label_definition(settings, champion_now),
        )
        differences = label_differences(result.label_definition, theirs)
        if differences:
            problem = (
                f"the label definition differs from the champion's (version {champion_now}): "
                + "; ".join(differences)
                + ". The two are not comparable, so nothing was promoted"
            )
            decision = GateDecision(False, [problem], dict(result.metrics["test"]["model"]))
            return Challenge(decision, champion_now, problem, False)
    test = result.scored["slice"] == "test"
    labels = result.scored.loc[test, "label"].to_numpy()
    champion_version, champion, problem = step(
        "scoring the champion", lambda: champion_metrics(settings, result.test_features, labels)
    )
    decision = gate(
        result.metrics["test"]["model"],
        champion,
        settings.gate,
        rules=result.metrics["test"].get("rules"),
    )
    promoted = problem is None and decision.passed
    if promoted:
        step("promoting", lambda: set_champion(settings, version))
    return Challenge(decision, champion_version, problem, promoted)


def promote(settings: MlflowConfig, version: str) -> str | None:
    """Make `version` the champion by hand; returns the previous champion."""
    client = _client(settings)
    try:
        client.get_model_version(settings.model_name, version)
    except Exception:
        raise RegistryError(f"{settings.model_name} has no version {version}") from None
    return set_champion(settings, version)


def rollback(settings: MlflowConfig) -> tuple[str, str]:
    """Give `champion` back to the previous champion; returns (from, to)."""
    client = _client(settings)
    current = alias_version(settings, CHAMPION)
    try:
        model = client.get_registered_model(settings.model_name)
    except Exception:
        raise RegistryError(f"no registered model named {settings.model_name}") from None
    previous = model.tags.get(PREVIOUS_TAG)
    if current is None or previous is None:
        raise RegistryError(f"{settings.model_name} has no previous champion to roll back to")
    client.set_registered_model_alias(settings.model_name, CHAMPION, previous)
    client.set_registered_model_tag(settings.model_name, PREVIOUS_TAG, current)
    return current, previous
