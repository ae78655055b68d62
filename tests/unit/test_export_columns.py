"""Mapping an export's columns: one column feeding several contract columns, row-number ids
for a flat export without one, inferred custom-field types, and excluded columns in use."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from common.config import ConfigError, build_config
from features.contract import ContractError
from features.custom_types import infer_value_type, types_of_training_set
from features.reader import read_snapshot, snapshot_from_frames


def test_one_export_column_feeds_created_at_and_mql_at() -> None:
    leads = pd.DataFrame({"Id": ["a", "b"], "First Contact": ["2025-01-01", "2025-01-05"]})
    config = build_config(
        {"mapping": {"leads": {"Id": "lead_id", "First Contact": ["created_at", "mql_at"]}}}
    )
    assert config.mapping.leads == {"Id": "lead_id", "First Contact": "created_at"}
    assert config.mapping.leads_also == {"First Contact": ("mql_at",)}
    snap = snapshot_from_frames(leads, None, config)
    assert list(snap.leads["mql_at"]) == list(snap.leads["created_at"])
    assert snap.leads["mql_at"].notna().all()
    # the config survives a round trip, as it does inside a trained model
    again = type(config).model_validate_json(config.model_dump_json())
    assert again.mapping == config.mapping


def test_a_contract_column_fed_twice_is_an_error() -> None:
    leads = pd.DataFrame({"Id": ["a"], "First Contact": ["2025-01-01"], "MQL Date": ["2025-01-02"]})
    config = build_config(
        {
            "mapping": {
                "leads": {
                    "Id": "lead_id",
                    "First Contact": ["created_at", "mql_at"],
                    "MQL Date": "mql_at",
                }
            }
        }
    )
    with pytest.raises(ContractError, match=r"column 'mql_at': mapping.leads feeds it from"):
        snapshot_from_frames(leads, None, config)


def test_an_empty_list_of_contract_columns_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"mapping.leads.First Contact: an empty list"):
        build_config({"mapping": {"leads": {"First Contact": []}}})


def _flat(tmp_path: Path) -> Path:
    pd.DataFrame(
        {"Converted": ["1", "0", "yes"], "Origin": ["API", "Form", "API"]},
    ).to_csv(tmp_path / "calls.csv", sep=";", index=False)
    return tmp_path


def test_a_flat_export_without_ids_gets_row_numbers_with_a_note(tmp_path: Path) -> None:
    config = build_config(
        {
            "source": {
                "path": str(_flat(tmp_path)),
                "leads": "calls",
                "events": None,
                "flat": True,
            },
            "mapping": {"leads": {"Converted": "converted"}},
            "custom_fields": [{"column": "Origin", "kind": "fit"}],
        }
    )
    first, second = read_snapshot(config), read_snapshot(config)
    assert sorted(first.leads["lead_id"]) == ["row-1", "row-2", "row-3"]
    by_id = first.leads.set_index("lead_id")
    assert list(by_id.loc[["row-1", "row-2", "row-3"], "converted"]) == [True, False, True]
    pd.testing.assert_frame_equal(first.leads, second.leads)  # stable
    assert any(
        "no lead_id column; each lead's id is its row number" in x for x in first.report.lines()
    )


def test_a_timestamped_export_still_needs_its_ids() -> None:
    leads = pd.DataFrame({"created_at": ["2025-01-01"]})
    with pytest.raises(ContractError, match=r"column 'lead_id'.*required column is missing"):
        snapshot_from_frames(leads, None, build_config())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["12", " 3.5 ", "", "n/a", "1e3"], "numeric"),
        (["Yes", "no", "", "TRUE"], "boolean"),
        (["1", "0", "0"], "boolean"),
        (["Gold", "12", "Silver"], "categorical"),
        (["", "n/a", "-"], None),
    ],
)
def test_custom_field_types_follow_the_values(values: list[str], expected: str | None) -> None:
    mapping = build_config().mapping
    assert infer_value_type(pd.Series(values, dtype="str"), mapping, "x") == expected


def test_typed_sources_answer_by_their_column_type() -> None:
    mapping = build_config().mapping
    assert infer_value_type(pd.Series([True, False]), mapping, "x") == "boolean"
    assert infer_value_type(pd.Series([1.5, None]), mapping, "x") == "numeric"


def test_read_infers_untyped_fields_keeps_given_types_and_says_so(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "lead_id": ["a", "b", "c"],
            "created_at": ["2025-01-01"] * 3,
            "Visits": ["3", "", "10"],
            "Partner": ["yes", "no", "no"],
            "Score": ["1", "2", "3"],
            "Plan": ["Gold", "Silver", "Gold"],
        }
    ).to_csv(tmp_path / "leads.csv", index=False)
    (tmp_path / "events.csv").write_text(
        "lead_id,occurred_at,event_type\na,2025-01-02T00:00:00Z,page_view\n"
    )
    config = build_config(
        {
            "source": {"path": str(tmp_path)},
            "custom_fields": [
                {"column": "Visits", "kind": "fit"},  # the fit default was categorical
                {"column": "Partner", "kind": "fit"},
                {"column": "Score", "kind": "fit", "type": "categorical"},
                {"column": "Plan", "kind": "engagement"},  # the default was numeric
            ],
        }
    )
    snap = read_snapshot(config)
    types = {f.column: f.type for f in snap.custom_fields}
    assert types == {
        "Visits": "numeric",
        "Partner": "boolean",
        "Score": "categorical",
        "Plan": "categorical",
    }
    assert list(snap.leads["custom_visits"].fillna(-1)) == [3.0, -1.0, 10.0]
    assert list(snap.leads["custom_partner"]) == [1.0, 0.0, 0.0]
    assert list(snap.leads["custom_score"]) == ["1", "2", "3"]
    lines = " | ".join(snap.report.lines())
    assert "custom field 'Visits': numeric (inferred from its values" in lines
    assert "'Score'" not in lines  # given, not inferred


def test_a_training_set_file_gets_its_types_from_its_summary_else_its_columns(
    tmp_path: Path,
) -> None:
    config = build_config(
        {
            "custom_fields": [
                {"column": "Flag", "kind": "fit"},
                {"column": "Visits", "kind": "fit"},
                {"column": "Plan", "kind": "engagement"},
            ]
        }
    )
    training_set = pd.DataFrame(
        {
            "custom_flag": [1.0, 0.0, None],
            "custom_visits": [3.0, 0.0, 12.0],
            "custom_plan": pd.Series(["gold", "silver", None], dtype="str"),
        }
    )
    from_columns = types_of_training_set(config, training_set, None)
    assert [f.type for f in from_columns.custom_fields] == ["boolean", "numeric", "categorical"]
    summary = tmp_path / "ts.json"
    recorded = [{"column": "Flag", "kind": "fit", "type": "numeric"}]
    summary.write_text(json.dumps({"custom_fields": recorded}))
    from_summary = types_of_training_set(config, training_set, summary)
    assert [f.type for f in from_summary.custom_fields] == ["numeric", "numeric", "categorical"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"exclude": ["Tags"], "custom_fields": [{"column": "Tags", "kind": "fit"}]},
            r"custom field 'Tags' is also on exclude \(as 'Tags'\): a column is either a "
            r"feature or excluded",
        ),
        (
            {
                "exclude": ["Lead Origin"],
                "mapping": {"leads": {"Lead Origin": "origin"}},
                "custom_fields": [{"column": "origin", "kind": "fit"}],
            },
            r"custom field 'origin' is also on exclude \(as 'Lead Origin'\)",
        ),
        (
            {"exclude": ["Created"], "mapping": {"leads": {"Created": "created_at"}}},
            r"exclude drops 'Created', which gives the required contract column 'created_at'",
        ),
        ({"exclude": ["lead_id"]}, r"exclude drops 'lead_id', which gives the required"),
    ],
)
def test_an_excluded_column_in_use_is_a_clear_config_error(
    values: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_config(values)


def test_excluding_an_optional_contract_column_is_still_allowed() -> None:
    config = build_config(
        {"exclude": ["lead_source"], "mapping": {"leads": {"Src": "lead_source"}}}
    )
    assert config.exclude == ("lead_source",)
