"""The API's OpenAPI schema with the served model's lead fields.

`LeadIn` declares the contract's fields; a model may also read custom fields, and a lead may
carry any field under the export's name for it (`mapping.leads`). Neither is known until a
model is loaded, so the schema at /openapi.json (and /docs) is the static one plus, for the
model being served, one property per custom field and per export name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI

from common.config import Config
from serving.lead import export_names

#: What a posted value of each custom type may be: text as exports hold it, or JSON's own.
_VALUE_SCHEMAS: Final[dict[str, list[dict[str, str]]]] = {
    "categorical": [{"type": "string"}, {"type": "number"}, {"type": "null"}],
    "numeric": [{"type": "number"}, {"type": "string"}, {"type": "null"}],
    "boolean": [{"type": "boolean"}, {"type": "string"}, {"type": "number"}, {"type": "null"}],
}
_ANY_VALUE: Final = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]


def lead_properties(config: Config, declared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """JSON-schema properties for a model's custom fields and for the export's names of its
    fields; `declared` holds `LeadIn`'s own properties (an export name takes its field's)."""
    custom = {cf.column.strip(): cf for cf in config.custom_fields}
    properties: dict[str, dict[str, Any]] = {}
    for column, exports in export_names(config).items():
        also = f" Also accepted as {', '.join(repr(e) for e in exports)}." if exports else ""
        if column in custom:
            cf = custom[column]
            properties[column] = {
                "anyOf": _VALUE_SCHEMAS[cf.value_type],
                "title": column,
                "description": f"Custom {cf.kind} field ({cf.value_type}, feature "
                f"{cf.feature}); optional: missing or null is unknown.{also}",
            }
        for export in exports:
            if export in declared:
                continue  # a contract name is documented as itself
            shape = declared.get(column) or properties.get(column) or {"anyOf": _ANY_VALUE}
            properties[export] = {
                **{k: v for k, v in shape.items() if k not in ("title", "description")},
                "title": export,
                "description": f"The export's name for {column!r}: post one of the two (if "
                "both, they must agree).",
            }
    return {name: p for name, p in properties.items() if name not in declared}


def describe_lead_fields(app: FastAPI) -> None:
    """Make the app's OpenAPI schema show the served model's lead fields (see the module)."""
    static: Callable[[], dict[str, Any]] = app.openapi
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        model = app.state.store.current
        if model is None:
            return static()
        if cached.get("model") is not model:
            schema = copy.deepcopy(static())
            lead = schema["components"]["schemas"]["LeadIn"]
            lead["properties"].update(lead_properties(model.config, lead["properties"]))
            lead["description"] = (
                f"{lead.get('description', '')}\n\nFields of {model.name} version "
                f"{model.version}, the model served when this schema was read."
            ).strip()
            cached.update(model=model, schema=schema)
        return dict(cached["schema"])

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension
