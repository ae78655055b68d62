"""Salesforce as Fivetran's connector lands it (`lead`, `lead_history`, `task`, optional
`event`, `campaign_member` + `campaign`) or as the weekly Data Export writes it (`Lead.csv`,
`Task.csv`, ...: the same objects with API-name headers, no history), turned into the
contract's leads and events.

MQL, SQL and disqualification come from the status field's history when there is one, else
from lead columns (an MQL date a flow stamps, ConvertedDate). Tasks on the converted contact
are brought back to the lead. Current values (Status, Rating, scores, last-activity dates,
conversion fields) never leave the adapter unless a custom field names one, and then the
training audit names it (features.presets.leaks). See docs/salesforce.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.config import Config
from features.presets.common import (
    PresetFrames,
    Rule,
    classify,
    event_frame,
    first_time,
    value_as_of,
)
from features.presets.tables import ConnectorTables, flags, ids, name_key, times

#: Contract fit column -> the lead column it comes from.
FIT_COLUMNS = {
    "email": "email",
    "job_title": "title",
    "country": "country",
    "industry": "industry",
    "lead_source": "lead_source",
    "company_size": "number_of_employees",
}
_FORM = "^Form Submitted"
DEFAULT_TASK_RULES = tuple(
    Rule(field="subject", pattern=pattern, event_type=kind)
    for pattern, kind in (
        ("^Email Opened", "email_open"),
        ("^Email Clicked", "email_click"),
        ("^Email Replied", "email_reply"),
        ("^Email Unsubscribed", "email_unsubscribe"),
        ("^Email Bounced", "email_bounce"),
        ("^Visited Pricing Page", "pricing_page_view"),
        ("^Visited Web Page", "page_view"),
        ("^Clicked Ad", "ad_click"),
        ("^Social Engagement", "social_engagement"),
        ("^Attended Webinar", "webinar_attendance"),
        (_FORM + ".*demo", "demo_request"),
        (_FORM + ".*trial", "trial_signup"),
        (_FORM + ".*webinar", "webinar_registration"),
        (_FORM + ".*(download|content|ebook|whitepaper)", "content_download"),
        (_FORM, "form_submission"),
    )
)
DEFAULT_CAMPAIGN_RULES = (
    Rule(field="type", pattern="webinar", event_type="webinar_registration"),
    Rule(field="type", pattern="content", event_type="content_download"),
    Rule(field="type", pattern="advertisement", event_type="ad_click"),
)


class SalesforceSettings(BaseModel):
    """The org-specific part of the Salesforce preset (`preset:` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lifecycle: Literal["auto", "history", "columns"] = Field(
        "auto",
        description="MQL/SQL/disqualified times from lead_history of `status_field`, from the "
        "lead columns below, or auto: the history when the table exists, else the columns.",
    )
    status_field: str = Field("Status", description="The field whose history gives the stages.")
    mql_values: tuple[str, ...] = Field(("Marketing Qualified",), description="MQL statuses.")
    sql_values: tuple[str, ...] = Field(("Closed - Converted",), description="SQL statuses.")
    disqualified_values: tuple[str, ...] = Field(
        ("Closed - Not Converted",), description="Disqualified statuses."
    )
    mql_column: str | None = Field(
        "mql_date_c",
        description="Lead column holding the MQL time (a flow's stamp) when there is no history.",
    )
    sql_column: str | None = Field(
        "converted_date",
        description="Lead column holding the SQL time when there is no history (ConvertedDate "
        "is a date: the time of day is lost).",
    )
    disqualified_column: str | None = Field(
        None, description="Lead column holding the disqualification time, if the org keeps one."
    )
    account_field: str | None = Field(
        "matched_account_c",
        description="Lead lookup to the account known before conversion (converted_account_id "
        "only exists after conversion: a leak).",
    )
    fit_as_of: Literal["mql_at", "current"] = Field(
        "mql_at",
        description="Fit fields as of mql_at from lead_history where the field is tracked.",
    )
    task_time: str = Field(
        "completed_date_time",
        description="Task time column (created_date where it is empty; activity_date is a date).",
    )
    task_rules: tuple[Rule, ...] = Field(
        DEFAULT_TASK_RULES,
        description="Task -> event type by `subject`, `type` or `task_subtype`; first match "
        "wins, no match: other.",
    )
    campaign_members: bool = Field(
        False,
        description="Also each campaign response (first_responded_date, a date) as an event; "
        "off when the tasks already log the responses.",
    )
    campaign_rules: tuple[Rule, ...] = Field(
        DEFAULT_CAMPAIGN_RULES, description="Campaign response -> event type by campaign `type`."
    )
    contact_prefix: str = Field("003", description="Id prefix of contacts (who_id).")
    timezone: str = Field("UTC", description="Time zone of times written without one.")


def read_salesforce(
    tables: ConnectorTables, config: Config, settings: SalesforceSettings
) -> PresetFrames:
    """Contract leads and events from Salesforce's tables (warehouse or Data Export)."""
    notes: list[str] = []
    tz = settings.timezone
    custom = [cf.column for cf in config.custom_fields]
    stamp_columns = [
        c for c in (settings.mql_column, settings.sql_column, settings.disqualified_column) if c
    ]
    optional = [*FIT_COLUMNS.values(), "is_deleted", "converted_contact_id", *stamp_columns]
    if settings.account_field:
        optional.append(settings.account_field)
    lead = tables.read("lead", ["id", "created_date"], optional=[*optional, *custom])
    if "is_deleted" in lead:
        lead = lead[~flags(lead["is_deleted"]).to_numpy()].reset_index(drop=True)
    lead_ids = ids(lead["id"])
    use_history = settings.lifecycle == "history" or (
        settings.lifecycle == "auto" and tables.has("lead_history")
    )
    history = pd.DataFrame()
    if tables.has("lead_history"):
        raw = tables.read(
            "lead_history",
            ["lead_id", "field", "new_value", "created_date"],
            optional=["old_value"],
        )
        history = pd.DataFrame(
            {
                "key": ids(raw["lead_id"]),
                "field": raw["field"].astype("string").map(name_key),
                "value": raw["new_value"].astype("string"),
                "old": raw["old_value"].astype("string") if "old_value" in raw else pd.NA,
                "at": times(raw["created_date"], tz),
            }
        )
    elif settings.lifecycle == "history":
        from features.contract import ContractError

        raise ContractError(f"lifecycle: history needs the table 'lead_history' in {tables.where}")
    leads = pd.DataFrame({"lead_id": lead_ids, "created_at": times(lead["created_date"], tz)})
    status = history[history["field"] == name_key(settings.status_field)] if use_history else None
    for contract, stage_values, column in (
        ("mql_at", settings.mql_values, settings.mql_column),
        ("sql_at", settings.sql_values, settings.sql_column),
        ("disqualified_at", settings.disqualified_values, settings.disqualified_column),
    ):
        if status is not None:
            wanted = {v.casefold() for v in stage_values}
            mask = status["value"].str.casefold().isin(wanted).fillna(False)
            leads[contract] = first_time(status["key"], status["at"], mask, lead_ids)
        elif column and column in lead:
            leads[contract] = times(lead[column], tz)
        else:
            leads[contract] = pd.Series(pd.NaT, index=lead.index, dtype="datetime64[us, UTC]")
            notes.append(f"Salesforce: no {contract} (no lead_history and no lead column for it)")
    if status is None:
        early = leads["sql_at"] < leads["mql_at"]
        if early.any():
            # a date-only SQL (ConvertedDate) on the MQL's own day: no earlier than the MQL
            leads.loc[early, "sql_at"] = leads.loc[early, "mql_at"]
            notes.append(
                f"Salesforce: {int(early.sum()):,} date-only SQL times on the MQL's day read as "
                "the MQL time"
            )
    notes.append(
        "Salesforce: stages from "
        + (f"lead_history of {settings.status_field}" if status is not None else "lead columns")
    )
    if settings.account_field and settings.account_field in lead:
        leads["account_id"] = ids(lead[settings.account_field])
    else:
        leads["account_id"] = pd.Series(pd.NA, index=lead.index, dtype="string")
        notes.append("Salesforce: no account lookup on the lead (preset.account_field)")
    for contract, column in FIT_COLUMNS.items():
        current = lead[column] if column in lead else pd.Series(pd.NA, index=lead.index)
        values = current if contract == "company_size" else current.astype("string")
        tracked = history[history["field"] == name_key(column)] if not history.empty else history
        if settings.fit_as_of == "mql_at" and not tracked.empty:
            values, n = value_as_of(values, lead_ids, leads["mql_at"], tracked)
            notes.append(f"Salesforce: {column} as of mql_at from lead_history ({n:,} leads)")
        leads[contract] = values
    for column in custom:
        if column in lead:
            leads[column] = lead[column]
    contact_of = pd.Series(dtype="string")
    if "converted_contact_id" in lead:
        converted = ids(lead["converted_contact_id"])
        known = converted.notna().to_numpy()
        contact_of = pd.Series(lead_ids[known].to_numpy(), index=converted[known].to_numpy())
    events = _events(tables, contact_of, settings)
    return PresetFrames(leads, events, tables.label("lead"), "Salesforce activity tables", notes)


def _to_lead(who: pd.Series, contact_of: pd.Series, prefix: str) -> pd.Series:
    """A task's who_id as the lead id: a contact id through the lead it was converted from."""
    who = ids(who)
    is_contact = who.str.startswith(prefix).fillna(False).to_numpy()
    out = who.copy()
    out[is_contact] = who[is_contact].map(contact_of).astype("string")
    return out


def _events(
    tables: ConnectorTables, contact_of: pd.Series, settings: SalesforceSettings
) -> Iterator[pd.DataFrame]:
    tz = settings.timezone
    if tables.has("task"):
        task = tables.read(
            "task",
            ["who_id"],
            optional=[
                settings.task_time,
                "created_date",
                "subject",
                "type",
                "task_subtype",
                "description",
                "is_deleted",
            ],
        )
        if "is_deleted" in task:
            task = task[~flags(task["is_deleted"]).to_numpy()].reset_index(drop=True)
        at = times(task[settings.task_time], tz) if settings.task_time in task else None
        if "created_date" in task:
            created = times(task["created_date"], tz)
            at = created if at is None else at.fillna(created)
        if at is None:
            from features.contract import ContractError

            raise ContractError(f"{tables.label('task')}: no {settings.task_time} or created_date")
        fields = {
            c: task[c].astype("string") for c in ("subject", "type", "task_subtype") if c in task
        }
        kind = classify(fields, settings.task_rules, "other")
        campaign = None
        if "subject" in task:
            parts = task["subject"].astype("string").str.split(": ", n=1).str[1]
            is_form = task["subject"].astype("string").str.match(_FORM).fillna(False)
            campaign = parts.where(~is_form)
        url = task.get("description")
        yield event_frame(
            _to_lead(task["who_id"], contact_of, settings.contact_prefix), at, kind, campaign, url
        )
    if tables.has("event"):
        ev = tables.read(
            "event",
            ["who_id"],
            optional=[
                "activity_date_time",
                "start_date_time",
                "created_date",
                "subject",
                "type",
                "is_deleted",
            ],
        )
        if "is_deleted" in ev:
            ev = ev[~flags(ev["is_deleted"]).to_numpy()].reset_index(drop=True)
        stamp = next(
            (c for c in ("activity_date_time", "start_date_time", "created_date") if c in ev), None
        )
        if stamp is not None:
            fields = {c: ev[c].astype("string") for c in ("subject", "type") if c in ev} or {
                "subject": pd.Series("", index=ev.index, dtype="string")
            }
            kind = classify(fields, settings.task_rules, "other")
            yield event_frame(
                _to_lead(ev["who_id"], contact_of, settings.contact_prefix),
                times(ev[stamp], tz),
                kind,
                None,
                None,
            )
    if settings.campaign_members and tables.has("campaign_member"):
        members = tables.read(
            "campaign_member",
            ["lead_id", "campaign_id"],
            optional=["first_responded_date", "is_deleted"],
        )
        if "first_responded_date" in members:
            camp = (
                tables.read("campaign", ["id"], optional=["type", "name"])
                if tables.has("campaign")
                else None
            )
            by_id = (
                camp.assign(id=ids(camp["id"])).set_index("id")
                if camp is not None
                else pd.DataFrame(index=pd.Index([], dtype="string"))
            )
            cid = ids(members["campaign_id"])
            fields = {"type": cid.map(by_id["type"]).astype("string")} if "type" in by_id else {}
            kind = classify(
                fields or {"type": pd.Series("", index=members.index, dtype="string")},
                settings.campaign_rules,
                "other",
            )
            name = cid.map(by_id["name"]) if "name" in by_id else None
            yield event_frame(
                ids(members["lead_id"]),
                times(members["first_responded_date"], tz),
                kind,
                name,
                None,
            )
