"""The synthetic CRM as Fivetran's HubSpot connector lands it (see docs/crm-layouts.md).

Contacts carry `property_<name>` columns, lifecycle-stage dates and the current values and
export-time aggregates a real portal has (lifecycle stage, lead status, HubSpot score, page-view
and email counts, last-activity dates). Events go where HubSpot keeps them: marketing-email
events linked to contacts only by the recipient's address, form submissions, engagements
(incoming emails, calls) and web-analytics events. A pure transformation of the contract frames.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa

from features.layouts.common import (
    FORM_NAMES,
    account_profile,
    crm_score,
    lead_numbers,
    stable_number,
    text,
    to_table,
    utc,
)
from features.synthetic import SyntheticSnapshot

PORTAL_ID: Final = 4_410_527
#: Marketing-email event types (email_event.type) per contract event type.
EMAIL_EVENT_TYPES: Final = {
    "email_open": "OPEN",
    "email_click": "CLICK",
    "email_bounce": "BOUNCE",
    "email_unsubscribe": "STATUSCHANGE",
}
#: Engagement types per contract event type (sales activity logged on the contact).
ENGAGEMENT_TYPES: Final = {"email_reply": "INCOMING_EMAIL", "Sales Call": "CALL"}
#: Web-analytics event names per contract event type (pricing pages are `e_visited_page` too;
#: the page title tells them apart). Custom behavioural events are named pe<portal>_<name>.
WEB_EVENT_TYPES: Final = {
    "page_view": "e_visited_page",
    "pricing_page_view": "e_visited_page",
    "ad_click": "e_ad_interaction",
    "social_engagement": "e_social_media_click",
    "webinar_attendance": "e_attended_marketing_event",
    "chat_started": f"pe{PORTAL_ID}_chat_started",
    "video_watched": f"pe{PORTAL_ID}_video_watched",
}
#: Page titles of visited pages (the URL is missing on some events; the title is not).
PAGE_TITLES: Final = {"page_view": "Example SaaS", "pricing_page_view": "Pricing | Example SaaS"}
#: Lifecycle stage values (contact.property_lifecyclestage and its history).
LEAD, MQL, SQL = "lead", "marketingqualifiedlead", "salesqualifiedlead"
#: hs_lead_status values: new, being worked (from the MQL), open deal (SQL), unqualified.
STATUS_NEW, STATUS_WORKING, STATUS_DEAL, STATUS_DQ = (
    "NEW",
    "ATTEMPTED_TO_CONTACT",
    "OPEN_DEAL",
    "UNQUALIFIED",
)
#: hs_analytics_source (original traffic source) per canonical contract lead source.
ANALYTICS_SOURCES: Final = {
    "organic_search": "ORGANIC_SEARCH",
    "paid_search": "PAID_SEARCH",
    "paid_social": "PAID_SOCIAL",
    "webinar": "OTHER_CAMPAIGNS",
    "content_syndication": "OTHER_CAMPAIGNS",
    "referral": "REFERRALS",
    "event": "OFFLINE",
    "direct": "DIRECT_TRAFFIC",
    "partner": "REFERRALS",
}
#: property_numemployees bands (HubSpot's default options) and their upper bounds.
EMPLOYEE_BANDS: Final = ("1-5", "5-25", "25-50", "50-100", "100-500", "500-1000", "1000+")
_BAND_EDGES: Final = (0, 5, 25, 50, 100, 500, 1000, np.inf)
#: Contact fit properties written to contact_property_history at creation (from the form).
FIT_PROPERTIES: Final = {
    "email": "email",
    "jobtitle": "job_title",
    "country": "country",
    "industry": "industry",
    "company_size": "company_size",
    "lead_source": "lead_source",
}
_FORM_NAMESPACE: Final = uuid.UUID("6f1c0c2e-9d7e-4c5b-8a55-0b8e3e7a1d42")


def form_guid(event_type: str) -> str:
    """The guid of the form a contract form-like event type is submitted through."""
    return str(uuid.uuid5(_FORM_NAMESPACE, FORM_NAMES[event_type]))


def employee_band(size: pd.Series) -> pd.Series:
    """property_numemployees: the company size as one of HubSpot's bands (loses the number)."""
    bands = pd.cut(size.astype("float64"), bins=list(_BAND_EDGES), labels=list(EMPLOYEE_BANDS))
    return text(bands.astype("object").where(bands.notna(), None))


def analytics_source(lead_source: pd.Series) -> pd.Series:
    """hs_analytics_source from the written lead source (unknown or missing: OTHER_CAMPAIGNS)."""
    canonical = lead_source.str.strip().str.lower()
    mapped = canonical.map(ANALYTICS_SOURCES)
    return text(mapped.where(lead_source.isna() | mapped.notna(), "OTHER_CAMPAIGNS"))


@dataclass
class HubSpotLayout:
    """Builds the HubSpot tables chunk by chunk; campaigns and forms are written at the end."""

    next_event: int = 1
    campaigns: set[str] = field(default_factory=set)

    def chunk_tables(self, chunk: SyntheticSnapshot) -> dict[str, pa.Table]:
        leads = chunk.leads
        events = chunk.events.reset_index(drop=True)
        numbers = np.arange(self.next_event, self.next_event + len(events), dtype=np.int64)
        self.next_event += len(events)
        self.campaigns.update(events["campaign"].dropna().unique().tolist())
        emails = leads.set_index("lead_id")["email"]
        ev = events.assign(
            event_number=numbers,
            contact_id=lead_numbers(events["lead_id"]),
            recipient=text(events["lead_id"].map(emails)),
        )
        tables = {
            "contact": to_table(contact_frame(leads, events, chunk.as_of)),
            "company": to_table(company_frame(leads)),
            "contact_company": to_table(contact_company_frame(leads)),
            "contact_property_history": to_table(property_history_frame(leads)),
            "contact_form_submission": to_table(form_submission_frame(ev)),
            "contacts_web_analytics": to_table(web_analytics_frame(ev)),
        }
        tables.update(email_event_tables(ev))
        tables.update(engagement_tables(ev))
        return tables

    def final_tables(self) -> dict[str, pa.Table]:
        names = sorted(self.campaigns)
        campaigns = pd.DataFrame(
            {
                "id": pd.Series([stable_number(n) for n in names], dtype="int64"),
                "name": text(names),
                "app_name": text(["Batch"] * len(names)),
                "type": text(["BATCH_EMAIL"] * len(names)),
            }
        )
        forms = pd.DataFrame(
            {
                "guid": text([form_guid(t) for t in FORM_NAMES]),
                "name": text(list(FORM_NAMES.values())),
                "form_type": text(["HUBSPOT"] * len(FORM_NAMES)),
                "portal_id": pd.Series([PORTAL_ID] * len(FORM_NAMES), dtype="int64"),
            }
        )
        return {"email_campaign": to_table(campaigns), "form": to_table(forms)}


def company_frame(leads: pd.DataFrame) -> pd.DataFrame:
    """One company per account: firmographics of its first lead that has them, current values."""
    first = account_profile(leads)
    return pd.DataFrame(
        {
            "id": pd.Series(first.index, dtype="int64"),
            "_fivetran_deleted": False,
            "property_createdate": utc(first["created"]),
            "property_name": text(first["name"].to_numpy()),
            "property_domain": text(first["domain"].to_numpy()),
            "property_industry": text(first["industry"].to_numpy()),
            "property_country": text(first["country"].to_numpy()),
            "property_numberofemployees": pd.array(first["size"].to_numpy(), dtype="Int64"),
        }
    )


def contact_company_frame(leads: pd.DataFrame) -> pd.DataFrame:
    """The contact's primary company association (one row per contact with an account)."""
    linked = leads[leads["account_id"].notna()]
    return pd.DataFrame(
        {
            "contact_id": lead_numbers(linked["lead_id"]).to_numpy(),
            "company_id": lead_numbers(linked["account_id"]).to_numpy(),
            "type_id": pd.Series(np.ones(len(linked), dtype=np.int64)),
            "category": text(["HUBSPOT_DEFINED"] * len(linked)),
        }
    )


def lead_status_changes(leads: pd.DataFrame) -> pd.DataFrame:
    """Every lifecyclestage and hs_lead_status change: contact lead_id, name, value, timestamp."""
    parts = []
    for column, name, value in (
        ("created_at", "lifecyclestage", LEAD),
        ("mql_at", "lifecyclestage", MQL),
        ("sql_at", "lifecyclestage", SQL),
        ("created_at", "hs_lead_status", STATUS_NEW),
        ("mql_at", "hs_lead_status", STATUS_WORKING),
        ("sql_at", "hs_lead_status", STATUS_DEAL),
        ("disqualified_at", "hs_lead_status", STATUS_DQ),
    ):
        at = leads[leads[column].notna()]
        parts.append(
            pd.DataFrame(
                {"lead_id": at["lead_id"], "name": name, "value": value, "timestamp": at[column]}
            )
        )
    changes = pd.concat(parts, ignore_index=True)
    return changes.sort_values(["lead_id", "timestamp"], kind="stable", ignore_index=True)


def _current(changes: pd.DataFrame, name: str, index: pd.Index) -> pd.Series:
    last = changes[changes["name"] == name].groupby("lead_id")["value"].last()
    return text(last.reindex(index).to_numpy())


def property_history_frame(leads: pd.DataFrame) -> pd.DataFrame:
    """contact_property_history: status changes plus each fit property as set at creation."""
    status = lead_status_changes(leads).assign(
        source=lambda f: np.where(f["name"] == "lifecyclestage", "AUTOMATION_PLATFORM", "CRM_UI")
    )
    fit = []
    for name, column in FIT_PROPERTIES.items():
        known = leads[leads[column].notna()]
        fit.append(
            pd.DataFrame(
                {
                    "lead_id": known["lead_id"],
                    "name": name,
                    "value": known[column].astype("string"),
                    "timestamp": known["created_at"],
                    "source": "FORM",
                }
            )
        )
    rows = pd.concat([*fit, status], ignore_index=True)
    return pd.DataFrame(
        {
            "contact_id": lead_numbers(rows["lead_id"]).to_numpy(),
            "name": text(rows["name"].to_numpy()),
            "value": text(rows["value"].to_numpy()),
            "timestamp": utc(rows["timestamp"]),
            "source": text(rows["source"].to_numpy()),
            "source_id": text([None] * len(rows)),
        }
    )


def _per_lead(events: pd.DataFrame, index: pd.Index, types: set[str] | None = None) -> pd.Series:
    kept = events if types is None else events[events["event_type"].isin(types)]
    return kept.groupby("lead_id")["occurred_at"].count().reindex(index, fill_value=0)


def _last(events: pd.DataFrame, index: pd.Index, types: set[str] | None = None) -> pd.Series:
    kept = events if types is None else events[events["event_type"].isin(types)]
    return utc(kept.groupby("lead_id")["occurred_at"].max().reindex(index))


def contact_frame(leads: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """contact: fit properties, lifecycle dates, and values and counts as of the export (`as_of`).

    The counts come from the events once (the portal does not count a duplicate twice).
    """
    ids = pd.Index(leads["lead_id"])
    seen = events.drop_duplicates()
    changes = lead_status_changes(leads)
    web = {"page_view", "pricing_page_view"}
    forms = set(FORM_NAMES)
    sales = set(ENGAGEMENT_TYPES)
    score = crm_score(seen, ids)
    visits = seen[seen["event_type"].isin(web)]
    n_visits = (
        visits.assign(day=visits["occurred_at"].dt.floor("D"))
        .groupby("lead_id")["day"]
        .nunique()
        .reindex(ids, fill_value=0)
    )
    first_form = seen[seen["event_type"].isin(forms)].groupby("lead_id")["occurred_at"].min()
    last_any = pd.concat([_last(seen, ids), leads[["mql_at", "sql_at", "disqualified_at"]]], axis=1)
    last_modified = utc(pd.concat([last_any.max(axis=1), leads["created_at"]], axis=1).max(axis=1))

    def count(types: set[str]) -> pd.Series:
        return pd.Series(_per_lead(seen, ids, types).to_numpy(), dtype="Int64")

    return pd.DataFrame(
        {
            "id": lead_numbers(leads["lead_id"]).to_numpy(),
            "_fivetran_deleted": False,
            "_fivetran_synced": utc([as_of] * len(leads)),
            "property_createdate": utc(leads["created_at"]),
            "property_email": text(leads["email"].to_numpy()),
            "property_jobtitle": text(leads["job_title"].to_numpy()),
            "property_country": text(leads["country"].to_numpy()),
            "property_industry": text(leads["industry"].to_numpy()),
            "property_company_size": text(leads["company_size"].astype("string").to_numpy()),
            "property_numemployees": employee_band(leads["company_size"]).to_numpy(),
            "property_associatedcompanyid": pd.array(
                lead_numbers(leads["account_id"]).to_numpy(), dtype="Int64"
            ),
            "property_lead_source": text(leads["lead_source"].to_numpy()),
            "property_hs_analytics_source": analytics_source(leads["lead_source"]).to_numpy(),
            "property_hs_lifecyclestage_lead_date": utc(leads["created_at"]),
            "property_hs_lifecyclestage_marketingqualifiedlead_date": utc(leads["mql_at"]),
            "property_hs_lifecyclestage_salesqualifiedlead_date": utc(leads["sql_at"]),
            "property_lifecyclestage": _current(changes, "lifecyclestage", ids).to_numpy(),
            "property_hs_lead_status": _current(changes, "hs_lead_status", ids).to_numpy(),
            "property_hubspotscore": pd.array(score.to_numpy().astype(np.int64), dtype="Int64"),
            "property_hs_analytics_num_page_views": count(web).to_numpy(),
            "property_hs_analytics_num_visits": pd.array(n_visits.to_numpy(), dtype="Int64"),
            "property_num_conversion_events": count(forms).to_numpy(),
            "property_hs_email_open": count({"email_open"}).to_numpy(),
            "property_hs_email_click": count({"email_click"}).to_numpy(),
            "property_hs_email_bounce": count({"email_bounce"}).to_numpy(),
            "property_hs_email_optout": (_per_lead(seen, ids, {"email_unsubscribe"}) > 0)
            .to_numpy()
            .astype(bool),
            "property_hs_analytics_last_timestamp": _last(seen, ids, web),
            "property_notes_last_updated": _last(seen, ids, sales),
            "property_first_conversion_date": utc(first_form.reindex(ids)),
            "property_recent_conversion_date": _last(seen, ids, forms),
            "property_lastmodifieddate": last_modified,
        }
    )


def email_event_tables(ev: pd.DataFrame) -> dict[str, pa.Table]:
    """email_event and its per-type tables; rows only for contacts with an address to send to."""
    mail = ev[ev["event_type"].isin(EMAIL_EVENT_TYPES) & ev["recipient"].notna()]
    ids = mail["event_number"].astype(str).to_numpy()
    numbers = {c: stable_number(c) for c in mail["campaign"].dropna().unique()}
    campaign_id = mail["campaign"].map(numbers).astype("Int64").to_numpy()
    base = pd.DataFrame(
        {
            "id": text(ids),
            "type": text(mail["event_type"].map(EMAIL_EVENT_TYPES).to_numpy()),
            "created": utc(mail["occurred_at"]),
            "recipient": text(mail["recipient"].to_numpy()),
            "email_campaign_id": campaign_id,
            "portal_id": pd.Series(np.full(len(mail), PORTAL_ID, dtype=np.int64)),
            "filtered_event": False,
            "sent_by_created": utc([pd.NaT] * len(mail)),
        }
    )
    is_type = {t: (mail["event_type"] == t).to_numpy() for t in EMAIL_EVENT_TYPES}
    opens = pd.DataFrame({"id": text(ids[is_type["email_open"]]), "duplicate": False})
    clicks = pd.DataFrame(
        {
            "id": text(ids[is_type["email_click"]]),
            "url": text(mail["url"].to_numpy()[is_type["email_click"]]),
        }
    )
    bounces = pd.DataFrame(
        {"id": text(ids[is_type["email_bounce"]]), "category": "UNKNOWN_USER", "status": "5.1.1"}
    )
    changes = pd.DataFrame(
        {
            "id": text(ids[is_type["email_unsubscribe"]]),
            "portal_subscription_status": "UNSUBSCRIBED",
            "source": "SOURCE_RECIPIENT",
        }
    )
    return {
        "email_event": to_table(base),
        "email_event_open": to_table(opens),
        "email_event_click": to_table(clicks),
        "email_event_bounce": to_table(bounces),
        "email_event_status_change": to_table(changes),
    }


def conversion_ids(numbers: pd.Series) -> pd.Series:
    """A uuid-shaped conversion id per submission, from its event number (unique, fixed)."""
    digits = pd.Series(numbers.to_numpy()).map("{:012x}".format)
    return text(("6f1c0c2e-9d7e-4c5b-8a55-" + digits).to_numpy())


def form_submission_frame(ev: pd.DataFrame) -> pd.DataFrame:
    """contact_form_submission: the form (by guid) and the page it was submitted on."""
    forms = ev[ev["event_type"].isin(FORM_NAMES)]
    return pd.DataFrame(
        {
            "contact_id": forms["contact_id"].to_numpy(),
            "form_id": text(
                forms["event_type"].map({t: form_guid(t) for t in FORM_NAMES}).to_numpy()
            ),
            "timestamp": utc(forms["occurred_at"]),
            "conversion_id": conversion_ids(forms["event_number"]),
            "page_url": text(forms["url"].to_numpy()),
            "title": text(forms["event_type"].map(FORM_NAMES).to_numpy()),
            "portal_id": pd.Series(np.full(len(forms), PORTAL_ID, dtype=np.int64)),
        }
    )


def web_analytics_frame(ev: pd.DataFrame) -> pd.DataFrame:
    """contacts_web_analytics: HubSpot's web-analytics events of a contact (page views, ads)."""
    web = ev[ev["event_type"].isin(WEB_EVENT_TYPES)]
    return pd.DataFrame(
        {
            "id": text(web["event_number"].astype(str).to_numpy()),
            "object_type": text(["CONTACT"] * len(web)),
            "object_id": web["contact_id"].to_numpy(),
            "event_type": text(web["event_type"].map(WEB_EVENT_TYPES).to_numpy()),
            "occurred_at": utc(web["occurred_at"]),
            "properties_hs_url": text(web["url"].to_numpy()),
            "properties_hs_page_title": text(web["event_type"].map(PAGE_TITLES).to_numpy()),
            "properties_hs_utm_campaign": text(web["campaign"].to_numpy()),
        }
    )


def engagement_tables(ev: pd.DataFrame) -> dict[str, pa.Table]:
    """engagement, engagement_contact, engagement_email (replies) and engagement_call."""
    act = ev[ev["event_type"].isin(ENGAGEMENT_TYPES)]
    ids = act["event_number"].to_numpy()
    at = utc(act["occurred_at"])
    engagement = pd.DataFrame(
        {
            "id": ids,
            "type": text(act["event_type"].map(ENGAGEMENT_TYPES).to_numpy()),
            "timestamp": at,
            "created_at": at,
            "active": True,
            "portal_id": pd.Series(np.full(len(act), PORTAL_ID, dtype=np.int64)),
        }
    )
    link = pd.DataFrame({"engagement_id": ids, "contact_id": act["contact_id"].to_numpy()})
    is_reply = (act["event_type"] == "email_reply").to_numpy()
    subject = act["campaign"].where(act["campaign"].notna(), "your note")
    emails = pd.DataFrame(
        {
            "engagement_id": ids[is_reply],
            "property_hs_timestamp": at[is_reply].reset_index(drop=True),
            "property_hs_email_direction": "INCOMING_EMAIL",
            "property_hs_email_subject": text(("Re: " + subject).to_numpy()[is_reply]),
        }
    )
    calls = pd.DataFrame(
        {
            "engagement_id": ids[~is_reply],
            "property_hs_timestamp": at[~is_reply].reset_index(drop=True),
            "property_hs_call_direction": "OUTBOUND",
            "property_hs_call_status": "COMPLETED",
        }
    )
    return {
        "engagement": to_table(engagement),
        "engagement_contact": to_table(link),
        "engagement_email": to_table(emails),
        "engagement_call": to_table(calls),
    }
