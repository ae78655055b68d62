"""Report pages: plots, and one self-contained `index.html` with `metrics.json`.

Plots are drawn on `matplotlib.figure.Figure` objects, never through pyplot, so they touch no
global state and need no display; only the SHAP plots go through pyplot (shap draws on the
current figure) and close their figures afterwards. A page (`ReportPage`: verdict, facts,
notes, a list of `Section`s) is rendered by the jinja2 template in `training/templates/` with
every image embedded as a data URI, so the one file shows whole anywhere, MLflow's artifact
viewer included. Every file is written atomically.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import shutil
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from common.io import to_jsonable, write_atomic, write_json
from training.evaluate import (
    BinStrategy,
    comparison_table,
    ece,
    gains_at,
    gains_table,
    reliability_table,
)

DPI = 110
SCORER_STYLE: dict[str, dict[str, Any]] = {
    "model": {"color": "#1f77b4", "linestyle": "-"},
    "rules": {"color": "#ff7f0e", "linestyle": "-"},
    "truth": {"color": "#2ca02c", "linestyle": "--"},
}
# the same scorers named for people, as the training report names them
SCORER_STYLE.update(
    {
        "This model": SCORER_STYLE["model"],
        "Your points": SCORER_STYLE["rules"],
        "True probability": SCORER_STYLE["truth"],
    }
)
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
CONVERTED_COLOR = "#d62728"
NOT_CONVERTED_COLOR = "#7f7f7f"


# --------------------------------------------------------------------------- plot helpers


def _style(name: str, position: int) -> dict[str, Any]:
    """Colour and line style of a scorer, the same in every plot."""
    if name in SCORER_STYLE:
        return dict(SCORER_STYLE[name])
    return {"color": OTHER_COLORS[position % len(OTHER_COLORS)], "linestyle": "-"}


def save_figure(figure: Figure, path: Path) -> Path:
    """Write the figure as PNG atomically and return its path."""
    target = Path(path)
    write_atomic(target, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))
    return target


# --------------------------------------------------------------------------- plots


def reliability_plot(
    y: npt.ArrayLike,
    probs: Mapping[str, npt.ArrayLike],
    path: Path,
    bins: int = 10,
    strategy: BinStrategy = "quantile",
) -> Path:
    """Reliability diagram: observed rate vs mean prediction per bin, predictions underneath.

    Error bars are Wilson 95% intervals; the legend gives each scorer's ECE (15 quantile bins).
    Both axes stop just above the 99.5th percentile of predictions (or the highest interval), so
    low rates stay readable; the histogram counts predictions beyond that in its last bar.
    """
    if not probs:
        raise ValueError("reliability_plot needs at least one set of probabilities")
    figure = Figure(figsize=(7.0, 7.5), layout="constrained")
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 1))
    top = figure.add_subplot(grid[0])
    bottom = figure.add_subplot(grid[1], sharex=top)
    upper = 0.0
    all_p = []
    for position, (name, p) in enumerate(probs.items()):
        table = reliability_table(y, p, bins=bins, strategy=strategy)
        style = _style(name, position)
        observed = table["observed"].to_numpy()
        error = np.vstack(
            [observed - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - observed]
        )
        top.errorbar(
            table["mean_p"],
            observed,
            yerr=error,
            marker="o",
            markersize=5,
            capsize=3,
            color=style["color"],
            linestyle=style["linestyle"],
            label=f"{name} (ECE {ece(y, p):.3f})",
        )
        values = np.asarray(p, dtype=float)
        all_p.append(values)
        upper = max(upper, float(np.quantile(values, 0.995)), float(table["ci_high"].max()))
    limit = min(1.0, upper * 1.05) if upper > 0 else 1.0
    top.plot([0, limit], [0, limit], color="black", linestyle=":", linewidth=1, label="perfect")
    top.set_xlim(0, limit)
    top.set_ylim(0, limit)
    top.set_ylabel("Observed conversion rate")
    top.set_title(f"Reliability ({strategy} bins of predictions, 95% Wilson intervals)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    top.tick_params(labelbottom=False)
    edges = np.linspace(0, limit, 41)
    for position, (name, values) in enumerate(zip(probs, all_p, strict=True)):
        bottom.hist(
            np.clip(values, 0.0, limit),
            bins=edges.tolist(),
            histtype="step",
            linewidth=1.5,
            color=_style(name, position)["color"],
            label=name,
        )
    bottom.set_xlabel("Predicted probability of SQL")
    bottom.set_ylabel("Leads")
    bottom.grid(alpha=0.3)
    return save_figure(figure, path)


def gains_lift_plot(y: npt.ArrayLike, scores: Mapping[str, npt.ArrayLike], path: Path) -> Path:
    """Cumulative gains (with random and perfect lines) and lift, side by side.

    Ties in a score are drawn as straight segments: the expected curve under random
    tie-breaking. Lift is shown from 1% of leads contacted, where it stops being noise.
    """
    if not scores:
        raise ValueError("gains_lift_plot needs at least one score")
    labels = np.asarray(y, dtype=float)
    base_rate = float(labels.mean()) if labels.size else math.nan
    figure = Figure(figsize=(12.0, 5.0), layout="constrained")
    gains_axes, lift_axes = figure.subplots(1, 2)
    shares = np.linspace(0.01, 1.0, 100)
    for position, (name, score) in enumerate(scores.items()):
        table = gains_table(y, score)
        style = _style(name, position)
        gains_axes.plot(
            np.concatenate([[0.0], table["share_contacted"].to_numpy()]),
            np.concatenate([[0.0], table["share_captured"].to_numpy()]),
            label=name,
            **style,
        )
        lift_axes.plot(shares, gains_at(table, shares) / shares, label=name, **style)
    gains_axes.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1, label="random")
    gains_axes.plot(
        [0, base_rate, 1], [0, 1, 1], color="grey", linestyle="-.", linewidth=1, label="perfect"
    )
    gains_axes.set_xlim(0, 1)
    gains_axes.set_ylim(0, 1.02)
    gains_axes.set_xlabel("Share of leads contacted (highest score first)")
    gains_axes.set_ylabel("Share of SQLs captured")
    gains_axes.set_title("Cumulative gains")
    gains_axes.legend(loc="lower right")
    gains_axes.grid(alpha=0.3)
    lift_axes.axhline(1.0, color="black", linestyle=":", linewidth=1, label="random")
    lift_axes.set_xlim(0, 1)
    lift_axes.set_ylim(bottom=0)
    lift_axes.set_xlabel("Share of leads contacted (highest score first)")
    lift_axes.set_ylabel("Lift (conversion rate / base rate)")
    lift_axes.set_title(f"Lift (base rate {base_rate:.1%})")
    lift_axes.legend(loc="upper right")
    lift_axes.grid(alpha=0.3)
    return save_figure(figure, path)


def _colour_values(features: pd.DataFrame) -> pd.DataFrame:
    """Numeric stand-ins for colouring: numbers as they are; categorical and string columns
    all missing, so shap draws them grey (a category has no order to colour by: the report
    shows categories by name in `category_effect_plot`)."""
    columns: dict[str, Any] = {}
    for column in features.columns:
        values = features[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values)
        ):
            columns[column] = np.full(len(values), np.nan)
        else:
            columns[column] = pd.to_numeric(values, errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
    return pd.DataFrame(columns, index=features.index)


def shap_summary_plot(
    shap_values: np.ndarray,
    features: pd.DataFrame,
    path: Path,
    max_display: int = 20,
    max_leads: int = 5000,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """SHAP beeswarm: each lead's contribution (log-odds) per feature, coloured by its value.

    `shap_values` is (leads, features), or (leads, features + 1) as LightGBM's `pred_contrib`
    returns it, whose last (bias) column is dropped. String and categorical columns are drawn
    grey (they have no order to colour by). `labels` names features in words. Above
    `max_leads` rows a seeded random sample is drawn (the beeswarm
    looks the same and renders in seconds). Uses pyplot because shap does; the figure is closed
    afterwards.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # shap 0.51 calls Colormap.set_bad/over/under at import, which matplotlib 3.11 flags.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    values = np.asarray(shap_values, dtype=float)
    if values.ndim != 2 or values.shape[0] != len(features):
        raise ValueError(
            f"shap_values must be (leads, features) for {len(features)} leads, "
            f"got shape {values.shape}"
        )
    if values.shape[1] == features.shape[1] + 1:
        values = values[:, :-1]
    if values.shape[1] != features.shape[1]:
        raise ValueError(
            f"shap_values has {values.shape[1]} columns but features has {features.shape[1]}"
        )
    colours = _colour_values(features)
    if len(colours) > max_leads:
        kept = np.sort(np.random.default_rng(0).choice(len(colours), max_leads, replace=False))
        values, colours = values[kept], colours.iloc[kept]
    # A feature with no value in any lead and no contribution to any score (no events in the
    # export, no accounts) shows nothing, and shap would take percentiles of nothing to colour
    # it ("All-NaN slice encountered"): leave it out, unless that leaves no feature at all.
    shown = ~(colours.isna().all().to_numpy() & (values == 0).all(axis=0))
    if shown.any():
        values, colours = values[:, shown], colours.loc[:, shown]
    before = set(plt.get_fignums())
    plt.figure()
    try:
        with warnings.catch_warnings():
            # categories are all-NaN colours on purpose (drawn grey), as is a used feature
            # missing in every sampled lead: numpy warns of the slice shap takes percentiles of
            warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
            shap.summary_plot(
                values,
                colours,
                feature_names=[(labels or {}).get(str(c), str(c)) for c in colours.columns],
                max_display=max_display,
                show=False,
                rng=np.random.default_rng(0),
            )
        figure = plt.gcf()
        figure.axes[0].set_xlabel("SHAP value (contribution to log-odds of SQL)")
        figure.suptitle("What drives the model's score")
        figure.tight_layout()
        return save_figure(figure, path)
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def points_vs_probability_plot(
    points: npt.ArrayLike,
    probability: npt.ArrayLike,
    y: npt.ArrayLike,
    path: Path,
    thresholds: Mapping[str, float] | None = None,
) -> Path:
    """Rule points against model probability, one dot per lead coloured by outcome.

    Points have many ties, so dots get a small fixed horizontal jitter; the vertical lines are
    the rule thresholds (e.g. MQL at 60 points). The title gives the rank correlation.
    """
    x = np.asarray(points, dtype=float)
    p = np.asarray(probability, dtype=float)
    outcome = np.asarray(y, dtype=float)
    if not x.size == p.size == outcome.size:
        raise ValueError(
            f"points ({x.size}), probability ({p.size}) and y ({outcome.size}) differ in length"
        )
    distinct = np.unique(x[np.isfinite(x)])
    gap = float(np.min(np.diff(distinct))) if distinct.size > 1 else 1.0
    jitter = np.random.default_rng(0).uniform(-0.35, 0.35, x.size) * gap
    figure = Figure(figsize=(9.5, 5.5), layout="constrained")
    axes = figure.subplots()
    alpha = float(np.clip(2000 / max(x.size, 1), 0.08, 0.6))
    for value, colour, label in (
        (0.0, NOT_CONVERTED_COLOR, "did not become SQL"),
        (1.0, CONVERTED_COLOR, "became SQL"),
    ):
        member = outcome == value
        axes.scatter(
            x[member] + jitter[member],
            p[member],
            s=8,
            alpha=alpha,
            color=colour,
            label=f"{label} ({int(member.sum()):,})",
            rasterized=True,
            linewidths=0,
        )
    _threshold_lines(axes, thresholds or {})
    # undefined when either side is constant (e.g. a model that learnt nothing): say so
    # rather than let scipy warn
    varies = x.size > 1 and np.ptp(x) > 0 and np.ptp(p) > 0
    rho = pd.Series(x).corr(pd.Series(p), method="spearman") if varies else math.nan
    axes.set_xlabel("Rule points")
    axes.set_ylabel("Model probability of SQL")
    axes.set_ylim(0, min(1.0, float(np.nanmax(p)) * 1.08) if p.size else 1.0)
    axes.set_title(f"Rule points vs model probability (Spearman ρ = {rho:.2f})")
    legend = axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=2)
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def _threshold_lines(axes: Axes, thresholds: Mapping[str, float]) -> None:
    """Dashed vertical line with its name at each rule threshold."""
    for name, value in sorted(thresholds.items(), key=lambda item: item[1]):
        axes.axvline(value, color="black", linestyle="--", linewidth=1)
        axes.annotate(
            f"{name} ≥ {value:g}",
            xy=(value, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="left",
            fontsize=9,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )


def annotate_counts(axes: Axes, counts: Iterable[Any], fontsize: int = 8) -> None:
    """ "n=1,234" at the foot of each bar or point, so a rate is read with its sample size."""
    for position, n in enumerate(counts):
        axes.annotate(
            f"n={int(n):,}",
            xy=(position, 0.0),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=fontsize,
        )


def tier_plot(
    tier_table_df: pd.DataFrame, path: Path, title: str = "Conversion to SQL by tier"
) -> Path:
    """Conversion rate per tier with Wilson intervals, the overall rate, and n on each bar.

    Takes `training.evaluate.tier_table` output; its `mean_expected` column, when present, is
    drawn as a marker (the model's mean probability in the tier).
    """
    table = tier_table_df.reset_index(drop=True)
    positions = np.arange(len(table))
    rate = table["conversion_rate"].to_numpy(dtype=float)
    low = np.nan_to_num(rate - table["ci_low"].to_numpy(dtype=float))
    high = np.nan_to_num(table["ci_high"].to_numpy(dtype=float) - rate)
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.bar(
        positions,
        np.nan_to_num(rate),
        yerr=np.vstack([low, high]),
        capsize=6,
        color="#9ecae1",
        edgecolor="#3182bd",
        label="observed conversion (95% CI)",
    )
    if "mean_expected" in table:
        axes.scatter(
            positions,
            table["mean_expected"].to_numpy(dtype=float),
            marker="D",
            color=SCORER_STYLE["model"]["color"],
            zorder=3,
            label="mean model probability",
        )
    total = float(table["n"].sum())
    if total > 0:
        axes.axhline(
            float(table["conversions"].sum()) / total,
            color="black",
            linestyle=":",
            linewidth=1,
            label="overall rate",
        )
    annotate_counts(axes, table["n"], fontsize=9)
    axes.set_xticks(positions, [str(tier) for tier in table["tier"]])
    axes.set_xlabel("Tier")
    axes.set_ylabel("Conversion rate to SQL")
    tops = [table["ci_high"].to_numpy(dtype=float), rate]
    if "mean_expected" in table:
        tops.append(table["mean_expected"].to_numpy(dtype=float))
    highest = np.concatenate([*tops, [0.0]])
    axes.set_ylim(0, max(0.05, float(np.nanmax(highest)) * 1.2))
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_title(title)
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


# --------------------------------------------------------------------------- JSON and HTML


def _format_value(value: Any) -> str:
    """A metric as a person reads it: 4 significant digits, thousands separators, '–' for NaN."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}" if abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _html_table(frame: pd.DataFrame, *, index: bool | None = None) -> str:
    """An HTML table with every cell formatted and escaped.

    The index is shown when `index` is true, or, when it is None, unless it is a plain unnamed
    RangeIndex (so `comparison_table` output keeps its metric names).
    """
    if index is None:
        index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)
    shown = frame.reset_index() if index else frame
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in shown.columns)
    rows = []
    for record in shown.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"num" if _is_number(value) else "text"}">'
            f"{html.escape(_format_value(value))}</td>"
            for value in record
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float | np.generic)


def _metrics_sections(metrics: Mapping[str, Any]) -> list[str]:
    """HTML for the metrics: scalars in one summary table, scorer comparisons side by side.

    A mapping of mappings becomes a comparison table (one column per outer key), a mapping of
    scalars a two-column table, a list of records a table, a list of scalars a line of text;
    anything else is shown as JSON.
    """
    sections: list[str] = []
    scalars = {key: value for key, value in metrics.items() if _is_scalar(value)}
    if scalars:
        frame = pd.DataFrame({"": list(scalars), "value": list(scalars.values())})
        sections.append(f"<h2>Summary</h2>{_html_table(frame)}")
    for key, value in metrics.items():
        if _is_scalar(value):
            continue
        heading = f"<h2>{html.escape(str(key))}</h2>"
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(item, Mapping) for item in value.values())
        ):
            table = comparison_table(
                {
                    str(name): {
                        str(metric): float(number)
                        for metric, number in item.items()
                        if _is_number(number)
                    }
                    for name, item in value.items()
                }
            )
            sections.append(heading + _html_table(table, index=True))
        elif isinstance(value, Mapping) and all(_is_scalar(item) for item in value.values()):
            frame = pd.DataFrame({"": [str(k) for k in value], "value": list(value.values())})
            sections.append(heading + _html_table(frame))
        elif isinstance(value, list | tuple) and all(isinstance(item, Mapping) for item in value):
            sections.append(heading + _html_table(pd.DataFrame(list(value))))
        elif isinstance(value, list | tuple) and all(_is_scalar(item) for item in value):
            shown = ", ".join(_format_value(item) for item in value) or "none"
            sections.append(f"{heading}<p>{html.escape(shown)}</p>")
        else:
            text = json.dumps(to_jsonable(value), indent=2, sort_keys=True)
            sections.append(f"{heading}<pre>{html.escape(text)}</pre>")
    return sections


def _plot_reference(report_dir: Path, plot: Path) -> str:
    """Relative URL of a plot; plots outside the report folder are copied into it first."""
    source = Path(plot)
    if not source.is_file():
        raise FileNotFoundError(f"plot {source} does not exist")
    root = report_dir.resolve()
    resolved = source.resolve()
    if not resolved.is_relative_to(root):
        resolved = root / "plots" / source.name

        def copy(temporary: Path) -> None:
            shutil.copyfile(source, temporary)

        write_atomic(resolved, copy)
    return quote(resolved.relative_to(root).as_posix())


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { border-bottom: 2px solid #1f77b4; padding-bottom: .3rem; }
h2 { margin-top: 2rem; color: #1f4e79; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .3rem .7rem; }
th { background: #f2f5f9; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: .6rem 1rem; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; }
footer { color: #888; font-size: .8rem; margin-top: 3rem; }
"""


def render_html(
    *,
    title: str,
    metrics: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    plot_sources: Mapping[str, str],
    notes: Sequence[str] = (),
) -> str:
    """The report page as a string; `plot_sources` maps plot names to relative URLs."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notes:
        items = "".join(f"<li>{html.escape(str(note))}</li>" for note in notes)
        parts.append(f'<h2>Notes</h2><div class="notes"><ul>{items}</ul></div>')
    parts.extend(_metrics_sections(metrics))
    for name, source in plot_sources.items():
        parts.append(
            f"<h2>{html.escape(name)}</h2><figure>"
            f'<img src="{html.escape(source, quote=True)}" alt="{html.escape(name, quote=True)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>"
        )
    for name, frame in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{_html_table(frame)}")
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Generated {html.escape(generated)} by leadscore.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    report_dir: Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    plots: Mapping[str, Path],
    notes: Sequence[str] = (),
) -> Path:
    """Write `index.html` and `metrics.json` into `report_dir` atomically; return the HTML path.

    Args:
        report_dir: Folder of the report; created if missing.
        title: Page title.
        metrics: Everything for `metrics.json`. In the page, scalar entries form a summary table,
            an entry mapping scorer names to metric dicts (`evaluate_scores` output) becomes a
            comparison table with one column per scorer, other entries are shown as JSON.
        tables: Heading to frame (e.g. the tier table), shown in order.
        plots: Heading to PNG path; referenced by relative path, copied into
            `report_dir/plots/` when outside `report_dir`.
        notes: Sentences shown at the top (leakage warnings, censored counts).
    """
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sources = {name: _plot_reference(folder, plot) for name, plot in plots.items()}
    page = render_html(
        title=title, metrics=metrics, tables=tables, plot_sources=sources, notes=notes
    )
    index = folder / "index.html"

    def write_page(temporary: Path) -> None:
        temporary.write_text(page, encoding="utf-8")

    write_atomic(index, write_page)
    write_json(metrics, folder / "metrics.json")
    return index


# --------------------------------------------------------------------------- per-lead SHAP


def _shap() -> Any:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    with warnings.catch_warnings():
        # shap 0.51 calls Colormap.set_bad/over/under at import, which matplotlib 3.11 flags.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap
    return shap


def lead_explanation(contributions: npt.ArrayLike, base_value: float, words: Sequence[str]) -> Any:
    """One lead's SHAP values as a `shap.Explanation` in log-odds, each feature named by what
    its value says ('demo requested 3 days ago'), so the waterfall reads as sentences.

    Args:
        contributions: the lead's contribution per feature (no bias column).
        base_value: the model's expected raw score (LightGBM's bias column).
        words: each feature's value in words (`training.reasons.describe`).
    """
    shap = _shap()
    return shap.Explanation(
        values=np.asarray(contributions, dtype=float),
        base_values=float(base_value),
        feature_names=list(words),
    )


def waterfall_plot(explanation: Any, path: Path, title: str = "", max_display: int = 12) -> Path:
    """`shap.plots.waterfall` of one lead's explanation, written as PNG; returns the path.

    The bars walk from the model's average raw score to this lead's, in log-odds, each
    feature labelled with its value in words. Uses pyplot because shap does; the figure is
    closed afterwards.
    """
    shap = _shap()
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        plt.figure(figsize=(9, 6))
        shap.plots.waterfall(explanation, max_display=max_display, show=False)
        figure = plt.gcf()
        if title:
            figure.suptitle(title, fontsize=11)
        figure.set_size_inches(10, 0.45 * min(max_display, len(explanation.values)) + 2)
        figure.tight_layout()
        return save_figure(figure, path)
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def category_effect_plot(
    shap_values: np.ndarray,
    features: pd.DataFrame,
    columns: Sequence[str],
    labels: Mapping[str, str],
    shown: Mapping[str, Mapping[str, str]],
    path: Path,
    max_categories: int = 8,
) -> Path:
    """What each category of a categorical feature does to the score: per category, its
    leads' contributions (log-odds) as a box, most common categories only.

    The beeswarm colours by value, which has no order for a category; this plot shows the
    categories by name instead. `shown` maps a column's raw values to words.
    """
    if not columns:
        raise ValueError("category_effect_plot needs at least one categorical column")
    values = np.asarray(shap_values, dtype=float)
    height = sum(min(features[c].nunique(dropna=False), max_categories) for c in columns)
    figure = Figure(figsize=(9.0, 1.2 + 0.32 * height + 0.5 * len(columns)), layout="constrained")
    ratios = [min(features[c].nunique(dropna=False), max_categories) + 1 for c in columns]
    axes_list = figure.subplots(len(columns), 1, sharex=True, height_ratios=ratios, squeeze=False)
    for axes, column in zip(axes_list[:, 0], columns, strict=True):
        j = list(features.columns).index(column)
        raw = features[column].astype("object").where(features[column].notna(), None)
        counts = raw.value_counts(dropna=False).head(max_categories)
        groups = [values[(raw.isna() if key is None else raw == key).to_numpy(), j]
                  for key in counts.index]  # fmt: skip
        names = [
            "unknown" if key is None else shown.get(column, {}).get(str(key), str(key))
            for key in counts.index
        ]
        axes.boxplot(groups, orientation="horizontal", tick_labels=[
            f"{name} ({int(n):,})" for name, n in zip(names, counts.to_numpy(), strict=True)
        ], showfliers=False, widths=0.6)  # fmt: skip
        axes.axvline(0.0, color="black", linewidth=0.8, linestyle=":")
        axes.set_title(labels.get(column, column), loc="left", fontsize=10)
        axes.invert_yaxis()
        axes.grid(alpha=0.3, axis="x")
    axes_list[-1, 0].set_xlabel(
        "Contribution to the score (log-odds); right of 0 raises the chance"
    )
    figure.suptitle("What each category does to the score (leads per category in brackets)")
    return save_figure(figure, path)


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Verdict:
    """The report's first line: whether the model is ready to serve, and why in words."""

    ready: bool
    detail: str


@dataclass(frozen=True)
class Image:
    """A plot embedded in the page (a data URI), with the words around it."""

    data_uri: str
    alt: str
    title: str = ""
    caption: str = ""
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """A table of formatted cells; `numeric` aligns a column's cells to the right."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]
    caption: str = ""

    @staticmethod
    def of(frame: pd.DataFrame, caption: str = "", *, index: bool = False) -> Table:
        """A frame's cells formatted for people (`_format_value`)."""
        shown = frame.reset_index() if index else frame
        records = list(shown.itertuples(index=False, name=None))
        numeric = tuple(
            bool(records) and all(_is_number(r[i]) or r[i] is None for r in records)
            for i in range(len(shown.columns))
        )
        return Table(
            columns=tuple(str(c) for c in shown.columns),
            rows=tuple(tuple(_format_value(v) for v in record) for record in records),
            numeric=numeric,
            caption=caption,
        )


@dataclass
class Section:
    """One part of the page: a heading, words, tables and images, in that order. A report is
    a list of them, so a new kind of content is a new section, not a new page."""

    heading: str
    anchor: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)


@dataclass
class ReportPage:
    """A whole report: verdict, facts (label, value), notes and sections."""

    title: str
    verdict: Verdict | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""


def data_uri(png: Path) -> str:
    """A PNG file as a data URI, so the page needs no other file."""
    encoded = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def _templates() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("training", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(page: ReportPage, template: str = "report.html.j2") -> str:
    """The page as one self-contained HTML document (templates/report.html.j2)."""
    if not page.footer:
        generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        page = replace(page, footer=f"Generated {generated} by leadscore.")
    return str(_templates().get_template(template).render(page=page))


def write_page(
    report_dir: Path, page: ReportPage, metrics: Mapping[str, Any] | None = None
) -> Path:
    """Write `index.html` (and `metrics.json` when given) into `report_dir` atomically."""
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    html_text = render_page(page)
    index = folder / "index.html"

    def write(temporary: Path) -> None:
        temporary.write_text(html_text, encoding="utf-8")

    write_atomic(index, write)
    if metrics is not None:
        write_json(metrics, folder / "metrics.json")
    return index
