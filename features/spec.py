"""What each feature means: its family, unit, window and how a value of it is worded.

The reasons shown to sales ("demo requested 3 days ago", "no email opens in the last 30
days") and the report's plots read a feature's meaning from here, never from its name. The
meanings are built by the same walk over event types and windows as the feature names
(`features.engagement`, `features.fit`), in the same order, so `feature_meanings` and
`features.pipeline.feature_spec` list the same features (tests/unit/test_reasons.py checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from common.config import Config, CustomField
from features.contract import EVENT_TYPES
from features.engagement import trend_name
from features.pipeline import AT_MQL, at_mql_names

Family = Literal["fit", "engagement", "account", "custom"]
Unit = Literal["category", "employees", "flag", "count", "days", "active_days", "trend", "number"]


@dataclass(frozen=True)
class EventWords:
    """An event type in words: one, many, and what the lead did ('demo requested')."""

    one: str
    many: str
    done: str
    none: str | None = None  # a zero count, when 'no <many>' reads badly


#: Every contract event type, worded. `other` is what an unknown type becomes.
EVENT_WORDS: Final[Mapping[str, EventWords]] = {
    "email_open": EventWords("email open", "email opens", "email opened"),
    "email_click": EventWords("email click", "email clicks", "email clicked"),
    "email_reply": EventWords("email reply", "email replies", "email replied to"),
    "email_unsubscribe": EventWords("unsubscribe", "unsubscribes", "unsubscribed"),
    "email_bounce": EventWords("bounced email", "bounced emails", "email bounced"),
    "page_view": EventWords("page view", "page views", "page viewed"),
    "pricing_page_view": EventWords(
        "pricing page view", "pricing page views", "pricing page viewed"
    ),
    "content_download": EventWords("download", "downloads", "content downloaded"),
    "webinar_registration": EventWords(
        "webinar registration", "webinar registrations", "registered for a webinar"
    ),
    "webinar_attendance": EventWords("webinar attended", "webinars attended", "webinar attended"),
    "form_submission": EventWords("form submitted", "forms submitted", "form submitted"),
    "demo_request": EventWords("demo request", "demo requests", "demo requested"),
    "trial_signup": EventWords("trial signup", "trial signups", "signed up for a trial"),
    "ad_click": EventWords("ad click", "ad clicks", "ad clicked"),
    "social_engagement": EventWords(
        "social engagement", "social engagements", "engaged on social media"
    ),
    "other": EventWords("other activity", "other activities", "other activity"),
}

#: Event types whose absence is good news: more of them lowers the chance.
UNWELCOME_EVENTS: Final = frozenset({"email_unsubscribe", "email_bounce"})

ANY_ACTIVITY: Final = EventWords("activity", "activities", "last active", "no activity")
ACCOUNT_LEADS: Final = EventWords("other lead at the account", "other leads at the account", "")
ACCOUNT_MQLS: Final = EventWords("other MQL at the account", "other MQLs at the account", "")
ACCOUNT_SQLS: Final = EventWords(
    "other lead at the account already an SQL",
    "other leads at the account already SQLs",
    "",
    "no other lead at the account is an SQL yet",
)
COLLEAGUES: Final = EventWords(
    "activity by colleagues", "activities by colleagues", "", "no activity by colleagues"
)


@dataclass(frozen=True)
class FeatureMeaning:
    """One feature's meaning.

    Attributes:
        name: the feature's column name.
        family: fit (who the lead is), engagement (what it did), account (its colleagues),
            custom (a configured column).
        unit: what a value counts or names; decides how it is worded.
        label: the subject in words ('seniority', 'company size', 'Lead Origin').
        window_days: the window a count covers; None for all time (or not a count).
        event: for counts and recency, the words of what is counted.
        welcome: whether what it counts is good news (an unsubscribe is not). An absence (a
            zero count, 'never', no account) is shown only when it moves the score the way
            absence should: lowers it for something welcome, raises it otherwise.
        absence: the sentence part a missing value (and, with `absence_on_zero`, a zero) says,
            shared by every feature that can say it ('no account known', 'no demo requests
            yet'), so that one answer says it once.
        absence_on_zero: a zero says `absence` too (an all-time count), not only a missing value.
        at_mql: the count as it stood when the lead became an MQL, not at the scoring time.
    """

    name: str
    family: Family
    unit: Unit
    label: str
    window_days: int | None = None
    event: EventWords | None = None
    welcome: bool = True
    absence: str | None = None
    absence_on_zero: bool = False
    phrases: tuple[tuple[str, str], ...] = ()
    every_word_capitalised: bool = False
    at_mql: bool = False  # the count as it stood at the lead's mql_at (`features.at_mql`)

    def phrase(self, value: str) -> str | None:
        """The whole phrase a known value says ('seniority: C-level'), if it has one."""
        return dict(self.phrases).get(value)

    @property
    def can_be_absent(self) -> bool:
        """Whether a zero or missing value is an absence (engagement and account features)."""
        return self.family in ("engagement", "account") and self.unit != "trend"


def _phrases(label: str, words: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((value, f"{label}: {shown}") for value, shown in words.items())


#: The seniority and function codes `features.titles` gives, and the regions of `features.fit`.
SENIORITY_WORDS: Final = {
    "c_level": "C-level",
    "vp": "VP",
    "director": "Director",
    "manager": "Manager",
    "individual": "Individual contributor",
    "intern": "Intern or student",
}
FUNCTION_WORDS: Final = {
    "executive": "Executive",
    "marketing": "Marketing",
    "sales": "Sales",
    "engineering": "Engineering",
    "it": "IT",
    "product": "Product",
    "data": "Data",
    "finance": "Finance",
    "hr": "HR",
    "operations": "Operations",
    "other": "Other",
}
REGION_WORDS: Final = {
    "north_america": "North America",
    "latam": "Latin America",
    "uk_ireland": "UK and Ireland",
    "dach": "Germany, Austria and Switzerland",
    "europe_other": "rest of Europe",
    "middle_east_africa": "Middle East and Africa",
    "india": "India",
    "apac": "Asia-Pacific",
    "other": "other",
}


def fit_meanings(custom_fields: Sequence[CustomField]) -> list[FeatureMeaning]:
    """Meanings of the fit features, in `features.fit.fit_names` order."""
    unread = "not recognised from the title"
    meanings = [
        FeatureMeaning(
            "seniority", "fit", "category", "seniority",
            phrases=(*_phrases("seniority", SENIORITY_WORDS), ("unknown", f"seniority {unread}")),
        ),
        FeatureMeaning(
            "job_function", "fit", "category", "function",
            phrases=(*_phrases("function", FUNCTION_WORDS), ("unknown", f"function {unread}")),
        ),
        FeatureMeaning("industry", "fit", "category", "industry"),
        FeatureMeaning("country", "fit", "category", "country", every_word_capitalised=True),
        FeatureMeaning(
            "region", "fit", "category", "region", phrases=_phrases("region", REGION_WORDS)
        ),
        FeatureMeaning("lead_source", "fit", "category", "lead source"),
        FeatureMeaning("company_size", "fit", "employees", "company size"),
        FeatureMeaning(
            "email_free", "fit", "flag", "email address",
            phrases=(("1", "a free-mail address"), ("0", "a company email address")),
            absence="no email address",
        ),
    ]  # fmt: skip
    units: dict[str, Unit] = {"categorical": "category", "boolean": "flag", "numeric": "number"}
    for field in custom_fields:
        meanings.append(
            FeatureMeaning(field.feature, "custom", units[field.value_type], field.column.strip())
        )
    return meanings


def _counts(
    prefix: str, family: Family, words: EventWords, windows: Sequence[int], welcome: bool
) -> list[FeatureMeaning]:
    """A count per window, then the all-time count (whose zero says 'no ... yet')."""
    meanings = [
        FeatureMeaning(f"{prefix}_{w}d", family, "count", words.many, w, words, welcome)
        for w in windows
    ]
    absence = f"no {words.many} yet" if words.none is None else f"{words.none} yet"
    meanings.append(
        FeatureMeaning(
            f"{prefix}_all", family, "count", words.many, None, words, welcome, absence, True
        )
    )
    return meanings


def engagement_meanings(windows: Sequence[int]) -> list[FeatureMeaning]:
    """Meanings of the engagement features, in `features.engagement.engagement_names` order."""
    meanings: list[FeatureMeaning] = []
    for event_type in EVENT_TYPES:
        words = EVENT_WORDS[event_type]
        welcome = event_type not in UNWELCOME_EVENTS
        counts = _counts(f"n_{event_type}", "engagement", words, windows, welcome)
        never = counts[-1].absence
        meanings += counts
        meanings.append(
            FeatureMeaning(
                f"days_since_{event_type}", "engagement", "days", words.done, None, words,
                welcome, never,
            )
        )  # fmt: skip
    counts = _counts("n_events", "engagement", ANY_ACTIVITY, windows, True)
    idle = counts[-1].absence
    meanings += counts
    meanings.append(
        FeatureMeaning(
            "days_since_last_event", "engagement", "days", "last active", None, ANY_ACTIVITY,
            True, idle,
        )
    )  # fmt: skip
    for window in windows:
        meanings.append(
            FeatureMeaning(f"active_days_{window}d", "engagement", "active_days", "active", window)
        )
    meanings.append(
        FeatureMeaning(
            "active_days_all", "engagement", "active_days", "active", None, None, True, idle, True
        )
    )
    if len(windows) >= 2:
        meanings.append(
            FeatureMeaning(trend_name(windows), "engagement", "trend", "activity", windows[-2])
        )
    meanings.append(FeatureMeaning("days_since_created", "engagement", "days", "created"))
    meanings.append(FeatureMeaning("days_since_mql", "engagement", "days", "became an MQL"))
    return meanings


def account_meanings(windows: Sequence[int]) -> list[FeatureMeaning]:
    """Meanings of the account features, in `features.engagement.account_names` order.

    A lead with no account has them all missing: each says 'no account known'.
    """
    unknown = "no account known"
    meanings = [
        FeatureMeaning("account_other_leads", "account", "count", "other leads", None,
                       ACCOUNT_LEADS, True, unknown),
        FeatureMeaning("account_other_mqls", "account", "count", "other MQLs", None,
                       ACCOUNT_MQLS, True, unknown),
        FeatureMeaning("account_other_sqls", "account", "count", "other SQLs", None,
                       ACCOUNT_SQLS, True, unknown),
    ]  # fmt: skip
    for window in [*windows, None]:
        name = f"account_other_events_{window}d" if window else "account_other_events_all"
        meanings.append(
            FeatureMeaning(
                name, "account", "count", "activities by colleagues", window, COLLEAGUES, True,
                unknown,
            )
        )  # fmt: skip
    return meanings


def at_mql_meanings(
    at_mql_names: Sequence[str], meanings: Mapping[str, FeatureMeaning]
) -> list[FeatureMeaning]:
    """The counts again as they stood at the lead's mql_at: the same meaning, worded 'in the
    30 days before becoming an MQL' or 'before becoming an MQL'. A zero all-time count says
    no more than that ('no demo requests yet' would deny what came since), and the lead's
    age then reads as the days it took to become an MQL."""
    frozen = []
    for name in at_mql_names:
        meaning = replace(meanings[name.removesuffix(AT_MQL)], name=name, at_mql=True)
        if meaning.absence_on_zero:
            meaning = replace(meaning, absence=None, absence_on_zero=False)
        if meaning.unit == "days":
            meaning = replace(meaning, label="became an MQL", absence="not an MQL yet")
        frozen.append(meaning)
    return frozen


def feature_meanings(config: Config, flat: bool = False) -> dict[str, FeatureMeaning]:
    """Every feature this config builds, by name, in `features.pipeline.feature_spec` order."""
    meanings = fit_meanings(config.custom_fields)
    if not flat:
        windows = config.features.windows_days
        meanings += engagement_meanings(windows) + account_meanings(windows)
        by_name = {meaning.name: meaning for meaning in meanings}
        meanings += at_mql_meanings(at_mql_names(config), by_name)
    return {meaning.name: meaning for meaning in meanings}


def unknown_meaning(name: str) -> FeatureMeaning:
    """A feature no spec describes (a model newer than this code): worded by its name."""
    return FeatureMeaning(name, "custom", "number", name)
