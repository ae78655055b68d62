"""Scoring one lead: features from its raw events, the calibrated probability, the tier, the
rules' points, and the reasons (SHAP contributions in log-odds, with a plain sentence each).

Pure functions of (loaded model, request); the API and tests call them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from common.config import Config
from features.rows import covered_weeks
from serving.accounts import AccountBook
from serving.lead import LeadFeatures, lead_features, model_row, rule_values
from serving.model_store import LoadedModel
from serving.schemas import (
    AccountHistoryOut,
    AccountOut,
    ModelRef,
    Points,
    Reason,
    ScoreOut,
    ScoreRequest,
)
from training.reasons import ReasonPlan, choose, sentence
from training.rules import explain_values, half_lives

_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)


def reasons(
    plan: ReasonPlan,
    values: Mapping[str, Any],
    row: np.ndarray,
    contributions: np.ndarray,
    top: int,
    posted: Mapping[str, Any] | None = None,
) -> tuple[list[Reason], list[Reason]]:
    """The `top` strongest contributions that raise the chance and the `top` that lower it,
    strongest first, chosen and worded by `training.reasons` as the batch job does.

    `row` is the (1, features) float row the booster saw; `posted`, values as the lead gave
    them (a company size range), for the wording.
    """
    chosen = choose(plan, row, contributions[None, :], top)
    shown_as = posted or {}

    def reason(i: int) -> Reason:
        name = plan.names[i]
        value = values.get(name)
        shown = None if isinstance(value, float) and math.isnan(value) else value
        return Reason(
            feature=name,
            value=shown,
            contribution=float(contributions[i]),
            sentence=sentence(plan.meanings[i], value, float(contributions[i]), shown_as.get(name)),
        )

    positive = [reason(int(i)) for i in chosen.raising[0] if i >= 0]
    negative = [reason(int(i)) for i in chosen.lowering[0] if i >= 0]
    return positive, negative


def posted_values(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The values a lead posted that its wording keeps as given: a company size range."""
    size = lead.get("company_size")
    return {"company_size": size} if isinstance(size, str) else {}


def as_of_time(cutoff_ms: int) -> datetime:
    """The cutoff the features used, as the answer's `as_of` (UTC, to the millisecond)."""
    return _EPOCH_UTC + timedelta(milliseconds=cutoff_ms)


def rule_points(model: LoadedModel, features: LeadFeatures) -> Points:
    """The rules' points for one lead, from the same fit values and decayed counts."""
    explained = explain_values(rule_values(features), model.rules)
    return Points(
        total=float(explained["total"]),
        breakdown={k: float(v) for k, v in explained["breakdown"].items()},
        thresholds_passed=list(explained["thresholds"]),
    )


def account_out(features: LeadFeatures, book: AccountBook | None) -> AccountOut | None:
    """Where the account features came from; None for a lead without an account."""
    if features.account_id is None:
        return None
    if book is None:
        return AccountOut(known=False)
    other = features.values.get("account_other_leads")
    return AccountOut(
        known=True,
        other_leads=None if not isinstance(other, float) or math.isnan(other) else int(other),
        history_as_of=book.as_of,
    )


def account_history(book: AccountBook | None) -> AccountHistoryOut | None:
    """What `/v1/model` says of the account history it holds."""
    if book is None:
        return None
    return AccountHistoryOut(
        source="database" if "://" in book.source else "files",
        as_of=book.as_of,
        accounts=book.accounts,
        leads=book.leads,
        events=book.events,
    )


def score(model: LoadedModel, request: ScoreRequest) -> ScoreOut:
    """Score one lead as of `request.as_of` (default now)."""
    as_of = datetime.now(UTC) if request.as_of is None else request.as_of
    # only what was posted: a field may come under its export name instead (serving.lead)
    profile = request.lead.model_dump(exclude_unset=True)
    events = [e.model_dump() for e in request.events]
    book = model.accounts
    features = lead_features(
        profile,
        events,
        as_of,
        model.config,
        half_lives(model.rules),
        accounts=None if book is None else book.context,
    )
    scorer = model.scorer
    row = model_row(features.values, scorer.spec)
    # one row: OpenMP threads only add start-up cost (measured p50 10.5 ms against 0.16 ms
    # on one thread on the loaded 2-core machine, bench/serve.py)
    contributions = np.asarray(
        scorer.booster.predict(row, pred_contrib=True, num_threads=1), dtype=np.float64
    )[0]
    probability = float(scorer.calibrator.apply(np.array([contributions.sum()]))[0])
    positive, negative = reasons(
        model.reason_plan,
        features.values,
        row,
        contributions[:-1],
        model.config.serve.reasons,
        posted_values(profile),
    )
    return ScoreOut(
        lead_id=features.lead_id if request.lead.lead_id is None else request.lead.lead_id,
        probability=probability,
        tier=str(scorer.tiers.assign(np.array([probability]))[0]),
        points=rule_points(model, features),
        reasons_positive=positive,
        reasons_negative=negative,
        unknown_event_types=features.unknown_event_types,
        account=account_out(features, book),
        model=ModelRef(name=model.name, version=model.version),
        as_of=as_of_time(features.cutoff_ms),
        age_days=_age_days(features.values),
        note=coverage_note(_age_days(features.values), model.config),
    )


def _age_days(values: Mapping[str, Any]) -> float | None:
    age = values.get("days_since_mql")
    return None if age is None or not math.isfinite(float(age)) else float(age)


def coverage_note(age_days: float | None, config: Config) -> str | None:
    """A note when a lead of this age is outside what a model trained with `config` covers:
    not an MQL at its as-of time, or older than its snapshot policy's oldest cutoff."""
    if config.source.flat:
        return None
    if age_days is None:
        return (
            "the lead has no mql_at before as_of: the model is trained on MQLs, so this score "
            "treats it as one"
        )
    oldest = 7 * covered_weeks(config.snapshot_policy, config.horizon_days) + 7
    if age_days >= min(oldest, config.horizon_days):
        return (
            f"the lead's MQL is {age_days:.0f} days old, older than any lead the model was "
            f"trained on (horizon {config.horizon_days} days, snapshot_policy "
            f"{config.snapshot_policy.model_dump()}): its score is an extrapolation"
        )
    return None


def warm_up(model: LoadedModel) -> None:
    """Score one made-up lead so that caches (title parser, category plans) are built before
    the first real request arrives. It posts no custom field: every model must score a lead
    whose optional fields are all unknown."""
    request = ScoreRequest.model_validate(
        {
            "lead": {"lead_id": "warm-up", "created_at": "2026-01-01T00:00:00Z"},
            "events": [{"event_type": "page_view", "occurred_at": "2026-01-02T00:00:00Z"}],
            "as_of": "2026-01-03T00:00:00Z",
        }
    )
    score(model, request)
