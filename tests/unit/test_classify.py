"""`classify` (the event type of a connector row by the first matching rule) against the rules
applied row by row."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from features.presets.common import Rule, classify

RULES = (
    Rule(field="subject", pattern="^email:", event_type="email_open"),
    Rule(field="type", pattern="call", event_type="drop"),
    Rule(field="subject", pattern="demo|trial", event_type="demo_request"),
    Rule(field="url", pattern="/pricing", event_type="pricing_page_view"),
    Rule(field="type", pattern=".", event_type="form_submission"),
)


def by_row(values: dict[str, pd.Series], rules: tuple[Rule, ...], default: str) -> list[str]:
    """The definition: each row's first rule whose field's text matches (missing is "")."""
    out = []
    for row in range(len(next(iter(values.values())))):
        kind = default
        for rule in rules:
            if rule.field not in values:
                continue
            value = values[rule.field].iloc[row]
            text = "" if pd.isna(value) else str(value)
            if re.search(rule.pattern, text, flags=re.IGNORECASE):
                kind = rule.event_type
                break
        out.append(kind)
    return out


def test_classify_types_each_row_by_its_first_matching_rule() -> None:
    rng = np.random.default_rng(3)
    subjects = ["Email: Spring", "EMAIL: x", "Demo call", "free Trial", "note", None, "call me"]
    types = ["Call", "Email", "Meeting", None, "other"]
    urls = ["https://a.io/pricing", "https://a.io/", None]
    for n in (0, 1, 400):
        values = {
            "subject": pd.Series(rng.choice(np.array(subjects, dtype=object), n), dtype="str"),
            "type": pd.Series(rng.choice(np.array(types, dtype=object), n)).astype("category"),
            "url": pd.Series(rng.choice(np.array(urls, dtype=object), n), index=range(5, 5 + n)),
        }
        values["url"].index = values["subject"].index
        got = classify(values, RULES, "other")
        assert got.index.equals(values["subject"].index)
        assert got.astype(object).tolist() == by_row(values, RULES, "other")
        only_type = {"type": values["type"]}
        assert classify(only_type, RULES, "other").astype(object).tolist() == by_row(
            only_type, RULES, "other"
        )


def test_many_distinct_combinations_are_typed_as_few_are() -> None:
    """Combinations too many to mark in a table (thousands of subjects) are hashed instead: the
    same types."""
    rng = np.random.default_rng(5)
    n = 20_000
    picks = ["Email: x", "demo", None, "note"]
    subject = [
        f"{rng.choice(np.array(picks, dtype=object))} {i}" for i in rng.integers(0, 15_000, n)
    ]
    values = {
        "subject": pd.Series(subject, dtype="str"),
        "type": pd.Series(rng.choice(np.array(["Call", None, "x"], dtype=object), n)),
        "url": pd.Series(rng.choice(np.array(["/pricing", None, "/"], dtype=object), n)),
    }
    got = classify(values, RULES, "other")
    assert got.astype(object).tolist() == by_row(values, RULES, "other")
