"""A posted lead's field names and missing custom fields (`serving.lead`), against the reader.

A missing custom field is unknown, exactly as a missing cell is to the batch reader; a field
may be posted under its contract name or under the export's name for it (`mapping.leads`),
and two names of one field must agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from common.config import Config, ConfigError, build_config
from features.pipeline import build_features
from features.reader import snapshot_from_frames
from serving.lead import LeadError, export_names, lead_features
from serving.openapi import lead_properties
from serving.schemas import LeadIn

CUTOFF = pd.Timestamp("2025-03-20T00:00:00Z")
#: Custom fields of both kinds and every type; one mapped from an export name, two typed by
#: their kind's default (fit: categorical, engagement: numeric).
CONFIG: dict[str, Any] = {
    "mapping": {
        "leads": {
            "Lead ID": "lead_id",
            "Created": "created_at",
            "MQL Date": "mql_at",
            "Employees": "company_size",
            "Budget (USD)": "budget",
        },
        "values": {"Plan": {"ent": "Enterprise"}},
        "missing_values": ["", "select", "n/a"],
    },
    "custom_fields": [
        {"column": "Plan", "kind": "fit"},
        {"column": "budget", "kind": "fit", "type": "numeric"},
        {"column": "Partner", "kind": "fit", "type": "boolean"},
        {"column": "Last Activity", "kind": "engagement", "type": "categorical"},
        {"column": "Web Visits", "kind": "engagement"},
        {"column": "Webinar Attended", "kind": "engagement", "type": "boolean"},
    ],
    "exclude": ["Owner"],
}
EXPORT_ROW: dict[str, Any] = {
    "Lead ID": "X1",
    "Created": "2025-03-01T08:00:00Z",
    "MQL Date": "2025-03-10T12:00:00Z",
    "Employees": "51-200",
    "country": "Germany",
    "Budget (USD)": "12000",
    "Plan": "ENT",
    "Partner": "yes",
    "Last Activity": "Email Opened",
    "Web Visits": 7,
    "Webinar Attended": "no",
    "Owner": "Jane",
}
CUSTOM = ("Budget (USD)", "Plan", "Partner", "Last Activity", "Web Visits", "Webinar Attended")


@pytest.fixture(scope="module")
def config() -> Config:
    return build_config({**CONFIG, "source": {"flat": False}})


def _batch(row: Mapping[str, Any], config: Config) -> pd.Series:
    """The row as a one-row export through the reader and `build_features`."""
    snapshot = snapshot_from_frames(pd.DataFrame([dict(row)]), None, config)
    lead_id = snapshot.leads["lead_id"].iloc[0]
    rows = pd.DataFrame({"lead_id": [lead_id], "cutoff": pd.to_datetime([CUTOFF], utc=True)})
    return build_features(snapshot, rows, config).iloc[0]


def _api(profile: Mapping[str, Any], config: Config) -> dict[str, Any]:
    return lead_features(profile, [], CUTOFF.to_pydatetime(), config).values


def _same(expected: pd.Series, got: Mapping[str, Any]) -> None:
    assert list(got) == list(expected.index)
    for name, value in got.items():
        want = expected[name]
        if pd.isna(want):
            assert value is None or (isinstance(value, float) and math.isnan(value)), name
        else:
            assert value == want, (name, value, want)


def _contract_names(row: Mapping[str, Any], config: Config) -> dict[str, Any]:
    return {config.mapping.leads.get(k, k): v for k, v in row.items()}


def test_export_names_list_each_fields_export_names(config: Config) -> None:
    names = export_names(config)
    assert names["lead_id"] == ("Lead ID",) and names["budget"] == ("Budget (USD)",)
    assert names["Plan"] == () and names["industry"] == ()


def test_export_and_contract_names_give_the_batch_features(config: Config) -> None:
    expected = _batch(EXPORT_ROW, config)
    assert expected["custom_plan"] == "enterprise" and expected["custom_budget"] == 12000.0
    _same(expected, _api(EXPORT_ROW, config))
    _same(expected, _api(_contract_names(EXPORT_ROW, config), config))
    # one field under each name, and both names of a field with agreeing values
    mixed = {**EXPORT_ROW, "lead_id": "X1", "created_at": datetime(2025, 3, 1, 8, tzinfo=UTC)}
    mixed |= {"company_size": "51-200", "budget": 12000}
    _same(expected, _api(mixed, config))


def test_one_export_column_feeding_two_contract_columns_is_posted_once() -> None:
    """`First Contact: [created_at, mql_at]` (mapping.leads_also): the posted export name
    fills both, as the reader fills both from the one column."""
    config = build_config(
        {"mapping": {"leads": {"Lead ID": "lead_id", "First Contact": ["created_at", "mql_at"]}}}
    )
    assert export_names(config)["mql_at"] == ("First Contact",)
    row = {"Lead ID": "X1", "First Contact": "2025-03-01T08:00:00Z", "country": "Germany"}
    expected = _batch(row, config)
    assert expected["days_since_mql"] == expected["days_since_created"] > 0
    _same(expected, _api(row, config))


@pytest.mark.parametrize("absent", [(), CUSTOM, CUSTOM[:3], CUSTOM[3:]])
def test_missing_custom_fields_are_unknown_as_a_missing_cell_is(
    config: Config, absent: tuple[str, ...]
) -> None:
    """A custom field left out of the posted lead reads as the batch reader reads an empty
    cell of its column: the same features, value for value."""
    posted = {k: v for k, v in EXPORT_ROW.items() if k not in absent}
    cells = {k: (None if k in absent else v) for k, v in EXPORT_ROW.items()}
    expected = _batch(cells, config)
    _same(expected, _api(posted, config))
    for column in absent:
        feature = "custom_" + config.mapping.leads.get(column, column).lower().replace(" ", "_")
        assert pd.isna(expected[feature])


def test_a_flat_model_needs_only_the_lead_id() -> None:
    config = build_config({**CONFIG, "source": {"flat": True, "events": None}})
    values = lead_features({"Lead ID": "F1"}, [], CUTOFF.to_pydatetime(), config).values
    custom = [v for k, v in values.items() if k.startswith("custom_")]
    assert len(custom) == len(CUSTOM)
    assert all(v is None or math.isnan(v) for v in custom)


def test_two_names_that_disagree_are_refused_naming_both(config: Config) -> None:
    posted = {**EXPORT_ROW, "lead_id": "X2", "budget": "13000"}
    with pytest.raises(LeadError) as caught:
        _api(posted, config)
    problems = {p.column: str(p) for p in caught.value.problems}
    assert set(problems) == {"lead_id", "budget"}
    assert "'Lead ID'" in problems["lead_id"] and "'lead_id'" in problems["lead_id"]
    assert "'Budget (USD)'" in problems["budget"] and "'budget'" in problems["budget"]


def test_a_missing_lead_id_names_the_export_name_too(config: Config) -> None:
    posted = {k: v for k, v in EXPORT_ROW.items() if k != "Lead ID"}
    with pytest.raises(LeadError, match=r"lead_id.*required field is missing.*'Lead ID'"):
        _api(posted, config)


def test_a_custom_field_on_exclude_is_refused_under_either_name() -> None:
    """A column is a feature or excluded, never both (the config says which, by either name),
    so the API never has to guess whether an excluded custom field counts."""
    for excluded, named in (("Budget (USD)", "budget"), ("budget", "budget"), ("Plan", "Plan")):
        with pytest.raises(ConfigError, match=f"custom field '{named}' is also on exclude"):
            build_config({**CONFIG, "exclude": [excluded]})


def test_the_openapi_schema_lists_custom_fields_and_export_names(config: Config) -> None:
    declared = LeadIn.model_json_schema()["properties"]
    properties = lead_properties(config, declared)
    assert set(properties) == {
        "Lead ID",
        "Created",
        "MQL Date",
        "Employees",
        "Budget (USD)",
        "budget",
        *CUSTOM[1:],
    }
    assert "Custom fit field (numeric" in properties["budget"]["description"]
    assert "'Budget (USD)'" in properties["budget"]["description"]
    assert properties["Lead ID"]["anyOf"] == declared["lead_id"]["anyOf"]
    assert {"type": "boolean"} in properties["Partner"]["anyOf"]


def test_ids_agree_only_as_text_categories_as_categories(config: Config) -> None:
    """Two names of one field are compared as the field is read: an id keeps its case, a
    category is folded."""
    with pytest.raises(LeadError, match="'Lead ID' and 'lead_id'"):
        _api({**EXPORT_ROW, "lead_id": "x1"}, config)
    _same(_batch(EXPORT_ROW, config), _api({**EXPORT_ROW, "lead_id": " X1 "}, config))
    renamed = build_config(
        {**CONFIG, "mapping": {**CONFIG["mapping"], "leads": {"Land": "country"}}}
    )
    row = {"lead_id": "X1", "created_at": "2025-03-01", "Land": "GERMANY", "country": " germany"}
    assert _api(row, renamed)["country"] == "germany"
