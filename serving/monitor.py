"""A scoring run's monitoring record: the run's drift counts, its model and the training
reference, written beside its scores file (`<stem>.monitor.json`) for `leadscore monitor`
(`serving.monitor_report`); and the other files a run keeps beside its scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from common.io import write_json
from training.drift import MonitorError, check_reference

RECORD_FORMAT = "leadscore.monitor/1"


def monitor_path(scores: Path | str) -> Path:
    """Where a scoring run's monitoring record lives: beside the scores, `<stem>.monitor.json`."""
    path = Path(scores)
    return path.with_name(f"{path.stem}.monitor.json")


def publish_journal_path(scores: Path | str) -> Path:
    """The journal a scoring run keeps while it publishes its outputs (`serving.publish`):
    while it exists, the scores file and its record may be of different runs."""
    path = Path(scores)
    return path.with_name(f".{path.name}.publish.json")


def monitor_record(
    counts: Mapping[str, Any],
    reference: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str,
    as_of: pd.Timestamp | str,
    scored_at: pd.Timestamp | str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """What a scoring run writes beside its scores: its counts, the model and its reference.

    The reference travels in the record, so `leadscore monitor` needs no registry access.
    `run_id` is the run's id, also in every row of its scores file: the record belongs to the
    file only if they match.
    """
    check_reference(reference)
    if counts.get("reference_id") != reference["id"]:
        raise MonitorError("the counts were not made in this reference's bins")
    stamp = pd.Timestamp(as_of)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    scored = pd.Timestamp.now(tz="UTC") if scored_at is None else pd.Timestamp(scored_at)
    return {
        "format": RECORD_FORMAT,
        "model_name": str(model_name),
        "model_version": str(model_version),
        "as_of": stamp.isoformat(),
        "scored_at": scored.isoformat(),
        **({} if run_id is None else {"run_id": str(run_id)}),
        "counts": dict(counts),
        "reference": dict(reference),
    }


def write_monitor_record(record: Mapping[str, Any], scores: Path | str) -> Path:
    """Write the record atomically beside the scores file; returns its path."""
    if record.get("format") != RECORD_FORMAT:
        raise MonitorError(f"not a {RECORD_FORMAT} record")
    target = monitor_path(scores)
    write_json(record, target)
    return target
