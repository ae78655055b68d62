"""Training sets on Spark: `leadscore features --engine spark [--master URL]`.

The snapshot is read, checked and shipped exactly as the batch engine ships it
(`serving.spark_engine.snapshot_buckets`: leads keyed and bucketed by account, cut into
buckets and events encoded where they are read, one shuffle into buckets of whole accounts).
Each bucket then runs the pandas engine's own functions: the reader's cleaning and checks
(`spark_engine.checked_bucket_snapshot`), the training rows of `features.rows` (snapshot
policy, sampled ages, censoring) and `features.pipeline.build_features`. A bucket's training
set goes back to the driver as an Arrow table, so its column types arrive as they left: in
local mode as a file in a temporary folder on the disk the driver shares (the JVM moves none
of its rows), on a cluster as one cell collected through Spark. The driver puts the rows in
the pandas engine's order (by lead, then cutoff: `in_lead_order`) and the command writes them
with the same writer: the same file, the same summary. The reader's checks that need the
whole export run on the driver: the shared reading's (duplicate ids, true/false company sizes,
swallowed lines), and a declared as-of time against the earliest of the buckets' first
created_at (`check_declared_as_of`).

The as-of time. When the config or the folder's `snapshot.json` declares it, every bucket
labels its own rows. Otherwise it is the latest timestamp of the whole snapshot, which no
bucket sees: the buckets return every candidate row with its features and its lead's outcome
times, and the driver labels them (`features.rows.row_outcomes`) at the latest of the buckets'
as-of times.

Custom fields without a type are typed on the driver by the reader's rule
(`features.custom_types.typed_custom_fields`) from their own columns, collected: set
`custom_fields[].type` to skip that. Not on Spark: flat exports and `on_bad_rows: drop` (the
set-aside rows file); they are built by the pandas engine.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import pandas as pd

from common.config import Config
from features.contract import ContractError
from features.custom_types import export_column, typed_custom_fields
from features.pipeline import build_features
from features.reader import EventLog, ReadReport, Snapshot, snapshot_as_of
from features.rows import RowCounts, candidate_cutoffs, label_rows, row_outcomes, training_rows
from serving.spark_engine import (
    DEFAULT_MASTER,
    EncodedEvents,
    SnapshotBuckets,
    SnapshotKeys,
    cached_config,
    check_declared_as_of,
    checked_bucket_snapshot,
    declared_as_of_origin,
    keys_beside_session,
    lead_columns_read,
    merge_read_reports,
    read_config_of,
    snapshot_buckets,
    split_partition,
    table_cell,
    table_file,
    table_of_cell,
    table_of_file,
    watch_tasks,
    worker_errors,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Progress = Callable[[int, int], None]

_FRAME, _FILE, _REPORT = "_ls_training_set", "_ls_training_file", "_ls_training_report"
#: The outcome times a bucket ships beside its candidate rows when the driver labels them.
_SQL_AT, _DISQUALIFIED_AT = "_ls_sql_at", "_ls_disqualified_at"


@dataclass(frozen=True)
class TrainingJob:
    """What every bucket is built with: plain values, cheap to ship to the executors."""

    config: str  # Config JSON: mapping, typed custom fields, policy, features, as_of if declared
    lead_columns: tuple[str, ...]
    names: tuple[str, str]
    label_here: bool  # the as-of time is declared: each bucket labels its rows


@dataclass(frozen=True)
class SparkTrainingSet:
    """A training set built on Spark, with what the pandas engine's `Snapshot` tells of it."""

    training_set: pd.DataFrame
    counts: RowCounts
    snapshot: Snapshot  # as-of, custom fields, read report; no rows (they stayed on the workers)
    buckets: int


# --------------------------------------------------------------------------- one bucket


def bucket_training_set(
    job: TrainingJob,
    keys: pd.Index,
    leads: pd.DataFrame,
    events: EncodedEvents,
    read_reports: Sequence[Mapping[str, Any]] = (),
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The training set of one bucket of whole accounts (raw leads and their events), built
    by the pandas engine's functions, and the bucket's report.

    With `job.label_here` the rows are labelled and censored here; otherwise they are every
    candidate cutoff, with the lead's sql_at and disqualified_at for the driver to label.
    """
    read = merge_read_reports(read_reports)
    if len(leads) == 0:  # only read reports (all leads without an id: another bucket raises)
        return None, {"read": read, "leads": 0, "events_kept": 0, "events_duplicate": 0}
    config = cached_config(job.config)
    leads = leads.loc[:, list(job.lead_columns)].reset_index(drop=True)
    snapshot = checked_bucket_snapshot(leads, events, keys, config, job.names)
    counts: dict[str, int] | None = None
    if job.label_here:
        rows, found = training_rows(snapshot.leads, snapshot.as_of, config, flat=False)
        counts = found.as_dict()
        frame = pd.concat([rows, build_features(snapshot, rows, config)], axis=1)
    else:
        policy = config.snapshot_policy
        rows = candidate_cutoffs(
            snapshot.leads,
            policy.weekly_weeks,
            policy.sampled_ages,
            config.horizon_days,
            config.training.seed,
        )
        facts = snapshot.leads.set_index("lead_id")[["sql_at", "disqualified_at"]]
        outcome = facts.reindex(rows["lead_id"].to_numpy()).reset_index(drop=True)
        outcome.columns = pd.Index([_SQL_AT, _DISQUALIFIED_AT])
        frame = pd.concat([rows, build_features(snapshot, rows, config), outcome], axis=1)
    report = snapshot.report
    as_of = snapshot.as_of
    first = snapshot.leads["created_at"].min()
    return frame, {
        "read": read,
        "leads": report.leads,
        "events_kept": report.events_kept,
        "events_duplicate": report.events_duplicate,
        "ignored_columns": report.ignored_columns,
        "excluded_columns": report.excluded_columns,
        "notes": report.notes,
        "as_of": None if as_of is None else as_of.isoformat(),
        "first_created_at": None if pd.isna(first) else first.isoformat(),
        "counts": counts,
    }


def _bucket_row(
    frame: pd.DataFrame | None, report: Mapping[str, Any], folder: str | None
) -> pd.DataFrame:
    """A bucket's one row of output: its training set as an Arrow table (its column types
    travel with it, in pandas' metadata), in one cell, or in a file in `folder` when there is
    one (local mode: the driver reads it from the same disk, and the JVM moves no rows of
    it); and its report."""
    import pyarrow as pa

    cell = path = None
    if frame is not None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if folder is None:
            cell = table_cell(table)
        else:
            path = table_file(table, folder)
    return pd.DataFrame(
        {
            _FRAME: pd.Series([cell], dtype=object),
            _FILE: pd.Series([path], dtype=object),
            _REPORT: pd.Series([json.dumps(report)], dtype=object),
        }
    )


def _output_schema() -> Any:
    from pyspark.sql.types import BinaryType, StringType, StructField, StructType

    return StructType(
        [
            StructField(_FRAME, BinaryType()),
            StructField(_FILE, StringType()),
            StructField(_REPORT, StringType()),
        ]
    )


# --------------------------------------------------------------------------- on the driver


def typed_config(buckets: SnapshotBuckets, config: Config) -> tuple[Config, list[str]]:
    """The config with every custom field typed as the reader types it: from its column's
    values (only those columns are collected) when the config gives no type; and the reader's
    note on each type inferred."""
    untyped = [f for f in config.custom_fields if f.type is None]
    if not untyped:
        return config, []
    header = buckets.header
    wanted = {c for f in untyped if (c := export_column(header, f, config.mapping)) is not None}
    raw = lead_columns_read(buckets.source, sorted(wanted)) if wanted else header.iloc[:, :0]
    typed, notes = typed_custom_fields(raw, config)
    return config.model_copy(update={"custom_fields": typed}), notes


def _read_report(reports: Sequence[Mapping[str, Any]], notes: list[str]) -> ReadReport:
    """The buckets' reports as one `ReadReport`, as the pandas engine reports the snapshot."""
    read = merge_read_reports(r["read"] for r in reports)
    full = [r for r in reports if "notes" in r]  # buckets that held leads
    seen: list[str] = list(notes)
    for report in full:
        seen += [n for n in report.get("notes", []) if n not in seen]
    first = full[0] if full else {}
    return ReadReport(
        leads=sum(r["leads"] for r in reports),
        events_read=read["read"],
        events_kept=sum(r["events_kept"] for r in reports),
        events_unknown_lead=read["unknown_lead"],
        events_duplicate=sum(r["events_duplicate"] for r in reports),
        unknown_event_types=read["types"],
        ignored_columns=list(first.get("ignored_columns", [])),
        excluded_columns=list(first.get("excluded_columns", [])),
        notes=seen,
    )


def in_lead_order(tables: Sequence[Any]) -> pd.DataFrame:
    """The buckets' training sets (Arrow tables of one schema) as one frame in the pandas
    engine's row order, by lead, then cutoff: concatenated and sorted (stably) by Arrow,
    converted to pandas once, on every core."""
    import pyarrow as pa

    metadata = tables[0].schema.metadata  # pandas' notes: the first bucket's stand for all
    whole = pa.concat_tables([t.replace_schema_metadata(metadata) for t in tables])
    ordered = whole.sort_by([("lead_id", "ascending"), ("cutoff", "ascending")])
    frame: pd.DataFrame = ordered.to_pandas()
    return frame


def assemble(
    collected: pd.DataFrame, config: Config, label_here: bool
) -> tuple[pd.DataFrame, RowCounts, pd.Timestamp | None, list[dict[str, Any]]]:
    """The buckets' training sets as one, in the pandas engine's row order (by lead, then
    cutoff), labelled here when the buckets could not be; its counts, as-of and reports."""
    reports = [json.loads(text) for text in collected[_REPORT]]
    # a column of no value arrives as missing values of any type (None, NaN)
    tables = [
        table_of_cell(bytes(c)) for c in collected[_FRAME] if isinstance(c, (bytes, bytearray))
    ]
    tables += [table_of_file(path) for path in collected[_FILE] if isinstance(path, str)]
    stamps = [pd.Timestamp(r["as_of"]) for r in reports if r.get("as_of")]
    as_of = max(stamps) if stamps else None
    present = [t for t in tables if t.num_rows] or tables[:1]
    if not present:
        raise ContractError("the snapshot has no leads with an id to build rows of")
    whole = in_lead_order(present)
    if label_here:
        parts = [r["counts"] for r in reports if r.get("counts")]
        totals = {f.name: sum(p[f.name] for p in parts) for f in fields(RowCounts)}
        return whole, RowCounts(**totals), as_of, reports
    if as_of is None:
        raise ContractError(
            "the snapshot has no timestamps, so its as-of time is unknown; set as_of"
        )
    facts = whole[["lead_id", _SQL_AT, _DISQUALIFIED_AT]].drop_duplicates("lead_id")
    facts.columns = pd.Index(["lead_id", "sql_at", "disqualified_at"])
    candidates = whole[["lead_id", "cutoff"]]
    labelled, counts = label_rows(candidates, facts, as_of, config.horizon_days)
    keep, _, _ = row_outcomes(candidates, facts, as_of, config.horizon_days)
    features = whole.drop(columns=["lead_id", "cutoff", _SQL_AT, _DISQUALIFIED_AT])
    kept = features.loc[keep].reset_index(drop=True)
    return pd.concat([labelled, kept], axis=1), counts, as_of, reports


def check_on_spark(settings: Config) -> None:
    """Refuse what Spark does not build: flat exports and set-aside rows."""
    source = settings.source
    if source.flat or source.events is None:
        raise ContractError(
            "--engine spark builds training sets of timestamped snapshots (leads and events); "
            "build a flat export's with the pandas engine"
        )
    if source.on_bad_rows == "drop":
        raise ContractError(
            "--engine spark does not set bad rows aside (on_bad_rows: drop); fix them, or "
            "build this training set with the pandas engine"
        )


def build_on_spark(
    spark: SparkSession,
    settings: Config,
    *,
    buckets: int | None = None,
    progress: Progress | None = None,
    keys: SnapshotKeys | None = None,
) -> SparkTrainingSet:
    """The training set of `settings.source` built on Spark: the pandas engine's rows, values
    and column types (`build_training_set`), and its snapshot's as-of, custom fields and read
    report. `keys`: the snapshot's keys when the caller read them (`keys_beside_session`)."""
    check_on_spark(settings)
    read_config = read_config_of(settings)
    label_here = read_config.as_of is not None
    origin = declared_as_of_origin(settings)
    as_of_declared = snapshot_as_of(read_config, pd.DataFrame(), EventLog.empty())
    with worker_errors(), snapshot_buckets(spark, read_config, buckets, keys) as found:
        config, notes = typed_config(found, read_config)
        inside = config.features.model_copy(update={"workers": 1})  # Spark runs a task per core
        job = TrainingJob(
            config=config.model_copy(update={"features": inside}).model_dump_json(),
            lead_columns=found.lead_columns,
            names=found.names,
            label_here=label_here,
        )
        shared_leads, header = found.lead_map, found.header
        local = str(spark.sparkContext.master).startswith("local")
        folder = tempfile.mkdtemp(prefix="leadscore-training-set-") if local else None

        def build(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            parts = list(batches)
            if parts:
                left, right, reports = split_partition(parts, header)
                keys = shared_leads.value.keys
                built = bucket_training_set(job, keys, left, right, reports)
                yield _bucket_row(*built, folder)

        try:
            with watch_tasks(spark, progress):
                collected = found.frame.mapInPandas(build, _output_schema()).toPandas()
            n_buckets = found.buckets
            training_set, counts, as_of, reports = assemble(collected, config, label_here)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    check_declared_as_of(as_of_declared, reports, found.names[0], origin)
    report = _read_report(reports, notes)
    if report.events_read and report.events_unknown_lead == report.events_read:
        names = found.names
        raise ContractError(
            f"{names[1]}: none of its {report.events_read:,} events belongs to a lead in "
            f"{names[0]}: are both files from the same export, with ids written the same way?"
        )
    facts = Snapshot(pd.DataFrame(), EventLog.empty(), as_of, False, config.custom_fields, report)
    return SparkTrainingSet(training_set, counts, facts, n_buckets)


def spark_training_set(
    settings: Config, master: str | None, progress: Progress | None = None
) -> SparkTrainingSet:
    """`build_on_spark` in a session of its own (local[2] unless `master`), stopped at the
    end, the snapshot's keys read while the JVM starts; a session this process already runs
    (a notebook's) is used and left running."""
    check_on_spark(settings)
    config, master = read_config_of(settings), master or DEFAULT_MASTER
    with keys_beside_session(config, master, "leadscore features") as (spark, keys):
        return build_on_spark(spark, settings, progress=progress, keys=keys())
