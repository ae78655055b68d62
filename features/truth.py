"""The synthetic generator's truth, joined onto training rows.

`leadscore generate` writes `truth.parquet` beside the snapshot: the true conversion probability
`p_true` each MQL's outcome was drawn from, at its `mql_at`. A row at a later cutoff (a weekly
training row, a nightly run's open MQL) gets the truth at its age, derived from the generator's
outcome law (`features.synthetic.probability_at_age`): the true probability of an SQL within
the horizon after that cutoff, given the lead is still open then. Joining it onto a training
set lets a model be judged against the best possible score at every age, not only against the
rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic import probability_at_age

TRUTH_FILE = "truth.parquet"
_DAY_MS = 86_400_000


def truth_of_rows(
    folder: Path | None, rows: pd.DataFrame, horizon_days: int = 90
) -> np.ndarray | None:
    """The true probability of each (lead_id, cutoff) row, in the order of `rows`.

    At `mql_at` it is the truth file's `p_true` exactly (for the generator's 90-day horizon); at
    a later cutoff, the truth at that age given the lead is open (the caller keeps only open
    rows, as training and batch scoring do). Returns None when `folder` is None or holds no
    truth file (a real export); NaN for rows of leads the truth file does not cover and for
    cutoffs before the lead's `mql_at`.
    """
    if folder is None or not (Path(folder) / TRUTH_FILE).is_file():
        return None
    missing = [c for c in ("lead_id", "cutoff") if c not in rows]
    if missing:
        raise ValueError(f"rows lack the columns {missing} needed to join the truth")
    truth = pd.read_parquet(Path(folder) / TRUTH_FILE, columns=["lead_id", "cutoff", "p_true"])
    truth = truth.rename(columns={"cutoff": "mql_at"})
    truth["mql_at"] = truth["mql_at"].dt.as_unit("ms")
    keys = rows[["lead_id", "cutoff"]].assign(cutoff=lambda d: d["cutoff"].dt.as_unit("ms"))
    joined = keys.merge(truth, on="lead_id", how="left")
    age_ms = joined["cutoff"].array.asi8 - joined["mql_at"].array.asi8
    known = joined["mql_at"].notna().to_numpy() & (age_ms >= 0)
    age_days = np.where(known, age_ms, 0) / _DAY_MS
    p_true = joined["p_true"].to_numpy(dtype=np.float64)
    at_age = probability_at_age(np.nan_to_num(p_true), age_days, float(horizon_days))
    return np.where(known, at_age, np.nan)
