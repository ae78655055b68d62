"""Where a model came from, as MLflow shows it: the run's name, its dataset inputs, and the
gate's verdict on the model version.

- **Inputs.** The snapshot (its leads table, with the snapshot's folder or database URL as
  the source, password hidden) and the training set are logged with `mlflow.log_input`, each
  with a digest of its whole content, so two runs on the same data show the same digest.
- **Run names** say what the run was: 'train on snapshot (as of 2026-03-31)'.
- **The version's description and tags** carry the gate's verdict and its figures, so the
  registry shows why a version was (not) promoted.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from features.reader import Snapshot, shown_url

if TYPE_CHECKING:
    from training.tracking import Challenge

DIGEST_LENGTH = 20
#: Rows (besides each column's first value) that a logged dataset's column types are
#: inferred from: MLflow's own inference looks at every value of every column in Python.
SCHEMA_SAMPLE_ROWS = 1_000


def frame_digest(frame: pd.DataFrame, workers: int | None = None) -> str:
    """A digest of a frame's every value and column name (order included).

    Each column is digested on its own (`column_digest`), on up to `workers` threads
    (`features.workers`; None or 0: every core): a 1M-row training set is over a gigabyte of
    numbers, and SHA-256 over their bytes releases the GIL.
    """
    from features.parallel import ordered_map, worker_count

    digest = hashlib.blake2b(digest_size=DIGEST_LENGTH // 2)
    digest.update("|".join(map(str, frame.columns)).encode())
    if len(frame):
        columns = [frame.iloc[:, j] for j in range(frame.shape[1])]
        for part in ordered_map(column_digest, columns, worker_count(workers, len(columns))):
            digest.update(part)
    return digest.hexdigest()


def column_digest(column: pd.Series) -> bytes:
    """SHA-256 of a column's type and values: a plain numpy column's bytes as they are (NaN
    and NaT included), any other (text, categories, objects) through pandas' value hashes."""
    values: Any = column.array
    if isinstance(values, pd.arrays.NumpyExtensionArray) and values.dtype.kind in "biufcmM":
        return _array_digest(values.to_numpy(), str(column.dtype))
    if isinstance(values, pd.arrays.DatetimeArray | pd.arrays.TimedeltaArray):
        ticks = cast(np.ndarray, cast(Any, values).asi8)  # NaT is the smallest int64
        return _array_digest(ticks, str(column.dtype))
    hashed = pd.util.hash_pandas_object(column, index=False).to_numpy()
    return _array_digest(hashed, str(column.dtype))


def snapshot_digest(snapshot: Snapshot, workers: int | None = None) -> str:
    """A digest of a snapshot's leads and events as read (after cleaning), on up to
    `workers` threads as `frame_digest`."""
    from features.parallel import ordered_map, worker_count

    digest = hashlib.blake2b(digest_size=DIGEST_LENGTH // 2)
    digest.update(frame_digest(snapshot.leads, workers).encode())
    events = snapshot.events
    arrays = [events.lead, events.at_ms, events.kind]
    for part in ordered_map(_array_digest, arrays, worker_count(workers, len(arrays))):
        digest.update(part)
    return digest.hexdigest()


def _array_digest(array: np.ndarray, kind: str | None = None) -> bytes:
    """SHA-256 of `kind` (default: the array's dtype) and the array's bytes, read in place."""
    contiguous = np.ascontiguousarray(array)
    digest = hashlib.sha256((kind or str(contiguous.dtype)).encode())
    digest.update(contiguous.reshape(-1).view(np.uint8).data)
    return digest.digest()


def shown_location(location: str | Path) -> str:
    """A folder as an absolute path, a database URL without its password."""
    text = str(location)
    if "://" in text:
        return shown_url(text)
    return str(Path(text).resolve())


def data_words(location: str | Path, as_of: Any = None) -> str:
    """Where the data came from, for people: '/srv/exports/latest (as of 2026-06-30)'."""
    when = "" if as_of is None or pd.isna(as_of) else f" (as of {pd.Timestamp(as_of):%Y-%m-%d})"
    return f"{shown_location(location)}{when}"


def _source(location: str | Path) -> Any:
    """An MLflow dataset source: a local folder or file, or a database URL (password hidden)."""
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    shown = shown_location(location)
    if "://" not in shown:
        with warnings.catch_warnings():
            # MLflow registers its local-file source under two schemes and warns that a plain
            # path matches both; either is the same source
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            return resolve_dataset_source(shown)

    class DatabaseSource(DatasetSource):
        """A table set in a database, named by its SQLAlchemy URL (no password)."""

        def __init__(self, url: str) -> None:
            self.url = url

        @staticmethod
        def _get_source_type() -> str:
            return "database"

        def load(self, **kwargs: Any) -> str:
            return self.url

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> DatabaseSource:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"url": self.url}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> DatabaseSource:
            return cls(str(source_dict["url"]))

    return DatabaseSource(shown)


def dataset_schema(frame: pd.DataFrame) -> Any:
    """The schema MLflow infers for a dataset of `frame`, at the cost of a sample: the column
    types from the first rows and each column's first value, whether a column is required
    (never missing) from the whole column, vectorised."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    firsts = {frame[c].first_valid_index() for c in frame.columns} - {None}
    rows = frame.index[:SCHEMA_SAMPLE_ROWS].union(pd.Index(list(firsts)), sort=False)
    sample = frame.loc[frame.index.isin(rows)]
    missing = frame.isna().any()
    specs = infer_signature(sample).inputs.inputs
    return Schema([ColSpec(s.type, s.name, required=not bool(missing[s.name])) for s in specs])


def pandas_dataset(frame: pd.DataFrame, from_pandas: Any, **kwargs: Any) -> Any:
    """`from_pandas(frame, **kwargs)` with its schema given (`dataset_schema`), not inferred
    by MLflow value by value when it is logged."""
    dataset = from_pandas(frame, **kwargs)
    dataset.__dict__["schema"] = dataset_schema(frame)  # fills the cached property
    return dataset


def log_inputs(
    training_set: pd.DataFrame,
    training_set_location: str | Path | None,
    snapshot: Snapshot | None,
    snapshot_location: str | Path | None,
    workers: int | None = None,
) -> None:
    """`mlflow.log_input` the snapshot (when there is one) and the training set, each with its
    source and digest (on up to `workers` threads, `features.workers`), in the active run."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():
        # from_pandas infers a schema for the dataset's record and hints that integer columns
        # cannot hold missing values: true, and irrelevant to a record of what was read
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column")
        _log_inputs(
            mlflow,
            from_pandas,
            training_set,
            training_set_location,
            snapshot,
            snapshot_location,
            workers,
        )


def _log_inputs(
    mlflow: Any,
    from_pandas: Any,
    training_set: pd.DataFrame,
    training_set_location: str | Path | None,
    snapshot: Snapshot | None,
    snapshot_location: str | Path | None,
    workers: int | None,
) -> None:
    if snapshot is not None and snapshot_location is not None:
        as_of = snapshot.as_of
        name = "snapshot" if as_of is None else f"snapshot as of {pd.Timestamp(as_of):%Y-%m-%d}"
        mlflow.log_input(
            pandas_dataset(
                snapshot.leads,
                from_pandas,
                source=_source(snapshot_location),
                name=name,
                digest=snapshot_digest(snapshot, workers),
            ),
            context="source",
            tags={"events": f"{len(snapshot.events.lead):,}"},
        )
    location = training_set_location or snapshot_location
    source: dict[str, Any] = {} if location is None else {"source": _source(location)}
    mlflow.log_input(
        pandas_dataset(
            training_set,
            from_pandas,
            targets="label",
            name="training set",
            digest=frame_digest(training_set, workers),
            **source,
        ),
        context="training",
    )


def run_name(trigger: str, source: str | Path | None, as_of: Any = None) -> str:
    """'train on snapshot (as of 2026-03-31)', 'retrain on exports/2026-06-30 (as of ...)'."""
    if source is None:
        where = "a training set"
    elif "://" in str(source):
        where = shown_url(str(source))
    else:
        path = Path(str(source))
        where = "/".join(path.parts[-2:]) if len(path.parts) > 1 else path.name
    when = "" if as_of is None or pd.isna(as_of) else f" (as of {pd.Timestamp(as_of):%Y-%m-%d})"
    return f"{trigger} on {where}{when}"


# --------------------------------------------------------------------------- the version


def gate_tags(challenge: Challenge) -> dict[str, str]:
    """The gate's verdict and figures as model version tags (`gate.*`)."""
    decision = challenge.decision
    tags = {
        "gate.passed": str(decision.passed).lower(),
        "gate.promoted": str(challenge.promoted).lower(),
        "gate.champion_version": challenge.champion_version or "none",
    }
    for key in ("roc_auc", "ece", "ece_floor"):
        if key in decision.challenger:
            tags[f"gate.{key}"] = f"{decision.challenger[key]:.4f}"
    if decision.champion is not None:
        tags["gate.champion_roc_auc"] = f"{decision.champion['roc_auc']:.4f}"
    if challenge.problem is not None:
        tags["gate.problem"] = challenge.problem[:500]
    return tags


def version_description(
    challenge: Challenge, rules: Mapping[str, float] | None, verdict_words: str
) -> str:
    """The model version's description: the verdict in words, then the gate's reasons."""
    decision = challenge.decision
    outcome = (
        "Promoted to champion."
        if challenge.promoted
        else f"Not promoted; the champion stays version {challenge.champion_version}."
        if challenge.champion_version
        else "Not promoted; there is no champion."
    )
    lines = [verdict_words, "", outcome, "", "Gate:"]
    lines += [f"- {reason}" for reason in decision.reasons]
    if challenge.problem is not None:
        lines.append(f"- {challenge.problem}")
    figures = [f"AUC {decision.challenger['roc_auc']:.4f}"]
    if rules is not None:
        figures.append(f"your points' AUC {rules['roc_auc']:.4f}")
    figures.append(f"calibration error {decision.challenger['ece']:.4f}")
    if decision.champion is not None:
        figures.append(f"champion's AUC {decision.champion['roc_auc']:.4f}")
    lines += ["", "On the test period: " + ", ".join(figures) + "."]
    return "\n".join(lines)
