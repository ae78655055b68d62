"""Shared pieces of the CRM layouts: id forms, typed columns, and the atomic table writer.

A layout turns each chunk of the synthetic CRM (contract frames) into the tables a connector
would land in a warehouse. Chunks hold whole accounts, so every per-lead table can be written
chunk by chunk; tables shared by all chunks (campaigns, forms) are written once at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import FREE_MAIL_DOMAINS
from features.synthetic import SyntheticSnapshot

Format = Literal["parquet", "csv"]

#: Every event type the generator writes that a form submission carries, with the form's name.
FORM_NAMES: Final = {
    "form_submission": "Contact Us",
    "demo_request": "Request a Demo",
    "trial_signup": "Free Trial Signup",
    "content_download": "Gated Content Download",
    "webinar_registration": "Webinar Registration",
}

#: The CRM's own score (HubSpot score, Pardot score): points per event, summed at export time.
SCORE_POINTS: Final = {
    "email_open": 1, "email_click": 3, "email_reply": 8, "email_unsubscribe": -10,
    "email_bounce": -5, "page_view": 1, "pricing_page_view": 5, "content_download": 5,
    "webinar_registration": 3, "webinar_attendance": 8, "form_submission": 10,
    "demo_request": 20, "trial_signup": 20, "ad_click": 1, "social_engagement": 1,
}  # fmt: skip


class Layout(Protocol):
    """A CRM layout: the tables of each chunk, then the tables shared by all chunks."""

    def chunk_tables(self, chunk: SyntheticSnapshot) -> dict[str, pa.Table]: ...

    def final_tables(self) -> dict[str, pa.Table]: ...


def lead_numbers(lead_ids: pd.Series) -> pd.Series:
    """The contract's lead number: `L0000123` -> 123 (the CRM ids are built from it)."""
    return lead_ids.str[1:].astype("int64")


_CHECKSUM_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id_checksum(id15: str) -> str:
    """The 3-character suffix that makes a 15-character Salesforce id case-safe (18 chars)."""
    out = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if ch.isupper())
        out += _CHECKSUM_CHARS[bits]
    return out


def padded_ids(prefix: str, numbers: pd.Series | np.ndarray) -> pd.Series:
    """Salesforce ids as the API and Fivetran write them (18 characters): the key prefix, the
    number zero-padded to 15 characters, and the case checksum (`00Q000000000123EAA`)."""
    values = pd.Series(np.asarray(numbers, dtype=np.int64))
    id15 = prefix + values.astype(str).str.zfill(15 - len(prefix))
    suffix = id_checksum(prefix.ljust(15, "0"))  # the digits add no bits: one suffix per prefix
    return (id15 + suffix).astype("string")


def stable_number(text: str, digits: int = 9) -> int:
    """A number fixed by `text` alone, so a campaign or form has one id in every chunk."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (10**digits)


def text(values: Any) -> pd.Series:
    """A nullable string column (never object dtype, so an all-null chunk keeps its type)."""
    return pd.Series(values, dtype="string")


def utc(values: Any) -> pd.Series:
    """A UTC timestamp column in microseconds, indexed 0..n-1 (so frames align by position).

    Pass a Series rather than its `.to_numpy()`: a zoned column becomes slow Python objects.
    """
    series = values.reset_index(drop=True) if isinstance(values, pd.Series) else values
    return pd.Series(pd.to_datetime(series, utc=True)).astype("datetime64[us, UTC]")


def to_table(frame: pd.DataFrame, dates: Iterable[str] = ()) -> pa.Table:
    """Arrow table of `frame`; columns named in `dates` become DATE (no time, as the CRM has)."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata(None)
    for i, column_field in enumerate(table.schema):
        if pa.types.is_large_string(column_field.type):
            table = table.set_column(i, column_field.name, table.column(i).cast(pa.string()))
    for name in dates:
        i = table.schema.get_field_index(name)
        column = table.column(i).cast(pa.timestamp("us", tz="UTC"))
        table = table.set_column(i, name, column.cast(pa.date32()))
    return table


class TableFiles:
    """Writes tables chunk by chunk under temporary names and moves them into place at the end.

    Nothing is replaced unless every table was written: on failure the temporaries are removed
    and earlier files stay as they were.
    """

    def __init__(self, out_dir: Path, fmt: Format) -> None:
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.token = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.writers: dict[str, Any] = {}
        self.schemas: dict[str, pa.Schema] = {}
        self.temps: dict[str, Path] = {}
        self.counts: dict[str, int] = {}

    def file_name(self, table: str) -> str:
        return f"{table}.{'parquet' if table == 'truth' else self.fmt}"

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.writers:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            temp = self.out_dir / f".{self.file_name(name)}{self.token}"
            self.temps[name] = temp
            self.schemas[name] = table.schema
            self.counts[name] = 0
            if self.file_name(name).endswith(".csv"):
                self.writers[name] = pacsv.CSVWriter(str(temp), table.schema)
            else:
                self.writers[name] = pq.ParquetWriter(str(temp), table.schema, compression="zstd")
        self.writers[name].write_table(table.cast(self.schemas[name]))
        self.counts[name] += table.num_rows

    def commit(self, meta: Mapping[str, Any]) -> None:
        for writer in self.writers.values():
            writer.close()
        meta_temp = self.out_dir / f".snapshot.json{self.token}"
        self.temps["meta"] = meta_temp
        files = {name: self.file_name(name) for name in self.writers}
        full = {**meta, "format": self.fmt, "files": files, "row_counts": self.counts}
        meta_temp.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for name, temp in self.temps.items():
            temp.replace(self.out_dir / files.get(name, "snapshot.json"))

    def abort(self) -> None:
        for writer in self.writers.values():
            with contextlib.suppress(Exception):  # cleanup must not mask the original error
                writer.close()
        for temp in self.temps.values():
            temp.unlink(missing_ok=True)


def crm_score(events: pd.DataFrame, lead_ids: pd.Index) -> pd.Series:
    """The CRM's own lead score as of the export: points of every event so far, 0 to 100."""
    points = events["event_type"].map(SCORE_POINTS).fillna(0)
    total = points.groupby(events["lead_id"]).sum().reindex(lead_ids, fill_value=0)
    return total.clip(0, 100).astype("int64")


def account_profile(leads: pd.DataFrame) -> pd.DataFrame:
    """Per account number: first creation, company domain and name, firmographics of its leads.

    The name comes from the first company (non-free) mail domain, else `Company <number>`.
    """
    domain = leads["email"].str.strip().str.lower().str.split("@").str[-1]
    work = leads.assign(
        domain=domain.where(~domain.isin(FREE_MAIL_DOMAINS)),
        account_number=lead_numbers(leads["account_id"]),
    )
    first = work.groupby("account_number", sort=True).agg(
        created=("created_at", "min"),
        domain=("domain", "first"),
        industry=("industry", "first"),
        country=("country", "first"),
        size=("company_size", "first"),
    )
    stem = first["domain"].str.split(".").str[0].str.replace("-", " ").str.title()
    return first.assign(name=stem.where(stem.notna(), "Company " + first.index.astype(str)))
