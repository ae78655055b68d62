"""Benchmark `leadscore features` against DuckDB doing the same windowed aggregations.

    python bench/features.py                      # 1M leads, ~50M events (make bench)
    python bench/features.py --leads 20000 --data-dir /tmp/snap20k --repeat 3
    python bench/features.py --leads 200000 --workers 1,0   # serial, then every core
    python bench/features.py --scaling                      # 0.25M, 0.5M, 1M, 2M leads

1. Generates the synthetic snapshot with `leadscore generate` unless --data-dir already holds
   one of that size (its snapshot.json says so). Generation is timed but not measured.
2. Runs `leadscore features --snapshot DIR --out TMP/training_set.parquet` in a fresh child
   process and measures its wall time and peak RSS (the kernel's high-water mark for that child
   alone, read with os.wait4), with `snapshot_policy.sampled_ages` 0: the rows DuckDB builds,
   one per MQL at its mql_at (the package's default adds two sampled ages per lead).
3. Runs DuckDB, in its own fresh child process (this script with --duckdb-job), on the same
   Parquet files: the same rows and the same point-in-time features (see DUCKDB_SQL below),
   written to Parquet, with every thread of the machine and DuckDB's default memory limit.
   Then checks that both sides have the same rows and agree on a random sample of rows.
4. Prints seconds, peak GiB and the leadscore/DuckDB ratio against the goals (within 1.0x
   DuckDB's time, peak at most 4 GiB), and writes the figures to bench/results/features.json.
   `--workers 1,0` measures leadscore once per `features.workers` setting and checks that their
   training sets are byte-identical; `--scaling` does it all at 0.25M, 0.5M, 1M and 2M leads and
   prints time and peak against the smallest size, and judges each size against the straight
   line fitted through all sizes (goal: within 15% of it; `linear_fit`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "features.json"
DEFAULT_DATA = ROOT / "data" / "bench" / "snapshot"
GIB = 1024**3

GOAL_RATIO = 1.0  # leadscore's time within DuckDB's (issue 17; it was 2x before)
GOAL_PEAK_GIB = 4.0  # leadscore's peak RSS at most 4 GiB (issue 17; it was 8 GiB before)
GOAL_LINEAR = 0.15  # scaling: every size within 15% of the straight line fitted through all
SCALING_LEADS = (250_000, 500_000, 1_000_000, 2_000_000)

# The data contract's event types (features/contract.py); anything else counts as `other`.
# Kept here on purpose: the DuckDB side is an independent re-implementation.
EVENT_TYPES = (
    "email_open",
    "email_click",
    "email_reply",
    "email_unsubscribe",
    "email_bounce",
    "page_view",
    "pricing_page_view",
    "content_download",
    "webinar_registration",
    "webinar_attendance",
    "form_submission",
    "demo_request",
    "trial_signup",
    "ad_click",
    "social_engagement",
    "other",
)
WINDOWS = (7, 30, 90)
HORIZON_DAYS = 90
DAY_MS = 86_400_000
MISSING = ("", "n/a", "na", "null", "none", "nan", "-", "--", "?", "unknown")

# Columns named in the report; every column both sides have is compared as well.
KEY_COLUMNS = (
    "n_events_30d",
    "n_demo_request_all",
    "account_other_events_90d",
    "active_days_all",
    "days_since_last_event",
    "account_other_leads",
    "label",
)


# --------------------------------------------------------------------------- DuckDB side


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def duckdb_statements(leads: str, events: str, out: str, as_of_ms: int | None) -> list[str]:
    """The DuckDB version of `leadscore features` (default config: windows 7/30/90, horizon 90).

    Same rows: leads with mql_at, cutoff = mql_at, minus those left out by the labelling rules
    (cutoff at/after as-of, converted or disqualified before the cutoff, censored: the horizon
    not over by as-of). As-of is the snapshot's declared one (snapshot.json), else the latest
    timestamp in the data, as features/reader/ decides. Same
    features: per type and for all events, counts in [cutoff - w, cutoff) and before the cutoff,
    days since the last event; distinct active days (a day counts once its first event is before
    the cutoff); days since created/mql; the account's other leads created/MQL'd/SQL'd before the
    cutoff and their events per window. Events of unknown leads are dropped, unknown types become
    `other`, and exact duplicates (lead, millisecond, type) count once. Times are epoch ms.
    """
    types = _sql_list(EVENT_TYPES)
    other = EVENT_TYPES.index("other")
    missing = ", ".join("'" + m + "'" for m in MISSING)
    w_ms = {w: w * DAY_MS for w in WINDOWS}

    # Own events: aggregate per (row, type) first, then spread the types into columns.
    per_type = [f"count(*) FILTER (WHERE e.t >= r.c - {w_ms[w]}) AS n{w}" for w in WINDOWS] + [
        "count(*) AS n_all",
        "max(e.t) AS last",
    ]
    own: list[str] = []
    for k, name in enumerate(EVENT_TYPES):
        for w in WINDOWS:
            own.append(f"sum(n{w}) FILTER (WHERE k = {k}) AS n_{name}_{w}d")
        own.append(f"sum(n_all) FILTER (WHERE k = {k}) AS n_{name}_all")
        own.append(f"max(last) FILTER (WHERE k = {k}) AS last_{name}")
    for w in WINDOWS:
        own.append(f"sum(n{w}) AS n_events_{w}d")
    own += ["sum(n_all) AS n_events_all", "max(last) AS last_event"]

    act = [f"count(*) FILTER (WHERE d.f >= d.c - {w_ms[w]}) AS active_days_{w}d" for w in WINDOWS]
    acc_ev = [
        f"count(*) FILTER (WHERE e.t >= r.c - {w_ms[w]}) AS account_other_events_{w}d"
        for w in WINDOWS
    ]

    final: list[str] = ["r.lead_id", "epoch_ms(r.c) AS cutoff", "r.label::TINYINT AS label"]
    for name in EVENT_TYPES:
        for w in WINDOWS:
            final.append(f"coalesce(o.n_{name}_{w}d, 0)::INTEGER AS n_{name}_{w}d")
        final.append(f"coalesce(o.n_{name}_all, 0)::INTEGER AS n_{name}_all")
        final.append(f"(r.c - o.last_{name}) / {DAY_MS}.0 AS days_since_{name}")
    for w in WINDOWS:
        final.append(f"coalesce(o.n_events_{w}d, 0)::INTEGER AS n_events_{w}d")
    final += [
        "coalesce(o.n_events_all, 0)::INTEGER AS n_events_all",
        f"(r.c - o.last_event) / {DAY_MS}.0 AS days_since_last_event",
    ]
    for w in WINDOWS:
        final.append(f"coalesce(a.active_days_{w}d, 0)::INTEGER AS active_days_{w}d")
    final.append("coalesce(a.active_days_all, 0)::INTEGER AS active_days_all")
    recent, wide = WINDOWS[-2], WINDOWS[-1]
    scale = (wide - recent) / recent
    final.append(
        f"ln((coalesce(o.n_events_{recent}d, 0) * {scale!r} + 1)"
        f" / (coalesce(o.n_events_{wide}d, 0) - coalesce(o.n_events_{recent}d, 0) + 1))"
        f" AS trend_{recent}d_vs_{wide}d"
    )
    final += [
        f"(r.c - r.created) / {DAY_MS}.0 AS days_since_created",
        f"(r.c - r.mql) / {DAY_MS}.0 AS days_since_mql",
    ]
    for name in ("leads", "mqls", "sqls"):
        col = f"account_other_{name}"
        final.append(f"CASE WHEN r.acc IS NULL THEN NULL ELSE coalesce(al.{col}, 0) END AS {col}")
    for w in [*[f"{w}d" for w in WINDOWS], "all"]:
        col = f"account_other_events_{w}"
        final.append(f"CASE WHEN r.acc IS NULL THEN NULL ELSE coalesce(ae.{col}, 0) END AS {col}")

    return [
        # Leads: contract cleaning of the ids (trim; missing placeholders are no account).
        f"""CREATE TEMP TABLE l0 AS
            SELECT trim(lead_id) AS lead_id,
                   CASE WHEN account_id IS NULL OR lower(trim(account_id)) IN ({missing}) THEN NULL
                        ELSE regexp_replace(trim(account_id), '\\s+', ' ', 'g') END AS account,
                   epoch_ms(created_at) AS created, epoch_ms(mql_at) AS mql,
                   epoch_ms(sql_at) AS sql_, epoch_ms(disqualified_at) AS dq
            FROM read_parquet('{leads}')""",
        """CREATE TEMP TABLE accounts AS
            SELECT account, (row_number() OVER ())::INTEGER AS acc
            FROM (SELECT DISTINCT account FROM l0 WHERE account IS NOT NULL)""",
        """CREATE TEMP TABLE l AS
            SELECT (row_number() OVER ())::INTEGER AS lid, l0.lead_id, a.acc,
                   l0.created, l0.mql, l0.sql_, l0.dq
            FROM l0 LEFT JOIN accounts a USING (account)""",
        # Event types: normalise each distinct name once; unknown names are `other`.
        f"""CREATE TEMP TABLE etypes AS
            SELECT raw, coalesce(list_position({types}, norm) - 1, {other})::TINYINT AS k
            FROM (SELECT raw, regexp_replace(lower(regexp_replace(trim(raw), '\\s+', ' ', 'g')),
                                             '[\\s\\-]+', '_', 'g') AS norm
                  FROM (SELECT DISTINCT coalesce(event_type, '') AS raw
                        FROM read_parquet('{events}')))""",
        # Events of known leads, exact duplicates (lead, ms, type) dropped.
        f"""CREATE TEMP TABLE ev AS
            SELECT DISTINCT l.lid, l.acc, epoch_ms(e.occurred_at) AS t, et.k
            FROM read_parquet('{events}') e
            JOIN l ON l.lead_id = trim(e.lead_id)
            JOIN etypes et ON et.raw = coalesce(e.event_type, '')""",
        # as-of: declared by the snapshot, else its latest timestamp.
        (
            f"CREATE TEMP TABLE snap_asof AS SELECT {as_of_ms}::BIGINT AS as_of"
            if as_of_ms is not None
            else """CREATE TEMP TABLE snap_asof AS
            SELECT max(x) AS as_of FROM (
                SELECT max(created) AS x FROM l UNION ALL SELECT max(mql) FROM l
                UNION ALL SELECT max(sql_) FROM l UNION ALL SELECT max(dq) FROM l
                UNION ALL SELECT max(t) FROM ev)"""
        ),
        # Rows: one per MQL at mql_at, kept and labelled as features/rows.py does.
        f"""CREATE TEMP TABLE r AS
            SELECT lid, lead_id, acc, c, created, mql, label FROM (
                SELECT l.lid, l.lead_id, l.acc, l.mql AS c, l.created, l.mql, a.as_of,
                       coalesce(l.sql_ <= a.as_of, false) AS sql_known,
                       coalesce(l.dq <= a.as_of, false) AS dq_known,
                       l.mql + {HORIZON_DAYS * DAY_MS} AS hend,
                       coalesce(l.sql_ <= a.as_of AND l.sql_ > l.mql
                                AND l.sql_ <= l.mql + {HORIZON_DAYS * DAY_MS}, false) AS label,
                       l.sql_, l.dq
                FROM l, snap_asof a WHERE l.mql IS NOT NULL)
            WHERE c < as_of
              AND NOT (sql_known AND sql_ <= c)
              AND NOT (dq_known AND dq <= c)
              AND NOT (hend > as_of)""",
        f"""CREATE TEMP TABLE own_k AS
            SELECT r.lid, e.k, {", ".join(per_type)}
            FROM r JOIN ev e ON e.lid = r.lid AND e.t < r.c
            GROUP BY r.lid, e.k""",
        f"""CREATE TEMP TABLE own AS
            SELECT lid, {", ".join(own)}
            FROM own_k GROUP BY lid""",
        f"""CREATE TEMP TABLE act AS
            SELECT d.lid, {", ".join(act)}, count(*) AS active_days_all
            FROM (SELECT r.lid, r.c, min(e.t) AS f
                  FROM r JOIN ev e ON e.lid = r.lid AND e.t < r.c
                  GROUP BY r.lid, r.c, e.t // {DAY_MS}) d
            GROUP BY d.lid""",
        """CREATE TEMP TABLE accl AS
            SELECT r.lid,
                   count(*) FILTER (WHERE o.created < r.c) AS account_other_leads,
                   count(*) FILTER (WHERE o.mql < r.c) AS account_other_mqls,
                   count(*) FILTER (WHERE o.sql_ < r.c) AS account_other_sqls
            FROM r JOIN l o ON o.acc = r.acc AND o.lid <> r.lid
            GROUP BY r.lid""",
        f"""CREATE TEMP TABLE acce AS
            SELECT r.lid, {", ".join(acc_ev)}, count(*) AS account_other_events_all
            FROM r JOIN ev e ON e.acc = r.acc AND e.lid <> r.lid AND e.t < r.c
            GROUP BY r.lid""",
        f"""COPY (
            SELECT {", ".join(final)}
            FROM r
            LEFT JOIN own o USING (lid)
            LEFT JOIN act a USING (lid)
            LEFT JOIN accl al USING (lid)
            LEFT JOIN acce ae USING (lid)
        ) TO '{out}' (FORMAT parquet)""",
    ]


def declared_as_of_ms(snapshot: Path) -> int | None:
    """The as-of time snapshot.json declares (epoch ms), if any; naive means UTC."""
    manifest = snapshot / "snapshot.json"
    if not manifest.is_file():
        return None
    declared = json.loads(manifest.read_text()).get("as_of")
    if declared is None:
        return None
    stamp = datetime.fromisoformat(declared.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def duckdb_job(snapshot: Path, out: Path) -> None:
    """Child process: run the DuckDB version and print a JSON line of its settings."""
    import duckdb

    con = duckdb.connect()  # in memory; spills to ./.tmp (the job's cwd) if it must
    threads = os.cpu_count() or 1
    con.execute(f"SET threads = {threads}")
    settings = con.execute(
        "SELECT current_setting('threads'), current_setting('memory_limit')"
    ).fetchone()
    assert settings is not None
    steps = {}
    as_of_ms = declared_as_of_ms(snapshot)
    for statement in duckdb_statements(
        str(snapshot / "leads.parquet"), str(snapshot / "events.parquet"), str(out), as_of_ms
    ):
        started = time.perf_counter()
        con.execute(statement)
        named = re.match(r"\s*CREATE TEMP TABLE (\w+)", statement)
        name = named.group(1) if named else "copy"
        steps[name] = round(time.perf_counter() - started, 2)
    print(
        json.dumps(
            {
                "duckdb": duckdb.__version__,
                "threads": settings[0],
                "memory_limit": settings[1],
                "as_of_ms": as_of_ms,
                "steps_s": steps,
            }
        )
    )


# --------------------------------------------------------------------------- measuring


def _busy_cpu_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def measure(
    command: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `command` as a fresh child; its wall time and peak RSS (that child alone).

    Also the CPU seconds the rest of the machine used meanwhile (`others_cpu_s`): other work
    running concurrently on this 2-core machine slows the job, and this shows by how much.
    """
    with log.open("w") as handle:
        busy = _busy_cpu_s()
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        # wait4 returns the rusage of this child (and its waited-for descendants) only.
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        busy = _busy_cpu_s() - busy
    child.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(errors="replace")
    if child.returncode != 0:
        sys.exit(f"{command[0]} failed (exit {child.returncode}); log {log}:\n{output[-4000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "seconds": seconds,
        "peak_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "cpu_s": cpu,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "others_cpu_s": max(busy - cpu, 0.0),
        "output": output,
    }


def snapshot_matches(folder: Path, leads: int, events_per_lead: float, seed: int) -> bool:
    meta_path = folder / "snapshot.json"
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    files = meta.get("files", {})
    return (
        meta.get("n_leads") == leads
        and meta.get("seed") == seed
        and float(meta.get("events_per_lead", -1)) == float(events_per_lead)
        and meta.get("format") == "parquet"
        and all((folder / files.get(k, f"{k}.parquet")).is_file() for k in ("leads", "events"))
    )


def ensure_snapshot(args: argparse.Namespace, leadscore: str) -> dict[str, Any]:
    folder: Path = args.data_dir
    generated_s = None
    if snapshot_matches(folder, args.leads, args.events_per_lead, args.seed):
        print(f"snapshot: reusing {folder}")
    else:
        print(f"snapshot: generating {args.leads:,} leads into {folder} (not measured)")
        started = time.perf_counter()
        subprocess.run(
            [
                leadscore,
                "generate",
                "--leads",
                str(args.leads),
                "--seed",
                str(args.seed),
                "--out",
                str(folder),
                "--events-per-lead",
                str(args.events_per_lead),
            ],
            check=True,
        )
        generated_s = time.perf_counter() - started
        print(f"snapshot: generated in {generated_s:.1f} s")
    meta = json.loads((folder / "snapshot.json").read_text())
    counts = meta.get("row_counts", {})
    print(
        f"snapshot: {counts.get('leads', 0):,} leads, {counts.get('events', 0):,} events, "
        f"{counts.get('truth', 0):,} MQLs (generator {meta.get('generator_version')})"
    )
    return {"path": str(folder), "generated_s": generated_s, "meta": meta}


# --------------------------------------------------------------------------- checking


def cross_check(ours: Path, theirs: Path, sample: int, seed: int) -> dict[str, Any]:
    """Same rows on both sides, and the same values on a random sample of rows."""
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(ours)
    b = pd.read_parquet(theirs)
    report: dict[str, Any] = {"rows_leadscore": len(a), "rows_duckdb": len(b)}
    report["rows_equal"] = len(a) == len(b)
    ids_a, ids_b = set(a["lead_id"]), set(b["lead_id"])
    report["leads_only_leadscore"] = len(ids_a - ids_b)
    report["leads_only_duckdb"] = len(ids_b - ids_a)
    common = a["lead_id"][a["lead_id"].isin(ids_b)]
    rng = np.random.default_rng(seed)
    pick = (
        common.to_numpy()
        if sample <= 0 or sample >= len(common)
        else rng.choice(common.to_numpy(), size=sample, replace=False)
    )
    left = a.set_index("lead_id").loc[pick]
    right = b.set_index("lead_id").loc[pick]
    columns = [c for c in right.columns if c in left.columns and c != "cutoff"]
    report["columns_compared"] = len(columns)
    report["columns_only_leadscore"] = [
        c for c in left.columns if c not in right.columns and pd.api.types.is_numeric_dtype(left[c])
    ]
    mismatches: dict[str, int] = {}
    examples: dict[str, list[Any]] = {}
    for column in columns:
        x = left[column].to_numpy(dtype=np.float64, na_value=np.nan)
        y = right[column].to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)
        if bad.any():
            mismatches[column] = int(bad.sum())
            where = np.flatnonzero(bad)[:3]
            examples[column] = [
                {"lead_id": str(pick[i]), "leadscore": float(x[i]), "duckdb": float(y[i])}
                for i in where
            ]
    report["sample_rows"] = len(pick)
    report["mismatched_columns"] = mismatches
    report["mismatch_examples"] = examples
    report["key_columns"] = {c: mismatches.get(c, 0) for c in KEY_COLUMNS if c in columns}
    report["mismatches"] = sum(mismatches.values())
    return report


# --------------------------------------------------------------------------- main


def worker_settings(text: str | None) -> list[int | None]:
    """`--workers 1,0` as [1, 0]; absent: [None], the package's default (every core)."""
    if not text:
        return [None]
    return [int(part) for part in text.split(",") if part.strip()]


def side_name(workers: int | None) -> str:
    return "leadscore" if workers is None else f"leadscore w={workers}"


def leadscore_env(workers: int | None) -> dict[str, str]:
    """The child's environment: `features.workers` set when asked, else the package default."""
    env = dict(os.environ)
    env.pop("LEADSCORE__FEATURES__WORKERS", None)
    if workers is not None:
        env["LEADSCORE__FEATURES__WORKERS"] = str(workers)
    return env


def same_rows_env(workers: int | None) -> dict[str, str]:
    """`leadscore_env` with the training rows DuckDB builds: one per MQL at its mql_at.

    The package's default also adds `snapshot_policy.sampled_ages` rows per lead (2), which
    the SQL does not build: measured with them, leadscore would build more rows than DuckDB.
    """
    return {**leadscore_env(workers), "LEADSCORE__SNAPSHOT_POLICY__SAMPLED_AGES": "0"}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not runs:
        return None
    return {
        # Other work on the machine only ever adds time, so the fastest run is the figure.
        "seconds": min(r["seconds"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "cpu_s": min(r["cpu_s"] for r in runs),
        "others_cpu_s": min(r["others_cpu_s"] for r in runs),
        "peak_gib": max(r["peak_bytes"] for r in runs) / GIB,
        "runs": runs,
    }


def measure_size(
    args: argparse.Namespace, leadscore: str, leads: int, folder: Path
) -> dict[str, Any]:
    """One snapshot size: leadscore with each --workers setting, DuckDB, and the checks."""
    snap = ensure_snapshot(
        argparse.Namespace(
            data_dir=folder, leads=leads, events_per_lead=args.events_per_lead, seed=args.seed
        ),
        leadscore,
    )
    snapshot = folder.resolve()
    settings = worker_settings(args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    theirs = tmp / "duckdb.parquet"
    outputs = {w: tmp / f"training_set-{w}.parquet" for w in settings}
    runs: dict[str, list[dict[str, Any]]] = {side_name(w): [] for w in settings}
    runs["duckdb"] = []
    duckdb_info: dict[str, Any] = {}
    check = None
    identical = None
    try:
        for i in range(args.repeat):
            for workers in settings:
                name = side_name(workers)
                command = [leadscore, "features", "--snapshot", str(snapshot)]
                command += ["--out", str(outputs[workers])]
                run = measure(
                    command, tmp / f"leadscore-{workers}-{i}.log", env=same_rows_env(workers)
                )
                print(
                    f"{name} run {i + 1}: {run['seconds']:.1f} s, "
                    f"{run['peak_bytes'] / GIB:.2f} GiB peak, {run['cpu_s']:.1f} CPU s "
                    f"(other processes: {run['others_cpu_s']:.1f} CPU s meanwhile)"
                )
                for line in run.pop("output").strip().splitlines():
                    print(f"  | {line}")
                runs[name].append(run)
            if args.skip_duckdb:
                continue
            run = measure(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--duckdb-job",
                    "--snapshot",
                    str(snapshot),
                    "--out",
                    str(theirs),
                ],
                tmp / f"duckdb-{i}.log",
                cwd=tmp,
            )
            output = run.pop("output").strip().splitlines()
            duckdb_info = json.loads(output[-1]) if output else {}
            print(
                f"duckdb run {i + 1}: {run['seconds']:.1f} s, "
                f"{run['peak_bytes'] / GIB:.2f} GiB peak, {run['cpu_s']:.1f} CPU s "
                f"(other processes: {run['others_cpu_s']:.1f} CPU s meanwhile)"
            )
            print(f"  | {duckdb_info}")
            runs["duckdb"].append(run)

        written = [outputs[w].read_bytes() for w in settings]
        identical = all(data == written[0] for data in written)
        if len(settings) > 1:
            print(
                "check: the training sets of every --workers setting are "
                + ("byte-identical" if identical else "DIFFERENT")
            )
        if not args.skip_duckdb:
            check = cross_check(outputs[settings[0]], theirs, args.sample, args.seed)
            print(
                f"check: rows leadscore {check['rows_leadscore']:,}, "
                f"duckdb {check['rows_duckdb']:,}"
                f" ({'equal' if check['rows_equal'] else 'DIFFERENT'}); leads only in leadscore "
                f"{check['leads_only_leadscore']}, only in duckdb {check['leads_only_duckdb']}"
            )
            print(
                f"check: {check['sample_rows']:,} sampled rows x {check['columns_compared']} "
                f"columns: {check['mismatches']} mismatches; key columns {check['key_columns']}"
            )
            for column, n in check["mismatched_columns"].items():
                print(f"  mismatch {column}: {n} rows, e.g. {check['mismatch_examples'][column]}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"outputs kept in {tmp}")

    sides = {name: summary(side) for name, side in runs.items() if side}
    duck = sides.get("duckdb")
    ratios = {
        name: side["seconds"] / duck["seconds"]
        for name, side in sides.items()
        if name != "duckdb" and side is not None and duck is not None
    }
    return {
        "leads": leads,
        "snapshot": snap,
        "events": snap["meta"].get("row_counts", {}).get("events"),
        "sides": sides,
        "ratios_vs_duckdb": ratios,
        "identical_outputs": identical,
        "duckdb_settings": duckdb_info,
        "check": check,
    }


def print_size(result: dict[str, Any], repeat: int) -> None:
    print()
    print(f"{result['leads']:,} leads, {result['events'] or 0:,} events")
    print(f"{'':<16}{'seconds':>10}{'peak GiB':>10}{'CPU s':>10}{'others CPU s':>14}{'ratio':>8}")
    for name, side in result["sides"].items():
        ratio = result["ratios_vs_duckdb"].get(name)
        shown = f"{ratio:>8.2f}" if ratio is not None else ""
        print(
            f"{name:<16}{side['seconds']:>10.1f}{side['peak_gib']:>10.2f}"
            f"{side['cpu_s']:>10.1f}{side['others_cpu_s']:>14.1f}{shown}"
        )
    if repeat > 1:
        print(f"(fastest of {repeat} runs, smallest CPU s and others CPU s, largest peak)")
    for name, side in result["sides"].items():
        if name == "duckdb":
            continue
        ratio = result["ratios_vs_duckdb"].get(name)
        if ratio is None:
            print(f"goal {name}: within {GOAL_RATIO:g}x DuckDB's time: not measured")
        else:
            verdict = "PASS" if ratio <= GOAL_RATIO else "FAIL"
            print(f"goal {name}: within {GOAL_RATIO:g}x DuckDB's time: {verdict} ({ratio:.2f}x)")
        verdict = "PASS" if side["peak_gib"] <= GOAL_PEAK_GIB else "FAIL"
        print(
            f"goal {name}: peak at most {GOAL_PEAK_GIB:g} GiB: {verdict} ({side['peak_gib']:.2f})"
        )


def linear_fit(leads: Sequence[int], values: Sequence[float]) -> tuple[float, float, float]:
    """The straight line `fixed + per_lead * leads` fitted (least squares) through the sizes,
    and the worst relative gap of a size from it.

    Linear growth means a constant cost per extra lead; a fixed part (start-up, imports, the
    model) is allowed, so each size is judged against the fitted line, not against the
    smallest size's cost per lead, which the fixed part inflates.
    """
    x, y = np.asarray(leads, dtype=float), np.asarray(values, dtype=float)
    per_lead, fixed = np.polyfit(x, y, 1)
    worst = float(np.max(np.abs(y / (fixed + per_lead * x) - 1)))
    return float(fixed), float(per_lead), worst


def scaling_verdict(
    name: str, leads: Sequence[int], seconds: Sequence[float], peaks: Sequence[float]
) -> dict[str, Any]:
    """Print and return how time and peak grow with the leads (see `linear_fit`)."""
    t_fixed, t_per, t_worst = linear_fit(leads, seconds)
    p_fixed, p_per, p_worst = linear_fit(leads, peaks)
    worst = max(t_worst, p_worst)
    print(
        f"goal {name}: time and peak on a straight line within {GOAL_LINEAR:.0%}: "
        f"{'PASS' if worst <= GOAL_LINEAR else 'FAIL'} (time {t_fixed:.1f} s + "
        f"{t_per * 1e6:.1f} s per 1M leads, worst gap {t_worst:.0%}; peak {p_fixed:.2f} GiB + "
        f"{p_per * 1e6:.2f} GiB per 1M leads, worst gap {p_worst:.0%})"
    )
    return {
        "time_fixed_s": t_fixed,
        "time_s_per_million": t_per * 1e6,
        "time_worst_gap": t_worst,
        "peak_fixed_gib": p_fixed,
        "peak_gib_per_million": p_per * 1e6,
        "peak_worst_gap": p_worst,
        "linear": worst <= GOAL_LINEAR,
    }


def scaling_table(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Time and peak of each size against the smallest, and how far each size is from a
    straight line (linear within GOAL_LINEAR: `scaling_verdict`)."""
    smallest = results[0]
    verdicts: dict[str, Any] = {}
    print()
    print(f"scaling (x: against {smallest['leads']:,} leads; goal: on a straight line within "
          f"{GOAL_LINEAR:.0%})")  # fmt: skip
    header = f"{'leads':>10}{'side':>16}{'seconds':>10}{'x time':>8}{'peak GiB':>10}{'x peak':>8}"
    print(header + f"{'vs DuckDB':>11}")
    for name in smallest["sides"]:
        base = smallest["sides"][name]
        sizes, seconds, peaks = [], [], []
        for result in results:
            side = result["sides"].get(name)
            if side is None:
                continue
            sizes.append(result["leads"])
            seconds.append(side["seconds"])
            peaks.append(side["peak_gib"])
            ratio = result["ratios_vs_duckdb"].get(name)
            print(
                f"{result['leads']:>10,}{name:>16}{side['seconds']:>10.1f}"
                f"{side['seconds'] / base['seconds']:>8.2f}{side['peak_gib']:>10.2f}"
                f"{side['peak_gib'] / base['peak_gib']:>8.2f}"
                + (f"{ratio:>11.2f}" if ratio is not None else "")
            )
        if len(sizes) > 2:
            verdicts[name] = scaling_verdict(name, sizes, seconds, peaks)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events-per-lead", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--skip-duckdb", action="store_true", help="Measure leadscore only.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each side (fastest kept).")
    parser.add_argument("--sample", type=int, default=1000, help="Rows cross-checked; 0: all.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON figures file.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary outputs.")
    parser.add_argument(
        "--workers",
        help="features.workers of the leadscore runs, comma-separated (e.g. 1,0: serial, then "
        "every core); default: the package's default (every core).",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="Measure at each of --scaling-leads (default 0.25M, 0.5M, 1M, 2M leads) and judge "
        "time and peak against the straight line fitted through the sizes.",
    )
    parser.add_argument(
        "--scaling-leads",
        help="Comma-separated sizes for --scaling (snapshots in DATA_DIR-N, 1M in DATA_DIR).",
    )
    parser.add_argument("--duckdb-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.duckdb_job:
        duckdb_job(args.snapshot, args.out)
        return

    bin_dir = Path(sys.executable).parent
    leadscore = str(bin_dir / "leadscore") if (bin_dir / "leadscore").exists() else "leadscore"
    import psutil

    machine = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(
        f"machine: {machine['cpus']} cores, {machine['memory_gib']} GiB, "
        f"load average {machine['load_avg_at_start']} (other work may be running)"
    )
    if args.scaling:
        sizes = (
            [int(n) for n in args.scaling_leads.split(",")]
            if args.scaling_leads
            else list(SCALING_LEADS)
        )
        folders = [
            args.data_dir
            if n == 1_000_000
            else args.data_dir.with_name(f"{args.data_dir.name}-{n}")
            for n in sorted(sizes)
        ]
        sizes = sorted(sizes)
    else:
        sizes, folders = [args.leads], [args.data_dir]

    results = []
    for leads, folder in zip(sizes, folders, strict=True):
        result = measure_size(args, leadscore, leads, folder)
        print_size(result, args.repeat)
        results.append(result)
    scaling = scaling_table(results) if len(results) > 1 else None
    machine["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end: {machine['load_avg_at_end']}")

    payload = {
        "benchmark": "features",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "repeat": args.repeat,
        "workers": worker_settings(args.workers),
        "goals": {
            "ratio_vs_duckdb": GOAL_RATIO,
            "peak_gib": GOAL_PEAK_GIB,
            "linear_within": GOAL_LINEAR,
        },
        "sizes": results,
        "scaling": scaling,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
