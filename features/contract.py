"""The CRM data contract: the columns of a snapshot's `leads` and `events` tables.

Everything that reads a snapshot maps it onto these names first, so the rest of the
package only ever sees contract columns.
"""

from __future__ import annotations

from typing import Final

LEAD_ID: Final = "lead_id"

#: Lead columns and whether each is required for a timestamped snapshot.
LEAD_COLUMNS: Final[dict[str, bool]] = {
    "lead_id": True,
    "account_id": False,
    "created_at": True,
    "mql_at": False,
    "sql_at": False,
    "disqualified_at": False,
    "job_title": False,
    "country": False,
    "industry": False,
    "lead_source": False,
    "company_size": False,
    "email": False,
}

LEAD_TIMESTAMPS: Final = ("created_at", "mql_at", "sql_at", "disqualified_at")
#: The order a lead's times keep, as (later, earlier) pairs: `later` never comes before
#: `earlier` when both are known. The reader, the quarantine and the API all check these.
TIMELINE_ORDER: Final = (
    ("mql_at", "created_at"),
    ("disqualified_at", "created_at"),
    ("sql_at", "mql_at"),
)
#: Categorical fit attributes whose values are normalised (trimmed, lower-cased).
LEAD_CATEGORIES: Final = ("country", "industry", "lead_source")

#: The outcome of a flat export that has no timestamps (e.g. a `Converted` flag).
CONVERTED: Final = "converted"

EVENT_COLUMNS: Final[dict[str, bool]] = {
    "lead_id": True,
    "occurred_at": True,
    "event_type": True,
    "campaign": False,
    "url": False,
}

#: The event types of the contract; anything else is kept as `other`.
EVENT_TYPES: Final = (
    "email_open",
    "email_click",
    "email_reply",
    "email_unsubscribe",
    "email_bounce",
    "page_view",
    "pricing_page_view",
    "content_download",
    "webinar_registration",
    "webinar_attendance",
    "form_submission",
    "demo_request",
    "trial_signup",
    "ad_click",
    "social_engagement",
    "other",
)

#: Mail domains of free providers: an address there says nothing about a company.
FREE_MAIL_DOMAINS: Final = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.ru",
        "yandex.ru",
        "qq.com",
        "163.com",
        "rediffmail.com",
        "zoho.com",
    }
)


class ContractError(ValueError):
    """A snapshot or config breaks the data contract; the message names what and where."""
