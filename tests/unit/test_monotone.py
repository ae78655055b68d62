"""Hand-raisers never count against a lead: the booster's monotone constraints.

`training.increasing_events` names event types whose counts may only raise the score and the
days since whose last event may only lower it. The check is behavioural, on data made so that
an unconstrained booster does learn the wrong direction for some rows.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from common.config import ConfigError, build_config
from training.model import booster_params, fit_booster, monotone_directions
from training.scorer import ModelSpec

NAMES = (
    "n_demo_request_7d",
    "n_demo_request_all",
    "n_demo_request_all_at_mql",
    "days_since_demo_request",
    "n_email_open_90d",
    "days_since_email_open",
    "n_demo_request_allx",
    "custom_n_demo_request_7d",
)


def test_directions_cover_counts_at_every_window_and_the_days_since() -> None:
    assert monotone_directions(NAMES, ["demo_request"]) == {
        "n_demo_request_7d": 1,
        "n_demo_request_all": 1,
        "n_demo_request_all_at_mql": 1,
        "days_since_demo_request": -1,
    }
    assert monotone_directions(NAMES, []) == {}


def test_the_default_is_the_hand_raisers_and_unknown_types_are_named() -> None:
    training = build_config({}).training
    assert set(training.increasing_events) == {
        "demo_request",
        "trial_signup",
        "form_submission",
        "email_reply",
        "webinar_attendance",
    }
    with pytest.raises(ConfigError, match=r"increasing_events.*'demo_requests'"):
        build_config({"training": {"increasing_events": ["demo_requests"]}})


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Demo requests help, except that three or more lower the odds: a pattern the booster
    learns unconstrained. Days since the last one do not matter; the other column does."""
    rng = np.random.default_rng(seed)
    demos = rng.poisson(1.0, n).astype(np.float64)
    other = rng.normal(size=n)
    logit = -1.0 + 0.8 * np.minimum(demos, 2) - 1.5 * (demos >= 3) + other
    since = np.where(demos > 0, rng.uniform(0, 60, n), np.nan)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return np.column_stack([demos, since, other]), y


def _fitted(monotone: dict[str, int] | None) -> tuple[ModelSpec, lgb.Booster]:
    spec = ModelSpec(
        ("n_demo_request_all", "days_since_demo_request", "other"), ("numeric",) * 3, {}
    )
    train, valid = _rows(20_000, 1), _rows(5_000, 2)
    params = booster_params({"num_leaves": 7, "learning_rate": 0.1}, seed=1, num_threads=1)
    return spec, fit_booster(train, valid, spec, params, 200, 20, monotone=monotone)


def _lowered(booster: lgb.Booster) -> float:
    """The largest drop in the raw score from one more demo request, today."""
    rows, _ = _rows(2_000, 3)
    more = rows.copy()
    more[:, 0] += 1
    more[:, 1] = 0.0
    drop = booster.predict(rows, raw_score=True) - booster.predict(more, raw_score=True)
    return float(np.max(drop))


def test_the_constrained_booster_never_lowers_the_score_for_one_more() -> None:
    spec, free = _fitted(None)
    assert _lowered(free) > 0.5  # unconstrained, the third demo request counts against
    spec, bound = _fitted(monotone_directions(spec.names, ["demo_request"]))
    assert _lowered(bound) <= 1e-9
    assert "monotone_constraints" in bound.model_to_string()
