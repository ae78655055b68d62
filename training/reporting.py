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
    metrics["leakage_flagged"] = result.flagged
    tables = {
        "Tiers on the test slice": tiers,
        "Leakage audit: single-feature AUC on the training slice (top 15)": result.audit.head(15),
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
    frame = pd.DataFrame(result.metrics["tiers_test"])
    return [
        f"tier {r.tier}: {r.n:,} leads, {r.conversion_rate:.1%} converted "
        f"(95% CI {r.ci_low:.1%}-{r.ci_high:.1%})"
        for r in frame.itertuples()
    ]
