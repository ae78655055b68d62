"""The synthetic generator's truth, joined onto training rows.

`leadscore generate` writes `truth.parquet` beside the snapshot: the true conversion probability
`p_true` each MQL's outcome was drawn from, keyed by (lead_id, cutoff). Joining it onto a
training set lets a model be judged against the best possible score, not only against the rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRUTH_FILE = "truth.parquet"


def truth_of_rows(folder: Path | None, rows: pd.DataFrame) -> np.ndarray | None:
    """The true probability of each (lead_id, cutoff) row, in the order of `rows`.

    Returns None when `folder` is None or holds no truth file (a real export); NaN for rows the
    truth file does not cover (e.g. cutoffs of a weekly snapshot policy after `mql_at`).
    """
    if folder is None or not (Path(folder) / TRUTH_FILE).is_file():
        return None
    missing = [c for c in ("lead_id", "cutoff") if c not in rows]
    if missing:
        raise ValueError(f"rows lack the columns {missing} needed to join the truth")
    truth = pd.read_parquet(Path(folder) / TRUTH_FILE, columns=["lead_id", "cutoff", "p_true"])
    truth["cutoff"] = truth["cutoff"].dt.as_unit("ms")
    keys = rows[["lead_id", "cutoff"]].assign(cutoff=lambda d: d["cutoff"].dt.as_unit("ms"))
    joined = keys.merge(truth, on=["lead_id", "cutoff"], how="left")
    return joined["p_true"].to_numpy(dtype=np.float64)
