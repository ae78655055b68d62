"""The API's request and response models: one family per boundary, with examples for /docs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

#: A timestamp as the export writes it: parsed by `features.clean`, the snapshot reader's own
#: parser, so that the API accepts exactly what the reader accepts (numbers are refused).
Timestamp = Annotated[
    str,
    Field(
        max_length=64,
        description="ISO 8601 text (a date-time, a date, or the basic format, surrounding "
        "spaces ignored: what the snapshot reader accepts); without a zone it is UTC. Not a "
        "number (Unix time). Not declared as format date-time, which is narrower.",
    ),
]

EXAMPLE_LEAD: dict[str, Any] = {
    "lead_id": "L0001234",
    "account_id": "A000321",
    "created_at": "2026-05-02T09:14:00Z",
    "mql_at": "2026-05-20T16:02:00Z",
    "job_title": "VP Marketing",
    "country": "United States",
    "industry": "Software",
    "lead_source": "webinar",
    "company_size": 350,
    "email": "jane@example.com",
}
EXAMPLE_EVENTS: list[dict[str, Any]] = [
    {"event_type": "webinar_attendance", "occurred_at": "2026-05-12T15:00:00Z"},
    {"event_type": "pricing_page_view", "occurred_at": "2026-05-19T10:31:00Z", "url": "/pricing"},
    {"event_type": "demo_request", "occurred_at": "2026-05-20T16:00:00"},
]


#: Custom (unknown) lead fields: how many, how long a name, how long a text value.
MAX_CUSTOM_FIELDS = 100
MAX_CUSTOM_NAME_CHARS = 60
MAX_CUSTOM_VALUE_CHARS = 1000


def _one_value(value: object) -> object:
    """A custom field holds one short value, as a column cell would."""
    if isinstance(value, dict | list):
        raise ValueError("a custom field holds one value: text, a number, true/false or null")
    if isinstance(value, str) and len(value) > MAX_CUSTOM_VALUE_CHARS:
        raise ValueError(f"a custom field's text is over {MAX_CUSTOM_VALUE_CHARS:,} characters")
    return value


CustomValue = Annotated[
    Any,
    AfterValidator(_one_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_CUSTOM_VALUE_CHARS},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]


#: Employees as posted, read by the reader's own rule (`features.clean`): the schema checks
#: only that it is one value, so true/false or an infinite size is refused by that rule.
CompanySize = Annotated[
    Any,
    AfterValidator(_one_value),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}],
            "description": "Employees: a number, or a range such as '51-200'.",
        }
    ),
]


class LeadIn(BaseModel):
    """A lead's profile, in the data contract's terms or the export's (`mapping.leads`).

    Extra keys are the model's custom fields, or contract fields under the export's names
    (docs/serving-your-model.md): one short value each (text, number, true/false or null), at
    most `MAX_CUSTOM_FIELDS` of them. Every field but the lead id (and `created_at` for a
    timestamped model) is optional: a missing one is unknown.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [EXAMPLE_LEAD],
            "maxProperties": MAX_CUSTOM_FIELDS + 10,
            "propertyNames": {"maxLength": MAX_CUSTOM_NAME_CHARS},
        },
    )
    __pydantic_extra__: dict[str, CustomValue] = Field(init=False)

    lead_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Required, here or under the export's name for it (e.g. 'Prospect ID').",
    )
    account_id: str | None = Field(None, max_length=200)
    created_at: Timestamp | None = None
    mql_at: Timestamp | None = None
    job_title: str | None = Field(None, max_length=500)
    country: str | None = Field(None, max_length=200)
    industry: str | None = Field(None, max_length=200)
    lead_source: str | None = Field(None, max_length=200)
    company_size: CompanySize = None

    email: str | None = Field(
        None, max_length=320, description="Only whether it is free mail is used; never logged."
    )


class EventIn(BaseModel):
    """One engagement touch; a timestamp without a zone is UTC."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=200)
    occurred_at: Timestamp
    campaign: str | None = Field(None, max_length=500)
    url: str | None = Field(None, max_length=2000)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"lead": EXAMPLE_LEAD, "events": EXAMPLE_EVENTS}]},  # type: ignore[dict-item]
    )

    lead: LeadIn
    events: list[EventIn] = Field(default_factory=list, max_length=100_000)
    as_of: Timestamp | None = Field(
        None, description="Score as of this time (not before created_at); default: now."
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads: list[ScoreRequest]


class Reason(BaseModel):
    feature: str
    value: float | str | None
    contribution: float = Field(description="SHAP contribution in log-odds.")
    sentence: str


class Points(BaseModel):
    total: float
    breakdown: dict[str, float]
    thresholds_passed: list[str]


class ModelRef(BaseModel):
    name: str
    version: str


class AccountOut(BaseModel):
    """Where the lead's account features came from."""

    known: bool = Field(
        description="True: counted from the account history the server holds (`serve.accounts`). "
        "False: no history is configured, so the account features are unknown, as for a lead "
        "without an account."
    )
    other_leads: int | None = Field(
        None, description="The account's other leads created before `as_of`, when known."
    )
    history_as_of: datetime | None = Field(
        None,
        description="The history's snapshot time: the account's activity after it is not counted.",
    )


class ScoreOut(BaseModel):
    lead_id: str
    probability: float = Field(
        ge=0,
        le=1,
        description="Calibrated P(SQL within horizon_days after `as_of` | the lead is still open "
        "at `as_of`): the same meaning at any age of the lead, here and in batch scores.",
    )
    tier: str
    points: Points
    reasons_positive: list[Reason]
    reasons_negative: list[Reason]
    unknown_event_types: dict[str, int] = Field(
        default_factory=dict, description="Event types kept as 'other', by name."
    )
    account: AccountOut | None = Field(
        None, description="The account history used; null for a lead without an account."
    )
    model: ModelRef
    as_of: datetime = Field(description="The time the lead was scored as of (its cutoff).")
    age_days: float | None = Field(
        None,
        description="Days from the lead's mql_at to `as_of`; null when it has no mql_at then.",
    )
    note: str | None = Field(
        None,
        description="Set only when the lead is outside what the model was trained on (not an "
        "MQL at `as_of`, or older than the model's oldest training age).",
    )


class BatchOut(BaseModel):
    results: list[ScoreOut]


class ModelOut(BaseModel):
    name: str
    version: str
    alias: str | None
    uri: str = Field(
        description="The model URI served (models:/name@alias or models:/name/version); a "
        "password in it is hidden."
    )
    trained_at: datetime | None
    test_metrics: dict[str, float]
    tiers: dict[str, float | str]
    features: list[str]
    account_history: AccountHistoryOut | None = Field(
        None, description="The account history read for account features; null: none."
    )


class AccountHistoryOut(BaseModel):
    source: str = Field(
        description="The kind of source only ('files' or 'database'): where it lives is not shown."
    )
    as_of: datetime | None = Field(description="Activity after this time is not in it.")
    accounts: int
    leads: int
    events: int


class Problem(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    """One wrong field: where (`loc`, e.g. ["body", "leads", 3, "lead", "company_size"]), what
    is wrong, and its kind. The value itself is never echoed."""

    loc: list[str | int]
    msg: str
    type: str


class Problems(BaseModel):
    detail: list[FieldProblem]
