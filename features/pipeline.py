"""The one feature function: features of (lead, cutoff) rows from a snapshot.

`build_features` serves training sets and batch scoring; under it, `kernel_features` takes
plain arrays of leads and events, and the scoring API calls it with its one lead, so there is
no training/serving skew. It walks the leads in chunks of whole accounts, which bounds memory
and keeps each account's history (for account features) inside one chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from common.config import Config, CustomField
from features.contract import ContractError
from features.engagement import NAT_MS, ChunkLeads, account_names, chunk_features, engagement_names
from features.fit import CATEGORICAL, fit_names, lead_fit
from features.parallel import ordered_map, worker_count
from features.periods import period_rows
from features.reader import EventLog, Snapshot
from features.rows import RowCounts, lead_positions, training_rows

Progress = Callable[[int, int], None]
FeatureKind = Literal["categorical", "numeric"]
ROW_KEYS = ("lead_id", "cutoff")


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered features a snapshot yields, each with its kind (for models and serving)."""

    names: tuple[str, ...]
    kinds: tuple[FeatureKind, ...]

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(n for n, k in zip(self.names, self.kinds, strict=True) if k == "categorical")


def feature_spec(config: Config, flat: bool) -> FeatureSpec:
    """The features built for this config; a flat export has fit and custom features only."""
    custom: tuple[CustomField, ...] = config.custom_fields
    names = fit_names(custom)
    categorical = set(CATEGORICAL) | {cf.feature for cf in custom if cf.value_type == "categorical"}
    if not flat:
        windows = config.features.windows_days
        names += engagement_names(windows) + account_names(windows) + at_mql_names(config)
    kinds: tuple[FeatureKind, ...] = tuple(
        "categorical" if n in categorical else "numeric" for n in names
    )
    return FeatureSpec(tuple(names), kinds)


#: Suffix of a feature frozen at the lead's mql_at (`at_mql_names`).
AT_MQL = "_at_mql"


def at_mql_names(config: Config) -> list[str]:
    """The engagement and account counts again, as they stood at the lead's mql_at, and the
    lead's age then (`days_since_created_at_mql`: how long it took to become an MQL).

    A row weeks after the MQL still knows what the lead did before it, but its own windows
    have moved on and lost it (the 7 days before the MQL leave a 7-day window after a week),
    and its all-time and account counts mix in what happened since. Kept as features, a
    model at any age sees the MQL moment as a model at mql_at does, and what changed since
    is the difference. NaN for a lead with no mql_at before the cutoff. None with
    `features.at_mql` off.
    """
    if not config.features.at_mql:
        return []
    return list(_at_mql_names(tuple(config.features.windows_days)))


@lru_cache(maxsize=64)
def _kernel_names(windows: tuple[int, ...]) -> tuple[str, ...]:
    return (*engagement_names(windows), *account_names(windows))


#: Kernel features that stay at the scoring time only: the trend, and recency (the days since
#: each event type and since the MQL), which a row at mql_at already sees as it stood then.
#: `days_since_created` is kept: as it stood at mql_at, it is how long the lead took to
#: become an MQL.
_NOT_AT_MQL_PREFIXES = ("trend", "days_since_")


@lru_cache(maxsize=64)
def _at_mql_names(windows: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(
        f"{n}{AT_MQL}"
        for n in _kernel_names(windows)
        if n == "days_since_created" or not n.startswith(_NOT_AT_MQL_PREFIXES)
    )


def utc_ms(values: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 milliseconds, NaT as NAT_MS."""
    as_ms = values.dt.tz_convert("UTC").dt.as_unit("ms") if len(values) else values
    return np.asarray(as_ms.array.asi8 if len(values) else np.empty(0), dtype=np.int64)


def account_chunks(account: np.ndarray, chunk_leads: int) -> list[tuple[int, int]]:
    """Split leads (ordered by account; -1 = none) into [start, stop) ranges of whole accounts."""
    n = account.shape[0]
    starts = np.flatnonzero(np.r_[True, (account[1:] != account[:-1]) | (account[1:] < 0)])
    bounds: list[tuple[int, int]] = []
    first = 0
    while first < n:
        target = first + chunk_leads
        if target >= n:
            stop = n
        else:
            # the first account start at or after target; an oversized account stays whole.
            at = int(np.searchsorted(starts, target, side="left"))
            stop = int(starts[at]) if at < starts.shape[0] else n
            if stop <= first:
                stop = n
        bounds.append((first, stop))
        first = stop
    return bounds


def row_leads(snapshot: Snapshot, rows: pd.DataFrame) -> np.ndarray:
    position = lead_positions(rows["lead_id"], snapshot.leads["lead_id"])
    unknown = position < 0
    if unknown.any():
        examples = rows["lead_id"].to_numpy()[unknown][:3].tolist()
        raise ContractError(
            f"rows: column 'lead_id': {int(unknown.sum())} row(s) name leads not in the snapshot, "
            f"e.g. {examples}"
        )
    return position.astype(np.int64)


def lead_arrays(leads: pd.DataFrame) -> ChunkLeads:
    """The kernel's plain arrays of a leads frame (ordered by account): account codes (-1:
    none) and the created, MQL and SQL times in ms."""
    account, _ = pd.factorize(leads["account_id"], use_na_sentinel=True)
    created, mql, sql = (utc_ms(leads[c]) for c in ("created_at", "mql_at", "sql_at"))
    return ChunkLeads(account.astype(np.int64), created, mql, sql)


def build_features(
    snapshot: Snapshot,
    rows: pd.DataFrame,
    config: Config,
    progress: Progress | None = None,
    *,
    row_lead: np.ndarray | None = None,
) -> pd.DataFrame:
    """Features of each (lead_id, cutoff) row, using only what was known before its cutoff.

    Returns a frame aligned with `rows` (same index), columns in `feature_spec` order.
    `row_lead`: each row's lead position, when the caller knows it (`row_leads` otherwise).
    """
    spec = feature_spec(config, snapshot.flat)
    row_lead = row_leads(snapshot, rows) if row_lead is None else row_lead
    fit = lead_fit(snapshot.leads, snapshot.custom_fields).iloc[row_lead].reset_index(drop=True)
    if snapshot.flat:
        fit.index = rows.index
        return fit[list(spec.names)]
    cutoff_ms = utc_ms(rows["cutoff"])
    if (cutoff_ms == NAT_MS).any():
        raise ContractError(
            "rows: column 'cutoff': every row of a timestamped snapshot needs a cutoff"
        )
    leads = lead_arrays(snapshot.leads)
    columns = kernel_features(leads, snapshot.events, row_lead, cutoff_ms, config, progress)
    frame = pd.concat([fit, pd.DataFrame(columns)], axis=1)
    frame.index = rows.index
    return frame[list(spec.names)]


def kernel_features(
    leads: ChunkLeads,
    events: EventLog,
    row_lead: np.ndarray,
    cutoff_ms: np.ndarray,
    config: Config,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Engagement, account and at-MQL features of rows (lead position, cutoff) on plain
    arrays, in row order: what `build_features` adds to the fit features, for a million
    leads or the API's one.

    Args:
        leads: the leads' accounts (ordered by account) and times (`lead_arrays`).
        events: their events, sorted by (lead, time), `lead` indexing `leads`.
        row_lead: lead position of each row.
        cutoff_ms: each row's cutoff, ms since the epoch.
        config: windows, `at_mql`, chunk size and workers.
        progress: called with (leads done, leads) after each chunk.

    The counts at each row's mql_at (`at_mql_names`) come from the same kernel pass as the
    features at the cutoff: the rows whose lead became an MQL before the cutoff are asked
    twice; a row whose cutoff is its mql_at (a training row at the MQL moment) already has them.
    """
    frozen = at_mql_names(config)
    n = row_lead.shape[0]
    known = again = np.empty(0, dtype=np.int64)
    if frozen:
        mql = leads.mql_ms[row_lead]
        known = np.flatnonzero((mql != NAT_MS) & (mql <= cutoff_ms))
        again = known[mql[known] < cutoff_ms[known]]
        row_lead = np.concatenate([row_lead, row_lead[again]])
        cutoff_ms = np.concatenate([cutoff_ms, mql[again]])
    columns = _kernel_columns(leads, events, row_lead, cutoff_ms, config, progress)
    out = {name: values[:n] for name, values in columns.items()}
    for name in frozen:
        counts = columns[name.removesuffix(AT_MQL)]
        out[name] = np.full(n, np.nan, dtype=np.float64)
        out[name][known] = counts[known]  # at the cutoff: the mql_at rows' own counts
        out[name][again] = counts[n:]
    return out


def _kernel_columns(
    leads: ChunkLeads,
    events: EventLog,
    row_lead: np.ndarray,
    cutoff_ms: np.ndarray,
    config: Config,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Engagement and account features of rows (lead position, cutoff), in row order."""
    account = leads.account
    in_order = bool((row_lead[1:] >= row_lead[:-1]).all())  # e.g. the API's one lead
    order = np.arange(row_lead.shape[0]) if in_order else np.argsort(row_lead, kind="stable")
    sorted_lead = row_lead if in_order else row_lead[order]
    windows = config.features.windows_days
    total = account.shape[0]

    def chunk_of(bounds: tuple[int, int]) -> tuple[int, dict[str, np.ndarray] | None]:
        first, stop = bounds
        r0, r1 = np.searchsorted(sorted_lead, [first, stop], side="left")
        if r1 == r0:
            return stop, None
        e0, e1 = events.lead_bounds(first, stop)
        chunk_account = account[first:stop]
        real = chunk_account >= 0
        offset = int(chunk_account[real].min()) if real.any() else 0
        return stop, chunk_features(
            events.lead[e0:e1] - first,
            events.at_ms[e0:e1],
            events.kind[e0:e1],
            sorted_lead[r0:r1] - first,
            cutoff_ms[order[r0:r1]],
            ChunkLeads(
                np.where(real, chunk_account - offset, -1),
                leads.created_ms[first:stop],
                leads.mql_ms[first:stop],
                leads.sql_ms[first:stop],
            ),
            windows,
        )

    # chunks of whole accounts side by side (features.parallel), concatenated in order: the
    # same arrays as one after the other
    chunks = account_chunks(account, config.features.chunk_leads)
    workers = worker_count(config.features.workers, len(chunks))
    parts: list[dict[str, np.ndarray]] = []
    for stop, part in ordered_map(chunk_of, chunks, workers):
        if part is not None:
            parts.append(part)
        if progress is not None:
            progress(stop, total)

    names = _kernel_names(tuple(windows))
    if len(parts) == 1 and in_order:
        return {name: parts[0][name] for name in names}
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.shape[0])
    return {
        name: (np.concatenate([p[name] for p in parts]) if parts else np.empty(0))[inverse]
        for name in names
    }


def build_training_set(
    snapshot: Snapshot, config: Config, progress: Progress | None = None
) -> tuple[pd.DataFrame, RowCounts]:
    """The labelled training set: (lead_id, cutoff, label, features...) and the row counts.

    With `training.model: hazard` it also holds the lead x period rows (`features.periods`)
    after the horizon rows, marked by their `period` column (NaN on horizon rows); the counts
    are the horizon rows'.
    """
    rows, counts = training_rows(snapshot.leads, snapshot.as_of, config, snapshot.flat)
    if config.training.model == "hazard" and not snapshot.flat:
        assert snapshot.as_of is not None  # training_rows refuses a timestamped one without
        periods, _ = period_rows(snapshot.leads, snapshot.as_of, config)
        rows = pd.concat([rows, periods], ignore_index=True)
    features = build_features(snapshot, rows, config, progress)
    return pd.concat([rows, features], axis=1), counts
