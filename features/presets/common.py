"""What every CRM adapter needs: event-type rules, first times from a history, values as of a
cutoff, and the events an adapter hands to the reader: coded (lead positions, times and type
codes) for `read_snapshot`, contract frames for any other reader of the tables (Spark).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.presets.tables import ids
from features.reader.arrow_frame import unchecked_categories
from features.reader.events import CodedEvents, EventChunk

#: Event batches an adapter may read ahead while it works out its leads (each at most
#: features.presets.tables.BATCH_ROWS events, held as integer arrays until the reader takes it).
READ_AHEAD_BATCHES = 32

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
    events: Iterator[EventChunk] | None
    leads_name: str
    events_name: str
    notes: list[str] = field(default_factory=list)


def spread(codes: np.ndarray, labels: Any) -> pd.Series:
    """A categorical column from per-row `codes` (-1: missing) and one label per code
    (None: missing), without touching a string per row."""
    label_codes, categories = pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=True)
    per_code = np.append(label_codes, -1)
    return pd.Series(pd.Categorical.from_codes(per_code[codes], categories=categories))


def distinct(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Per-row codes (-1: missing) into the distinct values: a categorical's own codes and
    categories (no pass over the rows' text), else `pd.factorize`."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.array
        assert isinstance(cat, pd.Categorical)
        return np.asarray(cat.codes, dtype=np.int64), pd.Series(cat.categories)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), pd.Series(uniques)


def per_distinct(values: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`func` applied to the distinct values only, spread back over the rows as a categorical
    column (a connector column has millions of rows but few distinct types or subjects)."""
    codes, uniques = distinct(values)
    mapped = func(uniques).to_numpy(dtype=object)
    out = spread(codes, [None if pd.isna(v) else v for v in mapped])
    out.index = values.index
    return out


def classify(values: dict[str, pd.Series], rules: Sequence[Rule], default: str) -> pd.Series:
    """The event type per row by the first rule whose field matches; `default` when none does.

    Patterns run on the distinct combinations of the fields the rules name, not on every row,
    and the types come back categorical (no string per row).
    """
    if not values:
        raise ValueError("classify needs at least one field")
    index = next(iter(values.values())).index
    names = sorted({rule.field for rule in rules} & set(values)) or [next(iter(values))]
    # each row's combination of the fields' values, as one number: a digit per field (its
    # code + 1, 0 for missing) in a base of that field's distinct values + 1
    combined = np.zeros(len(index), dtype=np.int64)
    sizes, texts = {}, {}
    for name in names:
        codes, uniques = distinct(values[name])
        sizes[name], texts[name] = len(uniques) + 1, _texts(uniques)
        combined *= sizes[name]
        combined += codes
        combined += 1
    row_codes, keys = _combination_codes(combined, math.prod(sizes.values()))
    kind = np.full(len(keys), default, dtype=object)
    done = np.zeros(len(keys), dtype=bool)
    # each combination's value of each field, as a position in that field's texts: its digit
    combos = {}
    for name in reversed(names):
        keys, combos[name] = np.divmod(keys, sizes[name])
    for rule in rules:
        if rule.field not in combos:
            continue
        pattern = re.compile(rule.pattern, flags=re.IGNORECASE)
        # the pattern runs once per distinct value of its field, not per combination
        matches = np.fromiter(
            (pattern.search(v) is not None for v in texts[rule.field]),
            dtype=bool,
            count=len(texts[rule.field]),
        )
        hit = matches[combos[rule.field]] & ~done
        kind[hit] = rule.event_type
        done |= hit
    out = spread(np.asarray(row_codes, dtype=np.int64), kind)
    out.index = index
    return out


def _combination_codes(combined: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the code of its combination, and the distinct combinations (`space`: how
    many there can be). A space not much larger than the rows (a web-analytics batch: a few
    event types, titles and urls) is marked in a table, in the combinations' order, instead
    of hashing every row."""
    if space > max(4 * len(combined), 1 << 16):
        codes, keys = pd.factorize(combined)
        return np.asarray(codes, dtype=np.int64), np.asarray(keys, dtype=np.int64)
    present = np.zeros(space, dtype=bool)
    present[combined] = True
    code_of = np.cumsum(present, dtype=np.int64)
    code_of -= 1
    return code_of[combined], np.flatnonzero(present).astype(np.int64)


def _texts(uniques: pd.Series) -> np.ndarray:
    """Each distinct value as text after a leading "" for missing (code -1 + 1)."""
    return np.array(["", *(str(u) for u in uniques)], dtype=object)


def positions(index: pd.Index, keys: pd.Series) -> np.ndarray:
    """Position of each key in `index` (-1: not there), comparing ids as text when one side is
    numeric and the other is not (a CSV's `123` and a Parquet's 123 are one contact)."""
    if isinstance(keys.dtype, pd.CategoricalDtype):
        codes, uniques = distinct(keys)
        return np.append(positions(index, uniques), -1)[codes]
    numeric = [pd.api.types.is_numeric_dtype(x.dtype) for x in (index, keys)]
    if numeric[0] != numeric[1]:
        index = pd.Index(ids(pd.Series(index)))
        keys = ids(keys)
    return np.array(index.get_indexer(pd.Index(keys)), dtype=np.int64)


@dataclass(frozen=True)
class IdPositions:
    """`positions` in one index, built once for every batch of an event table: integer ids in
    a range not much wider than their count are found in a table by id (one array read per
    row instead of a hash lookup); any other ids or keys go to `positions`."""

    index: pd.Index
    low: int = 0
    table: np.ndarray | None = None

    def __call__(self, keys: pd.Series) -> np.ndarray:
        """Position of each key in the index (-1: not there), as `positions` gives it."""
        if (
            self.table is None
            or not pd.api.types.is_signed_integer_dtype(keys.dtype)
            or keys.hasnans  # a nullable integer column with gaps
        ):
            return positions(self.index, keys)
        at = keys.to_numpy(dtype=np.int64, copy=True)
        at -= self.low
        outside = at.view(np.uint64) >= len(self.table)  # below `low` wraps round: outside
        at[outside] = 0
        found = self.table[at]
        found[outside] = -1
        return found


def id_positions(index: pd.Index) -> IdPositions:
    """`IdPositions` of `index`, with a table by id when its ids are unique signed integers
    whose range is at most a few times their count (a connector's contact ids); its hash
    table built here otherwise, so that threads working on batches only read it."""
    if len(index) and pd.api.types.is_signed_integer_dtype(index.dtype) and index.is_unique:
        ids = index.to_numpy().astype(np.int64)
        low, span = int(ids.min()), int(ids.max()) - int(ids.min()) + 1
        if span <= 4 * len(ids) + (1 << 20):
            table = np.full(span, -1, dtype=np.int64)
            table[ids - low] = np.arange(len(ids))
            return IdPositions(index, low, table)
    index.get_indexer(index[:1])
    return IdPositions(index)


NAT_TICKS = np.iinfo(np.int64).min  # NaT as integer microseconds


def utc_ticks(stamps: pd.Series) -> np.ndarray:
    """The stamps as integer microseconds since the epoch in UTC (NaT: int64's minimum).

    Asked for as a naive datetime64 array, pandas hands over the column's own values: no
    Timestamp per row (as a zoned column's plain `to_numpy()` makes) and no converted copy
    (as `dt.tz_localize(None)` makes)."""
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.astype("datetime64[us, UTC]")
    return stamps.to_numpy(dtype="datetime64[us]").view(np.int64)


def first_time(pos: np.ndarray, stamps: pd.Series, mask: np.ndarray, n: int) -> pd.Series:
    """Per lead 0..n-1, the earliest stamp of the rows selected by `mask` (NaT: none)."""
    at = stamps.astype("datetime64[us, UTC]")
    keep = mask & (pos >= 0) & at.notna().to_numpy()
    latest = np.iinfo(np.int64).max
    first = np.full(n, latest, dtype=np.int64)
    ticks = utc_ticks(at)
    np.minimum.at(first, pos[keep], ticks[keep])
    first[first == latest] = NAT_TICKS
    return pd.Series(first.view("datetime64[us]"), index=range(n)).dt.tz_localize("UTC")


def value_as_of(
    current: pd.Series,
    cutoff: pd.Series,
    history: pd.DataFrame,
    rows: np.ndarray | None = None,
) -> tuple[pd.Series, int]:
    """A property's value per lead (row 0..n-1) as of `cutoff`, from its change history.

    `history` holds `pos` (the lead's row), `at`, `value` (the new value) and optionally `old`
    (the value before the change, as Salesforce keeps it); `rows`, when given, are the rows
    of `history` that hold this property's changes (a history of several properties is then
    not copied per property). A lead with changes at or before its cutoff takes the last such
    value (of changes at the same time, the later row); a lead whose changes all come later
    takes `old` of the first one when there is one, else missing (the property was not set
    yet); a lead without history keeps its current value. Returns the values and how many
    leads took them from the history.

    Each lead's change is found by a maximum (or minimum) per lead over the changes, not by
    sorting them: no row is ordered.
    """
    pos, ticks, rows = _changes(history, rows)
    n = len(current)
    limit = utc_ticks(cutoff)
    have = np.zeros(n, dtype=bool)
    have[pos] = True
    have &= limit != NAT_TICKS
    if not have.any():
        return current, 0
    mine = limit[pos]
    dated = mine != NAT_TICKS
    before = dated & (ticks <= mine)
    prior = _last_change(pos[before], ticks[before], rows[before], n)
    missing = n + len(history)  # the pool: the current values, every change's value, a
    # missing one, and every change's old value; its parts are not copied into one, only the
    # values used taken
    source = np.arange(n)
    source[have] = missing
    source[prior >= 0] = n + prior[prior >= 0]
    parts = [_text(current), _text(history["value"]), pd.Series([pd.NA], dtype="string")]
    if "old" in history:
        after = dated & (ticks > mine)
        later = _first_change(pos[after], ticks[after], rows[after], n)
        use_old = (prior < 0) & (later >= 0)
        source[use_old] = missing + 1 + later[use_old]
        parts.append(_text(history["old"]))
    pool = pd.concat(parts, ignore_index=True)
    return pd.Series(pool.array.take(source), index=current.index), int(have.sum())


def _changes(
    history: pd.DataFrame, rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lead, the time (integer microseconds) and the row of each change in `history`
    (of `rows`, when given) that has a lead and a time."""
    pos = history["pos"].to_numpy()
    ticks = utc_ticks(history["at"])
    if rows is None:
        rows = np.arange(len(history))
    rows = rows[(pos[rows] >= 0) & (ticks[rows] != NAT_TICKS)]
    return pos[rows], ticks[rows], rows


def _last_change(pos: np.ndarray, ticks: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Per lead 0..n-1, the row of its latest change (of those at the latest time, the
    highest row); -1 where it has none."""
    latest = np.full(n, NAT_TICKS, dtype=np.int64)
    np.maximum.at(latest, pos, ticks)
    at_latest = ticks == latest[pos]
    row = np.full(n, -1, dtype=np.int64)
    np.maximum.at(row, pos[at_latest], rows[at_latest])
    return row


def _first_change(pos: np.ndarray, ticks: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Per lead 0..n-1, the row of its earliest change (of those at the earliest time, the
    lowest row); -1 where it has none."""
    never = np.iinfo(np.int64).max
    earliest = np.full(n, never, dtype=np.int64)
    np.minimum.at(earliest, pos, ticks)
    at_earliest = ticks == earliest[pos]
    row = np.full(n, never, dtype=np.int64)
    np.minimum.at(row, pos[at_earliest], rows[at_earliest])
    row[row == never] = -1
    return row


def _text(values: pd.Series) -> pd.Series:
    """The values as the "string" dtype, as their Python objects would convert (text is
    converted without making an object per value)."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.astype("string").reset_index(drop=True)
    return pd.Series(values.astype(object).to_numpy(), dtype=object).astype("string")


def lead_labels(lead_ids: pd.Series, unique: bool = False) -> pd.Series | pd.CategoricalDtype:
    """The leads' ids as `event_frame` takes them: a categorical type over them when they are
    unique and complete (an event then holds a code, and the type is checked once however
    many frames share it), else the ids themselves.

    `unique`: the caller knows the ids are distinct (the text of distinct integer ids), so
    they are not hashed to find out, neither here nor by the categorical type."""
    index = pd.Index(lead_ids)
    if index.hasnans:
        return lead_ids
    known = unchecked_categories(index) if unique else None
    if known is not None:
        return known
    # the type checks the same Index again: its hash table, built here, is not built twice
    if index.is_unique:
        return pd.CategoricalDtype(index)
    return lead_ids


def _kept(pos: np.ndarray, at: pd.Series, kind: pd.Series) -> tuple[np.ndarray, pd.Categorical]:
    """The rows an adapter's events keep (a lead, a time, a type that is not `drop`) and the
    types as a categorical."""
    types = kind.array if isinstance(kind.dtype, pd.CategoricalDtype) else pd.Categorical(kind)
    assert isinstance(types, pd.Categorical)
    codes = np.asarray(types.codes, dtype=np.int64)
    dropped = types.categories.get_loc("drop") if "drop" in types.categories else -2
    keep = (pos >= 0) & at.notna().to_numpy() & (codes >= 0) & (codes != dropped)
    return np.flatnonzero(keep), types


def coded_events(
    lead_ids: pd.Index, pos: np.ndarray, at: pd.Series, kind: pd.Series
) -> CodedEvents:
    """The events `event_frame` would give (same rows, times and types), coded for the reader:
    positions into `lead_ids`, milliseconds and the types' codes; no context columns."""
    rows, types = _kept(pos, at, kind)
    ticks = utc_ticks(at)
    # held until the reader takes them (read ahead, some batches wait): compact integers
    lead_type = np.int32 if len(lead_ids) < np.iinfo(np.int32).max else np.int64
    return CodedEvents(
        lead_ids,
        pos[rows].astype(lead_type),
        ticks[rows] // 1000,  # as the reader floors microseconds to milliseconds
        np.asarray(types.codes)[rows].astype(np.int32),
        types.categories,
    )


@dataclass(frozen=True)
class EventForm:
    """The form an adapter hands its events in: coded for the reader (`read_snapshot`), or
    contract frames with their context columns (campaign, url) for any other reader.

    `labels` are the leads' ids as `event_frame` takes them (`lead_labels`), `index` the same
    ids as coded events' positions index them: one object for every batch, so that the
    reader translates them to its own rows once."""

    labels: pd.Series | pd.CategoricalDtype
    index: pd.Index
    coded: bool

    @property
    def context(self) -> bool:
        """Whether campaign and url are wanted (frames only: the reader keeps neither)."""
        return not self.coded

    def events(
        self,
        pos: np.ndarray,
        at: pd.Series,
        kind: pd.Series,
        campaign: pd.Series | None = None,
        url: pd.Series | None = None,
    ) -> EventChunk:
        """The events of the leads at rows `pos`, in this form (see `event_frame`)."""
        if self.coded:
            return coded_events(self.index, pos, at, kind)
        return event_frame(self.labels, pos, at, kind, campaign, url)


def event_form(lead_ids: pd.Series, coded: bool, unique: bool = False) -> EventForm:
    """The form of the events of the leads frame's `lead_ids`: coded or frames (`unique`: as
    `lead_labels` takes it)."""
    labels = lead_labels(lead_ids, unique)
    index = labels.categories if isinstance(labels, pd.CategoricalDtype) else pd.Index(labels)
    return EventForm(labels, index, coded)


def event_frame(
    lead_ids: pd.Series | pd.CategoricalDtype,
    pos: np.ndarray,
    at: pd.Series,
    kind: pd.Series,
    campaign: pd.Series | None = None,
    url: pd.Series | None = None,
) -> pd.DataFrame:
    """Contract events of the leads at rows `pos` of `lead_ids` (or of `lead_labels`); rows
    without a lead (-1) or a time, or typed `drop` or missing, are left out. Lead ids and types
    stay categorical (one string per lead or type, not per event)."""
    rows, types = _kept(pos, at, kind)
    codes = np.asarray(types.codes, dtype=np.int64)
    labels = lead_labels(lead_ids) if isinstance(lead_ids, pd.Series) else lead_ids
    if isinstance(labels, pd.CategoricalDtype):
        lead = pd.Categorical.from_codes(pos[rows], dtype=labels)
    else:
        lead = labels.array.take(pos[rows])
    frame = pd.DataFrame(
        {
            "lead_id": lead,
            "occurred_at": at.astype("datetime64[us, UTC]").array.take(rows),
            "event_type": pd.Categorical.from_codes(codes[rows], categories=types.categories),
        }
    )
    for name, values in (("campaign", campaign), ("url", url)):
        frame[name] = (
            pd.Series(pd.NA, index=frame.index, dtype="string")
            if values is None
            else pd.Series(values.array.take(rows))
        )
    return frame
