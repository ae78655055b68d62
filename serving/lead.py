"""One posted lead as plain arrays, through the batch path's own feature functions.

The scoring API receives one lead at a time (its profile, its events and an as-of time) and must
answer in a few milliseconds. This module only adapts the request to what the batch path takes:

- the profile's keys are read as the reader reads a header: a field under the export's name
  (a key of `mapping.leads`) becomes its contract column, excluded columns are dropped, and a
  custom field that is not there is unknown, as an empty cell is;
- every value is cleaned by the scalar form of the reader's rules (`features.clean`:
  `ValueRules` and `timestamp_ms`, the reader's column forms run the same rules per distinct
  value), into a cleaned lead as `prepare_leads` makes; the email itself is read and dropped;
- events are read as the reader reads them (one timestamp parser, event types mapped as
  `event_kinds` maps them, unknown ones kept as `other` and counted by raw name, exact
  duplicates dropped) into the arrays of an `EventLog`;
- fit features come from `features.fit.fit_of_lead` (`lead_fit`'s rules on one lead);
  engagement, account and at-MQL features from `features.pipeline.kernel_features`, the
  function under `build_features`, in one pass on arrays of this lead (and its account's
  history); decayed counts from `features.decay.decayed_of_events`.

What stays here is the request's shape: field names, the per-lead timeline checks the reader
runs on a whole export, and the model's row of one lead.

Account features need the account's other leads, which one posted lead does not carry. Without
an `AccountContext` they are NaN ("unknown"), the value training gives a lead with no account:
an honest "not known here" rather than a made-up zero. Pass a context (see `account_context`),
or a lookup such as `serving.accounts.AccountBook.context` (the API's, read from a snapshot),
to get the values `build_features` computes on the whole account.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np

from common.config import Config
from features.clean import OTHER, ValueRules, is_missing, is_number, number_value, value_rules
from features.contract import (
    CONVERTED,
    LEAD_CATEGORIES,
    LEAD_COLUMNS,
    LEAD_TIMESTAMPS,
    TIMELINE_ORDER,
    ContractError,
)
from features.decay import check_half_lives, decayed_name, decayed_of_events
from features.engagement import NAT_MS, ChunkLeads
from features.fit import CATEGORICAL, fit_of_lead
from features.pipeline import feature_spec, kernel_features, utc_ms
from features.reader import EventLog, Problem, Snapshot, plausible_range
from training.scorer import ModelSpec

__all__ = [
    "AccountContext",
    "AccountLookup",
    "LeadError",
    "LeadFeatures",
    "RowPlan",
    "account_context",
    "export_names",
    "lead_features",
    "model_row",
    "row_plan",
    "rule_values",
]


class LeadError(ContractError):
    """The posted lead breaks the data contract; `problems` names each field (for a 4xx)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the lead breaks the data contract:\n{lines}")


def _shown(value: Any) -> str:
    return "<missing>" if is_missing(value) else repr(str(value)[:60])


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
    rules = value_rules(config.mapping)
    if column in LEAD_TIMESTAMPS:
        return rules.timestamp(value)
    if column == "company_size":
        return rules.company_size(value)
    custom = {cf.column.strip(): cf.value_type for cf in config.custom_fields}
    if column == CONVERTED or custom.get(column) == "boolean":
        return rules.flag(value, column)
    if custom.get(column) == "numeric":
        return rules.number(value, column)
    if column in LEAD_CATEGORIES or custom.get(column) == "categorical":
        return rules.category(value, column)
    return rules.text(value, column)  # ids, job title, email: case kept


def _agree(column: str, first: Any, second: Any, config: Config) -> bool:
    """Whether two values posted for one field read the same (NaN agrees with NaN)."""
    a, b = _cleaned(column, first, config), _cleaned(column, second, config)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return all(x == y or (is_missing(x) and is_missing(y)) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (is_missing(a) and is_missing(b))


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


def _clean_lead(fields: dict[str, Any], config: Config, problems: list[Problem]) -> dict[str, Any]:
    """The profile as `prepare_leads` cleans a leads row (the fit columns), by the same rules
    in their scalar form; bad values become problems."""
    rules = value_rules(config.mapping)
    lead: dict[str, Any] = {
        "job_title": rules.text(fields.get("job_title"), "job_title"),
        **{c: rules.category(fields.get(c), c) for c in LEAD_CATEGORIES},
        "email_free": rules.free_mail(fields.get("email")),
    }
    size, bad_size = (
        rules.company_size(fields["company_size"])
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
    lead["company_size"] = size
    for cf in config.custom_fields:
        name = cf.column.strip()
        raw = fields.get(name)
        if cf.value_type == "categorical":
            lead[cf.feature] = rules.category(raw, name)
            continue
        if cf.value_type == "boolean":
            number, bad = rules.flag(raw, name)
            issue = "are neither a true nor a false value"
        else:
            number, bad = rules.number(raw, name)
            issue = "are not numbers"
        if bad:
            problems.append(Problem("lead", name, issue, 1, (f"lead: {_shown(raw)}",)))
        lead[cf.feature] = number
    return lead


def _lead_times(
    fields: dict[str, Any], rules: ValueRules, problems: list[Problem]
) -> dict[str, int]:
    """The lead's timestamps in ms (NAT_MS when missing); unreadable ones become problems."""
    times: dict[str, int] = {}
    for column in LEAD_TIMESTAMPS:
        ms, bad = rules.timestamp(fields.get(column))
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
    return times


_RANGES: dict[int, tuple[Config, float, int, int, str]] = {}
#: Seconds a config's plausible range is reused: it moves with the clock (now + 1 day).
_RANGE_SECONDS: Final = 1.0


def _plausible(config: Config) -> tuple[int, int, str]:
    """`plausible_range` in ms and as the problems word it, reused for a second per config."""
    found = _RANGES.get(id(config))
    now = time.monotonic()
    if found is None or found[0] is not config or now - found[1] > _RANGE_SECONDS:
        earliest, latest = plausible_range(config)
        span = f"before {earliest:%Y-%m-%d} or after {latest:%Y-%m-%d}"
        found = (config, now, earliest.value // 1_000_000, latest.value // 1_000_000, span)
        with _SPECS_LOCK:
            if len(_RANGES) >= 16:
                _RANGES.clear()
            _RANGES[id(config)] = found
    return found[2], found[3], found[4]


def _timeline_problems(
    fields: dict[str, Any],
    times: dict[str, int],
    ev_ms: np.ndarray,
    cutoff_ms: int,
    config: Config,
) -> list[Problem]:
    """What `check_lead_timeline` and `check_event_log` refuse in an export, for one lead:
    times outside `plausible_range`, times out of `TIMELINE_ORDER`; and, for a request,
    an as-of time outside that range or before the lead was created."""
    lo, hi, span = _plausible(config)
    problems = [
        Problem(
            "lead",
            column,
            f"are implausible: {span} (a placeholder date or a typo?)",
            1,
            (f"lead: {_shown(fields[column])}",),
        )
        for column in LEAD_TIMESTAMPS
        if times[column] != NAT_MS and not lo <= times[column] <= hi
    ]
    for later, earlier in TIMELINE_ORDER:
        if NAT_MS not in (times[later], times[earlier]) and times[later] < times[earlier]:
            shown = f"lead: {_shown(fields[later])} < {earlier} {_shown(fields[earlier])}"
            problems.append(Problem("lead", later, f"have {later} before {earlier}", 1, (shown,)))
    created = times["created_at"]
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
    rules = value_rules(config.mapping)
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
        kind, is_unknown = rules.event_kind(event.get("event_type"))
        if is_unknown:
            raw = event.get("event_type")
            name = "<missing>" if is_missing(raw) else str(raw)
            unknown[name] = unknown.get(name, 0) + 1
        ms, unread = rules.timestamp(event.get("occurred_at"))
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


def _arrays(
    ev_ms: np.ndarray,
    ev_kind: np.ndarray,
    times: dict[str, int],
    account: AccountContext | None,
) -> tuple[ChunkLeads, EventLog]:
    """The lead as the kernel's plain arrays: lead 0, and with an account context its other
    leads after it, all in account 0, their events on one more pseudo-lead (account features
    count an account's events, whoever's they are)."""
    lead_times = [[times["created_at"]], [times["mql_at"]], [times["sql_at"]]]
    ev_lead = np.zeros(ev_ms.shape[0], dtype=np.int32)
    if account is None:
        lead_account = np.array([-1], dtype=np.int64)
    else:
        n_other = account.created_ms.shape[0]
        lead_account = np.zeros(n_other + 2, dtype=np.int64)
        for own, other in zip(
            lead_times, (account.created_ms, account.mql_ms, account.sql_ms), strict=True
        ):
            own += [*other.tolist(), NAT_MS]
        other_events = account.event_ms
        n_events = other_events.shape[0]
        ev_lead = np.concatenate([ev_lead, np.full(n_events, n_other + 1, dtype=np.int32)])
        ev_ms = np.concatenate([ev_ms, other_events])
        ev_kind = np.concatenate([ev_kind, np.full(n_events, OTHER, dtype=np.int8)])
    created, mql, sql = (np.array(t, dtype=np.int64) for t in lead_times)
    return ChunkLeads(lead_account, created, mql, sql), EventLog(ev_lead, ev_ms, ev_kind)


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
        check_half_lives(half_lives)
    rules = value_rules(config.mapping)
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
    lead_id = rules.text(fields.get("lead_id"), "lead_id")
    if lead_id is None and "lead_id" in fields:
        shown = (f"lead: {_shown(fields['lead_id'])}",)
        problems.append(Problem("lead", "lead_id", "have no lead_id", 1, shown))
    account_id = rules.text(fields.get("account_id"), "account_id")
    times = _lead_times(fields, rules, problems)
    if CONVERTED in fields and rules.flag(fields[CONVERTED], CONVERTED)[1]:
        shown = (f"lead: {_shown(fields[CONVERTED])}",)
        problems.append(
            Problem("lead", CONVERTED, "are neither a true nor a false value", 1, shown)
        )
    cleaned = _clean_lead(fields, config, problems)
    ev_ms, ev_kind, unknown, duplicates = _read_events(events, config, problems)
    cutoff_ms, bad_cutoff = rules.timestamp(as_of)
    if bad_cutoff or cutoff_ms == NAT_MS:
        problems.append(Problem("request", "as_of", "is not an ISO 8601 time", 1, (_shown(as_of),)))
    if not problems:
        problems += _timeline_problems(fields, times, ev_ms, cutoff_ms, config)
    if problems:
        raise LeadError(problems)
    assert lead_id is not None
    if account_id is None:
        account = None
    elif account is None and accounts is not None:
        account = accounts(account_id, lead_id)

    values = fit_of_lead(cleaned, config.custom_fields)
    decayed: dict[str, float] = {}
    if flat:
        decayed = dict.fromkeys(half_lives or {}, math.nan)
    else:
        leads, log = _arrays(ev_ms, ev_kind, times, account)
        row_lead = np.zeros(1, dtype=np.int64)
        cutoff = np.array([cutoff_ms], dtype=np.int64)
        kernel = kernel_features(leads, log, row_lead, cutoff, config)
        values.update((name, float(column[0])) for name, column in kernel.items())
        if half_lives:
            own = EventLog(log.lead[: ev_ms.shape[0]], ev_ms, ev_kind)
            counts = decayed_of_events(own, row_lead, cutoff, half_lives)
            decayed = {t: float(counts[decayed_name(t)][0]) for t in half_lives}
    ordered = {name: values[name] for name in _feature_names(config)}
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
                text = None if is_missing(value) else str(value)
                out[j] = math.nan if text is None else codes.get(text, math.nan)
            elif isinstance(value, float):
                out[j] = value
            elif is_missing(value):
                out[j] = math.nan
            elif is_number(value):
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
