"""One lead's features without pandas: the API's path, equal value for value to the batch path.

The scoring API receives one lead at a time (its profile, its events and an as-of time) and must
answer in a few milliseconds. The batch path (`features.reader.snapshot_from_frames`, then
`features.pipeline.build_features`) costs several milliseconds for a one-row frame alone, so
this module does the same work on plain Python values:

- the profile's keys are read as the reader reads a header: a field under the export's name
  (a key of `mapping.leads`) becomes its contract column, excluded columns are dropped, and a
  custom field that is not there is unknown, as an empty cell is;
- the profile is cleaned as `features.reader.prepare_leads` cleans a leads table (trim,
  collapse whitespace, case-fold categories, the config's missing placeholders and value map,
  company size ranges, the free-mail flag; the email itself is read and dropped, never kept);
- events are read as `features.reader.collect_events` reads them (ISO 8601 timestamps, naive
  is UTC, truncated to milliseconds; event types as `event_type_codes` maps them, unknown ones
  kept as `other` and counted by raw name; exact duplicates, same millisecond and type, dropped);
- engagement and account features come from `features.engagement.chunk_features`, the kernel
  training uses, on arrays of one lead and one row; fit features follow `features.fit.lead_fit`.

Each helper reproduces its pandas counterpart's semantics exactly; where a value falls outside
the common shapes (an odd timestamp form, a number with an exponent), the helper hands that one
value to the pandas function itself, so odd input is slower, never different.

Account features need the account's other leads, which one posted lead does not carry. Without
an `AccountContext` they are NaN ("unknown"), the value training gives a lead with no account:
an honest "not known here" rather than a made-up zero. Pass a context (see `account_context`),
or a lookup such as `serving.accounts.AccountBook.context` (the API's, read from a snapshot),
to get the values `build_features` computes on the whole account.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from features.clean import (
    company_size_of_number,
    company_size_of_text,
    is_missing,
    number_value,
)
from features.clean import timestamp_ms as parse_timestamp_ms
from common.config import Config, MappingConfig
from features.contract import (
    CONVERTED,
    EVENT_TYPES,
    FREE_MAIL_DOMAINS,
    LEAD_CATEGORIES,
    LEAD_COLUMNS,
    ContractError,
)
from features.decay import decay_rate, decayed_name, decayed_sums
from features.engagement import NAT_MS, ChunkLeads, chunk_features
from features.fit import CATEGORICAL, REGION_OF
from features.pipeline import AT_MQL, at_mql_names, feature_spec, utc_ms
from features.reader import Problem, Snapshot, plausible_range
from features.titles import parse_title
from training.scorer import ModelSpec

__all__ = [
    "AccountContext",
    "AccountLookup",
    "LeadError",
    "LeadFeatures",
    "RowPlan",
    "account_context",
    "clean_category_value",
    "clean_text_value",
    "company_size_value",
    "event_type_code",
    "export_names",
    "flag_value",
    "fold",
    "free_mail_value",
    "lead_features",
    "model_row",
    "number_value",
    "region_value",
    "row_plan",
    "rule_values",
    "timestamp_ms",
]

OTHER: Final = EVENT_TYPES.index("other")
_TYPE_INDEX: Final = {name: i for i, name in enumerate(EVENT_TYPES)}
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
_MAX_MEMO: Final = 4096
#: The decay scan of `features.decay` runs in blocks of this many events (see `_decayed_one`).
_DECAY_BLOCK: Final = 32

_SNAKE: Final = re.compile(r"[\s\-]+")
_EMAIL_DOMAIN: Final = re.compile(r"@([^@ ]+)$")


class LeadError(ContractError):
    """The posted lead breaks the data contract; `problems` names each field (for a 4xx)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the lead breaks the data contract:\n{lines}")


# --------------------------------------------------------------------------- cleaning values


_is_missing = is_missing


def _as_text(value: Any) -> str | None:
    """The value as `Series.astype("str")` renders it; None when missing."""
    if _is_missing(value):
        return None
    return value if isinstance(value, str) else str(value)


def _is_number(value: Any) -> bool:
    """Whether pandas would hold the value in a numeric column (booleans included)."""
    return isinstance(value, bool | int | float | np.integer | np.floating | np.bool_)


def fold(text: str) -> str:
    """Trim, collapse inner whitespace and case-fold, as the snapshot reader folds text."""
    return " ".join(text.split()).casefold()


class _Cleaner:
    """A mapping's lookups, folded once, and memos of cleaned values (bounded, thread-safe:
    a race only computes a value twice)."""

    def __init__(self, mapping: MappingConfig) -> None:
        self.mapping = mapping
        self.missing = frozenset(mapping.missing_values)
        self.true_values = frozenset(mapping.true_values)
        self.false_values = frozenset(mapping.false_values)
        self.value_maps = {
            column: {k.strip().casefold(): v for k, v in values.items()}
            for column, values in mapping.values.items()
        }
        self.event_map = self.value_maps.get("event_type", {})
        self.kinds: dict[str, tuple[int, bool]] = {}
        self.categories: dict[tuple[str, str], str | None] = {}

    def text(self, value: Any, column: str) -> str | None:
        """`features.reader.clean_text` of one value."""
        raw = _as_text(value)
        if raw is None:
            return None
        text = " ".join(raw.split())
        folded = text.casefold()
        value_map = self.value_maps.get(column)
        if value_map:
            mapped = value_map.get(folded)
            if mapped is not None:
                return mapped
        return None if folded in self.missing else text

    def category(self, value: Any, column: str) -> str | None:
        """`features.reader.clean_category` of one value (memoised per string)."""
        if not isinstance(value, str):
            text = self.text(value, column)
            return None if text is None else fold(text)
        key = (column, value)
        try:
            return self.categories[key]
        except KeyError:
            pass
        text = self.text(value, column)
        cleaned = None if text is None else fold(text)
        if len(self.categories) >= _MAX_MEMO:
            self.categories.clear()
        self.categories[key] = cleaned
        return cleaned

    def kind(self, name: Any) -> tuple[int, bool]:
        """Event type index of a raw name and whether it is reported as unknown."""
        if not isinstance(name, str):
            if _is_missing(name):
                return OTHER, True
            name = str(name)
        try:
            return self.kinds[name]
        except KeyError:
            pass
        folded = fold(name)
        mapped = self.event_map.get(folded, folded)
        kind = _TYPE_INDEX.get(_SNAKE.sub("_", mapped.strip().casefold()), OTHER)
        found = (kind, kind == OTHER and name.strip().casefold() != "other")
        if len(self.kinds) >= _MAX_MEMO:
            self.kinds.clear()
        self.kinds[name] = found
        return found


_CLEANERS: dict[int, _Cleaner] = {}
_CLEANERS_LOCK = threading.Lock()


def _cleaner(mapping: MappingConfig) -> _Cleaner:
    """The cleaner of a mapping, built once per mapping object."""
    found = _CLEANERS.get(id(mapping))
    if found is not None and found.mapping is mapping:
        return found
    built = _Cleaner(mapping)
    with _CLEANERS_LOCK:
        if len(_CLEANERS) >= 16:
            _CLEANERS.clear()
        _CLEANERS[id(mapping)] = built
    return built


def clean_text_value(value: Any, mapping: MappingConfig, column: str) -> str | None:
    """Trimmed text with the missing placeholders as None and the value map applied."""
    return _cleaner(mapping).text(value, column)


def clean_category_value(value: Any, mapping: MappingConfig, column: str) -> str | None:
    """A categorical fit attribute: cleaned, then folded so 'USA ' and 'usa' agree."""
    return _cleaner(mapping).category(value, column)


def region_value(country: str | None) -> str | None:
    """Region of a folded country, 'other' when unlisted, None when the country is missing."""
    return None if country is None else REGION_OF.get(country, "other")


def company_size_value(value: Any, mapping: MappingConfig) -> tuple[float, bool]:
    """Employees as a number ('51-200' is 125.5, '10,000+' is 10000) and whether it is bad
    (`features.clean`, the reader's rule: true/false, negative and infinite sizes are bad)."""
    if isinstance(value, bool | np.bool_):
        return math.nan, True
    if _is_number(value):
        return company_size_of_number(float(value))
    text = _cleaner(mapping).text(value, "company_size")
    if text is None:
        return math.nan, False
    return company_size_of_text(text)


def free_mail_value(email: Any, mapping: MappingConfig) -> float:
    """1.0 for an address at a free-mail provider, 0.0 otherwise, NaN when there is none.

    Only the domain's kind leaves this function: the address is never kept or shown.
    """
    text = _cleaner(mapping).text(email, "email")
    if text is None:
        return math.nan
    found = _EMAIL_DOMAIN.search(text)
    if found is None:
        return math.nan
    return 1.0 if found.group(1).casefold() in FREE_MAIL_DOMAINS else 0.0


def flag_value(value: Any, mapping: MappingConfig, column: str) -> tuple[float, bool]:
    """A yes/no value as 1.0, 0.0 or NaN, and whether it is neither a true nor a false value."""
    if isinstance(value, bool | np.bool_):
        return float(value), False
    cleaner = _cleaner(mapping)
    text = cleaner.text(value, column)
    if text is None:
        return math.nan, False
    folded = text.casefold()
    if folded in cleaner.true_values:
        return 1.0, False
    if folded in cleaner.false_values:
        return 0.0, False
    return math.nan, True


def _numeric_value(value: Any, mapping: MappingConfig, column: str) -> tuple[float, bool]:
    """A numeric custom field and whether it is not a number."""
    if _is_number(value):
        return float(value), False
    text = _cleaner(mapping).text(value, column)
    if text is None:
        return math.nan, False
    number = number_value(text)
    return number, math.isnan(number)


def timestamp_ms(value: Any, mapping: MappingConfig) -> tuple[int, bool]:
    """Milliseconds since the epoch (UTC; naive is UTC; floored to the millisecond) and
    whether the value is not ISO 8601 (`features.clean`, the reader's parser). Missing values
    and placeholders give `NAT_MS`."""
    return parse_timestamp_ms(value, _cleaner(mapping).missing)


def event_type_code(name: Any, mapping: MappingConfig) -> int:
    """Index into EVENT_TYPES of a raw event type name, as `event_type_codes` maps it."""
    return _cleaner(mapping).kind(name)[0]


def _shown(value: Any) -> str:
    return "<missing>" if _is_missing(value) else repr(str(value)[:60])


# --------------------------------------------------------------------------- account context


@dataclass(frozen=True)
class AccountContext:
    """What the caller knows of the lead's account besides the lead itself.

    Times are int64 milliseconds since the epoch (UTC), `NAT_MS` where missing: the other
    leads' created, MQL and SQL times (one entry per other lead) and the times of all their
    events (each lead's exact duplicates removed, as the reader removes them). The lead being
    scored must not be among them.
    """

    created_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    mql_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    sql_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    event_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __post_init__(self) -> None:
        for name in ("created_ms", "mql_ms", "sql_ms", "event_ms"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        n = self.created_ms.shape[0]
        if self.mql_ms.shape[0] != n or self.sql_ms.shape[0] != n:
            raise ValueError("created_ms, mql_ms and sql_ms need one entry per other lead")
        if self.event_ms.shape[0]:
            object.__setattr__(self, "event_ms", np.sort(self.event_ms))


#: Finds an account's context from the cleaned account id and the posted lead's cleaned id.
AccountLookup = Callable[[str, str], AccountContext]


def account_context(
    snapshot: Snapshot, account_id: str, lead_id: str | None = None
) -> AccountContext:
    """The history of `account_id` in a snapshot without `lead_id`, for batch jobs and tests.

    `account_id` is the cleaned id (`LeadFeatures.account_id`). An account the snapshot does
    not hold gives an empty context: known to have no other leads, so the features are zero.
    """
    leads = snapshot.leads
    others = (leads["account_id"] == account_id).fillna(False).to_numpy(dtype=bool)
    if lead_id is not None:
        others = others & (leads["lead_id"] != lead_id).to_numpy(dtype=bool)
    positions = np.flatnonzero(others)
    times = {c: utc_ms(leads[c].iloc[positions]) for c in ("created_at", "mql_at", "sql_at")}
    at_ms = np.empty(0, dtype=np.int64)
    if positions.shape[0]:
        # leads are ordered by account: the account's events are one slice of the log
        lo, hi = snapshot.events.lead_bounds(int(positions[0]), int(positions[-1]) + 1)
        lead = snapshot.events.lead[lo:hi]
        at_ms = snapshot.events.at_ms[lo:hi][np.isin(lead, positions)]
    return AccountContext(times["created_at"], times["mql_at"], times["sql_at"], at_ms)


# --------------------------------------------------------------------------- the lead


@dataclass(frozen=True)
class LeadFeatures:
    """The features of one lead at one cutoff, and what reading its input found.

    Attributes:
        values: feature name -> value in `feature_spec` order: categories as str (None when
            missing), everything else as float (NaN when missing or unknown).
        unknown_event_types: raw event type names kept as `other`, with their counts.
        duplicates: exact duplicate events dropped (same millisecond and event type).
        decayed: event type -> time-decayed count at the cutoff, for the half-lives asked for
            (NaN for a flat config: no events).
        lead_id: the cleaned lead id.
        account_id: the cleaned account id, None when the lead has none.
        cutoff_ms: the cutoff, milliseconds since the epoch (UTC).
    """

    values: dict[str, float | str | None]
    unknown_event_types: dict[str, int]
    duplicates: int
    decayed: dict[str, float]
    lead_id: str
    account_id: str | None
    cutoff_ms: int


_LEAD_TIMESTAMPS: Final = ("created_at", "mql_at", "sql_at", "disqualified_at")
_SPECS: dict[int, tuple[Config, tuple[str, ...]]] = {}
_SPECS_LOCK = threading.Lock()


def _feature_names(config: Config) -> tuple[str, ...]:
    """`feature_spec(config, flat).names`, built once per config object."""
    found = _SPECS.get(id(config))
    if found is not None and found[0] is config:
        return found[1]
    names = feature_spec(config, config.source.flat).names
    with _SPECS_LOCK:
        if len(_SPECS) >= 16:
            _SPECS.clear()
        _SPECS[id(config)] = (config, names)
    return names


def _targets(contract: str | Sequence[str]) -> tuple[str, ...]:
    """The contract column(s) one export column feeds."""
    return (contract.strip(),) if isinstance(contract, str) else tuple(c.strip() for c in contract)


def export_names(config: Config) -> dict[str, tuple[str, ...]]:
    """Contract column -> the export's names for it (`mapping.leads`), for every lead column
    the path reads, the config's custom fields included; an unmapped column has none."""
    columns = [*LEAD_COLUMNS, CONVERTED, *(cf.column.strip() for cf in config.custom_fields)]
    names: dict[str, tuple[str, ...]] = dict.fromkeys(columns, ())
    fed = [(export, _targets(contract)) for export, contract in config.mapping.leads.items()]
    fed += list(config.mapping.leads_also.items())  # one export column feeding several
    for export, contracts in fed:
        for column in contracts:
            if column in names and export.strip() not in names[column]:
                names[column] = (*names[column], export.strip())
    return names


def _cleaned(column: str, value: Any, config: Config) -> Any:
    """The value as the path reads it for `column`: what two names of one field must agree on."""
    mapping = config.mapping
    if column in _LEAD_TIMESTAMPS:
        return timestamp_ms(value, mapping)
    if column == "company_size":
        return company_size_value(value, mapping)
    custom = {cf.column.strip(): cf.value_type for cf in config.custom_fields}
    if column == CONVERTED or custom.get(column) == "boolean":
        return flag_value(value, mapping, column)
    if custom.get(column) == "numeric":
        return _numeric_value(value, mapping, column)
    if column in LEAD_CATEGORIES or custom.get(column) == "categorical":
        return _cleaner(mapping).category(value, column)
    return _cleaner(mapping).text(value, column)  # ids, job title, email: case kept


def _agree(column: str, first: Any, second: Any, config: Config) -> bool:
    """Whether two values posted for one field read the same (NaN agrees with NaN)."""
    a, b = _cleaned(column, first, config), _cleaned(column, second, config)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return all(x == y or (_is_missing(x) and _is_missing(y)) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (_is_missing(a) and _is_missing(b))


def _profile(profile: Mapping[str, Any], config: Config) -> tuple[dict[str, Any], list[Problem]]:
    """The posted profile under contract names, and the fields posted twice with values that
    disagree.

    Keys are stripped; a key of `mapping.leads` is the export's name and is renamed to its
    contract column(s), as the reader renames a file's header; excluded columns (export or
    contract names) are dropped. A field may arrive under both names only if both values read
    the same; otherwise it is a problem naming both, since neither can be trusted over the other.
    """
    renames = {export.strip(): _targets(c) for export, c in config.mapping.leads.items()}
    for export, also in config.mapping.leads_also.items():  # one column feeding several
        renames[export.strip()] = (*renames.get(export.strip(), ()), *also)
    excluded = {e.strip() for e in config.exclude}
    fields: dict[str, Any] = {}
    posted_as: dict[str, str] = {}
    problems: list[Problem] = []
    for key, value in profile.items():
        name = str(key).strip()
        if name in excluded:
            continue
        for column in renames.get(name, (name,)):
            if column in excluded:
                continue
            if column not in fields:
                fields[column], posted_as[column] = value, name
            elif not _agree(column, fields[column], value, config):
                issue = (
                    f"(all): posted as both {posted_as[column]!r} and {name!r} with different "
                    "values; post one of them"
                )
                problems.append(Problem("lead", column, issue, 1))
    return fields, problems


def _also_as(column: str, config: Config) -> str:
    """' (or post it as ...)' naming the export's names of a contract column, if it has any."""
    exports = export_names(config)[column]
    return f" (or post it as {' or '.join(repr(e) for e in exports)})" if exports else ""


def _fit(fields: dict[str, Any], config: Config, problems: list[Problem]) -> dict[str, Any]:
    """Fit features of the profile, as `prepare_leads` then `lead_fit` compute them."""
    mapping = config.mapping
    cleaner = _cleaner(mapping)
    title = cleaner.text(fields.get("job_title"), "job_title")
    seniority, function = parse_title(title)
    country = cleaner.category(fields.get("country"), "country")
    size, bad_size = (
        company_size_value(fields["company_size"], mapping)
        if "company_size" in fields
        else (math.nan, False)
    )
    if bad_size:
        problems.append(
            Problem(
                "lead",
                "company_size",
                "are not a non-negative number of employees",
                1,
                (f"lead: {_shown(fields['company_size'])}",),
            )
        )
    values: dict[str, Any] = {
        "seniority": seniority,
        "job_function": function,
        "industry": cleaner.category(fields.get("industry"), "industry"),
        "country": country,
        "region": region_value(country),
        "lead_source": cleaner.category(fields.get("lead_source"), "lead_source"),
        "company_size": size,
        "email_free": free_mail_value(fields.get("email"), mapping),
    }
    for cf in config.custom_fields:
        name = cf.column.strip()
        raw = fields.get(name)
        if cf.value_type == "categorical":
            values[cf.feature] = cleaner.category(raw, name)
            continue
        if cf.value_type == "boolean":
            number, bad = flag_value(raw, mapping, name)
            issue = "are neither a true nor a false value"
        else:
            number, bad = _numeric_value(raw, mapping, name)
            issue = "are not numbers"
        if bad:
            problems.append(Problem("lead", name, issue, 1, (f"lead: {_shown(raw)}",)))
        values[cf.feature] = number
    return values


def _lead_times(
    fields: dict[str, Any], mapping: MappingConfig, problems: list[Problem]
) -> dict[str, int]:
    """The lead's timestamps in ms (NAT_MS when missing); unreadable ones become problems."""
    times: dict[str, int] = {}
    for column in _LEAD_TIMESTAMPS:
        ms, bad = timestamp_ms(fields.get(column), mapping)
        if bad:
            problems.append(
                Problem(
                    "lead",
                    column,
                    "have a timestamp that is not ISO 8601",
                    1,
                    (f"lead: {_shown(fields[column])}",),
                )
            )
        times[column] = ms
    sql, mql = times["sql_at"], times["mql_at"]
    if "mql_at" in fields and "sql_at" in fields and NAT_MS not in (sql, mql) and sql < mql:
        shown = f"lead: '{fields['sql_at']} < mql_at {fields['mql_at']}'"
        problems.append(Problem("lead", "sql_at", "have sql_at before mql_at", 1, (shown,)))
    return times


def _timeline_problems(
    fields: dict[str, Any],
    times: dict[str, int],
    ev_ms: np.ndarray,
    cutoff_ms: int,
    config: Config,
) -> list[Problem]:
    """What `check_lead_timeline` and `check_event_log` refuse in an export, for one lead:
    times outside `plausible_range`, an MQL before the lead was created; and, for a request,
    an as-of time outside that range or before the lead was created."""
    earliest, latest = plausible_range(config)
    lo, hi = earliest.value // 1_000_000, latest.value // 1_000_000
    span = f"before {earliest:%Y-%m-%d} or after {latest:%Y-%m-%d}"
    problems = [
        Problem(
            "lead",
            column,
            f"are implausible: {span} (a placeholder date or a typo?)",
            1,
            (f"lead: {_shown(fields[column])}",),
        )
        for column in _LEAD_TIMESTAMPS
        if times[column] != NAT_MS and not lo <= times[column] <= hi
    ]
    created, mql = times["created_at"], times["mql_at"]
    if NAT_MS not in (created, mql) and mql < created:
        shown = f"lead: {_shown(fields['mql_at'])} < created_at {_shown(fields['created_at'])}"
        problems.append(Problem("lead", "mql_at", "have mql_at before created_at", 1, (shown,)))
    odd = int(np.count_nonzero((ev_ms < lo) | (ev_ms > hi)))
    if odd:
        issue = f"are implausible: {span} (a placeholder date or a typo?)"
        problems.append(Problem("events", "occurred_at", issue, odd))
    if not lo <= cutoff_ms <= hi:
        problems.append(Problem("request", "as_of", f"is implausible: {span}", 1))
    elif created != NAT_MS and cutoff_ms < created:
        problems.append(
            Problem("request", "as_of", "is before the lead's created_at: nothing to score", 1)
        )
    return problems


def _read_events(
    events: Sequence[Mapping[str, Any]], config: Config, problems: list[Problem]
) -> tuple[np.ndarray, np.ndarray, dict[str, int], int]:
    """Event times and types sorted by (time, type), duplicates dropped; the unknown types
    by raw name and the number of duplicates."""
    mapping = config.mapping
    cleaner = _cleaner(mapping)
    excluded = {e.strip() for e in config.exclude}
    for column in ("occurred_at", "event_type"):
        if events and (column in excluded or all(column not in e for e in events)):
            problems.append(
                Problem("events", column, "(all): required column is missing", len(events))
            )
            return np.empty(0, np.int64), np.empty(0, np.int8), {}, 0
    unknown: dict[str, int] = {}
    keys: set[int] = set()
    bad: list[int] = []
    missing_time: list[int] = []
    for i, event in enumerate(events):
        kind, is_unknown = cleaner.kind(event.get("event_type"))
        if is_unknown:
            raw = event.get("event_type")
            name = "<missing>" if _is_missing(raw) else str(raw)
            unknown[name] = unknown.get(name, 0) + 1
        ms, unread = parse_timestamp_ms(event.get("occurred_at"), cleaner.missing)
        if unread:
            bad.append(i)
        elif ms == NAT_MS:
            missing_time.append(i)
        else:
            keys.add(ms * 32 + kind)  # (time, type) in one int: sorts and dedupes both
    for rows, issue in (
        (bad, "have a timestamp that is not ISO 8601"),
        (missing_time, "have no timestamp"),
    ):
        if rows:
            shown = tuple(f"events[{i}]: {_shown(events[i].get('occurred_at'))}" for i in rows[:3])
            problems.append(Problem("events", "occurred_at", issue, len(rows), shown))
    packed = np.array(sorted(keys), dtype=np.int64)
    return packed >> 5, (packed & 31).astype(np.int8), unknown, len(events) - len(keys)


def _decayed_one(at_ms: np.ndarray, cutoff_ms: int, half_life_days: float) -> float:
    """`features.decay.decayed_sums` of one lead's events of one type (sorted, all before the
    cutoff) at one cutoff, to the last bit.

    Up to one scan block of events, `decayed_sums` runs the plain recurrence D = 1 + f * D in
    float64 after computing the factors f with numpy in a buffer laid out as here; this repeats
    those steps (the same numpy calls on the same layout, then the same multiply-adds), which
    is ~20x faster than the general call. Longer histories call `decayed_sums` itself. Events at
    or after the cutoff never count and, dropped, change no bit of the rest.
    """
    n = at_ms.shape[0]
    if n == 0:
        return 0.0
    if n > _DECAY_BLOCK:
        lead = np.zeros(n, dtype=np.int32)
        row = np.zeros(1, dtype=np.int32)
        cutoff = np.array([cutoff_ms], dtype=np.int64)
        return float(decayed_sums(lead, at_ms, row, cutoff, half_life_days)[0])
    rate = decay_rate(half_life_days)
    at_last = 1.0
    if n > 1:
        factor = np.zeros(_DECAY_BLOCK, dtype=np.float64)
        gap = factor[1:n]
        np.subtract(at_ms[1:], at_ms[:-1], out=gap)
        np.maximum(gap, 0.0, out=gap)
        np.multiply(gap, -rate, out=gap)
        np.exp(gap, out=gap)
        for f in gap.tolist():
            at_last = 1.0 + f * at_last
    age = np.array([cutoff_ms - int(at_ms[-1])], dtype=np.int64).astype(np.float64)
    return float(np.float64(at_last) * np.exp(-rate * age)[0])


def _decayed(
    ev_ms: np.ndarray,
    ev_kind: np.ndarray,
    cutoff_ms: int,
    half_lives: Mapping[str, float],
) -> dict[str, float]:
    """Time-decayed count of each asked-for event type at the cutoff."""
    before = int(np.searchsorted(ev_ms, cutoff_ms, side="left"))
    ms, kind = ev_ms[:before], ev_kind[:before]
    return {
        event_type: _decayed_one(ms[kind == _TYPE_INDEX[event_type]], cutoff_ms, half_life)
        for event_type, half_life in half_lives.items()
    }


def _check_half_lives(half_lives: Mapping[str, float]) -> None:
    unknown = [t for t in half_lives if t not in _TYPE_INDEX]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; the contract has {list(EVENT_TYPES)}")
    for half_life in half_lives.values():
        decay_rate(half_life)


def _engagement(
    ev_ms: np.ndarray,
    ev_kind: np.ndarray,
    cutoff_ms: int,
    times: dict[str, int],
    has_account: bool,
    account: AccountContext | None,
    config: Config,
) -> dict[str, np.ndarray]:
    """Engagement and account features from the training kernel, for one lead and one row.

    The lead is lead 0 of a one-account chunk; with a context, the account's other leads
    follow it, and their events all belong to one more pseudo-lead (account features only
    count an account's events, whoever's they are).
    """
    created = [times["created_at"]]
    mql = [times["mql_at"]]
    sql = [times["sql_at"]]
    ev_lead = np.zeros(ev_ms.shape[0], dtype=np.int32)
    if not has_account or account is None:
        lead_account = np.array([-1], dtype=np.int64)
    else:
        n_other = account.created_ms.shape[0]
        lead_account = np.zeros(n_other + 2, dtype=np.int64)
        created = [*created, *account.created_ms.tolist(), NAT_MS]
        mql = [*mql, *account.mql_ms.tolist(), NAT_MS]
        sql = [*sql, *account.sql_ms.tolist(), NAT_MS]
        other = account.event_ms
        ev_lead = np.concatenate([ev_lead, np.full(other.shape[0], n_other + 1, dtype=np.int32)])
        ev_ms = np.concatenate([ev_ms, other])
        ev_kind = np.concatenate([ev_kind, np.full(other.shape[0], OTHER, dtype=np.int8)])
    leads = ChunkLeads(
        lead_account,
        np.array(created, dtype=np.int64),
        np.array(mql, dtype=np.int64),
        np.array(sql, dtype=np.int64),
    )
    return chunk_features(
        ev_lead,
        ev_ms,
        ev_kind,
        np.zeros(1, dtype=np.int64),
        np.array([cutoff_ms], dtype=np.int64),
        leads,
        config.features.windows_days,
    )


def _at_mql(
    ev_ms: np.ndarray,
    ev_kind: np.ndarray,
    cutoff_ms: int,
    times: dict[str, int],
    has_account: bool,
    account: AccountContext | None,
    config: Config,
) -> dict[str, float]:
    """The `at_mql_names` features: the kernel's counts at the lead's mql_at, as
    `build_features` computes them (NaN without an mql_at before the cutoff)."""
    names = at_mql_names(config)
    mql = times["mql_at"]
    if not names:
        return {}
    if mql == NAT_MS or mql > cutoff_ms:
        return dict.fromkeys(names, math.nan)
    kernel = _engagement(ev_ms, ev_kind, mql, times, has_account, account, config)
    return {name: float(kernel[name.removesuffix(AT_MQL)][0]) for name in names}


def lead_features(
    profile: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    as_of: datetime | str,
    config: Config,
    half_lives: Mapping[str, float] | None = None,
    account: AccountContext | None = None,
    accounts: AccountLookup | None = None,
) -> LeadFeatures:
    """Features of one lead at `as_of`, equal to `build_features` on a snapshot of that lead.

    Args:
        profile: lead columns and the config's custom fields, each under its contract name
            or under the export's name for it (a key of `mapping.leads`); `lead_id` and,
            unless the config is flat, `created_at` are required, every other field is
            optional: a missing one is unknown, as a missing value is to the reader. A field
            posted under both names must read the same under each. Other keys are ignored,
            the config's `exclude` columns dropped. Values as an export holds them (text,
            numbers, datetimes or ISO 8601 strings, None).
        events: dicts with `event_type` and `occurred_at` (datetime or ISO 8601 string; naive
            is UTC); other keys are ignored. Events at or after `as_of` count for nothing.
        as_of: the cutoff (naive is UTC): only what happened strictly before it counts.
        config: the config the model was trained with (windows, custom fields, mapping).
        half_lives: event type -> half-life in days of the decayed counts wanted (the rules').
        account: the account's other leads. None: account features are NaN (unknown), as for
            a lead without an account; a lead without `account_id` gets NaN whatever is passed.
        accounts: when `account` is None, called with the cleaned account and lead ids to
            find the context (e.g. `serving.accounts.AccountBook.context`).

    Raises:
        LeadError: the input breaks the data contract; `problems` names every bad field.
        ValueError: bad half-lives, or timestamps too far apart to index.
    """
    if half_lives:
        _check_half_lives(half_lives)
    mapping = config.mapping
    flat = config.source.flat
    fields, twice = _profile(profile, config)
    required = ("lead_id",) if flat else ("lead_id", "created_at")
    absent = [
        Problem("lead", c, "(all): required field is missing" + _also_as(c, config), 1)
        for c in required
        if c not in fields
    ]
    # every problem at once: a missing field does not hide a bad as_of or event
    problems: list[Problem] = [*twice, *absent]
    cleaner = _cleaner(mapping)
    lead_id = cleaner.text(fields.get("lead_id"), "lead_id")
    if lead_id is None and "lead_id" in fields:
        shown = (f"lead: {_shown(fields['lead_id'])}",)
        problems.append(Problem("lead", "lead_id", "have no lead_id", 1, shown))
    account_id = cleaner.text(fields.get("account_id"), "account_id")
    times = _lead_times(fields, mapping, problems)
    if CONVERTED in fields and flag_value(fields[CONVERTED], mapping, CONVERTED)[1]:
        shown = (f"lead: {_shown(fields[CONVERTED])}",)
        problems.append(
            Problem("lead", CONVERTED, "are neither a true nor a false value", 1, shown)
        )
    values = _fit(fields, config, problems)
    ev_ms, ev_kind, unknown, duplicates = _read_events(events, config, problems)
    cutoff_ms, bad_cutoff = timestamp_ms(as_of, mapping)
    if bad_cutoff or cutoff_ms == NAT_MS:
        problems.append(Problem("request", "as_of", "is not an ISO 8601 time", 1, (_shown(as_of),)))
    if not problems:
        problems += _timeline_problems(fields, times, ev_ms, cutoff_ms, config)
    if problems:
        raise LeadError(problems)
    assert lead_id is not None
    if account is None and accounts is not None and account_id is not None:
        account = accounts(account_id, lead_id)

    features = _feature_names(config)
    if flat:
        decayed = dict.fromkeys(half_lives or {}, math.nan)
    else:
        kernel = _engagement(
            ev_ms, ev_kind, cutoff_ms, times, account_id is not None, account, config
        )
        values.update((name, float(column[0])) for name, column in kernel.items())
        values.update(
            _at_mql(ev_ms, ev_kind, cutoff_ms, times, account_id is not None, account, config)
        )
        decayed = _decayed(ev_ms, ev_kind, cutoff_ms, half_lives) if half_lives else {}
    ordered = {name: values[name] for name in features}
    return LeadFeatures(ordered, unknown, duplicates, decayed, lead_id, account_id, cutoff_ms)


def rule_values(lf: LeadFeatures) -> dict[str, float | str | None]:
    """What `training.rules.score_points` reads, as `rule_inputs` names it: the fit features
    and one `decayed_<event type>` per decayed count."""
    out: dict[str, float | str | None] = {
        name: lf.values[name] for name in (*CATEGORICAL, "company_size", "email_free")
    }
    # custom fields: the rules may give them points (fit.custom)
    out.update((name, v) for name, v in lf.values.items() if name.startswith("custom_"))
    out.update((decayed_name(t), v) for t, v in lf.decayed.items())
    return out


# --------------------------------------------------------------------------- the model's row


@dataclass(frozen=True)
class RowPlan:
    """A model spec compiled for one-row scoring: per feature, its category codes (None for a
    numeric feature)."""

    spec: ModelSpec
    codes: tuple[dict[str, float] | None, ...]

    def row(self, values: Mapping[str, Any]) -> np.ndarray:
        """The (1, n) float row `training.scorer.feature_matrix` makes of these values."""
        try:
            raw = [values[name] for name in self.spec.names]
        except KeyError:
            missing = [n for n in self.spec.names if n not in values]
            raise KeyError(f"features missing from the input: {missing[:10]}") from None
        row = np.empty((1, len(raw)), dtype=np.float64)
        out = row[0]
        for j, (value, codes) in enumerate(zip(raw, self.codes, strict=True)):
            if codes is not None:
                text = _as_text(value)
                out[j] = math.nan if text is None else codes.get(text, math.nan)
            elif isinstance(value, float):
                out[j] = value
            elif _is_missing(value):
                out[j] = math.nan
            elif _is_number(value):
                out[j] = float(value)
            else:
                out[j] = number_value(str(value))
        return row


_PLANS: dict[int, RowPlan] = {}
_PLANS_LOCK = threading.Lock()


def row_plan(spec: ModelSpec) -> RowPlan:
    """The compiled plan of a spec, built once per spec object (keep the spec alive)."""
    found = _PLANS.get(id(spec))
    if found is not None and found.spec is spec:
        return found
    codes = tuple(
        {category: float(i) for i, category in enumerate(spec.categories[name])}
        if kind == "categorical"
        else None
        for name, kind in zip(spec.names, spec.kinds, strict=True)
    )
    plan = RowPlan(spec, codes)
    with _PLANS_LOCK:
        if len(_PLANS) >= 16:
            _PLANS.clear()
        _PLANS[id(spec)] = plan
    return plan


def model_row(values: Mapping[str, Any], spec: ModelSpec) -> np.ndarray:
    """The (1, n) float row the booster sees for one lead: categories as codes, unseen or
    missing ones NaN; equal to `feature_matrix` of the same values as a one-row frame."""
    return row_plan(spec).row(values)
