"""Lead x period rows for the discrete-time hazard model (`training.model: hazard`).

A lead is seen at the start of each period after its mql_at (mql_at + k * period_days, k = 0,
1, ...) while it stays open; the row's label is an SQL within that period. A period still
running at the snapshot's as-of time is left out, but every earlier period of a lead whose
horizon has not closed is kept: this is how the hazard model uses the recent months that the
horizon rows (`features.rows`) must drop as censored.

The rows are thinned by a hash draw per (lead, period), independent of the outcome, so each
kept row is still a fair draw of its period's hazard. Features are the same functions as for
any other row, at the period's start (`features.pipeline.build_features`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from common.config import Config
from features.rows import RowCounts, label_rows

DAY = pd.Timedelta(days=1)
#: Column of a hazard row's period index (k: it starts k periods after mql_at). Horizon rows
#: of a training set that also holds period rows have NaN there.
PERIOD = "period"
#: Column of a hazard row's exit: 1 when the lead left the open state within the period (an SQL
#: or a disqualification), for the competing-risk part of the hazard model.
CLOSED = "closed"


def period_count(config: Config) -> int:
    """Periods per lead: as configured, or enough to cover two horizons (a lead scored at the
    horizon's age needs the hazards a horizon further)."""
    hazard = config.training.hazard
    return hazard.periods or math.ceil(2 * config.horizon_days / hazard.period_days)


def period_draws(lead_ids: np.ndarray, period: int, seed: int) -> np.ndarray:
    """A uniform draw in [0, 1) per lead for one period, from a hash of (lead_id, period, seed):
    the same rows whatever the order or the other leads of the snapshot."""
    hash_key = f"haz{seed % 10**8:08d}{period % 10**5:05d}"  # 16 characters, as hash_array needs
    keys = pd.util.hash_array(np.asarray(lead_ids, dtype=object), hash_key=hash_key)
    return np.asarray((keys >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def period_cutoffs(
    leads: pd.DataFrame, periods: int, period_days: int, row_share: float, seed: int
) -> pd.DataFrame:
    """(lead_id, cutoff, period) at mql_at + k * period_days for k < `periods`, each kept with
    probability `row_share`; not yet filtered to open leads (`label_periods` does)."""
    mqls = leads.loc[leads["mql_at"].notna(), ["lead_id", "mql_at"]]
    lead_ids = mqls["lead_id"].to_numpy()
    frames = []
    for k in range(periods):
        kept = period_draws(lead_ids, k, seed) < row_share
        frames.append(
            pd.DataFrame(
                {
                    "lead_id": lead_ids[kept],
                    "cutoff": (mqls["mql_at"] + k * period_days * DAY).to_numpy()[kept],
                    PERIOD: np.full(int(kept.sum()), k, dtype=np.int16),
                }
            )
        )
    rows = pd.concat(frames, ignore_index=True)
    rows["cutoff"] = pd.to_datetime(rows["cutoff"], utc=True).dt.as_unit("ms")
    return rows.sort_values(["lead_id", "cutoff"], kind="stable", ignore_index=True)


def label_periods(
    rows: pd.DataFrame, leads: pd.DataFrame, as_of: pd.Timestamp, period_days: int
) -> tuple[pd.DataFrame, RowCounts]:
    """Keep the period rows open at their start and ended by `as_of`; label an SQL within the
    period, and mark an exit (SQL or disqualification) within it. Returns (lead_id, cutoff,
    label, period, closed) and the counts of what was left out."""
    labelled, counts = label_rows(rows, leads, as_of, period_days)
    # label_rows keeps rows in order and drops some: find each kept row's period again
    keys = pd.MultiIndex.from_frame(rows[["lead_id", "cutoff"]])
    position = keys.get_indexer(pd.MultiIndex.from_frame(labelled[["lead_id", "cutoff"]]))
    labelled[PERIOD] = rows[PERIOD].to_numpy()[position]
    disqualified = leads.set_index("lead_id")["disqualified_at"].reindex(labelled["lead_id"])
    start = pd.Series(labelled["cutoff"].to_numpy())
    at = pd.Series(disqualified.to_numpy()).dt.as_unit("ms")
    dropped = (at > start) & (at <= start + period_days * DAY)  # NaT compares False
    labelled[CLOSED] = (labelled["label"].to_numpy() == 1) | dropped.to_numpy()
    labelled[CLOSED] = labelled[CLOSED].astype(np.int8)
    return labelled, counts


def period_rows(
    leads: pd.DataFrame, as_of: pd.Timestamp, config: Config
) -> tuple[pd.DataFrame, RowCounts]:
    """The labelled period rows of a timestamped snapshot, following `training.hazard`."""
    hazard = config.training.hazard
    candidates = period_cutoffs(
        leads, period_count(config), hazard.period_days, hazard.row_share, config.training.seed
    )
    return label_periods(candidates, leads, as_of, hazard.period_days)
