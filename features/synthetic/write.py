"""Writing a snapshot: leads, events and truth streamed to Parquet or CSV, moved into place
atomically, with snapshot.json."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.synthetic.arrays import decode
from features.synthetic.snapshot import (
    EVENTS_SCHEMA,
    LEADS_SCHEMA,
    TRUTH_SCHEMA,
    SyntheticSnapshot,
    empty_snapshot,
)


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [(f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type) for f in schema]
    )


def _iso_strings(column: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> pa.Array:
    """ISO 8601 text: mostly 'Z', some '+00:00', ~10% without a zone (naive means UTC)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    text = pc.strftime(array, format="%Y-%m-%dT%H:%M:%S", locale="C")
    r = rng.random(len(array))
    suffix = decode(
        np.where(r < 0.1, 2, np.where(r < 0.35, 1, 0)).astype(np.int64), ("Z", "+00:00", "")
    )
    return pc.binary_join_element_wise(text, suffix, "")


def _csv_table(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    columns = [
        _iso_strings(table.column(f.name), rng)
        if pa.types.is_timestamp(f.type)
        else table.column(f.name)
        for f in table.schema
    ]
    return pa.table(columns, schema=_csv_schema(table.schema))


def _writer_schemas() -> dict[str, pa.Schema]:
    """Arrow schemas with pandas metadata, so pandas reads back the same dtypes (e.g. Int64)."""
    empty = empty_snapshot(pd.Timestamp(0, tz="UTC"))
    return {
        key: pa.Table.from_pandas(frame, schema=schema, preserve_index=False).schema
        for key, frame, schema in (
            ("leads", empty.leads, LEADS_SCHEMA),
            ("events", empty.events, EVENTS_SCHEMA),
            ("truth", empty.truth, TRUTH_SCHEMA),
        )
    }


def write_snapshot(
    chunks: Iterable[SyntheticSnapshot],
    out_dir: Path,
    *,
    fmt: Literal["parquet", "csv"] = "parquet",
) -> dict[str, int]:
    """Stream chunks into leads.<fmt>, events.<fmt>, truth.parquet and snapshot.json.

    Every file is written under a temporary name in out_dir and moved into place only when all
    chunks are written; on failure the temporaries are removed and earlier files stay as they were.

    Args:
        chunks: Chunks from `generate` (or one whole `SyntheticSnapshot`).
        out_dir: Folder to write into; created if missing.
        fmt: Format of leads and events; truth is always Parquet.

    Returns:
        Row counts: {"leads": ..., "events": ..., "truth": ...}.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    token = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    names = {
        "leads": f"leads.{fmt}",
        "events": f"events.{fmt}",
        "truth": "truth.parquet",
        "meta": "snapshot.json",
    }
    temps = {key: out_dir / f".{name}{token}" for key, name in names.items()}
    schemas = _writer_schemas()
    writers: dict[str, Any] = {}
    counts = {"leads": 0, "events": 0, "truth": 0}
    try:
        for key, schema in schemas.items():
            if fmt == "csv" and key != "truth":
                writers[key] = pacsv.CSVWriter(str(temps[key]), _csv_schema(schema))
            else:
                writers[key] = pq.ParquetWriter(str(temps[key]), schema, compression="zstd")
        params: Mapping[str, Any] = {}
        as_of: pd.Timestamp | None = None
        for i, chunk in enumerate(chunks):
            params = params or chunk.params
            as_of = chunk.as_of
            rng = np.random.default_rng([20_260_630, i])
            for key, frame in (
                ("leads", chunk.leads),
                ("events", chunk.events),
                ("truth", chunk.truth),
            ):
                table = pa.Table.from_pandas(frame, schema=schemas[key], preserve_index=False)
                if fmt == "csv" and key != "truth":
                    table = _csv_table(table, rng)
                writers[key].write_table(table)
                counts[key] += table.num_rows
        for writer in writers.values():
            writer.close()
        meta = {
            **dict(params),
            "as_of": None if as_of is None else as_of.isoformat(),
            "format": fmt,
            "files": {k: names[k] for k in schemas},
            "row_counts": counts,
        }
        meta["n_leads"] = counts["leads"]
        temps["meta"].write_text(
            json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        for key, name in names.items():
            temps[key].replace(out_dir / name)
    except BaseException:
        for writer in writers.values():
            with contextlib.suppress(Exception):  # cleanup must not mask the original error
                writer.close()
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    return counts
