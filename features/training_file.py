"""`leadscore features`: a snapshot in, a training-set file and its JSON summary out.

The Parquet file holds the training set (`features.pipeline.build_training_set`); the summary
beside it (`<stem>.json`) records what a later `leadscore train --training-set` needs to know
about it: the as-of time, the label definition, the row counts, the features and their kinds,
what reading set aside, and the custom fields' inferred types. Both are written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.config import Config
from features.pipeline import FeatureSpec, feature_spec
from features.rows import RowCounts

if TYPE_CHECKING:
    import pandas as pd

    from features.reader import Snapshot

Progress = Callable[[int, int], None]
#: A training set built elsewhere: the snapshot that tells of it, the rows, their counts.
Built = tuple["Snapshot", "pd.DataFrame", RowCounts]


@dataclass(frozen=True)
class TrainingFile:
    """What `write_training_set` wrote."""

    counts: RowCounts
    spec: FeatureSpec
    summary: Path
    quarantined: Path | None


def write_training_set(
    settings: Config,
    out: Path,
    *,
    say: Callable[[str], object] = lambda line: None,
    progress: Progress | None = None,
    built: Built | None = None,
) -> TrainingFile:
    """Read the config's source, build its training set and write it to `out` (Parquet), the
    summary beside it and the set-aside rows (the source's quarantine file, else
    `<stem>.quarantine.csv` beside `out`). `say` gets the reading report's lines. `built`: a
    training set another engine built (`leadscore features --engine spark`), with the snapshot
    that tells of it (as-of time, custom fields, read report), written the same way."""
    from common.io import write_json, write_parquet
    from features.custom_types import with_custom_fields
    from features.pipeline import build_training_set
    from features.quarantine import write_quarantine
    from features.reader import read_snapshot

    snap = read_snapshot(settings) if built is None else built[0]
    settings = with_custom_fields(settings, snap.custom_fields)  # inferred types
    for line in snap.report.lines():
        say(line)
    training_set, counts = (
        build_training_set(snap, settings, progress) if built is None else built[1:]
    )
    spec = feature_spec(settings, snap.flat)
    write_parquet(training_set, out)
    quarantined = write_quarantine(
        snap.report.quarantine,
        settings.source.quarantine or out.with_name(f"{out.stem}.quarantine.csv"),
    )
    summary = out.with_suffix(".json")
    write_json(
        {
            "as_of": snap.as_of,
            "flat": snap.flat,
            "horizon_days": settings.horizon_days,
            "snapshot_policy": settings.snapshot_policy.model_dump(),
            "rows": counts.as_dict(),
            "features": [
                {"name": n, "kind": k} for n, k in zip(spec.names, spec.kinds, strict=True)
            ],
            "read": snap.report.lines(),
            "quarantine": {**snap.report.quarantine.counts(), "file": quarantined},
            "custom_fields": [f.model_dump() for f in settings.custom_fields],
        },
        summary,
    )
    return TrainingFile(counts, spec, summary, quarantined)
