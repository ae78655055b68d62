"""The report: every plot writes a PNG and leaves no figure open; the page and metrics.json."""

import json
import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from training.evaluate import comparison_table, evaluate_scores, tier_table
from training.report import (
    gains_lift_plot,
    points_vs_probability_plot,
    reliability_plot,
    shap_summary_plot,
    tier_plot,
    to_jsonable,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_open_figures() -> Iterator[None]:
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a plot function left a pyplot figure open"


@pytest.fixture
def slice_() -> dict[str, np.ndarray]:
    """A seeded test slice: outcomes, the truth, a noisy model and tied rule points."""
    rng = np.random.default_rng(0)
    n = 800
    truth = rng.beta(1.5, 6.0, n)
    y = (rng.random(n) < truth).astype(int)
    model = np.clip(truth * np.exp(rng.normal(0, 0.3, n)), 0, 1)
    points = np.round(truth * 20) * 5
    tiers = np.asarray(["A", "B", "C", "D"], dtype=object)[
        np.searchsorted(-np.array([0.35, 0.2, 0.1]), -model, side="right")
    ]
    return {"y": y, "truth": truth, "model": model, "points": points, "tiers": tiers}


def assert_png(path: Path) -> None:
    assert path.is_file()
    content = path.read_bytes()
    assert content[:8] == PNG_MAGIC
    assert len(content) > 5000
    assert not list(path.parent.glob(f".{path.name}.*.tmp"))


def test_reliability_plot(tmp_path: Path, slice_: dict[str, np.ndarray]) -> None:
    target = tmp_path / "reliability.png"
    path = reliability_plot(
        slice_["y"], {"model": slice_["model"], "truth": slice_["truth"]}, target
    )
    assert path == target
    assert_png(path)


def test_gains_lift_plot(tmp_path: Path, slice_: dict[str, np.ndarray]) -> None:
    scores = {"model": slice_["model"], "rules": slice_["points"], "truth": slice_["truth"]}
    assert_png(gains_lift_plot(slice_["y"], scores, tmp_path / "gains.png"))


def test_points_vs_probability_plot(tmp_path: Path, slice_: dict[str, np.ndarray]) -> None:
    path = points_vs_probability_plot(
        slice_["points"],
        slice_["model"],
        slice_["y"],
        tmp_path / "points.png",
        thresholds={"MQL": 20, "hot": 60},
    )
    assert_png(path)
    assert_png(
        points_vs_probability_plot(
            slice_["points"], slice_["model"], slice_["y"], tmp_path / "bare.png"
        )
    )


def test_tier_plot(tmp_path: Path, slice_: dict[str, np.ndarray]) -> None:
    table = tier_table(slice_["y"], slice_["tiers"], expected=slice_["model"])
    assert_png(tier_plot(table, tmp_path / "tiers.png"))
    assert_png(tier_plot(table.drop(columns="mean_expected"), tmp_path / "plain.png"))


def test_shap_summary_plot_handles_string_and_categorical_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 200
    features = pd.DataFrame(
        {
            "engagement_points": rng.normal(size=n),
            "country": pd.array(rng.choice(["US", "DE", None], n), dtype="str"),
            "industry": pd.Categorical(rng.choice(["Software", "Retail"], n)),
            "company_size": rng.integers(1, 5000, n),
            "free_mail": rng.random(n) < 0.3,
        }
    )
    values = rng.normal(size=(n, features.shape[1]))
    assert_png(shap_summary_plot(values, features, tmp_path / "shap.png"))
    with_bias = np.column_stack([values, np.full(n, -1.5)])  # LightGBM pred_contrib layout
    assert_png(
        shap_summary_plot(with_bias, features, tmp_path / "bias.png", max_display=3, max_leads=50)
    )
    with pytest.raises(ValueError, match="columns"):
        shap_summary_plot(values[:, :2], features, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_shap_summary_plot_keeps_figures_it_did_not_open(tmp_path: Path) -> None:
    mine = plt.figure()
    try:
        shap_summary_plot(np.ones((5, 1)), pd.DataFrame({"x": range(5)}), tmp_path / "shap.png")
        assert plt.get_fignums() == [mine.number]
    finally:
        plt.close(mine)


def test_to_jsonable_converts_numpy_and_missing() -> None:
    payload = {
        "auc": np.float64(0.75),
        "n": np.int64(12),
        "slope": math.nan,
        "inf": np.float32(np.inf),
        "flag": np.bool_(True),
        "cuts": np.array([0.3, np.nan]),
        "path": Path("a/b.png"),
        "when": pd.Timestamp("2025-01-01", tz="UTC"),
        "missing": pd.NA,
        3: (1, 2),
    }
    converted = to_jsonable(payload)
    assert converted == {
        "auc": 0.75,
        "n": 12,
        "slope": None,
        "inf": None,
        "flag": True,
        "cuts": [0.3, None],
        "path": "a/b.png",
        "when": "2025-01-01T00:00:00+00:00",
        "missing": None,
        "3": [1, 2],
    }
    assert type(converted["n"]) is int
    json.dumps(converted, allow_nan=False)


def test_write_report(tmp_path: Path, slice_: dict[str, np.ndarray]) -> None:
    report_dir = tmp_path / "report"
    y = slice_["y"]
    scores = {"model": slice_["model"], "rules": slice_["points"], "truth": slice_["truth"]}
    plots = {
        "Reliability": reliability_plot(
            y, {"model": slice_["model"]}, report_dir / "reliability.png"
        ),
        "Gains & lift": gains_lift_plot(y, scores, report_dir / "gains lift.png"),
        # A plot outside the report folder gets copied in.
        "Elsewhere": gains_lift_plot(y, scores, tmp_path / "elsewhere.png"),
    }
    metrics = {
        "test": evaluate_scores(y, scores, probabilistic=["model", "truth"]),
        "n_censored": np.int64(42),
        "calibrator": "isotonic <sigmoid lost>",
        "undefined": math.nan,
        "tiers_test": [{"tier": "A", "n": 3}, {"tier": "B", "n": 5}],
        "leakage_flagged": ["days_to_sql"],
        "nested": {"a": {"b": [1, 2]}, "c": 1},
    }
    tiers = tier_table(y, slice_["tiers"], expected=slice_["model"])
    index = write_report(
        report_dir,
        title="Lead score <evaluation> & co",
        metrics=metrics,
        tables={"Tiers": tiers, "Comparison": comparison_table(metrics["test"])},
        plots=plots,
        notes=["Leakage warning: <script>alert(1)</script> has AUC 0.99 alone"],
    )
    assert index == report_dir / "index.html"
    page = index.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert 'src="reliability.png"' in page
    assert 'src="gains%20lift.png"' in page
    assert 'src="plots/elsewhere.png"' in page
    assert (report_dir / "plots" / "elsewhere.png").read_bytes()[:8] == PNG_MAGIC
    for source in ("reliability.png", "gains%20lift.png", "plots/elsewhere.png"):
        assert f'src="{source}"' in page
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "Lead score &lt;evaluation&gt; &amp; co" in page
    assert "isotonic &lt;sigmoid lost&gt;" in page
    assert "<th>model</th><th>rules</th><th>truth</th>" in page
    assert "precision_at_10pct" in page
    assert "calibration_slope" in page
    assert "<th>metric</th>" in page  # the comparison table keeps its index
    assert '<td class="text">lift_at_20pct</td>' in page
    assert "<th>tier</th><th>n</th></tr>" in page  # a list of records is a table
    assert "<p>days_to_sql</p>" in page
    assert "&quot;b&quot;" in page  # anything else is shown as JSON

    saved = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved["undefined"] is None
    assert saved["n_censored"] == 42
    assert saved["test"]["model"]["roc_auc"] == pytest.approx(metrics["test"]["model"]["roc_auc"])
    assert set(saved["test"]) == {"model", "rules", "truth"}
    assert "NaN" not in (report_dir / "metrics.json").read_text(encoding="utf-8")
    assert not list(report_dir.glob(".*.tmp"))


def test_write_report_rejects_a_missing_plot(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.png"):
        write_report(
            tmp_path, title="t", metrics={}, tables={}, plots={"x": tmp_path / "nothing.png"}
        )
