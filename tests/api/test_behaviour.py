"""Directional behaviour: more intent engagement never lowers a lead's score.

The generator's truth (`features.synthetic.truth.engagement_logit`) is monotone
non-decreasing in a few hand-raising signals: demo requests, trial signups, form submissions and
email replies (all time), webinar attendance (90 days), and a pricing-page view in the last 7
days (it adds to the 7-, 30- and 90-day counts alike, so the stalled-deal terms do not move).
Other event types are not monotone in the truth (many opens with no click mark a tire-kicker)
and are not checked.

The default model is constrained to rise with the counts of these hand-raisers and fall with
the days since the last one (`training.increasing_events`), so the check holds by construction
for them; it guards the constraint's wiring through training, the saved model and the scorer.
Holding the rest of a row fixed, one more such event just before the cutoff (its counts in
every window plus one, its days-since at most two hours) must never lower the probability.
"""

from __future__ import annotations

import numpy as np
import pytest

from common.config import build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from serving.model_store import LoadedModel, load_model
from training.scorer import feature_matrix

pytestmark = pytest.mark.api

WINDOWS = ("7d", "30d", "90d", "all")
HAND_RAISERS = (
    "demo_request",
    "trial_signup",
    "form_submission",
    "email_reply",
    "webinar_attendance",
)
#: Measured on the API tests' 12k-lead model (8,309 rows at sampled ages): rows whose score
#: one more such event lowers, and by how much at most. The hand-raisers above pass since the
#: model is constrained to rise with their counts and fall with the days since the last one
#: (`training.increasing_events`); before that, demo requests lowered 406 rows by up to
#: 0.0057, email replies 530 by 0.0005 and webinar attendance 1,181 by 0.0089. Pricing views
#: are not constrained: the truth's stalled-deal terms lower the score for older views. Strict:
#: a fix makes this pass, and then the mark must go.
KNOWN_VIOLATIONS = {
    "pricing_page_view": "38 of 8,309 rows lower, by up to 0.0074: a fresh view is pulled down "
    "by the stalled-deal penalty the model learns on 30- and 90-day pricing counts",
}


@pytest.fixture(scope="module")
def model(registry: dict[str, str]) -> LoadedModel:
    return load_model("models:/leadscore@champion", registry["tracking"])


@pytest.fixture(scope="module")
def matrix(registry: dict[str, str], model: LoadedModel) -> np.ndarray:
    """The model's matrix for every MQL of the registry's snapshot at its MQL time."""
    source = build_config({"source": {"path": registry["snapshot"]}}).source
    config = model.config.model_copy(update={"source": source})
    rows, _ = build_training_set(read_snapshot(config), config)
    return feature_matrix(rows, model.scorer.spec)


def one_more(matrix: np.ndarray, names: tuple[str, ...], event_type: str) -> np.ndarray:
    """The same rows with one more `event_type` event two hours before the cutoff."""
    out = matrix.copy()
    for window in WINDOWS:
        j = names.index(f"n_{event_type}_{window}")
        out[:, j] = np.nan_to_num(out[:, j]) + 1
        at_mql = f"n_{event_type}_{window}_at_mql"
        if at_mql in names:  # a row at its mql_at: the event is before the MQL too
            k = names.index(at_mql)
            at_age_0 = matrix[:, names.index("days_since_mql")] == 0
            out[at_age_0, k] = np.nan_to_num(out[at_age_0, k]) + 1
    j = names.index(f"days_since_{event_type}")
    out[:, j] = np.fmin(np.nan_to_num(out[:, j], nan=np.inf), 2 / 24)
    return out


@pytest.mark.parametrize(
    "event_type",
    [
        pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=f"known: {why}"))
        if (why := KNOWN_VIOLATIONS.get(t))
        else t
        for t in (*HAND_RAISERS, "pricing_page_view")
    ],
)
def test_more_intent_engagement_never_lowers_the_score(
    model: LoadedModel, matrix: np.ndarray, event_type: str
) -> None:
    before = model.scorer.probability(matrix)
    after = model.scorer.probability(one_more(matrix, model.scorer.spec.names, event_type))
    lowered = np.flatnonzero(after < before)
    assert lowered.size == 0, (
        f"{lowered.size} of {len(before)} rows lowered, by up to "
        f"{float((before - after)[lowered].max()):.4f}"
    )


def test_the_check_moves_scores(model: LoadedModel, matrix: np.ndarray) -> None:
    """The perturbation is not a no-op: for some hand-raiser most rows' scores at mql_at go up.

    At mql_at, where the event comes before the MQL, the truth rises with it. At later ages it
    does not (the generator draws the outcome from what was known at mql_at), so a model that is
    right need not move there: the default model's after booster is kept only when what came
    after the MQL lowers the validation loss beyond chance (`training.train.fit_after`).
    """
    names = model.scorer.spec.names
    at_mql = matrix[:, names.index("days_since_mql")] == 0
    rows = matrix[at_mql]
    before = model.scorer.probability(rows)
    raised = {
        t: float(np.mean(model.scorer.probability(one_more(rows, names, t)) > before))
        for t in HAND_RAISERS
    }
    assert at_mql.sum() > 1000, int(at_mql.sum())
    assert max(raised.values()) > 0.5, raised


def test_the_perturbed_features_are_the_models(model: LoadedModel) -> None:
    """A renamed feature would make the check above fail loudly, not pass vacuously."""
    for event_type in (*HAND_RAISERS, "pricing_page_view"):
        for window in WINDOWS:
            assert f"n_{event_type}_{window}" in model.scorer.spec.names
        assert f"days_since_{event_type}" in model.scorer.spec.names


def test_the_checked_hand_raisers_are_the_constrained_ones(model: LoadedModel) -> None:
    """The model was trained with the default constraint, on exactly these event types."""
    assert set(model.config.training.increasing_events) == set(HAND_RAISERS)
