"""Reasons a salesperson reads: golden sentences, and which reasons an answer shows."""

# ruff: noqa: E501  (the golden table reads best one sentence a line)

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from common.config import build_config
from features.pipeline import feature_spec
from features.spec import feature_meanings
from training.reasons import ReasonPlan, choose, sentence

MEANINGS = feature_meanings(build_config({}))
NAN = math.nan

#: (feature, value as the model saw it, value as the lead posted it, contribution, sentence)
GOLDEN: list[tuple[str, Any, Any, float, str]] = [
    ("seniority", "c_level", None, 0.4, "seniority: C-level raises the chance"),
    ("seniority", "vp", None, 0.4, "seniority: VP raises the chance"),
    ("seniority", "unknown", None, -0.1, "seniority not recognised from the title lowers the chance"),
    ("seniority", None, None, -0.1, "no seniority known lowers the chance"),
    ("job_function", "hr", None, -0.2, "function: HR lowers the chance"),
    ("industry", "software", None, 0.3, "industry: Software raises the chance"),
    ("industry", "it services", None, 0.3, "industry: IT services raises the chance"),
    ("country", "united states", None, 0.1, "country: United States raises the chance"),
    ("country", "de", None, 0.1, "country: DE raises the chance"),
    ("region", "uk_ireland", None, 0.1, "region: UK and Ireland raises the chance"),
    ("lead_source", "paid search", None, -0.1, "lead source: Paid search lowers the chance"),
    ("company_size", 125.5, "51-200", 0.2, "51–200 employees raises the chance"),
    ("company_size", 125.5, None, 0.2, "51–200 employees raises the chance"),
    ("company_size", 10000.0, "10,000+", 0.2, "10,000+ employees raises the chance"),
    ("company_size", 350.0, None, 0.2, "350 employees raises the chance"),
    ("company_size", 1.0, None, -0.2, "1 employee lowers the chance"),
    ("company_size", NAN, None, -0.2, "company size unknown lowers the chance"),
    ("email_free", 1.0, None, -0.3, "a free-mail address lowers the chance"),
    ("email_free", 0.0, None, 0.3, "a company email address raises the chance"),
    ("days_since_demo_request", 3.4, None, 0.9, "demo requested 3 days ago raises the chance"),
    ("days_since_demo_request", 0.2, None, 0.9, "demo requested today raises the chance"),
    ("days_since_demo_request", 1.5, None, 0.9, "demo requested yesterday raises the chance"),
    ("days_since_demo_request", 195.5, None, -0.2, "demo requested 6 months ago lowers the chance"),
    ("days_since_demo_request", NAN, None, -0.4, "no demo requests yet lowers the chance"),
    ("days_since_pricing_page_view", 12.0, None, 0.3, "pricing page viewed 12 days ago raises the chance"),
    ("days_since_email_unsubscribe", 10.0, None, -0.5, "unsubscribed 10 days ago lowers the chance"),
    ("days_since_last_event", 2.9, None, 0.1, "last active 2 days ago raises the chance"),
    ("days_since_last_event", NAN, None, -0.5, "no activity yet lowers the chance"),
    ("days_since_mql", 40.0, None, -0.3, "became an MQL 40 days ago lowers the chance"),
    ("days_since_created", 800.0, None, -0.1, "created 2 years ago lowers the chance"),
    ("n_email_open_30d", 0.0, None, -0.2, "no email opens in the last 30 days lowers the chance"),
    ("n_email_open_30d", 1.0, None, 0.2, "1 email open in the last 30 days raises the chance"),
    ("n_email_open_all", 5.0, None, 0.2, "5 email opens so far raises the chance"),
    ("n_email_open_all", 0.0, None, -0.2, "no email opens yet lowers the chance"),
    ("n_demo_request_30d_at_mql", 2.0, None, 0.5,
     "2 demo requests in the 30 days before becoming an MQL raises the chance"),
    ("n_email_open_7d_at_mql", 0.0, None, -0.1,
     "no email opens in the 7 days before becoming an MQL lowers the chance"),
    ("n_demo_request_all_at_mql", 1.0, None, 0.6,
     "1 demo request before becoming an MQL raises the chance"),
    ("n_demo_request_all_at_mql", 0.0, None, -0.6,
     "no demo requests before becoming an MQL lowers the chance"),
    ("active_days_all_at_mql", 0.0, None, -0.1,
     "not active before becoming an MQL lowers the chance"),
    ("account_other_sqls_at_mql", 2.0, None, 0.8,
     "2 other leads at the account already SQLs before this lead became an MQL raises the chance"),
    ("account_other_sqls_at_mql", NAN, None, -0.2, "no account known lowers the chance"),
    ("days_since_created_at_mql", 0.3, None, 0.4,
     "became an MQL the day it was created raises the chance"),
    ("days_since_created_at_mql", 12.5, None, 0.2,
     "became an MQL 12 days after it was created raises the chance"),
    ("days_since_created_at_mql", 200.0, None, -0.3,
     "became an MQL 7 months after it was created lowers the chance"),
    ("days_since_created_at_mql", NAN, None, -0.1, "not an MQL yet lowers the chance"),
    ("n_demo_request_7d", 2.0, None, 1.1, "2 demo requests in the last 7 days raises the chance"),
    ("n_webinar_attendance_90d", 1.0, None, 0.3, "1 webinar attended in the last 90 days raises the chance"),
    ("n_email_bounce_90d", 1.0, None, -0.3, "1 bounced email in the last 90 days lowers the chance"),
    ("n_events_30d", 0.0, None, -0.4, "no activity in the last 30 days lowers the chance"),
    ("n_events_30d", 14.0, None, 0.4, "14 activities in the last 30 days raises the chance"),
    ("n_events_all", 0.0, None, -0.4, "no activity yet lowers the chance"),
    ("active_days_30d", 1.0, None, 0.1, "active on 1 day in the last 30 days raises the chance"),
    ("active_days_90d", 0.0, None, -0.1, "not active in the last 90 days lowers the chance"),
    ("active_days_all", 6.0, None, 0.1, "active on 6 days so far raises the chance"),
    ("trend_30d_vs_90d", 0.7, None, 0.2, "activity rising over the last 30 days raises the chance"),
    ("trend_30d_vs_90d", -0.7, None, -0.2, "activity falling over the last 30 days lowers the chance"),
    ("account_other_leads", NAN, None, -0.2, "no account known lowers the chance"),
    ("account_other_leads", 0.0, None, -0.2, "no other leads at the account lowers the chance"),
    ("account_other_leads", 1.0, None, 0.2, "1 other lead at the account raises the chance"),
    ("account_other_mqls", 3.0, None, 0.2, "3 other MQLs at the account raises the chance"),
    ("account_other_sqls", 1.0, None, 0.6, "1 other lead at the account already an SQL raises the chance"),
    ("account_other_sqls", 0.0, None, -0.1, "no other lead at the account is an SQL yet lowers the chance"),
    ("account_other_events_30d", 40.0, None, 0.3, "40 activities by colleagues in the last 30 days raises the chance"),
    ("account_other_events_90d", 0.0, None, -0.3, "no activity by colleagues in the last 90 days lowers the chance"),
]  # fmt: skip


@pytest.mark.parametrize(("feature", "value", "posted", "contribution", "expected"), GOLDEN)
def test_golden_sentences(
    feature: str, value: Any, posted: Any, contribution: float, expected: str
) -> None:
    assert sentence(MEANINGS[feature], value, contribution, posted) == expected


def test_no_sentence_has_a_fraction_or_a_raw_code() -> None:
    """Fractional days or people, snake_case codes and the old '×' never reach a sentence."""
    for _, _, _, _, text in GOLDEN:
        assert "×" not in text and "_" not in text
        assert not any(ch.isdigit() and text[i + 1 : i + 2] == "." for i, ch in enumerate(text))


def test_meanings_cover_every_feature_in_order() -> None:
    """The meanings are listed exactly as the pipeline builds features (custom fields too)."""
    for config in (
        build_config({}),
        build_config(
            {
                "features": {"windows_days": [14, 60]},
                "custom_fields": [{"column": "Lead Origin", "kind": "fit"}],
            }
        ),
    ):
        for flat in (False, True):
            assert tuple(feature_meanings(config, flat)) == feature_spec(config, flat).names


def test_custom_fields_read_their_column_name() -> None:
    config = build_config(
        {
            "custom_fields": [
                {"column": "Lead Origin", "kind": "fit"},
                {"column": "Total Visits", "kind": "engagement"},
            ]
        }
    )
    meanings = feature_meanings(config, flat=True)
    assert sentence(meanings["custom_lead_origin"], "api", 0.1) == (
        "Lead Origin: API raises the chance"
    )
    assert sentence(meanings["custom_total_visits"], 4.0, 0.1) == (
        "Total Visits: 4 raises the chance"
    )


def _choose(names: tuple[str, ...], values: list[float], contributions: list[float], top: int):  # type: ignore[no-untyped-def]
    plan = ReasonPlan.of(names, MEANINGS)
    chosen = choose(plan, np.array([values]), np.array([contributions]), top)
    return (
        [names[i] for i in chosen.raising[0] if i >= 0],
        [names[i] for i in chosen.lowering[0] if i >= 0],
    )


def test_top_k_that_raise_and_top_k_that_lower() -> None:
    names = ("n_demo_request_7d", "n_page_view_30d", "email_free", "company_size", "seniority")
    raising, lowering = _choose(names, [1, 3, 1, 50, 0], [0.9, 0.5, -0.8, -0.1, 0.7], top=2)
    assert raising == ["n_demo_request_7d", "seniority"]
    assert lowering == ["email_free", "company_size"]


def test_no_account_known_is_said_once() -> None:
    """Every account feature of a lead with no account says 'no account known': once, the
    strongest, and the next reason takes the freed place."""
    names = ("account_other_leads", "account_other_sqls", "account_other_events_30d", "email_free")
    raising, lowering = _choose(names, [NAN, NAN, NAN, 1.0], [-0.2, -0.5, -0.3, -0.1], top=3)
    assert raising == []
    assert lowering == ["account_other_sqls", "email_free"]


def test_absence_only_when_it_lowers_the_chance() -> None:
    """'no email opens' raising the chance is left out; an unwelcome event's absence (no
    unsubscribes) may raise it; a zero of a welcome count that lowers it stays."""
    names = ("n_email_open_all", "n_email_unsubscribe_all", "n_page_view_30d", "n_events_30d")
    raising, lowering = _choose(names, [0, 0, 0, 2], [0.4, 0.3, -0.2, 0.1], top=3)
    assert raising == ["n_email_unsubscribe_all", "n_events_30d"]
    assert lowering == ["n_page_view_30d"]


def test_shared_absence_reads_once_in_the_answer() -> None:
    """'no activity yet' from three features is shown once; windowed zeros stay distinct."""
    names = ("n_events_all", "days_since_last_event", "active_days_all", "n_events_30d")
    _, lowering = _choose(names, [0, NAN, 0, 0], [-0.1, -0.6, -0.2, -0.3], top=3)
    assert lowering == ["days_since_last_event", "n_events_30d"]
    texts = [sentence(MEANINGS[n], v, -1) for n, v in (("days_since_last_event", NAN),
                                                        ("n_events_30d", 0.0))]  # fmt: skip
    assert texts == [
        "no activity yet lowers the chance",
        "no activity in the last 30 days lowers the chance",
    ]


def test_the_api_keeps_the_range_a_lead_posted() -> None:
    from serving.scoring import posted_values

    assert posted_values({"company_size": "51-200"}) == {"company_size": "51-200"}
    assert posted_values({"company_size": 350}) == {}
    meaning = MEANINGS["company_size"]
    posted = posted_values({"company_size": "1,001 - 5,000"})["company_size"]
    assert sentence(meaning, 3000.5, 0.2, posted) == "1,001–5,000 employees raises the chance"


def test_rows_are_chosen_alike_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch chosen block by block gives each row what it gets alone: absences, shared
    absences, zeros and ties included."""
    import training.reasons as reasons

    names = (
        "n_events_all",
        "days_since_last_event",
        "active_days_all",
        "n_events_30d",
        "account_other_leads",
        "account_other_sqls",
        "email_free",
        "n_email_unsubscribe_all",
    )
    plan = ReasonPlan.of(names, MEANINGS)
    rng = np.random.default_rng(11)
    values = rng.choice([0.0, 1.0, 3.0, NAN], size=(101, len(names)))
    contributions = rng.choice([-0.4, -0.1, 0.0, 0.1, 0.4], size=(101, len(names)))
    contributions += (
        rng.normal(scale=1e-3, size=contributions.shape) * (rng.random(101) < 0.5)[:, None]
    )
    alone = [choose(plan, values[[i]], contributions[[i]], 3) for i in range(101)]
    monkeypatch.setattr(reasons, "CHOOSE_ROWS", 8)  # 13 blocks, the last one short
    for order in ("C", "F"):
        blocked = choose(plan, np.asarray(values, order=order), contributions, 3)
        assert blocked.raising.tolist() == [c.raising[0].tolist() for c in alone]
        assert blocked.lowering.tolist() == [c.lowering[0].tolist() for c in alone]
