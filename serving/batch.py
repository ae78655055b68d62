"""Batch scoring: every open MQL as of a time, scored by the same code as training and the API.

Pure functions, no I/O: `open_rows` picks the (lead_id, cutoff) rows, `score_chunks`
scores them chunk by chunk of whole accounts (features, probability, tier, points, reasons),
and `score_rows` is the same as one frame. They work on any snapshot that holds whole accounts,
so a Spark job can call them per group of accounts on a `features.reader.snapshot_from_frames`
snapshot. `tier_changes` compares a run with the previous one. The CLI (`leadscore predict`)
and `serving.batch_io` do the reading and writing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import CONVERTED, ContractError
from features.decay import decayed_counts
from features.parallel import ordered_map, worker_count
from features.pipeline import account_chunks, build_features, row_leads
from features.reader import EventLog, Snapshot
from features.rows import as_utc, open_mql_rows
from serving.model_store import LoadedModel
from training.rules import Rules, fit_inputs, half_lives, score_points
from training.scoring import frame_reason_texts, score_frame
from training.tiers import TIER_NAMES

Progress = Callable[[int, int], None]

#: The columns of a scores table, in order.
COLUMNS = (
    "lead_id",
    "account_id",
    "as_of",
    "probability",
    "tier",
    "points",
    "thresholds_passed",
    "reasons",
    "model_name",
    "model_version",
    "scored_at",
)


def stale_rows(leads: pd.DataFrame, rows: pd.DataFrame, weekly_weeks: int) -> int:
    """How many rows are older than any cutoff a model trained with `weekly_weeks` has seen:
    `7 * weekly_weeks + 7` days or more after their lead's `mql_at`."""
    if not len(rows):
        return 0
    oldest = pd.Timedelta(days=7 * weekly_weeks + 7)
    mql = leads.set_index("lead_id")["mql_at"].reindex(rows["lead_id"]).reset_index(drop=True)
    age = rows["cutoff"].reset_index(drop=True) - mql
    return int((age >= oldest).sum())


def staleness_note(stale: int, total: int, weekly_weeks: int, model: str) -> str | None:
    """A warning when `stale` of `total` open MQLs are older than any cutoff the model was
    trained at (`stale_rows`); None when there are none.

    A model trained with cutoffs at `mql_at` and `weekly_weeks` weeks after it has seen leads
    at most that old; an older open MQL is scored as if it were that old. Conversions come
    early, so that overstates old leads: on the demo's data a model trained at `mql_at` only
    gave 8-week-old open MQLs a mean probability of 0.143 where 0.088 converted (ECE 0.044
    over weeks 1 to 8, against 0.006 with `weekly_weeks: 8`).
    """
    if stale == 0 or total == 0:
        return None
    days = 7 * weekly_weeks + 7
    trained = "at mql_at only" if weekly_weeks == 0 else f"up to {weekly_weeks} weeks after mql_at"
    return (
        f"{stale:,} of {total:,} open MQLs ({stale / total:.0%}) are {days} or more days past "
        f"their MQL, older than any lead {model} was trained on (cutoffs {trained}, "
        f"snapshot_policy.weekly_weeks: {weekly_weeks}); it overstates their chances. For "
        "scheduled batch scoring, train with snapshot_policy.sampled_ages (the default, 2)."
    )


def after_snapshot_note(snapshot_as_of: pd.Timestamp | None, as_of: pd.Timestamp) -> str | None:
    """A warning when the run scores as of a day or more after the snapshot's own as-of time:
    nothing after the export is in it, so every lead reads as silent since then, and its
    recency features (days since the last event, the windowed counts) drift with the gap.
    None when the snapshot has no as-of time or the gap is under a day."""
    if snapshot_as_of is None:
        return None
    gap = as_utc(as_of, "as_of") - as_utc(snapshot_as_of, "snapshot as_of")
    if gap < pd.Timedelta(days=1):
        return None
    days = gap / pd.Timedelta(days=1)
    return (
        f"scored as of {as_of.isoformat()}, {days:.1f} days after the snapshot's as-of time "
        f"{snapshot_as_of.isoformat()}: events after the export are not in it, so every lead "
        "reads as silent for those days and its recency features are off by as much; score "
        "as of the snapshot's time, or export again"
    )


def open_flat_rows(leads: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """A flat export's leads not converted (`converted` false or missing), as rows (lead_id,
    cutoff = as_of) in the leads' order.

    A flat export has no times: its features (fit and custom fields) do not depend on the
    cutoff, which only records when the leads were scored, and its model answers whether a
    lead converts at all, so every lead without a conversion is still open.
    """
    converted = leads[CONVERTED] if CONVERTED in leads else pd.Series(pd.NA, index=leads.index)
    is_open = ~converted.astype("boolean").fillna(False).to_numpy(dtype=bool)
    chosen = leads.loc[is_open, "lead_id"].to_numpy()
    return pd.DataFrame(
        {
            "lead_id": chosen,
            "cutoff": pd.Series(as_utc(as_of), index=range(len(chosen))).astype(
                "datetime64[ms, UTC]"
            ),
        }
    )


def open_rows(snapshot: Snapshot, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """The leads a batch run scores: the MQLs open at `as_of` (`open_mql_rows`), or for a flat
    export every lead not converted (`open_flat_rows`)."""
    if snapshot.flat:
        return open_flat_rows(snapshot.leads, as_of)
    return open_mql_rows(snapshot.leads, as_of, horizon_days)


def sub_snapshot(snapshot: Snapshot, first: int, stop: int) -> Snapshot:
    """Leads first..stop-1 (whole accounts) and their events, as a snapshot of its own."""
    e0, e1 = snapshot.events.lead_bounds(first, stop)
    events = snapshot.events
    return Snapshot(
        leads=snapshot.leads.iloc[first:stop].reset_index(drop=True),
        events=EventLog(events.lead[e0:e1] - first, events.at_ms[e0:e1], events.kind[e0:e1]),
        as_of=snapshot.as_of,
        flat=snapshot.flat,
        custom_fields=snapshot.custom_fields,
        report=snapshot.report,
    )


@dataclass(frozen=True, eq=False)
class ScoredChunk:
    """One chunk's scores (`COLUMNS`), and the features and arrays behind them (for monitoring).

    `scores` and `features` share the index of the `rows` they came from.
    """

    scores: pd.DataFrame
    features: pd.DataFrame
    probability: np.ndarray
    tier: np.ndarray


def threshold_texts(thresholds: pd.DataFrame) -> np.ndarray:
    """The thresholds each row passes, as a JSON list of names in the rules' order."""
    names = [str(c) for c in thresholds.columns]
    passed = thresholds.to_numpy(dtype=bool)
    code = passed.astype(np.int64) @ (1 << np.arange(len(names), dtype=np.int64))
    texts = np.array(
        [
            json.dumps([name for i, name in enumerate(names) if combo >> i & 1])
            for combo in range(1 << len(names))
        ],
        dtype=object,
    )
    return texts[code] if len(names) else np.full(len(thresholds), "[]", dtype=object)


def _points(
    snapshot: Snapshot,
    rows: pd.DataFrame,
    features: pd.DataFrame,
    rules: Rules,
    row_lead: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The rules' points and thresholds passed: `rule_inputs` with the fit values taken from
    the features already built (the same `lead_fit` columns), not computed a second time."""
    decayed = decayed_counts(snapshot, rows, half_lives(rules), row_lead=row_lead)
    inputs = pd.concat([features[fit_inputs(rules)], decayed], axis=1)
    points = score_points(inputs, rules)
    return points.total, threshold_texts(points.thresholds)


def _repeat(stamp: pd.Timestamp, n: int) -> pd.DatetimeIndex:
    """`stamp` n times, as UTC milliseconds."""
    moment = stamp.tz_convert("UTC").tz_localize(None).to_datetime64().astype("datetime64[ms]")
    return pd.DatetimeIndex(np.full(n, moment)).tz_localize("UTC")


def score_chunk(
    snapshot: Snapshot,
    rows: pd.DataFrame,
    model: LoadedModel,
    reasons: int,
    scored_at: pd.Timestamp,
    row_lead: np.ndarray | None = None,
) -> ScoredChunk:
    """Score rows of one snapshot (whole accounts) at once; see `score_chunks`. `row_lead`:
    each row's lead position in the snapshot, when the caller knows it (looked up by
    `lead_id` otherwise)."""
    row_lead = row_leads(snapshot, rows) if row_lead is None else row_lead
    features = build_features(snapshot, rows, model.config, row_lead=row_lead)
    # no reasons: the plain prediction, many times cheaper than the contributions
    plan = model.reason_plan if reasons > 0 else None
    scored = score_frame(model.scorer, features, plan, reasons)
    texts = frame_reason_texts(model.reason_plan, features, scored)
    probability, tier = scored.probability, scored.tier
    total, passed = _points(snapshot, rows, features, model.rules, row_lead)
    account = snapshot.leads["account_id"].to_numpy(dtype=object)[row_lead]
    n = len(rows)
    scores = pd.DataFrame(
        {
            "lead_id": rows["lead_id"].to_numpy(dtype=object),
            "account_id": pd.array(account, dtype="str"),
            # the datetime array itself: to_numpy() makes one Timestamp object per row
            "as_of": rows["cutoff"].array,
            "probability": probability,
            "tier": tier,
            "points": total,
            "thresholds_passed": passed,
            "reasons": texts,
            "model_name": np.full(n, model.name, dtype=object),
            "model_version": np.full(n, model.version, dtype=object),
            "scored_at": _repeat(scored_at, n),
        },
        index=rows.index,
    )
    return ScoredChunk(scores, features, probability, tier)


def score_chunks(
    snapshot: Snapshot,
    rows: pd.DataFrame,
    model: LoadedModel,
    reasons: int = 3,
    progress: Progress | None = None,
    *,
    chunk_leads: int | None = None,
    scored_at: pd.Timestamp | None = None,
    workers: int | None = None,
) -> Iterator[ScoredChunk]:
    """Score (lead_id, cutoff) rows chunk by chunk of whole accounts, in the snapshot's lead
    order: features as of each cutoff, calibrated probability, tier, the rules' points and
    thresholds, and the top `reasons` contributions with their sentences.

    Memory is bounded by the chunk (`chunk_leads` leads, default the model config's), not by
    the number of rows. Up to `workers` chunks (default the model config's
    `features.workers`; 0: every core) are scored at once, yielded in order
    (`features.parallel`). `progress(done, total)` counts leads walked.
    """
    stamp = as_utc(scored_at if scored_at is not None else pd.Timestamp.now(tz="UTC"), "scored_at")
    stamp = stamp.floor("ms")
    size = chunk_leads or model.config.features.chunk_leads
    leads = snapshot.leads
    lead_index = pd.Index(leads["lead_id"].to_numpy())
    position = lead_index.get_indexer(rows["lead_id"].to_numpy())
    if (position < 0).any():
        examples = rows["lead_id"].to_numpy()[position < 0][:3].tolist()
        raise ContractError(
            f"rows: column 'lead_id': {int((position < 0).sum())} row(s) name leads not in the "
            f"snapshot, e.g. {examples}"
        )
    order = np.argsort(position, kind="stable")
    sorted_position = position[order]
    account, _ = pd.factorize(leads["account_id"], use_na_sentinel=True)
    total = len(leads)

    def scored(bounds: tuple[int, int]) -> tuple[int, ScoredChunk | None]:
        first, stop = bounds
        r0, r1 = np.searchsorted(sorted_position, [first, stop], side="left")
        if r1 == r0:
            return stop, None
        taken = order[r0:r1]
        return stop, score_chunk(
            sub_snapshot(snapshot, first, stop),
            rows.iloc[taken],
            model,
            reasons,
            stamp,
            row_lead=position[taken] - first,  # the rows' leads in the chunk's own order
        )

    chunks = account_chunks(account, size)
    setting = model.config.features.workers if workers is None else workers
    for stop, chunk in ordered_map(scored, chunks, worker_count(setting, len(chunks))):
        if chunk is not None:
            yield chunk
        if progress is not None:
            progress(stop, total)


def score_rows(
    snapshot: Snapshot,
    rows: pd.DataFrame,
    model: LoadedModel,
    reasons: int = 3,
    progress: Progress | None = None,
    *,
    chunk_leads: int | None = None,
    scored_at: pd.Timestamp | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """The scores (`COLUMNS`) of (lead_id, cutoff) rows, aligned with `rows` (same index and
    order); see `score_chunks`."""
    parts = [
        chunk.scores
        for chunk in score_chunks(
            snapshot,
            rows,
            model,
            reasons,
            progress,
            chunk_leads=chunk_leads,
            scored_at=scored_at,
            workers=workers,
        )
    ]
    if not parts:
        return empty_scores()
    return pd.concat(parts).loc[rows.index]


def empty_scores() -> pd.DataFrame:
    """A scores frame with no rows and the right columns and types."""
    return pd.DataFrame(
        {
            "lead_id": pd.array([], dtype=object),
            "account_id": pd.array([], dtype="str"),
            "as_of": pd.Series([], dtype="datetime64[ms, UTC]"),
            "probability": np.empty(0),
            "tier": pd.array([], dtype=object),
            "points": np.empty(0),
            "thresholds_passed": pd.array([], dtype=object),
            "reasons": pd.array([], dtype=object),
            "model_name": pd.array([], dtype=object),
            "model_version": pd.array([], dtype=object),
            "scored_at": pd.Series([], dtype="datetime64[ms, UTC]"),
        }
    )


@dataclass(frozen=True)
class TierChanges:
    """How a run's tiers compare with the previous run's, lead by lead."""

    new: int
    gone: int
    up: int
    down: int
    same: int

    def as_dict(self) -> dict[str, int]:
        return {
            "new": self.new,
            "gone": self.gone,
            "up": self.up,
            "down": self.down,
            "same": self.same,
        }


def tier_counts(tier: np.ndarray) -> dict[str, int]:
    """Leads per tier, A to D (every tier listed)."""
    values, counts = np.unique(np.asarray(tier, dtype=str), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    return {name: int(found.get(name, 0)) for name in TIER_NAMES}


def tier_changes(previous: pd.DataFrame, current: pd.DataFrame) -> TierChanges:
    """Compare (lead_id, tier) frames: leads new and gone, tier moves up (towards A) or down."""
    rank = {name: i for i, name in enumerate(TIER_NAMES)}
    before = previous.drop_duplicates("lead_id", keep="last").set_index("lead_id")["tier"]
    after = current.drop_duplicates("lead_id", keep="last").set_index("lead_id")["tier"]
    # one hash lookup of the leads (Index.isin of Arrow strings goes value by value in Python)
    at = before.index.get_indexer(after.index)
    found = at >= 0
    old = before.map(rank).to_numpy(dtype=np.float64)[at[found]]
    new = after.map(rank).to_numpy(dtype=np.float64)[found]
    kept = int(found.sum())
    return TierChanges(
        new=len(after) - kept,
        gone=len(before) - kept,
        up=int((new < old).sum()),
        down=int((new > old).sum()),
        same=int((new == old).sum()),
    )
