"""Judging a model at every age of a lead: weekly ages against the truth, and past nights.

A score means P(SQL within `horizon_days` after the scoring time | the lead is open then), at
any age. Two checks follow from that meaning:

- **weekly ages**: the same leads seen at mql_at and every 7 days after it while open, each row
  labelled as training labels rows (`features.rows.label_rows`), so that a model's calibration
  and ranking can be read per age, beside the generator's truth at that age;
- **a nightly backtest**: the MQLs open on past nights (as `leadscore predict` selects them),
  labelled with what happened in the horizon after each night, bucketed by age.

Pure functions on frames; building features and scoring are the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from features.rows import candidate_cutoffs, label_rows
from training.evaluate import classification_metrics, ece

DAY = pd.Timedelta(days=1)
#: Age buckets of the nightly backtest, in days since mql_at: [low, high).
AGE_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("0-1 week", 0, 7),
    ("1-4 weeks", 7, 28),
    ("4-8 weeks", 28, 56),
    ("8-13 weeks", 56, 91),
)


def weekly_age_rows(
    leads: pd.DataFrame,
    lead_ids: Iterable[str],
    as_of: pd.Timestamp,
    horizon_days: int,
    weeks: int = 12,
) -> pd.DataFrame:
    """(lead_id, cutoff, label, age_weeks) of the given leads at mql_at and each week after it
    up to `weeks`, kept where the lead is open and the horizon has closed by `as_of`."""
    chosen = leads[leads["lead_id"].isin(set(lead_ids))]
    candidates = candidate_cutoffs(chosen, weeks)
    rows, _ = label_rows(candidates, leads, as_of, horizon_days)
    rows["age_weeks"] = (age_days(rows, leads) // 7).astype(np.int64)
    return rows


def age_days(rows: pd.DataFrame, leads: pd.DataFrame) -> np.ndarray:
    """Days from each row's lead's mql_at to its cutoff (NaN when the lead has no mql_at)."""
    mql = leads.set_index("lead_id")["mql_at"].reindex(rows["lead_id"].to_numpy())
    cutoff = pd.Series(rows["cutoff"].to_numpy()).dt.as_unit("ms")
    delta = cutoff - pd.Series(mql.to_numpy()).dt.as_unit("ms")
    return np.asarray(delta.dt.total_seconds() / 86_400.0, dtype=np.float64)


def per_age_metrics(
    rows: pd.DataFrame, probability: np.ndarray, truth: np.ndarray | None = None
) -> pd.DataFrame:
    """Per `age_weeks`: rows, realised rate, mean probability, ECE and AUC of the model (and of
    the truth, with the AUC gap, when given)."""
    records = []
    labels = rows["label"].to_numpy()
    weeks = rows["age_weeks"].to_numpy()
    for week in np.unique(weeks):
        index = np.flatnonzero(weeks == week)
        y = labels[index]
        if y.min() == y.max():
            continue
        model = classification_metrics(y, probability[index])
        record = {
            "age_weeks": int(week),
            "n": len(index),
            "realised": float(y.mean()),
            "mean_p": float(np.mean(probability[index])),
            "ece": model["ece"],
            "ece_floor": model["ece_floor"],
            "auc": model["roc_auc"],
        }
        if truth is not None:
            exact = classification_metrics(y, truth[index])
            record |= {
                "mean_truth": float(np.mean(truth[index])),
                "ece_truth": exact["ece"],
                "auc_truth": exact["roc_auc"],
                "auc_gap": exact["roc_auc"] - model["roc_auc"],
            }
        records.append(record)
    return pd.DataFrame(records)


def open_rows_on_nights(
    leads: pd.DataFrame, nights: Sequence[pd.Timestamp], horizon_days: int, as_of: pd.Timestamp
) -> pd.DataFrame:
    """The MQLs open on each night (as `leadscore predict` selects them), labelled with an SQL
    within the horizon after that night; nights whose horizon is open at `as_of` are refused."""
    from features.rows import open_mql_rows

    frames = []
    for night in nights:
        if night + horizon_days * DAY > as_of:
            raise ValueError(f"night {night}: its horizon has not closed by {as_of}")
        rows = open_mql_rows(leads, night, horizon_days)
        labelled, _ = label_rows(rows, leads, as_of, horizon_days)
        labelled["night"] = night
        frames.append(labelled)
    out = pd.concat(frames, ignore_index=True)
    out["age_days"] = age_days(out, leads)
    return out


def backtest_table(rows: pd.DataFrame, probability: np.ndarray) -> tuple[pd.DataFrame, float]:
    """Per age bucket: leads, mean probability, realised rate and their gap; and overall ECE."""
    records = []
    age = rows["age_days"].to_numpy()
    labels = rows["label"].to_numpy()
    for name, low, high in AGE_BUCKETS:
        inside = (age >= low) & (age < high)
        if not inside.any():
            continue
        mean_p, realised = float(probability[inside].mean()), float(labels[inside].mean())
        records.append(
            {
                "age": name,
                "n": int(inside.sum()),
                "mean_p": mean_p,
                "realised": realised,
                "gap": mean_p - realised,
            }
        )
    return pd.DataFrame(records), float(ece(labels, probability))
