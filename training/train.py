"""Training: split in time, fit the booster, calibrate, cut tiers, evaluate, audit for leakage.

`train_model` is pure apart from the CPU it burns: a training set in, a `TrainResult` out.
Logging to MLflow, registration and the report live at the edges (`training.tracking`,
`training.reporting`, the CLI).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from common.config import Config
from features.fit import fit_names
from features.pipeline import AT_MQL, at_mql_names
from features.spec import feature_meanings
from training.age_line import age_knots
from training.audit import (
    LeakFlag,
    drop_column_costs,
    excluded_still_present,
    export_time_flags,
    leak_flags,
    single_feature_auc,
)
from training.bend import FOLD_PACE, MOMENT_FOLDS, Bend, bend_params, fit_bend
from training.calibrate import AGE_FEATURE, fit_calibrator
from training.evaluate import classification_metrics, evaluate_scores, tier_table
from training.guards import (
    EXIT_LEAK,
    EXIT_TOO_LITTLE_DATA,
    Refusal,
    apply_window,
    base_rate_shift,
    data_shortfall,
    label_definition,
    month_notes,
    monthly_table,
)
from training.hazard_fit import fit_hazard, split_periods
from training.model import (
    booster_params,
    fit_booster,
    fit_folds,
    moment_columns,
    moment_only,
    monotone_directions,
    paced,
)
from training.progress import Progress, staged
from training.reasons import ReasonPlan
from training.scorer import ModelSpec, Scorer, feature_matrix, learn_spec, model_raw
from training.scoring import score_matrix
from training.split import Split, sample_rows, stratified_split, time_split
from training.tiers import choose_tiers

ROW_KEYS = ("lead_id", "cutoff", "label")  # and a hazard model's `period` (split off first)
#: A test AUC above this on lead data usually means a column records the outcome.
SUSPICIOUS_AUC = 0.95
#: Standard errors by which a moment model's after booster must lower the validation loss: a
#: one-sided test at the 5% level. On noise its gain stays under it; on a CRM of 12,000 leads,
#: where the booster adds what the moment booster, fitted on the rows at mql_at alone, had too
#: few rows to learn, its gain stands about 2 standard errors up (docs/nightly-scores.md).
AFTER_MIN_Z = 1.645
#: Most training rows the leak guard's drop-column probe fits on.
PROBE_ROWS = 50_000
#: Most rows the drift reference profiles (a seeded uniform sample of a larger training set).
#: Its own noise, (bins - 1) / REFERENCE_ROWS in PSI (`training.drift.psi_floor`), is then
#: below 1e-4, a fraction of a nightly run's; each row it adds outside the calibration and
#: test slices costs a full `Booster.predict`.
REFERENCE_ROWS = 100_000
#: Most training rows the single-feature AUCs of the leak audit are measured on (a seeded
#: uniform sample of a larger training slice): their standard error is then about 0.002.
AUDIT_ROWS = 200_000
#: Rows per `Booster.predict` call when scoring a selection of rows (bounds the copy).
PREDICT_CHUNK_ROWS = 100_000
#: The rules' points per row, or a function that gives them: it is called once the feature
#: matrix is built, just before the fit, so a caller can compute them on another thread meanwhile.
RulePoints = np.ndarray | Callable[[], np.ndarray | None] | None


class TrainingError(ValueError):
    """The training set cannot give an honest model; the message says why.

    `exit_code` is the CLI's exit status for it (2: bad training data, or a guard's own).
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
    #: rows (a mask over `scored`) the drift reference profiles; all rows when None
    reference: np.ndarray | None = None
    started_at: datetime | None = None  # wall clock (UTC) when train_model began and ended
    finished_at: datetime | None = None
    leaks: list[LeakFlag] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)
    monthly: pd.DataFrame = field(default_factory=pd.DataFrame)
    shortfall: str | None = None
    label_definition: dict[str, Any] = field(default_factory=dict)

    def refusals(self) -> list[Refusal]:
        """Why this model must not be registered (empty: it may be), most basic first."""
        found = []
        if self.excluded_present:
            found.append(
                Refusal(2, f"excluded columns are still features: {self.excluded_present}")
            )
        if self.shortfall is not None:
            found.append(Refusal(EXIT_TOO_LITTLE_DATA, self.shortfall))
        blocking = [flag for flag in self.leaks if not flag.acknowledged]
        if blocking:
            found.append(
                Refusal(
                    EXIT_LEAK,
                    "the leak guard flags "
                    + "; ".join(flag.sentence() for flag in blocking)
                    + ". If a column is known before the outcome, list it in "
                    "training.acknowledge_leaks; else exclude it",
                )
            )
        return found

    @property
    def registrable(self) -> bool:
        return not self.refusals()


def feature_frame(training_set: pd.DataFrame) -> pd.DataFrame:
    return training_set.drop(columns=[c for c in ROW_KEYS if c in training_set])


def categorical_columns(features: pd.DataFrame) -> set[str]:
    """Text columns are categorical (the feature pipeline writes categories as `str`)."""
    return {
        str(c)
        for c in features.columns
        if pd.api.types.is_string_dtype(features[c]) or features[c].dtype == object
    }


def reference_sample(rows: int, seed: int) -> np.ndarray:
    """Which rows the drift reference profiles (a mask): every row up to `REFERENCE_ROWS`,
    else a seeded uniform sample of that many.

    Uniform over every slice, as the reference wants (`training.drift`); the monitor's chance
    floor counts the reference's rows, so a sample's own noise is allowed for. Scoring every
    training row only to profile it would cost a large share of the fit on a big training set.
    """
    mask = np.zeros(rows, dtype=bool)
    mask[sample_rows(np.arange(rows), REFERENCE_ROWS, seed)] = True
    return mask


def audit_rows(train: np.ndarray, seed: int) -> np.ndarray:
    """The training-slice rows the leak audit measures single-feature AUCs on: every one up
    to `AUDIT_ROWS`, else a seeded uniform sample of that many (in order)."""
    return sample_rows(np.flatnonzero(train), AUDIT_ROWS, seed)


def constant_columns(matrix: np.ndarray, rows: np.ndarray, names: Sequence[str]) -> list[str]:
    """The features with one value (missing counts as a value) on the chosen rows (a mask):
    they carry nothing, and are left out of the leak audit.

    Read from the feature matrix a column at a time: a category's code stands for it one for
    one on the slice its categories were learned on, so this is pandas' `nunique(dropna=False)
    <= 1` on those rows without copying them out of the frame.
    """
    constant = []
    for j, name in enumerate(names):
        values = matrix[:, j][rows]
        missing = np.isnan(values)
        present = values[~missing]
        if present.size == 0 or (not missing.any() and present.min() == present.max()):
            constant.append(name)
    return constant


def raw_scores(
    score: Callable[[np.ndarray], Any], matrix: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """`score` of the chosen rows (a mask) of `matrix`, NaN elsewhere.

    A row's raw score does not depend on the other rows, so scoring a selection gives each of
    its rows the value scoring every row would; the selection is copied out
    `PREDICT_CHUNK_ROWS` rows at a time (every row: the matrix itself, no copy).
    """
    if rows.all():
        return np.asarray(score(matrix), dtype=np.float64)
    raw = np.full(matrix.shape[0], np.nan, dtype=np.float64)
    chosen = np.flatnonzero(rows)
    for start in range(0, chosen.size, PREDICT_CHUNK_ROWS):
        at = chosen[start : start + PREDICT_CHUNK_ROWS]
        raw[at] = np.asarray(score(matrix[at]), dtype=np.float64)
    return raw


def _settled(points: RulePoints, kept: np.ndarray, horizon: np.ndarray) -> np.ndarray | None:
    """The rules' points of the rows trained on (inside the window, horizon rows), once known."""
    given = points() if callable(points) else points
    return None if given is None else np.asarray(given)[kept][horizon]


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


def probe_dominance(
    audit: pd.DataFrame,
    matrix: np.ndarray,
    labels: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray],
    spec: ModelSpec,
    config: Config,
) -> pd.DataFrame:
    """The audit with `full_auc`, `without_auc` and `share_lost` for the probed features.

    Probed: up to training.leak_candidates features not already flagged whose AUC alone is at
    least training.leak_alone_auc. Features flagged alone are left out of the probe, so a
    second leak hidden behind the first still shows.
    """
    training = config.training
    table = audit.assign(full_auc=np.nan, without_auc=np.nan, share_lost=np.nan)
    strong = table[(~table["flagged"]) & (table["auc"] >= training.leak_alone_auc)]
    candidates = strong["feature"].head(training.leak_candidates).tolist()
    if not candidates:
        return table
    train, valid = masks
    # a probe, not a model: a sample of the training slice will do
    rows = sample_rows(np.flatnonzero(train), PROBE_ROWS, training.seed)
    # one thread: on a busy machine OpenMP threads waiting for cores slow small fits many-fold
    params = booster_params(training.params, training.seed, 1)
    full, without = drop_column_costs(
        (matrix[rows], labels[rows]),
        (matrix[valid], labels[valid]),
        spec,
        candidates,
        params,
        leave_out=table.loc[table["flagged"], "feature"].tolist(),
    )
    for name, auc in without.items():
        at = table["feature"] == name
        table.loc[at, "full_auc"] = full
        table.loc[at, "without_auc"] = auc
        table.loc[at, "share_lost"] = (full - auc) / (full - 0.5) if full > 0.5 else 0.0
    return table


def fit_configured(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    spec: ModelSpec,
    params: dict[str, Any],
    config: Config,
    progress: Progress | None = None,
    init_model: lgb.Booster | None = None,
    init_score: tuple[np.ndarray, np.ndarray] | None = None,
) -> lgb.Booster:
    """`fit_booster` with the run's rounds, early stopping and monotone directions."""
    return fit_booster(
        train,
        validation,
        spec,
        params,
        config.training.num_boost_round,
        config.training.early_stopping_rounds,
        progress,
        monotone_directions(spec.names, config.training.increasing_events),
        init_model=init_model,
        init_score=init_score,
    )


def moment_layout(
    features: pd.DataFrame, spec: ModelSpec, config: Config
) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows at mql_at (age 0) and the columns of the MQL moment (the fit attributes and the
    counts as they stood at mql_at), as masks; None when the rows have no age or there are no
    such counts (a flat export, or `features.at_mql` off)."""
    if AGE_FEATURE not in features or not any(name.endswith(AT_MQL) for name in spec.names):
        return None
    at_mql = features[AGE_FEATURE].to_numpy(dtype=np.float64, na_value=np.nan) == 0
    moment = set(fit_names(config.custom_fields)) | set(at_mql_names(config))
    return at_mql, moment_columns(spec.names, moment)


def fit_mql_moment(
    matrix: np.ndarray,
    labels: np.ndarray,
    features: pd.DataFrame,
    train: np.ndarray,
    valid: np.ndarray,
    spec: ModelSpec,
    params: dict[str, Any],
    config: Config,
    progress: Progress | None = None,
) -> lgb.Booster | None:
    """`training.mql_first`'s first stage: a booster on the rows at mql_at (age 0) alone, with
    only the features of the MQL moment, so its trees rank every lead as it stood when it
    became an MQL, at whatever age it is scored. None when there is nothing to fit it on."""
    layout = moment_layout(features, spec, config)
    if layout is None:
        return None
    at_mql, columns = layout
    if not at_mql[train].any() or not at_mql[valid].any():
        return None
    rows_train, rows_valid = train & at_mql, valid & at_mql
    first = fit_configured(
        (moment_only(matrix, rows_train, columns), labels[rows_train]),
        (moment_only(matrix, rows_valid, columns), labels[rows_valid]),
        spec,
        params,
        config,
        progress,
    )
    first.free_dataset()
    return lgb.Booster(model_str=first.model_to_string(num_iteration=first.best_iteration))


def cross_fitted_moment(
    first: lgb.Booster,
    matrix: np.ndarray,
    labels: np.ndarray,
    features: pd.DataFrame,
    train: np.ndarray,
    spec: ModelSpec,
    params: dict[str, Any],
    config: Config,
    leads: np.ndarray,
    progress: Progress | None = None,
) -> np.ndarray:
    """Each training row's moment score from a booster that never saw its lead (NaN off the
    training slice): `MOMENT_FOLDS` folds of leads, each scored by a booster fitted on the
    others' rows at mql_at. Each learns `FOLD_PACE` times as fast as `first` (the moment
    booster on them all) for as many times fewer rounds: they stand in for `first` on leads it
    never saw, and need not be as fine-grained to do so."""
    layout = moment_layout(features, spec, config)
    assert layout is not None  # `first` was fitted on it
    at_mql, columns = layout
    fold = lead_folds(leads, config.training.seed)
    rows = train & at_mql
    boosters = fit_folds(
        (moment_only(matrix, rows, columns), labels[rows]),
        fold[rows],
        MOMENT_FOLDS,
        spec,
        paced(params, FOLD_PACE),
        max(1, round(first.num_trees() / FOLD_PACE)),
        progress,
        monotone_directions(spec.names, config.training.increasing_events),
    )
    moment = np.full(matrix.shape[0], np.nan)
    for k, part in enumerate(boosters):
        held = train & (fold == k)
        scorer = first if part is None else part  # too few leads to cross-fit: in-sample
        moment[held] = raw_scores(partial(scorer.predict, raw_score=True), matrix, held)[held]
    return moment


def fit_ages_model(
    matrix: np.ndarray,
    labels: np.ndarray,
    features: pd.DataFrame,
    train: np.ndarray,
    valid: np.ndarray,
    spec: ModelSpec,
    params: dict[str, Any],
    config: Config,
    notes: list[str],
    progress: Progress | None = None,
) -> lgb.Booster:
    """The ages model: one booster on every row, after `training.mql_first`'s first stage when
    it is asked for and there is an MQL moment."""
    first = None
    if config.training.mql_first:
        first = fit_mql_moment(
            matrix, labels, features, train, valid, spec, params, config, progress
        )
        if first is None:
            notes.append(
                "training.mql_first: no rows at mql_at or no features of the MQL moment "
                "(a flat export, or features.at_mql off); one booster on every row instead."
            )
    fit_rows = (matrix[train], labels[train]), (matrix[valid], labels[valid])
    return fit_configured(*fit_rows, spec, params, config, progress, first)


def lead_folds(leads: np.ndarray, seed: int) -> np.ndarray:
    """Each row's fold (0 to `MOMENT_FOLDS` - 1), the same for every row of a lead."""
    codes, unique = pd.factorize(pd.Series(leads))
    order = np.random.default_rng(seed).permutation(len(unique)) % MOMENT_FOLDS
    return np.asarray(order[codes], dtype=np.int64)


def fit_moment_model(
    matrix: np.ndarray,
    labels: np.ndarray,
    features: pd.DataFrame,
    train: np.ndarray,
    valid: np.ndarray,
    spec: ModelSpec,
    params: dict[str, Any],
    config: Config,
    progress: Progress | None = None,
    leads: np.ndarray | None = None,
    ages: tuple[pd.DataFrame | None, pd.DataFrame | None] = (None, None),
) -> tuple[lgb.Booster, Bend] | None:
    """`training.model: moment` (`training.bend`): the moment booster, then the bend of its
    score by the lead's age, then the after booster (`fit_after`). None when there is no MQL
    moment to fit, or only one age to bend it by.

    The bend learns from the training slice's moment scores cross-fitted over `MOMENT_FOLDS`
    folds of its leads (`leads`: each row's lead id), so that it sees scores as strong as on
    leads the booster never saw, not the stronger ones of the leads it was fitted on. It also
    learns from `ages` (`features.rows.bend_rows` up to the training slice's last cutoff, and up
    to the validation slice's), each row at its lead's score at mql_at in that slice
    (`bend_rows_of`), and stops early on the validation slice's rows and theirs.
    """
    age = matrix[:, spec.names.index(AGE_FEATURE)] if AGE_FEATURE in spec.names else None
    if age is None or np.unique(age[train & ~np.isnan(age)]).size < 2:
        return None  # one age (rows at mql_at only): nothing to bend, the ages model has it all
    moment_progress = staged(progress, "the moment booster")
    first = fit_mql_moment(
        matrix, labels, features, train, valid, spec, params, config, moment_progress
    )
    if first is None:
        return None
    moment = cross_fitted_moment(
        first,
        matrix,
        labels,
        features,
        train,
        spec,
        params,
        config,
        leads if leads is not None else np.arange(len(labels)),
        progress,
    )
    moment[valid] = raw_scores(partial(first.predict, raw_score=True), matrix, valid)[valid]
    moment_mean = float(np.asarray(first.predict(matrix[:1], pred_contrib=True))[0, -1])
    lead_ids = leads if leads is not None else np.arange(len(labels))
    (rows, weight), (valid_rows, valid_weight) = (
        with_bend_rows((moment[mask], age[mask], labels[mask]), extra, lead_ids[mask])
        for mask, extra in zip((train, valid), ages, strict=True)
    )
    bend = fit_bend(
        rows,
        valid_rows,
        moment_mean,
        bend_params(int(train.sum()), params),
        config.training.num_boost_round,
        config.training.early_stopping_rounds,
        progress,
        weight=weight,
        valid_weight=valid_weight,
        knots=age_knots(config.horizon_days),
    )
    bent = np.full(matrix.shape[0], np.nan)
    fitted = train | valid
    bent[fitted] = bend.bent(moment[fitted], age[fitted])
    after_progress = staged(progress, "after the moment")
    after = fit_after(
        matrix, labels, bent, (train, valid), lead_ids[valid], spec, params, config, after_progress
    )
    return first, replace(bend, after=after)


def within(rows: pd.DataFrame | None, last: pd.Timestamp) -> pd.DataFrame | None:
    """`rows` with a cutoff up to `last` (a slice's last cutoff), None without rows: the bend
    learns from no later outcome than that slice's feature rows do."""
    if rows is None or pd.isna(last):
        return None
    return rows[(rows["cutoff"] <= last).to_numpy()]


def bend_rows_of(
    ages: pd.DataFrame | None, moment: np.ndarray, age: np.ndarray, leads: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(moment score, age, label) of the bend's rows beyond the feature rows: each row of
    `ages` (lead_id, age_days, label) whose lead has a row at mql_at among these (the training
    slice's `moment`, `age` and `leads`), at that row's score. None when there are none."""
    if ages is None or not len(ages):
        return None
    at_mql = age == 0
    score = pd.Series(moment[at_mql], index=pd.Index(leads[at_mql]))
    score = score[~score.index.duplicated()]
    found = score.reindex(ages["lead_id"].to_numpy()).to_numpy(dtype=np.float64)
    kept = ~np.isnan(found)
    if not kept.any():
        return None
    return (
        found[kept],
        ages["age_days"].to_numpy(dtype=np.float64)[kept],
        ages["label"].to_numpy(dtype=np.int64)[kept],
    )


def with_bend_rows(
    own: tuple[np.ndarray, np.ndarray, np.ndarray], extra: pd.DataFrame | None, leads: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray | None]:
    """A slice's (moment score, age, label) rows for the bend with `extra`'s rows of its leads
    added (`bend_rows_of`), and their weights (`at_mql_weights`; None when none are added)."""
    more = bend_rows_of(extra, *own[:2], leads)
    if more is None:
        return own, None
    rows = (
        np.concatenate([own[0], more[0]]),
        np.concatenate([own[1], more[1]]),
        np.concatenate([own[2], more[2]]),
    )
    return rows, at_mql_weights(rows[1], own[1])


def at_mql_weights(age: np.ndarray, feature_ages: np.ndarray) -> np.ndarray:
    """Row weights (mean 1) under which the rows at mql_at (age 0) hold the share of `age`'s
    weight that they hold among `feature_ages` (the feature rows): the bend's extra rows are
    all later, and they should teach it the later ages without outweighing the MQL moment,
    where the API scores most leads."""
    share = float(np.mean(feature_ages == 0))
    at_mql = age == 0
    weight = np.ones(age.shape, dtype=np.float64)
    if 0 < share < 1 and at_mql.any() and not at_mql.all():
        weight[at_mql] = share / (1 - share) * (~at_mql).sum() / at_mql.sum()
    return weight / weight.mean()


def fit_after(
    matrix: np.ndarray,
    labels: np.ndarray,
    bent: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray],
    valid_leads: np.ndarray,
    spec: ModelSpec,
    params: dict[str, Any],
    config: Config,
    progress: Progress | None = None,
) -> str:
    """A moment model's after booster: boosting from each row's bent score (`bent`) on every
    feature but the age and the days since a hand-raiser, on the training and validation
    slices (`masks`). Its text, or "" when it does not earn its place: it must lower the
    validation slice's log loss by more than `AFTER_MIN_Z` standard errors of that gain, each
    lead's rows (`valid_leads`) counted as one draw (`loss_gain`). Early stopping picks the
    round at which the validation loss is lowest, so a booster that learnt only noise still
    shows a gain there; on a CRM where what came after the MQL tells nothing beyond the
    moment, its trees would only shuffle the ranking at later ages.

    The age stays out, the bend's alone: these trees add what came after the MQL, they do not
    bend the score again. So do the days since a hand-raiser: where there was none (NaN) the
    trees may put the lead on the recent side, so a first one could lower the score (its
    counts stay in, constrained to raise it).
    """
    train, valid = masks
    directions = monotone_directions(spec.names, config.training.increasing_events)
    kept = np.array([directions.get(name, 0) >= 0 and name != AGE_FEATURE for name in spec.names])
    validation = moment_only(matrix, valid, kept), labels[valid]
    after = fit_configured(
        (moment_only(matrix, train, kept), labels[train]),
        validation,
        spec,
        params,
        config,
        progress,
        init_score=(bent[train], bent[valid]),
    )
    after.free_dataset()
    rounds = after.best_iteration
    added = np.asarray(after.predict(validation[0], raw_score=True, num_iteration=rounds))
    gain, error = loss_gain(validation[1], bent[valid], bent[valid] + added, valid_leads)
    if gain > AFTER_MIN_Z * error:
        return str(after.model_to_string(num_iteration=rounds))
    return ""


def loss_gain(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray, leads: np.ndarray
) -> tuple[float, float]:
    """How much lower the mean log loss of raw scores `after` is than that of `before` on these
    rows, and its standard error with each lead's rows as one draw (a lead's rows at several
    ages share its outcome, so they are not independent)."""
    y = np.asarray(labels, dtype=np.float64)

    def losses(raw: np.ndarray) -> np.ndarray:  # per row, from log-odds, stable
        return np.asarray(np.logaddexp(0.0, raw) - y * raw, dtype=np.float64)

    diff = losses(before) - losses(after)
    codes, unique = pd.factorize(pd.Series(leads))
    per_lead = np.bincount(codes, weights=diff, minlength=len(unique))
    gain = float(diff.sum() / diff.size)
    error = float(np.sqrt(len(unique)) * per_lead.std() / diff.size) if len(unique) > 1 else 0.0
    return gain, error


def cross_validated_auc(training_set: pd.DataFrame, config: Config, folds: int = 5) -> list[float]:
    """Stratified k-fold test AUCs of the booster (calibration does not change a ranking).

    For data without a time order, such as a flat export, where one random split is noisy.
    Each fold stops early on a stratified 15% of its own training rows.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    training_set = split_periods(training_set)[0]  # a hazard model's period rows: not here
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
        spec = learn_spec(features, categorical, train_rows)
        matrix = feature_matrix(features, spec)
        booster = fit_booster(
            (matrix[train_rows], labels[train_rows]),
            (matrix[valid_rows], labels[valid_rows]),
            spec,
            params,
            config.training.num_boost_round,
            config.training.early_stopping_rounds,
            monotone=monotone_directions(spec.names, config.training.increasing_events),
        )
        raw = booster.predict(matrix[held_out], num_iteration=booster.best_iteration)
        aucs.append(float(roc_auc_score(labels[held_out], raw)))
    return aucs


def train_model(
    training_set: pd.DataFrame,
    config: Config,
    *,
    points: RulePoints = None,
    truth: np.ndarray | None = None,
    progress: Progress | None = None,
    bend_rows: pd.DataFrame | None = None,
) -> TrainResult:
    """Fit, calibrate, tier and evaluate a model on a training set (see `_train_model`).

    Below the minimum-data floor a model is still trained when the rows allow it (it is
    not registrable); when they do not, the error says how much more data is needed
    (exit status `EXIT_TOO_LITTLE_DATA`).
    """
    try:
        return _train_model(
            training_set,
            config,
            points=points,
            truth=truth,
            progress=progress,
            bend_rows=bend_rows,
        )
    except TrainingError:
        raise
    except ValueError as error:  # a fitting step with too few rows of a kind
        if "label" not in training_set or not len(training_set):
            raise
        try:
            kept = apply_window(training_set, config)[0]
        except ValueError:
            raise error from None
        shortfall = data_shortfall(kept["label"].to_numpy(), config.training)
        if shortfall is None:
            raise
        raise TrainingError(
            f"{shortfall}; training cannot finish on so few rows ({error})", EXIT_TOO_LITTLE_DATA
        ) from None


def _train_model(
    training_set: pd.DataFrame,
    config: Config,
    *,
    points: RulePoints = None,
    truth: np.ndarray | None = None,
    progress: Progress | None = None,
    bend_rows: pd.DataFrame | None = None,
) -> TrainResult:
    """Fit, calibrate, tier and evaluate a model on a training set.

    Args:
        training_set: lead_id, cutoff, label and the feature columns.
        config: the run's config (training, split and tier settings).
        points: the rules' points per row, to compare with on the test slice; or a function
            giving them, called just before the fit (see `RulePoints`).
        truth: on synthetic data, the true probability per row (NaN where unknown).
        progress: called with (boosting round, maximum rounds).
        bend_rows: a moment model's bend's rows beyond the feature rows
            (`features.rows.bend_rows`); those after the training slice's last cutoff are
            left out, as are those of leads with no row at mql_at in it.
    """
    missing = [c for c in ROW_KEYS if c not in training_set]
    if missing:
        raise TrainingError(f"the training set lacks the columns {missing}")
    if len(training_set) == 0:
        raise TrainingError("the training set has no rows")
    started_at = datetime.now(UTC)
    clock = {"start": time.perf_counter()}
    notes: list[str] = []
    try:
        training_set, kept, window_note = apply_window(training_set, config)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    if window_note is not None and not kept.all():  # callers that window first say so
        notes.append(window_note)
    if len(training_set) == 0:
        raise TrainingError("no rows are left inside the training window (training.since)")
    training_set, periods, horizon = split_periods(training_set)
    hazard_model = config.training.model == "hazard"
    if hazard_model and periods is None:
        raise TrainingError(
            "training.model is hazard but the training set has no period rows: build it with "
            "this config (`leadscore features` or `leadscore train` on the snapshot)"
        )
    truth = None if truth is None else np.asarray(truth)[kept][horizon]
    labels = training_set["label"].to_numpy().astype(np.int64)
    shortfall = data_shortfall(labels, config.training)
    features = feature_frame(training_set)
    categorical = categorical_columns(features)
    try:
        split = split_rows(training_set, config, notes)
    except TrainingError as error:
        if shortfall is None:
            raise
        raise TrainingError(f"{shortfall}; {error}", EXIT_TOO_LITTLE_DATA) from None
    if shortfall is not None:
        notes.append(f"Not registrable: {shortfall}.")
    train, valid = split.mask("train"), split.mask("validation")
    calib, test = split.mask("calibration"), split.mask("test")

    spec = learn_spec(features, categorical, train)
    matrix = feature_matrix(features, spec)
    params = booster_params(
        config.training.params, config.training.seed, config.training.num_threads
    )
    hazard, bend = None, None
    rule_points = _settled(points, kept, horizon)  # the fit has every core from here on
    if hazard_model and periods is not None:  # lead x period rows (training.hazard_fit)
        booster, hazard = fit_hazard(periods, training_set, split, spec, params, config, progress)
    else:
        moment_model = None
        if config.training.model == "moment":
            moment_model = fit_moment_model(
                matrix,
                labels,
                features,
                train,
                valid,
                spec,
                params,
                config,
                progress,
                training_set["lead_id"].to_numpy(),
                (
                    within(bend_rows, training_set["cutoff"][train].max()),
                    within(bend_rows, training_set["cutoff"][valid].max()),
                ),
            )
            if moment_model is None and AGE_FEATURE in features:  # a flat export: no ages
                notes.append(
                    "training.model moment: the rows are of one age (snapshot_policy."
                    "sampled_ages 0), or there are no counts as they stood at mql_at (features."
                    "at_mql off); the ages model instead."
                )
        if moment_model is not None:
            booster, bend = moment_model
        else:
            booster = fit_ages_model(
                matrix, labels, features, train, valid, spec, params, config, notes, progress
            )
    booster.free_dataset()
    clock["fit"] = time.perf_counter()
    # keep only the trees up to the best round: the saved model is the one that was validated
    booster = type(booster)(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    # scored: the calibration and test slices (calibrator, tiers, metrics) and the rows the
    # drift reference profiles; the other rows' probability stays NaN and their tier None
    reference = reference_sample(len(training_set), config.training.seed)
    scored_rows = calib | test | reference
    raw = raw_scores(lambda rows: model_raw(booster, spec, rows, hazard, bend), matrix, scored_rows)
    age = matrix[:, spec.names.index(AGE_FEATURE)] if AGE_FEATURE in spec.names else None
    try:
        calibrator = fit_calibrator(
            raw[calib],
            labels[calib],
            config.training.calibration,
            config.training.seed,
            age=None if age is None else age[calib],
        )
    except ValueError as error:
        if shortfall is not None:
            raise  # too few rows: `train_model` says how many more are needed
        raise TrainingError(f"training.calibration: {error}") from None
    probability = np.full(len(training_set), np.nan)
    probability[scored_rows] = calibrator.apply(
        raw[scored_rows], None if age is None else age[scored_rows]
    )
    tiers = choose_tiers(probability[calib], labels[calib], config.training.tiers)
    scorer = Scorer(booster, calibrator, spec, tiers, hazard, bend)
    tier = np.full(len(training_set), None, dtype=object)
    tier[scored_rows] = tiers.assign(probability[scored_rows])
    clock["calibrate"] = time.perf_counter()

    scored = training_set[list(ROW_KEYS)].copy()
    scored["slice"] = split.slice_of_row
    scored["probability"] = probability
    scored["tier"] = tier
    scores: dict[str, np.ndarray] = {"model": probability[test]}
    probabilistic = ["model"]
    if rule_points is not None:
        scored["points"] = rule_points
        scores["rules"] = np.asarray(rule_points, dtype=np.float64)[test]
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

    constant = constant_columns(matrix, train, spec.names)
    audited = audit_rows(train, config.training.seed)
    informative = features.iloc[audited].drop(columns=constant)
    audit, flagged = audit_features(
        informative, labels[audited], categorical & set(informative.columns), config
    )
    audit = probe_dominance(audit, matrix, labels, (train, valid), spec, config)
    leaks = leak_flags(audit, config.training, config.custom_fields)
    known = {flag.feature for flag in leaks}
    leaks += [
        flag
        for flag in export_time_flags(config.source.preset, config.custom_fields, config.training)
        if flag.feature not in known
    ]
    flagged = [flag.feature for flag in leaks]
    audit["flagged"] = audit["feature"].isin(flagged)
    for flag in leaks:
        state = "acknowledged in the config" if flag.acknowledged else "does it record the outcome?"
        notes.append(f"Leakage audit: {flag.sentence()}; {state}")
    if constant:
        notes.append(
            f"{len(constant)} constant features (one value on the training slice) left out of "
            "the audit: " + ", ".join(constant[:10]) + (" ..." if len(constant) > 10 else "")
        )
    monthly = monthly_table(training_set["cutoff"], labels)
    notes.extend(month_notes(monthly))
    shift, shift_note = base_rate_shift(labels, split.slice_of_row)
    metrics["base_rate"] = shift
    if shift_note is not None:
        notes.append(shift_note)
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
    # the test sample explained by the one scorer, as the API and the batch job explain a lead
    plan = ReasonPlan.of(spec.names, feature_meanings(config, flat=split.kind != "time"))
    explained = score_matrix(scorer, matrix[sample], plan)
    assert explained.contributions is not None  # a plan asks for them
    shap_values = explained.contributions[:, :-1]
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
        reference=reference,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        leaks=leaks,
        constant=constant,
        monthly=monthly,
        shortfall=shortfall,
        label_definition=label_definition(config, flat=split.kind == "stratified"),
    )
