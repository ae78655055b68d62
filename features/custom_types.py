"""Custom fields' value types, inferred from the export when the config gives none.

The rule, on a column's values after the config's missing placeholders and value map:
boolean when every value is one of `mapping.true_values` or `mapping.false_values`, numeric
when every value reads as a number, else categorical. A column with no values at all keeps
the kind's default (categorical for fit, numeric for engagement). A typed source (Parquet,
SQL) answers by its column type: true/false columns are boolean, numbers numeric.

The inferred types are written into the config a model is trained with (and the training
set's summary), so that serving and batch scoring read each field as training did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from common.config import Config, CustomField, MappingConfig

ValueType = Literal["categorical", "numeric", "boolean"]


def infer_value_type(values: pd.Series, mapping: MappingConfig, column: str) -> ValueType | None:
    """The type the values fit (see the module's rule); None when no value is present."""
    from features.reader import clean_text

    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric" if values.notna().any() else None
    text = clean_text(values, mapping, column)
    present = text.dropna()
    if present.empty:
        return None
    distinct = pd.Series(present.unique(), dtype="str")
    folded = distinct.str.casefold()
    if folded.isin(mapping.true_values + mapping.false_values).all():
        return "boolean"
    if pd.to_numeric(distinct, errors="coerce").notna().all():
        return "numeric"
    return "categorical"


def _export_column(raw: pd.DataFrame, field: CustomField, mapping: MappingConfig) -> str | None:
    """The raw frame's column that becomes the custom field's column after mapping."""
    columns = {str(c).strip(): str(c) for c in raw.columns}
    wanted = field.column.strip()
    for export, target in mapping.leads.items():
        targets = (target, *mapping.leads_also.get(export, ()))
        if wanted in (t.strip() for t in targets) and export.strip() in columns:
            return columns[export.strip()]
    return columns.get(wanted)


def typed_custom_fields(
    raw: pd.DataFrame, config: Config
) -> tuple[tuple[CustomField, ...], list[str]]:
    """The config's custom fields, each with a type (inferred where none is given), and one
    note per inferred type for the reader's summary."""
    fields: list[CustomField] = []
    notes: list[str] = []
    for field in config.custom_fields:
        if field.type is not None:
            fields.append(field)
            continue
        column = _export_column(raw, field, config.mapping)
        inferred = (
            infer_value_type(raw[column], config.mapping, field.column.strip())
            if column is not None
            else None
        )
        chosen: ValueType = inferred or field.value_type
        how = "inferred from its values" if inferred else f"no values: the {field.kind} default"
        notes.append(
            f"custom field {field.column!r}: {chosen} ({how}; set custom_fields[].type to change)"
        )
        fields.append(field.model_copy(update={"type": chosen}))
    return tuple(fields), notes


def with_custom_fields(config: Config, fields: tuple[CustomField, ...]) -> Config:
    """The config with these (typed) custom fields: what a model trained on it records."""
    if fields == config.custom_fields:
        return config
    return config.model_copy(update={"custom_fields": fields})


def types_of_training_set(
    config: Config, training_set: pd.DataFrame, summary: Path | None
) -> Config:
    """Untyped custom fields typed for a training set read from a file: from its summary JSON
    (written by `leadscore features`) when there is one, else from its columns (text:
    categorical; numbers only 0 and 1: boolean; other numbers: numeric)."""
    if all(f.type is not None for f in config.custom_fields):
        return config
    recorded: dict[str, Any] = {}
    if summary is not None and summary.is_file():
        try:
            loaded = json.loads(summary.read_text(encoding="utf-8"))
            recorded = {f["column"]: f.get("type") for f in loaded.get("custom_fields", [])}
        except (ValueError, TypeError, KeyError, AttributeError):
            recorded = {}
    fields = []
    for field in config.custom_fields:
        chosen = field.type or recorded.get(field.column)
        if chosen is None and field.feature in training_set:
            values = training_set[field.feature]
            if not pd.api.types.is_numeric_dtype(values):
                chosen = "categorical"
            elif values.dropna().isin([0, 1]).all():
                chosen = "boolean"
            else:
                chosen = "numeric"
        fields.append(field.model_copy(update={"type": chosen or field.value_type}))
    return with_custom_fields(config, tuple(fields))
