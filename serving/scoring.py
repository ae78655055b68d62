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

from features.contract import EVENT_TYPES
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
from training.rules import explain_values, half_lives

_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TYPE_WORDS = {t: t.replace("_", " ") for t in EVENT_TYPES}
_FIT_WORDS = {
    "seniority": "seniority",
    "job_function": "function",
    "industry": "industry",
    "country": "country",
    "region": "region",
    "lead_source": "lead source",
}


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


_ACCOUNT_WORDS: Final = {
    "leads": ("other lead", "other leads"),
    "mqls": ("other MQL", "other MQLs"),
    "sqls": ("other lead already an SQL", "other leads already SQLs"),
}


def _account_words(what: str, value: Any) -> str:
    """'2 other leads already SQLs at the account', '40 events by colleagues ... 30 days'."""
    one = float(value) == 1.0
    if what in _ACCOUNT_WORDS:
        singular, plural = _ACCOUNT_WORDS[what]
        return f"{_number(value)} {singular if one else plural} at the account"
    window = what.removeprefix("events_")
    when = "in total" if window == "all" else f"in the last {window.removesuffix('d')} days"
    return f"{_number(value)} {'event' if one else 'events'} by colleagues at the account {when}"


def describe(feature: str, value: Any) -> str:
    """What a feature's value says, in words ('2 demo requests in the last 30 days')."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if feature in _FIT_WORDS:
        return f"no {_FIT_WORDS[feature]} known" if missing else f"{_FIT_WORDS[feature]}: {value}"
    if feature == "company_size":
        return "company size unknown" if missing else f"{_number(value)} employees"
    if feature == "email_free":
        if missing:
            return "no email address"
        return "a free-mail address" if value else "a company email address"
    if feature.startswith("n_") and feature[2:].rsplit("_", 1)[0] in _TYPE_WORDS | {"events": 0}:
        kind, window = feature[2:].rsplit("_", 1)
        what = "events" if kind == "events" else _TYPE_WORDS[kind]
        when = "in total" if window == "all" else f"in the last {window.removesuffix('d')} days"
        return f"{_number(value)} × {what} {when}"
    if feature.startswith("days_since_"):
        what = feature.removeprefix("days_since_")
        label = {"last_event": "any activity", "created": "creation", "mql": "becoming an MQL"}
        what = label.get(what, _TYPE_WORDS.get(what, what))
        return f"no {what} yet" if missing else f"{_number(value)} days since {what}"
    if feature.startswith("active_days_"):
        window = feature.removeprefix("active_days_")
        when = "in total" if window == "all" else f"in the last {window.removesuffix('d')} days"
        return f"active on {_number(value)} days {when}"
    if feature.startswith("trend_"):
        if missing:
            return "no activity trend"
        return (
            "activity rising"
            if value > 0.1
            else "activity falling"
            if value < -0.1
            else ("activity steady")
        )
    if feature.startswith("account_"):
        if missing:
            return "no account known"
        return _account_words(feature.removeprefix("account_other_"), value)
    shown = "missing" if missing else (_number(value) if isinstance(value, int | float) else value)
    return f"{feature.removeprefix('custom_').replace('_', ' ')}: {shown}"


def sentence(feature: str, value: Any, contribution: float) -> str:
    verb = "raises" if contribution > 0 else "lowers"
    return f"{describe(feature, value)} {verb} the chance"


def reasons(
    names: tuple[str, ...], values: Mapping[str, Any], contributions: np.ndarray, top: int
) -> tuple[list[Reason], list[Reason]]:
    """The strongest positive and negative contributions, strongest first."""
    order = np.argsort(-contributions, kind="stable")

    def reason(i: int) -> Reason:
        value = values.get(names[i])
        shown = None if isinstance(value, float) and math.isnan(value) else value
        return Reason(
            feature=names[i],
            value=shown,
            contribution=float(contributions[i]),
            sentence=sentence(names[i], value, float(contributions[i])),
        )

    positive = [reason(int(i)) for i in order[:top] if contributions[i] > 0]
    negative = [reason(int(i)) for i in order[::-1][:top] if contributions[i] < 0]
    return positive, negative


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
    profile = request.lead.model_dump()
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
        scorer.spec.names, features.values, contributions[:-1], model.config.serve.reasons
    )
    return ScoreOut(
        lead_id=request.lead.lead_id,
        probability=probability,
        tier=str(scorer.tiers.assign(np.array([probability]))[0]),
        points=rule_points(model, features),
        reasons_positive=positive,
        reasons_negative=negative,
        unknown_event_types=features.unknown_event_types,
        account=account_out(features, book),
        model=ModelRef(name=model.name, version=model.version),
        as_of=as_of_time(features.cutoff_ms),
    )


def warm_up(model: LoadedModel) -> None:
    """Score one made-up lead so that caches (title parser, category plans) are built before
    the first real request arrives."""
    request = ScoreRequest.model_validate(
        {
            "lead": {"lead_id": "warm-up", "created_at": "2026-01-01T00:00:00Z"},
            "events": [{"event_type": "page_view", "occurred_at": "2026-01-02T00:00:00Z"}],
            "as_of": "2026-01-03T00:00:00Z",
        }
    )
    score(model, request)
