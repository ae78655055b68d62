"""Reasons a salesperson reads: which SHAP contributions to show, and each in plain words.

One module for the API (`serving.scoring`), the batch job (`serving.batch`) and the report's
waterfall, so that the same lead gets the same reasons everywhere:

- **Wording** reads each feature's meaning (`features.spec`): categories as people write them
  ('C-level', '51–200 employees'), times as 'demo requested 3 days ago', whole days and
  people, 'no email opens in the last 30 days' for a zero.
- **Selection** (`choose`): the `top` strongest contributions that raise the chance and the
  `top` strongest that lower it, each strongest first. An absence (a zero count, 'never', no
  account) is a candidate only when it moves the score the way absence should (lowers it for
  something welcome); of the features whose absence reads the same ('no account known' for
  every account feature) only the strongest is kept, so no sentence appears twice.

Selection works on whole matrices (one row for the API, a chunk for the batch job).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from features.spec import FeatureMeaning, unknown_meaning

#: Words written in capitals whatever the export's case ('IT services', 'UK').
ACRONYMS: Final = frozenset(
    {
        "it",
        "hr",
        "us",
        "usa",
        "uk",
        "uae",
        "eu",
        "b2b",
        "b2c",
        "saas",
        "ai",
        "api",
        "seo",
        "ppc",
        "crm",
        "sms",
    }
)
_SMALL_WORDS: Final = frozenset({"and", "of", "the", "for", "in", "on", "to", "or", "a"})
#: Company sizes as CRMs band them: a size read from a range ('51-200' is 125.5) is worded as
#: the band it falls in, never as a fraction of a person.
SIZE_BANDS: Final = ((1, 10), (11, 50), (51, 200), (201, 500), (501, 1000), (1001, 5000),
                     (5001, 10000))  # fmt: skip
_RANGE: Final = re.compile(r"^\s*(\d[\d,]*)\s*(?:-|–|to)\s*(\d[\d,]*)\s*$")
_PLUS: Final = re.compile(r"^\s*(\d[\d,]*)\s*\+\s*$")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _count(value: float) -> str:
    return f"{round(value):,}"


def people_case(text: str, *, every_word: bool) -> str:
    """A case-folded category as people write it: 'Software', 'IT services', 'United States'."""
    words = str(text).split(" ")
    shown = []
    for position, word in enumerate(words):
        if word.casefold() in ACRONYMS or (every_word and len(word) == 2 and word.isalpha()):
            shown.append(word.upper())
        elif position == 0 or (every_word and word.casefold() not in _SMALL_WORDS):
            shown.append(word[:1].upper() + word[1:])
        else:
            shown.append(word)
    return " ".join(shown)


def size_words(value: Any, posted: Any = None) -> str:
    """Employees in words: the range a lead posted stays that range ('51–200 employees'), a
    whole number stays itself, and a size read from a range is worded as its band."""
    if isinstance(posted, str):
        if (found := _RANGE.match(posted)) is not None:
            low, high = (int(g.replace(",", "")) for g in found.groups())
            return f"{low:,}–{high:,} employees"
        if (found := _PLUS.match(posted)) is not None:
            return f"{int(found.group(1).replace(',', '')):,}+ employees"
    if _missing(value):
        return "company size unknown"
    size = float(value)
    if size.is_integer():
        return f"{int(size):,} {'employee' if size == 1 else 'employees'}"
    for low, high in SIZE_BANDS:
        if size <= high:
            return f"{low:,}–{high:,} employees"
    return f"{SIZE_BANDS[-1][1] + 1:,}+ employees"


def _days_words(days: float, first_day: str, second_day: str, suffix: str) -> str:
    """Days in words: `first_day` under one day, `second_day` under two, else whole days,
    months or years and `suffix` ('3 days ago', '7 months after it was created'), bucketed
    as `wording_keys` buckets them."""
    if days < 1:
        return first_day
    if days < 2:
        return second_day
    if days < 60:
        return f"{math.floor(days)} days {suffix}"
    if days < 730:
        return f"{round(days / 30.44)} months {suffix}"
    return f"{round(days / 365.25)} years {suffix}"


def ago(days: float) -> str:
    """Whole days (or months, years) before the scoring time: 'today', '3 days ago'."""
    return _days_words(days, "today", "yesterday", "ago")


def after_created(days: float) -> str:
    """How long after its creation a lead became an MQL, in `ago`'s units."""
    return _days_words(
        days, "the day it was created", "a day after it was created", "after it was created"
    )


def _window(meaning: FeatureMeaning) -> str:
    if meaning.at_mql:
        if meaning.window_days is None:
            account = meaning.family == "account"
            return " before this lead became an MQL" if account else " before becoming an MQL"
        return f" in the {meaning.window_days} days before becoming an MQL"
    if meaning.window_days is not None:
        return f" in the last {meaning.window_days} days"
    return " so far" if meaning.family == "engagement" else ""


def _count_words(meaning: FeatureMeaning, value: float) -> str:
    words = meaning.event
    assert words is not None
    if value == 0 or math.isnan(value):
        if meaning.absence is not None and meaning.absence_on_zero:
            return meaning.absence
        return f"{words.none or 'no ' + words.many}{_window(meaning)}"
    noun = words.one if value == 1 else words.many
    return f"{_count(value)} {noun}{_window(meaning)}"


def _category_words(meaning: FeatureMeaning, value: Any) -> str:
    if _missing(value):
        return f"no {meaning.label} known"
    text = str(value)
    known = meaning.phrase(text)
    if known is not None:
        return known
    shown = people_case(text.replace("_", " "), every_word=meaning.every_word_capitalised)
    return f"{meaning.label}: {shown}"


def _flag_words(meaning: FeatureMeaning, value: Any) -> str:
    if _missing(value):
        return meaning.absence or f"{meaning.label} unknown"
    known = meaning.phrase("1" if value else "0")
    return known or f"{meaning.label}: {'yes' if value else 'no'}"


def describe(meaning: FeatureMeaning, value: Any, posted: Any = None) -> str:
    """What a feature's value says, in words ('2 demo requests in the last 30 days').

    `posted`: the value as the lead gave it, when the pipeline keeps it (the API keeps the
    company size range a lead posted).
    """
    unit = meaning.unit
    if unit == "category":
        return _category_words(meaning, value)
    if unit == "employees":
        return size_words(value, posted)
    if unit == "flag":
        return _flag_words(meaning, value)
    if _missing(value):
        if meaning.absence is not None:
            return meaning.absence
        if unit == "count" and meaning.event is not None:
            return _count_words(meaning, math.nan)
        return f"{meaning.label} unknown"
    number = float(value)
    if unit == "count":
        return _count_words(meaning, number)
    if unit == "days" and meaning.at_mql:
        return f"{meaning.label} {after_created(number)}"
    if unit == "days":
        return f"{meaning.label} {ago(number)}"
    if unit == "active_days":
        if number == 0:
            return (
                meaning.absence
                if meaning.absence_on_zero and meaning.absence
                else (f"not active{_window(meaning)}")
            )
        return f"active on {_count(number)} {'day' if round(number) == 1 else 'days'}" + _window(
            meaning
        )
    if unit == "trend":
        trend = "rising" if number > 0.1 else "falling" if number < -0.1 else "steady"
        return f"activity {trend} over the last {meaning.window_days} days"
    shown = f"{number:,.0f}" if number.is_integer() else f"{number:,.2f}"
    return f"{meaning.label}: {shown}"


def wording_keys(meaning: FeatureMeaning, values: np.ndarray) -> np.ndarray:
    """Per float value, a number that decides its words: values with the same key are worded
    alike by `describe` (days: the whole days, months or years `ago` shows; counts: the
    rounded count; anything else: the value). Lets a batch word each distinct key once."""
    if meaning.unit == "days":
        days = values
        return np.where(
            days < 60,
            np.floor(days),
            np.where(days < 730, 1e6 + np.round(days / 30.44), 2e6 + np.round(days / 365.25)),
        )
    if meaning.unit in ("count", "active_days"):
        return np.round(values)
    return values


def sentence(meaning: FeatureMeaning, value: Any, contribution: float, posted: Any = None) -> str:
    """'demo requested 3 days ago raises the chance'."""
    verb = "raises" if contribution > 0 else "lowers"
    return f"{describe(meaning, value, posted)} {verb} the chance"


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class ReasonPlan:
    """The features of a model, in its order, with what selection needs of each meaning."""

    names: tuple[str, ...]
    meanings: tuple[FeatureMeaning, ...]
    can_be_absent: np.ndarray  # bool per feature
    zero_is_absent: np.ndarray  # bool: a zero count or zero active days is an absence
    absent_sign: np.ndarray  # +1 / -1: the only sign an absence may be shown with
    shared_absence: np.ndarray  # int group of features whose absence reads the same; -1 none
    shared_on_zero: np.ndarray  # bool: a zero says the shared absence too (not only missing)
    grouped: np.ndarray  # the features of groups of 2 or more, by group, then by index
    group_starts: np.ndarray  # where each such group starts in `grouped`
    group_sizes: np.ndarray

    @staticmethod
    def of(names: Sequence[str], meanings: Mapping[str, FeatureMeaning]) -> ReasonPlan:
        """The plan for `names` (a model's features); a feature no meaning covers is worded by
        its name and never counts as absent."""
        chosen = tuple(meanings.get(name) or unknown_meaning(name) for name in names)
        groups: dict[str, int] = {}
        shared = [
            groups.setdefault(m.absence, len(groups)) if m.absence is not None else -1
            for m in chosen
        ]
        shared_absence = np.array(shared, dtype=np.int64)
        ids, sizes = np.unique(shared_absence[shared_absence >= 0], return_counts=True)
        several = ids[sizes > 1]
        grouped = np.flatnonzero(np.isin(shared_absence, several))
        grouped = grouped[np.argsort(shared_absence[grouped], kind="stable")]
        starts = np.flatnonzero(np.r_[True, np.diff(shared_absence[grouped]) != 0])
        starts = starts if grouped.size else np.empty(0, dtype=np.int64)
        return ReasonPlan(
            names=tuple(names),
            meanings=chosen,
            can_be_absent=np.array([m.can_be_absent for m in chosen], dtype=bool),
            zero_is_absent=np.array(
                [m.can_be_absent and m.unit in ("count", "active_days") for m in chosen], dtype=bool
            ),
            absent_sign=np.array([-1.0 if m.welcome else 1.0 for m in chosen]),
            shared_absence=shared_absence,
            shared_on_zero=np.array([m.absence_on_zero for m in chosen], dtype=bool),
            grouped=grouped,
            group_starts=starts,
            group_sizes=np.diff(np.r_[starts, grouped.size]),
        )


@dataclass(frozen=True)
class Chosen:
    """Per row, the feature indices of the reasons that raise and that lower the chance,
    strongest first, padded with -1."""

    raising: np.ndarray
    lowering: np.ndarray


def _top(strength: np.ndarray, k: int) -> np.ndarray:
    """Per row the indices of the `k` largest finite strengths, largest first (ties: the lower
    index first), -1 where fewer are finite. `strength` is overwritten.

    k passes of `argmax` (k is small): cheaper than a partition and a sort of every row.
    """
    n, width = strength.shape
    k = min(k, width)
    out = np.full((n, k), -1, dtype=np.int64)
    rows = np.arange(n)
    for slot in range(k):
        best = np.argmax(strength, axis=1)
        found = np.isfinite(strength[rows, best])
        out[:, slot] = np.where(found, best, -1)
        strength[rows, best] = -np.inf
    return out


#: Rows chosen at a time: the dozen (rows x features) temporaries of a block stay in the
#: CPU's caches, where a whole batch's would stream through memory once each.
CHOOSE_ROWS = 2048


def choose(plan: ReasonPlan, values: np.ndarray, contributions: np.ndarray, top: int) -> Chosen:
    """Which reasons to show (see the module docstring), `CHOOSE_ROWS` rows at a time (each
    row's choice depends on that row alone).

    Args:
        plan: the model's features and meanings.
        values: (rows, features) float values as the model saw them; categories may be NaN or
            any number (they are never absences).
        contributions: (rows, features) SHAP values in log-odds (no bias column).
        top: how many of each sign.
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    n = values.shape[0]
    if n <= CHOOSE_ROWS:
        return _choose_rows(plan, values, contributions, top)
    parts = [
        _choose_rows(plan, values[i : i + CHOOSE_ROWS], contributions[i : i + CHOOSE_ROWS], top)
        for i in range(0, n, CHOOSE_ROWS)
    ]
    return Chosen(
        np.concatenate([part.raising for part in parts]),
        np.concatenate([part.lowering for part in parts]),
    )


def _choose_rows(
    plan: ReasonPlan, values: np.ndarray, contributions: np.ndarray, top: int
) -> Chosen:
    """`choose` of one block of rows."""
    missing = np.isnan(values)
    zero = values == 0
    absent = plan.can_be_absent & (missing | (zero & plan.zero_is_absent))
    wrong_way = absent & (np.sign(contributions) != plan.absent_sign)
    strength = np.where(wrong_way | (contributions == 0), -np.inf, np.abs(contributions))
    if plan.grouped.size:
        _keep_one_per_shared_absence(plan, absent, missing, zero, strength)
    raising = _top(np.where(contributions > 0, strength, -np.inf), top)
    lowering = _top(np.where(contributions < 0, strength, -np.inf), top)
    return Chosen(raising, lowering)


def _keep_one_per_shared_absence(
    plan: ReasonPlan,
    absent: np.ndarray,
    missing: np.ndarray,
    zero: np.ndarray,
    strength: np.ndarray,
) -> None:
    """Of the features whose absence reads the same, in each row, leave only the strongest
    candidate saying it (ties: the lower index); the others' strength becomes -inf, in place.
    One pass over the grouped columns (`np.maximum.reduceat` per group), no loop per group."""
    cols = plan.grouped
    says = absent[:, cols] & (missing[:, cols] | (zero[:, cols] & plan.shared_on_zero[cols]))
    block = strength[:, cols]
    says &= np.isfinite(block)
    if not says.any():
        return
    sub = np.where(says, block, -np.inf)
    best = np.repeat(np.maximum.reduceat(sub, plan.group_starts, axis=1), plan.group_sizes, 1)
    is_best = says & (sub == best)
    running = np.cumsum(is_best, axis=1)
    before = np.where(plan.group_starts > 0, running[:, np.maximum(plan.group_starts - 1, 0)], 0)
    first = is_best & (running - np.repeat(before, plan.group_sizes, axis=1) == 1)
    strength[:, cols] = np.where(says & ~first, -np.inf, block)
