"""Training rows: which (lead, cutoff) pairs exist, their labels, and which are censored.

A row is a lead seen at a cutoff. By default the cutoff is `mql_at`; the snapshot policy can
add one every week while the lead stays open. The label is "an SQL within `horizon_days`
after the cutoff". A row whose horizon has not closed by the snapshot's as-of time is censored:
left out and counted. That includes rows that already converted: keeping the early converters
of a still-open window while dropping the undecided would bias the most recent period towards
positives (on the synthetic data it put the true probabilities 0.06 off the observed rate on
the test slice), and the most recent period is exactly what the model is tested on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from common.config import Config, SnapshotPolicy
from features.contract import CONVERTED, ContractError

DAY = pd.Timedelta(days=1)
#: Added to the training seed for the bend's ages, so they are not the feature rows' ages.
_BEND_SEED = 7919


@dataclass(frozen=True)
class RowCounts:
    """How many candidate rows each rule kept or left out."""

    candidates: int = 0
    converted_before_cutoff: int = 0
    disqualified_before_cutoff: int = 0
    after_as_of: int = 0
    censored: int = 0
    no_outcome: int = 0
    kept: int = 0
    positives: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def lead_positions(lead_ids: pd.Series | np.ndarray, among: pd.Series) -> np.ndarray:
    """The position in `among` (unique lead ids) of each of `lead_ids`, -1 where it is absent
    or missing; exact matches, as `pd.Index.get_indexer` gives.

    Text ids on both sides are matched by Arrow's hash lookup (`index_in`), which works on the
    strings where they lie; pandas' index first turns every id of `among` into a Python
    string, which at millions of leads costs more than the lookup itself and grows faster
    than the leads.
    """
    ids = pd.Series(lead_ids, copy=False) if isinstance(lead_ids, np.ndarray) else lead_ids
    if pd.api.types.is_string_dtype(ids.dtype) and pd.api.types.is_string_dtype(among.dtype):
        try:
            wanted, known = pa.array(ids, from_pandas=True), pa.array(among, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # an id that is not text after all
            pass
        else:
            if pa.types.is_string(wanted.type) or pa.types.is_large_string(wanted.type):
                found = pc.index_in(wanted, value_set=known, skip_nulls=True)
                return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    return np.asarray(pd.Index(among.to_numpy()).get_indexer(ids.to_numpy()), dtype=np.int64)


def candidate_cutoffs(
    leads: pd.DataFrame,
    weekly_weeks: int,
    sampled_ages: int = 0,
    horizon_days: int = 90,
    seed: int = 0,
) -> pd.DataFrame:
    """(lead_id, cutoff) at every mql_at, plus mql_at + 7k days for k = 1..weekly_weeks, plus
    `sampled_ages` cutoffs at ages drawn uniformly from [0, horizon_days) days (`sampled_ages`).

    Candidates are not yet filtered: `label_rows` keeps those at which the lead is still open.
    """
    mqls = leads.loc[leads["mql_at"].notna(), ["lead_id", "mql_at"]]
    frames = [
        pd.DataFrame(
            {"lead_id": mqls["lead_id"].to_numpy(), "cutoff": mqls["mql_at"] + k * 7 * DAY}
        )
        for k in range(weekly_weeks + 1)
    ]
    lead_ids = mqls["lead_id"].to_numpy()
    for draw in range(sampled_ages):
        age = sampled_ages_of(lead_ids, draw, horizon_days, seed)
        frames.append(
            pd.DataFrame(
                {"lead_id": lead_ids, "cutoff": mqls["mql_at"] + pd.to_timedelta(age, unit="ms")}
            )
        )
    rows = pd.concat(frames, ignore_index=True)
    rows["cutoff"] = rows["cutoff"].dt.as_unit("ms")
    return rows.sort_values(["lead_id", "cutoff"], kind="stable", ignore_index=True)


def bend_rows(
    leads: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int, ages: int, seed: int
) -> pd.DataFrame:
    """(lead_id, cutoff, age_days, label) at `ages` ages per MQL after its mql_at, drawn as
    `sampled_ages` are (another hash key, so not the feature rows' ages), kept and labelled as
    `label_rows` keeps training rows: open at the cutoff, horizon closed by `as_of`.

    They are the moment model's bend's rows (`training.bend`): its inputs are a lead's score at
    mql_at and its age, so a row costs only its label, and many ages per lead show the bend how
    each strength of lead fades, where the feature rows give it two.
    """
    mqls = leads.loc[leads["mql_at"].notna()]
    if ages <= 0 or mqls.empty:
        return pd.DataFrame(
            {
                "lead_id": mqls["lead_id"].iloc[:0],
                "cutoff": mqls["mql_at"].iloc[:0],
                "age_days": np.zeros(0),
                "label": np.zeros(0, dtype=np.int8),
            }
        )
    lead_ids = mqls["lead_id"].to_numpy()
    mql_ms = mqls["mql_at"].dt.as_unit("ms").array.asi8
    age_ms = np.concatenate(
        [sampled_ages_of(lead_ids, draw, horizon_days, seed + _BEND_SEED) for draw in range(ages)]
    )
    later = age_ms > 0  # at mql_at itself: the feature rows have it
    rows = pd.DataFrame(
        {
            "lead_id": np.tile(lead_ids, ages)[later],
            "cutoff": pd.to_datetime(
                np.tile(mql_ms, ages)[later] + age_ms[later], unit="ms", utc=True
            ),
        }
    )
    keep, label, _ = row_outcomes(rows, leads, as_of, horizon_days)
    return pd.DataFrame(
        {
            "lead_id": rows["lead_id"].to_numpy()[keep],
            "cutoff": rows["cutoff"].array[keep],
            "age_days": age_ms[later][keep] / 86_400_000,
            "label": label[keep].astype(np.int8),
        }
    )


def sampled_ages_of(lead_ids: np.ndarray, draw: int, horizon_days: int, seed: int) -> np.ndarray:
    """Draw number `draw` of each lead's ages, in whole milliseconds in [0, horizon_days) days.

    A hash of (lead_id, draw, seed), not a random stream: a lead gets the same ages whatever
    the order or the other leads of the snapshot, so a training set rebuilt from a grown
    export keeps its old rows.
    """
    hash_key = f"ages{seed % 10**8:08d}{draw % 10**4:04d}"  # 16 characters, as hash_array needs
    keys = pd.util.hash_array(np.asarray(lead_ids, dtype=object), hash_key=hash_key)
    unit = (keys >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.floor(unit * horizon_days * 86_400_000).astype(np.int64)


def label_rows(
    rows: pd.DataFrame, leads: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int
) -> tuple[pd.DataFrame, RowCounts]:
    """Keep rows open at their cutoff whose outcome is known by `as_of`, and label them.

    Returns (lead_id, cutoff, label) and the counts of what was left out.
    """
    keep, label, counts = row_outcomes(rows, leads, as_of, horizon_days)
    out = pd.DataFrame(
        {
            "lead_id": rows["lead_id"].to_numpy()[keep],
            "cutoff": rows["cutoff"].array[keep],  # no Timestamp object per row
            "label": label[keep].astype(np.int8),
        }
    )
    return out, counts


def row_outcomes(
    rows: pd.DataFrame, leads: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int
) -> tuple[np.ndarray, np.ndarray, RowCounts]:
    """`label_rows` as masks over `rows`: which are kept, each row's label, and the counts.

    For rows whose features were built before the as-of time was known (a training set built
    in parts, each of which sees only its own latest timestamp).
    """
    position = lead_positions(rows["lead_id"], leads["lead_id"])
    as_of_value = np.datetime64(as_of.tz_convert("UTC").tz_localize(None), "ms")
    cutoff_naive = rows["cutoff"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    sql_naive, disq_naive = (_naive_at(leads[c], position) for c in ("sql_at", "disqualified_at"))
    horizon_end = cutoff_naive + np.timedelta64(horizon_days, "D")

    with np.errstate(invalid="ignore"):
        sql_known = ~np.isnat(sql_naive) & (sql_naive <= as_of_value)
        disq_known = ~np.isnat(disq_naive) & (disq_naive <= as_of_value)
        after_as_of = cutoff_naive >= as_of_value
        converted_before = sql_known & (sql_naive <= cutoff_naive)
        disqualified_before = ~converted_before & disq_known & (disq_naive <= cutoff_naive)
        label = sql_known & (sql_naive > cutoff_naive) & (sql_naive <= horizon_end)
        censored = horizon_end > as_of_value

    dropped_after = after_as_of
    dropped_conv = ~dropped_after & converted_before
    dropped_disq = ~dropped_after & ~converted_before & disqualified_before
    dropped_cens = ~(dropped_after | dropped_conv | dropped_disq) & censored
    keep = ~(dropped_after | dropped_conv | dropped_disq | dropped_cens)
    counts = RowCounts(
        candidates=len(rows),
        converted_before_cutoff=int(dropped_conv.sum()),
        disqualified_before_cutoff=int(dropped_disq.sum()),
        after_as_of=int(dropped_after.sum()),
        censored=int(dropped_cens.sum()),
        kept=int(keep.sum()),
        positives=int(label[keep].sum()),
    )
    return keep, label, counts


def _naive_at(times: pd.Series, position: np.ndarray) -> np.ndarray:
    """`times` (UTC) as naive datetime64, in their own unit, at each position; NaT where the
    position is -1."""
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    out = np.full(len(position), np.datetime64("NaT"), dtype=naive.dtype)
    found = position >= 0
    out[found] = naive[position[found]]
    return out


def covered_weeks(policy: SnapshotPolicy, horizon_days: int) -> int:
    """The `weekly_weeks` that `stale_rows` and `staleness_note` take for a snapshot policy: a
    model trained at sampled ages covers the whole horizon, so no open MQL is stale for it."""
    if policy.sampled_ages > 0:
        return max(policy.weekly_weeks, -(-horizon_days // 7))
    return policy.weekly_weeks


def flat_rows(leads: pd.DataFrame) -> tuple[pd.DataFrame, RowCounts]:
    """A flat export: one row per lead with a known `converted` outcome and no cutoff."""
    if CONVERTED not in leads:
        raise ContractError(
            "leads: column 'converted': a flat export needs an outcome column; map yours onto "
            "'converted' under mapping.leads"
        )
    known = leads[CONVERTED].notna().to_numpy()
    out = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[known],
            "cutoff": pd.Series(pd.NaT, index=range(int(known.sum())), dtype="datetime64[ms, UTC]"),
            "label": leads[CONVERTED].to_numpy()[known].astype(np.int8),
        }
    )
    counts = RowCounts(
        candidates=len(leads),
        no_outcome=int((~known).sum()),
        kept=len(out),
        positives=int(out["label"].sum()),
    )
    return out, counts


def training_rows(
    leads: pd.DataFrame, as_of: pd.Timestamp | None, config: Config, flat: bool
) -> tuple[pd.DataFrame, RowCounts]:
    """The labelled rows of a snapshot, following the snapshot policy."""
    if flat:
        return flat_rows(leads)
    if as_of is None:
        raise ContractError(
            "the snapshot has no timestamps, so its as-of time is unknown; set as_of"
        )
    policy = config.snapshot_policy
    candidates = candidate_cutoffs(
        leads, policy.weekly_weeks, policy.sampled_ages, config.horizon_days, config.training.seed
    )
    return label_rows(candidates, leads, as_of, config.horizon_days)


def as_utc(value: Any, what: str = "as_of") -> pd.Timestamp:
    """A timestamp in UTC (naive is UTC); ContractError naming `what` if it is not a time."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ContractError(f"{what}: {value!r} is not an ISO 8601 time") from None
    if stamp is pd.NaT or pd.isna(stamp):
        raise ContractError(f"{what}: {value!r} is not an ISO 8601 time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def open_mql_rows(leads: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """The MQLs open at `as_of`, as rows (lead_id, cutoff = as_of) in the leads' order.

    Open: `mql_at <= as_of < mql_at + horizon_days` (the horizon still running, as in
    training, where a row whose horizon has not closed is censored), not converted
    (`sql_at` missing or after `as_of`) and not disqualified (`disqualified_at` missing or
    after `as_of`). An SQL or a disqualification exactly at `as_of` closes the lead.
    """
    as_of = as_utc(as_of)
    horizon = pd.Timedelta(days=horizon_days)
    mql = leads["mql_at"]
    is_open = mql.notna() & (mql <= as_of) & (mql + horizon > as_of)
    for closing in ("sql_at", "disqualified_at"):
        if closing in leads:
            is_open &= leads[closing].isna() | (leads[closing] > as_of)
    chosen = leads.loc[is_open.to_numpy(dtype=bool), "lead_id"].to_numpy()
    return pd.DataFrame(
        {
            "lead_id": chosen,
            "cutoff": pd.Series(as_of, index=range(len(chosen))).astype("datetime64[ms, UTC]"),
        }
    )
