"""Connector tables for a preset: a folder of CSV/Parquet files named after the tables, or a
database by SQLAlchemy URL and schema.

Connectors differ in how they spell the same column (`created_date`, `CreatedDate`,
`property_hs_v_2_date...`) and the same table (`lead`, `Lead.csv`, `campaign_member`,
`CampaignMember.csv`), so tables and columns are matched on a key that ignores case and every
character but letters and digits. A preset asks for the columns it needs by their Fivetran
names and gets them under those names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import ContractError
from features.parallel import ordered_map
from features.reader.arrow_frame import arrow_frame

Result = TypeVar("Result")

_TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")
#: Rows per frame when an event table is read in batches (the reader's EVENT_BATCH_ROWS).
BATCH_ROWS = 2_000_000
#: The Data Export's empty lookup id: read as missing.
EMPTY_LOOKUP = "000000000000000AAA"


def name_key(name: str) -> str:
    """The matching key of a table or column name: letters and digits, case-folded."""
    return re.sub(r"[^0-9a-z]", "", str(name).casefold())


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _TABLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass
class ConnectorTables:
    """The tables of one connector, read on demand (files or database)."""

    path: Path | None = None
    url: str | None = None
    schema: str | None = None
    encoding: str = "utf-8"
    _files: dict[str, Path] = field(default_factory=dict)
    _db_tables: dict[str, str] = field(default_factory=dict)
    _engine: Any = None

    def __post_init__(self) -> None:
        if self.url:
            import sqlalchemy as sa

            from features.reader import shown_url

            try:
                self._engine = sa.create_engine(self.url)
                names = sa.inspect(self._engine).get_table_names(schema=self.schema)
            except Exception as error:
                raise ContractError(
                    f"cannot open the database {shown_url(self.url)}: {error}"
                ) from None
            self._db_tables = {name_key(n): n for n in names}
            return
        folder = self.path or Path("data/snapshot")
        if not folder.is_dir():
            raise ContractError(f"snapshot folder not found: {folder}")
        for item in sorted(folder.iterdir()):
            if item.is_file() and item.name.endswith(_TABLE_SUFFIXES) and item.stem != "truth":
                self._files.setdefault(name_key(_stem(item)), item)

    @property
    def where(self) -> str:
        if self.url:
            from features.reader import shown_url

            return shown_url(self.url) + (f" schema {self.schema}" if self.schema else "")
        return str(self.path)

    def has(self, table: str) -> bool:
        return name_key(table) in (self._db_tables if self.url else self._files)

    def label(self, table: str) -> str:
        """The table's name as it is found (file path or schema.table), for messages."""
        key = name_key(table)
        if self.url:
            found = self._db_tables.get(key, table)
            return f"{self.schema}.{found}" if self.schema else found
        return str(self._files.get(key, table))

    def read(
        self,
        table: str,
        columns: Sequence[str],
        optional: Sequence[str] = (),
        dictionary: Sequence[str] = (),
    ) -> pd.DataFrame:
        """The table's `columns` (required) and `optional` columns (when present), named as
        asked; raises `ContractError` naming the table and the missing columns.

        Text columns named in `dictionary` come from a Parquet file as categoricals, decoded
        from the file's own dictionary: an event table's ids and subjects repeat over millions
        of rows, and a categorical is hashed and looked up once per distinct value."""
        key, found = self._resolve(table, columns, optional)
        encoded = [found[c] for c in dictionary if c in found]
        frame = self._load(key, list(dict.fromkeys(found.values())), encoded)
        return _as_asked(frame, found)

    def batches(
        self,
        table: str,
        columns: Sequence[str],
        optional: Sequence[str] = (),
        dictionary: Sequence[str] = (),
        rows: int = BATCH_ROWS,
    ) -> Iterator[pd.DataFrame]:
        """The table as `read` gives it, in frames of at most `rows` rows from a Parquet file
        (so that an event table of 50M rows is never whole in memory), whole otherwise."""
        for read in self._batch_readers(table, columns, optional, dictionary, rows, threads=True):
            yield read()

    def map_batches(
        self,
        table: str,
        columns: Sequence[str],
        work: Callable[[pd.DataFrame], Result],
        optional: Sequence[str] = (),
        dictionary: Sequence[str] = (),
        workers: int = 1,
    ) -> Iterator[Result]:
        """`work` of each frame `batches` gives, in order, the frames read and worked on by up
        to `workers` threads side by side (`features.parallel`): Parquet decoding and the
        numpy and Arrow work of an adapter's batch release the GIL, as the contract reader's
        decoding of an export's row groups does."""

        def run(read: Callable[[], pd.DataFrame]) -> Result:
            return work(read())

        readers = self._batch_readers(
            table, columns, optional, dictionary, BATCH_ROWS, threads=workers <= 1
        )
        yield from ordered_map(run, readers, workers)

    def _batch_readers(
        self,
        table: str,
        columns: Sequence[str],
        optional: Sequence[str],
        dictionary: Sequence[str],
        rows: int,
        threads: bool,
    ) -> Iterator[Callable[[], pd.DataFrame]]:
        """A function per batch of the table that reads it (`batches`): a run of a Parquet
        file's row groups (`batch_runs`) each, so that batches can be read side by side;
        decoded on Arrow's threads when `threads`, else on the caller's."""
        key, found = self._resolve(table, columns, optional)
        path = self._files.get(key) if not self.url else None
        if path is None or path.suffix not in (".parquet", ".pq"):
            yield partial(self.read, table, columns, optional, dictionary)
            return
        real = list(dict.fromkeys(found.values()))
        text = _text_columns(path, [found[c] for c in dictionary if c in found])
        runs = batch_runs(pq.ParquetFile(path).metadata, rows)
        if runs is None:  # a row group larger than a batch: streamed
            parquet = pq.ParquetFile(path, read_dictionary=text)
            for batch in parquet.iter_batches(batch_size=rows, columns=real):
                yield partial(_as_asked, arrow_frame(batch), found)
            return
        for run in runs:
            yield partial(_read_row_groups, path, run, real, text, found, threads)

    def _resolve(
        self, table: str, columns: Sequence[str], optional: Sequence[str]
    ) -> tuple[str, dict[str, str]]:
        """The table's key and the real name of each asked column that is there."""
        key = name_key(table)
        if not self.has(table):
            known = sorted(self._db_tables.values()) if self.url else sorted(self._files)
            raise ContractError(
                f"table {table!r} not found in {self.where} (tables: {', '.join(known[:20])})"
            )
        present = self._columns(key)
        by_key = {name_key(c): c for c in present}
        wanted = {c: by_key.get(name_key(c)) for c in [*columns, *optional]}
        missing = [c for c in columns if wanted[c] is None]
        if missing:
            raise ContractError(
                f"{self.label(table)}: required column(s) {', '.join(missing)} not found "
                f"(matched ignoring case and underscores; columns: {', '.join(present[:20])})"
            )
        return key, {asked: real for asked, real in wanted.items() if real is not None}

    def _columns(self, key: str) -> list[str]:
        if self.url:
            import sqlalchemy as sa

            cols = sa.inspect(self._engine).get_columns(self._db_tables[key], schema=self.schema)
            return [str(c["name"]) for c in cols]
        path = self._files[key]
        if path.suffix in (".parquet", ".pq"):
            return list(pq.read_schema(path).names)
        sep = "\t" if path.suffix == ".tsv" else ","
        header = pd.read_csv(path, sep=sep, nrows=0, encoding=self.encoding)
        return [str(c) for c in header.columns]

    def _load(self, key: str, columns: list[str], dictionary: Sequence[str] = ()) -> pd.DataFrame:
        if self.url:
            import sqlalchemy as sa

            meta = sa.Table(
                self._db_tables[key], sa.MetaData(), schema=self.schema, autoload_with=self._engine
            )
            with self._engine.connect() as conn:
                return pd.read_sql(sa.select(*[meta.c[c] for c in columns]), conn)
        path = self._files[key]
        if path.suffix in (".parquet", ".pq"):
            return _read_parquet(path, columns, dictionary)
        sep = "\t" if path.suffix == ".tsv" else ","
        frame = pd.read_csv(
            path,
            sep=sep,
            usecols=columns,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=self.encoding,
        )
        return frame.replace({EMPTY_LOOKUP: None})

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _as_asked(frame: pd.DataFrame, found: dict[str, str]) -> pd.DataFrame:
    """The loaded columns under the names they were asked by."""
    out = pd.DataFrame({asked: frame[real] for asked, real in found.items()})
    return out.reset_index(drop=True)


def batch_runs(metadata: Any, max_rows: int) -> list[list[int]] | None:
    """Consecutive row groups in runs of at least a quarter of `max_rows` rows where they are
    smaller, never more than `max_rows` (None when a single row group is larger).

    A row group is read on its own when it is that large: its text columns' dictionaries are
    its own, so a batch's ids are looked up once per distinct id of one row group, not of the
    union of several, and the batches of a table of a few row groups run side by side."""
    from features.reader import row_group_runs

    return row_group_runs(metadata, max_rows, full_rows=max_rows // 4)


def _read_row_groups(
    path: Path,
    run: list[int],
    columns: list[str],
    text: list[str],
    found: dict[str, str],
    threads: bool,
) -> pd.DataFrame:
    """Row groups `run` of a Parquet file as `ConnectorTables.read` gives them, with a reader
    of its own (runs are read side by side); decoded on Arrow's threads when `threads`."""
    parquet = pq.ParquetFile(path, read_dictionary=text)
    table = parquet.read_row_groups(run, columns=columns, use_threads=threads)
    return _as_asked(arrow_frame(table), found)


def _text_columns(path: Path, columns: Sequence[str]) -> list[str]:
    """Those of `columns` that the Parquet file stores as text (the ones it can hand over
    dictionary-encoded)."""
    schema = pq.read_schema(path)
    kinds = (pa.types.is_string, pa.types.is_large_string)
    return [c for c in dict.fromkeys(columns) if any(k(schema.field(c).type) for k in kinds)]


def _read_parquet(path: Path, columns: list[str], dictionary: Sequence[str]) -> pd.DataFrame:
    """A Parquet file's `columns`, the text ones among `dictionary` as categoricals."""
    if not dictionary:
        return pd.read_parquet(path, columns=columns)
    text = _text_columns(path, dictionary)
    return arrow_frame(pq.read_table(path, columns=columns, read_dictionary=text))


def times(values: pd.Series, timezone: str = "UTC") -> pd.Series:
    """UTC timestamps from a typed column or from text; zone-less text is in `timezone`."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize(timezone).dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    parsed = pd.to_datetime(values.astype("string"), format="ISO8601", utc=False, errors="coerce")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    localized = parsed.dt.tz_localize(timezone).dt.tz_convert("UTC")
    return localized.astype("datetime64[us, UTC]")


def flags(values: pd.Series) -> pd.Series:
    """Booleans as connectors and exports write them (true/false, 1/0, t/f); missing: False."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.fillna(False).astype(bool)
    folded = values.astype("string").str.strip().str.casefold()
    return folded.isin(["true", "1", "t", "yes", "y"]).fillna(False).astype(bool)


def ids(values: pd.Series) -> pd.Series:
    """Record ids as text (`123`, not `123.0`), missing as <NA>."""
    if pd.api.types.is_float_dtype(values.dtype):
        values = values.astype("Int64")
    out = values.astype("string").str.strip()
    return out.mask(out.isin(["", EMPTY_LOOKUP]))
