"""HubSpot as Fivetran's connector lands it: `contact` (+ `contact_property_history`,
`contact_company`), `email_event` (+ `email_event_click`, `email_campaign`),
`contact_form_submission` + `form`, `engagement` + `engagement_contact`, and the optional
`contacts_web_analytics` stream, turned into the contract's leads and events.

Only the contract's columns leave the adapter: the contact's current values and export-time
counts (lifecycle stage, lead status, scores, `num_*`, last-* dates) stay behind unless a
custom field names one, and then the training audit names it (features.presets.leaks).
Fit fields are taken as of each lead's MQL time from the property history when it has them.
See docs/hubspot.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from common.config import Config
from features.parallel import read_ahead, worker_count
from features.presets.addresses import AddressKeys, factorize_addresses, fold_addresses
from features.presets.common import (
    READ_AHEAD_BATCHES,
    EventForm,
    IdPositions,
    PresetFrames,
    Rule,
    classify,
    distinct,
    event_form,
    first_time,
    id_positions,
    per_distinct,
    positions,
    value_as_of,
)
from features.presets.tables import ConnectorTables, flags, ids, times
from features.reader.events import EventChunk

#: Contract fit column -> the HubSpot contact property it comes from (without `property_`).
FIT_PROPERTIES = {
    "email": "email",
    "job_title": "jobtitle",
    "country": "country",
    "industry": "industry",
}

#: Optional contacts_web_analytics columns the preset reads (text, read dictionary-encoded).
_WEB_COLUMNS = ("properties_hs_url", "properties_hs_page_title", "properties_hs_utm_campaign")

DEFAULT_FORM_RULES = (
    Rule(field="name", pattern="demo", event_type="demo_request"),
    Rule(field="name", pattern="trial|sign ?up", event_type="trial_signup"),
    Rule(field="name", pattern="webinar", event_type="webinar_registration"),
    Rule(
        field="name",
        pattern="download|content|ebook|whitepaper|guide",
        event_type="content_download",
    ),
    Rule(field="name", pattern=".", event_type="form_submission"),
)
DEFAULT_WEB_RULES = (
    Rule(field="page_title", pattern="^pricing", event_type="pricing_page_view"),
    Rule(field="url", pattern="/pricing", event_type="pricing_page_view"),
    Rule(field="event_type", pattern="^e_visited_page$", event_type="page_view"),
    Rule(field="event_type", pattern="^e_ad_interaction$", event_type="ad_click"),
    Rule(field="event_type", pattern="^e_social_media_click$", event_type="social_engagement"),
    Rule(field="event_type", pattern="^e_attended_marketing_event$",
         event_type="webinar_attendance"),
)  # fmt: skip


class HubSpotSettings(BaseModel):
    """The org-specific part of the HubSpot preset (`preset:` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lifecycle: Literal["auto", "dates", "history"] = Field(
        "auto",
        description="MQL/SQL times from the lifecycle date columns, from the lifecyclestage "
        "history, or auto: the dates when the contact table has them, else the history.",
    )
    date_family: Literal["legacy", "v2"] = Field(
        "legacy",
        description="legacy: hs_lifecyclestage_<stage>_date; v2: hs_v2_date_entered_<stage>.",
    )
    mql_stages: tuple[str, ...] = Field(
        ("marketingqualifiedlead",), description="Lifecycle stage values that mean MQL."
    )
    sql_stages: tuple[str, ...] = Field(
        ("salesqualifiedlead",), description="Lifecycle stage values that mean SQL."
    )
    disqualified_property: str = Field(
        "hs_lead_status", description="Property whose history gives the disqualification."
    )
    disqualified_values: tuple[str, ...] = Field(
        ("UNQUALIFIED",), description="Its values that mean disqualified."
    )
    account: Literal["associatedcompanyid", "contact_company"] = Field(
        "associatedcompanyid",
        description="The account: the contact's primary company property, or the "
        "contact_company association table.",
    )
    lead_source: str = Field(
        "lead_source",
        description="Contact property of the lead source (hs_analytics_source: the original "
        "traffic source, coarser).",
    )
    company_size: str = Field(
        "company_size",
        description="Contact property of the company size (numemployees: HubSpot's bands).",
    )
    fit_as_of: Literal["mql_at", "current"] = Field(
        "mql_at",
        description="Fit fields as of the lead's MQL time from contact_property_history "
        "(current value when a property has no history), or the current values.",
    )
    email_match: Literal["all", "unique"] = Field(
        "all",
        description="Email events reach contacts by address only: every contact with the "
        "address (as Fivetran's dbt package joins: sharers get each other's mail), or only "
        "addresses one contact has (a shared address's mail is left out).",
    )
    email_sharers_max: int = Field(
        10,
        ge=1,
        description="With email_match all: an address more contacts than this share reaches "
        "none of them (as `unique` treats every shared one). An address shared that widely is "
        "a free-mail or role address, not a person, and each of its emails would become an "
        "event of every sharer.",
    )
    email_types: dict[str, str] = Field(
        default_factory=lambda: {
            "OPEN": "email_open",
            "CLICK": "email_click",
            "BOUNCE": "email_bounce",
            "STATUSCHANGE": "email_unsubscribe",
        },
        description="email_event.type -> event type; other types (SENT, DELIVERED, ...) are "
        "left out.",
    )
    engagement_types: dict[str, str] = Field(
        default_factory=lambda: {
            "INCOMING_EMAIL": "email_reply",
            "CALL": "other",
            "MEETING": "other",
        },
        description="engagement.type -> event type; other types (NOTE, TASK, EMAIL) are left out.",
    )
    form_rules: tuple[Rule, ...] = Field(
        DEFAULT_FORM_RULES,
        description="Form submission -> event type by the form's `name`, `page_url` or "
        "`title`; first match wins, no match: form_submission.",
    )
    web_rules: tuple[Rule, ...] = Field(
        DEFAULT_WEB_RULES,
        description="Web-analytics event -> event type by `event_type`, `page_title` or "
        "`url`; first match wins, no match: other.",
    )
    timezone: str = Field("UTC", description="Time zone of times written without one.")


def _contact_columns(settings: HubSpotSettings, dates: bool) -> list[str]:
    columns = [f"property_{p}" for p in FIT_PROPERTIES.values()]
    columns += [f"property_{settings.lead_source}", f"property_{settings.company_size}"]
    if settings.account == "associatedcompanyid":
        columns.append("property_associatedcompanyid")
    if dates:
        columns += [_date_column(settings, s) for s in settings.mql_stages + settings.sql_stages]
    return columns


def _date_column(settings: HubSpotSettings, stage: str) -> str:
    if settings.date_family == "v2":
        return f"property_hs_v2_date_entered_{stage}"
    return f"property_hs_lifecyclestage_{stage}_date"


def read_hubspot(
    tables: ConnectorTables, config: Config, settings: HubSpotSettings, coded: bool = False
) -> PresetFrames:
    """Contract leads and events from HubSpot's connector tables; the events coded for the
    reader when `coded` (`features.presets.common.EventForm`)."""
    notes: list[str] = []
    custom = [cf.column for cf in config.custom_fields]
    has_history = tables.has("contact_property_history")
    use_dates = settings.lifecycle == "dates" or (
        settings.lifecycle == "auto" and _has_date_columns(tables, settings)
    )
    if not use_dates and not has_history:
        raise_missing(tables, "contact_property_history", "lifecycle: history")
    contact = tables.read(
        "contact",
        ["id", "property_createdate"],
        optional=[*_contact_columns(settings, use_dates), "_fivetran_deleted", *custom],
    )
    if "_fivetran_deleted" in contact:
        contact = contact[~flags(contact["_fivetran_deleted"])].reset_index(drop=True)
    lead_ids = ids(contact["id"])
    # built here, once: the threads that work on the event batches only read it
    contact_at = id_positions(pd.Index(contact["id"]))
    # distinct integer ids (the table by id holds each once) are distinct as text
    form = event_form(lead_ids, coded, unique=contact_at.table is not None)
    workers = worker_count(config.features.workers)
    # the tables that reach contacts by id start now, on the other core, while the lifecycle
    # times and the as-of values are worked out; the email events need those (the address as
    # of the MQL) and come after them
    contact_events = read_ahead(
        _contact_events(tables, form, contact_at, settings, workers), READ_AHEAD_BATCHES
    )
    if not (tables.has("engagement") and tables.has("engagement_contact")):
        notes.append("HubSpot: no engagement tables (replies, calls, meetings)")
    n = len(contact)
    tz = settings.timezone
    history = pd.DataFrame()
    if has_history:
        raw = tables.read(
            "contact_property_history",
            ["contact_id", "name", "value", "timestamp"],
            dictionary=["contact_id", "name"],
        )
        history = pd.DataFrame(
            {
                "pos": contact_at(raw["contact_id"]),
                "name": per_distinct(raw["name"], lambda u: u.astype("string").str.casefold()),
                "value": raw["value"],
                "at": times(raw["timestamp"], tz),
            }
        )

    def stage_time(stages: tuple[str, ...]) -> pd.Series:
        if use_dates:
            cols = [
                _date_column(settings, s) for s in stages if _date_column(settings, s) in contact
            ]
            if not cols:
                return pd.Series(pd.NaT, index=contact.index, dtype="datetime64[us, UTC]")
            stamps = pd.concat([times(contact[c], tz) for c in cols], axis=1)
            return stamps.min(axis=1).astype("datetime64[us, UTC]")
        mask = (history["name"] == "lifecyclestage") & history["value"].isin(stages)
        return first_time(history["pos"].to_numpy(), history["at"], mask.to_numpy(bool), n)

    leads = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "created_at": times(contact["property_createdate"], tz),
            "mql_at": stage_time(settings.mql_stages),
            "sql_at": stage_time(settings.sql_stages),
        }
    )
    notes.append(
        "HubSpot: MQL/SQL times from "
        + ("the lifecycle date columns" if use_dates else "the lifecyclestage history")
    )
    if has_history:
        dq_name = settings.disqualified_property.casefold()
        wanted = {v.casefold() for v in settings.disqualified_values}
        dq = np.flatnonzero((history["name"] == dq_name).to_numpy(bool))
        folded = per_distinct(
            history["value"].iloc[dq], lambda u: u.astype("string").str.casefold()
        )
        mask = folded.isin(wanted).to_numpy(bool)
        dq_at = history["at"].iloc[dq]
        leads["disqualified_at"] = first_time(history["pos"].to_numpy()[dq], dq_at, mask, n)
    else:
        notes.append("HubSpot: no contact_property_history, so no disqualification time")
    leads["account_id"] = _accounts(tables, contact, lead_ids, settings)
    fit = {
        **{c: f"property_{p}" for c, p in FIT_PROPERTIES.items()},
        "lead_source": f"property_{settings.lead_source}",
        "company_size": f"property_{settings.company_size}",
    }
    cutoff = leads["mql_at"]
    as_of_mql = settings.fit_as_of == "mql_at" and not history.empty
    for column, source in fit.items():
        current = contact[source] if source in contact else pd.Series(pd.NA, index=contact.index)
        values = current.astype("string") if column != "company_size" else current
        if as_of_mql:
            prop = source.removeprefix("property_").casefold()
            changes = np.flatnonzero((history["name"] == prop).to_numpy(bool))
            values, _ = value_as_of(values, cutoff, history, changes)
        leads[column] = values
    if as_of_mql:
        notes.append("HubSpot: fit fields as of each lead's mql_at from contact_property_history")
    for column in custom:
        if column in contact:
            leads[column] = contact[column]
    events: Iterator[EventChunk] = contact_events
    if tables.has("email_event"):
        email = _email_events(tables, form, leads["email"], settings, workers)
        events = itertools.chain(contact_events, email)
    return PresetFrames(leads, events, tables.label("contact"), "HubSpot engagement tables", notes)


def raise_missing(tables: ConnectorTables, table: str, why: str) -> None:
    from features.contract import ContractError

    raise ContractError(f"{why} needs the table {table!r}, not found in {tables.where}")


def _has_date_columns(tables: ConnectorTables, settings: HubSpotSettings) -> bool:
    frame = tables.read(
        "contact", ["id"], optional=[_date_column(settings, settings.mql_stages[0])]
    )
    return frame.shape[1] > 1


def _accounts(
    tables: ConnectorTables, contact: pd.DataFrame, lead_ids: pd.Series, settings: HubSpotSettings
) -> pd.Series:
    if settings.account == "associatedcompanyid":
        if "property_associatedcompanyid" not in contact:
            return pd.Series(pd.NA, index=contact.index, dtype="string")
        return ids(contact["property_associatedcompanyid"])
    link = tables.read("contact_company", ["contact_id", "company_id"], optional=["type_id"])
    if "type_id" in link:
        primary = pd.to_numeric(link["type_id"], errors="coerce") == 1
        link = link[primary.to_numpy()]
    first = pd.Series(ids(link["company_id"]).to_numpy(), index=ids(link["contact_id"]).to_numpy())
    first = first[~first.index.duplicated()]
    return pd.Series(lead_ids.map(first).to_numpy(), index=contact.index, dtype="string")


def _contact_events(
    tables: ConnectorTables,
    form: EventForm,
    contact_at: IdPositions,
    settings: HubSpotSettings,
    workers: int = 1,
) -> Iterator[EventChunk]:
    """The events of the tables that name the contact by id (form submissions, web
    analytics, engagements); the web-analytics batches worked on by up to `workers` threads."""
    tz = settings.timezone
    if tables.has("contact_form_submission"):
        sub = tables.read(
            "contact_form_submission",
            ["contact_id", "form_id", "timestamp"],
            optional=["page_url", "title"],
            dictionary=["contact_id", "form_id", "page_url", "title"],
        )
        fields: dict[str, pd.Series] = {}
        if tables.has("form"):
            forms = tables.read("form", ["guid"], optional=["name"])
            if "name" in forms:
                names = pd.Series(forms["name"].to_numpy(), index=forms["guid"].to_numpy())
                fields["name"] = per_distinct(sub["form_id"], lambda u: u.map(names))
        for column in ("page_url", "title"):
            if column in sub:
                fields[column] = sub[column]
        if not fields:
            fields["name"] = pd.Series("", index=sub.index)
        kind = classify(fields, settings.form_rules, "form_submission")
        yield form.events(
            contact_at(sub["contact_id"]),
            times(sub["timestamp"], tz),
            kind,
            None,
            sub.get("page_url"),
        )
    if tables.has("contacts_web_analytics"):
        web_columns = _WEB_COLUMNS if form.context else _WEB_COLUMNS[:2]  # not utm_campaign
        yield from tables.map_batches(
            "contacts_web_analytics",
            ["object_id", "event_type", "occurred_at"],
            partial(_web_events, form=form, contact_at=contact_at, settings=settings),
            optional=[*web_columns, "object_type"],
            dictionary=["object_id", "event_type", *web_columns, "object_type"],
            workers=workers,
        )
    if tables.has("engagement") and tables.has("engagement_contact"):
        eng = tables.read("engagement", ["id", "type", "timestamp"], dictionary=["type"])
        link = tables.read("engagement_contact", ["engagement_id", "contact_id"])
        at = positions(pd.Index(eng["id"]), link["engagement_id"])
        found = at >= 0
        types = settings.engagement_types
        kind = per_distinct(eng["type"], lambda u: u.astype("string").str.upper().map(types))
        safe = np.maximum(at, 0)
        if len(eng):
            kinds: Any = np.where(found, kind.astype(object).to_numpy()[safe], None)
            stamps = pd.Series(times(eng["timestamp"], tz).array.take(safe))
        else:
            kinds, stamps = [], pd.Series([], dtype="datetime64[us, UTC]")
        yield form.events(
            np.where(found, contact_at(link["contact_id"]), -1),
            stamps,
            pd.Series(kinds, dtype=object),
        )


def _web_events(
    web: pd.DataFrame, form: EventForm, contact_at: IdPositions, settings: HubSpotSettings
) -> EventChunk:
    """Contract events of one batch of contacts_web_analytics."""
    pos = contact_at(web["object_id"])
    if "object_type" in web:
        upper = per_distinct(web["object_type"], lambda u: u.astype("string").str.upper())
        pos = np.where((upper == "CONTACT").to_numpy(bool), pos, -1)
    fields = {"event_type": web["event_type"]}
    if "properties_hs_page_title" in web:
        fields["page_title"] = web["properties_hs_page_title"]
    if "properties_hs_url" in web:
        fields["url"] = web["properties_hs_url"]
    kind = classify(fields, settings.web_rules, "other")
    return form.events(
        pos,
        times(web["occurred_at"], settings.timezone),
        kind,
        web.get("properties_hs_utm_campaign"),
        web.get("properties_hs_url"),
    )


def _email_events(
    tables: ConnectorTables,
    form: EventForm,
    emails: pd.Series,
    settings: HubSpotSettings,
    workers: int = 1,
) -> Iterator[EventChunk]:
    """Marketing-email events, reaching contacts (`emails`: each lead's address) by address
    only (case-insensitive), a batch of events per batch of the email_event table, worked on
    by up to `workers` threads."""
    owners = email_owners(emails, _most_sharers(settings))
    names = None
    if tables.has("email_campaign") and form.context:
        camp = tables.read("email_campaign", ["id"], optional=["name"])
        if "name" in camp:
            names = pd.Series(camp["name"].to_numpy(), index=camp["id"].to_numpy())
    campaign = ["email_campaign_id"] if form.context else []
    # `id` (no use here) is left unread: it is a distinct text per row
    yield from tables.map_batches(
        "email_event",
        ["type", "created", "recipient"],
        partial(_email_batch, owners=owners, names=names, form=form, settings=settings),
        optional=[*campaign, "filtered_event"],
        dictionary=["type", "recipient", *campaign],
        workers=workers,
    )


def _most_sharers(settings: HubSpotSettings) -> int:
    """How many contacts may share an address that still reaches them."""
    return 1 if settings.email_match == "unique" else settings.email_sharers_max


@dataclass(frozen=True)
class EmailOwners:
    """The contacts each folded address reaches, built once for every email_event batch.

    The contacts of address `i` of `addresses` are `pos[starts[i]:starts[i + 1]]`, in row
    order. A batch then looks up only its own distinct recipients, instead of joining them
    with every contact's address anew."""

    addresses: AddressKeys
    starts: np.ndarray
    pos: np.ndarray

    def reach(self, codes: np.ndarray, recipients: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """For rows with per-row `codes` (-1: none) into the distinct `recipients`: the row of
        each (row, contact) pair that an address reaches, and the contact's position; a row
        appears once per contact, in row order."""
        found = self.addresses.find(fold_addresses(recipients))
        known = np.flatnonzero(found >= 0)
        # per distinct recipient, then the last for code -1 (no recipient): how many contacts
        # it reaches and where they start in `pos`
        count = np.zeros(len(found) + 1, dtype=np.int64)
        count[known] = np.diff(self.starts)[found[known]]
        first = np.zeros(len(found) + 1, dtype=np.int64)
        first[known] = self.starts[found[known]]
        per_row = count[codes]
        if per_row.max(initial=0) <= 1:  # no shared address among these rows
            rows = np.flatnonzero(per_row)
            return rows, self.pos[first[codes[rows]]]
        rows = np.repeat(np.arange(len(codes)), per_row)
        # the k-th pair of a row takes pos[first + k]: first minus the pairs before the row,
        # plus the pair's own number
        shift = np.repeat(first[codes] - (np.cumsum(per_row) - per_row), per_row)
        return rows, self.pos[shift + np.arange(len(rows))]


def email_owners(emails: pd.Series, most_sharers: int) -> EmailOwners:
    """`EmailOwners` of each lead's address (`emails`, by row), an address reaching its
    contacts only when at most `most_sharers` of them have it."""
    codes, addresses = factorize_addresses(fold_addresses(emails))
    have = np.flatnonzero(codes >= 0)
    codes = codes[have]
    sharers = np.bincount(codes, minlength=len(addresses.text))
    reaches = sharers <= most_sharers
    kept = reaches[codes]
    # addresses renumbered to those that reach; contacts grouped by address, in row order
    number = np.cumsum(reaches) - 1
    order = np.argsort(number[codes[kept]], kind="stable")
    reaching = addresses.restrict(np.flatnonzero(reaches))
    starts = np.concatenate([[0], np.cumsum(sharers[reaches])]).astype(np.int64)
    return EmailOwners(reaching, starts, have[kept][order].astype(np.int64))


def _email_batch(
    mail: pd.DataFrame,
    owners: EmailOwners,
    names: pd.Series | None,
    form: EventForm,
    settings: HubSpotSettings,
) -> EventChunk:
    """Contract events of one batch of email_event, given the contacts each address reaches
    (`owners`) and the campaign names by id."""
    types = settings.email_types
    kind = per_distinct(mail["type"], lambda u: u.astype("string").str.upper().map(types))
    keep = kind.notna().to_numpy()
    if "filtered_event" in mail:
        keep = keep & ~flags(mail["filtered_event"]).to_numpy()
    kept = np.flatnonzero(keep)
    codes, addresses = distinct(mail["recipient"])
    rows, pos = owners.reach(codes[kept], addresses)
    rows = kept[rows]  # rows of the batch, each once per contact its address reaches
    campaign = None
    if "email_campaign_id" in mail and names is not None:
        campaign = per_distinct(mail["email_campaign_id"], lambda u: u.map(names))
        campaign = pd.Series(campaign.array.take(rows))
    return form.events(
        pos,
        pd.Series(times(mail["created"], settings.timezone).array.take(rows)),
        pd.Series(kind.array.take(rows)),
        campaign,
        None,
    )
