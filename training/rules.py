"""The points model marketing teams write, beside the model: fit, engagement, negatives, thresholds.

A YAML file (see `default_rules.yaml`, shipped in this package) holds it as teams write them in
HubSpot or Marketo: fit points per seniority, function, company size band, industry, country,
region and lead source; engagement points per event type with a cap and a half-life; negative
points for unsubscribes, bounces and free mail; and named thresholds (e.g. MQL at 60).

`load_rules` is the one edge (it reads a file); the rest is pure. `rule_inputs` gathers what
the rules read for (lead, cutoff) rows from a snapshot, point in time: fit attributes and
time-decayed event counts. `score_points` turns those into points, their breakdown and the
thresholds each row passes, for a million rows in well under a second. `suggest_points` fits
a logistic regression to labelled rows and rewrites the same rules with data-driven points.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypedDict

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.config import ConfigError, custom_feature_name, describe_error
from features.contract import EVENT_TYPES
from features.decay import decayed_counts, decayed_name
from features.fit import REGION_OF, lead_fit
from features.pipeline import row_leads
from features.reader import Snapshot
from features.titles import FUNCTIONS, SENIORITIES

DEFAULT_RULES = "default_rules.yaml"
#: Points are reported to one decimal: decayed engagement makes fractions of a point.
DECIMALS = 1
#: Fit tables keyed by a value of the fit feature of the same name.
FIT_TABLES = ("seniority", "job_function", "industry", "country", "region", "lead_source")
REGIONS = (*dict.fromkeys(REGION_OF.values()), "other")
#: Inverse L2 strength of `suggest_points`' logistic regression on standardised inputs.
SUGGEST_C = 1.0


# --------------------------------------------------------------------------- schema


def _one_of(allowed: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not a {what}; expected one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


EventType = Annotated[str, _one_of(EVENT_TYPES, "contract event type")]
Seniority = Annotated[str, _one_of(SENIORITIES, "seniority level")]
JobFunction = Annotated[str, _one_of(FUNCTIONS, "job function")]
Region = Annotated[str, _one_of(REGIONS, "region")]


def _threshold_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{name!r} is not a threshold name (lower case letters, digits, _)")
    return name


ThresholdName = Annotated[str, AfterValidator(_threshold_name)]


def _fold(value: str) -> str:
    """Trim, collapse inner whitespace and case-fold, as the snapshot does to categories."""
    return re.sub(r"\s+", " ", value.strip()).casefold()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SizeBands(_Strict):
    """Company size bands: [lower bound (inclusive), points], ascending; below the first: 0."""

    bands: tuple[tuple[Annotated[float, Field(ge=0)], float], ...] = Field(min_length=1)
    missing: float = Field(0.0, description="Points when the company size is unknown.")

    @field_validator("bands")
    @classmethod
    def _ascending(cls, bands: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        lowers = [lower for lower, _ in bands]
        if any(b <= a for a, b in itertools.pairwise(lowers)):
            raise ValueError(f"band lower bounds must rise strictly, got {lowers}")
        return bands


class CustomFieldRule(_Strict):
    """Points for one custom field (keyed by its column): per value for a categorical or
    boolean field (`true` / `false`), or per band [lower bound (inclusive), points] for a
    numeric one; an unlisted value or a value below the first band gets 0, a missing one
    `missing`."""

    values: dict[str, float] = Field(default_factory=dict)
    bands: tuple[tuple[float, float], ...] = ()
    missing: float = Field(0.0, description="Points when the field is empty.")

    @field_validator("values", mode="before")
    @classmethod
    def _fold_keys(cls, table: Any) -> Any:
        if not isinstance(table, Mapping):
            return table
        return {_fold(str(key)): points for key, points in table.items()}

    @field_validator("bands")
    @classmethod
    def _ascending(cls, bands: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        lowers = [lower for lower, _ in bands]
        if any(b <= a for a, b in itertools.pairwise(lowers)):
            raise ValueError(f"band lower bounds must rise strictly, got {lowers}")
        return bands

    @model_validator(mode="after")
    def _values_or_bands(self) -> CustomFieldRule:
        if self.values and self.bands:
            raise ValueError("give values (categorical, boolean) or bands (numeric), not both")
        return self


class FitRules(_Strict):
    """Points for who the lead is; a value a table does not list (or a missing one) gets 0."""

    seniority: dict[Seniority, float] = Field(default_factory=dict)
    job_function: dict[JobFunction, float] = Field(default_factory=dict)
    company_size: SizeBands | None = None
    industry: dict[str, float] = Field(default_factory=dict)
    country: dict[str, float] = Field(default_factory=dict)
    region: dict[Region, float] = Field(default_factory=dict)
    lead_source: dict[str, float] = Field(default_factory=dict)
    custom: dict[str, CustomFieldRule] = Field(
        default_factory=dict, description="Custom fields by column (the config's custom_fields)."
    )

    @field_validator("industry", "country", "lead_source", mode="before")
    @classmethod
    def _fold_keys(cls, table: Any) -> Any:
        if not isinstance(table, Mapping):
            return table
        folded: dict[str, Any] = {}
        for key, points in table.items():
            name = _fold(str(key))
            if name in folded:
                raise ValueError(f"{key!r} is listed twice (values match case-insensitively)")
            folded[name] = points
        return folded

    def tables(self) -> dict[str, dict[str, float]]:
        """The non-empty value tables, by fit feature."""
        return {name: getattr(self, name) for name in FIT_TABLES if getattr(self, name)}


class EngagementRule(_Strict):
    """Points per event of one type at full weight, a cap on the type's total, a half-life."""

    points: float = Field(ge=0, description="Points per event, at full weight.")
    cap: float | None = Field(None, gt=0, description="The most points this type adds in total.")
    half_life_days: float = Field(gt=0, description="Days after which an event counts half.")


class NegativeEventRule(_Strict):
    """Negative points per event of one type, the most taken away in total, a half-life."""

    points: float = Field(le=0, description="Points per event (negative), at full weight.")
    cap: float | None = Field(None, lt=0, description="The most points taken away (negative).")
    half_life_days: float = Field(gt=0, description="Days after which an event counts half.")


class NegativeRules(_Strict):
    """Points taken away: negative event types, and a free-mail address."""

    events: dict[EventType, NegativeEventRule] = Field(default_factory=dict)
    free_mail: float = Field(0.0, le=0, description="Points for a free-mail address.")


class Rules(_Strict):
    """A points model: fit, engagement and negative points, and ascending thresholds."""

    name: str = "rules"
    description: str = ""
    fit: FitRules = Field(default_factory=FitRules)
    engagement: dict[EventType, EngagementRule] = Field(default_factory=dict)
    negative: NegativeRules = Field(default_factory=NegativeRules)
    thresholds: dict[ThresholdName, float] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, thresholds: dict[str, float]) -> dict[str, float]:
        items = list(thresholds.items())
        for (low, a), (high, b) in itertools.pairwise(items):
            if b <= a:
                raise ValueError(f"thresholds must rise in order: {high!r} ({b}) <= {low!r} ({a})")
        return thresholds

    @field_validator("negative")
    @classmethod
    def _not_both(cls, negative: NegativeRules, info: ValidationInfo) -> NegativeRules:
        both = sorted(set(negative.events) & set(info.data.get("engagement", {})))
        if both:
            raise ValueError(f"event types in both engagement and negative.events: {both}")
        return negative


# --------------------------------------------------------------------------- reading, writing


def rules_from_yaml(text: str, origin: str = "rules") -> Rules:
    """Parse and validate rules from YAML text; raises `ConfigError` naming each bad key."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"rules {origin} are not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"rules {origin} must hold a mapping at the top level")
    try:
        return Rules.model_validate(values)
    except ValidationError as error:
        raise ConfigError(describe_error(error, origin, "rules")) from None


def load_rules(path: Path | None = None) -> Rules:
    """Read a rules YAML file; None reads the default rules shipped with the package."""
    if path is None:
        text = resources.files("training").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return rules_from_yaml(text, DEFAULT_RULES)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"rules file not found: {path}") from None
    return rules_from_yaml(text, str(path))


def _plain(value: Any) -> Any:
    """Whole floats as ints, tuples as lists: how a person writes the YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def rules_to_yaml(rules: Rules) -> str:
    """The rules as YAML that `rules_from_yaml` reads back to equal rules (defaults left out)."""
    values = _plain(rules.model_dump(mode="python", exclude_defaults=True))
    return yaml.safe_dump(
        values, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100
    )


# --------------------------------------------------------------------------- inputs


def half_lives(rules: Rules) -> dict[str, float]:
    """Half-life in days of each event type the rules score (engagement, then negative)."""
    engagement = {t: rule.half_life_days for t, rule in rules.engagement.items()}
    return engagement | {t: rule.half_life_days for t, rule in rules.negative.events.items()}


def fit_inputs(rules: Rules) -> list[str]:
    """The fit features the rules read (custom fields as their `custom_` features)."""
    used = list(rules.fit.tables())
    if rules.fit.company_size is not None:
        used.append("company_size")
    if rules.negative.free_mail:
        used.append("email_free")
    used += [custom_feature_name(column) for column in rules.fit.custom]
    return used


def input_names(rules: Rules) -> list[str]:
    """Columns `score_points` reads: fit features, then `decayed_<type>` per scored event type."""
    return fit_inputs(rules) + [decayed_name(t) for t in half_lives(rules)]


def rule_inputs(snapshot: Snapshot, rows: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """What the rules read for each (lead_id, cutoff) row, using only what was known before it.

    Returns a frame aligned with `rows` (same index): the fit features the rules use (as
    `features.fit.lead_fit` computes them) and each scored event type's decayed count, with its
    own half-life. A flat snapshot has no events: its decayed counts are NaN (no points).
    """
    row_lead = row_leads(snapshot, rows)
    declared = {field.column: field for field in snapshot.custom_fields}
    unknown = [column for column in rules.fit.custom if column not in declared]
    if unknown:
        raise ConfigError(
            f"the rules score custom fields the config does not declare: {unknown}; add them "
            "to custom_fields or remove them from the rules"
        )
    used = tuple(declared[column] for column in rules.fit.custom)
    fit = lead_fit(snapshot.leads, used)[fit_inputs(rules)].iloc[row_lead]
    fit.index = rows.index
    return pd.concat([fit, decayed_counts(snapshot, rows, half_lives(rules))], axis=1)


# --------------------------------------------------------------------------- points


@dataclass(frozen=True, eq=False)
class Points:
    """Points of each row: the total, one column per rule (summing to it), thresholds passed."""

    total: np.ndarray
    breakdown: pd.DataFrame
    thresholds: pd.DataFrame


class PointsExplanation(TypedDict):
    """One row's points for the API: total, the non-zero rules (largest first), thresholds."""

    total: float
    breakdown: dict[str, float]
    thresholds: list[str]


def _table_codes(values: pd.Series, keys: list[str]) -> np.ndarray:
    """Position of each row's value in `keys` (compared folded); -1 when unlisted or missing."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    where = {key: i for i, key in enumerate(keys)}
    per_value = np.array([where.get(_fold(str(u)), -1) for u in uniques] + [-1], dtype=np.int64)
    return per_value[codes]


def _band_codes(size: np.ndarray, bands: SizeBands) -> np.ndarray:
    """Band index of each size; -1 below the first band, len(bands) when missing."""
    lowers = np.array([lower for lower, _ in bands.bands], dtype=np.float64)
    codes = np.searchsorted(lowers, size, side="right") - 1
    return np.where(np.isnan(size), len(bands.bands), codes)


def _value_texts(values: pd.Series) -> pd.Series:
    """A custom field's values as the text its rule lists: booleans (1.0 / 0.0) as true / false."""
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        number = values.astype("float64")
        text = number.map(lambda v: "true" if v == 1 else "false" if v == 0 else f"{v:g}")
        return text.where(number.notna())
    return values


def _custom_codes(values: pd.Series, rule: CustomFieldRule) -> tuple[np.ndarray, list[float]]:
    """Level code of each row for a custom field's rule (the last level: missing), its points."""
    if rule.bands:
        lowers = np.array([lower for lower, _ in rule.bands], dtype=np.float64)
        number = values.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        codes = np.searchsorted(lowers, number, side="right") - 1
        codes = np.where(np.isnan(number), len(rule.bands), codes)
        return codes, [points for _, points in rule.bands] + [rule.missing]
    texts = _value_texts(values)
    codes = _table_codes(texts, list(rule.values))
    codes = np.where(texts.isna().to_numpy(), len(rule.values), codes)
    return codes, [*rule.values.values(), rule.missing]


def _custom_value_points(value: Any, rule: CustomFieldRule) -> float:
    """`_custom_codes` for one value, in plain Python (the API's path)."""
    if _one_missing(value):
        return float(rule.missing)
    if rule.bands:
        below = [points for lower, points in rule.bands if lower <= float(value)]
        return float(below[-1]) if below else 0.0
    if isinstance(value, bool | int | float) and not isinstance(value, str):
        text = "true" if value == 1 else "false" if value == 0 else f"{float(value):g}"
    else:
        text = _fold(str(value))
    return float(rule.values.get(text, 0.0))


def _level_points(codes: np.ndarray, points: list[float]) -> np.ndarray:
    """Points per level code; code -1 (not a level) scores 0."""
    return np.append(np.asarray(points, dtype=np.float64), 0.0)[codes]


def _capped(decayed: np.ndarray, rule: EngagementRule | NegativeEventRule) -> np.ndarray:
    """The decayed count the rule scores: at most cap / points events; unknown (NaN) is 0."""
    count = np.nan_to_num(decayed, nan=0.0)
    if rule.cap is None or rule.points == 0:
        return count
    return np.minimum(count, rule.cap / rule.points)


def _numeric(inputs: pd.DataFrame, column: str) -> np.ndarray:
    return np.asarray(inputs[column].to_numpy(dtype=np.float64, na_value=np.nan))


def _rule_points(inputs: pd.DataFrame, rules: Rules) -> dict[str, np.ndarray]:
    """Unrounded points of each rule for each row, keyed `section.rule`."""
    parts: dict[str, np.ndarray] = {}
    for name, table in rules.fit.tables().items():
        parts[f"fit.{name}"] = _level_points(
            _table_codes(inputs[name], list(table)), list(table.values())
        )
    if (bands := rules.fit.company_size) is not None:
        codes = _band_codes(_numeric(inputs, "company_size"), bands)
        parts["fit.company_size"] = _level_points(
            codes, [points for _, points in bands.bands] + [bands.missing]
        )
    for column, custom_rule in rules.fit.custom.items():
        codes, points = _custom_codes(inputs[custom_feature_name(column)], custom_rule)
        parts[f"fit.custom.{column}"] = _level_points(codes, points)
    events: list[tuple[str, Mapping[str, EngagementRule | NegativeEventRule]]] = [
        ("engagement", rules.engagement),
        ("negative", rules.negative.events),
    ]
    for section, table_rules in events:
        for event_type, rule in table_rules.items():
            count = _capped(_numeric(inputs, decayed_name(event_type)), rule)
            parts[f"{section}.{event_type}"] = rule.points * count
    if rules.negative.free_mail:
        free = _numeric(inputs, "email_free") == 1.0
        parts["negative.free_mail"] = np.where(free, rules.negative.free_mail, 0.0)
    return parts


def score_points(inputs: pd.DataFrame, rules: Rules) -> Points:
    """Points of each row of `rule_inputs`: total, per-rule breakdown and thresholds passed.

    Engagement points per type are min(cap, points x decayed count); negative ones the same
    with the cap as the floor. Each rule's points are rounded to `DECIMALS` and the total is
    their sum, so the breakdown adds up to the total. Thresholds pass at total >= minimum.
    """
    missing = [c for c in input_names(rules) if c not in inputs.columns]
    if missing:
        raise ValueError(f"inputs lack columns the rules read: {missing}; see rule_inputs")
    unit = 10**DECIMALS
    units = {rule: np.rint(points * unit) for rule, points in _rule_points(inputs, rules).items()}
    total_units = np.zeros(len(inputs), dtype=np.float64)
    for values in units.values():
        total_units += values
    total = total_units / unit
    breakdown = pd.DataFrame(
        {rule: values / unit for rule, values in units.items()}, index=inputs.index, dtype=float
    )
    thresholds = pd.DataFrame(
        {name: total >= minimum for name, minimum in rules.thresholds.items()},
        index=inputs.index,
        dtype=bool,
    )
    return Points(total, breakdown, thresholds)


def explain_row(points: Points, i: int) -> PointsExplanation:
    """Row `i` (by position): total, the rules that gave it points, largest first, and the
    thresholds it passes, in order."""
    row = points.breakdown.iloc[i]
    nonzero = row[row != 0]
    order = np.argsort(-np.abs(nonzero.to_numpy()), kind="stable")
    passed = points.thresholds.iloc[i]
    return PointsExplanation(
        total=float(points.total[i]),
        breakdown={str(nonzero.index[j]): float(nonzero.iloc[j]) for j in order},
        thresholds=[str(name) for name in passed.index[passed.to_numpy(dtype=bool)]],
    )


def _one_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def explain_values(values: Mapping[str, Any], rules: Rules) -> PointsExplanation:
    """`explain_row(score_points(...), 0)` for one lead given as a dict of rule inputs.

    The same arithmetic in plain Python, for the API: a one-row DataFrame costs milliseconds,
    this microseconds. `tests/unit/test_rules.py` checks the two agree exactly.
    """
    parts: dict[str, float] = {}
    for name, table in rules.fit.tables().items():
        value = values.get(name)
        parts[f"fit.{name}"] = (
            0.0 if _one_missing(value) else float(table.get(_fold(str(value)), 0.0))
        )
    if (bands := rules.fit.company_size) is not None:
        size: Any = values.get("company_size")
        if _one_missing(size):
            parts["fit.company_size"] = float(bands.missing)
        else:
            below = [points for lower, points in bands.bands if lower <= float(size)]
            parts["fit.company_size"] = float(below[-1]) if below else 0.0
    for column, custom_rule in rules.fit.custom.items():
        value = values.get(custom_feature_name(column))
        parts[f"fit.custom.{column}"] = _custom_value_points(value, custom_rule)
    sections: list[tuple[str, Mapping[str, EngagementRule | NegativeEventRule]]] = [
        ("engagement", rules.engagement),
        ("negative", rules.negative.events),
    ]
    for section, table_rules in sections:
        for event_type, rule in table_rules.items():
            raw: Any = values.get(decayed_name(event_type))
            count = 0.0 if _one_missing(raw) else float(raw)
            if rule.cap is not None and rule.points != 0:
                count = min(count, rule.cap / rule.points)
            parts[f"{section}.{event_type}"] = rule.points * count
    if rules.negative.free_mail:
        free = values.get("email_free")
        parts["negative.free_mail"] = float(rules.negative.free_mail) if free == 1.0 else 0.0
    unit = 10**DECIMALS
    units = {rule: float(np.rint(points * unit)) for rule, points in parts.items()}
    total = sum(units.values()) / unit
    nonzero = sorted(
        ((rule, u / unit) for rule, u in units.items() if u != 0), key=lambda kv: -abs(kv[1])
    )
    return PointsExplanation(
        total=total,
        breakdown=dict(nonzero),
        thresholds=[name for name, minimum in rules.thresholds.items() if total >= minimum],
    )


# --------------------------------------------------------------------------- suggesting points


@dataclass(frozen=True)
class _Term:
    """One number of the rules `suggest_points` re-estimates, and its regression input."""

    rule: str  # e.g. fit.seniority.vp, fit.company_size.200, engagement.pricing_page_view
    group: str  # the table it belongs to (fit.seniority), or the rule itself
    path: tuple[str | int, ...]  # where its points live in the rules' JSON dump
    current: float
    values: np.ndarray  # the regression input: a 0/1 indicator or a capped decayed count
    reference: bool = False  # the level the others of its table are measured from


_Level = tuple[str, tuple[str | int, ...], float]  # name, path of its points, current points


def _level_terms(group: str, codes: np.ndarray, levels: list[_Level]) -> list[_Term]:
    """Indicator terms of one fit table (`codes`: each row's level, -1 when none).

    A row outside every level (unlisted or missing value) scores 0 and is the baseline. When no
    row is outside, the levels are collinear with the intercept, so the level whose current
    points are nearest 0 becomes the reference: it keeps its points, the others move relative
    to it.
    """
    reference = -1
    if codes.size and (codes >= 0).all():
        reference = int(np.argmin([abs(points) for _, _, points in levels]))
    return [
        _Term(
            f"{group}.{name}", group, path, points, (codes == i).astype(np.float64), i == reference
        )
        for i, (name, path, points) in enumerate(levels)
    ]


def _event_term(
    section: str, event_type: str, rule: EngagementRule | NegativeEventRule, inputs: pd.DataFrame
) -> _Term:
    rule_name = f"{section}.{event_type}"
    path = ("engagement",) if section == "engagement" else ("negative", "events")
    count = _capped(_numeric(inputs, decayed_name(event_type)), rule)
    return _Term(rule_name, rule_name, (*path, event_type, "points"), rule.points, count)


def _terms(inputs: pd.DataFrame, rules: Rules) -> list[_Term]:
    """The numbers of the rules with their regression inputs, in the rules' order."""
    terms: list[_Term] = []
    for name, table in rules.fit.tables().items():
        levels: list[_Level] = [(key, ("fit", name, key), pts) for key, pts in table.items()]
        terms += _level_terms(f"fit.{name}", _table_codes(inputs[name], list(table)), levels)
    if (bands := rules.fit.company_size) is not None:
        at = ("fit", "company_size")
        levels = [
            (f"{low:g}", (*at, "bands", i, 1), pts) for i, (low, pts) in enumerate(bands.bands)
        ]
        levels.append(("missing", (*at, "missing"), bands.missing))
        codes = _band_codes(_numeric(inputs, "company_size"), bands)  # missing: the last level
        terms += _level_terms("fit.company_size", codes, levels)
    for column, custom_rule in rules.fit.custom.items():
        custom_at = ("fit", "custom", column)
        codes, points = _custom_codes(inputs[custom_feature_name(column)], custom_rule)
        names = (
            [f"{low:g}" for low, _ in custom_rule.bands]
            if custom_rule.bands
            else list(custom_rule.values)
        )
        paths: list[tuple[str | int, ...]] = (
            [(*custom_at, "bands", i, 1) for i in range(len(custom_rule.bands))]
            if custom_rule.bands
            else [(*custom_at, "values", key) for key in custom_rule.values]
        )
        custom_levels: list[_Level] = [
            (n, p, pts) for n, p, pts in zip(names, paths, points[:-1], strict=True)
        ]
        custom_levels.append(("missing", (*custom_at, "missing"), custom_rule.missing))
        terms += _level_terms(f"fit.custom.{column}", codes, custom_levels)
    terms += [_event_term("engagement", t, rule, inputs) for t, rule in rules.engagement.items()]
    terms += [_event_term("negative", t, rule, inputs) for t, rule in rules.negative.events.items()]
    if rules.negative.free_mail:
        free = (_numeric(inputs, "email_free") == 1.0).astype(np.float64)
        name = "negative.free_mail"
        terms.append(_Term(name, name, ("negative", "free_mail"), rules.negative.free_mail, free))
    return terms


def fit_log_odds(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """L2-regularised logistic regression on standardised columns; coefficients per raw unit.

    Columns without variance (a level no row has) get NaN: the data say nothing about them.
    """
    from sklearn.linear_model import LogisticRegression  # imported here: serving never needs it

    coef = np.full(x.shape[1], np.nan)
    spread = x.std(axis=0)
    varies = spread > 0
    if not varies.any():
        return coef
    standard = (x[:, varies] - x[:, varies].mean(axis=0)) / spread[varies]
    model = LogisticRegression(C=SUGGEST_C, solver="lbfgs", max_iter=2000)
    model.fit(standard, labels)
    coef[varies] = model.coef_[0] / spread[varies]
    return coef


def _section_sign(rule: str) -> float:
    """+1: engagement points cannot be negative; -1: negative points cannot be positive; 0: any."""
    if rule.startswith("engagement."):
        return 1.0
    return -1.0 if rule.startswith("negative.") else 0.0


def _matching_scale(x: np.ndarray, coef: np.ndarray, current: np.ndarray) -> float:
    """Points per unit of log-odds at which the fitted signal spreads like the current points."""
    known = ~np.isnan(coef)
    signal = x[:, known] @ coef[known]
    if signal.std() == 0:
        return 1.0  # no coefficient moves any row: every suggestion is its anchor
    if current.std() == 0:
        raise ValueError("the current rules give every row the same points; pass a scale")
    return float(current.std() / signal.std())


def _suggested_value(term: _Term, coef: float, scale: float, anchor: float) -> float:
    """Anchor + scale x coefficient, rounded and kept to its section's sign; -0 as 0."""
    if term.reference or math.isnan(coef):
        return term.current
    points = float(np.rint(anchor + scale * coef)) + 0.0
    sign = _section_sign(term.rule)
    return max(points, 0.0) if sign > 0 else min(points, 0.0) if sign < 0 else points


def _set(tree: Any, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def suggest_points(
    inputs: pd.DataFrame, labels: np.ndarray, rules: Rules, scale: float | None = None
) -> tuple[Rules, pd.DataFrame]:
    """Data-driven points for the same rules, from a logistic regression on labelled rows.

    The regression reads what the rules score: an indicator per listed value of each fit table
    (and per company size band, and missing size), each event type's decayed count capped as
    the rule caps it (min(count, cap / points): points grow linearly up to the cap, so the best
    points per event are the slope of the log-odds over that range), and the free-mail flag.
    Columns are standardised, the L2 penalty is `SUGGEST_C`, lbfgs is deterministic.

    Coefficients (log-odds per event or per level) become points as `round(scale x coef)`
    (plus the reference level's points, for a table measured from one; see `_level_terms`):
    `scale` is points per unit of log-odds, so the odds of conversion double every
    `scale x ln 2` points. By default it is chosen so that the suggested points spread as
    widely as the current ones on these rows (equal standard deviation of totals): the
    thresholds keep a comparable meaning. Engagement points are kept >= 0 and negative ones
    <= 0 (the comparison shows the raw coefficient); a value no row has keeps its points. Caps
    are kept as counts of events (cap / points), the count the regression saw, so a cap moves
    with its points; half-lives and thresholds are unchanged.

    Args:
        inputs: rows of `rule_inputs` for these rules.
        labels: 1 (converted) or 0 per row.
        rules: the rules to re-estimate.
        scale: points per unit of log-odds; None matches the current points' spread.

    Returns:
        The suggested rules, and a table of rule, current_points, suggested_points, coefficient
        (log-odds per event or level) and rows (rows where the input is non-zero).
    """
    y = np.asarray(labels).astype(np.int64)
    if y.shape[0] != len(inputs):
        raise ValueError(f"{y.shape[0]} labels for {len(inputs)} rows")
    if not np.isin(y, (0, 1)).all() or np.unique(y).size < 2:
        raise ValueError("labels must be 0 or 1, and both must occur")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number of points per log-odds, got {scale}")
    terms = _terms(inputs, rules)
    fitted = [t for t in terms if not t.reference]
    x = np.column_stack([t.values for t in fitted]) if fitted else np.zeros((len(inputs), 0))
    coef = fit_log_odds(x, y)
    if scale is None:
        scale = _matching_scale(x, coef, np.sum(list(_rule_points(inputs, rules).values()), axis=0))
    anchor = {t.group: t.current for t in terms if t.reference}
    by_rule = dict(zip((t.rule for t in fitted), coef, strict=True))
    values = rules.model_dump(mode="json")
    rows: list[dict[str, Any]] = []
    for term in terms:
        c = 0.0 if term.reference else float(by_rule[term.rule])
        suggested = _suggested_value(term, c, scale, anchor.get(term.group, 0.0))
        _set(values, term.path, suggested)
        rows.append(_comparison(term, suggested, c))
    _rescale_caps(values, rules)
    n, positives = len(inputs), int(y.sum())
    values["name"] = f"{rules.name}_suggested"
    values["description"] = (
        f"Points suggested from {n:,} labelled rows ({positives:,} converted) for "
        f"'{rules.name}': {scale:.3g} points per unit of log-odds (the odds double every "
        f"{scale * math.log(2):.1f} points)."
    )
    table = pd.DataFrame(rows, columns=list(_COMPARISON))
    return Rules.model_validate(values), table


_COMPARISON = ("rule", "current_points", "suggested_points", "coefficient", "rows")


def _comparison(term: _Term, suggested: float, coef: float) -> dict[str, Any]:
    return {
        "rule": term.rule,
        "current_points": term.current,
        "suggested_points": suggested,
        "coefficient": coef,
        "rows": int(np.count_nonzero(term.values)),
    }


def _rescale_caps(values: dict[str, Any], rules: Rules) -> None:
    """Keep each event cap as the same number of events at the suggested points per event."""
    sections: list[tuple[dict[str, Any], Mapping[str, EngagementRule | NegativeEventRule]]] = [
        (values["engagement"], rules.engagement),
        (values["negative"]["events"], rules.negative.events),
    ]
    for suggested, current in sections:
        for event_type, rule in current.items():
            new = suggested[event_type]
            if rule.cap is not None and rule.points != 0 and new["points"] != 0:
                cap = new["points"] * rule.cap / rule.points
                new["cap"] = round(cap, DECIMALS) or cap
