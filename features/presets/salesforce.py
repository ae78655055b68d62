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
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from common.config import Config
from features.parallel import read_ahead, worker_count
from features.presets.common import (
    READ_AHEAD_BATCHES,
    EventForm,
    PresetFrames,
    Rule,
    classify,
    distinct,
    event_form,
    first_time,
    per_distinct,
    positions,
    value_as_of,
)
from features.presets.tables import EMPTY_LOOKUP, ConnectorTables, flags, ids, name_key, times
from features.reader.events import EventChunk

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
    tables: ConnectorTables, config: Config, settings: SalesforceSettings, coded: bool = False
) -> PresetFrames:
    """Contract leads and events from Salesforce's tables (warehouse or Data Export); the
    events coded for the reader when `coded` (`features.presets.common.EventForm`)."""
    notes: list[str] = []
    tz = settings.timezone
    if settings.lifecycle == "history" and not tables.has("lead_history"):
        from features.contract import ContractError

        raise ContractError(f"lifecycle: history needs the table 'lead_history' in {tables.where}")
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
    lead_index = pd.Index(lead["id"])
    n = len(lead)
    # the activity tables need only the lead and contact ids: they start now, on the other
    # core, while the stages and the as-of values are worked out
    contact_of = _contact_of(lead)
    # hash tables built here, once, before the threads: they only read them
    lead_index.get_indexer(lead_index[:1])
    contact_of.index.get_indexer(contact_of.index[:1])
    workers = worker_count(config.features.workers)
    form = event_form(lead_ids, coded)
    activities = _events(tables, form, lead_index, contact_of, settings, workers)
    events = read_ahead(activities, READ_AHEAD_BATCHES)
    use_history = settings.lifecycle == "history" or (
        settings.lifecycle == "auto" and tables.has("lead_history")
    )
    history = pd.DataFrame()
    if tables.has("lead_history"):
        raw = tables.read(
            "lead_history",
            ["lead_id", "field", "new_value", "created_date"],
            optional=["old_value"],
            dictionary=["lead_id", "field"],
        )
        history = pd.DataFrame(
            {
                "pos": positions(lead_index, raw["lead_id"]),
                "field": per_distinct(raw["field"], lambda u: u.map(name_key)),
                "value": raw["new_value"],
                "old": raw.get("old_value"),
                "at": times(raw["created_date"], tz),
            }
        )
    leads = pd.DataFrame({"lead_id": lead_ids, "created_at": times(lead["created_date"], tz)})
    status = (
        history[(history["field"] == name_key(settings.status_field)).to_numpy(bool)]
        if use_history
        else None
    )
    for contract, stage_values, column in (
        ("mql_at", settings.mql_values, settings.mql_column),
        ("sql_at", settings.sql_values, settings.sql_column),
        ("disqualified_at", settings.disqualified_values, settings.disqualified_column),
    ):
        if status is not None:
            wanted = {v.casefold() for v in stage_values}
            folded = per_distinct(status["value"], lambda u: u.astype("string").str.casefold())
            mask = folded.isin(wanted).to_numpy(bool)
            leads[contract] = first_time(status["pos"].to_numpy(), status["at"], mask, n)
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
    as_of_mql = settings.fit_as_of == "mql_at" and not history.empty
    for contract, column in FIT_COLUMNS.items():
        current = lead[column] if column in lead else pd.Series(pd.NA, index=lead.index)
        values = current if contract == "company_size" else current.astype("string")
        if as_of_mql:
            tracked = np.flatnonzero((history["field"] == name_key(column)).to_numpy(bool))
            if len(tracked):
                values, taken = value_as_of(values, leads["mql_at"], history, tracked)
                notes.append(
                    f"Salesforce: {column} as of mql_at from lead_history ({taken:,} leads)"
                )
        leads[contract] = values
    for column in custom:
        if column in lead:
            leads[column] = lead[column]
    return PresetFrames(leads, events, tables.label("lead"), "Salesforce activity tables", notes)


def _contact_of(lead: pd.DataFrame) -> pd.Series:
    """The lead row of each converted contact id (its first lead when several name it)."""
    if "converted_contact_id" not in lead:
        return pd.Series(dtype="int64")
    converted = lead["converted_contact_id"]
    known = converted.notna().to_numpy() & (converted != EMPTY_LOOKUP).to_numpy(bool)
    contact_of = pd.Series(np.flatnonzero(known), index=converted[known].to_numpy())
    return contact_of[~contact_of.index.duplicated()]


def _lead_rows(who: pd.Series, lead_index: pd.Index, contact_of: pd.Series) -> np.ndarray:
    """Each who_id's lead row: a lead id directly, a contact id through the lead it was
    converted from (-1: neither). A categorical's distinct ids are looked up, not its rows."""
    if isinstance(who.dtype, pd.CategoricalDtype):
        codes, uniques = distinct(who)
        return np.append(_lead_rows(uniques, lead_index, contact_of), -1)[codes]
    pos = positions(lead_index, who)
    missing = pos < 0
    if missing.any() and len(contact_of):
        via = positions(contact_of.index, who[missing])
        pos[missing] = np.where(via >= 0, contact_of.to_numpy()[np.maximum(via, 0)], -1)
    return pos


def _events(
    tables: ConnectorTables,
    form: EventForm,
    lead_index: pd.Index,
    contact_of: pd.Series,
    settings: SalesforceSettings,
    workers: int = 1,
) -> Iterator[EventChunk]:
    """The events of the task, event and (optionally) campaign_member tables; the task
    table's batches worked on by up to `workers` threads, which only read the hash tables of
    `lead_index` and `contact_of.index` (the caller builds them)."""
    tz = settings.timezone
    if tables.has("task"):
        context = ["description"] if form.context else []
        yield from tables.map_batches(
            "task",
            ["who_id"],
            partial(
                _task_events,
                tables=tables,
                form=form,
                lead_index=lead_index,
                contact_of=contact_of,
                settings=settings,
            ),
            optional=[
                settings.task_time,
                "created_date",
                "subject",
                "type",
                "task_subtype",
                *context,
                "is_deleted",
            ],
            dictionary=["who_id", "subject", "type", "task_subtype", *context],
            workers=workers,
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
            dictionary=["who_id", "subject", "type"],
        )
        if "is_deleted" in ev:
            ev = ev[~flags(ev["is_deleted"]).to_numpy()].reset_index(drop=True)
        stamp = next(
            (c for c in ("activity_date_time", "start_date_time", "created_date") if c in ev), None
        )
        if stamp is not None:
            fields = {c: ev[c] for c in ("subject", "type") if c in ev} or {
                "subject": pd.Series("", index=ev.index)
            }
            kind = classify(fields, settings.task_rules, "other")
            yield form.events(
                _lead_rows(ev["who_id"], lead_index, contact_of),
                times(ev[stamp], tz),
                kind,
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
                else pd.DataFrame({"id": pd.Series([], dtype="string")})
            )
            by_id = camp.set_index("id")
            fields = {
                "type": per_distinct(
                    members["campaign_id"],
                    lambda u: u.map(by_id["type"]) if "type" in by_id else u.map(lambda _: ""),
                )
            }
            kind = classify(fields, settings.campaign_rules, "other")
            name = (
                per_distinct(members["campaign_id"], lambda u: u.map(by_id["name"]))
                if "name" in by_id and form.context
                else None
            )
            yield form.events(
                _lead_rows(members["lead_id"], lead_index, contact_of),
                times(members["first_responded_date"], tz),
                kind,
                name,
            )


def _task_events(
    task: pd.DataFrame,
    tables: ConnectorTables,
    form: EventForm,
    lead_index: pd.Index,
    contact_of: pd.Series,
    settings: SalesforceSettings,
) -> EventChunk:
    """Contract events of one batch of the task table."""
    tz = settings.timezone
    if "is_deleted" in task:
        task = task[~flags(task["is_deleted"]).to_numpy()].reset_index(drop=True)
    at = times(task[settings.task_time], tz) if settings.task_time in task else None
    if "created_date" in task and (at is None or at.isna().any()):
        created = times(task["created_date"], tz)
        at = created if at is None else at.fillna(created)
    if at is None:
        from features.contract import ContractError

        raise ContractError(f"{tables.label('task')}: no {settings.task_time} or created_date")
    fields = {c: task[c] for c in ("subject", "type", "task_subtype") if c in task}
    if not fields:
        fields["subject"] = pd.Series("", index=task.index)
    kind = classify(fields, settings.task_rules, "other")
    campaign = None
    if "subject" in task and form.context:
        campaign = per_distinct(task["subject"], _subject_campaign)
    return form.events(
        _lead_rows(task["who_id"], lead_index, contact_of),
        at,
        kind,
        campaign,
        task.get("description"),
    )


def _subject_campaign(subjects: pd.Series) -> pd.Series:
    """The campaign a task's subject names after `: ` (not a form's name)."""
    text = subjects.astype("string")
    after = text.str.split(": ", n=1).str[1]
    return after.where(~text.str.match(_FORM).fillna(False))
