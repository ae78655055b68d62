"""A rules baseline for any export: points fitted over every field and event type it has.

The shipped rules speak a B2B vocabulary (seniority, industries, demo requests); on another
CRM none of its own values would get points and a flat export would get no baseline at all.
`fit_rules` writes a points model in the `training.rules` format from labelled rows: a table
per categorical fit field and custom field (its frequent values), bands for numeric fields
(quantiles, plus missing), the free-mail flag, and points per event for each event type the
export has (decayed with `HALF_LIFE_DAYS`, capped at a high count). Points come from an
L2-regularised logistic regression, `POINTS_PER_DOUBLING` points per doubling of the odds.

`rules_baseline` is what training compares the model with: the configured rules file, or,
without one, points fitted on the training slice only (the same split the model uses; a seeded
sample of `FIT_ROWS` on a large one), so the comparison on the test slice stays out of sample.
Fitted points are computed only where they are read: the test slice's rows and the fitted
ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.config import Config, ConfigError, CustomField
from features.contract import EVENT_TYPES, ContractError
from features.decay import decayed_counts, decayed_name
from features.fit import CATEGORICAL
from features.periods import PERIOD
from features.reader import Snapshot
from training.evaluate import ranking_metrics
from training.rules import (
    CustomFieldRule,
    EngagementRule,
    NegativeEventRule,
    Rules,
    fit_inputs,
    fit_log_odds,
    half_lives,
    load_rules,
    score_points,
    suggest_points,
)
from training.split import sample_rows

#: Each event's weight halves after this many days in fitted rules.
HALF_LIFE_DAYS = 30.0
#: Fitted points: the odds of conversion double every this many points.
POINTS_PER_DOUBLING = 10.0
#: A value gets its own points when at least this many rows (and this share of rows) have it.
MIN_LEVEL_ROWS = 30
MIN_LEVEL_SHARE = 0.005
#: At most this many values per field get points (the most frequent).
MAX_LEVELS = 30
#: Numeric fields are cut into at most this many quantile bands.
NUMERIC_BANDS = 5
#: Event counts are capped at this quantile of the non-zero counts.
CAP_QUANTILE = 0.95
#: Thresholds: `mql` and `hot` at these quantiles of the training rows' points.
THRESHOLD_QUANTILES = {"mql": 0.7, "hot": 0.9}
#: Fitted points are fitted on at most this many training-slice rows (a seeded sample).
FIT_ROWS = 200_000
FITTED_LABEL = "points fitted on the training slice (no rules file)"


@dataclass(frozen=True)
class _Column:
    """One regression input and where its points go."""

    values: np.ndarray
    place: tuple[str, str]  # (table, level): ("fit.lead_source", "referral"), ("event", type)


def present_event_types(snapshot: Snapshot | None) -> list[str]:
    """The contract event types the export has events of (none for a flat export)."""
    if snapshot is None or snapshot.flat or snapshot.events.kind.size == 0:
        return []
    seen = np.unique(snapshot.events.kind)
    return [EVENT_TYPES[int(k)] for k in seen if EVENT_TYPES[int(k)] != "other"]


def _frequent(values: pd.Series, n_rows: int) -> list[str]:
    counts = values.dropna().astype(str).value_counts()
    floor = max(MIN_LEVEL_ROWS, math.ceil(MIN_LEVEL_SHARE * n_rows))
    return [str(v) for v in counts[counts >= floor].index[:MAX_LEVELS]]


def _band_edges(values: np.ndarray) -> list[float]:
    known = values[~np.isnan(values)]
    if known.size == 0:
        return []
    quantiles = np.quantile(known, np.linspace(0, 1, NUMERIC_BANDS + 1)[1:-1])
    inner = np.unique(np.round(quantiles, 2))  # bounds a person can read
    return [float(known.min()), *(float(e) for e in inner if e > known.min())]


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values.dtype))


def _texts(values: pd.Series) -> pd.Series:
    """Values as text levels: booleans (0/1) as false / true; missing stays missing."""
    if _is_numeric(values):
        number = pd.Series(values.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan))
        return number.map({1.0: "true", 0.0: "false"}).astype(object)
    return pd.Series(values.astype(object).where(values.notna()).to_numpy(), dtype=object)


def _level_columns(table: str, texts: pd.Series) -> list[_Column]:
    """An indicator per frequent value, and one for missing when enough rows lack a value."""
    # each distinct value hashed once; a level's indicator compares integer codes
    codes, distinct = pd.factorize(texts)  # missing: -1
    known = codes >= 0
    text_of_code = np.asarray([str(value) for value in distinct], dtype=object)
    columns = [
        _Column(
            np.isin(codes, np.flatnonzero(text_of_code == level)).astype(np.float64), (table, level)
        )
        for level in _frequent(texts, len(texts))
    ]
    # a value nearly every row has says nothing the intercept does not
    columns = [c for c in columns if len(texts) - c.values.sum() >= MIN_LEVEL_ROWS]
    if (~known).sum() >= MIN_LEVEL_ROWS:
        columns.append(_Column((~known).astype(np.float64), (table, "missing")))
    return columns


def _band_columns(table: str, number: np.ndarray, edges: list[float]) -> list[_Column]:
    """An indicator per quantile band, and one for missing."""
    codes = np.searchsorted(np.asarray(edges), number, side="right") - 1
    known = ~np.isnan(number)
    columns = [
        _Column(((codes == i) & known).astype(np.float64), (table, f"band:{i}"))
        for i in range(len(edges))
    ]
    columns.append(_Column((~known).astype(np.float64), (table, "missing")))
    return columns


def _event_cap(counts: np.ndarray) -> float:
    positive = counts[counts > 0]
    return float(max(1.0, np.quantile(positive, CAP_QUANTILE))) if positive.size else 1.0


def fit_rules(
    inputs: pd.DataFrame,
    labels: np.ndarray,
    custom_fields: tuple[CustomField, ...],
    event_types: list[str],
    name: str = "fitted",
) -> Rules:
    """A points model fitted to labelled rows over every field and event type given.

    Args:
        inputs: per row, the fit features (`CATEGORICAL`, company_size, email_free), each
            custom field's feature, and `decayed_<type>` (half-life `HALF_LIFE_DAYS`) per event
            type; absent columns are skipped.
        labels: 1 (converted) or 0 per row; both must occur.
        custom_fields: the config's custom fields (their columns key the rules' custom tables).
        event_types: the event types to give points.
        name: the rules' name.
    """
    y = np.asarray(labels).astype(np.int64)
    if np.unique(y).size < 2:
        raise ValueError("fitting points needs rows of both outcomes")
    edges: dict[str, list[float]] = {}
    columns: list[_Column] = []
    fields: list[tuple[str, str]] = [(f, f"fit.{f}") for f in CATEGORICAL]
    fields += [("company_size", "fit.company_size"), ("email_free", "fit.email_free")]
    fields += [(cf.feature, f"custom.{cf.column}") for cf in custom_fields]
    for feature, table in fields:
        if feature not in inputs:
            continue
        values = inputs[feature]
        if _is_numeric(values) and not _boolean(values):
            number = values.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
            found = _band_edges(number)
            if found:  # a field no row has says nothing
                edges[table] = found
                columns += _band_columns(table, number, found)
        else:
            columns += _level_columns(table, _texts(values))
    caps: dict[str, float] = {}
    for event_type in event_types:
        column = decayed_name(event_type)
        if column in inputs:
            counts = np.nan_to_num(inputs[column].to_numpy(dtype=np.float64), nan=0.0)
            caps[event_type] = _event_cap(counts)
            columns.append(_Column(np.minimum(counts, caps[event_type]), ("event", event_type)))
    x = np.column_stack([c.values for c in columns]) if columns else np.zeros((len(y), 0))
    coef = fit_log_odds(x, y) if columns else np.zeros(0)
    scale = POINTS_PER_DOUBLING / math.log(2)
    points = {
        c.place: (0.0 if math.isnan(b) else scale * b) for c, b in zip(columns, coef, strict=True)
    }
    points = _from_most_common(points, columns)
    rules = _assemble(points, edges, caps, name, len(y), int(y.sum()))
    total = score_points(_scoring_inputs(inputs, rules), rules).total
    return _with_thresholds(rules, total)


def _from_most_common(
    points: dict[tuple[str, str], float], columns: list[_Column]
) -> dict[tuple[str, str], float]:
    """Shift each table whose levels cover every row so its most common level scores 0.

    Such levels are collinear with the intercept, so the regression fixes their points only up
    to a constant; the shift changes no ranking and makes the table readable.
    """
    shifted = dict(points)
    tables: dict[str, list[_Column]] = {}
    for column in columns:
        if column.place[0] not in ("event", "fit.email_free"):
            tables.setdefault(column.place[0], []).append(column)
    for members in tables.values():
        covered = np.sum([c.values for c in members], axis=0)
        if covered.size and covered.min() >= 1:
            common = max(members, key=lambda c: c.values.sum())
            offset = points[common.place]
            for c in members:
                shifted[c.place] = points[c.place] - offset
    return shifted


def _boolean(values: pd.Series) -> bool:
    if not _is_numeric(values):
        return False
    known = values.dropna().astype("float64")
    return bool(len(known)) and bool(known.isin([0.0, 1.0]).all())


def _assemble(
    points: dict[tuple[str, str], float],
    edges: dict[str, list[float]],
    caps: dict[str, float],
    name: str,
    rows: int,
    positives: int,
) -> Rules:
    fit: dict[str, dict[str, float]] = {}
    size: dict[str, object] | None = None
    custom: dict[str, dict[str, object]] = {}
    engagement: dict[str, dict[str, float]] = {}
    negative: dict[str, dict[str, float]] = {}
    free_mail = 0.0
    grouped: dict[str, dict[str, float]] = {}
    for (table, level), value in points.items():
        grouped.setdefault(table, {})[level] = value
    for table, levels in grouped.items():
        if table == "event":
            for event_type, value in levels.items():
                per_event = round(value, 1)
                if per_event > 0:
                    rule = {"points": per_event, "cap": round(per_event * caps[event_type], 1)}
                    engagement[event_type] = {**rule, "half_life_days": HALF_LIFE_DAYS}
                elif per_event < 0:
                    rule = {"points": per_event, "cap": round(per_event * caps[event_type], 1)}
                    negative[event_type] = {**rule, "half_life_days": HALF_LIFE_DAYS}
        elif table == "fit.email_free":
            free_mail = min(0.0, float(round(levels.get("true", 0.0) - levels.get("false", 0.0))))
        elif table == "fit.company_size" or (table.startswith("custom.") and table in edges):
            lows = edges[table]
            bands = [
                [low, float(round(levels.get(f"band:{i}", 0.0)))] for i, low in enumerate(lows)
            ]
            band_rule = {"bands": bands, "missing": float(round(levels.get("missing", 0.0)))}
            if table == "fit.company_size":
                bands = [[max(low, 0.0), pts] for low, pts in bands]
                size = {"bands": _strictly_rising(bands), "missing": band_rule["missing"]}
            else:
                custom[table.removeprefix("custom.")] = band_rule
        elif table.startswith("custom."):
            kept = {k: float(round(v)) for k, v in levels.items() if k != "missing" and round(v)}
            custom[table.removeprefix("custom.")] = {
                "values": kept,
                "missing": float(round(levels.get("missing", 0.0))),
            }
        else:
            fit[table.removeprefix("fit.")] = {
                k: float(round(v)) for k, v in levels.items() if k != "missing" and round(v)
            }
    values: dict[str, object] = {
        "name": name,
        "description": (
            f"Points fitted on {rows:,} labelled rows ({positives:,} converted): the odds "
            f"double every {POINTS_PER_DOUBLING:g} points."
        ),
        "fit": {
            **{k: v for k, v in fit.items() if v},
            **({"company_size": size} if size else {}),
            **({"custom": custom} if custom else {}),
        },
        "engagement": engagement,
        "negative": {"events": negative, "free_mail": free_mail},
    }
    return Rules.model_validate(values)


def _strictly_rising(bands: list[list[float]]) -> list[list[float]]:
    kept: list[list[float]] = []
    for low, pts in bands:
        if not kept or low > kept[-1][0]:
            kept.append([low, pts])
    return kept


def _with_thresholds(rules: Rules, total: np.ndarray) -> Rules:
    """`mql` and `hot` at quantiles of the fitted rows' points, kept strictly rising."""
    thresholds: dict[str, float] = {}
    for name, q in THRESHOLD_QUANTILES.items():
        value = float(np.ceil(np.quantile(total, q))) if total.size else 0.0
        if thresholds and value <= list(thresholds.values())[-1]:
            value = list(thresholds.values())[-1] + 1
        thresholds[name] = value
    return rules.model_copy(update={"thresholds": thresholds})


def _scoring_inputs(inputs: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """The columns `score_points` reads, with each event type's count decayed as fitted."""
    return inputs.reindex(columns=[*fit_inputs(rules), *map(decayed_name, half_lives(rules))])


# --------------------------------------------------------------------------- training's baseline


@dataclass(frozen=True)
class Baseline:
    """The rules training compares with: the rules, each row's points (None: no comparison
    possible, with `problem` saying why) and what they are, for the report and MLflow."""

    rules: Rules
    points: np.ndarray | None
    label: str
    problem: str | None = None


def baseline_inputs(
    training_set: pd.DataFrame, snapshot: Snapshot | None, event_half_lives: dict[str, float]
) -> pd.DataFrame | None:
    """Rule inputs of the training set's rows: its fit and custom features, and the decayed
    event counts from the snapshot (None when events are wanted but there is no snapshot)."""
    fit_columns = [
        c
        for c in training_set.columns
        if c in (*CATEGORICAL, "company_size", "email_free") or c.startswith("custom_")
    ]
    frame = training_set[fit_columns]
    if not event_half_lives:
        return frame
    if snapshot is None:
        return None
    decayed = decayed_counts(snapshot, training_set[["lead_id", "cutoff"]], event_half_lives)
    return pd.concat([frame, decayed], axis=1)


def rules_baseline(
    training_set: pd.DataFrame, config: Config, snapshot: Snapshot | None
) -> Baseline:
    """The configured rules' points, or points fitted on the training slice; see the module."""
    from training.guards import apply_window
    from training.train import TrainingError, split_rows

    if config.training.rules is not None:
        rules = load_rules(config.training.rules)
        label = f"rules file {config.training.rules}"
        missing = [c for c in fit_inputs(rules) if c not in training_set]
        if missing:
            raise ConfigError(f"the rules read fields the training set lacks: {missing}")
        inputs = baseline_inputs(training_set, snapshot, half_lives(rules))
        if inputs is None:
            return Baseline(rules, None, label, "the rules score events and no snapshot was read")
        return Baseline(rules, score_points(_scoring_inputs(inputs, rules), rules).total, label)
    event_types = present_event_types(snapshot)
    timestamped = training_set["cutoff"].notna().any()
    empty = Rules(name="fitted")
    if timestamped and snapshot is None:
        return Baseline(
            empty,
            None,
            FITTED_LABEL,
            "a timestamped training set needs its snapshot's events to fit points",
        )
    try:
        windowed, kept, _ = apply_window(training_set, config)
        split = split_rows(windowed, config, [])
    except (TrainingError, ValueError) as error:
        return Baseline(empty, None, FITTED_LABEL, f"no training slice to fit points on: {error}")
    in_window = np.flatnonzero(kept)
    rows = in_window[split.mask("train")]
    if PERIOD in training_set:  # a hazard model's period rows have a period's label, not ours
        rows = rows[training_set[PERIOD].isna().to_numpy()[rows]]
    rows = fit_sample(rows, config.training.seed)
    if PERIOD in training_set:  # its split differs from the model's: points on every row
        scored = np.arange(len(training_set))
    else:
        scored = rows_to_score(len(training_set), in_window[split.mask("test")], rows)
    inputs = baseline_inputs(
        training_set.iloc[scored].reset_index(drop=True),
        snapshot,
        dict.fromkeys(event_types, HALF_LIFE_DAYS),
    )
    assert inputs is not None
    labels = training_set["label"].to_numpy()[rows]
    try:
        rules = fit_rules(
            inputs.iloc[np.searchsorted(scored, rows)].reset_index(drop=True),
            labels,
            config.custom_fields,
            event_types,
        )
    except ValueError as error:
        return Baseline(empty, None, FITTED_LABEL, str(error))
    points = np.full(len(training_set), np.nan)
    points[scored] = score_points(_scoring_inputs(inputs, rules), rules).total
    return Baseline(rules, points, FITTED_LABEL)


def fit_sample(rows: np.ndarray, seed: int) -> np.ndarray:
    """The training-slice rows the points are fitted on: all up to `FIT_ROWS`, else a seeded
    uniform sample of that many (in order). A points model of a few dozen columns is settled
    long before that; its events' decayed counts and the regression grow with every row."""
    return sample_rows(rows, FIT_ROWS, seed)


def rows_to_score(n_rows: int, tested: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Rows that get points (sorted): the fitted rows and the test slice's, where the model
    is compared with the rules (the gate, the report). The other rows' points are never
    read; they stay NaN."""
    wanted = np.zeros(n_rows, dtype=bool)
    wanted[tested] = True
    wanted[fitted] = True
    return np.flatnonzero(wanted)


def rule_inputs_for(
    training_set: pd.DataFrame, snapshot: Snapshot | None, rules: Rules
) -> pd.DataFrame | None:
    """What `score_points` reads for these rules on the training set's rows."""
    inputs = baseline_inputs(training_set, snapshot, half_lives(rules))
    return None if inputs is None else _scoring_inputs(inputs, rules)


@dataclass(frozen=True)
class Suggestion:
    """What `leadscore rules suggest` writes and prints."""

    rules: Rules
    table: pd.DataFrame | None  # re-weighted rules: current against suggested points
    held_out_auc: dict[str, float]  # rules name -> AUC on the held-out rows


def _inputs(inputs: pd.DataFrame | None) -> pd.DataFrame:
    if inputs is None:
        raise ContractError("the rules score events and no snapshot was read")
    return inputs


def older_and_newer(training_set: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions to fit on (the older 70% by cutoff) and to check on (the newest 30%);
    without cutoffs (a flat export) a stratified random 70 / 30."""
    if training_set["cutoff"].notna().all():
        order = np.argsort(training_set["cutoff"].to_numpy(), kind="stable")
        cut = int(0.7 * len(order))
        return order[:cut], order[cut:]
    from sklearn.model_selection import train_test_split

    labels = training_set["label"].to_numpy()
    fit, check = train_test_split(
        np.arange(len(training_set)),
        test_size=0.3,
        stratify=labels if len(np.unique(labels)) > 1 else None,
        random_state=seed,
    )
    return np.sort(fit), np.sort(check)


def suggest_rules(
    training_set: pd.DataFrame, snapshot: Snapshot, config: Config, rules_path: Path | None
) -> Suggestion:
    """Points fitted over the export (or `rules_path` re-weighted) on the older 70% of rows,
    and the held-out AUC of the current rules (the given file, the config's, or for a
    timestamped export the shipped ones) and of the suggestion."""
    labels = training_set["label"].to_numpy()
    older, newer = older_and_newer(training_set, config.training.seed)
    if len(np.unique(labels[older])) < 2 or len(np.unique(labels[newer])) < 2:
        raise ContractError(
            f"{len(labels):,} rows with {int(labels.sum()):,} converted: too few to fit and "
            "check points (both outcomes are needed on each side)"
        )
    current_path = rules_path or config.training.rules
    current = load_rules(current_path) if current_path or not snapshot.flat else None
    table = None
    if rules_path is not None and current is not None:
        inputs = _inputs(rule_inputs_for(training_set, snapshot, current))
        suggested, table = suggest_points(
            inputs.iloc[older].reset_index(drop=True), labels[older], current
        )
    else:
        event_types = present_event_types(snapshot)
        wanted = dict.fromkeys(event_types, HALF_LIFE_DAYS)
        inputs = _inputs(baseline_inputs(training_set, snapshot, wanted))
        suggested = fit_rules(
            inputs.iloc[older].reset_index(drop=True),
            labels[older],
            config.custom_fields,
            event_types,
            name="suggested",
        )

    def held_out(rules: Rules) -> float:
        scoring = _inputs(rule_inputs_for(training_set.iloc[newer], snapshot, rules))
        total = score_points(scoring, rules).total
        return float(ranking_metrics(labels[newer], total)["roc_auc"])

    aucs = {} if current is None else {str(current_path or "the shipped rules"): held_out(current)}
    aucs["suggested"] = held_out(suggested)
    return Suggestion(suggested, table, aucs)


def suggest_rules_file(
    config: Config,
    out: Path,
    rules_path: Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Suggestion:
    """`leadscore rules suggest`: read the config's source, build its rows (`progress` gets
    (done, total) while building), suggest points (`suggest_rules`) and write them to `out`
    as a rules YAML, atomically."""
    from common.io import write_atomic
    from features.pipeline import build_training_set
    from features.reader import read_snapshot
    from training.rules import rules_to_yaml

    snapshot = read_snapshot(config)
    training_set, _ = build_training_set(snapshot, config, progress)
    suggestion = suggest_rules(training_set, snapshot, config, rules_path)
    text = rules_to_yaml(suggestion.rules)

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    write_atomic(out, write)
    return suggestion


__all__ = [
    "FITTED_LABEL",
    "Baseline",
    "CustomFieldRule",
    "EngagementRule",
    "NegativeEventRule",
    "fit_rules",
    "present_event_types",
    "rule_inputs_for",
    "rules_baseline",
    "suggest_rules",
    "suggest_rules_file",
]
