"""The batch job's edges: writing the scores file atomically, reading the previous one, and
upserting a SQL table in one transaction.

A reader sees the old scores or the whole new ones, never a part: the file is written to a
temporary name beside the target and moved onto it at the end, and the table is changed in
one transaction that also stages the rows, so a failure anywhere (the server going away
included) leaves the table as it was. The scores file, its monitoring record and the table
are published as one run (`serving.publish`): one run id in all three, the old run or the
new one whole after a kill or a full disk.
"""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common.config import Config
from common.io import (
    atomic_path,
    make_durable,
    remove_strays,
    temporary_beside,
    to_jsonable,
)
from features.contract import ContractError
from features.reader import Snapshot, read_snapshot, shown_url
from features.rows import covered_weeks
from serving.batch import (
    COLUMNS,
    Progress,
    TierChanges,
    after_snapshot_note,
    open_rows,
    score_chunks,
    stale_rows,
    staleness_note,
    tier_changes,
    tier_counts,
)
from serving.model_store import LoadedModel
from serving.monitor import RECORD_FORMAT, monitor_path, monitor_record, publish_journal_path
from serving.publish import Journal, PublishError, commit, settle
from training.drift import empty_counts, merge_counts, profile_counts

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
        ("run_id", pa.string()),
    ]
)
#: The scores file's and table's columns: the scores and the id of the run that published them.
OUTPUT_COLUMNS = (*COLUMNS, "run_id")
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
    table = pa.Table.from_pandas(
        frame.loc[:, list(OUTPUT_COLUMNS)], schema=SCHEMA, preserve_index=False
    )
    return table.replace_schema_metadata(None)


def write_scores_to(chunks: Iterable[pd.DataFrame], path: Path, fmt: str) -> int:
    """Write score frames (`OUTPUT_COLUMNS`) to `path` chunk by chunk, durably; returns the
    rows written. Raises OSError (e.g. ENOSPC) as the file system does."""
    rows = 0
    if fmt == "parquet":
        with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
            for frame in chunks:
                writer.write_table(_table(frame))
                rows += len(frame)
    else:
        header = True
        with path.open("w", encoding="utf-8", newline="") as handle:
            for frame in chunks:
                frame.loc[:, list(OUTPUT_COLUMNS)].to_csv(handle, index=False, header=header)
                header = False
                rows += len(frame)
            if header:  # no rows: still a file with the header
                pd.DataFrame(columns=list(OUTPUT_COLUMNS)).to_csv(handle, index=False)
    make_durable(path)
    return rows


def write_scores(chunks: Iterable[pd.DataFrame], target: Path) -> int:
    """Write score frames to `target` (.parquet or .csv) atomically, as one run of its own
    (a new run id on every row); returns the rows written. A failure or a kill leaves
    `target` as it was."""
    fmt = file_format(target)
    run_id = new_run_id()
    with atomic_path(target) as temporary:
        rows = write_scores_to((f.assign(run_id=run_id) for f in chunks), temporary, fmt)
    return rows


def new_run_id() -> str:
    """A run's id: unique, and sortable by when the run started."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:12]}"


def read_scores(
    path: Path, columns: list[str] | None = None, fmt: str | None = None
) -> Iterator[pd.DataFrame]:
    """A scores file (.parquet or .csv, by extension unless `fmt` says) in batches of
    `READ_BATCH_ROWS`, typed as written."""
    wanted = columns or list(OUTPUT_COLUMNS)
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
    if not is_scores_file(path):  # e.g. a training set that --out's folder also holds
        log.warning("previous scores %s has no lead_id and tier columns; no comparison", path)
        return None
    try:
        parts = list(read_scores(path, ["lead_id", "tier"]))
    except Exception as error:  # a foreign or damaged file must not stop the run
        log.warning("previous scores %s unreadable (%s); no comparison", path, error)
        return None
    return pd.concat(parts, ignore_index=True) if parts else None


def is_scores_file(path: Path) -> bool:
    """Whether the file has a scores file's lead_id and tier columns (its header or schema
    only is read); False for anything unreadable."""
    try:
        if file_format(path) == "parquet":
            names = set(pq.read_schema(path).names)
        else:
            names = set(pd.read_csv(path, nrows=0).columns)
    except Exception:  # not a table, damaged, or another format: not a scores file
        return False
    return {"lead_id", "tier"} <= names


def previous_run(out: Path, previous: Path | None = None) -> Path | None:
    """The scores file of the run before this one: `previous` when given (it must exist),
    else `out` itself when a run left it there, else the newest file beside `out` with the
    same extension whose name sorts before `out`'s (dated names such as 2026-07-01.parquet sort
    by date), so that a nightly job writing one file per night compares with last night's. A
    file beside `out` counts as a run's when the run's `<stem>.monitor.json` is beside it or
    it has the scores' columns: a training set in the same folder is not a previous run."""
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
        if path.is_file()
        and path.name < out.name
        and not path.name.startswith(".")
        and (monitor_path(path).is_file() or is_scores_file(path))
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
        "run_id": sa.Text(),
    }


#: A plain SQL name; leadscore quotes it itself, so a mixed-case name keeps its case.
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: PostgreSQL keeps this many bytes of a name and silently cuts the rest.
MAX_NAME_BYTES = 63
#: The session's temporary table the rows are staged in.
STAGE = "leadscore_stage"


def split_table(name: str) -> tuple[str | None, str]:
    """(schema, table) of `table` or `schema.table`; ContractError for a name that is quoted,
    not plain, or longer than PostgreSQL keeps."""
    parts = name.split(".")
    if len(parts) > 2 or not all(parts):
        raise ContractError(f"--table {name!r}: write table or schema.table")
    for part in parts:
        if any(quote in part for quote in "\"'`[]"):
            raise ContractError(
                f"--table {name!r}: write the names without quotes; leadscore quotes them "
                "itself (a mixed-case name keeps its case)"
            )
        if not _PLAIN_NAME.match(part):
            raise ContractError(
                f"--table {name!r}: {part!r} is not a plain name (letters, digits and _, "
                "not starting with a digit)"
            )
        if len(part.encode()) > MAX_NAME_BYTES:
            raise ContractError(
                f"--table {name!r}: {part!r} is {len(part.encode())} characters; PostgreSQL "
                f"keeps {MAX_NAME_BYTES} and would silently cut it"
            )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def check_sql_target(url: str, table: str) -> None:
    """Before any work: the table name is plain, the URL opens a supported database, and the
    schema exists. ContractError naming what is wrong (the URL without its password)."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    schema, _ = split_table(table)
    shown = shown_url(url)
    try:
        engine = sa.create_engine(url, **_engine_options(url))
    except Exception as error:
        raise ContractError(f"--to-sql {shown}: not a usable database URL ({error})") from None
    try:
        with engine.connect() as connection:
            dialect = connection.dialect.name
            if dialect not in ("postgresql", "sqlite"):
                raise ContractError(f"--to-sql: {dialect} is not supported (postgresql, sqlite)")
            if schema is not None and schema not in sa.inspect(connection).get_schema_names():
                raise ContractError(f"--table {table}: schema {schema!r} does not exist at {shown}")
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ContractError(f"--to-sql {shown}: cannot connect: {cause}") from None
    finally:
        engine.dispose()


def table_run(url: str, table: str) -> tuple[str | None, int]:
    """(the run id, rows) `table` holds now; rows -1 when it does not exist or has no run id
    column (it holds no run that published with one)."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    schema, name = split_table(table)
    engine = sa.create_engine(url, **_engine_options(url))
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            if not inspector.has_table(name, schema=schema):
                return None, -1
            if "run_id" not in {c["name"] for c in inspector.get_columns(name, schema=schema)}:
                return None, -1
            target = sa.table(name, sa.column("run_id"), schema=schema)
            rows = connection.execute(sa.select(sa.func.count()).select_from(target)).scalar()
            run = connection.execute(sa.select(target.c.run_id).limit(1)).scalar()
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise OutputError(f"table {table} at {shown_url(url)}: cannot be read: {cause}") from None
    finally:
        engine.dispose()
    return (None if run is None else str(run)), int(rows or 0)


def _copy_postgres(connection: Any, stage: str, frame: pd.DataFrame) -> None:
    """COPY a frame into the staging table (psycopg 3)."""
    buffer = io.StringIO()
    frame.loc[:, list(OUTPUT_COLUMNS)].to_csv(
        buffer, index=False, header=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z"
    )
    raw = connection.connection.driver_connection
    columns = ", ".join(OUTPUT_COLUMNS)
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

    schema, name = split_table(table)
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
            _add_run_id(connection, target)
            previous = pd.DataFrame(
                connection.execute(sa.select(target.c.lead_id, target.c.tier)).all(),
                columns=["lead_id", "tier"],
            )
            quote = connection.dialect.identifier_preparer.quote
            qualified = (f"{quote(schema)}." if schema else "") + quote(name)
            stage = quote(STAGE)
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {stage}"))
            connection.execute(
                sa.text(f"CREATE TEMPORARY TABLE {stage} AS SELECT * FROM {qualified} WHERE 1 = 0")
            )
            for frame in batches:
                if dialect == "postgresql":
                    _copy_postgres(connection, stage, frame)
                else:
                    _insert_rows(connection, stage, frame)
            columns = ", ".join(OUTPUT_COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in OUTPUT_COLUMNS if c != "lead_id")
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


def _add_run_id(connection: Any, target: Any) -> None:
    """A table made before run ids gets the column, in the upsert's transaction."""
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    names = {c["name"] for c in inspector.get_columns(target.name, schema=target.schema)}
    if "run_id" not in names:
        quote = connection.dialect.identifier_preparer.quote
        qualified = (f"{quote(target.schema)}." if target.schema else "") + quote(target.name)
        connection.execute(sa.text(f"ALTER TABLE {qualified} ADD COLUMN run_id TEXT"))


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"application_name": "leadscore predict", "connect_timeout": 10}}
    return {}


def _insert_rows(connection: Any, stage: str, frame: pd.DataFrame) -> None:
    import sqlalchemy as sa

    records = frame.loc[:, list(OUTPUT_COLUMNS)].astype(object).where(frame.notna(), None)
    for name in _TIMES:
        records[name] = [None if v is None else pd.Timestamp(v).isoformat() for v in records[name]]
    placeholders = ", ".join(f":{c}" for c in OUTPUT_COLUMNS)
    connection.execute(
        sa.text(f"INSERT INTO {stage} ({', '.join(OUTPUT_COLUMNS)}) VALUES ({placeholders})"),
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
    run_id: str = ""

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
        lines.append(
            f"wrote {self.out}"
            + (f" and {self.monitor}" if self.monitor else "")
            + (f" (run {self.run_id})" if self.run_id else "")
        )
        if self.table:
            lines.append(f"upserted {self.rows:,} rows into {self.table} (one transaction)")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


@contextmanager
def _run_lock(target: Path) -> Iterator[None]:
    """One run per output file at a time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another leadscore predict is writing {target}") from None
        yield


def settle_interrupted(out: Path, to_sql: tuple[str, str] | None = None) -> str | None:
    """Settle a run killed while publishing `out` (under the run lock): its outputs are
    finished or undone as its SQL commit says, then stray temporary files are removed.
    Returns what was done, or None. `leadscore predict` does this before every run."""
    with _run_lock(out):
        return _settle(out, to_sql)


def _settle(out: Path, to_sql: tuple[str, str] | None) -> str | None:
    def looked_up(table: str) -> tuple[str | None, int] | None:
        if to_sql is None or table != to_sql[1]:
            return None
        return table_run(*to_sql)

    try:
        done = settle(out, looked_up)
    except PublishError as error:
        raise OutputError(str(error)) from None
    remove_strays(out.parent, [out.name, monitor_path(out).name, publish_journal_path(out).name])
    if done is not None:
        log.warning("%s: %s", out, done)
    return done


def _disk_error(error: OSError, path: Path, out: Path) -> OutputError:
    """A write that failed (a full disk, a quota, an I/O error), said plainly."""
    code = errno.errorcode.get(error.errno or 0, "")
    cause = error.strerror or str(error)
    return OutputError(
        f"cannot write {path}: {cause}{f' ({code})' if code else ''}; nothing was published: "
        f"{out}, its monitoring record and the table are as they were"
    )


def _record_text(record: Mapping[str, Any]) -> str:
    import json

    if record.get("format") != RECORD_FORMAT:
        raise OutputError(f"not a {RECORD_FORMAT} record")
    return json.dumps(to_jsonable(record), indent=2, sort_keys=True, allow_nan=False) + "\n"


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
    """What a batch job does after scoring, whichever engine scored: publish `out`, the
    monitoring record beside it (when the model has a reference) and the SQL table (if asked)
    as one run (`serving.publish`), and compare the tiers with the previous run (the
    table's, else the file's).

    `scores` yields score frames (`COLUMNS`), each with the monitoring counts of its rows (in
    the model's reference bins; None when there is none); they are consumed under the lock,
    so a lazy iterator scores while the file is written. Every row gets the run's id.
    """
    reference = model.reference
    monitor: dict[str, Any] | None = None
    kept: list[pd.DataFrame] = []
    run_id = new_run_id()
    fmt = file_format(out)

    def frames() -> Iterator[pd.DataFrame]:
        nonlocal monitor
        for frame, counts in scores:
            kept.append(frame[["lead_id", "tier"]])
            if reference is not None and counts is not None:
                monitor = dict(counts) if monitor is None else merge_counts(monitor, counts)
            yield frame.assign(run_id=run_id)

    previous_table: list[pd.DataFrame] = []
    record_file = monitor_path(out)
    with _run_lock(out):
        settled = _settle(out, to_sql)
        before = previous_run(out, previous)
        previous_scores = None if before is None else read_previous(before)
        scores_temp = temporary_beside(out)
        record_temp = temporary_beside(record_file) if reference is not None else None
        writing = out
        try:
            written = write_scores_to(frames(), scores_temp, fmt)
            moves = [(scores_temp.name, out.name)]
            if record_temp is not None and reference is not None:
                writing = record_file
                record = monitor_record(
                    monitor if monitor is not None else empty_counts(reference),
                    reference,
                    model_name=model.name,
                    model_version=model.version,
                    as_of=as_of,
                    scored_at=scored_at,
                    run_id=run_id,
                )
                record_temp.write_text(_record_text(record), encoding="utf-8")
                make_durable(record_temp)
                moves.append((record_temp.name, record_file.name))
            journal = Journal(
                run_id,
                tuple(moves),
                table=None if to_sql is None else to_sql[1],
                database=None if to_sql is None else shown_url(to_sql[0]),
                rows=written,
            )

            def upsert() -> None:
                # the table is upserted from the finished temporary file: its commit is the
                # run's; if the database fails, neither the table nor the files change
                assert to_sql is not None
                batches = read_scores(scores_temp, fmt=fmt)
                previous_table.append(upsert_sql(to_sql[0], to_sql[1], batches))

            writing = publish_journal_path(out)
            commit(out, journal, upsert if to_sql is not None else None)
        except OSError as error:
            if isinstance(error, BlockingIOError):
                raise
            raise _disk_error(error, writing, out) from None
        finally:
            if not publish_journal_path(out).exists():
                scores_temp.unlink(missing_ok=True)
                if record_temp is not None:
                    record_temp.unlink(missing_ok=True)
    current = (
        pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=["lead_id", "tier"])
    )
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
        monitor=record_file if reference is not None else None,
        table=table,
        model=f"{model.name} version {model.version}",
        as_of=as_of,
        notes=notes + (() if settled is None else (f"a previous run was interrupted: {settled}",)),
        run_id=run_id,
    )


def reading_config(model_config: Config, settings: Config) -> Config:
    """The config a snapshot is read with for a model: the model's mapping and custom fields,
    the settings' source and `features.workers` (how this machine reads, not how the model
    was trained)."""
    features = model_config.features.model_copy(update={"workers": settings.features.workers})
    return model_config.model_copy(update={"source": settings.source, "features": features})


def read_snapshot_for(model_config: Config, settings: Config) -> Snapshot:
    """Read the settings' source with the model's mapping and custom fields."""
    return read_snapshot(reading_config(model_config, settings))


#: Sections of a config that no reader uses (where the model is, how it is served).
NOT_READ = ("mlflow", "serve", "monitor")


def same_reading(a: Config, b: Config) -> bool:
    """Whether two configs read a snapshot alike: equal but for the sections no reader uses."""
    blank = Config()
    cleared = {name: getattr(blank, name) for name in NOT_READ}
    return a.model_copy(update=cleared) == b.model_copy(update=cleared)


def load_and_read(
    settings: Config, load: Callable[[], LoadedModel]
) -> tuple[LoadedModel, Snapshot]:
    """The model (`load()`) and the settings' snapshot read as that model was trained.

    A model is usually scored with the config it was trained with, so the snapshot is read
    with the settings' own reading on another thread while the model loads (MLflow's import
    and the model's files: seconds before any reading could start otherwise). The read is
    kept when the model's reading is the same (`same_reading`), and done again with the
    model's otherwise. A model that cannot be loaded fails at once; the read, on a daemon
    thread, is then left behind.
    """
    guess = reading_config(settings, settings)
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            outcome["snapshot"] = read_snapshot(guess)
        except BaseException as error:  # raised by the caller if this reading is the model's
            outcome["error"] = error

    reader = threading.Thread(target=read, name="leadscore-read-snapshot", daemon=True)
    reader.start()
    model = load()
    reading = reading_config(model.config, settings)
    reader.join()
    if not same_reading(reading, guess):
        outcome.clear()  # the guessed read is dropped before the model's own
        return model, read_snapshot(reading)
    if "error" in outcome:
        raise outcome["error"]
    return model, outcome["snapshot"]


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
    workers: int | None = None,
    scored_at: pd.Timestamp | None = None,
    previous: Path | None = None,
) -> PredictSummary:
    """Score every open MQL of the snapshot as of `as_of` and publish the scores
    (`publish_scores`: the file, the monitoring record, the SQL table, the tier changes
    against `previous_run`).

    `workers` chunks are scored at once (`score_chunks`); `scored_at` defaults to now.
    """
    check_writable(out)
    previous_run(out, previous)  # a missing --previous fails before any work
    if to_sql is not None:
        check_sql_target(*to_sql)
    rows = open_rows(snapshot, as_of, horizon_days)
    scored_at = (pd.Timestamp.now(tz="UTC") if scored_at is None else scored_at).floor("ms")
    reference = model.reference
    if reference is None:
        log.warning(
            "model %s version %s has no reference profile: no monitoring record",
            model.name,
            model.version,
        )

    def scores() -> Iterator[tuple[pd.DataFrame, dict[str, Any] | None]]:
        for chunk in score_chunks(
            snapshot,
            rows,
            model,
            reasons,
            progress,
            chunk_leads=chunk_leads,
            scored_at=scored_at,
            workers=workers,
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
    # a flat export's features do not depend on time: nothing goes stale after its export
    late = None if snapshot.flat else after_snapshot_note(snapshot.as_of, as_of)
    return publish_scores(
        scores(),
        model,
        as_of,
        out,
        scored_at=scored_at,
        to_sql=to_sql,
        notes=tuple(note for note in (late, stale) if note is not None),
        previous=previous,
    )
