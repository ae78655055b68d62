"""The one typed config: where the snapshot is, how an export maps onto the contract, and
how training rows and features are built.

Built by `load_config` from an optional YAML file plus environment overrides, never at import.
Environment variables `LEADSCORE__<SECTION>__<KEY>` override the file, e.g.
`LEADSCORE__SOURCE__URL=postgresql+psycopg://127.0.0.1/test` or `LEADSCORE__HORIZON_DAYS=60`;
values are read as YAML scalars, so numbers, booleans and `[7, 30]` lists work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "LEADSCORE__"
DEFAULT_MISSING = ("", "n/a", "na", "null", "none", "nan", "-", "--", "?", "unknown")


class ConfigError(ValueError):
    """The config is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class JoinConfig(_Strict):
    """Another table of the export joined onto the leads table by a key, before mapping.

    Each lead takes one row of the joined table: when a key has several rows, the one with
    the earliest `order_by` value counts (`pick: latest` for the latest); without `order_by`
    several rows for one key are an error. Leads without a row get missing values.
    """

    table: str = Field(description="File (name with or without extension) or table to join.")
    key: str = Field(description="Key column of the joined table.")
    lead_key: str | None = Field(
        None, description="Column of the leads table holding the key; default: `key`."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Joined column -> its name in the leads table (then mapped as any lead "
        "column); a list keeps the names; empty: every column but the key.",
    )
    order_by: str | None = Field(
        None, description="Column of the joined table ranking several rows of one key."
    )
    pick: Literal["earliest", "latest"] = Field(
        "earliest", description="Which row of a key counts, by `order_by`."
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _list_keeps_names(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return {str(v): str(v) for v in value}
        return value


class SourceConfig(_Strict):
    """Where the snapshot lives: a folder of CSV/Parquet files or an SQLAlchemy URL."""

    path: Path | None = Field(None, description="Folder holding the leads and events files.")
    url: str | None = Field(None, description="SQLAlchemy URL of a database holding the tables.")
    leads: str = Field("leads", description="Leads file (name with or without extension) or table.")
    events: str | None = Field(
        "events", description="Events file or table; null for a flat export."
    )
    db_schema: str | None = Field(
        None, alias="schema", description="Database schema of the tables."
    )
    flat: bool = Field(
        False,
        description="A flat export: one row per lead, no timestamps, aggregated engagement and "
        "an outcome column mapped to `converted`.",
    )
    delimiter: str = Field(
        "auto",
        description="CSV delimiter; auto: detected from the header among ',', ';', tab and '|'.",
    )
    encoding: str = Field(
        "auto",
        description="CSV encoding; auto: UTF-8 (with or without a byte-order mark), UTF-16 "
        "with a byte-order mark, else cp1252, else latin-1.",
    )
    joins: tuple[JoinConfig, ...] = Field(
        (), description="Tables joined onto the leads table by key before mapping."
    )
    on_bad_rows: Literal["fail", "drop"] = Field(
        "fail",
        description="fail: a row that breaks the contract stops the read; drop: such rows go "
        "to a quarantine file with their reasons and the rest is read.",
    )
    max_bad_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="With on_bad_rows: drop, the read still fails when more than this share "
        "of the leads (or of the events) breaks the contract.",
    )
    quarantine: Path | None = Field(
        None,
        description="Where dropped rows are written (CSV); default: beside the command's "
        "output (`<out>.quarantine.csv`, or quarantine.csv in the report folder).",
    )
    preset: Literal["hubspot", "salesforce", "hubspot-export", "salesforce-export"] | None = Field(
        None,
        description="Read a CRM's connector tables (or its own export) through a preset "
        "(features/presets; docs/hubspot.md, docs/salesforce.md); its settings are `preset:`.",
    )

    @model_validator(mode="after")
    def _one_place(self) -> SourceConfig:
        if self.path is not None and self.url is not None:
            raise ValueError("give either source.path or source.url, not both")
        return self


class MappingConfig(_Strict):
    """How a real export's column names and values map onto the contract."""

    leads: dict[str, str] = Field(
        default_factory=dict, description="Export column -> contract column."
    )
    events: dict[str, str] = Field(
        default_factory=dict, description="Export column -> contract column."
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Per contract column, raw value -> contract value (matched "
        "case-insensitively), e.g. event_type: {'Email Opened': email_open}.",
    )
    leads_also: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Export column -> further contract columns it feeds. Written in YAML as a "
        "list under mapping.leads, e.g. `First Contact: [created_at, mql_at]`.",
    )
    missing_values: tuple[str, ...] = Field(
        DEFAULT_MISSING, description="Placeholders read as missing (case-insensitive, trimmed)."
    )
    true_values: tuple[str, ...] = Field(
        ("1", "true", "yes", "y", "t", "converted"),
        description="Values of `converted` read as true.",
    )
    false_values: tuple[str, ...] = Field(
        ("0", "false", "no", "n", "f"), description="Values of `converted` read as false."
    )

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: Any) -> Any:
        """`Export column: [a, b]` under leads maps the column onto a and also onto b."""
        if not isinstance(data, dict) or not isinstance(data.get("leads"), dict):
            return data
        leads: dict[str, Any] = {}
        also = {str(k): tuple(v) for k, v in (data.get("leads_also") or {}).items()}
        for column, target in data["leads"].items():
            if isinstance(target, list | tuple):
                if not target:
                    raise ValueError(f"mapping.leads.{column}: an empty list of contract columns")
                leads[column] = target[0]
                also[str(column)] = tuple(dict.fromkeys([*also.get(str(column), ()), *target[1:]]))
            else:
                leads[column] = target
        return {**data, "leads": leads, "leads_also": {k: v for k, v in also.items() if v}}

    @field_validator("missing_values", "true_values", "false_values")
    @classmethod
    def _fold(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip().casefold() for v in values)


def custom_feature_name(column: str) -> str:
    """A custom field's feature name: `custom_` plus the column in snake case."""
    return "custom_" + "".join(c if c.isalnum() else "_" for c in column.strip().casefold())


class CustomField(_Strict):
    """An extra column of the leads table used as a feature."""

    column: str = Field(
        description="Column name as it is after mapping (the export's name if unmapped)."
    )
    kind: Literal["fit", "engagement"] = Field(
        description="fit: who the lead is; engagement: what it did."
    )
    type: Literal["categorical", "numeric", "boolean"] | None = Field(
        None,
        description="Default: inferred from the data when the export is read (boolean when "
        "every value is a true or false value, numeric when every value is a number, else "
        "categorical) and recorded in the trained model's config.",
    )

    @property
    def value_type(self) -> Literal["categorical", "numeric", "boolean"]:
        """The type; with none given and no data at hand (a config used without reading an
        export), categorical for fit and numeric for engagement."""
        if self.type is not None:
            return self.type
        return "categorical" if self.kind == "fit" else "numeric"

    @property
    def feature(self) -> str:
        return custom_feature_name(self.column)


class SnapshotPolicy(_Strict):
    """Which cutoffs make training rows: mql_at, and optionally weekly while the lead is open."""

    weekly_weeks: int = Field(
        0, ge=0, le=52, description="Also add a row every 7 days after mql_at, up to N."
    )
    sampled_ages: int = Field(
        2,
        ge=0,
        le=52,
        description="Also add N rows per lead at ages drawn uniformly from [0, horizon_days) "
        "(kept while the lead is open), so the model is right at any age a nightly run meets.",
    )
    bend_ages: int = Field(
        8,
        ge=0,
        le=52,
        description="Also N ages per lead, drawn as sampled_ages are, that only the moment "
        "model's bend learns from (training.model moment): it needs a lead's score at mql_at, "
        "its age and its label, so these rows need no features. 0: the feature rows alone.",
    )


class FeatureConfig(_Strict):
    windows_days: tuple[int, ...] = Field(
        (7, 30, 90), description="Engagement count windows, in days."
    )
    chunk_leads: int = Field(
        100_000, ge=1, le=131_072, description="Leads per chunk (whole accounts)."
    )
    workers: int = Field(
        0,
        ge=0,
        le=256,
        description="Chunks read, encoded and featurised at once; 0: one per core, 1: serial.",
    )
    at_mql: bool = Field(
        True,
        description="Also the engagement and account counts (windowed and all-time) and the "
        "lead's age as they stood at its mql_at, so that a row weeks after the MQL still sees "
        "the MQL moment.",
    )

    @field_validator("windows_days")
    @classmethod
    def _positive_sorted(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if not windows or any(w <= 0 for w in windows):
            raise ValueError("windows must be positive numbers of days")
        return tuple(sorted(set(windows)))


class SplitConfig(_Strict):
    """Shares of rows, in time order by cutoff: train, early stopping, calibration, test (last)."""

    train: float = Field(0.6, gt=0, lt=1)
    validation: float = Field(0.1, gt=0, lt=1)
    calibration: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.calibration + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + calibration + test must be 1 (is {total:g})")
        return self


class TierPolicy(_Strict):
    """How probability cut points for tiers A-C are chosen on the calibration slice (D is the rest).

    capacity: each tier's share of MQLs (what sales can work); precision: the conversion rate of
    the tier and those above it (A at the 60-70% acceptance sales teams aim for).
    """

    kind: Literal["capacity", "precision"] = "capacity"
    capacity: dict[str, float] = Field(default_factory=lambda: {"A": 0.10, "B": 0.20, "C": 0.30})
    precision: dict[str, float] = Field(default_factory=lambda: {"A": 0.65, "B": 0.45, "C": 0.30})

    @field_validator("capacity", "precision")
    @classmethod
    def _tiers_a_to_c(cls, values: dict[str, float]) -> dict[str, float]:
        if list(values) != ["A", "B", "C"] or any(not 0 < v < 1 for v in values.values()):
            raise ValueError("give A, B and C in order, each between 0 and 1")
        return values


def _lightgbm_defaults() -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": 0.03,
        # small trees: SHAP cost grows with leaves x depth^2, and on the synthetic CRM 4-6
        # leaves matched 31 in AUC and beat it in Brier score
        "num_leaves": 5,
        "min_data_in_leaf": 300,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 20.0,
        "max_cat_to_onehot": 8,
    }


class HazardConfig(_Strict):
    """The discrete-time hazard model's period rows (`training.model: hazard`)."""

    period_days: int = Field(7, ge=1, le=90, description="Length of one period, in days.")
    periods: int = Field(
        0,
        ge=0,
        le=260,
        description="Periods per lead from mql_at while it stays open; 0: enough for a lead "
        "scored at the horizon's age to be seen a horizon further (2 x horizon_days).",
    )
    row_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of the lead x period rows kept (a hash draw per row, independent of "
        "the outcome, so the hazards stay unbiased); 1 keeps every period.",
    )


class TrainingConfig(_Strict):
    """The model, its calibration and tiers, and the leakage audit."""

    model: Literal["moment", "ages", "hazard"] = Field(
        "moment",
        description="moment: a booster on the rows at mql_at with the MQL moment's features, "
        "its score bent by the lead's age, then boosting on today's features for what came "
        "after (a flat export, which has no ages: ages); ages: one booster on rows at sampled "
        "ages, age a feature; hazard: a discrete-time hazard booster on lead x period rows, "
        "P = 1 - prod(1 - h) over the periods of the horizon (docs/nightly-scores.md).",
    )
    hazard: HazardConfig = Field(default_factory=HazardConfig)
    mql_first: bool = Field(
        False,
        description="ages model (training.model: ages): first boost on the rows at mql_at "
        "with the MQL moment's features alone (fit attributes, counts as they stood at "
        "mql_at), then go on boosting that booster on every row, later ages and today's "
        "counts included, from the MQL moment's ranking (docs/nightly-scores.md).",
    )
    seed: int = Field(42, description="One seed for LightGBM, bagging and every split.")
    params: dict[str, Any] = Field(
        default_factory=_lightgbm_defaults, description="LightGBM parameters (merged on defaults)."
    )
    num_boost_round: int = Field(3000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    num_threads: int = Field(0, ge=0, description="0: all cores.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    calibration: tuple[Literal["isotonic", "sigmoid", "by_age"], ...] = Field(
        ("isotonic", "sigmoid"),
        description="Calibrators to fit on the calibration slice; the one with the lower "
        "cross-validated log loss is kept. by_age (opt-in) maps the raw score and the days "
        "since mql_at; a candidate only on rows of more than one age (not a flat export) and "
        "a slice of at least 20,000 rows (docs/nightly-scores.md).",
    )
    tiers: TierPolicy = Field(default_factory=TierPolicy)
    audit_auc: float = Field(
        0.9, gt=0.5, le=1.0, description="Flag features whose single-feature AUC exceeds this."
    )
    leak_alone_auc: float = Field(
        0.75,
        gt=0.5,
        le=1.0,
        description="Leak guard: a feature this strong alone is probed by retraining without it "
        "(docs/training-guards.md).",
    )
    leak_share: float = Field(
        0.15,
        gt=0,
        le=1,
        description="Leak guard: flag a probed feature whose removal loses at least this share "
        "of the model's validation AUC above 0.5.",
    )
    leak_candidates: int = Field(
        5, ge=0, le=50, description="Leak guard: most features probed (strongest alone first)."
    )
    increasing_events: tuple[str, ...] = Field(
        ("demo_request", "trial_signup", "form_submission", "email_reply", "webinar_attendance"),
        description="Event types that never lower a score: the model is constrained to be "
        "non-decreasing in their counts (every window, now and at mql_at), so one more demo "
        "request never reads as a reason against the lead. Hand-raisers only: more email opens "
        "or pricing views can mark a tire-kicker or a stalled deal. Empty: no constraint.",
    )
    acknowledge_leaks: tuple[str, ...] = Field(
        (),
        description="Columns (export or feature names) the leak guard flags but you have "
        "checked: a model using them may still be registered.",
    )
    min_rows: int = Field(
        1000, ge=0, description="Fewest labelled rows to register a model (Einstein: 1,000)."
    )
    min_positives: int = Field(
        120, ge=0, description="Fewest converted rows to register a model (Einstein: 120)."
    )
    min_negatives: int = Field(
        120,
        ge=0,
        description="Fewest rows that did not convert to register a model (Dynamics 365: 40).",
    )
    since: datetime | None = Field(
        None, description="Train only on rows whose cutoff is at or after this time."
    )
    window_days: int | None = Field(
        None,
        ge=1,
        description="Train only on rows whose cutoff is within this many days of the newest.",
    )
    shap_sample: int = Field(2000, ge=100, description="Rows of the test slice for SHAP plots.")
    rules: Path | None = Field(
        None,
        description="Points rules YAML; default: points fitted on the training slice "
        "(`leadscore rules suggest` writes such a file).",
    )

    @field_validator("params")
    @classmethod
    def _merge_defaults(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**_lightgbm_defaults(), **params}

    @field_validator("increasing_events")
    @classmethod
    def _known_events(cls, events: tuple[str, ...]) -> tuple[str, ...]:
        from features.contract import EVENT_TYPES  # the contract's vocabulary, kept there

        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"not event types of the contract: {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(EVENT_TYPES)})"
            )
        return tuple(dict.fromkeys(events))


class GateConfig(_Strict):
    """What a challenger must show, on the same recent test slice, to replace the champion."""

    auc_tolerance: float = Field(0.005, ge=0, description="Challenger AUC >= champion AUC - this.")
    beat_rules: bool = Field(
        True,
        description="The challenger's AUC must beat the rules' points on the same slice (when "
        "the snapshot gives points), champion or not.",
    )
    max_ece: float = Field(
        0.02,
        gt=0,
        description="Bound on the challenger's expected calibration error beyond chance (the "
        "ECE a calibrated model would show on the same rows).",
    )


def quiet_mlflow() -> None:
    """Turn off MLflow's "Downloading artifacts" bars (one per load: a model is ~30 files)
    through its documented switch, unless the environment already sets it. Here, not beside
    the model store, so that a command sets it without importing LightGBM and scikit-learn."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class MlflowConfig(_Strict):
    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        description="Tracking store; default a local SQLite file (or $MLFLOW_TRACKING_URI).",
    )
    artifact_location: str | None = Field(
        "mlartifacts", description="Where a new experiment keeps artifacts (local stores)."
    )
    experiment: str = "leadscore"
    model_name: str = Field("leadscore", description="Registered model name.")
    gate: GateConfig = Field(default_factory=GateConfig)


class LimitsConfig(_Strict):
    """What one request may cost the server, checked before the work (docs/api-safety.md)."""

    max_lead_bytes: int = Field(1 << 20, ge=1024, description="Largest body of one lead.")
    max_batch_bytes: int = Field(8 << 20, ge=1024, description="Largest body of a batch.")
    max_events: int = Field(10_000, ge=1, description="Most events of one lead.")
    inline_bytes: int = Field(
        64 << 10,
        ge=0,
        description="A lead's body up to this size is scored on the event loop; larger ones, "
        "and every batch, in the scoring threads.",
    )
    scoring_threads: int = Field(
        1,
        ge=1,
        description="Threads that score large requests. Scoring holds the GIL, so a second "
        "thread adds little throughput and makes the event loop (health checks) wait longer.",
    )
    max_in_flight: int = Field(
        16, ge=1, description="Scoring requests inside the app at once; beyond: 503."
    )
    max_queued: int = Field(
        16,
        ge=1,
        description="Requests accepted and not yet answered; beyond: 503 at once, from the "
        "request head.",
    )
    max_queued_work_seconds: float = Field(
        0.05,
        gt=0,
        description="Shed scoring requests (503 with Retry-After) while those queued would take "
        "this long to score on the event loop, at the CPU time one took lately: a health check "
        "waits at most about this long, on a slow machine too.",
    )
    gil_switch_seconds: float = Field(
        0.0005,
        gt=0,
        le=0.1,
        description="How long a scoring thread may hold the GIL before the event loop gets it "
        "(Python's switch interval, 0.005 by default): shorter keeps health checks answered "
        "while batches are scored.",
    )
    max_queue_seconds: float = Field(
        0.25,
        gt=0,
        description="Shed scoring requests (503 with Retry-After) while the event loop runs "
        "this far behind.",
    )
    deadline_seconds: float = Field(
        10.0, gt=0, description="Work not started this long after the request arrived is dropped."
    )
    body_timeout_seconds: float = Field(10.0, gt=0, description="Time to send the body.")
    header_timeout_seconds: float = Field(10.0, gt=0, description="Time to send the headers.")
    max_header_bytes: int = Field(16 << 10, ge=1024, description="Largest request head.")
    max_connections: int = Field(
        1024, ge=1, description="Open connections and tasks; beyond: uvicorn's own 503."
    )
    keep_alive_seconds: int = Field(5, ge=1, description="Idle keep-alive connections.")


class ServeConfig(_Strict):
    """The scoring API. API keys are secrets: they come from the environment only
    (LEADSCORE_API_KEYS, LEADSCORE_ADMIN_KEYS, comma-separated), never from a file."""

    model_uri: str = Field("models:/leadscore@champion", description="Registry URI to serve.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    batch_limit: int = Field(1000, ge=1, description="Most leads in one batch request.")
    reasons: int = Field(3, ge=0, le=20, description="Top positive and negative reasons.")
    poll_seconds: float = Field(
        0, ge=0, description="Reload when the alias moves, checked this often; 0: never."
    )
    startup_attempts: int = Field(5, ge=1, description="Model load attempts at start-up.")
    public_info: bool = Field(
        False,
        description="With API keys set, /v1/model and /metrics still need one unless this is "
        "true (e.g. a Prometheus scraper without a key).",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    startup_wait_seconds: float = Field(2.0, ge=0)
    accounts: SourceConfig | None = Field(
        None,
        description="A snapshot whose leads and events give each posted lead its account's "
        "history for the account features: a folder or an SQLAlchemy URL (a string), or a "
        "source mapping as `source:` takes (schema, table names). Read with the model's "
        "mapping, with the model, and again when its files change (with poll_seconds). null: "
        "account features are unknown, as for a lead without an account.",
    )

    @field_validator("accounts", mode="before")
    @classmethod
    def _accounts_place(cls, value: object) -> object:
        """A bare folder or URL, as `--accounts` and the environment give it."""
        if isinstance(value, str | Path):
            text = str(value)
            return {"url": text} if "://" in text else {"path": text}
        return value


class MonitorConfig(_Strict):
    """`leadscore monitor`: when drift against the training reference is an alert (exit 3)."""

    psi_feature_alert: float = Field(
        0.25,
        gt=0,
        description="Alert when a feature's PSI against the reference exceeds what chance gives "
        "at the run's size and what one week of the reference's last year shows (the calendar) "
        "by more than this.",
    )
    psi_score_alert: float = Field(
        0.2,
        gt=0,
        description="Alert when the probability's PSI against the reference exceeds what chance "
        "gives at the run's size and what one week of the reference's last year shows (the "
        "calendar) by more than this.",
    )
    tier_share_alert: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Alert when a tier's share of leads differs from the reference by more than "
        "this beyond what chance gives at the run's size (two standard errors) and what one "
        "week of the reference shows (the calendar).",
    )
    calibration_gap_alert: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Alert when realised conversion differs from the mean probability by more "
        "(per scoring month, once its horizon has closed).",
    )
    calibration_min_rows: int = Field(
        200, ge=1, description="Fewest leads in a month for its calibration gap to alert."
    )
    ignore_features: tuple[str, ...] = Field(
        ("days_since_mql",),
        description="Features shown but never alerted on. days_since_mql differs by "
        "construction: training rows sit at mql_at or whole weeks after it, a scoring run's "
        "open MQLs at any age up to horizon_days.",
    )
    report_dir: Path = Field(Path("data/monitor"), description="Where the report is written.")


class Config(_Strict):
    """Everything a run needs; every field has a default, so no file is needed."""

    source: SourceConfig = Field(default_factory=lambda: SourceConfig(path=Path("data/snapshot")))
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    custom_fields: tuple[CustomField, ...] = ()
    exclude: tuple[str, ...] = Field(
        (), description="Columns dropped on read (export or contract names)."
    )
    horizon_days: int = Field(90, ge=1, le=3650, description="An SQL within this many days counts.")
    snapshot_policy: SnapshotPolicy = Field(default_factory=SnapshotPolicy)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    as_of: datetime | None = Field(
        None, description="The snapshot's as-of time; default: its latest timestamp."
    )
    preset: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of the CRM preset named by source.preset (see its page in docs/).",
    )

    @model_validator(mode="after")
    def _excluded_columns_unused(self) -> Config:
        """A column on `exclude` cannot also be a custom field or a required column."""
        problems = excluded_conflicts(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def excluded_conflicts(config: Config) -> list[str]:
    """Columns that `exclude` drops although the config uses them, one sentence each."""
    excluded = {e.strip() for e in config.exclude}
    feeds: dict[str, set[str]] = {}  # contract or custom column -> export columns feeding it
    for export, target in config.mapping.leads.items():
        for name in (target, *config.mapping.leads_also.get(export, ())):
            feeds.setdefault(name.strip(), set()).add(export.strip())
    problems = []
    for cf in config.custom_fields:
        names = {cf.column.strip()} | feeds.get(cf.column.strip(), set())
        hit = sorted(names & excluded)
        if hit:
            problems.append(
                f"custom field {cf.column!r} is also on exclude (as {', '.join(map(repr, hit))}): "
                "a column is either a feature or excluded, remove it from one of the two lists"
            )
    required = ["lead_id"] + ([] if config.source.flat else ["created_at"])
    for column in required:
        hit = sorted(({column} | feeds.get(column, set())) & excluded)
        if hit:
            problems.append(
                f"exclude drops {', '.join(map(repr, hit))}, which gives the required contract "
                f"column {column!r}"
            )
    return problems


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            node[keys[-1]] = raw
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def describe_error(error: ValidationError, origin: str, what: str = "config") -> str:
    """Pydantic's error as one line per bad key: `key.path: message (got value)`."""
    lines = [f"invalid {what} ({origin}):"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        got = item.get("input")
        shown = (
            "" if isinstance(got, dict | list) or item["type"] == "missing" else f" (got {got!r})"
        )
        lines.append(f"  {key}: {item['msg']}{shown}")
    return "\n".join(lines)


def build_config(values: Mapping[str, Any] | None = None, origin: str = "config") -> Config:
    """Validate a config mapping, turning pydantic's error into one that names each bad key."""
    try:
        return Config.model_validate(dict(values or {}))
    except ValidationError as error:
        raise ConfigError(describe_error(error, origin)) from None


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply `LEADSCORE__...` environment overrides, validate.

    Relative `source.path` values in a file are taken relative to the file's folder.
    """
    values: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        file = Path(path)
        origin = str(file)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {file} is not valid YAML: {error}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        values = loaded
        source = values.get("source")
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            source_path = Path(source["path"]).expanduser()
            if not source_path.is_absolute():
                values = _merge(values, {"source": {"path": str(file.parent / source_path)}})
    overrides = _env_overrides(os.environ if environ is None else environ)
    if overrides:
        values = _merge(values, overrides)
        origin += " + environment"
    return build_config(values, origin)
