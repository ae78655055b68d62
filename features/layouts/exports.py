"""The CRMs' own CSV exports of the synthetic CRM: flat files with lifecycle dates, no history.

`hubspot-export` is HubSpot's contacts export (headers are the properties' labels, values the
options' labels); `salesforce-export` is Salesforce's weekly Data Export (one CSV per object,
API-name headers, booleans 0/1, times without a zone, empty lookups as `000000000000000AAA`).
Both are transformations of the warehouse layouts; see docs/crm-layouts.md for what they lose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.layouts.common import account_profile, lead_numbers, text, to_table
from features.layouts.hubspot import contact_frame
from features.layouts.salesforce import SalesforceLayout
from features.synthetic import SyntheticSnapshot

HUBSPOT_EXPORT: Final = "hubspot-crm-exports-all-contacts"
#: HubSpot contacts export: header label per warehouse contact column, in file order.
HUBSPOT_LABELS: Final = {
    "id": "Record ID",
    "property_createdate": "Create Date",
    "property_email": "Email",
    "property_jobtitle": "Job Title",
    "company_name": "Company Name",
    "property_industry": "Industry",
    "property_country": "Country/Region",
    "property_numemployees": "Number of Employees",
    "property_company_size": "Company size",
    "property_associatedcompanyid": "Primary Associated Company ID",
    "property_lead_source": "Lead Source",
    "property_hs_analytics_source": "Original Traffic Source",
    "property_lifecyclestage": "Lifecycle Stage",
    "property_hs_lead_status": "Lead Status",
    "property_hubspotscore": "HubSpot Score",
    "property_hs_analytics_num_page_views": "Number of Pageviews",
    "property_hs_analytics_num_visits": "Number of Sessions",
    "property_num_conversion_events": "Number of Form Submissions",
    "property_hs_email_open": "Marketing emails opened",
    "property_hs_email_click": "Marketing emails clicked",
    "property_hs_email_bounce": "Marketing emails bounced",
    "property_notes_last_updated": "Last Activity Date",
    "property_first_conversion_date": "First Conversion Date",
    "property_recent_conversion_date": "Recent Conversion Date",
    "property_lastmodifieddate": "Last Modified Date",
    "property_hs_lifecyclestage_lead_date": "Became a Lead Date",
    "property_hs_lifecyclestage_marketingqualifiedlead_date": (
        "Became a Marketing Qualified Lead Date"
    ),
    "property_hs_lifecyclestage_salesqualifiedlead_date": "Became a Sales Qualified Lead Date",
}
#: Option labels of enumerated properties (the export writes labels, the warehouse values).
OPTION_LABELS: Final = {
    "property_lifecyclestage": {
        "lead": "Lead",
        "marketingqualifiedlead": "Marketing Qualified Lead",
        "salesqualifiedlead": "Sales Qualified Lead",
    },
    "property_hs_lead_status": {
        "NEW": "New",
        "ATTEMPTED_TO_CONTACT": "Attempted to contact",
        "OPEN_DEAL": "Open deal",
        "UNQUALIFIED": "Unqualified",
    },
    "property_hs_analytics_source": {
        "ORGANIC_SEARCH": "Organic Search",
        "PAID_SEARCH": "Paid Search",
        "PAID_SOCIAL": "Paid Social",
        "REFERRALS": "Referrals",
        "DIRECT_TRAFFIC": "Direct Traffic",
        "OFFLINE": "Offline Sources",
        "OTHER_CAMPAIGNS": "Other Campaigns",
    },
}
#: Salesforce Data Export: file per warehouse table (lead_history and lead_status not exported).
SALESFORCE_FILES: Final = {
    "lead": "Lead",
    "account": "Account",
    "contact": "Contact",
    "opportunity": "Opportunity",
    "task": "Task",
    "campaign_member": "CampaignMember",
    "campaign": "Campaign",
}
#: Columns the Data Export does not write (Fivetran's own, and Task's subtype).
_NOT_EXPORTED: Final = {"_fivetran_synced", "task_subtype"}
#: Custom and managed-package fields whose API names the generic rule cannot recover.
_SPECIAL_NAMES: Final = {"pi_score_c": "pi__score__c", "mql_date_c": "MQL_Date__c"}
EMPTY_LOOKUP: Final = "000000000000000AAA"
_EXPORT_TIME: Final = "%Y-%m-%d %H:%M:%S"


def hubspot_export_frame(
    leads: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """The contacts export: labelled headers and option labels, times in UTC without a zone."""
    contact = contact_frame(leads, events, as_of)
    names = account_profile(leads)["name"]
    contact["company_name"] = text(lead_numbers(leads["account_id"]).map(names).to_numpy())
    for column, labels in OPTION_LABELS.items():
        contact[column] = text(contact[column].map(labels).to_numpy())
    for column in contact.columns:
        if isinstance(contact[column].dtype, pd.DatetimeTZDtype):
            contact[column] = text(contact[column].dt.strftime(_EXPORT_TIME).to_numpy())
    return contact[list(HUBSPOT_LABELS)].rename(columns=HUBSPOT_LABELS)


def api_name(column: str) -> str:
    """Salesforce API name of a Fivetran column: `created_date` -> `CreatedDate`, custom
    `matched_account_c` -> `Matched_Account__c`, managed-package `pi_score_c` -> `pi__score__c`."""
    if column in _SPECIAL_NAMES:
        return _SPECIAL_NAMES[column]
    if column.endswith("_c"):
        return "_".join(part.title() for part in column[:-2].split("_")) + "__c"
    return "".join(part.title() for part in column.split("_"))


def data_export_table(table: pa.Table) -> pa.Table:
    """A warehouse table as the Data Export writes it: all text, API-name headers, booleans
    0/1, times `YYYY-MM-DD HH:MM:SS` without a zone, dates at `00:00:00`, empty lookups as
    `000000000000000AAA`."""
    columns, names = [], []
    for column_field, column in zip(table.schema, table.columns, strict=True):
        if column_field.name in _NOT_EXPORTED:
            continue
        kind = column_field.type
        if pa.types.is_boolean(kind):
            values = pc.if_else(column, "1", "0")
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            values = pc.strftime(column.cast(pa.timestamp("s")), format=_EXPORT_TIME)
        else:
            values = column.cast(pa.string())
        name = api_name(column_field.name)
        if name.endswith("Id") and name != "Id":
            values = pc.fill_null(values, EMPTY_LOOKUP)
        columns.append(values)
        names.append(name)
    return pa.table(columns, names=names)


@dataclass
class HubSpotExportLayout:
    """HubSpot's contacts export: one flat file, no events, no history."""

    def chunk_tables(self, chunk: SyntheticSnapshot) -> dict[str, pa.Table]:
        return {
            HUBSPOT_EXPORT: to_table(hubspot_export_frame(chunk.leads, chunk.events, chunk.as_of))
        }

    def final_tables(self) -> dict[str, pa.Table]:
        return {}


@dataclass
class SalesforceExportLayout:
    """Salesforce's Data Export: one CSV per object; Lead.csv has the custom `MQL_Date__c`."""

    warehouse: SalesforceLayout = field(default_factory=SalesforceLayout)

    def chunk_tables(self, chunk: SyntheticSnapshot) -> dict[str, pa.Table]:
        tables = self.warehouse.chunk_tables(chunk)
        mql = pa.array(
            chunk.leads["mql_at"].astype("datetime64[us, UTC]"), type=pa.timestamp("us", tz="UTC")
        )
        tables["lead"] = tables["lead"].append_column("mql_date_c", mql)
        return self._export(tables)

    def final_tables(self) -> dict[str, pa.Table]:
        return self._export(self.warehouse.final_tables())

    @staticmethod
    def _export(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
        return {
            SALESFORCE_FILES[name]: data_export_table(table)
            for name, table in tables.items()
            if name in SALESFORCE_FILES
        }
