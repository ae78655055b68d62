"""HubSpot's contacts export from the UI: one CSV, headers are the properties' labels, values
the options' labels, times in the portal's time zone without a zone. No events and no history:
only fit fields and lifecycle dates, each as of the export. See docs/hubspot.md.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from common.config import Config
from features.presets.common import PresetFrames
from features.presets.tables import ConnectorTables, ids, times


class HubSpotExportSettings(BaseModel):
    """The org-specific part of the HubSpot export preset (`preset:` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(
        "hubspot-crm-exports-all-contacts", description="The export's file name (any extension)."
    )
    columns: dict[str, str] = Field(
        default_factory=lambda: {
            "lead_id": "Record ID",
            "created_at": "Create Date",
            "mql_at": "Became a Marketing Qualified Lead Date",
            "sql_at": "Became a Sales Qualified Lead Date",
            "account_id": "Primary Associated Company ID",
            "email": "Email",
            "job_title": "Job Title",
            "country": "Country/Region",
            "industry": "Industry",
            "lead_source": "Lead Source",
            "company_size": "Company size",
        },
        description="Contract column -> the export's header (newer portals: `Date entered "
        '"Marketing Qualified Lead (Lifecycle Stage Pipeline)"` for mql_at, and so on).',
    )
    timezone: str = Field("UTC", description="The portal's time zone (times carry none).")


def read_hubspot_export(
    tables: ConnectorTables,
    config: Config,
    settings: HubSpotExportSettings,
    coded: bool = False,
) -> PresetFrames:
    """Contract leads (no events, so `coded` changes nothing) from the contacts export."""
    labels = settings.columns
    required = [labels["lead_id"], labels["created_at"]]
    optional = [v for k, v in labels.items() if k not in ("lead_id", "created_at")]
    custom = [cf.column for cf in config.custom_fields]
    frame = tables.read(settings.table, required, optional=[*optional, *custom])
    leads = pd.DataFrame({"lead_id": ids(frame[labels["lead_id"]])})
    for contract, label in labels.items():
        if contract == "lead_id" or label not in frame:
            continue
        if contract.endswith("_at"):
            leads[contract] = times(frame[label], settings.timezone)
        elif contract == "account_id":
            leads[contract] = ids(frame[label])
        else:
            leads[contract] = frame[label]
    for column in custom:
        if column in frame:
            leads[column] = frame[column]
    notes = ["HubSpot export: no events, no history, no disqualification time"]
    return PresetFrames(leads, None, tables.label(settings.table), "", notes)
