"""Training: split in time, fit the booster, calibrate, cut tiers, evaluate, audit for leakage.

`train_model` is pure apart from the CPU it burns: a training set in, a `TrainResult` out.
Logging to MLflow, registration and the report live at the edges (`training.tracking`,
`training.reporting`, the CLI).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.config import Config
from training.audit import excluded_still_present, single_feature_auc
from training.calibrate import fit_calibrator
from training.evaluate import classification_metrics, evaluate_scores, tier_table
from training.model import booster_params, fit_booster
from training.scorer import Scorer, feature_matrix, learn_spec
from training.split import Split, stratified_split, time_split
from training.tiers import choose_tiers

ROW_KEYS = ("lead_id", "cutoff", "label")
#: A test AUC above this on lead data usually means a column records the outcome.
SUSPICIOUS_AUC = 0.95
Progress = Callable[[int, int], None]


class TrainingError(ValueError):
    """The training set cannot give an honest model; the message says why."""


@dataclass
class TrainResult:
    """A trained model and everything measured about it."""

    scorer: Scorer
    split: Split
    scored: pd.DataFrame  # lead_id, cutoff, label, slice, probability, tier (+ points, p_true)
    metrics: dict[str, Any]
    audit: pd.DataFrame
    flagged: list[str]
    excluded_present: list[str]
    notes: list[str]
    test_features: pd.DataFrame
    shap_values: np.ndarray
    shap_features: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    started_at: datetime | None = None  # wall clock (UTC) when train_model began and ended
    finished_at: datetime | None = None

    @property
    def registrable(self) -> bool:
        return not self.excluded_present


def feature_frame(training_set: pd.DataFrame) -> pd.DataFrame:
    return training_set.drop(columns=[c for c in ROW_KEYS if c in training_set])


def categorical_columns(features: pd.DataFrame) -> set[str]:
    """Text columns are categorical (the feature pipeline writes categories as `str`)."""
    return {
        str(c)
        for c in features.columns
        if pd.api.types.is_string_dtype(features[c]) or features[c].dtype == object
    }


def split_rows(training_set: pd.DataFrame, config: Config, notes: list[str]) -> Split:
    """Time split when rows have cutoffs; a flat export falls back to a stratified split."""
    shares = config.training.split
    if training_set["cutoff"].notna().all():
        split = time_split(training_set, shares)
    else:
        notes.append(
            "The rows have no cutoff times (a flat export), so the split is stratified and "
            "random, not by time: the test measures fit, not how the model holds up on a "
            "later period."
        )
        split = stratified_split(training_set["label"].to_numpy(), shares, config.training.seed)
    for name, n in split.counts().items():
        labels = training_set["label"].to_numpy()[split.mask(name)]
        if n == 0 or labels.min() == labels.max():
            raise TrainingError(
                f"the {name} slice has {n} rows and only one outcome; more rows are needed "
                f"(slices: {split.counts()})"
            )
    return split


def audit_features(
    features: pd.DataFrame, labels: np.ndarray, categorical: set[str], config: Config
) -> tuple[pd.DataFrame, list[str]]:
    """Single-feature AUCs on the training slice; names above the configured bound."""
    table = single_feature_auc(features, labels, sorted(categorical), config.training.seed)
    table["flagged"] = table["auc"] > config.training.audit_auc
    return table, table.loc[table["flagged"], "feature"].tolist()


def cross_validated_auc(training_set: pd.DataFrame, config: Config, folds: int = 5) -> list[float]:
    """Stratified k-fold test AUCs of the booster (calibration does not change a ranking).

    For data without a time order, such as a flat export, where one random split is noisy.
    Each fold stops early on a stratified 15% of its own training rows.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    labels = training_set["label"].to_numpy().astype(np.int64)
    features = feature_frame(training_set)
    categorical = categorical_columns(features)
    params = booster_params(
        config.training.params, config.training.seed, config.training.num_threads
    )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.training.seed)
    aucs = []
    for fit_rows, held_out in splitter.split(np.zeros(labels.size), labels):
        train_rows, valid_rows = train_test_split(
            fit_rows, test_size=0.15, stratify=labels[fit_rows], random_state=config.training.seed
        )
        spec = learn_spec(features.iloc[train_rows], categorical)
        matrix = feature_matrix(features, spec)
        booster = fit_booster(
            (matrix[train_rows], labels[train_rows]),
            (matrix[valid_rows], labels[valid_rows]),
            spec,
            params,
            config.training.num_boost_round,
            config.training.early_stopping_rounds,
        )
        raw = booster.predict(matrix[held_out], num_iteration=booster.best_iteration)
        aucs.append(float(roc_auc_score(labels[held_out], raw)))
    return aucs


def train_model(
    training_set: pd.DataFrame,
    config: Config,
    *,
    points: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Fit, calibrate, tier and evaluate a model on a training set.

    Args:
        training_set: lead_id, cutoff, label and the feature columns.
        config: the run's config (training, split and tier settings).
        points: the rules' points per row, to compare with on the test slice.
        truth: on synthetic data, the true probability per row (NaN where unknown).
        progress: called with (boosting round, maximum rounds).
    """
    missing = [c for c in ROW_KEYS if c not in training_set]
    if missing:
        raise TrainingError(f"the training set lacks the columns {missing}")
    if len(training_set) == 0:
        raise TrainingError("the training set has no rows")
    started_at = datetime.now(UTC)
    clock = {"start": time.perf_counter()}
    notes: list[str] = []
    labels = training_set["label"].to_numpy().astype(np.int64)
    features = feature_frame(training_set)
    categorical = categorical_columns(features)
    split = split_rows(training_set, config, notes)
    train, valid = split.mask("train"), split.mask("validation")
    calib, test = split.mask("calibration"), split.mask("test")

    spec = learn_spec(features[train], categorical)
    matrix = feature_matrix(features, spec)
    params = booster_params(
        config.training.params, config.training.seed, config.training.num_threads
    )
    booster = fit_booster(
        (matrix[train], labels[train]),
        (matrix[valid], labels[valid]),
        spec,
        params,
        config.training.num_boost_round,
        config.training.early_stopping_rounds,
        progress,
    )
    booster.free_dataset()
    clock["fit"] = time.perf_counter()
    # keep only the trees up to the best round: the saved model is the one that was validated
    booster = type(booster)(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    raw = np.asarray(booster.predict(matrix, raw_score=True), dtype=np.float64)
    calibrator = fit_calibrator(
        raw[calib], labels[calib], config.training.calibration, config.training.seed
    )
    probability = calibrator.apply(raw)
    tiers = choose_tiers(probability[calib], labels[calib], config.training.tiers)
    scorer = Scorer(booster, calibrator, spec, tiers)
    tier = tiers.assign(probability)
    clock["calibrate"] = time.perf_counter()

    scored = training_set[list(ROW_KEYS)].copy()
    scored["slice"] = split.slice_of_row
    scored["probability"] = probability
    scored["tier"] = tier
    scores: dict[str, np.ndarray] = {"model": probability[test]}
    probabilistic = ["model"]
    if points is not None:
        scored["points"] = points
        scores["rules"] = np.asarray(points, dtype=np.float64)[test]
    truth_known = truth is not None and not np.isnan(np.asarray(truth)[test]).any()
    if truth is not None:
        scored["p_true"] = truth
        if truth_known:
            scores["truth"] = np.asarray(truth, dtype=np.float64)[test]
            probabilistic.append("truth")
        else:
            notes.append("The true probability is unknown for some test rows; not compared.")
    metrics: dict[str, Any] = {
        "test": evaluate_scores(labels[test], scores, probabilistic),
        "calibration_slice": classification_metrics(labels[calib], probability[calib]),
        "rows": split.counts(),
        "split": split.kind,
        "best_iteration": booster.current_iteration(),
        "calibration": {"method": calibrator.method, **calibrator.cv_log_loss},
        "tiers": tiers.as_dict(),
    }
    tiers_test = tier_table(labels[test], tier[test], expected=probability[test])
    metrics["tiers_test"] = tiers_test.to_dict(orient="records")
    clock["evaluate"] = time.perf_counter()

    audit, flagged = audit_features(features[train], labels[train], categorical, config)
    for name in flagged:
        auc = float(audit.loc[audit["feature"] == name, "auc"].iloc[0])
        notes.append(
            f"Leakage audit: '{name}' alone predicts the label with AUC {auc:.3f} on the "
            f"training slice (above {config.training.audit_auc}). Does it record the outcome?"
        )
    present = excluded_still_present(list(features.columns), config.exclude)
    if present:
        notes.append(
            f"Columns on the exclusion list are still among the features: {present}. "
            "Rebuild the training set with the config; this model will not be registered."
        )
    clock["audit"] = time.perf_counter()

    rng = np.random.default_rng(config.training.seed)
    test_rows = np.flatnonzero(test)
    sample = np.sort(
        rng.choice(test_rows, size=min(config.training.shap_sample, test_rows.size), replace=False)
    )
    shap_values = scorer.contributions(matrix[sample])[:, :-1]
    clock["shap"] = time.perf_counter()
    test_auc = metrics["test"]["model"]["roc_auc"]
    if test_auc > SUSPICIOUS_AUC:
        strongest = np.argsort(-np.abs(shap_values).mean(axis=0))[:3]
        names = [spec.names[i] for i in strongest]
        notes.append(
            f"Leakage audit: a test AUC of {test_auc:.3f} is more than lead data usually allows; "
            f"the model leans most on {names}. Check that none was filled in after contact."
        )
    steps = list(clock)
    seconds = {b: clock[b] - clock[a] for a, b in itertools.pairwise(steps)}
    return TrainResult(
        scorer=scorer,
        split=split,
        scored=scored,
        metrics=metrics,
        audit=audit,
        flagged=flagged,
        excluded_present=present,
        notes=notes,
        test_features=features[test],
        shap_values=shap_values,
        shap_features=features.iloc[sample],
        seconds=seconds,
        started_at=started_at,
        finished_at=datetime.now(UTC),
    )
