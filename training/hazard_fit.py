"""Fitting the discrete-time hazard model (`training.model: hazard`) on lead x period rows.

The training set of a hazard model holds its horizon rows (split, calibrated, tiered and
tested as any model's) and its period rows (`features.periods`), which only the booster
learns from. A period row goes to the slice of its lead: the booster fits on the training
slice's leads and stops early on the validation slice's; the calibration and test leads' periods
are never learnt from. Leads with no horizon row at all (every age still censored: the newest
months) have no slice and go to the booster's training rows, which is the point of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from common.config import Config
from features.periods import CLOSED, PERIOD
from training.hazard import HazardSpec, hazard_spec
from training.model import fit_booster, monotone_directions
from training.scorer import ModelSpec, feature_matrix
from training.split import Split


def split_periods(
    training_set: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame | None, np.ndarray]:
    """(horizon rows, period rows or None, which rows of `training_set` are horizon rows)."""
    if PERIOD not in training_set:
        return training_set, None, np.ones(len(training_set), dtype=bool)
    is_period = training_set[PERIOD].notna().to_numpy()
    marks = [c for c in (PERIOD, CLOSED) if c in training_set]
    horizon = training_set.loc[~is_period].drop(columns=marks).reset_index(drop=True)
    periods = training_set.loc[is_period].reset_index(drop=True)
    return horizon, (periods if is_period.any() else None), ~is_period


def period_slices(periods: pd.DataFrame, rows: pd.DataFrame, split: Split) -> np.ndarray:
    """The slice of each period row: its lead's in `split` (over `rows`), else "train"."""
    lead_slice = pd.Series(split.slice_of_row, index=rows["lead_id"].to_numpy())
    lead_slice = lead_slice[~lead_slice.index.duplicated()]
    found = lead_slice.reindex(periods["lead_id"].to_numpy()).to_numpy(dtype=object)
    return np.where(pd.isna(found), "train", found)


def fit_hazard(
    periods: pd.DataFrame,
    rows: pd.DataFrame,
    split: Split,
    spec: ModelSpec,
    params: dict,
    config: Config,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[lgb.Booster, HazardSpec]:
    """The hazard booster on the period rows of the training leads (early stopping on the
    validation leads'), and the spec that turns its hazards into a horizon probability, with
    the exit booster (an SQL or a disqualification within the period) fitted the same way."""
    slices = period_slices(periods, rows, split)
    train, valid = slices == "train", slices == "validation"
    for name, mask in (("training", train), ("validation", valid)):
        labels = periods.loc[mask, "label"].to_numpy()
        if labels.size == 0 or labels.min() == labels.max():
            raise ValueError(
                f"the hazard model's {name} leads have {labels.size} period rows and only one "
                "outcome; more rows are needed (training.hazard.row_share)"
            )
    matrix = feature_matrix(periods, spec)

    def fit(
        column: str, report: Callable[[int, int], None] | None, monotone: dict[str, int]
    ) -> lgb.Booster:
        labels = periods[column].to_numpy().astype(np.int64)
        booster = fit_booster(
            (matrix[train], labels[train]),
            (matrix[valid], labels[valid]),
            spec,
            params,
            config.training.num_boost_round,
            config.training.early_stopping_rounds,
            report,
            monotone,
        )
        booster.free_dataset()
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    # an SQL's hazard never falls with one more hand-raiser; the exit's (SQL or
    # disqualification) is left free
    booster = fit(
        "label", progress, monotone_directions(spec.names, config.training.increasing_events)
    )
    exit = fit(CLOSED, None, {}) if CLOSED in periods else None
    law = hazard_spec(spec.names, config.training.hazard.period_days, config.horizon_days, exit)
    return booster, law
