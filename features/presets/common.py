"""What every CRM adapter needs: event-type rules, first times from a history, values as of a
cutoff, and the contract frames an adapter hands to the reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contract import EVENT_TYPES

#: The contract's event columns an adapter writes.
EVENT_FRAME_COLUMNS = ("lead_id", "occurred_at", "event_type", "campaign", "url")


class Rule(BaseModel):
    """One classification rule: when `field` matches `pattern` (a regular expression, searched
    case-insensitively), the row is of `event_type`. The first matching rule wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="Which value the pattern is matched against.")
    pattern: str = Field(description="Regular expression, searched case-insensitively.")
    event_type: str = Field(description="Contract event type (or `drop` to leave the row out).")


@dataclass
class PresetFrames:
    """What an adapter gives the reader: contract leads, event frames, names and notes."""

    leads: pd.DataFrame
    events: Iterator[pd.DataFrame] | None
    leads_name: str
    events_name: str
    notes: list[str] = field(default_factory=list)


def classify(values: dict[str, pd.Series], rules: Sequence[Rule], default: str) -> pd.Series:
    """The event type per row by the first rule whose field matches; `default` when none does.

    Patterns run on the distinct combinations of the fields a rule names, not on every row:
    a connector table has millions of rows but few distinct subjects, names or titles.
    """
    if not values:
        raise ValueError("classify needs at least one field")
    index = next(iter(values.values())).index
    names = sorted({rule.field for rule in rules} & set(values)) or [next(iter(values))]
    frame = pd.DataFrame({n: values[n].astype("string").fillna("") for n in names}, index=index)
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(frame[names]))
    distinct = pd.DataFrame(list(uniques), columns=names) if len(uniques) else frame.iloc[:0]
    kind = pd.Series(default, index=distinct.index, dtype="object")
    done = pd.Series(False, index=distinct.index)
    for rule in rules:
        if rule.field not in distinct:
            continue
        pattern = re.compile(rule.pattern, flags=re.IGNORECASE)
        hit = distinct[rule.field].map(lambda v, rx=pattern: bool(rx.search(str(v))))
        hit = hit.astype(bool) & ~done
        kind[hit] = rule.event_type
        done |= hit
    out = kind.to_numpy()[codes] if len(codes) else np.array([], dtype=object)
    return pd.Series(out, index=index, dtype="string")


def unknown_event_types(rules: Sequence[Rule], extra: Sequence[str] = ()) -> list[str]:
    """Event types named by rules that are neither contract types nor `drop`."""
    allowed = set(EVENT_TYPES) | {"drop"} | set(extra)
    return sorted({r.event_type for r in rules} - allowed)


def first_time(
    keys: pd.Series, stamps: pd.Series, mask: pd.Series, lead_ids: pd.Series
) -> pd.Series:
    """Per lead in `lead_ids`, the earliest stamp of the rows selected by `mask` (NaT: none)."""
    chosen = pd.DataFrame({"key": keys[mask].to_numpy(), "at": stamps[mask].to_numpy()})
    first = chosen.groupby("key")["at"].min()
    out = lead_ids.map(first)
    return pd.Series(out.to_numpy(), index=lead_ids.index).astype("datetime64[us, UTC]")


def value_as_of(
    current: pd.Series,
    lead_ids: pd.Series,
    cutoff: pd.Series,
    history: pd.DataFrame,
) -> tuple[pd.Series, int]:
    """A property's value per lead as of `cutoff`, from its change history.

    `history` holds `key`, `at`, `value` (the new value) and optionally `old` (the value
    before the change, as Salesforce keeps it). A lead with changes at or before its cutoff
    takes the last such value; a lead whose changes all come later takes `old` of the first
    one when there is one, else missing (the property was not set yet); a lead without
    history keeps its current value. Returns the values and how many leads took them from
    the history.
    """
    out = current.astype("object").copy()
    if history.empty:
        return current, 0
    hist = history.dropna(subset=["at"]).astype({"at": "datetime64[us, UTC]"})
    known = pd.Index(pd.unique(hist["key"].dropna()))
    # integer keys: merge_asof wants one dtype on both sides, and ints are faster
    hist = hist.assign(key=known.get_indexer(pd.Index(hist["key"]))).sort_values(
        ["at"], kind="stable"
    )
    have = lead_ids.isin(known) & cutoff.notna()
    if not have.any():
        return current, 0
    left = pd.DataFrame(
        {
            "key": known.get_indexer(pd.Index(lead_ids[have])),
            "at": cutoff[have].astype("datetime64[us, UTC]").reset_index(drop=True),
            "row": np.flatnonzero(have),
        }
    ).sort_values("at", kind="stable")
    right = hist[["key", "at", "value"]].assign(seen=True)
    before = pd.merge_asof(left, right, on="at", by="key", direction="backward").set_index("row")
    values = before["value"].astype("object")
    no_prior = before["seen"].isna().to_numpy()
    if "old" in hist:
        after = pd.merge_asof(
            left,
            hist[["key", "at", "old"]],
            on="at",
            by="key",
            direction="forward",
            allow_exact_matches=False,
        ).set_index("row")
        values[no_prior] = after["old"].reindex(values.index).to_numpy()[no_prior]
    else:
        values[no_prior] = None
    rows = values.index.to_numpy()
    out.iloc[rows] = values.to_numpy()
    result = pd.Series(out.to_numpy(), index=current.index).astype("string")
    return result, int(have.sum())


def event_frame(
    lead_id: pd.Series,
    at: pd.Series,
    kind: pd.Series,
    campaign: pd.Series | None = None,
    url: pd.Series | None = None,
) -> pd.DataFrame:
    """Contract events from aligned columns; rows without a lead or a time, or typed `drop`,
    are left out."""
    none = pd.Series(pd.NA, index=range(len(lead_id)), dtype="string")

    def column(values: pd.Series | None) -> pd.Series:
        return none if values is None else values.astype("string").reset_index(drop=True)

    frame = pd.DataFrame(
        {
            "lead_id": column(lead_id),
            "occurred_at": at.reset_index(drop=True),
            "event_type": column(kind),
            "campaign": column(campaign),
            "url": column(url),
        }
    )
    keep = frame["lead_id"].notna() & frame["occurred_at"].notna()
    keep &= (frame["event_type"] != "drop").fillna(True)
    return frame[keep.to_numpy()].reset_index(drop=True)
