"""The training report: one self-contained HTML page of a `TrainResult`, plus metrics.json.

The page opens with a verdict in words ('Ready: ranks better than your points (AUC 0.84 vs
0.68), calibrated within 0.7 points'), the model's name and version, when it was trained and
on which data, then a list of sections (comparison, reliability, gains, tiers, what drives
the score, single leads' waterfalls, points, leakage, training details). Plots are drawn once
(`TrainingReport.build`); the page can be written again once the model is registered and
gated, with its version and the gate's verdict (`TrainingReport.write`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.config import Config, GateConfig, build_config
from features.spec import FeatureMeaning, feature_meanings, unknown_meaning
from training.evaluate import tier_table
from training.reasons import ReasonPlan, choose, describe, sentence
from training.report import (
    Image,
    ReportPage,
    Section,
    Table,
    Verdict,
    category_effect_plot,
    data_uri,
    gains_lift_plot,
    lead_explanation,
    points_vs_probability_plot,
    reliability_plot,
    shap_summary_plot,
    tier_plot,
    waterfall_plot,
    write_page,
)
from training.scorer import feature_matrix
from training.train import TrainResult

SCORER_WORDS = {"model": "This model", "rules": "Your points", "truth": "True probability"}
#: Metric keys of `training.evaluate` in words, in the order the comparison shows them.
METRIC_WORDS = {
    "roc_auc": "Ranking quality (ROC AUC; 0.5 is chance)",
    "pr_auc": "Precision-recall area",
    "precision_at_5pct": "Converted among the top 5%",
    "precision_at_10pct": "Converted among the top 10%",
    "precision_at_20pct": "Converted among the top 20%",
    "lift_at_10pct": "Lift in the top 10% (times the overall rate)",
    "ece": "Calibration error (points of probability)",
    "ece_floor": "Calibration error chance alone gives (points)",
    "brier": "Brier score (lower is better)",
    "log_loss": "Log loss (lower is better)",
    "calibration_slope": "Calibration slope (1 is ideal)",
    "base_rate": "Converted overall",
    "n": "Leads tested",
}
STEP_WORDS = {
    "fit": "learning the trees",
    "calibrate": "calibrating and cutting tiers",
    "evaluate": "evaluating",
    "audit": "the leakage check",
    "shap": "explanations",
}
SLICE_WORDS = {
    "train": "to learn from",
    "validation": "to stop boosting",
    "calibration": "to calibrate",
    "test": "to test",
}


@dataclass(frozen=True)
class Registration:
    """What the registry made of the model: its version and the gate's verdict."""

    name: str
    version: str
    promoted: bool
    passed: bool
    reasons: tuple[str, ...] = ()
    champion_version: str | None = None
    champion: Mapping[str, float] | None = None
    problem: str | None = None


# --------------------------------------------------------------------------- the verdict


def _points(ece: float) -> str:
    return f"{ece * 100:.1f}"


def verdict(
    model: Mapping[str, float],
    rules: Mapping[str, float] | None,
    bounds: GateConfig,
    registration: Registration | None = None,
) -> Verdict:
    """Ready or not, in words: ranking against the points, calibration, the champion.

    Before registration the verdict is the gate's checks that need no champion (the same
    bounds); after it, the gate's own decision.
    """
    from training.tracking import gate

    decision = gate(model, None, bounds, rules)
    passed = decision.passed if registration is None else registration.passed
    good: list[str] = []
    bad: list[str] = []
    auc = model["roc_auc"]
    if rules is not None:
        if auc > rules["roc_auc"]:
            good.append(f"ranks better than your points (AUC {auc:.2f} vs {rules['roc_auc']:.2f})")
        else:
            bad.append(
                f"ranks no better than your points (AUC {auc:.2f} vs {rules['roc_auc']:.2f})"
            )
    else:
        good.append(f"ranks with AUC {auc:.2f} (no rule points to compare with)")
    floor = model.get("ece_floor", 0.0)
    if model["ece"] <= bounds.max_ece + floor:
        good.append(f"calibrated within {_points(model['ece'])} points")
    else:
        bad.append(
            f"its probabilities are off by {_points(model['ece'])} points on average, more than "
            f"the {_points(bounds.max_ece)} allowed beyond the {_points(floor)} chance gives"
        )
    if registration is not None:
        champion, version = registration.champion, registration.champion_version
        if registration.problem is not None:
            bad.append(f"the champion could not be compared ({registration.problem})")
        elif champion is not None and version is not None:
            words = f"the champion, version {version} (AUC {auc:.2f} vs {champion['roc_auc']:.2f})"
            if auc >= champion["roc_auc"] - bounds.auc_tolerance:
                good.append(f"as good as {words}")
            else:
                bad.append(f"ranks worse than {words}")
        if not passed and not bad:
            bad.extend(registration.reasons)
    if passed:
        return Verdict(True, ", ".join(good))
    return Verdict(False, ", ".join(bad or list(decision.reasons)))


# --------------------------------------------------------------------------- facts


def _day(stamp: Any) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _window(rows: pd.DataFrame) -> str:
    cutoffs = rows["cutoff"].dropna()
    if cutoffs.empty:
        return "no times (a flat export)"
    return f"{_day(cutoffs.min())} to {_day(cutoffs.max())}"


def facts(
    result: TrainResult,
    config: Config,
    registration: Registration | None,
    source: str | None,
) -> list[tuple[str, str]]:
    """The page's facts: model and version, when trained, on which data, the split."""
    if registration is None:
        model = f"{config.mlflow.model_name}, not registered"
    else:
        status = (
            "champion"
            if registration.promoted
            else f"challenger; the champion stays version {registration.champion_version}"
            if registration.champion_version
            else "challenger; no champion"
        )
        model = f"{registration.name} version {registration.version} ({status})"
    shown: list[tuple[str, str]] = [("Model", model)]
    if result.started_at is not None and result.finished_at is not None:
        took = (result.finished_at - result.started_at).total_seconds()
        shown.append(
            (
                "Trained",
                f"{result.started_at:%Y-%m-%d %H:%M} UTC, in {_duration(took)}",
            )
        )
    if source is not None:
        shown.append(("Data", source))
    scored = result.scored
    test = scored[scored["slice"] == "test"]
    shown.append(("Leads scored at", f"{_window(scored)} (every row's cutoff)"))
    converted = float(test["label"].mean()) if len(test) else math.nan
    shown.append(
        (
            "Tested on",
            f"{_window(test)}: {len(test):,} rows, {converted:.1%} became SQLs",
        )
    )
    shown.append(("Predicts", f"an SQL within {config.horizon_days} days of the scoring time"))
    counts = result.split.counts()
    split = ", ".join(f"{counts[k]:,} {SLICE_WORDS[k]}" for k in SLICE_WORDS if k in counts)
    kind = "by time, oldest first" if result.split.kind == "time" else "at random (no times)"
    shown.append(("Rows", f"{split} (split {kind})"))
    return shown


# --------------------------------------------------------------------------- sections


def _png(folder: Path, name: str) -> Path:
    return folder / f"{name}.png"


def comparison_section(metrics: Mapping[str, Mapping[str, float]]) -> Section:
    """The test metrics of model, points and truth, one row per metric in words."""
    scorers = [s for s in ("model", "rules", "truth") if s in metrics] + [
        s for s in metrics if s not in ("model", "rules", "truth")
    ]
    rows = []
    for key, words in METRIC_WORDS.items():
        if not any(key in metrics[s] for s in scorers):
            continue
        cells = []
        for scorer in scorers:
            value = metrics[scorer].get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            elif key in ("ece", "ece_floor"):
                cells.append(_points(float(value)))
            elif key.startswith("precision_at") or key == "base_rate":
                cells.append(f"{float(value):.1%}")
            elif key == "n":
                cells.append(f"{int(value):,}")
            else:
                cells.append(f"{float(value):.3f}")
        rows.append((words, *cells))
    table = Table(
        columns=("", *(SCORER_WORDS.get(s, s) for s in scorers)),
        rows=tuple(rows),
        numeric=(False, *(True for _ in scorers)),
    )
    paragraphs = [
        "Measured on the most recent leads, which the model never saw. Your points rank "
        "leads but give no probability, so their calibration rows are empty."
    ]
    if "truth" in metrics:
        paragraphs.append(
            "True probability: on synthetic data, the probability the generator used: the "
            "best any model could do."
        )
    return Section(
        "How it compares with your points", "comparison", paragraphs=paragraphs, tables=[table]
    )


def tier_section(tiers: pd.DataFrame, cut_points: Mapping[str, Any], folder: Path) -> Section:
    """The tier table (once) and its plot."""
    shown = pd.DataFrame(
        {
            "Tier": tiers["tier"],
            "Leads": tiers["n"],
            "Share of leads": [f"{v:.0%}" for v in tiers["share"]],
            "Became SQLs": tiers["conversions"],
            "Conversion": [
                "–" if math.isnan(r) else f"{r:.1%} ({lo:.1%}–{hi:.1%})"
                for r, lo, hi in zip(
                    tiers["conversion_rate"], tiers["ci_low"], tiers["ci_high"], strict=True
                )
            ],
        }
    )
    if "mean_expected" in tiers:
        shown["Mean predicted"] = [
            "–" if math.isnan(v) else f"{v:.1%}" for v in tiers["mean_expected"]
        ]
    cuts = ", ".join(
        f"{name} from {float(cut_points[name]):.1%}"
        for name in ("A", "B", "C")
        if name in cut_points
    )
    image = tier_plot(tiers, _png(folder, "tiers"), title="Conversion by tier, most recent leads")
    return Section(
        "Tiers",
        "tiers",
        paragraphs=[
            f"Leads are tiered by probability: {cuts}, D below. Conversion is shown with its "
            "95% interval."
        ],
        tables=[Table.of(shown)],
        images=[Image(data_uri(image), "Conversion by tier")],
    )


def _labels(meanings: Mapping[str, FeatureMeaning], names: Sequence[str]) -> dict[str, str]:
    """Each feature's name in words, for plot axes ('email opens, last 30 days')."""
    out = {}
    for name in names:
        meaning = meanings.get(name) or unknown_meaning(name)
        if meaning.unit in ("count", "active_days") and meaning.family != "custom":
            window = f", last {meaning.window_days} days" if meaning.window_days else ", so far"
            out[name] = f"{meaning.label}{window}"
        elif meaning.unit == "days":
            out[name] = f"days since {meaning.label}"
        else:
            out[name] = meaning.label
    return out


def drivers_section(
    result: TrainResult, meanings: Mapping[str, FeatureMeaning], folder: Path
) -> Section:
    """The beeswarm (numbers coloured by value, categories grey) and the categories by name."""
    features = result.shap_features
    labels = _labels(meanings, list(features.columns))
    images = [
        Image(
            data_uri(
                shap_summary_plot(
                    result.shap_values, features, _png(folder, "beeswarm"), labels=labels
                )
            ),
            "What moves the score",
            caption="Each dot is a lead; right of the line raises its chance, left lowers it. "
            "Colour is the feature's value, red high, blue low; categories are grey and shown "
            "by name below.",
        )
    ]
    strength = np.abs(result.shap_values).mean(axis=0)
    categorical = [
        str(c)
        for c in features.columns
        if result.scorer.spec.kinds[result.scorer.spec.names.index(str(c))] == "categorical"
    ]
    categorical.sort(key=lambda c: -strength[list(features.columns).index(c)])
    if categorical:
        top = categorical[:4]
        shown = {
            c: {
                str(v): describe(meanings.get(c) or unknown_meaning(c), v).split(": ", 1)[-1]
                for v in features[c].dropna().unique()
            }
            for c in top
        }
        image = category_effect_plot(
            result.shap_values, features, top, labels, shown, _png(folder, "categories")
        )
        images.append(Image(data_uri(image), "What each category does to the score"))
    return Section(
        "What drives the score",
        "drivers",
        paragraphs=[
            "SHAP values: how much each feature moved each lead's score, in log-odds, on a "
            f"sample of {len(features):,} recent leads."
        ],
        images=images,
    )


def example_leads(result: TrainResult, count: int = 3) -> list[Any]:
    """Index labels of a few explained leads: the highest score, the middle, the lowest."""
    index = result.shap_features.index
    probability = result.scored.loc[index, "probability"].to_numpy()
    if probability.size == 0:
        return []
    order = np.argsort(-probability, kind="stable")
    picks = [order[0], order[len(order) // 2], order[-1]][:count]
    return [index[i] for i in dict.fromkeys(int(p) for p in picks)]


def waterfall_section(
    result: TrainResult,
    meanings: Mapping[str, FeatureMeaning],
    folder: Path,
    top: int = 3,
) -> Section:
    """Per-lead waterfalls of a few example leads, with the reasons the API would give."""
    spec = result.scorer.spec
    plan = ReasonPlan.of(spec.names, meanings)
    images = []
    for number, label in enumerate(example_leads(result)):
        images.append(lead_waterfall(result, label, plan, _png(folder, f"lead{number}"), top)[0])
    return Section(
        "Why single leads scored as they did",
        "leads",
        paragraphs=[
            "Each bar is one feature's push on this lead's score, from the average lead's score "
            "(bottom) to this lead's (top), in log-odds; the probability is calibrated from that "
            "score. Under each: the reasons the API and the batch job give for it."
        ],
        images=images,
    )


def lead_waterfall(
    result: TrainResult,
    label: Any,
    plan: ReasonPlan,
    path: Path,
    top: int = 3,
    features: pd.DataFrame | None = None,
) -> tuple[Image, list[str]]:
    """One lead's waterfall (written to `path`) and the reasons the API gives it.

    `label` is the row's index in `result.scored`; `features` its one-row feature frame
    (default: from the SHAP sample). notebooks/03_explain.ipynb calls this too.
    """
    spec = result.scorer.spec
    row = result.shap_features.loc[[label]] if features is None else features
    matrix = feature_matrix(row, spec)
    contributions = result.scorer.contributions(matrix)[0]
    values = row.iloc[0]
    words = [describe(m, values[n]) for n, m in zip(plan.names, plan.meanings, strict=True)]
    explanation = lead_explanation(contributions[:-1], contributions[-1], words)
    scored = result.scored.loc[label]
    title = (
        f"Lead {scored['lead_id']}: probability {scored['probability']:.0%}, tier "
        f"{scored['tier']}, {'became' if scored['label'] else 'did not become'} an SQL"
    )
    chosen = choose(plan, matrix, contributions[None, :-1], top)
    reasons = [
        sentence(plan.meanings[i], values[plan.names[i]], float(contributions[i]))
        for i in [*chosen.raising[0], *chosen.lowering[0]]
        if i >= 0
    ]
    image = waterfall_plot(explanation, path)
    return Image(data_uri(image), f"Waterfall of lead {scored['lead_id']}", title=title,
                 items=tuple(reasons)), reasons  # fmt: skip


def leakage_section(result: TrainResult) -> Section:
    """Single-feature AUCs on the training rows, and the features flagged."""
    audit = result.audit.head(15)
    shown = pd.DataFrame(
        {
            "Feature": audit["feature"],
            "AUC alone": [f"{v:.3f}" for v in audit["auc"]],
            "Flagged": ["yes" if f else "" for f in audit["flagged"]],
        }
    )
    flagged = result.flagged
    paragraph = (
        "How well each feature alone predicts the outcome on the training rows; a feature "
        "that alone predicts it almost perfectly usually records the outcome. "
        + (f"Flagged: {', '.join(flagged)}." if flagged else "None is flagged.")
    )
    return Section(
        "Leakage check",
        "leakage",
        paragraphs=[paragraph],
        tables=[Table(tuple(shown.columns), tuple(map(tuple, shown.to_numpy().tolist())),
                      (False, True, False), "The 15 strongest features alone")],
    )  # fmt: skip


def training_details_section(result: TrainResult) -> Section:
    """Calibration, trees kept, and where the time went, in words."""
    metrics = result.metrics
    calibration = metrics.get("calibration", {})
    method = calibration.get("method", "?")
    losses = ", ".join(
        f"{k} {v:.4f}" for k, v in calibration.items() if k != "method" and isinstance(v, float)
    )
    items = [
        f"Calibration: {method} (cross-validated log loss: {losses or 'not measured'}).",
        f"Trees kept: {metrics.get('best_iteration', '?')} (boosting stopped where the "
        "validation rows stopped improving).",
    ]
    if result.seconds:
        spent = ", ".join(
            f"{STEP_WORDS.get(k, k)} {_duration(v)}" for k, v in result.seconds.items()
        )
        items.append(f"Time taken: {spent}.")
    return Section("How it was trained", "training", items=items)


def points_section(
    test: pd.DataFrame, thresholds: Mapping[str, float] | None, folder: Path
) -> Section:
    image = points_vs_probability_plot(
        test["points"].to_numpy(),
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        _png(folder, "points"),
        thresholds,
    )
    return Section(
        "Your points against the model's probability",
        "points",
        paragraphs=[
            "Each dot is a recent lead; dashed lines are your points' thresholds. Leads high "
            "on one and low on the other are where the two disagree."
        ],
        images=[Image(data_uri(image), "Rule points against model probability")],
    )


# --------------------------------------------------------------------------- the report


@dataclass
class TrainingReport:
    """The training report's sections (plots drawn once) and what the page is made from."""

    result: TrainResult
    config: Config
    sections: list[Section]
    metrics: dict[str, Any]
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def build(
        result: TrainResult,
        *,
        config: Config | None = None,
        thresholds: Mapping[str, float] | None = None,
        extra_metrics: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> TrainingReport:
        """Draw every plot and lay out the sections (the slow part, done once)."""
        settings = config or build_config({})
        meanings = feature_meanings(settings, flat=result.split.kind != "time")
        test = result.scored[result.scored["slice"] == "test"]
        y = test["label"].to_numpy()
        probabilities = {"This model": test["probability"].to_numpy()}
        scores = dict(probabilities)
        if "p_true" in test and test["p_true"].notna().all():
            probabilities["True probability"] = test["p_true"].to_numpy()
            scores["True probability"] = probabilities["True probability"]
        if "points" in test:
            scores["Your points"] = test["points"].to_numpy(dtype=np.float64)
        tiers = tier_table(y, test["tier"].to_numpy(), expected=test["probability"].to_numpy())
        with tempfile.TemporaryDirectory(prefix="leadscore-report-") as tmp:
            folder = Path(tmp)
            sections = [comparison_section(result.metrics["test"])]
            sections.append(
                Section(
                    "Predicted against observed conversion",
                    "reliability",
                    paragraphs=[
                        "Recent leads in bins of predicted probability: a calibrated model's "
                        "dots sit on the diagonal. Bars are 95% intervals."
                    ],
                    images=[
                        Image(
                            data_uri(reliability_plot(y, probabilities, _png(folder, "rel"))),
                            "Reliability diagram",
                        )
                    ],
                )
            )
            sections.append(
                Section(
                    "Calling the best leads first",
                    "gains",
                    paragraphs=[
                        "Left: the share of SQLs reached by calling the top share of leads. "
                        "Right: how many times the overall conversion rate that top share has."
                    ],
                    images=[
                        Image(
                            data_uri(gains_lift_plot(y, scores, _png(folder, "gains"))),
                            "Cumulative gains and lift",
                        )
                    ],
                )
            )
            sections.append(tier_section(tiers, result.metrics.get("tiers", {}), folder))
            sections.append(drivers_section(result, meanings, folder))
            sections.append(waterfall_section(result, meanings, folder))
            if "points" in test:
                sections.append(points_section(test, thresholds, folder))
            sections.append(leakage_section(result))
            sections.append(guards_section(result))
            sections.append(training_details_section(result))
        metrics: dict[str, Any] = {**result.metrics, **(extra_metrics or {})}
        metrics["seconds"] = result.seconds
        metrics.update(guard_metrics(result))
        return TrainingReport(result, settings, sections, metrics, source, list(result.notes))

    def page(self, registration: Registration | None = None) -> ReportPage:
        """The page, with the verdict of the gate's bounds or, once registered, its decision."""
        test = self.result.metrics["test"]
        return ReportPage(
            title="Lead scoring model: training report",
            verdict=verdict(
                test["model"], test.get("rules"), self.config.mlflow.gate, registration
            ),
            facts=facts(self.result, self.config, registration, self.source),
            notes=list(self.notes),
            sections=list(self.sections),
        )

    def write(self, report_dir: Path, registration: Registration | None = None) -> Path:
        """Write index.html and metrics.json into `report_dir`; returns the HTML path."""
        metrics = dict(self.metrics)
        if registration is not None:
            metrics["registration"] = {
                "name": registration.name,
                "version": registration.version,
                "promoted": registration.promoted,
                "passed": registration.passed,
                "reasons": list(registration.reasons),
            }
        return write_page(report_dir, self.page(registration), metrics)


def write_training_report(
    result: TrainResult,
    report_dir: Path,
    *,
    extra_metrics: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
    config: Config | None = None,
    source: str | None = None,
) -> Path:
    """Build and write the report of an unregistered model; returns the index.html path."""
    report = TrainingReport.build(
        result, config=config, thresholds=thresholds, extra_metrics=extra_metrics, source=source
    )
    return report.write(report_dir)


def guard_metrics(result: TrainResult) -> dict[str, Any]:
    """What the training guards found, for metrics.json (docs/training-guards.md)."""
    return {
        "leakage_flagged": result.flagged,
        "leak_guard": [
            {
                "feature": f.feature,
                "column": f.column,
                "reason": f.reason,
                "acknowledged": f.acknowledged,
            }
            for f in result.leaks
        ],
        "constant_features": len(result.constant),
        "constant_feature_names": result.constant,
        "label_definition": result.label_definition,
        "not_registrable": [r.message for r in result.refusals()],
    }


def guards_section(result: TrainResult) -> Section:
    """What the training guards found (docs/training-guards.md): columns that leak, too little
    data, constant features, and how the data's base rate moves over time."""
    items = [flag.sentence() + (" (acknowledged)" if flag.acknowledged else "")
             for flag in result.leaks]  # fmt: skip
    items += [refusal.message for refusal in result.refusals() if refusal.message not in items]
    if result.constant:
        items.append(
            f"{len(result.constant)} constant features (one value in every row) are left out "
            f"of the checks: {', '.join(result.constant[:10])}"
            + (", ..." if len(result.constant) > 10 else "")
        )
    paragraph = (
        "Nothing stops this model from being registered."
        if not result.refusals()
        else "This model is not registered until the problems below are fixed."
    )
    return Section(
        "Training guards",
        "guards",
        paragraphs=[paragraph],
        items=items,
        tables=[Table.of(frame, caption) for caption, frame in guard_tables(result).items()],
    )


def guard_tables(result: TrainResult) -> dict[str, pd.DataFrame]:
    """The guards' tables: rows and conversion per month (far-off months marked), and the
    base rates of the calibration and test slices."""
    tables: dict[str, pd.DataFrame] = {}
    if len(result.monthly):
        tables["Rows and conversion per month of cutoff ('far off': unlike the other months)"] = (
            result.monthly.rename(columns=lambda c: str(c).replace("_", " "))
        )
    base = result.metrics.get("base_rate")
    if base:
        tables["Base rate: calibration slice against test slice"] = pd.DataFrame([base])
    return tables


def summary_lines(result: TrainResult) -> list[str]:
    """A few lines for the terminal: test metrics of model, rules and truth."""
    test = result.metrics["test"]
    lines = []
    for name, values in test.items():
        shown = [f"AUC {values['roc_auc']:.4f}"]
        for key, label in (("brier", "Brier"), ("ece", "ECE"), ("log_loss", "log loss")):
            if key in values:
                shown.append(f"{label} {values[key]:.4f}")
        shown.append(f"precision@10% {values['precision_at_10pct']:.3f}")
        lines.append(f"{name:>6}: " + ", ".join(shown))
    return lines


def tier_lines(result: TrainResult) -> list[str]:
    """A line per tier on the test slice; an empty tier says so (never a NaN rate)."""
    lines = []
    for row in result.metrics["tiers_test"]:
        if row["n"]:
            lines.append(
                f"tier {row['tier']}: {row['n']:,} leads, {row['conversion_rate']:.1%} converted "
                f"(95% CI {row['ci_low']:.1%}-{row['ci_high']:.1%})"
            )
        else:
            lines.append(f"tier {row['tier']}: no leads")
    return lines
