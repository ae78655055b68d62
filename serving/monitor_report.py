"""`leadscore monitor`: scoring runs against the training reference, and outcomes once known.

For each scoring run (a scores file with its `<stem>.monitor.json` beside it, written by
`leadscore predict`):

- PSI of every model feature and of the probability against the reference's bins;
- the share of leads per tier against the reference's shares;
- with a later snapshot: for runs whose horizon (`horizon_days` after the run's as-of time) has
  closed by the snapshot's as-of time, the realised conversion per tier, and calibration over
  time: the mean probability against the realised conversion, per month of scoring.

Alerts follow the config's `monitor` thresholds. Reading and checking is separate from the
computing (pure functions on frames and dicts) and from the writing (`write_monitor_report`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from common.config import MonitorConfig
from common.io import to_jsonable, write_atomic, write_json
from features.rows import label_rows
from serving.monitor import RECORD_FORMAT, monitor_path, publish_journal_path
from training.drift import PSI_EPSILON, MonitorError, check_reference, psi, psi_floor
from training.evaluate import tier_table, wilson_interval
from training.report import SCORER_STYLE, annotate_counts, render_html, save_figure, tier_plot
from training.tiers import TIER_NAMES

#: `leadscore monitor` exits with this status when drift passes a threshold.
ALERT_EXIT = 3
SCORE_COLUMNS = ("lead_id", "as_of", "probability", "tier", "model_name", "model_version")
RUN_ID = "run_id"  # in every row of a scores file and in its record, since issue 16.7
RUN_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


@dataclass(frozen=True)
class ScoringRun:
    """One run of `leadscore predict`: its scores and its monitoring record."""

    path: Path
    record: dict[str, Any]
    scores: pd.DataFrame  # SCORE_COLUMNS

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.record["as_of"])

    @property
    def label(self) -> str:
        """The run's name in tables and plots: its as-of time, shortest unambiguous form."""
        stamp = self.as_of
        return stamp.strftime("%Y-%m-%d") if stamp == stamp.floor("D") else stamp.isoformat()

    @property
    def counts(self) -> dict[str, Any]:
        return dict(self.record["counts"])

    @property
    def reference(self) -> dict[str, Any]:
        return dict(self.record["reference"])


# --------------------------------------------------------------------------- reading


def _read_scores(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            present = set(pq.read_schema(path).names)
            missing = [c for c in SCORE_COLUMNS if c not in present]
            if missing:
                raise MonitorError(f"scores {path}: columns {missing} are missing")
            wanted = list(SCORE_COLUMNS) + ([RUN_ID] if RUN_ID in present else [])
            frame = pd.read_parquet(path, columns=wanted)
        elif suffix == ".csv":
            head = pd.read_csv(path, nrows=0)
            missing = [c for c in SCORE_COLUMNS if c not in head.columns]
            if missing:
                raise MonitorError(f"scores {path}: columns {missing} are missing")
            wanted = list(SCORE_COLUMNS) + ([RUN_ID] if RUN_ID in head.columns else [])
            frame = pd.read_csv(path, usecols=wanted, dtype=str)
            frame["probability"] = pd.to_numeric(frame["probability"], errors="coerce")
        else:
            raise MonitorError(f"scores {path}: expected a .parquet or .csv file")
    except MonitorError:
        raise
    except Exception as error:  # pyarrow and pandas raise many kinds for a damaged file
        raise MonitorError(f"scores {path}: cannot be read ({error})") from None
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True, format="ISO8601")
    frame["model_version"] = frame["model_version"].astype(str)
    return frame


def _read_record(path: Path, scores: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MonitorError(
            f"scores {scores}: no monitoring record {path} beside it (`leadscore predict` writes "
            "one when the model carries a drift reference; a model trained before monitoring "
            "existed has none: retrain it)"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MonitorError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise MonitorError(f"{path}: not a {RECORD_FORMAT} monitoring record")
    for key in ("model_name", "model_version", "as_of", "counts", "reference"):
        if key not in record:
            raise MonitorError(f"{path}: key '{key}' is missing")
    check_reference(record["reference"], f"{path} reference")
    if record["counts"].get("reference_id") != record["reference"]["id"]:
        raise MonitorError(f"{path}: its counts were not made in its reference's bins")
    return record


def scores_files(paths: Sequence[Path]) -> list[Path]:
    """The scores files to monitor: each path as given, a folder standing for the scores files
    in it that have their monitoring record beside them, in name order (the nightly job's
    dated names sort by night). Raises MonitorError for a folder that holds none."""
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            child
            for child in path.iterdir()
            if child.suffix in (".parquet", ".csv")
            and not child.name.startswith(".")
            and child.is_file()
            and monitor_path(child).is_file()
        )
        if not found:
            raise MonitorError(
                f"scores {path}: a folder without any scores file of `leadscore predict` "
                "(a .parquet or .csv file with its <stem>.monitor.json beside it)"
            )
        files += found
    return files


def read_run(scores: Path) -> ScoringRun:
    """A scores file and its monitoring record, checked against each other."""
    scores = Path(scores)
    if not scores.is_file():
        raise MonitorError(f"scores {scores}: no such file")
    record_path = monitor_path(scores)
    record = _read_record(record_path, scores)
    frame = _read_scores(scores)
    _check_run_id(scores, frame, record, record_path)
    version = str(record["model_version"])
    other = frame["model_version"] != version
    if other.any() or (frame["model_name"] != record["model_name"]).any():
        found = sorted(set(frame["model_version"].tolist()))
        raise MonitorError(
            f"scores {scores}: {int(other.sum()):,} of {len(frame):,} rows were scored by "
            f"{record['model_name']} version(s) {found}, but its monitoring record {record_path} "
            f"is of version {version}: the record belongs to another run"
        )
    if len(frame) != int(record["counts"]["rows"]):
        raise MonitorError(
            f"scores {scores}: {len(frame):,} rows, but its monitoring record {record_path} "
            f"counted {int(record['counts']['rows']):,}: the record belongs to another run"
        )
    return ScoringRun(scores, record, frame)


def _check_run_id(
    scores: Path, frame: pd.DataFrame, record: Mapping[str, Any], record_path: Path
) -> None:
    """The record is of the run that wrote the scores: one run id in both (both without one:
    written before run ids, checked by model version and row count only)."""
    ids = sorted(set(frame[RUN_ID].astype(str))) if RUN_ID in frame else []
    recorded = record.get(RUN_ID)
    if recorded is None and RUN_ID not in frame:
        return
    if ids != [str(recorded)] and not (ids == [] and len(frame) == 0 and recorded is not None):
        journal = publish_journal_path(scores)
        hint = f" (an interrupted run left {journal}: run it again)" if journal.exists() else ""
        raise MonitorError(
            f"scores {scores}: written by run {', '.join(ids[:3]) or '(none)'}, but its "
            f"monitoring record {record_path} is of run {recorded}: the record belongs to "
            f"another run{hint}"
        )


def check_runs(runs: Sequence[ScoringRun]) -> None:
    """At least one run. Runs of several model versions are fine: each is judged against the
    reference its own model carries, so the history survives a retrain."""
    if not runs:
        raise MonitorError("no scores given: pass --scores at least once")


# --------------------------------------------------------------------------- drift


def _shares(counts: Sequence[int]) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return values / total if total > 0 else values


def run_epsilon(rows: int) -> float:
    """PSI's floor for empty bins: 1e-4, or half a lead's share in a small run.

    A fixed 1e-4 makes one empty bin of a 40-lead run worth about 0.5 of PSI on its own.
    """
    return max(PSI_EPSILON, 0.5 / max(rows, 1))


def _floor(expected: np.ndarray, actual: np.ndarray, rows: int, reference_rows: int) -> float:
    """PSI by chance, counting the bins either side uses."""
    used = int(((expected > 0) | (actual > 0)).sum())
    return psi_floor(used, rows, reference_rows)


def feature_drift(reference: Mapping[str, Any], counts: Mapping[str, Any]) -> pd.DataFrame:
    """PSI of each feature, the PSI chance alone gives at these sizes, and the bin that moved
    most (reference and run share)."""
    rows = []
    n, reference_rows = int(counts["rows"]), int(reference["rows"])
    for name, item in reference["features"].items():
        expected = np.asarray(item["shares"], dtype=np.float64)
        actual = _shares(counts["features"][name])
        moved = int(np.argmax(np.abs(actual - expected)))
        rows.append(
            {
                "feature": name,
                "kind": item["kind"],
                "psi": psi(expected, actual, run_epsilon(n)),
                "psi_floor": _floor(expected, actual, n, reference_rows),
                "psi_calendar": float(item.get("calendar_psi", 0.0)),
                "moved_bin": item["bins"][moved],
                "reference_share": float(expected[moved]),
                "run_share": float(actual[moved]),
            }
        )
    return pd.DataFrame(rows)


def score_drift(reference: Mapping[str, Any], counts: Mapping[str, Any]) -> dict[str, float]:
    """PSI of the probability and its mean, against the reference."""
    rows = int(counts["rows"])
    expected = np.asarray(reference["score"]["shares"], dtype=np.float64)
    actual = _shares(counts["score"])
    return {
        "psi": psi(expected, actual, run_epsilon(rows)),
        "psi_floor": _floor(expected, actual, rows, int(reference["rows"])),
        "psi_calendar": float(reference["score"].get("calendar_psi", 0.0)),
        "mean": float(counts["score_sum"]) / rows if rows else math.nan,
        "reference_mean": float(reference["score"].get("mean", math.nan)),
    }


def tier_shares(reference: Mapping[str, Any], counts: Mapping[str, Any]) -> pd.DataFrame:
    """Share of leads per tier in the run against the reference."""
    shares = _shares(counts["tiers"])
    expected = np.asarray(reference["tiers"]["shares"], dtype=np.float64)
    return pd.DataFrame(
        {
            "tier": list(TIER_NAMES),
            "n": [int(c) for c in counts["tiers"]],
            "share": shares,
            "reference_share": expected,
            "difference": shares - expected,
        }
    )


@dataclass
class RunDrift:
    """A run's drift against the reference."""

    run: ScoringRun
    features: pd.DataFrame
    score: dict[str, float]
    tiers: pd.DataFrame

    def summary(self, ignored: Sequence[str]) -> dict[str, Any]:
        watched = self.features[~self.features["feature"].isin(list(ignored))]
        top = watched.sort_values("psi", ascending=False).head(1)
        return {
            "scores": str(self.run.path),
            "as_of": self.run.label,
            "model_version": str(self.run.record["model_version"]),
            "rows": int(self.run.counts["rows"]),
            "psi_score": self.score["psi"],
            "mean_probability": self.score["mean"],
            "max_feature_psi": float(top["psi"].iloc[0]) if len(top) else 0.0,
            "max_feature": str(top["feature"].iloc[0]) if len(top) else "",
            **{
                f"share_{t}": float(s) for t, s in zip(TIER_NAMES, self.tiers["share"], strict=True)
            },
        }


def run_drift(run: ScoringRun) -> RunDrift:
    reference, counts = run.reference, run.counts
    return RunDrift(
        run,
        feature_drift(reference, counts),
        score_drift(reference, counts),
        tier_shares(reference, counts),
    )


def drift_alerts(drift: RunDrift, thresholds: MonitorConfig) -> list[str]:
    """The thresholds this run passes, one sentence each."""
    if int(drift.run.counts["rows"]) == 0:
        return []
    alerts = []
    label = drift.run.label
    score = drift.score
    allowed = score["psi_floor"] + score["psi_calendar"]
    if score["psi"] - allowed > thresholds.psi_score_alert:
        alerts.append(
            f"run {label}: probability PSI {score['psi']:.3f}, more than "
            f"{thresholds.psi_score_alert} beyond the {allowed:.3f} of chance and calendar "
            f"(mean probability {score['mean']:.3f} against {score['reference_mean']:.3f})"
        )
    watched = drift.features[~drift.features["feature"].isin(list(thresholds.ignore_features))]
    excess = watched["psi"] - watched["psi_floor"] - watched["psi_calendar"]
    beyond = excess > thresholds.psi_feature_alert
    for row in watched[beyond].sort_values("psi", ascending=False).to_dict(orient="records"):
        allowed = row["psi_floor"] + row["psi_calendar"]
        alerts.append(
            f"run {label}: feature {row['feature']} PSI {row['psi']:.3f}, more than "
            f"{thresholds.psi_feature_alert} beyond the {allowed:.3f} of chance and calendar "
            f"(bin {row['moved_bin']}: {row['reference_share']:.1%} in the reference, "
            f"{row['run_share']:.1%} now)"
        )
    calendar = drift.run.reference["tiers"].get("calendar_difference", [0.0] * len(TIER_NAMES))
    rows = int(drift.run.counts["rows"])
    for tier, moved in zip(drift.tiers.to_dict(orient="records"), calendar, strict=True):
        allowed = tier_chance(float(tier["reference_share"]), rows) + float(moved)
        if abs(float(tier["difference"])) - allowed > thresholds.tier_share_alert:
            alerts.append(
                f"run {label}: tier {tier['tier']} holds {tier['share']:.1%} of leads against "
                f"{tier['reference_share']:.1%} in the reference (more than "
                f"{thresholds.tier_share_alert:.0%} beyond the {allowed:.1%} of chance and "
                "calendar)"
            )
    return alerts


def tier_chance(share: float, rows: int) -> float:
    """How far a tier's share of a run of `rows` leads strays from the reference's `share` by
    chance alone: `TIER_CHANCE_SD` standard errors of a binomial share. As the PSI alerts
    allow for chance at the run's size, so do the tiers: on a run of a few hundred leads a
    tier's share moves by several points without any change of market."""
    return TIER_CHANCE_SD * math.sqrt(max(share * (1.0 - share), 0.0) / max(rows, 1))


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcomes:
    """Realised conversion of the scored leads whose horizon has closed."""

    rows: pd.DataFrame  # lead_id, as_of, probability, tier, label, month
    tiers: pd.DataFrame  # tier_table with mean_expected
    calibration: pd.DataFrame  # per month: n, predicted, realised, interval, gap
    notes: list[str] = field(default_factory=list)


def realised_labels(
    scored: pd.DataFrame, leads: pd.DataFrame, snapshot_as_of: pd.Timestamp, horizon_days: int
) -> tuple[pd.DataFrame, list[str]]:
    """Label scored rows (lead_id, as_of, ...) as in training: an SQL within `horizon_days`
    after the row's as-of time. Rows whose horizon is still open at `snapshot_as_of`, rows of
    leads the snapshot lacks, and rows already converted or disqualified at scoring are left
    out and counted in the notes."""
    notes: list[str] = []
    # a hash lookup: Series.isin of Arrow strings makes a Python object per snapshot lead
    pool = pd.Index(leads["lead_id"].to_numpy()).unique()
    known = pd.Series(pool.get_indexer(scored["lead_id"].to_numpy()) >= 0, index=scored.index)
    if len(scored) and not known.any():
        raise MonitorError(
            f"none of the {len(scored):,} scored leads is in the snapshot (e.g. "
            f"{scored['lead_id'].head(3).tolist()}): is it a snapshot of the same CRM?"
        )
    if (~known).any():
        notes.append(
            f"{int((~known).sum()):,} scored lead(s) are not in the snapshot, e.g. "
            f"{scored.loc[~known, 'lead_id'].head(3).tolist()}; left out"
        )
    rows = scored.loc[known].rename(columns={"as_of": "cutoff"})
    labelled, counts = label_rows(
        rows[["lead_id", "cutoff"]].reset_index(drop=True), leads, snapshot_as_of, horizon_days
    )
    if counts.censored or counts.after_as_of:
        notes.append(
            f"{counts.censored + counts.after_as_of:,} scored lead(s) have a horizon still open "
            f"at the snapshot's as-of time {snapshot_as_of.isoformat()}; their outcome is not "
            "known yet"
        )
    closed = counts.converted_before_cutoff + counts.disqualified_before_cutoff
    if closed:
        notes.append(
            f"{closed:,} scored lead(s) were already converted or disqualified at their scoring "
            "time by the snapshot's account; left out"
        )
    labelled["cutoff"] = labelled["cutoff"].astype(rows["cutoff"].dtype)
    merged = rows.merge(labelled, on=["lead_id", "cutoff"], how="inner", validate="many_to_one")
    return merged.rename(columns={"cutoff": "as_of"}), notes


def calibration_by_month(rows: pd.DataFrame) -> pd.DataFrame:
    """Per month of scoring: leads, mean probability, realised conversion (Wilson 95%), gap."""
    records = []
    for month, group in rows.groupby("month", sort=True):
        n = len(group)
        conversions = int(group["label"].sum())
        low, high = wilson_interval(conversions, n)
        predicted = float(group["probability"].mean())
        realised = conversions / n
        records.append(
            {
                "month": str(month),
                "n": n,
                "predicted": predicted,
                "realised": realised,
                "ci_low": low,
                "ci_high": high,
                "gap": realised - predicted,
            }
        )
    columns = ["month", "n", "predicted", "realised", "ci_low", "ci_high", "gap"]
    return pd.DataFrame(records, columns=columns)


def outcomes(
    runs: Sequence[ScoringRun], leads: pd.DataFrame, snapshot_as_of: pd.Timestamp, horizon_days: int
) -> Outcomes:
    """Realised conversion per tier and calibration per month, over the runs' closed horizons."""
    scored = pd.concat([run.scores for run in runs], ignore_index=True)
    rows, notes = realised_labels(scored, leads, snapshot_as_of, horizon_days)
    rows["month"] = rows["as_of"].dt.tz_convert("UTC").dt.strftime("%Y-%m")
    if rows.empty:
        notes.append(
            f"no scored lead's horizon ({horizon_days} days) has closed by the snapshot's as-of "
            f"time {snapshot_as_of.isoformat()}: no realised conversion yet"
        )
        tiers = no_outcomes_by_tier()
    else:
        tiers = tier_table(
            rows["label"].to_numpy(),
            rows["tier"].to_numpy(dtype=object),
            expected=rows["probability"].to_numpy(dtype=np.float64),
        )
    return Outcomes(rows, tiers, calibration_by_month(rows), notes)


def no_outcomes_by_tier() -> pd.DataFrame:
    """`tier_table`'s columns before any outcome is known: every tier without a lead
    (`tier_table` refuses an empty set, as training must)."""
    nan = float("nan")
    return pd.DataFrame(
        {
            "tier": list(TIER_NAMES),
            "n": 0,
            "share": nan,
            "conversions": 0,
            "conversion_rate": nan,
            "ci_low": nan,
            "ci_high": nan,
            "mean_expected": nan,
        }
    )


def calibration_alerts(calibration: pd.DataFrame, thresholds: MonitorConfig) -> list[str]:
    alerts = []
    for month in calibration.to_dict(orient="records"):
        if (
            int(month["n"]) >= thresholds.calibration_min_rows
            and abs(float(month["gap"])) > thresholds.calibration_gap_alert
        ):
            alerts.append(
                f"scored in {month['month']}: {month['realised']:.1%} converted against a mean "
                f"probability of {month['predicted']:.1%} ({month['n']:,} leads; more than "
                f"{thresholds.calibration_gap_alert:.0%} apart)"
            )
    return alerts


# --------------------------------------------------------------------------- the whole check


@dataclass
class MonitorResult:
    runs: list[RunDrift]
    outcomes: Outcomes | None
    alerts: list[str]
    notes: list[str]
    thresholds: MonitorConfig

    @property
    def alerting(self) -> bool:
        return bool(self.alerts)

    @property
    def model(self) -> dict[str, Any]:
        """The latest run's model and reference, and every model version among the runs."""
        record = self.runs[-1].run.record
        reference = record["reference"]
        versions = list(dict.fromkeys(str(d.run.record["model_version"]) for d in self.runs))
        return {
            "name": record["model_name"],
            "version": str(record["model_version"]),
            "versions": versions,
            "reference_id": reference["id"],
            "reference_rows": reference.get("rows"),
            "reference_rows_from": reference.get("rows_from"),
            "horizon_days": reference.get("horizon_days"),
        }

    def summary_table(self) -> pd.DataFrame:
        return pd.DataFrame([d.summary(self.thresholds.ignore_features) for d in self.runs])

    def feature_table(self) -> pd.DataFrame:
        """Features by run: PSI per run (columns named by as-of) and the largest, sorted."""
        table = pd.concat([d.features[["feature", "kind"]] for d in self.runs])
        table = table.drop_duplicates("feature").reset_index(drop=True)
        for drift in self.runs:
            psi_of = drift.features.set_index("feature")["psi"]
            table[f"psi {drift.run.label}"] = psi_of.reindex(table["feature"]).to_numpy()
        psi_columns = [c for c in table.columns if c.startswith("psi ")]
        table["max_psi"] = table[psi_columns].max(axis=1)
        table["ignored"] = table["feature"].isin(list(self.thresholds.ignore_features))
        return table.sort_values("max_psi", ascending=False, kind="stable").reset_index(drop=True)

    def alert_groups(self) -> dict[str, list[str]]:
        """The alerts by what they are about: probability, features, tiers, calibration."""
        return group_alerts(self.alerts)

    def verdict(self) -> str:
        """One sentence: drift or not, and what drifted."""
        return verdict_of(self)

    def payload(self) -> dict[str, Any]:
        """Everything, for monitor.json."""
        payload: dict[str, Any] = {
            "status": "alert" if self.alerting else "ok",
            "verdict": self.verdict(),
            "exit_code": ALERT_EXIT if self.alerting else 0,
            "alert_groups": self.alert_groups(),
            "alerts": self.alerts,
            "notes": self.notes,
            "model": self.model,
            "thresholds": self.thresholds.model_dump(mode="json"),
            "runs": [
                {
                    **drift.summary(self.thresholds.ignore_features),
                    "model_version": str(drift.run.record["model_version"]),
                    "scored_at": drift.run.record.get("scored_at"),
                    "features": drift.features,
                    "tiers": drift.tiers,
                }
                for drift in self.runs
            ],
        }
        if self.outcomes is not None:
            payload["outcomes"] = {
                "rows": len(self.outcomes.rows),
                "tiers": self.outcomes.tiers,
                "calibration": self.outcomes.calibration,
                "notes": self.outcomes.notes,
            }
        return payload


def monitor(
    runs: Sequence[ScoringRun],
    thresholds: MonitorConfig,
    *,
    leads: pd.DataFrame | None = None,
    snapshot_as_of: pd.Timestamp | None = None,
    horizon_days: int | None = None,
) -> MonitorResult:
    """Drift of each run against the reference; outcomes when a later snapshot's leads are given.

    `horizon_days` defaults to the reference's (the model's) horizon.
    """
    check_runs(runs)
    ordered = sorted(runs, key=lambda run: run.as_of)
    drifts = [run_drift(run) for run in ordered]
    alerts = [alert for drift in drifts for alert in drift_alerts(drift, thresholds)]
    notes = []
    default = set(MonitorConfig().ignore_features)  # e.g. absent from a flat export's model
    named = set(thresholds.ignore_features) - default
    unknown = sorted(named - set(drifts[0].features["feature"]))
    if unknown:
        notes.append(f"monitor.ignore_features names no model feature: {unknown}")
    at_mql_only = [
        str(run.record["model_version"])
        for run in ordered
        if run.reference.get("weekly_weeks") == 0 and not run.reference.get("sampled_ages")
    ]
    if at_mql_only:
        notes.append(
            f"Model version(s) {sorted(set(at_mql_only))} were trained on rows at mql_at only "
            "(snapshot_policy weekly_weeks and sampled_ages 0), so the reference shows leads at "
            "their MQL date, while a scoring run scores open MQLs up to horizon_days after it: "
            "time-since features and engagement windows differ by construction. Train with "
            "snapshot_policy.sampled_ages (the default) for a model and a reference that match "
            "nightly scoring."
        )
    empty = [drift.run.label for drift in drifts if int(drift.run.counts["rows"]) == 0]
    if empty:
        notes.append(f"runs with no scored leads (no drift measured): {empty}")
    result_outcomes = None
    if leads is not None:
        if snapshot_as_of is None:
            raise MonitorError("the snapshot has no as-of time; set as_of in the config")
        horizon = horizon_days or ordered[0].reference.get("horizon_days")
        if not horizon:
            raise MonitorError("the reference has no horizon_days; set horizon_days in the config")
        result_outcomes = outcomes(ordered, leads, snapshot_as_of, int(horizon))
        notes.extend(result_outcomes.notes)
        alerts.extend(calibration_alerts(result_outcomes.calibration, thresholds))
    return MonitorResult(drifts, result_outcomes, alerts, notes, thresholds)


ALERT_GROUPS = ("probability", "features", "tiers", "calibration")
#: Alerts shown per group in the report and the terminal; monitor.json keeps them all.
SHOWN_PER_GROUP = 5
#: Standard errors of a tier's share that chance is allowed (about 95% of runs stay within).
TIER_CHANCE_SD = 2.0


def _alert_group(alert: str) -> str:
    if "probability PSI" in alert:
        return "probability"
    if ": feature " in alert:
        return "features"
    if ": tier " in alert:
        return "tiers"
    return "calibration"


def group_alerts(alerts: Sequence[str]) -> dict[str, list[str]]:
    """Alerts by group, in `ALERT_GROUPS` order; empty groups left out."""
    groups: dict[str, list[str]] = {name: [] for name in ALERT_GROUPS}
    for alert in alerts:
        groups[_alert_group(alert)].append(alert)
    return {name: items for name, items in groups.items() if items}


def _drifted_features(result: MonitorResult) -> list[str]:
    names: list[str] = []
    for alert in group_alerts(result.alerts).get("features", []):
        name = alert.split(": feature ", 1)[1].split(" PSI", 1)[0]
        if name not in names:
            names.append(name)
    return names


def verdict_of(result: MonitorResult) -> str:
    """A sentence that says whether the runs drifted and, if so, in what."""
    runs = len(result.runs)
    versions = result.model["versions"]
    shown = ", ".join(versions)
    of = f"{runs} run(s) of model version(s) {shown}, each against its own reference"
    if not result.alerting:
        return f"No drift: {of}; no threshold passed."
    groups = group_alerts(result.alerts)
    parts = []
    if "probability" in groups:
        parts.append(f"the probability ({len(groups['probability'])} run(s))")
    features = _drifted_features(result)
    if features:
        more = f" and {len(features) - 5} more" if len(features) > 5 else ""
        parts.append(f"feature(s) {', '.join(features[:5])}{more}")
    if "tiers" in groups:
        parts.append(f"tier shares ({len(groups['tiers'])} alert(s))")
    if "calibration" in groups:
        parts.append(f"calibration ({len(groups['calibration'])} month(s) off)")
    return f"DRIFT in {'; '.join(parts)}: {of}; {len(result.alerts)} alert(s)."


def capped_alerts(result: MonitorResult, per_group: int = SHOWN_PER_GROUP) -> list[str]:
    """The alerts grouped, at most `per_group` of each group, with a count of the rest."""
    lines: list[str] = []
    for name, items in group_alerts(result.alerts).items():
        lines.extend(f"ALERT ({name}): {alert}" for alert in items[:per_group])
        if len(items) > per_group:
            lines.append(f"... and {len(items) - per_group} more {name} alerts (monitor.json)")
    return lines


# --------------------------------------------------------------------------- plots


def psi_plot(table: pd.DataFrame, threshold: float, path: Path, top: int = 25) -> Path:
    """Feature PSI, the largest first: a bar for the latest run, dots for earlier runs."""
    shown = table.head(top).iloc[::-1]
    psi_columns = [c for c in table.columns if c.startswith("psi ")]
    figure = Figure(figsize=(8.0, max(3.0, 0.32 * len(shown) + 1.2)), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(shown))
    latest = psi_columns[-1]
    axes.barh(
        positions,
        shown[latest].to_numpy(dtype=float),
        color=SCORER_STYLE["model"]["color"],
        alpha=0.8,
        label=f"run {latest.removeprefix('psi ')}",
    )
    for position, column in enumerate(psi_columns[:-1][-len(RUN_COLORS) :]):
        axes.scatter(
            shown[column].to_numpy(dtype=float),
            positions,
            color=RUN_COLORS[position % len(RUN_COLORS)],
            s=18,
            zorder=3,
            label=f"run {column.removeprefix('psi ')}",
        )
    axes.axvline(
        threshold, color="#d62728", linestyle="--", linewidth=1, label=f"alert ({threshold})"
    )
    axes.set_yticks(positions, shown["feature"].tolist(), fontsize=8)
    axes.set_xlabel("Population stability index against the training reference")
    axes.set_title(f"Feature drift (top {len(shown)} by PSI)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.grid(alpha=0.3, axis="x")
    return save_figure(figure, path)


def psi_over_time_plot(summary: pd.DataFrame, thresholds: MonitorConfig, path: Path) -> Path:
    """The probability's PSI and the largest feature PSI per run, in run order."""
    figure = Figure(figsize=(7.0, 4.0), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(summary))
    axes.plot(
        x,
        summary["psi_score"],
        marker="o",
        color=SCORER_STYLE["model"]["color"],
        label="probability PSI",
    )
    axes.plot(
        x, summary["max_feature_psi"], marker="s", color="#ff7f0e", label="largest feature PSI"
    )
    axes.axhline(
        thresholds.psi_score_alert, color=SCORER_STYLE["model"]["color"], linestyle=":", linewidth=1
    )
    axes.axhline(thresholds.psi_feature_alert, color="#ff7f0e", linestyle=":", linewidth=1)
    labels = summary["as_of"].tolist()
    if summary["model_version"].nunique() > 1:
        labels = [f"{a}\nv{v}" for a, v in zip(labels, summary["model_version"], strict=True)]
        changes = np.flatnonzero(
            summary["model_version"].to_numpy()[1:] != summary["model_version"].to_numpy()[:-1]
        )
        for change in changes:
            axes.axvline(change + 0.5, color="#888888", linestyle="--", linewidth=1)
    axes.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    axes.set_xlabel("Scoring run (as of; dashed: a new model version)")
    axes.set_ylabel("PSI")
    axes.set_title("Drift per scoring run (dotted: alert thresholds)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def _grouped_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: Path,
    title: str,
    xlabel: str,
) -> Path:
    figure = Figure(figsize=(max(7.0, 0.45 * len(labels) + 3), 4.5), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        color = "#bbbbbb" if name == "reference" else RUN_COLORS[(k - 1) % len(RUN_COLORS)]
        if name != "reference" and k == len(series) - 1:
            color = SCORER_STYLE["model"]["color"]
        axes.bar(
            positions + (k - (len(series) - 1) / 2) * width, values, width, color=color, label=name
        )
    axes.set_xticks(
        positions,
        list(labels),
        rotation=30 if len(labels) > 6 else 0,
        ha="right" if len(labels) > 6 else "center",
        fontsize=8,
    )
    axes.set_xlabel(xlabel)
    axes.set_ylabel("Share of leads")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_title(title)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def calibration_plot(calibration: pd.DataFrame, path: Path) -> Path:
    """Mean probability and realised conversion (Wilson 95%) per month of scoring."""
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(calibration))
    realised = calibration["realised"].to_numpy(dtype=float)
    error = np.vstack(
        [
            realised - calibration["ci_low"].to_numpy(dtype=float),
            calibration["ci_high"].to_numpy(dtype=float) - realised,
        ]
    )
    axes.errorbar(
        x,
        realised,
        yerr=error,
        marker="o",
        capsize=4,
        color="#2ca02c",
        label="realised conversion (95% CI)",
    )
    axes.plot(
        x,
        calibration["predicted"],
        marker="D",
        color=SCORER_STYLE["model"]["color"],
        label="mean probability",
    )
    annotate_counts(axes, calibration["n"])
    axes.set_xticks(x, calibration["month"].tolist())
    axes.set_xlabel("Month of scoring")
    axes.set_ylabel("Conversion to SQL within the horizon")
    axes.set_ylim(
        0,
        max(
            0.05,
            float(np.nanmax(np.r_[calibration["ci_high"], calibration["predicted"], 0.0])) * 1.2,
        ),
    )
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.1%}")
    axes.set_title("Calibration over time")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


# --------------------------------------------------------------------------- writing


def write_monitor_report(result: MonitorResult, report_dir: Path) -> tuple[Path, Path]:
    """Plots, `report.html` and `monitor.json` in `report_dir`, each written atomically."""
    folder = Path(report_dir)
    plots_dir = folder / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary_table()
    features = result.feature_table()
    latest = result.runs[-1]
    reference = latest.run.reference
    recent = result.runs[-len(RUN_COLORS) :]
    plots: dict[str, Path] = {
        "Feature drift: PSI against the training reference": psi_plot(
            features[~features["ignored"]],
            result.thresholds.psi_feature_alert,
            plots_dir / "psi_features.png",
        ),
        "Drift per scoring run": psi_over_time_plot(
            summary, result.thresholds, plots_dir / "psi_runs.png"
        ),
        "Share of leads per tier": _grouped_bars(
            TIER_NAMES,
            {
                "reference": reference["tiers"]["shares"],
                **{f"run {d.run.label}": d.tiers["share"].tolist() for d in recent},
            },
            plots_dir / "tier_shares.png",
            "Share of leads per tier: training reference and scoring runs",
            "Tier",
        ),
        "Probability distribution in the reference's bins": _grouped_bars(
            reference["score"]["bins"][:-1],
            {
                "reference": reference["score"]["shares"][:-1],
                **{
                    f"run {d.run.label}": _shares(d.run.counts["score"])[:-1].tolist()
                    for d in recent
                },
            },
            plots_dir / "score_bins.png",
            "Probability by reference decile",
            "Probability bin",
        ),
    }
    tables: dict[str, pd.DataFrame] = {
        "Scoring runs": summary,
        "Feature PSI by run (largest first)": features,
        f"Tiers in run {latest.run.label}": latest.tiers,
    }
    if result.outcomes is not None and len(result.outcomes.rows):
        plots["Realised conversion by tier (closed horizons)"] = tier_plot(
            result.outcomes.tiers,
            plots_dir / "realised_tiers.png",
            "Realised conversion to SQL by tier",
        )
        plots["Calibration over time"] = calibration_plot(
            result.outcomes.calibration, plots_dir / "calibration.png"
        )
        tables["Realised conversion by tier"] = result.outcomes.tiers
        tables["Calibration by month of scoring"] = result.outcomes.calibration
    model = result.model
    head = {
        "verdict": result.verdict(),
        "status": "ALERT" if result.alerting else "ok",
        "model": f"{model['name']} version {model['version']}",
        "versions": ", ".join(model["versions"]),
        "reference": f"{model['reference_rows']:,} rows ({model['reference_rows_from']})",
        "runs": len(result.runs),
        "alerts": {name: len(items) for name, items in result.alert_groups().items()},
    }
    metrics_html = {**head, "thresholds": result.thresholds.model_dump(mode="json")}
    notes = capped_alerts(result) + result.notes
    sources = {
        name: plot.resolve().relative_to(folder.resolve()).as_posix()
        for name, plot in plots.items()
    }
    page = render_html(
        title="leadscore monitoring report",
        metrics=to_jsonable(metrics_html),
        tables=tables,
        plot_sources=sources,
        notes=notes,
    )
    html_path = folder / "report.html"

    def write_page(temporary: Path) -> None:
        temporary.write_text(page, encoding="utf-8")

    write_atomic(html_path, write_page)
    json_path = folder / "monitor.json"
    write_json(result.payload(), json_path)
    return html_path, json_path


def summary_lines(result: MonitorResult, shown_alerts: int = 12) -> list[str]:
    """A short table for the terminal: one line per run, outcomes per month, the alerts."""
    lines = [f"{'as of':<12} {'leads':>8} {'PSI prob':>9} {'max PSI feature':>34}   A/B/C/D share"]
    for row in result.summary_table().itertuples():
        shares = "/".join(f"{getattr(row, f'share_{t}'):.0%}" for t in TIER_NAMES)
        # the name is shortened, never the PSI before it
        name = str(row.max_feature)
        name = name if len(name) <= 28 else name[:27] + "…"
        feature = f"{row.max_feature_psi:.3f} {name}"
        lines.append(
            f"{row.as_of:<12} {row.rows:>8,} {row.psi_score:>9.3f} {feature:>34}   {shares}"
        )
    reference = result.runs[0].run.reference["tiers"]["shares"]
    lines.append(
        f"{'reference':<12} {'':>8} {'':>9} {'':>34}   " + "/".join(f"{s:.0%}" for s in reference)
    )
    if result.outcomes is not None:
        for row in result.outcomes.calibration.itertuples():
            lines.append(
                f"scored {row.month}: {row.n:,} leads, {row.realised:.1%} converted, mean "
                f"probability {row.predicted:.1%}"
            )
    lines.extend(capped_alerts(result, max(1, shown_alerts // len(ALERT_GROUPS))))
    lines.append(result.verdict())
    lines.append("status: " + ("ALERT" if result.alerting else "ok"))
    return lines
