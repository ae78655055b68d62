"""The synthetic CRM as Fivetran's Salesforce connector lands it (see docs/crm-layouts.md).

Leads carry their current status, conversion fields (ConvertedDate a DATE without time), the
org's score and last-activity date as of the export; lead_history holds every Status change
with its time. Engagement is logged as Tasks on the lead (on the converted contact once the lead
is converted), with subjects a rule can classify, and campaign responses as campaign members.
Accounts, contacts and opportunities exist from the conversion. A pure transformation of the
contract frames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa

from features.layouts.common import (
    FORM_NAMES,
    account_profile,
    crm_score,
    id_checksum,
    lead_numbers,
    padded_ids,
    stable_number,
    text,
    to_table,
    utc,
)
from features.synthetic import SyntheticSnapshot

OWNER_ID: Final = "005000000000001AAA"
#: Lead Status values: (api_name, is_converted); open at creation, MQL, converted, disqualified.
OPEN, MQL, CONVERTED, UNQUALIFIED = (
    "Open - Not Contacted",
    "Marketing Qualified",
    "Closed - Converted",
    "Closed - Not Converted",
)
LEAD_STATUSES: Final = ((OPEN, False), ("Working - Contacted", False), (MQL, False),
                        (CONVERTED, True), (UNQUALIFIED, False))  # fmt: skip
#: Task subject (before any ": <campaign>") per contract event type; forms say which form.
TASK_SUBJECTS: Final = {
    "email_open": "Email Opened",
    "email_click": "Email Clicked",
    "email_reply": "Email Replied",
    "email_unsubscribe": "Email Unsubscribed",
    "email_bounce": "Email Bounced",
    "page_view": "Visited Web Page",
    "pricing_page_view": "Visited Pricing Page",
    "ad_click": "Clicked Ad",
    "social_engagement": "Social Engagement",
    "webinar_attendance": "Attended Webinar",
    "Sales Call": "Call",
    "chat_started": "Chat Started",
    "video_watched": "Watched Video",
    **{t: f"Form Submitted: {name}" for t, name in FORM_NAMES.items()},
}
_EMAIL_TYPES: Final = {
    "email_open",
    "email_click",
    "email_reply",
    "email_unsubscribe",
    "email_bounce",
}
#: Event types that make a campaign member a responder (HasResponded).
RESPONSE_TYPES: Final = {
    "email_click", "email_reply", "content_download", "webinar_registration",
    "webinar_attendance", "form_submission", "demo_request", "trial_signup", "ad_click",
}  # fmt: skip
#: Campaign Type per campaign kind (the kind is the middle of the generator's campaign names).
CAMPAIGN_TYPES: Final = {
    "email": "Email",
    "webinar": "Webinar",
    "paid_social": "Advertisement",
    "content": "Content",
    "event": "Conference",
}


def lead_id(lead_ids: pd.Series) -> pd.Series:
    """Lead Id (00Q...) from the contract lead id."""
    return padded_ids("00Q", lead_numbers(lead_ids))


def contact_id(lead_ids: pd.Series) -> pd.Series:
    """Id (003...) of the contact a converted lead became."""
    return padded_ids("003", lead_numbers(lead_ids))


def account_id(account_ids: pd.Series) -> pd.Series:
    """Account Id (001...) from the contract account id."""
    return padded_ids("001", lead_numbers(account_ids))


def campaign_id(name: str) -> str:
    """Campaign Id (701...), fixed by the campaign's name."""
    return f"701{stable_number(name, 12):012d}" + id_checksum("701")


def campaign_type(name: str) -> str:
    """Campaign Type from the generator's campaign name (`2025-02_paid_social_abm` -> kind)."""
    for kind, label in sorted(CAMPAIGN_TYPES.items(), key=lambda kv: -len(kv[0])):
        if f"_{kind}_" in name:
            return label
    return "Email"


def status_changes(leads: pd.DataFrame) -> pd.DataFrame:
    """Every Status change after creation: lead_id, old_value, new_value, created_date."""
    parts = [
        pd.DataFrame({"lead_id": rows["lead_id"], "new_value": value, "at": rows[column]})
        for column, value in (
            ("mql_at", MQL),
            ("sql_at", CONVERTED),
            ("disqualified_at", UNQUALIFIED),
        )
        for rows in [leads[leads[column].notna()]]
    ]
    changes = pd.concat(parts, ignore_index=True).sort_values(
        ["lead_id", "at"], kind="stable", ignore_index=True
    )
    previous = changes.groupby("lead_id")["new_value"].shift(1)
    return changes.assign(old_value=previous.where(previous.notna(), OPEN))


@dataclass
class SalesforceLayout:
    """Builds the Salesforce tables chunk by chunk; campaigns and statuses at the end."""

    next_event: int = 1
    next_history: int = 1
    next_member: int = 1
    members: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)

    def chunk_tables(self, chunk: SyntheticSnapshot) -> dict[str, pa.Table]:
        leads = chunk.leads
        events = chunk.events.reset_index(drop=True)
        numbers = np.arange(self.next_event, self.next_event + len(events), dtype=np.int64)
        self.next_event += len(events)
        converted_at = events[["lead_id"]].merge(leads[["lead_id", "sql_at"]], how="left")
        ev = events.assign(
            event_number=numbers,
            converted=(events["occurred_at"] >= converted_at["sql_at"]).to_numpy(),
        )
        history = self.history_frame(leads)
        members = self.member_frame(ev, leads)
        return {
            "lead": to_table(
                lead_frame(leads, events, chunk.as_of),
                dates=["converted_date", "last_activity_date"],
            ),
            "lead_history": to_table(history),
            "account": to_table(account_frame(leads)),
            "contact": to_table(contact_frame(leads)),
            "opportunity": to_table(opportunity_frame(leads)),
            "task": to_table(task_frame(ev, leads), dates=["activity_date"]),
            "campaign_member": to_table(members, dates=["first_responded_date"]),
        }

    def history_frame(self, leads: pd.DataFrame) -> pd.DataFrame:
        """lead_history: a `created` row at creation and one row per Status change."""
        changes = status_changes(leads)
        created = pd.DataFrame(
            {
                "lead_id": leads["lead_id"],
                "field": "created",
                "old_value": None,
                "new_value": None,
                "at": leads["created_at"],
            }
        )
        rows = pd.concat([created, changes.assign(field="Status")], ignore_index=True)
        rows = rows.sort_values(["lead_id", "at"], kind="stable", ignore_index=True)
        ids = np.arange(self.next_history, self.next_history + len(rows))
        self.next_history += len(rows)
        return pd.DataFrame(
            {
                "id": padded_ids("017", ids).to_numpy(),
                "is_deleted": False,
                "lead_id": lead_id(rows["lead_id"]).to_numpy(),
                "created_date": utc(rows["at"]),
                "field": text(rows["field"].to_numpy()),
                "data_type": text(rows["field"].map({"Status": "DynamicEnum"}).to_numpy()),
                "old_value": text(rows["old_value"].to_numpy()),
                "new_value": text(rows["new_value"].to_numpy()),
            }
        )

    def member_frame(self, ev: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
        """campaign_member: one row per campaign and person, from that person's campaign events."""
        touched = ev[ev["campaign"].notna()].assign(
            responded_at=lambda f: f["occurred_at"].where(f["event_type"].isin(RESPONSE_TYPES))
        )
        members = (
            touched.groupby(["campaign", "lead_id"], sort=True)
            .agg(created=("occurred_at", "min"), responded=("responded_at", "min"))
            .reset_index()
        )
        converted = members["lead_id"].map(leads.set_index("lead_id")["sql_at"]).notna()
        has_responded = members["responded"].notna()
        self.members.update(members["campaign"].tolist())
        self.responses.update(members.loc[has_responded, "campaign"].tolist())
        ids = np.arange(self.next_member, self.next_member + len(members))
        self.next_member += len(members)
        contact = contact_id(members["lead_id"]).where(converted.to_numpy(), None)
        return pd.DataFrame(
            {
                "id": padded_ids("00v", ids).to_numpy(),
                "is_deleted": False,
                "campaign_id": text(
                    members["campaign"]
                    .map({c: campaign_id(c) for c in members["campaign"].unique()})
                    .to_numpy()
                ),
                "lead_id": lead_id(members["lead_id"]).to_numpy(),
                "contact_id": text(contact.to_numpy()),
                "type": text(np.where(converted, "Contact", "Lead")),
                "status": text(np.where(has_responded, "Responded", "Sent")),
                "has_responded": has_responded.to_numpy(),
                "created_date": utc(members["created"]),
                "first_responded_date": utc(members["responded"]),
            }
        )

    def final_tables(self) -> dict[str, pa.Table]:
        names = sorted(self.members)
        starts = [
            pd.Timestamp(f"{n[:7]}-01", tz="UTC") if n[:4].isdigit() else pd.NaT for n in names
        ]
        campaigns = pd.DataFrame(
            {
                "id": text([campaign_id(n) for n in names]),
                "is_deleted": False,
                "name": text(names),
                "type": text([campaign_type(n) for n in names]),
                "status": text(["Completed"] * len(names)),
                "start_date": utc(starts),
                "number_of_leads": pd.array([self.members[n] for n in names], dtype="Int64"),
                "number_of_responses": pd.array([self.responses[n] for n in names], dtype="Int64"),
            }
        )
        statuses = pd.DataFrame(
            {
                "id": padded_ids("01J", np.arange(1, len(LEAD_STATUSES) + 1)).to_numpy(),
                "master_label": text([s for s, _ in LEAD_STATUSES]),
                "api_name": text([s for s, _ in LEAD_STATUSES]),
                "is_converted": [c for _, c in LEAD_STATUSES],
                "is_default": [s == OPEN for s, _ in LEAD_STATUSES],
                "sort_order": pd.array(np.arange(1, len(LEAD_STATUSES) + 1), dtype="Int64"),
            }
        )
        return {
            "campaign": to_table(campaigns, dates=["start_date"]),
            "lead_status": to_table(statuses),
        }


def lead_frame(leads: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """lead: fit fields, current status and conversion, and activity values as of the export."""
    ids = pd.Index(leads["lead_id"])
    seen = events.drop_duplicates()
    changes = status_changes(leads)
    status = changes.groupby("lead_id")["new_value"].last().reindex(ids).fillna(OPEN)
    converted = leads["sql_at"].notna().to_numpy()
    score = crm_score(seen, ids)
    rating = np.select([score >= 60, score >= 25], ["Hot", "Warm"], "Cold")
    by_lead = seen.groupby("lead_id")["occurred_at"]
    bounces = seen[seen["event_type"] == "email_bounce"].groupby("lead_id")["occurred_at"].max()
    opted_out = ids.isin(seen.loc[seen["event_type"] == "email_unsubscribe", "lead_id"])
    last_activity = by_lead.max().reindex(ids)
    profile = account_profile(leads)
    company = lead_numbers(leads["account_id"]).map(profile["name"])

    def if_converted(values: pd.Series) -> pd.Series:
        return text(values.where(converted, None).to_numpy())

    return pd.DataFrame(
        {
            "id": lead_id(leads["lead_id"]).to_numpy(),
            "is_deleted": False,
            "_fivetran_synced": utc([as_of] * len(leads)),
            "created_date": utc(leads["created_at"]),
            "email": text(leads["email"].to_numpy()),
            "title": text(leads["job_title"].to_numpy()),
            "company": text(company.to_numpy()),
            "industry": text(leads["industry"].to_numpy()),
            "country": text(leads["country"].to_numpy()),
            "number_of_employees": pd.array(leads["company_size"].to_numpy(), dtype="Int64"),
            "lead_source": text(leads["lead_source"].to_numpy()),
            "matched_account_c": text(account_id(leads["account_id"]).to_numpy()),
            "status": text(status.to_numpy()),
            "is_converted": converted,
            "converted_date": utc(leads["sql_at"].dt.floor("D")),
            "converted_account_id": if_converted(account_id(leads["account_id"])),
            "converted_contact_id": if_converted(contact_id(leads["lead_id"])),
            "converted_opportunity_id": if_converted(
                padded_ids("006", lead_numbers(leads["lead_id"]))
            ),
            "rating": text(rating),
            "pi_score_c": pd.array(score.to_numpy(), dtype="Int64"),
            "last_activity_date": utc(last_activity.dt.floor("D")),
            "last_modified_date": utc(
                pd.concat(
                    [
                        last_activity,
                        leads.set_index("lead_id")[
                            ["created_at", "mql_at", "sql_at", "disqualified_at"]
                        ],
                    ],
                    axis=1,
                ).max(axis=1)
            ),
            "email_bounced_date": utc(bounces.reindex(ids)),
            "email_bounced_reason": text(
                pd.Series(ids.isin(bounces.index)).map({True: "550 5.1.1 user unknown"}).to_numpy()
            ),
            "has_opted_out_of_email": opted_out,
            "owner_id": text([OWNER_ID] * len(leads)),
        }
    )


def account_frame(leads: pd.DataFrame) -> pd.DataFrame:
    """account: one per contract account (as a lead-to-account matching tool keeps them)."""
    first = account_profile(leads)
    return pd.DataFrame(
        {
            "id": padded_ids("001", first.index.to_numpy()).to_numpy(),
            "is_deleted": False,
            "created_date": utc(first["created"]),
            "name": text(first["name"].to_numpy()),
            "website": text(first["domain"].to_numpy()),
            "industry": text(first["industry"].to_numpy()),
            "billing_country": text(first["country"].to_numpy()),
            "number_of_employees": pd.array(first["size"].to_numpy(), dtype="Int64"),
        }
    )


def contact_frame(leads: pd.DataFrame) -> pd.DataFrame:
    """contact: the contact each converted lead became, created at the conversion."""
    done = leads[leads["sql_at"].notna()]
    return pd.DataFrame(
        {
            "id": contact_id(done["lead_id"]).to_numpy(),
            "is_deleted": False,
            "account_id": account_id(done["account_id"]).to_numpy(),
            "created_date": utc(done["sql_at"]),
            "email": text(done["email"].to_numpy()),
            "title": text(done["job_title"].to_numpy()),
            "lead_source": text(done["lead_source"].to_numpy()),
        }
    )


def opportunity_frame(leads: pd.DataFrame) -> pd.DataFrame:
    """opportunity: created at each conversion; its stage is the current one (a leak)."""
    done = leads[leads["sql_at"].notna()]
    return pd.DataFrame(
        {
            "id": padded_ids("006", lead_numbers(done["lead_id"])).to_numpy(),
            "is_deleted": False,
            "account_id": account_id(done["account_id"]).to_numpy(),
            "created_date": utc(done["sql_at"]),
            "stage_name": text(["Qualification"] * len(done)),
            "is_closed": False,
            "is_won": False,
            "lead_source": text(done["lead_source"].to_numpy()),
        }
    )


def task_frame(ev: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
    """task: every engagement event as a completed Task on the lead, or on its contact after
    the conversion; the subject names the activity (and campaign), the description its URL."""
    subject = ev["event_type"].map(TASK_SUBJECTS)
    with_campaign = ev["campaign"].notna() & ~ev["event_type"].isin(FORM_NAMES)
    subject = subject.where(~with_campaign, subject + ": " + ev["campaign"])
    converted = ev["converted"].to_numpy()
    who = np.where(converted, contact_id(ev["lead_id"]), lead_id(ev["lead_id"]))
    account = ev["lead_id"].map(leads.set_index("lead_id")["account_id"])
    is_email = ev["event_type"].isin(_EMAIL_TYPES).to_numpy()
    is_call = (ev["event_type"] == "Sales Call").to_numpy()
    at = utc(ev["occurred_at"])
    return pd.DataFrame(
        {
            "id": padded_ids("00T", ev["event_number"]).to_numpy(),
            "is_deleted": False,
            "who_id": text(who),
            "what_id": text([None] * len(ev)),
            "account_id": text(account_id(account).where(converted, None).to_numpy()),
            "subject": text(subject.to_numpy()),
            "type": text(np.select([is_email, is_call], ["Email", "Call"], "Other")),
            "task_subtype": text(np.select([is_email, is_call], ["Email", "Call"], "Task")),
            "status": text(["Completed"] * len(ev)),
            "is_closed": True,
            "activity_date": utc(at.dt.floor("D")),
            "completed_date_time": at,
            "created_date": at,
            "description": text(ev["url"].to_numpy()),
            "owner_id": text([OWNER_ID] * len(ev)),
        }
    )
