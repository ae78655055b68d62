"""The training report: plots and tables of a `TrainResult`, written as HTML plus metrics.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.evaluate import tier_table
from training.report import (
    gains_lift_plot,
    points_vs_probability_plot,
    reliability_plot,
    shap_summary_plot,
    tier_plot,
    write_report,
)
from training.train import TrainResult


def write_training_report(
    result: TrainResult,
    report_dir: Path,
    *,
    extra_metrics: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Path:
    """Plots of the test slice (reliability, gains and lift, SHAP, points against probability,
    tiers) and every metric, into `report_dir`; returns the index.html path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = report_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    test = result.scored[result.scored["slice"] == "test"]
    y = test["label"].to_numpy()
    probabilities = {"model": test["probability"].to_numpy()}
    scores = dict(probabilities)
    if "p_true" in test and test["p_true"].notna().all():
        probabilities["truth"] = test["p_true"].to_numpy()
        scores["truth"] = probabilities["truth"]
    if "points" in test:
        scores["rules"] = test["points"].to_numpy(dtype=np.float64)

    tiers = tier_table(y, test["tier"].to_numpy(), expected=test["probability"].to_numpy())
    plots = {
        "Reliability: predicted against observed conversion": reliability_plot(
            y, probabilities, plots_dir / "reliability.png"
        ),
        "Cumulative gains and lift": gains_lift_plot(y, scores, plots_dir / "gains_lift.png"),
        "Conversion by tier (test slice)": tier_plot(tiers, plots_dir / "tiers.png"),
        "SHAP summary: what moves the score": shap_summary_plot(
            result.shap_values, result.shap_features, plots_dir / "shap_summary.png"
        ),
    }
    if "points" in test:
        plots["Rule points against model probability"] = points_vs_probability_plot(
            test["points"].to_numpy(),
            test["probability"].to_numpy(),
            y,
            plots_dir / "points_vs_probability.png",
            thresholds,
        )
    metrics: dict[str, Any] = {**result.metrics, **(extra_metrics or {})}
    metrics["seconds"] = result.seconds
    metrics.update(guard_metrics(result))
    tables = {
        "Tiers on the test slice": tiers,
        "Leakage audit: single-feature AUC on the training slice (top 15)": result.audit.head(15),
        **guard_tables(result),
    }
    notes = list(result.notes)
    counts = result.split.counts()
    notes.insert(0, f"Rows per slice ({result.split.kind} split): {counts}.")
    return write_report(
        report_dir,
        title="leadscore training report",
        metrics=metrics,
        tables=tables,
        plots=plots,
        notes=notes,
    )


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


def guard_tables(result: TrainResult) -> dict[str, pd.DataFrame]:
    """The guards' tables: rows and conversion per month (far-off months marked), and the
    base rates of the calibration and test slices."""
    tables: dict[str, pd.DataFrame] = {}
    if len(result.monthly):
        tables["Rows and conversion per month of cutoff (far_off: unlike the other months)"] = (
            result.monthly
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
