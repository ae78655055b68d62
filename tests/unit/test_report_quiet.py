"""The SHAP summary of a model with features that have no value (an export without events
or accounts): drawn without numpy's "All-NaN slice" warning, unused empty features left out."""

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from training.report import shap_summary_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_features_without_values_draw_no_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 300
    features = pd.DataFrame(
        {
            "company_size": rng.integers(1, 5000, n).astype(float),
            "account_other_leads": np.full(n, np.nan),  # no accounts: unused, all missing
            "days_since_last_event": np.full(n, np.nan),  # no events, yet used (NaN branch)
            "country": pd.array(rng.choice(["US", "DE"], n), dtype="str"),
        }
    )
    values = rng.normal(size=(n, 4))
    values[:, 1] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = shap_summary_plot(values, features, tmp_path / "shap.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert plt.get_fignums() == []
    # nothing but empty unused features: they are drawn rather than an empty plot
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = features[["account_other_leads"]]
        path = shap_summary_plot(np.zeros((n, 1)), empty, tmp_path / "empty.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_a_constant_model_draws_points_against_probability_without_warning(
    tmp_path: Path,
) -> None:
    from training.report import points_vs_probability_plot

    rng = np.random.default_rng(3)
    points = rng.integers(0, 100, 200).astype(float)
    y = rng.integers(0, 2, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = points_vs_probability_plot(points, np.full(200, 0.3), y, tmp_path / "p.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
