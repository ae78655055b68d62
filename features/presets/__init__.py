"""CRM presets: a connector's tables (or a CRM's own export) turned into the contract's frames.

`source: {preset: hubspot, path: DIR}` (or `url:` + `schema:`) names the adapter; the config's
`preset:` block holds the org-specific settings, each with a default (the adapter's settings
model). `read_preset` gives the reader what `features.reader.read_tables` gives for a
contract folder: the leads frame, event chunks and their names; the reader then validates and
cleans them like any export. For `read_snapshot` the event chunks come coded
(`features.reader.CodedEvents`: lead positions into that leads frame, milliseconds, type
codes), since an adapter already holds them as integers; other readers (Spark) get frames.

`as_of_export_columns` lists, per preset, the columns that hold a current value or an
export-time aggregate: never features by default, and the training audit names any custom
field among them (`training.audit.export_time_flags`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

import pandas as pd
from pydantic import BaseModel, ValidationError

from common.config import Config, ConfigError, describe_error
from features.presets.common import PresetFrames
from features.presets.hubspot import HubSpotSettings, read_hubspot
from features.presets.hubspot_export import HubSpotExportSettings, read_hubspot_export
from features.presets.salesforce import SalesforceSettings, read_salesforce
from features.presets.tables import ConnectorTables, name_key
from features.reader.events import EventChunk

#: Settings model and adapter of each preset.
PRESETS: Final[dict[str, tuple[type[BaseModel], Callable[..., PresetFrames]]]] = {
    "hubspot": (HubSpotSettings, read_hubspot),
    "salesforce": (SalesforceSettings, read_salesforce),
    "hubspot-export": (HubSpotExportSettings, read_hubspot_export),
    "salesforce-export": (SalesforceSettings, read_salesforce),
}
#: Defaults that differ for the Data Export (no lead_history: the lead's date columns).
_EXPORT_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "salesforce-export": {"lifecycle": "columns"},
}

#: Columns holding a current value or an aggregate as of the export, per CRM, as patterns on
#: the name key (letters and digits, lower case; HubSpot's `property_` prefix removed). From
#: ../shared/crm-schemas.md and docs/crm-layouts.md (*as of export*).
_HUBSPOT_AS_OF_EXPORT: Final = (
    r"lifecyclestage", r"hsleadstatus", r"leadstatus", r"hubspotscore",
    r"hspredictivecontactscore.*", r"num(?!employees|berofemployees).*", r"hsanalyticsnum.*",
    r"numberof(?!employees).*",
    r"hsemail(open|click|replied|bounce|optout|last.*|sends.*|delivered|first.*)",
    r"marketingemails.*", r"noteslast.*", r"lastactivitydate", r"hslastsalesactivity.*",
    r"hssalesemaillast.*", r"recentconversion.*", r"firstconversion.*", r"hsanalyticslast.*",
    r"hslatestsource.*", r"lastmodifieddate", r"hubspotownerid", r"hsv2.*timein.*",
    r"hsanalyticsaverage.*", r"hstimein.*", r"fivetransynced", r"closedate", r"recordsource.*",
    r"becameacustomerdate", r"hslifecyclestage(opportunity|customer|evangelist|other)date",
)  # fmt: skip
_SALESFORCE_AS_OF_EXPORT: Final = (
    r"status", r"isconverted", r"converted.*", r"rating", r"ownerid", r"lastactivitydate",
    r"lastmodified.*", r"lastviewed.*", r"lastreferenced.*", r"emailbounced.*",
    r"hasoptedout.*", r"donotcall", r"pi_?_?score.*", r"piscore.*", r"pigrade.*",
    r".*score.*", r"stagename", r"isclosed", r"iswon", r"amount", r"numberofleads",
    r"numberofresponses", r"hasresponded", r"fivetransynced", r"systemmodstamp",
    r".*intent.*", r"bombora.*", r"engagio.*",
)  # fmt: skip
AS_OF_EXPORT: Final[dict[str, tuple[str, ...]]] = {
    "hubspot": _HUBSPOT_AS_OF_EXPORT,
    "hubspot-export": _HUBSPOT_AS_OF_EXPORT,
    "salesforce": _SALESFORCE_AS_OF_EXPORT,
    "salesforce-export": _SALESFORCE_AS_OF_EXPORT,
}


def preset_settings(config: Config) -> BaseModel:
    """The preset's settings from the config's `preset:` block, validated (errors name the key)."""
    name = config.source.preset
    if name not in PRESETS:
        raise ConfigError(f"source.preset must be one of {', '.join(PRESETS)}; got {name!r}")
    model, _ = PRESETS[name]
    values = {**_EXPORT_DEFAULTS.get(name, {}), **dict(config.preset)}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        lines = describe_error(error, f"source.preset {name}", "preset settings").splitlines()
        shown = [lines[0], *("  preset." + x.strip() for x in lines[1:])]
        raise ConfigError("\n".join(shown)) from None


def read_preset(
    config: Config, notes: list[str] | None = None, coded: bool = False
) -> tuple[pd.DataFrame, Iterator[EventChunk] | None, tuple[str, str]]:
    """The source's connector tables as the contract's leads frame, event chunks and names,
    as `features.reader.read_tables` returns them; the events as `CodedEvents` against the
    rows of that leads frame when `coded`, else contract frames."""
    settings = preset_settings(config)
    source = config.source
    tables = ConnectorTables(
        path=source.path,
        url=source.url,
        schema=source.db_schema,
        encoding="utf-8" if source.encoding == "auto" else source.encoding,
    )
    _, adapter = PRESETS[str(source.preset)]
    frames = adapter(tables, config, settings, coded)
    if notes is not None:
        notes += frames.notes
    return frames.leads, frames.events, (frames.leads_name, frames.events_name)


def as_of_export_columns(preset: str | None, columns: list[str]) -> list[str]:
    """Those of `columns` that the preset's CRM fills with a current value or an aggregate as
    of the export (so a feature made of one sees the future of a lead at its MQL moment)."""
    if preset not in AS_OF_EXPORT:
        return []
    patterns = [re.compile(p) for p in AS_OF_EXPORT[preset]]
    found = []
    for column in columns:
        key = name_key(column)
        key = key.removeprefix("property")
        if any(p.fullmatch(key) for p in patterns):
            found.append(column)
    return found
