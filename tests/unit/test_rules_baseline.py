"""Rules for any export: points for custom fields, and points fitted over every field and event
type an export has (training/baseline.py), in YAML that training.rules reads back."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from common.config import ConfigError, CustomField
from features.decay import decayed_name
from training.baseline import fit_rules
from training.rules import explain_values, rules_from_yaml, rules_to_yaml, score_points

CUSTOM_YAML = """
name: custom
fit:
  custom:
    Lead Origin: {values: {Landing Page: 10, lead import: -5}, missing: -2}
    Do Not Email: {values: {"true": -8, "false": 1}}
    Total Visits: {bands: [[0, 0], [3, 5], [10, 12]], missing: -1}
thresholds: {mql: 10}
"""


def _inputs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "custom_lead_origin": pd.array(
                ["landing page", "lead import", None, "api"], dtype="str"
            ),
            "custom_do_not_email": [1.0, 0.0, np.nan, 0.0],
            "custom_total_visits": [4.0, 12.0, np.nan, 1.0],
        }
    )


def test_custom_field_points_in_bulk_and_one_at_a_time() -> None:
    rules = rules_from_yaml(CUSTOM_YAML)
    assert rules_from_yaml(rules_to_yaml(rules)) == rules
    points = score_points(_inputs(), rules)
    # landing page 10, do-not-email -8, 4 visits 5; lead import -5, false 1, 12 visits 12;
    # all missing -2 + 0 - 1; unlisted api 0, false 1, 1 visit 0
    assert points.total.tolist() == [7.0, 8.0, -3.0, 1.0]
    assert points.thresholds["mql"].tolist() == [False, False, False, False]
    for i, row in enumerate(_inputs().to_dict(orient="records")):
        values = {k: (None if v is pd.NA else v) for k, v in row.items()}
        assert explain_values(values, rules)["total"] == points.total[i]


def test_a_custom_rule_is_values_or_bands() -> None:
    with pytest.raises(ConfigError, match="not both"):
        rules_from_yaml("fit: {custom: {X: {values: {a: 1}, bands: [[0, 1]]}}}")


def _export(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows where a custom value, a numeric custom field and demo requests drive conversion."""
    rng = np.random.default_rng(seed)
    origin = rng.choice(["referral", "web form", "lead import"], n)
    visits = rng.gamma(2.0, 3.0, n)
    visits[rng.random(n) < 0.1] = np.nan
    demos = rng.poisson(0.3, n).astype(float)
    unsubscribes = rng.poisson(0.1, n).astype(float)
    logit = (
        -1.5
        + 1.2 * (origin == "referral")
        - 1.0 * (origin == "lead import")
        + 0.15 * np.nan_to_num(visits)
        + 1.0 * demos
        - 1.5 * unsubscribes
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    inputs = pd.DataFrame(
        {
            "seniority": pd.array(rng.choice(["vp", "individual"], n), dtype="str"),
            "company_size": np.full(n, np.nan),  # a field no row has gets no points
            "custom_lead_origin": pd.array(origin, dtype="str"),
            "custom_visits": visits,
            decayed_name("demo_request"): demos,
            decayed_name("email_unsubscribe"): unsubscribes,
        }
    )
    return inputs, labels


def test_fitted_points_follow_the_data_and_load_as_rules() -> None:
    inputs, labels = _export()
    custom = (
        CustomField(column="Lead Origin", kind="fit"),
        CustomField(column="Visits", kind="engagement"),
    )
    rules = fit_rules(inputs, labels, custom, ["demo_request", "email_unsubscribe"])
    origin = rules.fit.custom["Lead Origin"].values
    # the most common value is the 0 the others are measured from (and is left out)
    assert origin.get("referral", 0) > origin.get("web form", 0) > origin.get("lead import", 0)
    bands = rules.fit.custom["Visits"].bands
    assert bands[-1][1] > bands[0][1]  # more visits, more points
    assert rules.engagement["demo_request"].points > 0
    assert rules.negative.events["email_unsubscribe"].points < 0
    assert rules.fit.company_size is None
    assert list(rules.thresholds) == ["mql", "hot"]
    again = rules_from_yaml(rules_to_yaml(rules))
    assert again == rules
    total = score_points(inputs, again).total
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, total) > 0.75
    assert not any(math.isnan(v) for v in total)


def test_fitting_needs_both_outcomes() -> None:
    inputs, labels = _export(200)
    with pytest.raises(ValueError, match="both outcomes"):
        fit_rules(inputs, np.zeros_like(labels), (), [])
