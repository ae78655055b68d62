"""Batch scoring on Spark: the pandas batch job's own functions, run per group of whole accounts.

`leadscore predict --engine spark [--master URL]` scores the same open MQLs as the pandas
engine and gets the same rows, to the bit: every group is turned into a `Snapshot` by the
reader's own functions (`prepare_leads`, `encode_events`, `sort_events`) and scored by
`serving.batch.score_chunks` (the same features, booster, calibrator, tiers, points, reasons).

How the data reach the groups:

1. The driver reads the lead id and account columns (a Parquet file's with pandas, as the
   reader reads them; CSV files, SQL tables and declared joins through the project's own
   reader, `read_tables`, so that their parsing is exactly the pandas engine's) and cleans
   them by the reader's own `clean_text`: the lead count, the duplicate ids across the whole
   table (as the reader finds them) and the `LeadMap` (a lead's number is its position there;
   its bucket, a stable hash of its account, or of the lead without one, modulo the buckets,
   a multiple of the cores), which it broadcasts with each lead row's shuffle key.
2. The leads are cut into buckets where they are read (`lead_cells`): a Parquet file by Python
   tasks, one row group each, read with pyarrow as the reader reads it, each bucket's rows of
   a batch in one Arrow IPC cell (their types travel with them); leads the driver read, on the
   driver, pickled. No lead row reaches the JVM as a row.
3. The events are encoded where they are read, by the reader's own checks and `encode_events`:
   a Parquet file by Python tasks, one row group each, read with pyarrow as the reader reads
   it; CSV and SQL events on the driver. Each event becomes three numbers (lead number, time
   in ms, type code); events of unknown leads are dropped and counted there. Each task packs
   its events per bucket, each array in one binary cell (`pack_events`), and its counts
   (events read, of unknown leads, unknown type names) in one report row: no event string
   reaches the JVM, no join, and the JVM shuffles a few large cells, not a row per event.
   (Spark reading the events, joining them on the lead id and moving a row per event took
   more than half of the job.)
4. Lead cells, event cells and reports are rows of one frame (`_shuffle_schema`), shuffled
   once by bucket (`shuffle_keys`, found on the driver: bucket b to partition b), not sorted:
   a `mapInPandas` over each bucket splits it back into raw leads and encoded events
   (`split_partition`) and hands them to `score_bucket`, which builds the snapshot of those
   whole accounts (`bucket_snapshot`: the reader's `prepare_leads` and `sort_events`) and
   scores its open MQLs. Buckets hold tens of thousands of leads: few Python calls.

Steps 1 to 4 up to the per-bucket call are `snapshot_buckets`, which training sets on Spark
(`serving.spark_features`) share: the same reading and shipping, another function per bucket.

The model reaches the executors as plain text (booster, calibrator, spec, tiers, rules,
config, reference), broadcast once and parsed once per Python worker: nothing is pickled.
The driver collects the scores (Arrow), orders them as the pandas engine does (by account and
lead) and writes them with the same atomic writer.

Differences, all on bad input only: a contract error is found per bucket (per row group for
the events of a Parquet file), so only the first failing task's problems are listed and the
example rows of a lead problem are numbered within its bucket.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from common.config import Config
from features.contract import ContractError
from features.reader import (
    EVENT_BATCH_ROWS,
    EventLog,
    Problem,
    ReadReport,
    Snapshot,
    boolean_size_problems,
    check_as_of_after_data,
    check_event_log,
    check_lead_timeline,
    check_parquet_types,
    clean_text,
    drop_excluded,
    encode_events,
    event_source_columns,
    find_table_file,
    long_cell_problems,
    prepare_leads,
    raise_problems,
    read_tables,
    rename_to_contract,
    snapshot_as_of,
    snapshot_from_frames,
    sort_events,
    swallowed_line_problems,
    with_declared_as_of,
)
from features.reader.arrow_frame import arrow_frame
from features.reader.eventlog import small_int_order
from features.rows import covered_weeks
from serving.batch import (
    COLUMNS,
    as_utc,
    empty_scores,
    open_mql_rows,
    score_chunks,
    stale_rows,
    staleness_note,
)
from serving.model_store import LoadedModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from serving.batch_io import PredictSummary

Progress = Callable[[int, int], None]

DEFAULT_MASTER = "local[2]"
#: Leads per bucket (one pandas call each); each bucket's leads and events sit in memory.
LEADS_PER_BUCKET = 50_000

_BUCKET, _LEAD_CELL, _REPORT, _KIND, _MAP_REPORT = (
    "_ls_bucket",
    "_ls_lead_cell",
    "_ls_report",
    "_ls_kind",
    "_ls_map_report",
)
#: Encoded events as the shuffle carries them, packed per task and bucket (one binary cell
#: each): lead numbers, times (ms), type codes.
_EVENT_FIELDS = ("_ls_event_lead", "_ls_event_at", "_ls_event_type")
_EVENT_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype("int32"), np.dtype("int64"), np.dtype("int8"))
#: `_KIND` of a shuffle row: leads read by a task (an Arrow IPC stream), a packet of events,
#: a read report, leads the driver read (a pickled frame: its values as the reader read them)
_LEADS, _EVENTS, _READ, _LEAD_FRAME = 0, 1, 2, 3
#: Lead rows per batch a task reads from a Parquet leads file (one cell per bucket each).
LEAD_BATCH_ROWS = 100_000
_PANDAS_WARNING = "PySpark does not yet fully support pandas"
_LOG4J = """status = error
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


# --------------------------------------------------------------------------- the session


def _quiet_log4j() -> Path:
    path = Path(tempfile.gettempdir()) / "leadscore-spark-log4j2.properties"
    if not path.is_file() or path.read_text(encoding="utf-8") != _LOG4J:
        path.write_text(_LOG4J, encoding="utf-8")
    return path


#: Local mode's JVM compiles with C1 only: a job of minutes spends more CPU on C2's
#: compilation than C2's faster code saves it; and it collects garbage with the throughput
#: (parallel) collector, which costs less CPU than G1's concurrent work on a machine whose
#: cores the Python workers need (see bench/README.md, features_spark.py).
LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseParallelGC"


def _driver_java_options(local: bool) -> str:
    """The driver JVM's options: quiet logs; in local mode (where the driver runs the tasks)
    `LOCAL_JAVA_OPTIONS`. A cluster's executors keep their own."""
    options = f"-Dlog4j2.configurationFile={_quiet_log4j()}"
    return f"{options} {LOCAL_JAVA_OPTIONS}" if local else options


def session_running() -> bool:
    """Whether this process already has an active Spark session (pyspark or not installed)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return False
    return SparkSession.getActiveSession() is not None


def quiet_pyspark() -> None:
    """Silence PySpark's warning that it does not fully support pandas 3 (it works here, and
    the tests compare every value with the pandas engine's)."""
    warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)


def spark_session(
    master: str = DEFAULT_MASTER, *, app_name: str = "leadscore predict", memory: str = "4g"
) -> SparkSession:
    """A Spark session for the batch job: local mode by default, any cluster by URL.

    Arrow on, timestamps in UTC, logs at ERROR, no UI or console bars. In local mode the
    workers run this Python (`PYSPARK_PYTHON` wins if set) and bind to 127.0.0.1, the JVM
    takes `LOCAL_JAVA_OPTIONS`, and `memory` is the driver's (which is also the executor's);
    on a cluster the cluster's settings apply and the workers need leadscore installed.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ContractError(
            "--engine spark needs pyspark: pip install 'leadscore[spark]' (and Java 17+)"
        ) from None
    quiet_pyspark()
    local = master.startswith("local")
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    quiet = f"ignore:{_PANDAS_WARNING}:FutureWarning"
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # fewer, larger Arrow batches to and from the Python workers (a group is whole anyway)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", _driver_java_options(local))
        .config("spark.executorEnv.PYTHONWARNINGS", quiet)
    )
    if local:
        # the driver collects every score to write them (1M rows with reasons: about 0.7 GB)
        # the shuffle stays on this machine's disk (its page cache): compressing it, or
        # hashing every row to compare a retried task's output (the tasks read files and are
        # deterministic; local mode does not retry them), would spend CPU that the Python
        # workers need
        builder = (
            builder.config("spark.driver.memory", memory)
            .config("spark.driver.maxResultSize", "0")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.shuffle.compress", "false")
            .config("spark.shuffle.spill.compress", "false")
            .config("spark.sql.shuffle.orderIndependentChecksum.enabled", "false")
        )
    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = quiet  # the local workers inherit the JVM's environment
    try:
        spark = builder.getOrCreate()
    finally:
        if previous is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = previous
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# --------------------------------------------------------------------------- the model as text


def model_texts(model: LoadedModel) -> dict[str, str]:
    """Everything a worker needs to rebuild the model, as plain text (no pickle)."""
    from training.rules import rules_to_yaml

    scorer = model.scorer
    facts = {
        "name": model.name,
        "version": model.version,
        "alias": model.alias,
        "uri": model.uri,
        "trained_at": model.trained_at.isoformat() if model.trained_at else None,
        "test_metrics": model.test_metrics,
    }
    texts = {
        "booster": scorer.booster.model_to_string(),
        "calibrator": scorer.calibrator.to_json(),
        "spec": scorer.spec.to_json(),
        "tiers": scorer.tiers.to_json(),
        "rules": rules_to_yaml(model.rules),
        "config": model.config.model_dump_json(),
        "facts": json.dumps(facts),
    }
    reference = getattr(model, "reference", None)
    if reference is not None:
        texts["reference"] = json.dumps(reference)
    if scorer.hazard is not None:
        texts["hazard"] = scorer.hazard.to_json()
    if scorer.bend is not None:
        texts["bend"] = scorer.bend.to_json()
    return texts


def texts_digest(texts: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(texts):
        digest.update(key.encode() + b"\0" + texts[key].encode() + b"\0")
    return digest.hexdigest()


def model_from_texts(texts: Mapping[str, str]) -> LoadedModel:
    """The model `model_texts` describes."""
    import lightgbm as lgb

    from training.bend import Bend
    from training.calibrate import Calibrator
    from training.hazard import HazardSpec
    from training.rules import rules_from_yaml
    from training.scorer import ModelSpec, Scorer
    from training.tiers import Tiers

    facts = json.loads(texts["facts"])
    extra: dict[str, Any] = {}
    if "reference" in texts:
        extra["reference"] = json.loads(texts["reference"])
    return LoadedModel(
        scorer=Scorer(
            booster=lgb.Booster(model_str=texts["booster"]),
            calibrator=Calibrator.from_json(texts["calibrator"]),
            spec=ModelSpec.from_json(texts["spec"]),
            tiers=Tiers.from_json(texts["tiers"]),
            hazard=HazardSpec.from_json(texts["hazard"]) if "hazard" in texts else None,
            bend=Bend.from_json(texts["bend"]) if "bend" in texts else None,
        ),
        rules=rules_from_yaml(texts["rules"], f"{facts['uri']} rules"),
        config=Config.model_validate_json(texts["config"]),
        name=facts["name"],
        version=facts["version"],
        alias=facts["alias"],
        uri=facts["uri"],
        trained_at=datetime.fromisoformat(facts["trained_at"]) if facts["trained_at"] else None,
        test_metrics=facts["test_metrics"],
        **extra,
    )


_MODELS: dict[str, LoadedModel] = {}
_CONFIGS: dict[str, Config] = {}
_LOCK = threading.Lock()


def cached_model(digest: str, texts: Mapping[str, str]) -> LoadedModel:
    """The model, parsed once per worker process (Python workers are reused across tasks)."""
    with _LOCK:
        model = _MODELS.get(digest)
        if model is None:
            model = _MODELS[digest] = model_from_texts(texts)
        return model


def cached_config(text: str) -> Config:
    """The settings of a bucket job, parsed once per worker process."""
    with _LOCK:
        config = _CONFIGS.get(text)
        if config is None:
            config = _CONFIGS[text] = Config.model_validate_json(text)
        return config


# --------------------------------------------------------------------------- one bucket


def arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python objects (None for missing) for PySpark's Arrow writer, which
    cannot take pandas 3's Arrow-backed `str` arrays yet (it gets a ChunkedArray)."""
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    if not text:
        return frame
    return frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), None) for c in text})


@dataclass(frozen=True)
class BucketJob:
    """What every bucket is scored with: plain values, cheap to ship to the executors."""

    read_config: str  # Config JSON: the model's mapping and custom fields, the settings' source
    model_digest: str
    as_of: str
    horizon_days: int
    reasons: int
    chunk_leads: int
    scored_at: str
    lead_columns: tuple[str, ...]
    names: tuple[str, str] = ("leads", "events")
    monitor: bool = False


def bucket_report(scores: pd.DataFrame, report: Mapping[str, Any]) -> pd.DataFrame:
    """The bucket's scores followed by one row carrying its read report (`_REPORT`, JSON)."""
    row = pd.DataFrame(
        {c: pd.Series([None], dtype=scores[c].dtype) for c in scores.columns}
        | {_REPORT: pd.Series([json.dumps(report)], dtype=object)}
    )
    body = scores.assign(**{_REPORT: pd.Series(None, index=scores.index, dtype=object)})
    return pd.concat([body, row], ignore_index=True)


@dataclass(frozen=True)
class LeadMap:
    """Every lead's cleaned id (a lead's number is its position) and group key: broadcast, so
    that each event finds its lead's number and group where it is read."""

    keys: pd.Index
    bucket: np.ndarray  # the bucket (0..n-1) of each lead
    shuffle_keys: tuple[int, ...]  # the `_BUCKET` (shuffle key) of each bucket

    def report_group(self) -> int:
        """The group the read reports go to: one that holds leads, so it is scored."""
        return self.shuffle_keys[int(self.bucket[0]) if len(self.bucket) else 0]


@dataclass(frozen=True)
class EncodedEvents:
    """A bucket's events: lead numbers (positions in `LeadMap.keys`), ms, type codes."""

    lead: np.ndarray
    at_ms: np.ndarray
    kind: np.ndarray


def encode_chunk(
    raw: pd.DataFrame, leads: LeadMap, config: Config, table: str, offset: int
) -> tuple[EncodedEvents, dict[str, Any]]:
    """One chunk of raw events (export names, rows `offset`... of the table) encoded by the
    reader's own checks and `encode_events`; events of unknown leads are dropped. Returns
    the events and the chunk's read report (see `merge_read_reports`)."""
    raise_problems(long_cell_problems(raw, table, event_source_columns(config), offset))
    frame, _ = drop_excluded(raw, config.exclude)
    frame, problems = rename_to_contract(frame, config.mapping.events, table, "events")
    raise_problems(problems)
    part = encode_events(frame, leads.keys, config.mapping, table, offset)
    report = {"read": len(raw), "unknown_lead": part.unknown_lead, "types": part.unknown_types}
    return EncodedEvents(part.lead, part.at_ms, part.kind), report


def pack_events(parts: Sequence[EncodedEvents], leads: LeadMap) -> pd.DataFrame:
    """Encoded events as rows of the shuffle: one per bucket they belong to, each array of the
    bucket's events in one binary cell. The JVM moves a few large cells, not a row per event."""
    lead = np.concatenate([p.lead for p in parts]) if parts else np.empty(0, np.int32)
    at_ms = np.concatenate([p.at_ms for p in parts]) if parts else np.empty(0, np.int64)
    kind = np.concatenate([p.kind for p in parts]) if parts else np.empty(0, np.int8)
    bucket = leads.bucket[lead]
    order = small_int_order(bucket)
    present, starts = np.unique(bucket[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    cells: list[list[bytes]] = [[], [], []]
    for i in range(len(present)):
        rows = order[bounds[i] : bounds[i + 1]]
        for cell, values, dtype in zip(cells, (lead, at_ms, kind), _EVENT_DTYPES, strict=True):
            cell.append(values[rows].astype(dtype, copy=False).tobytes())
    keys = [leads.shuffle_keys[b] for b in present.tolist()]
    return _shuffle_rows(keys, _EVENTS, dict(zip(_EVENT_FIELDS, cells, strict=True)))


def _shuffle_rows(
    keys: Sequence[int], kind: int, cells: Mapping[str, Sequence[Any]]
) -> pd.DataFrame:
    """Rows of the shuffle (`_shuffle_schema`) to the buckets of shuffle keys `keys`, all of
    one `_KIND`, with the given cells; the other columns null."""
    n = len(keys)
    return pd.DataFrame(
        {_BUCKET: np.asarray(keys, np.int32), _KIND: np.full(n, kind, np.int8)}
        | {
            name: pd.Series(list(cells.get(name, [None] * n)), dtype=object)
            for name in (*_EVENT_FIELDS, _MAP_REPORT, _LEAD_CELL)
        }
    )


def table_cell(table: Any) -> bytes:
    """An Arrow table as one IPC stream: its types (and pandas metadata) travel with it."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def table_of_cell(cell: bytes) -> Any:
    """The Arrow table `table_cell` wrote."""
    import pyarrow as pa

    with pa.ipc.open_stream(pa.py_buffer(cell)) as reader:
        return reader.read_all()


def table_file(table: Any, folder: str) -> str:
    """An Arrow table written to a new IPC file in `folder` (a name no other task takes)."""
    import uuid

    import pyarrow as pa

    path = str(Path(folder) / f"{uuid.uuid4().hex}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def table_of_file(path: str) -> Any:
    """The Arrow table `table_file` wrote, memory-mapped: read without a copy."""
    import pyarrow as pa

    with pa.ipc.open_file(pa.memory_map(path)) as reader:
        return reader.read_all()


def lead_cells(part: Any, shuffle: np.ndarray) -> pd.DataFrame:
    """Lead rows as rows of the shuffle, one per bucket they go to (`shuffle`: each row's
    shuffle key), each holding that bucket's rows in their order: an Arrow table's as an IPC
    stream (`_LEADS`), a frame's the driver read pickled (`_LEAD_FRAME`: whatever Python
    values its columns hold, as the reader read them)."""
    import pyarrow as pa

    order = small_int_order(shuffle)
    present, starts = np.unique(shuffle[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    cells = []
    for i in range(len(present)):
        rows = order[bounds[i] : bounds[i + 1]]
        if isinstance(part, pd.DataFrame):
            cells.append(pickle.dumps(part.take(rows), protocol=pickle.HIGHEST_PROTOCOL))
        else:
            cells.append(table_cell(part.take(pa.array(rows))))
    kind = _LEAD_FRAME if isinstance(part, pd.DataFrame) else _LEADS
    return _shuffle_rows(present.tolist(), kind, {_LEAD_CELL: cells})


def leads_of_cells(cells: Sequence[bytes], kinds: np.ndarray, header: pd.DataFrame) -> pd.DataFrame:
    """A bucket's raw leads from its lead cells (`lead_cells`): a Parquet file's rows as
    `pd.read_parquet` gives them (one Arrow table, then pandas), the driver's frames as they
    were; `header` (no rows) when the bucket got none."""
    import pyarrow as pa

    frames = [pickle.loads(c) for c, k in zip(cells, kinds, strict=True) if k == _LEAD_FRAME]
    arrow = [table_of_cell(c) for c, k in zip(cells, kinds, strict=True) if k == _LEADS]
    if arrow:
        frames.append(pa.concat_tables(arrow).to_pandas())
    if not frames:
        return header
    whole = pd.concat(frames) if len(frames) > 1 else frames[0]
    return whole.reset_index(drop=True)


def merge_read_reports(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Events read, of unknown leads, and of unknown types (by name), summed."""
    total: dict[str, Any] = {"read": 0, "unknown_lead": 0, "types": {}}
    for report in reports:
        total["read"] += report["read"]
        total["unknown_lead"] += report["unknown_lead"]
        for name, count in report["types"].items():
            total["types"][name] = total["types"].get(name, 0) + count
    return total


def read_report_row(report: Mapping[str, Any], group: int) -> pd.DataFrame:
    """A task's read report as one row of the shuffle (`_KIND` 2, no events)."""
    return _shuffle_rows([group], _READ, {_MAP_REPORT: [json.dumps(report)]})


def bucket_snapshot(
    leads: pd.DataFrame,
    events: EncodedEvents,
    keys: pd.Index,
    config: Config,
    table: str,
) -> Snapshot:
    """The snapshot of a bucket's whole accounts: its raw leads cleaned by the reader's
    `prepare_leads`, its encoded events numbered by those leads and sorted (duplicates
    dropped) by the reader's `sort_events`, as `snapshot_from_frames` builds a snapshot."""
    clean, report = prepare_leads(leads, config, table)
    number = keys.get_indexer(pd.Index(clean["lead_id"].to_numpy()))
    local = np.full(len(keys), -1, dtype=np.int32)
    local[number[number >= 0]] = np.flatnonzero(number >= 0)
    lead = local[events.lead]
    if (lead < 0).any():
        raise RuntimeError("spark engine: an event reached a bucket without its lead")
    log, dropped = sort_events(lead, events.at_ms, events.kind, config.features.chunk_leads)
    report.events_read, report.events_kept, report.events_duplicate = len(lead), len(log), dropped
    as_of = snapshot_as_of(config, clean, log)
    return Snapshot(clean, log, as_of, config.source.flat, config.custom_fields, report)


def checked_bucket_snapshot(
    leads: pd.DataFrame,
    events: EncodedEvents,
    keys: pd.Index,
    config: Config,
    names: tuple[str, str],
) -> Snapshot:
    """`bucket_snapshot` after and before the reader's checks of a whole export, run on this
    bucket's part of it (long cells, the leads' timeline, the event log)."""
    raise_problems(long_cell_problems(leads, names[0]))
    snapshot = bucket_snapshot(leads, events, keys, config, names[0])
    check_lead_timeline(snapshot.leads, config, names[0])
    check_event_log(snapshot.events, snapshot.leads, snapshot.report, config, names)
    return snapshot


def score_bucket(
    job: BucketJob,
    texts: Mapping[str, str],
    keys: pd.Index,
    leads: pd.DataFrame,
    events: EncodedEvents,
    read_reports: Sequence[Mapping[str, Any]] = (),
) -> pd.DataFrame:
    """Score the open MQLs of one bucket of whole accounts (raw leads and their events).

    Pure pandas: the same reader cleaning and the same scoring as the pandas engine. Returns
    the scores (`COLUMNS`) and one report row (see `bucket_report`), which also carries the
    read reports of the event tasks that reached this bucket.
    """
    from common.io import to_jsonable

    read = merge_read_reports(read_reports)
    if len(leads) == 0:  # only read reports (all leads without an id: another bucket raises)
        empty = {"events_kept": 0, "events_duplicate": 0, "monitor": None, "read": read}
        return arrow_safe(bucket_report(empty_scores(), empty))
    model = cached_model(job.model_digest, texts)
    config = cached_config(job.read_config)
    leads = leads.loc[:, list(job.lead_columns)].reset_index(drop=True)
    snapshot = checked_bucket_snapshot(leads, events, keys, config, job.names)
    scores, counts, stale = _snapshot_scores(job, model, snapshot)
    found = snapshot.report
    first = snapshot.leads["created_at"].min()
    report: dict[str, Any] = {
        "first_created_at": None if pd.isna(first) else first.isoformat(),
        "stale": stale,
        "leads": found.leads,
        "events_kept": found.events_kept,
        "events_duplicate": found.events_duplicate,
        "ignored_columns": found.ignored_columns,
        "excluded_columns": found.excluded_columns,
        "monitor": counts,
        "read": read,
    }
    return arrow_safe(bucket_report(scores.reset_index(drop=True), to_jsonable(report)))


def _snapshot_scores(
    job: BucketJob, model: LoadedModel, snapshot: Snapshot
) -> tuple[pd.DataFrame, dict[str, Any] | None, int]:
    """The scores of a bucket's open MQLs, with a reference their monitoring counts, and how
    many are older than any cutoff the model was trained at (`stale_rows`)."""
    rows = open_mql_rows(snapshot.leads, as_utc(job.as_of), job.horizon_days)
    weeks = covered_weeks(model.config.snapshot_policy, model.config.horizon_days)
    stale = stale_rows(snapshot.leads, rows, weeks)
    monitoring: Any = None
    if job.monitor:
        import training.drift as monitoring
    counts: dict[str, Any] | None = None
    parts = []
    for chunk in score_chunks(
        snapshot,
        rows,
        model,
        job.reasons,
        chunk_leads=job.chunk_leads,
        scored_at=as_utc(job.scored_at, "scored_at"),
        workers=1,  # Spark already runs a task per core
    ):
        parts.append(chunk.scores)
        if monitoring is not None:
            found = monitoring.profile_counts(
                chunk.features, chunk.probability, chunk.tier, model.reference
            )
            counts = found if counts is None else monitoring.merge_counts(counts, found)
    return (pd.concat(parts, ignore_index=True) if parts else empty_scores()), counts, stale


# --------------------------------------------------------------------------- Spark plumbing


def _source_column(columns: list[str], renames: Mapping[str, str], contract: str) -> str | None:
    """The export's column that becomes `contract` (names compared stripped, as the reader)."""
    wanted = next((k.strip() for k, v in renames.items() if v == contract), contract)
    return next((c for c in columns if str(c).strip() == wanted), None)


def _is_parquet(path: Path) -> bool:
    return path.suffix in (".parquet", ".pq")


@dataclass(frozen=True)
class EventSource:
    """Where the raw events are: a Parquet file (read by the tasks, one row group each) or
    chunks the driver read (CSV, SQL); `header` has the columns the reader reads, no rows."""

    header: pd.DataFrame
    parquet: Path | None = None
    row_groups: tuple[int, ...] = ()  # rows in each row group of the Parquet file
    chunks: tuple[pd.DataFrame, ...] = ()


@dataclass(frozen=True)
class LeadSource:
    """Where the raw leads are: a Parquet file the tasks read (`parquet`, as the reader reads
    it), or the leads the driver read with the project's reader (`frame`: CSV, SQL, declared
    joins). `header` has the columns the reader reads, no rows."""

    header: pd.DataFrame
    parquet: Path | None = None
    frame: pd.DataFrame | None = None


def snapshot_tables(config: Config) -> tuple[LeadSource, EventSource, tuple[str, str]]:
    """Where the raw leads and events are, and their names for messages.

    Parquet files are read by the tasks with pyarrow, as the reader reads them
    (`parquet_leads`, `parquet_events`); CSV files and SQL tables are read on the driver by the
    project's reader, so that they parse exactly as in the pandas engine.
    """
    source = config.source
    if source.flat or source.events is None:
        raise ContractError("batch scoring needs a timestamped snapshot; this is a flat export")
    if source.url is None:
        folder = source.path or Path("data/snapshot")
        if not folder.is_dir():
            raise ContractError(f"snapshot folder not found: {folder}")
        leads_path = find_table_file(folder, source.leads)
        events_path = find_table_file(folder, source.events)
        # declared joins are applied by the reader on the driver (below)
        if _is_parquet(leads_path) and _is_parquet(events_path) and not source.joins:
            header = _parquet_header(leads_path)
            events = _parquet_source(events_path, event_source_columns(config))
            check_parquet_sizes(leads_path, list(header.columns), config)
            source_leads = LeadSource(header, parquet=leads_path)
            return source_leads, events, (str(leads_path), str(events_path))
    raw_leads, chunks, names = read_tables(config)
    raise_problems(raw_lead_problems(raw_leads, config, names[0]))
    assert chunks is not None
    parts = tuple(chunks)
    header = parts[0].iloc[:0] if parts else pd.DataFrame()
    return LeadSource(raw_leads.iloc[:0], frame=raw_leads), EventSource(header, chunks=parts), names


def _parquet_header(path: Path) -> pd.DataFrame:
    """The columns of a Parquet file as the reader reads it (`pd.read_parquet`), no rows;
    nested columns refused as the reader refuses them."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises several unrelated types
        raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
    check_parquet_types(schema, path)
    return schema.empty_table().to_pandas()


def raw_lead_problems(raw_leads: pd.DataFrame, config: Config, table: str) -> list[Problem]:
    """The reader's whole-export checks of the leads as read that no bucket can run on its
    part: true/false company sizes (their row numbers are the table's) and CSV cells that
    swallowed lines. Long cells are checked per bucket (`checked_bucket_snapshot`)."""
    return boolean_size_problems(raw_leads, config, table) + swallowed_line_problems(
        raw_leads, config, table
    )


def check_parquet_sizes(path: Path, columns: Sequence[str], config: Config) -> None:
    """`raw_lead_problems` of a Parquet leads file that Spark reads: only the company size
    column can fail there (a Parquet file has no swallowed lines), and only when it is stored
    as true/false; that one column is then read as the reader reads it, for its message."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = {v: k for k, v in config.mapping.leads.items()}.get("company_size", "company_size")
    if column not in columns:
        return
    kind = pq.read_schema(path).field(column).type
    if pa.types.is_boolean(kind):
        sizes = pd.read_parquet(path, columns=[column])
        raise_problems(raw_lead_problems(sizes, config, str(path)))


def _parquet_source(path: Path, wanted: Sequence[str]) -> EventSource:
    """A Parquet events file: its row groups and the header the reader sees."""
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several unrelated types
        raise ContractError(f"{path}: not a readable Parquet file: {error}") from None
    schema = file.schema_arrow
    columns = [c for c in schema.names if c in wanted] or schema.names
    meta = file.metadata
    sizes = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    header = schema.empty_table().select(columns).to_pandas()
    return EventSource(header, parquet=path, row_groups=sizes)


def row_group_chunks(path: Path, group: int, wanted: Sequence[str]) -> Iterator[pd.DataFrame]:
    """One row group of a Parquet events file, read as the reader reads the whole file
    (`features.reader.sources`: its columns, ids and types as dictionaries, made categoricals
    by `arrow_frame`)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    file = pq.ParquetFile(path, read_dictionary=[c for c in names if c in wanted])
    columns = [c for c in file.schema_arrow.names if c in wanted] or None
    batches = file.iter_batches(batch_size=EVENT_BATCH_ROWS, row_groups=[group], columns=columns)
    for batch in batches:
        yield arrow_frame(batch)


def _check_columns(
    leads: LeadSource, events: EventSource, config: Config, names: tuple[str, str]
) -> None:
    """The contract's column checks, on the driver, before any work: the reader run on the
    tables' headers (zero rows) raises what the pandas engine raises for them. When it raises,
    the leads' checks run again on the leads as read (an error's path only), so that a
    problem counts the table's rows as the pandas engine counts them."""
    try:
        snapshot_from_frames(leads.header, events.header, config, names)
    except ContractError:
        prepare_leads(lead_columns_read(leads, list(leads.header.columns)), config, names[0])
        raise


def lead_columns_read(leads: LeadSource, columns: Sequence[str]) -> pd.DataFrame:
    """Some of the leads' columns, whole, on the driver, as the reader reads them (a Parquet
    file's with pandas)."""
    if leads.frame is not None:
        return leads.frame.loc[:, list(columns)]
    assert leads.parquet is not None
    return pd.read_parquet(leads.parquet, columns=list(columns))


def lead_keys(leads: LeadSource, config: Config) -> tuple[pd.Series, pd.Series]:
    """Every lead's cleaned id and account (the reader's `clean_text`; NA without one), on
    the driver, from the two columns as the reader reads them (a Parquet file's read with
    pandas, not through Spark)."""
    mapping = config.mapping
    columns = list(leads.header.columns)
    lead_column = _source_column(columns, mapping.leads, "lead_id")
    account_column = _source_column(columns, mapping.leads, "account_id")
    assert lead_column is not None  # _check_columns raised otherwise
    raw = lead_columns_read(leads, [c for c in (lead_column, account_column) if c is not None])
    key = clean_text(raw[lead_column], mapping, "lead_id").reset_index(drop=True)
    account = (
        clean_text(raw[account_column], mapping, "account_id").reset_index(drop=True)
        if account_column is not None
        else pd.Series(pd.NA, index=key.index, dtype="str")
    )
    return key, account


def group_buckets(key: pd.Series, account: pd.Series, n_buckets: int) -> np.ndarray:
    """Each lead's bucket: a hash of its account, of its own id without one (pandas' stable
    `hash_array`, the same in every process), modulo the buckets; 0 without either. Whole
    accounts share a bucket."""
    group = account.where(account.notna(), key)
    known = group.notna().to_numpy()
    bucket = np.zeros(len(group), dtype=np.int64)
    if known.any():
        hashed = pd.util.hash_array(group.to_numpy(dtype=object)[known])
        bucket[known] = (hashed % np.uint64(n_buckets)).astype(np.int64)
    return bucket


def check_duplicates(keys: pd.Series, table: str) -> None:
    """Lead ids that occur twice anywhere in the table (buckets could not see it)."""
    present = keys[keys.notna()]
    twice = present.duplicated(keep=False).to_numpy()
    if twice.any():
        shown = sorted(set(present[twice]))[:3]
        raise_problems(
            [
                Problem(
                    table,
                    "lead_id",
                    "share a lead_id with another row (duplicate ids)",
                    int(twice.sum()),
                    tuple(repr(s) for s in shown),
                )
            ]
        )


def _shuffle_schema() -> Any:
    """The rows of the shuffle: lead cells, encoded events (see `encode_chunk`) and the
    tasks' read reports, each with its bucket's shuffle key."""
    from pyspark.sql import types as T  # noqa: N812

    fields = [T.StructField(_BUCKET, T.IntegerType()), T.StructField(_KIND, T.ByteType())]
    fields += [T.StructField(f, T.BinaryType()) for f in _EVENT_FIELDS]
    fields += [T.StructField(_MAP_REPORT, T.StringType())]
    return T.StructType([*fields, T.StructField(_LEAD_CELL, T.BinaryType())])


def parquet_leads(spark: SparkSession, source: LeadSource, shared: Any) -> DataFrame:
    """A Parquet leads file cut into buckets by the tasks, one row group each, read with
    pyarrow as the reader reads it (`shared`: the broadcast shuffle key of each row, in the
    file's order). The JVM moves a few cells per bucket, not a row per lead."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = source.parquet
    assert path is not None
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    columns = list(source.header.columns)

    def cut(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        shuffle: np.ndarray = shared.value
        for batch in batches:
            for group in batch["id"].tolist():
                offset = offsets[group]
                file = pq.ParquetFile(path)
                for record in file.iter_batches(
                    batch_size=LEAD_BATCH_ROWS, row_groups=[group], columns=columns
                ):
                    table = pa.Table.from_batches([record])
                    yield lead_cells(table, shuffle[offset : offset + table.num_rows])
                    offset += table.num_rows

    tasks = spark.range(0, len(sizes), 1, numPartitions=max(len(sizes), 1))
    return tasks.mapInPandas(cut, _shuffle_schema())


def driver_leads(spark: SparkSession, frame: pd.DataFrame, shuffle: np.ndarray) -> DataFrame:
    """Leads the driver read (CSV, SQL, declared joins) cut into buckets on the driver."""
    parts = [
        lead_cells(frame.iloc[i : i + LEAD_BATCH_ROWS], shuffle[i : i + LEAD_BATCH_ROWS])
        for i in range(0, len(frame), LEAD_BATCH_ROWS)
    ]
    return spark.createDataFrame(pd.concat(parts, ignore_index=True), _shuffle_schema())


def parquet_events(
    spark: SparkSession, source: EventSource, config: Config, table: str, shared: Any
) -> DataFrame:
    """A Parquet events file encoded by the tasks, one row group each (`shared`: the
    broadcast `LeadMap`); each task ends with its read report."""
    path, sizes = source.parquet, source.row_groups
    assert path is not None
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    wanted = event_source_columns(config)

    def encode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        leads: LeadMap = shared.value
        for batch in batches:
            for group in batch["id"].tolist():
                parts, reports, offset = [], [], offsets[group]
                for raw in row_group_chunks(path, group, wanted):
                    encoded, report = encode_chunk(raw, leads, config, table, offset)
                    offset += len(raw)
                    parts.append(encoded)
                    reports.append(report)
                yield pack_events(parts, leads)
                yield read_report_row(merge_read_reports(reports), leads.report_group())

    tasks = spark.range(0, len(sizes), 1, numPartitions=max(len(sizes), 1))
    return tasks.mapInPandas(encode, _shuffle_schema())


def driver_events(
    spark: SparkSession, source: EventSource, config: Config, table: str, leads: LeadMap
) -> DataFrame:
    """Events the driver read (CSV, SQL), encoded on the driver, with their read report."""
    parts, reports, offset = [], [], 0
    for raw in source.chunks:
        encoded, report = encode_chunk(raw, leads, config, table, offset)
        offset += len(raw)
        parts.append(pack_events([encoded], leads))
        reports.append(report)
    parts.append(read_report_row(merge_read_reports(reports), leads.report_group()))
    return spark.createDataFrame(pd.concat(parts, ignore_index=True), _shuffle_schema())


def _unpack(cells: pd.Series, dtype: np.dtype[Any]) -> np.ndarray:
    """The arrays `pack_events` packed into binary cells, end to end."""
    return np.concatenate([np.frombuffer(c, dtype) for c in cells] or [np.empty(0, dtype)])


def split_partition(
    batches: list[pd.DataFrame], header: pd.DataFrame
) -> tuple[pd.DataFrame, EncodedEvents, list[dict[str, Any]]]:
    """A partition's Arrow batches (rows of `_shuffle_schema`) as its raw leads (`header`'s
    columns), its encoded events and the read reports that reached it."""
    frame = pd.concat(batches, ignore_index=True) if len(batches) > 1 else batches[0]
    kind = frame[_KIND].to_numpy()
    lead_rows = (kind == _LEADS) | (kind == _LEAD_FRAME)
    cells = frame.loc[lead_rows, _LEAD_CELL].tolist()
    leads = leads_of_cells(cells, kind[lead_rows], header)
    rows = kind == _EVENTS
    lead, at_ms, code = (
        _unpack(frame.loc[rows, f], dtype)
        for f, dtype in zip(_EVENT_FIELDS, _EVENT_DTYPES, strict=True)
    )
    reports = [json.loads(text) for text in frame.loc[kind == _READ, _MAP_REPORT]]
    return leads, EncodedEvents(lead, at_ms, code), reports


def _output_schema() -> Any:
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

    kinds: dict[str, Any] = {"as_of": TimestampType(), "scored_at": TimestampType()}
    kinds |= {"probability": DoubleType(), "points": DoubleType()}
    return StructType(
        [StructField(c, kinds.get(c, StringType())) for c in COLUMNS]
        + [StructField(_REPORT, StringType())]
    )


def contract_errors_from_workers(error: Exception) -> Exception:
    """A worker's ContractError as a ContractError on the driver (the message, no traceback)."""
    text = str(error)
    marker = "ContractError: "
    if marker not in text:
        return error
    message = text.rsplit(marker, 1)[1]
    for end in ("\n\nJVM stacktrace", "\nJVM stacktrace", "\n\tat "):
        message = message.split(end, 1)[0]
    return ContractError(message.rstrip())


@contextmanager
def worker_errors() -> Iterator[None]:
    """A worker's ContractError raised on the driver as the reader raises it."""
    try:
        yield
    except ContractError:
        raise
    except Exception as error:
        converted = contract_errors_from_workers(error)
        if converted is error:
            raise
        raise converted from None


@contextmanager
def watch_tasks(spark: SparkSession, progress: Progress | None) -> Iterator[None]:
    """Report the running stage's finished tasks to `progress(done, total)` twice a second."""
    if progress is None:
        yield
        return
    tracker = spark.sparkContext.statusTracker()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            found = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            stages = [s for s in found if s is not None]
            if stages:
                done = sum(int(s.numCompletedTasks) for s in stages)
                progress(done, max(sum(int(s.numTasks) for s in stages), 1))

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class SparkScores:
    """The scores (`COLUMNS`, in the pandas engine's order) and what reading found."""

    scores: pd.DataFrame
    leads: int = 0
    events_read: int = 0
    events_kept: int = 0
    events_unknown_lead: int = 0
    events_duplicate: int = 0
    buckets: int = 0
    unknown_event_types: dict[str, int] = field(default_factory=dict)
    monitor: dict[str, Any] | None = None
    stale: int = 0  # open MQLs older than any cutoff the model was trained at

    def lines(self) -> list[str]:
        """The reader's report lines (as the pandas engine prints them), with the groups."""
        lines = ReadReport(
            leads=self.leads,
            events_read=self.events_read,
            events_kept=self.events_kept,
            events_unknown_lead=self.events_unknown_lead,
            events_duplicate=self.events_duplicate,
            unknown_event_types=self.unknown_event_types,
        ).lines()
        lines[0] += f", in {self.buckets} Spark groups of whole accounts"
        return lines


def _restore(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark's frame back in the pandas engine's types and order."""
    scores = frame.loc[:, list(COLUMNS)].copy()
    for name in ("as_of", "scored_at"):
        values = pd.to_datetime(scores[name])
        values = values.dt.tz_localize("UTC") if values.dt.tz is None else values
        scores[name] = values.dt.as_unit("ms")
    for name in COLUMNS:
        if name not in ("as_of", "scored_at", "probability", "points", "account_id"):
            scores[name] = scores[name].to_numpy(dtype=object)
    scores["account_id"] = scores["account_id"].astype("str")
    return scores.sort_values(
        ["account_id", "lead_id"], na_position="last", kind="stable", ignore_index=True
    )


def _model_read(settings: Config, model: LoadedModel) -> Config:
    return model.config.model_copy(update={"source": settings.source})


def scoring_config(settings: Config, model: LoadedModel) -> Config:
    """How a snapshot is read for scoring, as the pandas engine reads it: the model's mapping
    and custom fields, the settings' source, its declared as-of time."""
    return read_config_of(_model_read(settings, model))


def score_on_spark(
    spark: SparkSession,
    settings: Config,
    model: LoadedModel,
    as_of: pd.Timestamp,
    *,
    reasons: int,
    chunk_leads: int,
    scored_at: pd.Timestamp | None = None,
    buckets: int | None = None,
    progress: Progress | None = None,
    keys: SnapshotKeys | None = None,
) -> SparkScores:
    """Score every MQL open at `as_of` on Spark: the pandas engine's rows and values.

    The snapshot is `settings.source` read with the model's mapping and custom fields, as the
    pandas engine reads it (`scoring_config`); `buckets` defaults to one per
    `LEADS_PER_BUCKET` leads (at least two per core); `keys`: the snapshot's keys when the
    caller read them (`keys_beside_session`).
    """
    read_config = scoring_config(settings, model)
    declared = snapshot_as_of(read_config, pd.DataFrame(), EventLog.empty())
    stamp = as_utc(scored_at if scored_at is not None else pd.Timestamp.now(tz="UTC"), "scored_at")
    texts = model_texts(model)
    reference = getattr(model, "reference", None)
    with worker_errors(), snapshot_buckets(spark, read_config, buckets, keys) as found:
        job = BucketJob(
            read_config=read_config.model_dump_json(),
            model_digest=texts_digest(texts),
            as_of=as_utc(as_of).isoformat(),
            horizon_days=model.config.horizon_days,
            reasons=reasons,
            chunk_leads=chunk_leads,
            scored_at=stamp.isoformat(),
            lead_columns=found.lead_columns,
            names=found.names,
            monitor=reference is not None,
        )
        collected = _score_buckets(spark, found, job, texts, progress)
    return _summarize(
        collected,
        found.leads,
        found.buckets,
        found.names,
        monitor=reference is not None,
        declared_as_of=(declared, declared_as_of_origin(_model_read(settings, model))),
    )


def read_config_of(config: Config) -> Config:
    """The config with the as-of time its snapshot folder declares (`snapshot.json`), as the
    reader reads it; the config's own `as_of` wins."""
    return with_declared_as_of(config)


@dataclass(frozen=True)
class SnapshotKeys:
    """What the driver reads of a snapshot before any Spark work: where its tables are and
    their names, and every lead's cleaned id and account (`lead_keys`), ids checked unique."""

    leads: LeadSource
    events: EventSource
    names: tuple[str, str]
    key: pd.Series
    account: pd.Series


def snapshot_keys(config: Config) -> SnapshotKeys:
    """The snapshot's tables found and their columns checked, and its lead keys read, on the
    driver: no Spark needed."""
    leads, events, names = snapshot_tables(config)
    _check_columns(leads, events, config, names)
    key, account = lead_keys(leads, config)
    if len(key) == 0:
        raise ContractError(f"{names[0]}: the table has no rows")
    check_duplicates(key, names[0])
    return SnapshotKeys(leads, events, names, key, account)


@contextmanager
def keys_beside_session(
    config: Config, master: str, app_name: str
) -> Iterator[tuple[SparkSession, Callable[[], SnapshotKeys]]]:
    """A Spark session (`spark_session`) and the snapshot's keys (`snapshot_keys`), read on a
    second thread while the JVM starts: the driver's reading and the JVM's start-up overlap.
    Yields the session and a function that waits for the keys (raising the reader's error).
    The session is stopped on leaving unless this process already ran one (a notebook's)."""
    from concurrent.futures import ThreadPoolExecutor

    quiet_pyspark()  # set before the thread: a `catch_warnings` there keeps it
    ours = not session_running()
    with ThreadPoolExecutor(1, thread_name_prefix="leadscore-keys") as pool:
        keys = pool.submit(snapshot_keys, config)
        spark = spark_session(master, app_name=app_name)
        try:
            yield spark, keys.result
        finally:
            if ours:
                spark.stop()


@dataclass(frozen=True)
class SnapshotBuckets:
    """A snapshot on Spark in buckets of whole accounts, one bucket per partition of `frame`:
    its raw leads and its encoded events (`split_partition` splits a partition's batches
    back into them, and `bucket_snapshot` makes them a snapshot)."""

    frame: DataFrame
    source: LeadSource  # where the leads are, for driver-side questions (`lead_columns_read`)
    lead_map: Any  # the broadcast `LeadMap`: `.value.keys` numbers the events' leads
    header: pd.DataFrame  # the leads' columns as the reader reads them, no rows
    names: tuple[str, str]
    leads: int
    buckets: int

    @property
    def lead_columns(self) -> tuple[str, ...]:
        return tuple(self.header.columns)


@contextmanager
def snapshot_buckets(
    spark: SparkSession,
    config: Config,
    buckets: int | None = None,
    keys: SnapshotKeys | None = None,
) -> Iterator[SnapshotBuckets]:
    """The snapshot `config` names, read, checked and keyed as the batch job reads it, cut
    into buckets of whole accounts where it is read (leads and events alike), shuffled once.

    `buckets` defaults to one per `LEADS_PER_BUCKET` leads (at least two per core); `keys`
    are `snapshot_keys(config)` when the caller read them already (`keys_beside_session`).
    Shared by batch scoring and training sets on Spark; the broadcasts are released on leaving.
    """
    from pyspark.sql import functions as F  # noqa: N812

    read = keys if keys is not None else snapshot_keys(config)
    leads, events, names = read.leads, read.events, read.names
    n_leads = len(read.key)
    cores = spark.sparkContext.defaultParallelism
    # a multiple of the cores, so that the last round of groups keeps every core busy
    n_buckets = buckets or cores * max(2, math.ceil(n_leads / LEADS_PER_BUCKET / cores))
    to_partition = shuffle_keys(n_buckets)
    bucket = group_buckets(read.key, read.account, n_buckets)
    leads_map = lead_map(read.key, bucket, to_partition)
    # each lead row's shuffle key, in the table's order (rows without an id included)
    shuffle = np.asarray(to_partition, dtype=np.int32)[bucket]
    shared = spark.sparkContext.broadcast(leads_map)
    rows = spark.sparkContext.broadcast(shuffle) if leads.frame is None else None
    try:
        if rows is not None:
            cut = parquet_leads(spark, leads, rows)
        else:
            assert leads.frame is not None
            cut = driver_leads(spark, leads.frame, shuffle)
        if events.parquet is not None:
            encoded = parquet_events(spark, events, config, names[1], shared)
        else:
            encoded = driver_events(spark, events, config, names[1], leads_map)
        # one shuffle, no sort: each partition is a bucket of whole accounts
        both = cut.union(encoded)
        partitioned = both.repartition(n_buckets, F.col(_BUCKET)).drop(_BUCKET)
        yield SnapshotBuckets(partitioned, leads, shared, leads.header, names, n_leads, n_buckets)
    finally:
        shared.unpersist()
        if rows is not None:
            rows.unpersist()


def spark_hash_int(value: int) -> int:
    """Spark's `hash` of an int column (Murmur3_x86_32 `hashInt`, seed 42), which its hash
    partitioning takes modulo the partitions."""
    mask = 0xFFFFFFFF

    def rotate(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    k1 = rotate((value * 0xCC9E2D51) & mask, 15) * 0x1B873593 & mask
    h1 = (rotate(42 ^ k1, 13) * 5 + 0xE6546B64) & mask
    h1 ^= 4
    h1 = ((h1 ^ (h1 >> 16)) * 0x85EBCA6B) & mask
    h1 = ((h1 ^ (h1 >> 13)) * 0xC2B2AE35) & mask
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def shuffle_keys(n_buckets: int) -> tuple[int, ...]:
    """For each bucket b, the least int key that Spark's hash partitioning (`spark_hash_int`
    modulo the partitions) sends to partition b, so that the buckets fill the partitions one
    each. (A bucket without one found keeps b: it may then share a partition, which only
    unbalances.) Found on the driver: no Spark job."""
    found: dict[int, int] = {}
    for key in range(64 * n_buckets):
        found.setdefault(spark_hash_int(key) % n_buckets, key)
        if len(found) == n_buckets:
            break
    return tuple(found.get(b, b) for b in range(n_buckets))


def lead_map(key: pd.Series, bucket: np.ndarray, keys: tuple[int, ...]) -> LeadMap:
    """The lead map of `lead_keys` (ids checked unique): the leads with an id, their buckets
    (`group_buckets`) and the shuffle keys."""
    known = key.notna().to_numpy()
    index = pd.Index(key[known].to_numpy(dtype=object))
    return LeadMap(index, bucket[known].astype(np.int32), keys)


def declared_as_of_origin(settings: Config) -> str:
    """Where a declared as-of time comes from, named as the reader names it."""
    if settings.as_of is not None:
        return "the config's as_of"
    return str((settings.source.path or Path()) / "snapshot.json")


def check_declared_as_of(
    as_of: pd.Timestamp | None, reports: Sequence[Mapping[str, Any]], table: str, origin: str
) -> None:
    """The reader's check of a declared as-of time against the whole export's first
    created_at (the earliest of the buckets' own), with its message."""
    if as_of is None:
        return
    firsts = [pd.Timestamp(r["first_created_at"]) for r in reports if r.get("first_created_at")]
    if firsts:
        check_as_of_after_data(as_of, pd.Series(firsts), table, origin)


def _score_buckets(
    spark: SparkSession,
    buckets: SnapshotBuckets,
    job: BucketJob,
    texts: Mapping[str, str],
    progress: Progress | None,
) -> pd.DataFrame:
    """Each bucket of whole accounts scored by `score_bucket`; collected."""
    shared_leads, header = buckets.lead_map, buckets.header
    shared_texts = spark.sparkContext.broadcast(texts)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        found = list(batches)
        if found:
            left, right, reports = split_partition(found, header)
            keys = shared_leads.value.keys
            yield score_bucket(job, shared_texts.value, keys, left, right, reports)

    with watch_tasks(spark, progress):
        return buckets.frame.mapInPandas(score, _output_schema()).toPandas()


def _summarize(
    collected: pd.DataFrame,
    n_leads: int,
    n_buckets: int,
    names: tuple[str, str],
    *,
    monitor: bool,
    declared_as_of: tuple[pd.Timestamp | None, str] = (None, ""),
) -> SparkScores:
    """The buckets' scores (in the pandas engine's order) and their reports, summed; a
    declared as-of time (and where it was declared) checked as the reader checks it."""
    is_report = collected[_REPORT].notna().to_numpy()
    reports = [json.loads(text) for text in collected.loc[is_report, _REPORT]]
    check_declared_as_of(declared_as_of[0], reports, names[0], declared_as_of[1])
    read = merge_read_reports(r["read"] for r in reports)
    result = SparkScores(
        scores=_restore(collected.loc[~is_report]) if (~is_report).any() else empty_scores(),
        leads=n_leads,
        events_read=read["read"],
        events_kept=sum(r["events_kept"] for r in reports),
        events_unknown_lead=read["unknown_lead"],
        events_duplicate=sum(r["events_duplicate"] for r in reports),
        buckets=n_buckets,
        unknown_event_types=read["types"],
        stale=sum(r.get("stale", 0) for r in reports),
    )
    if result.events_read and result.events_unknown_lead == result.events_read:
        raise ContractError(
            f"{names[1]}: none of its {result.events_read:,} events belongs to a lead in "
            f"{names[0]}: are both files from the same export, with ids written the same way?"
        )
    if monitor:
        import training.drift as monitoring

        for counts in (r["monitor"] for r in reports if r.get("monitor") is not None):
            result.monitor = (
                counts
                if result.monitor is None
                else monitoring.merge_counts(result.monitor, counts)
            )
    return result


# --------------------------------------------------------------------------- the job


def predict_spark_job(
    spark: SparkSession,
    settings: Config,
    model: LoadedModel,
    as_of: pd.Timestamp,
    out: Path,
    *,
    reasons: int,
    chunk_leads: int,
    to_sql: tuple[str, str] | None = None,
    progress: Progress | None = None,
    buckets: int | None = None,
    keys: Callable[[], SnapshotKeys] | None = None,
) -> tuple[PredictSummary, SparkScores]:
    """`serving.batch_io.predict_job` with the scores computed on Spark, published by the same
    `serving.batch_io.publish_scores`: the same file (written atomically by the same writer),
    monitoring record, SQL upsert and tier changes. `keys` waits for the snapshot's keys when
    the caller reads them beside the session (`keys_beside_session`)."""
    from serving.batch_io import check_writable, publish_scores

    check_writable(out)
    scored_at = pd.Timestamp.now(tz="UTC").floor("ms")
    found = keys() if keys is not None else None
    result = score_on_spark(
        spark,
        settings,
        model,
        as_of,
        reasons=reasons,
        chunk_leads=chunk_leads,
        scored_at=scored_at,
        buckets=buckets,
        progress=progress,
        keys=found,
    )
    weeks = covered_weeks(model.config.snapshot_policy, model.config.horizon_days)
    stale = staleness_note(
        result.stale, len(result.scores), weeks, f"{model.name} version {model.version}"
    )
    summary = publish_scores(
        [(result.scores, result.monitor)],
        model,
        as_utc(as_of),
        out,
        scored_at=scored_at,
        to_sql=to_sql,
        notes=() if stale is None else (stale,),
    )
    return summary, result
