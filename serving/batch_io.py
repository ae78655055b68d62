"""The batch job's edges: writing the scores file atomically, reading the previous one, and
upserting a SQL table in one transaction.

A reader sees the old scores or the whole new ones, never a part: the file is written to a
temporary name beside the target and moved onto it at the end (`features.output`), and the
table is changed in one transaction that also stages the rows, so a failure anywhere (the
server going away included) leaves the table as it was.
"""

from __future__ import annotations

import fcntl
import glob
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import ContractError
from features.output import atomic_path
from features.rows import covered_weeks
from features.snapshot import Snapshot, shown_url
from serving.batch import (
    COLUMNS,
    Progress,
    TierChanges,
    open_mql_rows,
    score_chunks,
    stale_rows,
    staleness_note,
    tier_changes,
    tier_counts,
)
from serving.model_store import LoadedModel
from training.monitor import (
    empty_counts,
    merge_counts,
    monitor_record,
    profile_counts,
    write_monitor_record,
)

log = logging.getLogger("leadscore.batch")

#: Arrow types of the scores file's columns.
SCHEMA = pa.schema(
    [
        ("lead_id", pa.string()),
        ("account_id", pa.string()),
        ("as_of", pa.timestamp("ms", tz="UTC")),
        ("probability", pa.float64()),
        ("tier", pa.string()),
        ("points", pa.float64()),
        ("thresholds_passed", pa.string()),
        ("reasons", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("scored_at", pa.timestamp("ms", tz="UTC")),
    ]
)
_TIMES = ("as_of", "scored_at")
#: Rows per batch when the written file is read back (for the SQL upsert).
READ_BATCH_ROWS = 50_000


class OutputError(RuntimeError):
    """Scores could not be written; the message says where and why, and what was left."""


def file_format(target: Path) -> str:
    """'parquet' or 'csv' by the file's extension; ContractError for anything else."""
    name = target.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    raise ContractError(f"--out {target}: write .parquet or .csv (got '{target.suffix}')")


def check_writable(target: Path) -> None:
    """Fail before any work if the scores cannot be written where asked."""
    if target.is_dir():
        raise ContractError(f"--out {target}: is a folder; name a file")
    file_format(target)
    folder = target.parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ContractError(f"--out {target}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ContractError(f"--out {target}: {probe} is not writable")


def _table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table of `SCHEMA` (columns converted by Arrow, not per value)."""
    table = pa.Table.from_pandas(frame.loc[:, list(COLUMNS)], schema=SCHEMA, preserve_index=False)
    return table.replace_schema_metadata(None)


def write_scores(
    chunks: Iterable[pd.DataFrame],
    target: Path,
    before_replace: Callable[[Iterator[pd.DataFrame]], None] | None = None,
) -> int:
    """Write score frames (`COLUMNS`) to `target` (.parquet or .csv) chunk by chunk, atomically;
    returns the rows written. A failure or a kill leaves `target` as it was.

    `before_replace`, if given, gets the written scores (read back in batches) before the new
    file replaces the old one; if it raises, the old file stays.
    """
    fmt = file_format(target)
    rows = 0
    with atomic_path(target) as temporary:
        if fmt == "parquet":
            with pq.ParquetWriter(temporary, SCHEMA, compression="zstd") as writer:
                for frame in chunks:
                    writer.write_table(_table(frame))
                    rows += len(frame)
        else:
            header = True
            with temporary.open("w", encoding="utf-8", newline="") as handle:
                for frame in chunks:
                    frame.loc[:, list(COLUMNS)].to_csv(handle, index=False, header=header)
                    header = False
                    rows += len(frame)
                if header:  # no rows: still a file with the header
                    pd.DataFrame(columns=list(COLUMNS)).to_csv(handle, index=False)
        if before_replace is not None:
            before_replace(read_scores(temporary, fmt=fmt))
    return rows


def read_scores(
    path: Path, columns: list[str] | None = None, fmt: str | None = None
) -> Iterator[pd.DataFrame]:
    """A scores file (.parquet or .csv, by extension unless `fmt` says) in batches of
    `READ_BATCH_ROWS`, typed as written."""
    wanted = columns or list(COLUMNS)
    if (fmt or file_format(path)) == "parquet":
        source = pq.ParquetFile(path)
        for batch in source.iter_batches(batch_size=READ_BATCH_ROWS, columns=wanted):
            yield batch.to_pandas()
        return
    for frame in pd.read_csv(path, usecols=wanted, chunksize=READ_BATCH_ROWS, dtype=str):
        for name in _TIMES:
            if name in frame:
                frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        for name in ("probability", "points"):
            if name in frame:
                frame[name] = pd.to_numeric(frame[name])
        yield frame


def read_previous(path: Path) -> pd.DataFrame | None:
    """(lead_id, tier) of the scores file a previous run left at `path`; None if there is none
    or it cannot be read (logged: the run goes on, the comparison is skipped)."""
    if not path.is_file():
        return None
    try:
        parts = list(read_scores(path, ["lead_id", "tier"]))
    except Exception as error:  # a foreign or damaged file must not stop the run
        log.warning("previous scores %s unreadable (%s); no comparison", path, error)
        return None
    return pd.concat(parts, ignore_index=True) if parts else None


def previous_run(out: Path, previous: Path | None = None) -> Path | None:
    """The scores file of the run before this one: `previous` when given (it must exist),
    else `out` itself when a run left it there, else the newest file beside `out` with the
    same extension whose name sorts before `out`'s (dated names such as 2026-07-01.parquet sort
    by date), so that a nightly job writing one file per night compares with last night's."""
    if previous is not None:
        if not previous.is_file():
            raise OutputError(f"--previous {previous}: no such scores file")
        return previous
    if out.is_file():
        return out
    if not out.parent.is_dir():
        return None
    earlier = [
        path
        for path in out.parent.glob(f"*{out.suffix}")
        if path.is_file() and path.name < out.name and not path.name.startswith(".")
    ]
    return max(earlier, key=lambda path: path.name) if earlier else None


# --------------------------------------------------------------------------- SQL


def _sql_types() -> dict[str, Any]:
    import sqlalchemy as sa

    return {
        "lead_id": sa.Text(),
        "account_id": sa.Text(),
        "as_of": sa.DateTime(timezone=True),
        "probability": sa.Float(),
        "tier": sa.Text(),
        "points": sa.Float(),
        "thresholds_passed": sa.Text(),
        "reasons": sa.Text(),
        "model_name": sa.Text(),
        "model_version": sa.Text(),
        "scored_at": sa.DateTime(timezone=True),
    }


def _split_table(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    if not table:
        raise ContractError(f"--table {name!r}: name a table")
    return (schema or None), table


def _copy_postgres(connection: Any, stage: str, frame: pd.DataFrame) -> None:
    """COPY a frame into the staging table (psycopg 3)."""
    buffer = io.StringIO()
    frame.loc[:, list(COLUMNS)].to_csv(
        buffer, index=False, header=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z"
    )
    raw = connection.connection.driver_connection
    columns = ", ".join(COLUMNS)
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {stage} ({columns}) FROM STDIN (FORMAT csv)") as copy,
    ):
        copy.write(buffer.getvalue())


def upsert_sql(url: str, table: str, batches: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Make `table` hold exactly these scores, keyed by lead_id, in one transaction.

    Rows are staged in a temporary table, then inserted or updated (`ON CONFLICT (lead_id)`),
    and leads no longer scored are deleted, so a re-run with the same scores changes nothing
    and the table always holds one run's open MQLs. The table is created with `lead_id` as
    primary key if it does not exist. Returns the (lead_id, tier) rows the table held before.

    Raises:
        OutputError: the database refused or went away; the transaction rolled back, so the
            table is as it was.
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    schema, name = _split_table(table)
    where = f"table {table} at {shown_url(url)}"
    try:
        engine = sa.create_engine(url, **_engine_options(url))
    except Exception as error:
        raise ContractError(f"--to-sql {shown_url(url)}: {error}") from None
    try:
        with engine.begin() as connection:
            dialect = connection.dialect.name
            if dialect not in ("postgresql", "sqlite"):
                raise ContractError(f"--to-sql: {dialect} is not supported (postgresql, sqlite)")
            metadata = sa.MetaData()
            target = sa.Table(
                name,
                metadata,
                *(
                    sa.Column(column, kind, primary_key=column == "lead_id")
                    for column, kind in _sql_types().items()
                ),
                schema=schema,
            )
            metadata.create_all(connection, checkfirst=True)
            previous = pd.DataFrame(
                connection.execute(sa.select(target.c.lead_id, target.c.tier)).all(),
                columns=["lead_id", "tier"],
            )
            quote = connection.dialect.identifier_preparer.quote
            qualified = (f"{quote(schema)}." if schema else "") + quote(name)
            stage = quote(f"leadscore_stage_{name}")
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {stage}"))
            connection.execute(
                sa.text(f"CREATE TEMPORARY TABLE {stage} AS SELECT * FROM {qualified} WHERE 1 = 0")
            )
            for frame in batches:
                if dialect == "postgresql":
                    _copy_postgres(connection, stage, frame)
                else:
                    _insert_rows(connection, stage, frame)
            columns = ", ".join(COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "lead_id")
            connection.execute(
                sa.text(
                    f"INSERT INTO {qualified} ({columns}) SELECT {columns} FROM {stage} "
                    f"WHERE true ON CONFLICT (lead_id) DO UPDATE SET {updates}"
                )
            )
            connection.execute(
                sa.text(
                    f"DELETE FROM {qualified} WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {stage} s WHERE s.lead_id = {qualified}.lead_id)"
                )
            )
            connection.execute(sa.text(f"DROP TABLE {stage}"))
    except ContractError:
        raise
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        if (
            "no unique or exclusion constraint" in cause
            or "ON CONFLICT clause does not match" in cause
        ):
            cause += "; the table needs a primary key or unique constraint on lead_id"
        raise OutputError(
            f"{where}: the upsert failed and was rolled back, the table is as it was: {cause}"
        ) from None
    finally:
        engine.dispose()
    return previous


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"application_name": "leadscore predict", "connect_timeout": 10}}
    return {}


def _insert_rows(connection: Any, stage: str, frame: pd.DataFrame) -> None:
    import sqlalchemy as sa

    records = frame.loc[:, list(COLUMNS)].astype(object).where(frame.notna(), None)
    for name in _TIMES:
        records[name] = [None if v is None else pd.Timestamp(v).isoformat() for v in records[name]]
    placeholders = ", ".join(f":{c}" for c in COLUMNS)
    connection.execute(
        sa.text(f"INSERT INTO {stage} ({', '.join(COLUMNS)}) VALUES ({placeholders})"),
        records.to_dict(orient="records"),
    )


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class PredictSummary:
    """What a `leadscore predict` run did."""

    rows: int
    tiers: dict[str, int]
    changes: TierChanges | None
    compared_with: str | None
    out: Path
    monitor: Path | None
    table: str | None
    model: str
    as_of: pd.Timestamp
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        shown = ", ".join(f"{tier} {count:,}" for tier, count in self.tiers.items())
        lines = [
            f"scored {self.rows:,} open MQLs as of {self.as_of.isoformat()} with {self.model}",
            f"tiers: {shown}",
        ]
        if self.changes is None:
            lines.append("no previous run to compare with")
        else:
            c = self.changes
            lines.append(
                f"since the previous run ({self.compared_with}): {c.new:,} new, {c.gone:,} gone, "
                f"{c.up:,} moved up a tier, {c.down:,} moved down, {c.same:,} unchanged"
            )
        lines.append(f"wrote {self.out}" + (f" and {self.monitor}" if self.monitor else ""))
        if self.table:
            lines.append(f"upserted {self.rows:,} rows into {self.table} (one transaction)")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


@contextmanager
def _run_lock(target: Path) -> Iterator[None]:
    """One run per output file at a time; under the lock, temporary files left by a killed
    run (SIGKILL skips every clean-up) are removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another leadscore predict is writing {target}") from None
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        yield


def publish_scores(
    scores: Iterable[tuple[pd.DataFrame, Mapping[str, Any] | None]],
    model: LoadedModel,
    as_of: pd.Timestamp,
    out: Path,
    *,
    scored_at: pd.Timestamp,
    to_sql: tuple[str, str] | None = None,
    notes: tuple[str, ...] = (),
    previous: Path | None = None,
) -> PredictSummary:
    """What a batch job does after scoring, whichever engine scored: write `out` atomically
    (under the run lock), the monitoring record beside it when the model has a reference,
    upsert the SQL table if asked, and compare the tiers with the previous run (the table's,
    else the file's).

    `scores` yields score frames (`COLUMNS`), each with the monitoring counts of its rows (in
    the model's reference bins; None when there is none); they are consumed under the lock,
    so a lazy iterator scores while the file is written.
    """
    reference = model.reference
    monitor: dict[str, Any] | None = None
    kept: list[pd.DataFrame] = []

    def frames() -> Iterator[pd.DataFrame]:
        nonlocal monitor
        for frame, counts in scores:
            kept.append(frame[["lead_id", "tier"]])
            if reference is not None and counts is not None:
                monitor = dict(counts) if monitor is None else merge_counts(monitor, counts)
            yield frame

    # the table is upserted from the finished temporary file before it replaces `out`: if the
    # database fails, neither the table nor the file changes
    previous_table: list[pd.DataFrame] = []

    def upsert(batches: Iterator[pd.DataFrame]) -> None:
        if to_sql is not None:
            previous_table.append(upsert_sql(to_sql[0], to_sql[1], batches))

    with _run_lock(out):
        before = previous_run(out, previous)
        previous_scores = None if before is None else read_previous(before)
        written = write_scores(frames(), out, before_replace=upsert)
    current = (
        pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=["lead_id", "tier"])
    )
    monitor_file = None
    if reference is not None:
        record = monitor_record(
            monitor if monitor is not None else empty_counts(reference),
            reference,
            model_name=model.name,
            model_version=model.version,
            as_of=as_of,
            scored_at=scored_at,
        )
        monitor_file = write_monitor_record(record, out)
    compared_with = str(before) if previous_scores is not None else None
    table = None
    if to_sql is not None:
        table = to_sql[1]
        previous_scores = previous_table[0]
        compared_with = f"table {table}"
    return PredictSummary(
        rows=written,
        tiers=tier_counts(current["tier"].to_numpy()),
        changes=None if previous_scores is None else tier_changes(previous_scores, current),
        compared_with=compared_with,
        out=out,
        monitor=monitor_file,
        table=table,
        model=f"{model.name} version {model.version}",
        as_of=as_of,
        notes=notes,
    )


def predict_job(
    snapshot: Snapshot,
    model: LoadedModel,
    as_of: pd.Timestamp,
    out: Path,
    *,
    horizon_days: int,
    reasons: int,
    chunk_leads: int,
    to_sql: tuple[str, str] | None = None,
    progress: Progress | None = None,
    previous: Path | None = None,
) -> PredictSummary:
    """Score every open MQL of the snapshot as of `as_of` and publish the scores
    (`publish_scores`: the file, the monitoring record, the SQL table, the tier changes
    against `previous_run`)."""
    check_writable(out)
    previous_run(out, previous)  # a missing --previous fails before any work
    rows = open_mql_rows(snapshot.leads, as_of, horizon_days)
    scored_at = pd.Timestamp.now(tz="UTC").floor("ms")
    reference = model.reference
    if reference is None:
        log.warning(
            "model %s version %s has no reference profile: no monitoring record",
            model.name,
            model.version,
        )

    def scores() -> Iterator[tuple[pd.DataFrame, dict[str, Any] | None]]:
        for chunk in score_chunks(
            snapshot, rows, model, reasons, progress, chunk_leads=chunk_leads, scored_at=scored_at
        ):
            counts = None
            if reference is not None:
                counts = profile_counts(chunk.features, chunk.probability, chunk.tier, reference)
            yield chunk.scores, counts

    weeks = covered_weeks(model.config.snapshot_policy, model.config.horizon_days)
    stale = staleness_note(
        stale_rows(snapshot.leads, rows, weeks),
        len(rows),
        weeks,
        f"{model.name} version {model.version}",
    )
    return publish_scores(
        scores(),
        model,
        as_of,
        out,
        scored_at=scored_at,
        to_sql=to_sql,
        notes=() if stale is None else (stale,),
        previous=previous,
    )
