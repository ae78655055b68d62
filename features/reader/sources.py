"""Finding and opening a snapshot's tables: a folder of CSV/Parquet files or SQL tables.

The edge of the reader: the leads as one frame (with `source.joins` applied, see
`features.joins`), the events as a stream of chunks of `EVENT_BATCH_ROWS` rows. A CSV file's
delimiter and encoding come from the config or are detected (`features.dialect`); files that
pandas would read silently wrong are refused (`features.reader.checks`).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import pandas as pd

from common.config import Config, SourceConfig
from features.contract import ContractError
from features.dialect import resolve_dialect, with_dialect
from features.joins import join_tables
from features.parallel import ordered_map, worker_count
from features.reader.arrow_frame import arrow_frame
from features.reader.checks import check_parquet_types, declared_time, one_file, unterminated_quote
from features.reader.columns import event_source_columns
from features.reader.events import EventChunk

#: Rows of events read at once: the chunks the events are encoded in, side by side.
EVENT_BATCH_ROWS = 2_000_000
#: The extensions a table's file may have, tried in this order.
TABLE_EXTENSIONS = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")


def find_table_file(folder: Path, name: str) -> Path:
    """The one file of the table `name` in `folder`: `name` itself when it has an extension,
    else `name` with one of `TABLE_EXTENSIONS`; refuses none, or several (CSV and Parquet)."""
    direct = folder / name
    if direct.suffix and direct.is_file():
        return direct
    tried = [folder / f"{name}{ext}" for ext in TABLE_EXTENSIONS]
    found = [candidate for candidate in tried if candidate.is_file()]
    one_file(found, name, folder)
    if found:
        return found[0]
    shown = ", ".join(p.name for p in tried)
    raise ContractError(f"no '{name}' file in {folder} (looked for {shown})")


def _text_encoding(source: SourceConfig) -> str:
    """UTF-8 reads as utf-8-sig: a byte-order mark (as Excel writes) is not part of the header."""
    return (
        "utf-8-sig"
        if source.encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        else (source.encoding)
    )


def _check_header(path: Path, sep: str, source: SourceConfig) -> None:
    """Refuse a header that names one column twice (pandas would rename the second `x.1`)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=_text_encoding(source), newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
    except (UnicodeDecodeError, csv.Error, OSError, EOFError):
        return  # pandas reports these with the file name
    names = [name.strip() for name in header]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ContractError(f"{path}: the header names these columns more than once: {twice}")


def _read_csv(path: Path, source: SourceConfig, chunksize: int | None = None) -> Any:
    """A CSV file as text cells (nothing guessed: no NA values, no types), whole or in chunks."""
    source = with_dialect(source, resolve_dialect(path, source))
    sep = "\t" if path.suffix == ".tsv" else source.delimiter
    _check_header(path, sep, source)
    try:
        return pd.read_csv(
            path,
            sep=sep,
            dtype="str",
            keep_default_na=False,
            na_filter=False,
            encoding=_text_encoding(source),
            chunksize=chunksize,
            skipinitialspace=False,
        )
    except pd.errors.EmptyDataError:
        raise ContractError(f"{path}: the file is empty (no header row)") from None
    except UnicodeDecodeError as error:
        raise ContractError(
            f"{path}: not valid {source.encoding} text at byte {error.start}; "
            "set source.encoding (e.g. latin-1)"
        ) from None
    except pd.errors.ParserError as error:
        raise _csv_error(path, sep, source, error) from None


def _csv_error(path: Path, sep: str, source: SourceConfig, error: Exception) -> ContractError:
    """pandas' parse error, or where the quote that swallowed the rest of the file opens."""
    if "EOF inside string" in str(error):
        where = unterminated_quote(path, sep, _text_encoding(source))
        if where is not None:
            return ContractError(
                f"{path}: {where}: a quoted value opens here and is never closed (a missing "
                '"), so the rest of the file would be read into it'
            )
    return ContractError(f"{path}: not a readable CSV file: {error}")


def _read_table_file(path: Path, source: SourceConfig) -> pd.DataFrame:
    """A whole table file (Parquet, or CSV as text); unreadable files are named."""
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except Exception as error:  # pyarrow raises several unrelated types
            raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
        check_parquet_types(schema, path)
        try:
            frame = pd.read_parquet(path)
        except Exception as error:
            raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
        return frame
    frame = _read_csv(path, source)
    assert isinstance(frame, pd.DataFrame)
    return frame


def _csv_chunks(path: Path, source: SourceConfig) -> Iterator[pd.DataFrame]:
    """A CSV events file in chunks of `EVENT_BATCH_ROWS` rows."""
    reader = _read_csv(path, source, chunksize=EVENT_BATCH_ROWS)
    try:
        yield from reader
    except UnicodeDecodeError as error:
        raise ContractError(
            f"{path}: not valid {source.encoding} text at byte {error.start}; set source.encoding"
        ) from None
    except pd.errors.ParserError as error:
        sep = "\t" if path.suffix == ".tsv" else source.delimiter
        raise _csv_error(path, sep, source, error) from None


def _parquet_chunks(path: Path, wanted: Sequence[str], workers: int = 1) -> Iterator[pd.DataFrame]:
    """A Parquet events file's `wanted` columns in runs of row groups of at most
    `EVENT_BATCH_ROWS` rows, decoded by `workers` side by side."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as error:
        raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
    check_parquet_types(schema, path, wanted)
    names = schema.names
    try:
        # ids and types as dictionaries: each distinct string is read and hashed once
        dictionaries = [c for c in names if c in wanted]
        file = pq.ParquetFile(path, read_dictionary=dictionaries)
    except Exception as error:
        raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
    columns = [c for c in file.schema_arrow.names if c in wanted] or None
    groups = row_group_runs(file.metadata, EVENT_BATCH_ROWS)
    if groups is None:  # a row group too large to hold at once: streamed in batches
        for batch in file.iter_batches(batch_size=EVENT_BATCH_ROWS, columns=columns):
            yield arrow_frame(batch)
        return

    def read(run: list[int]) -> pd.DataFrame:
        # a reader per run: runs are decoded side by side (features.parallel)
        own = pq.ParquetFile(path, read_dictionary=dictionaries)
        return arrow_frame(own.read_row_groups(run, columns=columns, use_threads=workers <= 1))

    yield from ordered_map(read, groups, workers)


def row_group_runs(
    metadata: Any, max_rows: int, full_rows: int | None = None
) -> list[list[int]] | None:
    """Consecutive row groups in runs of at most `max_rows` rows (the chunks read at once), or
    None when a single row group is larger than that. With `full_rows`, a run that holds that
    many rows takes no more row groups."""
    runs: list[list[int]] = []
    rows = 0
    full = max_rows if full_rows is None else full_rows
    for index in range(metadata.num_row_groups):
        size = metadata.row_group(index).num_rows
        if size > max_rows:
            return None
        if not runs or rows >= full or rows + size > max_rows:
            runs.append([])
            rows = 0
        runs[-1].append(index)
        rows += size
    return runs


def _file_source(path: Path, source: SourceConfig, notes: list[str]) -> SourceConfig:
    """The source with this CSV file's delimiter and encoding (detected where auto), noted."""
    if path.suffix in (".parquet", ".pq"):
        return source
    dialect = resolve_dialect(path, source)
    note = dialect.note(path)
    if note:
        notes.append(note)
    return with_dialect(source, dialect)


@overload
def read_tables(
    config: Config, notes: list[str] | None = None, coded: Literal[False] = False
) -> tuple[pd.DataFrame, Iterator[pd.DataFrame] | None, tuple[str, str]]: ...
@overload
def read_tables(
    config: Config, notes: list[str] | None, coded: bool
) -> tuple[pd.DataFrame, Iterator[EventChunk] | None, tuple[str, str]]: ...
def read_tables(
    config: Config, notes: list[str] | None = None, coded: bool = False
) -> tuple[pd.DataFrame, Iterator[EventChunk] | None, tuple[str, str]]:
    """Open the configured source: the leads frame (with `source.joins` applied), event chunks
    (None if flat) and their names. What was detected or joined is appended to `notes`.

    With `coded`, a CRM preset hands its events over as `CodedEvents` (against the rows of the
    leads frame returned); every other source, and every caller without it, gets frames."""
    notes = [] if notes is None else notes
    source = config.source
    if source.preset:  # a CRM's connector tables or export (features/presets)
        from features.presets import read_preset

        return read_preset(config, notes, coded)
    if source.url:
        return _read_sql_tables(config, notes)
    folder = source.path or Path("data/snapshot")
    if not folder.is_dir():
        raise ContractError(f"snapshot folder not found: {folder}")
    leads_path = find_table_file(folder, source.leads)
    leads = _read_table_file(leads_path, _file_source(leads_path, source, notes))

    def joined(name: str) -> tuple[pd.DataFrame, str]:
        path = find_table_file(folder, name)
        return _read_table_file(path, _file_source(path, source, notes)), str(path)

    leads, found = join_tables(leads, source.joins, joined, str(leads_path))
    notes += found
    if source.events is None:
        return leads, None, (str(leads_path), "")
    events_path = find_table_file(folder, source.events)
    if events_path.suffix in (".parquet", ".pq"):
        workers = worker_count(config.features.workers)
        chunks = _parquet_chunks(events_path, event_source_columns(config), workers)
    else:
        chunks = _csv_chunks(events_path, _file_source(events_path, source, notes))
    return leads, chunks, (str(leads_path), str(events_path))


def shown_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _read_sql_tables(
    config: Config, notes: list[str] | None = None
) -> tuple[pd.DataFrame, Iterator[pd.DataFrame] | None, tuple[str, str]]:
    """The leads (joins applied) and a stream of event chunks from SQL tables, as `read_tables`."""
    import sqlalchemy as sa

    source = config.source
    assert source.url is not None
    try:
        engine = sa.create_engine(source.url)
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names(schema=source.db_schema))
    except Exception as error:
        raise ContractError(f"cannot open the database {shown_url(source.url)}: {error}") from None

    def named(table: str) -> str:
        return f"{source.db_schema}.{table}" if source.db_schema else table

    wanted = [source.leads] + ([source.events] if source.events else [])
    wanted += [join.table for join in source.joins]
    for table in wanted:
        if table not in tables:
            raise ContractError(f"table {named(table)!r} not found (tables: {sorted(tables)[:12]})")

    def select(table: str, columns: Sequence[str] | None = None) -> Any:
        meta = sa.Table(table, sa.MetaData(), schema=source.db_schema, autoload_with=engine)
        cols = [meta.c[c] for c in columns if c in meta.c] if columns else list(meta.c)
        return sa.select(*cols)

    with engine.connect() as conn:
        leads = pd.read_sql(select(source.leads), conn)
        leads, found = join_tables(
            leads,
            source.joins,
            lambda table: (pd.read_sql(select(table), conn), named(table)),
            named(source.leads),
        )
    if notes is not None:
        notes += found
    if source.events is None:
        return leads, None, (named(source.leads), "")
    events_table = source.events

    def chunks() -> Iterator[pd.DataFrame]:
        with engine.connect() as conn:
            query = select(events_table, event_source_columns(config))
            yield from pd.read_sql(query, conn, chunksize=EVENT_BATCH_ROWS)
        engine.dispose()

    return leads, chunks(), (named(source.leads), named(events_table))


def with_declared_as_of(config: Config) -> Config:
    """The config with the as-of time a folder declares in its `snapshot.json`, if any.

    The config's own `as_of` wins; a database source declares none. Every reader of a whole
    snapshot (pandas or Spark) starts here, so both see the same as-of time.
    """
    folder = config.source.path
    if config.as_of is not None or config.source.url or folder is None:
        return config
    manifest = folder / "snapshot.json"
    if not manifest.is_file():
        return config
    try:
        loaded = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as error:  # also bytes that are not UTF-8
        raise ContractError(f"{manifest}: not a readable JSON object: {error}") from None
    if not isinstance(loaded, dict):
        raise ContractError(f"{manifest}: must hold a JSON object, not {type(loaded).__name__}")
    declared = loaded.get("as_of")
    if declared is None:
        return config
    stamp = declared_time(declared, str(manifest))
    return config.model_copy(update={"as_of": stamp.to_pydatetime()})
