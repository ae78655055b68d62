"""The API's single-lead path (`serving.lead`) against the batch path, value for value.

Every comparison feeds both paths the same raw input: a lead as an API client posts it (plain
dicts, timestamps as text in mixed forms or as datetimes), read by `lead_features` on one side
and, as a one-row frame, by `snapshot_from_frames` + `build_features` on the other. Values
must be identical: the same strings, floats equal to the last bit, NaN where NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from common.config import Config, build_config
from features.clean import (
    clean_categories,
    clean_texts,
    event_kinds,
    flags_of,
    free_mail_flags,
    number_value,
    numbers_of,
    value_rules,
)
from features.contract import EVENT_TYPES, ContractError
from features.decay import decayed_counts, decayed_name
from features.pipeline import build_features, feature_spec
from features.reader import (
    Snapshot,
    clean_category,
    clean_text,
    event_type_codes,
    free_mail_flag,
    parse_company_size,
    parse_flags,
    parse_timestamps,
    snapshot_from_frames,
)
from features.rows import training_rows
from features.synthetic import generate_snapshot
from serving.accounts import build_book
from serving.lead import (
    AccountContext,
    LeadError,
    LeadFeatures,
    account_context,
    lead_features,
    model_row,
    rule_values,
)
from training.rules import half_lives, load_rules
from training.scorer import ModelSpec, feature_matrix, learn_spec

N_LEADS = 3000
SEED = 5
N_SAMPLE = 200
TIMES = ("created_at", "mql_at", "sql_at", "disqualified_at")
#: Half-lives for every contract type, `other` included, so each decayed count is checked.
HALF_LIVES = {t: 3.0 + 7.0 * i for i, t in enumerate(EVENT_TYPES)}
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
#: Unicode whitespace an export may hold, inside and around values.
SPACES = (" ", "  ", "\t", "\u00a0", "\u2003", "\u3000")


# --------------------------------------------------------------------------- posted leads


@dataclass(frozen=True)
class Case:
    """One MQL lead as posted: faithful (same values as the snapshot) and messed up."""

    lead_id: str
    profile: dict[str, Any]
    events: list[dict[str, Any]]
    messy_profile: dict[str, Any]
    messy_events: list[dict[str, Any]]
    cutoffs: tuple[pd.Timestamp, ...]


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (not isinstance(value, str) and bool(pd.isna(value)))


def _posted_time(ts: pd.Timestamp, rng: np.random.Generator) -> Any:
    """The same instant as a client might send it: text with Z, an offset or none, or a
    datetime (aware or naive: naive is UTC)."""
    form = int(rng.integers(0, 8))
    if form == 0:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 1:
        return ts.isoformat()
    if form == 2:
        return ts.tz_localize(None).isoformat(sep=" ")
    if form == 3:
        return ts.tz_convert(IST).isoformat()
    if form == 4:
        return ts.tz_convert(PST).isoformat()
    if form == 5:
        return ts.to_pydatetime()
    if form == 6:
        return ts.tz_localize(None).to_pydatetime()
    return ts


def _utc(moment: Any) -> pd.Timestamp:
    """A posted time as a UTC timestamp (naive is UTC)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _fraction(ts: pd.Timestamp, rng: np.random.Generator) -> str:
    """The instant plus a fraction of a second of 1-9 digits (truncated to ms on read)."""
    digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 10))))
    zone = ("Z", "+00:00", "")[int(rng.integers(0, 3))]
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + "." + digits + zone


def _variant(text: str, rng: np.random.Generator) -> str:
    """The same text as a messy export holds it: other case, padded, inner whitespace doubled."""
    case = (str.upper, str.lower, str.title, lambda s: s)[int(rng.integers(0, 4))]
    pad = SPACES[int(rng.integers(0, len(SPACES)))]
    inner = SPACES[int(rng.integers(0, len(SPACES)))]
    return pad + case(text).replace(" ", " " + inner) + pad


def _type_variant(name: str, rng: np.random.Generator) -> str:
    """An event type name as exports write it: 'Email Open', 'email-open', ' EMAIL_OPEN '."""
    form = int(rng.integers(0, 4))
    if form == 0:
        return name.replace("_", " ").title()
    if form == 1:
        return name.replace("_", "-")
    if form == 2:
        return f" {name.upper()}\t"
    return name.replace("_", " - ")


def _size_variant(size: Any, rng: np.random.Generator) -> Any:
    forms: list[Any] = [
        "51-200",
        "1,000 - 5,000",
        "10,000+",
        "200 to 500",
        "11–50",
        "n/a",
        None,
        "1e3",
        "2.5E2",
        " 75 ",
    ]
    if size is not None:
        forms += [str(size), f"{size:,}", float(size), f" {size} "]
    return forms[int(rng.integers(0, len(forms)))]


def _mess_profile(profile: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Messier text, other forms of the same values, missing keys and values."""
    out = dict(profile)
    if rng.random() < 0.3:
        choice = int(rng.integers(0, 4))
        if choice == 3:
            del out["account_id"]
        else:
            out["account_id"] = ("", " N/A ", None)[choice]
    for column in ("country", "industry", "lead_source", "job_title"):
        roll = rng.random()
        if roll < 0.3 and isinstance(out.get(column), str):
            out[column] = _variant(out[column], rng)
        elif roll < 0.38:
            out[column] = ("n/a", "", None, "Unknown", "-")[int(rng.integers(0, 5))]
        elif roll < 0.42:
            out.pop(column, None)
    if rng.random() < 0.5:
        out["company_size"] = _size_variant(out.get("company_size"), rng)
    roll = rng.random()
    if roll < 0.15 and isinstance(out.get("email"), str):
        local, _, domain = out["email"].partition("@")
        out["email"] = f"  {local}@{domain.upper()} "
    elif roll < 0.2:
        out["email"] = ("jane.doe@GMAIL.com", "no address", "", "x@", None)[int(rng.integers(0, 5))]
    elif roll < 0.23:
        out.pop("email", None)
    if rng.random() < 0.2:
        out["lead_id"] = f" {out['lead_id']}\t"
    if rng.random() < 0.3:
        out["created_at"] = _fraction(_utc(profile["created_at"]), rng)
    return out


def _mess_events(events: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Type name variants, unknown types, missing types, fractions of seconds, and exact
    duplicates, some of the same instant written another way."""
    out = []
    for event in events:
        event = dict(event)
        if rng.random() < 0.3 and isinstance(event["event_type"], str):
            event["event_type"] = _type_variant(event["event_type"], rng)
        if rng.random() < 0.1:
            event["occurred_at"] = _fraction(_utc(event["occurred_at"]), rng)
        out.append(event)
    extra = []
    for event in out:
        roll = rng.random()
        if roll < 0.08:
            extra.append(dict(event))  # an exact duplicate
        elif roll < 0.12 and not isinstance(event["occurred_at"], str):
            same = _utc(event["occurred_at"]).tz_convert(IST).isoformat()
            extra.append({**event, "occurred_at": same})
        elif roll < 0.15:
            weird = ("Chat Started", "webinar", None, "Other", "  other ", "Sales Call")
            extra.append({**event, "event_type": weird[int(rng.integers(0, len(weird)))]})
    merged = out + extra
    order = rng.permutation(len(merged))
    return [merged[i] for i in order]


def _profile(row: pd.Series, rng: np.random.Generator) -> dict[str, Any]:
    profile: dict[str, Any] = {}
    for column, value in row.items():
        if column in TIMES:
            profile[str(column)] = None if _missing(value) else _posted_time(value, rng)
        elif column == "company_size":
            profile[str(column)] = None if _missing(value) else int(value)
        else:
            profile[str(column)] = None if _missing(value) else value
    return profile


def _events(frame: pd.DataFrame, rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {
            "event_type": None if _missing(kind) else kind,
            "occurred_at": _posted_time(at, rng),
            "campaign": None if _missing(campaign) else campaign,
            "url": None if _missing(url) else url,
        }
        for kind, at, campaign, url in zip(
            frame["event_type"], frame["occurred_at"], frame["campaign"], frame["url"], strict=True
        )
    ]


@pytest.fixture(scope="module")
def synthetic() -> Any:
    return generate_snapshot(N_LEADS, seed=SEED)


@pytest.fixture(scope="module")
def config(synthetic: Any) -> Config:
    return build_config({"as_of": synthetic.as_of.isoformat()})


@pytest.fixture(scope="module")
def whole(synthetic: Any, config: Config) -> Snapshot:
    return snapshot_from_frames(synthetic.leads, synthetic.events, config)


@pytest.fixture(scope="module")
def cases(synthetic: Any) -> list[Case]:
    """N_SAMPLE MQL leads, each with three cutoffs: its MQL time, a later time (with
    microseconds) and a time before its MQL."""
    rng = np.random.default_rng(SEED)
    leads = synthetic.leads
    mqls = leads[leads["mql_at"].notna()]
    picked = mqls.iloc[np.sort(rng.choice(len(mqls), N_SAMPLE, replace=False))]
    by_lead = dict(list(synthetic.events.groupby("lead_id", sort=False)))
    empty = synthetic.events.iloc[:0]
    out = []
    for _, row in picked.iterrows():
        frame = by_lead.get(row["lead_id"], empty)
        profile = _profile(row, rng)
        events = _events(frame, rng)
        mql, created = row["mql_at"], row["created_at"]
        later = mql + pd.Timedelta(seconds=int(rng.integers(40_000, 60 * 86_400)), microseconds=7)
        before = created + pd.Timedelta(seconds=int((mql - created).total_seconds() // 2))
        out.append(
            Case(
                lead_id=row["lead_id"],
                profile=profile,
                events=events,
                messy_profile=_mess_profile(profile, rng),
                messy_events=_mess_events(events, rng),
                cutoffs=(mql, later, before),
            )
        )
    return out


def _as_of(cutoff: pd.Timestamp, i: int) -> datetime | str:
    """The cutoff as the API might receive it."""
    forms: tuple[datetime | str, ...] = (
        cutoff.to_pydatetime(),
        cutoff.tz_convert(UTC).tz_localize(None).to_pydatetime(),
        cutoff.tz_convert(IST).to_pydatetime(),
        cutoff.isoformat(),
    )
    return forms[i % len(forms)]


# --------------------------------------------------------------------------- the batch path


@dataclass(frozen=True)
class Batch:
    """What the batch path makes of one posted lead: features and decayed counts per cutoff."""

    features: pd.DataFrame
    decayed: pd.DataFrame
    snapshot: Snapshot


def _batch(
    profile: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    cutoffs: Sequence[pd.Timestamp],
    config: Config,
) -> Batch:
    """The posted lead as one-row frames through `snapshot_from_frames` and `build_features`."""
    leads = pd.DataFrame([dict(profile)])
    frame = pd.DataFrame([{**e, "lead_id": profile["lead_id"]} for e in events]) if events else None
    snapshot = snapshot_from_frames(leads, frame, config)
    rows = pd.DataFrame(
        {
            "lead_id": [snapshot.leads["lead_id"].iloc[0]] * len(cutoffs),
            "cutoff": pd.to_datetime(list(cutoffs), utc=True),
        }
    )
    decayed = pd.DataFrame()
    if not config.source.flat:
        # one row per call, as a nightly run has one row per lead (summed at the cutoff), and
        # all rows at once, as training's several cutoffs of a lead are (the scan)
        decayed = pd.concat(
            [decayed_counts(snapshot, rows.iloc[[i]], HALF_LIVES) for i in range(len(rows))]
        )
        scanned = decayed_counts(snapshot, rows, HALF_LIVES)
        np.testing.assert_allclose(scanned, decayed, rtol=1e-12, atol=1e-300)
    return Batch(build_features(snapshot, rows, config), decayed, snapshot)


def _assert_same(expected: pd.Series, got: Mapping[str, Any], where: str) -> None:
    """Same names in the same order; equal strings, floats equal to the last bit, NaN as NaN."""
    assert list(got) == list(expected.index), where
    for name, value in got.items():
        want = expected[name]
        if _missing(want):
            assert value is None or (isinstance(value, float) and math.isnan(value)), (
                f"{where}: {name}: expected missing, got {value!r}"
            )
        elif isinstance(want, str):
            assert value == want, f"{where}: {name}: expected {want!r}, got {value!r}"
        else:
            assert isinstance(value, float), f"{where}: {name}: {value!r} is not a float"
            assert value == float(want), f"{where}: {name}: expected {want!r}, got {value!r}"


def _number(lf: LeadFeatures, name: str) -> float:
    value = lf.values[name]
    assert isinstance(value, float), (name, value)
    return value


def _account_names(config: Config) -> list[str]:
    return [n for n in feature_spec(config, False).names if n.startswith("account_")]


# --------------------------------------------------------------------------- equivalence


@pytest.mark.slow
def test_posted_leads_match_the_batch_path(cases: list[Case], config: Config) -> None:
    """Messy leads, without account history: every feature, the decayed counts, the unknown
    types and the duplicates as the reader reports them; account features are NaN (unknown)
    without a context and the single-lead snapshot's zeros with an empty one."""
    account_names = _account_names(config)
    seen = {"no_account": 0, "free_mail": 0, "unknown_types": 0, "duplicates": 0, "long": 0}
    for case in cases:
        batch = _batch(case.messy_profile, case.messy_events, case.cutoffs, config)
        has_account = batch.snapshot.leads["account_id"].notna().iloc[0]
        long = False  # more events of one type than a decay scan block
        for i, cutoff in enumerate(case.cutoffs):
            where = f"{case.lead_id} at {cutoff}"
            expected = batch.features.iloc[i]
            unknown = lead_features(
                case.messy_profile, case.messy_events, _as_of(cutoff, i), config, HALF_LIVES
            )
            empty = lead_features(
                case.messy_profile,
                case.messy_events,
                _as_of(cutoff, i + 1),
                config,
                HALF_LIVES,
                AccountContext(),
            )
            _assert_same(expected, empty.values, where)
            own = expected.drop(account_names)
            _assert_same(own, {k: unknown.values[k] for k in own.index}, where)
            assert all(math.isnan(_number(unknown, n)) for n in account_names)
            decayed = batch.decayed.iloc[i]
            assert unknown.decayed == {t: float(decayed[decayed_name(t)]) for t in HALF_LIVES}, (
                where
            )
            long = long or max(_number(unknown, f"n_{t}_all") for t in EVENT_TYPES) > 32
        assert unknown.unknown_event_types == batch.snapshot.report.unknown_event_types
        assert unknown.duplicates == batch.snapshot.report.events_duplicate
        assert unknown.lead_id == batch.snapshot.leads["lead_id"].iloc[0]
        seen["no_account"] += not has_account
        seen["free_mail"] += unknown.values["email_free"] == 1.0
        seen["unknown_types"] += bool(unknown.unknown_event_types)
        seen["duplicates"] += unknown.duplicates > 0
        seen["long"] += long
    assert all(count >= 5 for count in seen.values()), seen  # each kind of mess is exercised


def test_account_context_matches_the_whole_snapshot(
    cases: list[Case], config: Config, whole: Snapshot
) -> None:
    """With its account's history, a posted lead gets the features and decayed counts the
    whole snapshot gives it, account features included."""
    rows = pd.DataFrame(
        {
            "lead_id": [c.lead_id for c in cases for _ in c.cutoffs],
            "cutoff": pd.to_datetime([t for c in cases for t in c.cutoffs], utc=True),
        }
    )
    expected = build_features(whole, rows, config)
    other_leads = 0
    for k, case in enumerate(cases):
        # one row at a time, as a nightly run has one row per lead (summed at the cutoff)
        decayed = pd.concat(
            [decayed_counts(whole, rows.iloc[[3 * k + i]], HALF_LIVES) for i in range(3)]
        )
        context: AccountContext | None = None
        for i, cutoff in enumerate(case.cutoffs):
            lf = lead_features(case.profile, case.events, _as_of(cutoff, i), config, HALF_LIVES)
            if context is None:
                assert lf.account_id is not None
                context = account_context(whole, lf.account_id, lf.lead_id)
                other_leads += context.created_ms.shape[0] > 0
            with_account = lead_features(
                case.profile, case.events, _as_of(cutoff, i), config, HALF_LIVES, context
            )
            _assert_same(expected.iloc[3 * k + i], with_account.values, f"{case.lead_id} {cutoff}")
            want = decayed.iloc[i]
            assert with_account.decayed == {t: float(want[decayed_name(t)]) for t in HALF_LIVES}
    assert other_leads >= N_SAMPLE // 2  # most sampled leads share their account


def _same_context(got: AccountContext, want: AccountContext) -> bool:
    return all(
        np.array_equal(getattr(got, name), getattr(want, name))
        for name in ("created_ms", "mql_ms", "sql_ms", "event_ms")
    )


def test_account_book_gives_each_lead_its_context(
    cases: list[Case], config: Config, whole: Snapshot
) -> None:
    """The API's account book cuts, for every lead of every account, the context that
    `account_context` finds in the whole snapshot; posted through `accounts=`, the lead gets
    the same features; an account the book does not hold is one with no other leads."""
    book = build_book(whole, "memory")
    leads = whole.leads
    with_account = leads[leads["account_id"].notna()]
    assert book.leads == len(with_account) and book.accounts == with_account["account_id"].nunique()
    assert book.events == int(
        np.isin(whole.events.lead, np.flatnonzero(leads["account_id"].notna())).sum()
    )
    sampled = with_account.sample(300, random_state=SEED)
    for account_id, lead_id in zip(sampled["account_id"], sampled["lead_id"], strict=True):
        want = account_context(whole, account_id, lead_id)
        assert _same_context(book.context(account_id, lead_id), want), (account_id, lead_id)
    # a lead the book does not hold (a new one) gets the whole account
    account_id = str(sampled["account_id"].iloc[0])
    assert _same_context(book.context(account_id, "new"), account_context(whole, account_id))
    assert _same_context(book.context("no such account", "new"), AccountContext())
    for case in cases[:40]:
        cutoff = case.cutoffs[0]
        alone = lead_features(case.profile, case.events, _as_of(cutoff, 0), config, HALF_LIVES)
        assert alone.account_id is not None
        context = account_context(whole, alone.account_id, alone.lead_id)
        given = lead_features(
            case.profile, case.events, _as_of(cutoff, 0), config, HALF_LIVES, context
        )
        looked_up = lead_features(
            case.profile, case.events, _as_of(cutoff, 0), config, HALF_LIVES,
            accounts=book.context,
        )  # fmt: skip
        assert looked_up.values.keys() == given.values.keys()
        for name, value in given.values.items():
            got = looked_up.values[name]
            assert got == value or (got != got and value != value), (case.lead_id, name)


def test_model_row_matches_feature_matrix(
    cases: list[Case], config: Config, whole: Snapshot
) -> None:
    """The booster's row of a posted lead equals `feature_matrix` of the batch frame, unseen
    and missing categories (NaN) included."""
    rows, _ = training_rows(whole.leads, whole.as_of, config, whole.flat)
    training = build_features(whole, rows, config)
    spec = learn_spec(training, set(feature_spec(config, False).categorical))
    assert len(spec.categories["industry"]) > 5
    frames, posted = [], []
    for case in cases[:60]:
        batch = _batch(case.messy_profile, case.messy_events, case.cutoffs, config)
        frames.append(batch.features)
        for i, cutoff in enumerate(case.cutoffs):
            as_of = _as_of(cutoff, i)
            # an empty context: the account as the one-lead snapshot knows it (no other leads)
            lf = lead_features(
                case.messy_profile, case.messy_events, as_of, config, account=AccountContext()
            )
            posted.append(model_row(lf.values, spec))
    expected = feature_matrix(pd.concat(frames, ignore_index=True), spec)
    got = np.concatenate(posted)
    assert got.shape == expected.shape and got.dtype == np.float64
    assert np.array_equal(got, expected, equal_nan=True)
    one = training.iloc[[7]]
    assert np.array_equal(
        model_row({str(k): v for k, v in one.iloc[0].items()}, spec),
        feature_matrix(one, spec),
        equal_nan=True,
    )
    with pytest.raises(KeyError, match="seniority"):
        model_row({}, spec)


def test_model_row_codes_unseen_and_missing_categories_as_nan() -> None:
    spec = ModelSpec(("industry", "company_size"), ("categorical", "numeric"), {"industry": ("a",)})
    frame = pd.DataFrame({"industry": ["a", "zz", None], "company_size": [1.0, None, "12"]})
    expected = feature_matrix(frame, spec)
    records = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
    got = np.concatenate([model_row(r, spec) for r in records])
    assert np.array_equal(got, expected, equal_nan=True)


# --------------------------------------------------------------------------- custom fields, flat


CUSTOM = {
    "custom_fields": [
        {"column": "Plan Tier", "kind": "fit"},
        {"column": "is_partner", "kind": "fit", "type": "boolean"},
        {"column": "budget", "kind": "engagement"},
        {"column": "Last Activity", "kind": "engagement", "type": "categorical"},
    ],
    "mapping": {
        "missing_values": ["", "select", "n/a", "-"],
        "values": {
            "country": {"U.S.": "United States", "Deutschland": "germany"},
            "industry": {"n/a": "Not Given"},  # the map wins over the placeholder
            "event_type": {"Email Opened": "email_open", "Demo": "demo-request"},
            "Plan Tier": {"ent": "Enterprise"},
        },
        "true_values": ["yes", "1", "true"],
        "false_values": ["no", "0", "false"],
    },
    "exclude": ["lead_source"],
}


def _custom_lead(i: int, rng: np.random.Generator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def pick(*values: Any) -> Any:
        return values[int(rng.integers(0, len(values)))]

    profile = {
        "lead_id": f"C{i:03d}",
        "account_id": pick("A1", None, "select"),
        "created_at": pick("2025-03-01", "2025-03-01T08:00:00+02:00", "20250301T0800"),
        "mql_at": pick("2025-03-10T12:00:00Z", None, "N/A"),
        "country": pick("U.S.", " deutschland ", "NAN", "Select", "France"),
        "industry": pick("n/a", "N/A ", "Software", None),
        "lead_source": "webinar",  # excluded by the config: never read
        "company_size": pick("51-200", "12", 40, 3.5, "1,500+", None, "Select"),
        "email": pick("a@GMX.DE", "b@firm.io", None),
        "Plan Tier": pick("ENT", " Pro ", "select", None, 3),
        "is_partner": pick("Yes", " no ", True, False, None, 1, "-"),
        "budget": pick("1200", " 3.25 ", 7, 2.5, None, "-", "1e4"),
        "Last Activity": pick("Email Opened", "Page Visited on Website", None),
    }
    kinds = ("Email Opened", "Demo", "page_view", "Unknown Thing", "email_click")
    events = [
        {
            "event_type": pick(*kinds),
            "occurred_at": f"2025-03-0{int(rng.integers(1, 9))}T{int(rng.integers(0, 24)):02d}:00Z",
        }
        for _ in range(int(rng.integers(0, 12)))
    ]
    return profile, events


@pytest.mark.parametrize("flat", [False, True])
def test_custom_fields_value_maps_and_flat_configs(flat: bool) -> None:
    config = build_config({**CUSTOM, "source": {"flat": flat}})
    rng = np.random.default_rng(11)
    cutoff = pd.Timestamp("2025-03-06T00:00:00Z")
    for i in range(60):
        profile, events = _custom_lead(i, rng)
        batch = _batch(profile, events, [cutoff], config)
        as_of = cutoff.to_pydatetime()
        lf = lead_features(profile, events, as_of, config, {"email_open": 7.0}, AccountContext())
        _assert_same(batch.features.iloc[0], lf.values, profile["lead_id"])
        assert lf.unknown_event_types == batch.snapshot.report.unknown_event_types
        assert lf.duplicates == batch.snapshot.report.events_duplicate
        if flat:
            assert math.isnan(lf.decayed["email_open"])
    assert lf.values["lead_source"] is None  # its column is excluded: the feature is missing


# --------------------------------------------------------------------------- cleaning helpers


def _timestamp_texts(rng: np.random.Generator, n: int) -> list[str]:
    """Timestamps in the forms exports write and in broken ones, valid or not."""
    dates = ["2025-03-09", "2024-02-29", "2025-02-29", "1969-12-31", "1500-06-01", "9999-12-31"]
    dates += ["0001-01-01", "2025-13-01", "2025-1-9", "20250309", "2025-03", "2025"]
    times = ["", "T10:00", "T10:00:00", " 10:00:00", "T23:59:59", "T24:00:00", "T23:59:60"]
    times += ["T10", "T1:00", "T10:60", "t10:00:00", "T101500", "  10:00"]
    fractions = ["", ".", ".5", ".123", ".9995", ".123456", ".1234567", ".123456789"]
    fractions += [".1234567891", ",5"]
    zones = ["", "Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+0530", "+05", "+23:59"]
    zones += ["+24:00", "+05:60", " UTC", "GMT", "+05:3", " +01:00", "Z "]
    out = ["", "n/a", " NULL ", "-", "NaT", "nan", "2025-03-09T10:00:00Z\n", "2025-03-09Z"]
    out += ["2025-03-09+01:00", "2025-03-09T10:00:00+01:00:00", "1677-09-21T00:12:43.1454775Z"]
    for _ in range(n):
        text = str(rng.choice(dates))
        time_part = str(rng.choice(times))
        if time_part:
            text += time_part
            if time_part.count(":") == 2:
                text += str(rng.choice(fractions))
            text += str(rng.choice(zones))
        out.append(text)
    return out


def test_timestamps_read_as_pandas_reads_them(config: Config) -> None:
    texts = _timestamp_texts(np.random.default_rng(3), 3000)
    # Nanoseconds turn a whole column to datetime64[ns] (which refuses years outside ~1678-2261),
    # so those are read alone, as one posted value is; the rest are read together.
    nanos = {t for t in texts if re.search(r"\.[0-9]{7}", t)}
    groups = [[t] for t in sorted(nanos)] + [[t for t in texts if t not in nanos]]
    for group in groups:
        parsed, bad = parse_timestamps(pd.Series(group, dtype="str"), config.mapping)
        wanted = parsed.dt.as_unit("ms").array.asi8
        for text, want, unread in zip(group, wanted, bad, strict=True):
            assert value_rules(config.mapping).timestamp(text) == (int(want), bool(unread)), repr(
                text
            )
    moments = [
        datetime(2025, 3, 9, 10, 0, 0, 999_999, tzinfo=IST),
        datetime(1969, 12, 31, 23, 59, 59, 999_500),
        pd.Timestamp("2025-03-09T10:00:00.123456789+01:00"),
        pd.Timestamp("1969-12-31T23:59:59.9999999"),
    ]
    for moment in moments:
        parsed, _ = parse_timestamps(pd.Series([moment]), config.mapping)
        assert value_rules(config.mapping).timestamp(moment) == (int(parsed.array.asi8[0]), False)


def test_numbers_and_company_sizes_read_as_pandas_reads_them(config: Config) -> None:
    rng = np.random.default_rng(4)
    alphabet = list("0123456789") * 3 + list(".,+-eE ") + ["inf", "nan", "x", "٣", "to", "–"]
    texts = ["".join(rng.choice(alphabet, int(rng.integers(1, 9)))) for _ in range(3000)]
    texts += ["51-200", "10,000+", "1,000 - 5,000", "200 to 500", "11–50", "1_000", "0x10"]
    texts += ["٣٠", "１２", "1e400", "-0", "12345678901234567", "3.14159265358979323846", "-5"]
    series = pd.Series(texts, dtype="str")
    sizes, bad = parse_company_size(series, config.mapping)
    numbers = pd.to_numeric(series, errors="coerce").astype("float64")
    for text, want, unread, number in zip(texts, sizes, bad, numbers, strict=True):
        got, got_bad = value_rules(config.mapping).company_size(text)
        assert (got == want or (math.isnan(got) and math.isnan(want))) and got_bad == unread, text
        got = number_value(text)
        assert got == number or (math.isnan(got) and math.isnan(number)), text
    for value in (12, 12.5, -3, True, np.int64(7), np.float64("nan")):
        size, bad = parse_company_size(pd.Series([value]), config.mapping)
        got, got_bad = value_rules(config.mapping).company_size(value)
        assert (got == size.iloc[0] or math.isnan(got)) and got_bad == bad[0], value


def test_text_categories_email_and_event_types_clean_as_pandas_cleans_them() -> None:
    config = build_config(CUSTOM)
    mapping = config.mapping
    rng = np.random.default_rng(6)
    words = ["U.S.", "Straße", "n/a", "ENT", "Email Opened", "page-view", "x@Gmail.COM", "İ"]
    words += ["Demo", "a@b@c.com", "other", "NaN", "", "-", "select", "web - inar", "ǅ", "@"]
    texts = [
        "".join(rng.choice(SPACES)) + str(rng.choice(words)) + "".join(rng.choice(SPACES))
        for _ in range(500)
    ]
    texts += [str(rng.choice(words)).upper() + str(rng.choice(SPACES)) + w for w in words]
    series = pd.Series(texts, dtype="str")
    for column in ("country", "industry", "Plan Tier", "job_title"):
        text, category = (
            clean_text(series, mapping, column),
            clean_category(series, mapping, column),
        )
        for raw, want_text, want_category in zip(texts, text, category, strict=True):
            text_value = value_rules(mapping).text(raw, column)
            assert text_value == (None if _missing(want_text) else want_text), (column, raw)
            category_value = value_rules(mapping).category(raw, column)
            assert category_value == (None if _missing(want_category) else want_category), raw
    for raw, flag in zip(texts, free_mail_flag(series, mapping), strict=True):
        want = math.nan if _missing(flag) else float(flag)
        got = value_rules(mapping).free_mail(raw)
        assert got == want or (math.isnan(got) and math.isnan(want)), raw
    codes = event_type_codes(series, mapping)
    assert [value_rules(mapping).event_kind(raw)[0] for raw in texts] == codes.tolist()
    # the column forms: the same scalar rules once per distinct value, equal to the reader's
    for column in ("country", "industry", "Plan Tier", "job_title"):
        assert clean_texts(series, mapping, column).equals(clean_text(series, mapping, column))
        assert clean_categories(series, mapping, column).equals(
            clean_category(series, mapping, column)
        )
    assert free_mail_flags(series, mapping).equals(free_mail_flag(series, mapping))
    assert event_kinds(series, mapping).tolist() == codes.tolist()
    flags = pd.Series([*texts, "yes", " TRUE ", "0", "No", None], dtype="str")
    for column in ("converted", "is_partner"):
        got, got_bad = flags_of(flags, mapping, column)
        want, want_bad = parse_flags(flags, mapping, column)
        assert got.equals(want) and got_bad.tolist() == want_bad.tolist()
    numbers = pd.Series([*texts, "1e3", " 12 ", "-0", "inf", "1_000", None], dtype="str")
    got_numbers, got_bad = numbers_of(numbers, mapping, "budget")
    text = clean_text(numbers, mapping, "budget")
    want_numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    assert np.array_equal(got_numbers.to_numpy(), want_numbers.to_numpy(), equal_nan=True)
    assert got_bad.tolist() == (text.notna() & want_numbers.isna()).tolist()


def test_plain_ascii_texts_clean_as_the_scalar_rules_clean_them() -> None:
    """The column forms skip the scalar call for plain ASCII (trimmed, single spaces); random
    ASCII texts, placeholders in any case, mapped values and odd addresses must come out as the
    scalar rule makes each of them."""
    config = build_config({**CUSTOM, "mapping": {"values": {"country": {"usa": "US"}}}})
    mapping = config.mapping
    rng = np.random.default_rng(11)
    alphabet = [*"aZ9 @.-_/", "\t", "\u00e9", "  "]
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 8))) for _ in range(3000)]
    texts += ["N/A", "NULL", "Unknown", "?", "usa", "USA", "Usa ", "x@GMAIL.COM", "a@b@Gmail.com"]
    texts += ["jane@example.com", "@", "a@", "@gmail.com", "x@gmail.com ", "L0000001", "A"]
    series = pd.Series([*texts, None], dtype="str")
    rules = value_rules(mapping)

    def scalar(rule: Any) -> list[Any]:
        return [None if (v := rule(raw)) is None or v != v else v for raw in [*texts, None]]

    for column in ("country", "lead_id", "email"):
        got = clean_texts(series, mapping, column)
        assert got.dtype == "str"
        assert [None if _missing(v) else v for v in got] == scalar(
            lambda raw, c=column: rules.text(raw, c)
        ), column
        categories = clean_categories(series, mapping, column)
        assert [None if _missing(v) else v for v in categories] == scalar(
            lambda raw, c=column: rules.category(raw, c)
        ), column
    flags = free_mail_flags(series, mapping)
    want = [rules.free_mail(raw) for raw in [*texts, None]]
    got_flags = [math.nan if _missing(v) else float(v) for v in flags]
    pairs = zip(got_flags, want, strict=True)
    assert all(g == w or (math.isnan(g) and math.isnan(w)) for g, w in pairs)
    assert flags.tolist()[texts.index("a@b@Gmail.com")] is True
    assert _missing(flags.tolist()[texts.index("@")])


# --------------------------------------------------------------------------- errors and privacy


GOOD = {
    "lead_id": "L1",
    "account_id": "A1",
    "created_at": "2025-03-01T00:00:00Z",
    "mql_at": "2025-03-10T00:00:00Z",
    "email": "jane.doe@example.com",
}


@pytest.mark.parametrize(
    ("change", "events", "column"),
    [
        ({"lead_id": " n/a "}, [], "lead_id"),
        ({"created_at": "yesterday"}, [], "created_at"),
        ({"sql_at": "2025-03-05T00:00:00Z"}, [], "sql_at"),
        ({"company_size": "lots"}, [], "company_size"),
        ({"company_size": -4}, [], "company_size"),
        ({}, [{"event_type": "page_view", "occurred_at": "2025-13-01"}], "occurred_at"),
        ({}, [{"event_type": "page_view", "occurred_at": " N/A "}], "occurred_at"),
        ({}, [{"occurred_at": "2025-03-02"}], "event_type"),
    ],
)
def test_bad_input_is_refused_where_the_reader_refuses_it(
    change: dict[str, Any], events: list[dict[str, Any]], column: str
) -> None:
    config = build_config()
    profile = {**GOOD, **change}
    with pytest.raises(ContractError):
        _batch(profile, events, [pd.Timestamp("2025-03-10", tz="UTC")], config)
    with pytest.raises(LeadError) as caught:
        lead_features(profile, events, datetime(2025, 3, 10, tzinfo=UTC), config)
    assert [p.column for p in caught.value.problems] == [column]
    assert "jane.doe" not in str(caught.value)  # the address is never shown


def test_missing_required_fields_and_bad_as_of_are_named() -> None:
    config = build_config()
    with pytest.raises(LeadError, match="created_at"):
        lead_features({"lead_id": "L1"}, [], datetime(2025, 3, 10), config)
    with pytest.raises(LeadError, match="as_of"):
        lead_features(GOOD, [], "not a time", config)
    with pytest.raises(ValueError, match="unknown event types"):
        lead_features(GOOD, [], datetime(2025, 3, 10), config, {"chat": 7.0})
    with pytest.raises(ValueError, match="half-life"):
        lead_features(GOOD, [], datetime(2025, 3, 10), config, {"email_open": 0.0})


def test_the_email_address_is_not_kept() -> None:
    lf = lead_features(GOOD, [], datetime(2025, 3, 10), build_config())
    assert lf.values["email_free"] == 0.0
    assert "jane.doe" not in repr(lf) and "example.com" not in repr(lf)


# --------------------------------------------------------------------------- decay, rules


def test_decayed_counts_of_long_histories_match_to_the_bit() -> None:
    """More events of one type than the decay scan's block (32): the general code path."""
    config = build_config()
    rng = np.random.default_rng(8)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    offsets = np.sort(rng.integers(0, 400 * 86_400_000, 300))
    events = [
        {
            "event_type": str(rng.choice(["email_open", "page_view", "email_click"])),
            "occurred_at": (start + pd.Timedelta(milliseconds=int(ms))).isoformat(),
        }
        for ms in offsets
    ]
    profile = {"lead_id": "L1", "created_at": "2023-12-01T00:00:00Z"}
    cutoffs = [pd.Timestamp("2024-06-01", tz="UTC"), pd.Timestamp("2025-03-01T01:02:03Z")]
    batch = _batch(profile, events, cutoffs, config)
    for i, cutoff in enumerate(cutoffs):
        lf = lead_features(profile, events, cutoff.to_pydatetime(), config, HALF_LIVES)
        assert _number(lf, "n_email_open_all") > 32
        want = batch.decayed.iloc[i]
        assert lf.decayed == {t: float(want[decayed_name(t)]) for t in HALF_LIVES}
        _assert_same(batch.features.iloc[i], lf.values, str(cutoff))


def test_rule_values_are_what_rule_inputs_names() -> None:
    rules = load_rules()
    lf = lead_features(GOOD, [], datetime(2025, 3, 10), build_config(), half_lives(rules))
    values = rule_values(lf)
    from training.rules import input_names

    assert set(input_names(rules)) <= set(values)
    assert values["decayed_demo_request"] == 0.0
