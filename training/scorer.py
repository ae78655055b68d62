"""Scoring with a trained model: features in, calibrated probability, tier and reasons out.

Everything a model needs travels as plain files (the booster in LightGBM's text format, the
calibrator, the feature spec with its category lists, the tier cut points), so a model loads
without unpickling anything. Categories become integer codes here, in the same way for
training and scoring, so no pandas category machinery is needed at serving time.

This module imports only numpy, pandas and lightgbm: MLflow bundles it with the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.bend import BEND_FILE, Bend
from training.calibrate import AGE_FEATURE, Calibrator
from training.hazard import HazardSpec, horizon_raw
from training.tiers import Tiers

FILES = {
    "booster": "booster.txt",
    "calibrator": "calibrator.json",
    "spec": "spec.json",
    "tiers": "tiers.json",
}
#: Written beside FILES by a hazard model only (`training.hazard`).
HAZARD_FILE = ("hazard", "hazard.json")


@dataclass(frozen=True)
class ModelSpec:
    """The model's features in order, their kinds, and each categorical feature's categories."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]

    @property
    def categorical_index(self) -> list[int]:
        return [i for i, kind in enumerate(self.kinds) if kind == "categorical"]

    def to_json(self) -> str:
        return json.dumps(
            {
                "names": list(self.names),
                "kinds": list(self.kinds),
                "categories": {k: list(v) for k, v in self.categories.items()},
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> ModelSpec:
        data = json.loads(text)
        return ModelSpec(
            tuple(data["names"]),
            tuple(data["kinds"]),
            {k: tuple(v) for k, v in data["categories"].items()},
        )


def learn_spec(
    features: pd.DataFrame, categorical: set[str], rows: np.ndarray | None = None
) -> ModelSpec:
    """The spec of a training slice: categories are the values seen there, sorted.

    `rows` (a mask or positions) picks the slice out of `features`; None: every row. Only
    the categorical columns are read on it, so no copy of the whole slice is made.
    """
    names = tuple(str(c) for c in features.columns)
    kinds = tuple("categorical" if n in categorical else "numeric" for n in names)
    categories = {}
    for n, k in zip(names, kinds, strict=True):
        if k == "categorical":
            column = features[n] if rows is None else features[n].iloc[rows]
            categories[n] = tuple(sorted(str(v) for v in column.dropna().unique()))
    return ModelSpec(names, kinds, categories)


def feature_matrix(features: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """The float matrix the booster sees: categories as codes, unseen or missing ones as NaN.

    Raises KeyError naming the features that are missing from the frame.

    The matrix is column-major: it is filled a feature (a column) at a time, which in a
    row-major one writes a value per cache line; LightGBM reads either layout, to the same
    predictions and the same training set.
    """
    missing = [n for n in spec.names if n not in features.columns]
    if missing:
        raise KeyError(f"features missing from the input: {missing[:10]}")
    matrix = np.empty((len(features), len(spec.names)), dtype=np.float64, order="F")
    for j, (name, kind) in enumerate(zip(spec.names, spec.kinds, strict=True)):
        column = features[name]
        if kind == "categorical":
            codes = pd.Index(spec.categories[name]).get_indexer(pd.Index(column.astype("str")))
            matrix[:, j] = np.where(codes < 0, np.nan, codes)  # unseen or missing: NaN
        else:
            matrix[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
    return matrix


def model_raw(
    booster: lgb.Booster,
    spec: ModelSpec,
    matrix: np.ndarray,
    hazard: HazardSpec | None = None,
    bend: Bend | None = None,
    num_threads: int = 0,
) -> np.ndarray:
    """The score a calibrator maps: the booster's raw score, a hazard model's logit of its
    horizon probability, or a moment model's bent score."""
    if hazard is not None:
        return horizon_raw(booster, matrix, hazard, num_threads)
    kwargs: dict[str, Any] = {"num_threads": num_threads} if num_threads else {}
    raw = np.asarray(booster.predict(matrix, raw_score=True, **kwargs), dtype=np.float64)
    if bend is None:
        return raw
    age = matrix[:, spec.names.index(AGE_FEATURE)]
    return bend.raw(raw, age, matrix, num_threads)


@dataclass(frozen=True)
class Scorer:
    """A trained model ready to score feature rows.

    With `hazard` set, the booster gives per-period hazards and the raw score is the logit of
    the horizon probability they make (`training.hazard`); with `bend` set, the booster is a
    moment model's and the raw score is its score bent by the lead's age (`training.bend`);
    else the booster's raw score.
    """

    booster: lgb.Booster
    calibrator: Calibrator
    spec: ModelSpec
    tiers: Tiers
    hazard: HazardSpec | None = None
    bend: Bend | None = None

    @staticmethod
    def from_files(paths: Mapping[str, str | Path]) -> Scorer:
        """Load from the four files (keys as in FILES), e.g. MLflow's context.artifacts, and
        a hazard model's `hazard` or a moment model's `bend` file when given."""
        text = {key: Path(paths[key]).read_text(encoding="utf-8") for key in FILES}
        hazard = paths.get(HAZARD_FILE[0])
        bend = paths.get(BEND_FILE[0])
        return Scorer(
            booster=lgb.Booster(model_str=text["booster"]),
            calibrator=Calibrator.from_json(text["calibrator"]),
            spec=ModelSpec.from_json(text["spec"]),
            tiers=Tiers.from_json(text["tiers"]),
            hazard=None
            if hazard is None
            else HazardSpec.from_json(Path(hazard).read_text(encoding="utf-8")),
            bend=None if bend is None else Bend.from_json(Path(bend).read_text(encoding="utf-8")),
        )

    @staticmethod
    def from_dir(folder: Path) -> Scorer:
        paths = {key: folder / name for key, name in FILES.items()}
        for key, name in (HAZARD_FILE, BEND_FILE):
            if (folder / name).is_file():
                paths[key] = folder / name
        return Scorer.from_files(paths)

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the four files into `folder`; returns their paths by key."""
        folder.mkdir(parents=True, exist_ok=True)
        contents = {
            "booster": self.booster.model_to_string(),
            "calibrator": self.calibrator.to_json(),
            "spec": self.spec.to_json(),
            "tiers": self.tiers.to_json(),
        }
        names = dict(FILES)
        if self.hazard is not None:
            contents[HAZARD_FILE[0]] = self.hazard.to_json()
            names[HAZARD_FILE[0]] = HAZARD_FILE[1]
        if self.bend is not None:
            contents[BEND_FILE[0]] = self.bend.to_json()
            names[BEND_FILE[0]] = BEND_FILE[1]
        paths = {key: folder / names[key] for key in names}
        for key, path in paths.items():
            path.write_text(contents[key], encoding="utf-8")
        return paths

    def raw_score(self, matrix: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The score the calibrator maps (`model_raw`)."""
        return model_raw(self.booster, self.spec, matrix, self.hazard, self.bend, num_threads)

    def raw_with(self, matrix: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """The raw score of rows whose contributions are already computed: their sum (exactly
        the raw score) for an ages or a moment model; a hazard model's contributions are its
        first period's, so its raw score is computed."""
        if self.hazard is None:
            return np.asarray(contributions.sum(axis=1), dtype=np.float64)
        return self.raw_score(matrix, num_threads=1 if matrix.shape[0] == 1 else 0)

    def calibrate(self, raw: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Probabilities of the raw scores of `matrix`'s rows: an age-aware calibrator also
        reads each row's days since mql_at from it."""
        age = matrix[:, self.spec.names.index(AGE_FEATURE)] if self.calibrator.needs_age else None
        return self.calibrator.apply(raw, age)

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrate(self.raw_score(matrix), matrix)

    def contributions(self, matrix: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """SHAP values in log-odds, one column per feature plus the expected value last.

        Of a hazard model: its first period's hazard (the period starting at the scoring time).
        Of a moment model: its bent score's (`Bend.contributions`). `num_threads`: LightGBM's
        threads for this call (None: its default).
        """
        threads: dict[str, Any] = {} if num_threads is None else {"num_threads": num_threads}
        out = np.asarray(
            self.booster.predict(matrix, pred_contrib=True, **threads), dtype=np.float64
        )
        if self.bend is not None:
            age = self.spec.names.index(AGE_FEATURE)
            return self.bend.contributions(out, age, matrix, num_threads or 0)
        return out

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """Probability, tier and raw score of each feature row."""
        matrix = feature_matrix(features, self.spec)
        raw = self.raw_score(matrix)
        probability = self.calibrate(raw, matrix)
        return pd.DataFrame(
            {"probability": probability, "tier": self.tiers.assign(probability), "raw_score": raw},
            index=features.index,
        )

    @property
    def kind(self) -> str:
        """`training.model`: ages, hazard or moment."""
        if self.hazard is not None:
            return "hazard"
        return "ages" if self.bend is None else "moment"

    def describe(self) -> dict[str, Any]:
        return {
            "features": list(self.spec.names),
            "calibration": self.calibrator.method,
            "kind": self.kind,
            "tiers": self.tiers.as_dict(),
            "trees": self.booster.num_trees(),
            **({} if self.bend is None else self.bend.describe()),
        }
