"""Benchmark the scoring API (`leadscore serve`) against `mlflow models serve` and the floor.

    python bench/serve.py                          # 20k-lead snapshot, 2000 requests, 60 s load
    python bench/serve.py --requests 500 --load-seconds 10 --skip-mlflow

1. Setup (not measured): `leadscore generate --leads 20000` into a temporary folder (or reuses
   --data-dir), `leadscore train` into a fresh MLflow SQLite store there, then one MQL lead
   with exactly --events (50) events before its as-of time (its MQL time), posted as
   tests/api/conftest.py `request_for` builds the body.
2. In-process (this script with --inprocess-job, in a fresh child process): the floor,
   `booster.predict(row, raw_score=True)` + `booster.predict(row, pred_contrib=True)` on the
   ready float row, with LightGBM's default threads and with num_threads=1;
   `serving.scoring.score(model, request)` whole; and its stages, timed by wrapping what
   score() calls (lead_features, model_row, booster.predict, calibrate, tier, rule_points,
   reasons, ScoreOut; the rest is request to dicts and glue).
3. Servers: `leadscore serve --port P --accounts SNAPSHOT` (one uvicorn worker, no API keys,
   the snapshot's account history as `serve.accounts`; --no-accounts leaves it out, here and
   in-process) and
   `mlflow models serve -m models:/leadscore@champion --env-manager local -w 1` posted the
   model's feature row of the same lead (`dataframe_split`; it answers the probability only);
   with --omp1 also `leadscore serve` with OMP_NUM_THREADS=1 (LightGBM on one thread). Each
   answer is checked against the in-process probability.
4. Closed loop: one keep-alive connection (http.client), --warmup requests, then --requests
   sequential requests per server in --rounds rounds that alternate between the servers (the
   machine is shared: alternating spreads other work's load evenly). Latency per request,
   p50/p90/p99/mean, requests per second of one client, and the servers' own CPU ms per
   request. Then --threads (4) client threads, one connection each, --requests in all: req/s.
5. Load: open loop at --load-rate (200) req/s for --load-seconds (60) s against `leadscore
   serve`: request i is due at start + i/rate and its latency runs from that due time, so a
   slow server cannot hide its queue by delaying the client (no coordinated omission).
6. With --profile S: `py-spy record --gil` on the leadscore server for S seconds under one
   client, summed into GIL-held ms per request by part of the stack (PROFILE_CATEGORIES).
7. Prints the table and the goals (p50 <= 5 ms, p99 <= 10 ms, req/s >= 4x mlflow's, the load
   rate kept with 0 errors), each PASS or FAIL, and writes bench/results/serve.json.

Client and servers share the machine's 2 cores, and other work may be running too: each
figure comes with the CPU seconds that the rest of the machine used meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _paths import bench_features, use_package

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "serve.json"
GIB = 1024**3

GOAL_P50_MS = 5.0  # leadscore serve, one lead with 50 events, one client
GOAL_P99_MS = 10.0
GOAL_RPS_RATIO = 4.0  # leadscore serve's req/s over mlflow models serve's
LOAD_RATE_KEPT = 0.95  # the load run must answer at >= 95% of the rate it sends at

SCORE_PATH = "/v1/score"
MLFLOW_PATH = "/invocations"
MODEL_URI = "models:/leadscore@champion"
RESULT_PREFIX = "RESULT "
LATENCY_COLUMNS = ("p50", "p90", "p99", "mean")
NAN = float("nan")


def _ms(values_ns: list[int] | np.ndarray) -> dict[str, float]:
    """Percentiles of nanosecond latencies, in milliseconds."""
    x = np.asarray(values_ns, dtype=np.float64) / 1e6
    if x.size == 0:
        return {"n": 0}
    return {
        "n": int(x.size),
        "p50": float(np.percentile(x, 50)),
        "p90": float(np.percentile(x, 90)),
        "p99": float(np.percentile(x, 99)),
        "mean": float(x.mean()),
        "max": float(x.max()),
    }


# --------------------------------------------------------------------------- setup


def ensure_snapshot(args: argparse.Namespace, leadscore: str, bf: ModuleType) -> dict[str, Any]:
    folder: Path = args.data_dir
    generated_s = None
    if bf.snapshot_matches(folder, args.leads, 50.0, args.seed):
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
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        generated_s = time.perf_counter() - started
    meta = json.loads((folder / "snapshot.json").read_text())
    return {"path": str(folder), "generated_s": generated_s, "row_counts": meta.get("row_counts")}


def train(snapshot: Path, work: Path, leadscore: str) -> dict[str, Any]:
    """`leadscore train` into a fresh SQLite store in `work`; the champion is what is served."""
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    env = {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": tracking,
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(work / "artifacts"),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [leadscore, "train", "-s", str(snapshot), "-r", str(work / "report")],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "is champion" not in done.stdout + done.stderr:
        sys.exit(f"leadscore train failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    print(f"model: trained and registered as champion in {seconds:.1f} s (not measured)")
    return {"tracking_uri": tracking, "train_s": seconds}


def build_body(snapshot: Path, n_events: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One MQL lead scored at its MQL time with exactly `n_events` events before it.

    The lead: one with a job title and an account that already had other leads before its
    mql_at (so the account history is looked up and counts), whose own events before mql_at
    number `n_events` or more, the fewest such (ties: the lowest lead_id); its latest `n_events`
    events are kept. Should no lead have enough, the one with the most gets events drawn from
    its own (types, campaigns, URLs) at random times between its creation and its MQL time.
    The JSON is what tests/api/conftest.py `request_for` posts.
    """
    import pandas as pd

    leads = pd.read_parquet(snapshot / "leads.parquet")
    events = pd.read_parquet(snapshot / "events.parquet")
    mqls = leads[leads["mql_at"].notna() & leads["account_id"].notna()]
    mqls = mqls[mqls["job_title"].notna()]
    colleagues = mqls[["lead_id", "account_id", "mql_at"]].merge(
        leads[["lead_id", "account_id", "created_at"]], on="account_id", suffixes=("", "_other")
    )
    earlier = colleagues[
        (colleagues["lead_id_other"] != colleagues["lead_id"])
        & (colleagues["created_at"] < colleagues["mql_at"])
    ]
    mqls = mqls[mqls["lead_id"].isin(earlier["lead_id"])]
    own = events.merge(mqls[["lead_id", "mql_at"]], on="lead_id")
    own = own[own["occurred_at"] < own["mql_at"]]
    counts = own.groupby("lead_id").size()
    enough = counts[counts >= n_events]
    if len(enough):
        lead_id = str(enough.sort_index().sort_values(kind="stable").index[0])
    else:
        lead_id = str(counts.sort_index().sort_values(kind="stable", ascending=False).index[0])
    row = leads.loc[leads["lead_id"] == lead_id].iloc[0]
    as_of = row["mql_at"]
    mine = own[own["lead_id"] == lead_id].sort_values("occurred_at", kind="stable")
    real = len(mine)
    mine = mine.tail(n_events)
    if len(mine) < n_events:
        rng = np.random.default_rng(seed)
        extra = mine.iloc[rng.integers(0, len(mine), n_events - len(mine))].copy()
        start, span = row["created_at"], as_of - row["created_at"]
        extra["occurred_at"] = [start + span * float(f) for f in rng.random(len(extra))]
        extra["occurred_at"] = extra["occurred_at"].dt.floor("s")
        mine = pd.concat([mine, extra]).sort_values("occurred_at", kind="stable")
    profile = {
        k: (None if pd.isna(v) else (v.isoformat() if isinstance(v, pd.Timestamp) else v))
        for k, v in row.items()
        if k not in ("sql_at", "disqualified_at")
    }
    if profile.get("company_size") is not None:
        profile["company_size"] = float(profile["company_size"])
    body = {
        "lead": profile,
        "events": [
            {
                "event_type": e.event_type,
                "occurred_at": e.occurred_at.isoformat(),
                **({"campaign": e.campaign} if isinstance(e.campaign, str) else {}),
                **({"url": e.url} if isinstance(e.url, str) else {}),
            }
            for e in mine.itertuples()
        ],
        "as_of": as_of.isoformat(),
    }
    info = {
        "lead_id": lead_id,
        "events": len(body["events"]),
        "own_events_before_as_of": real,
        "padded": max(n_events - real, 0),
        "as_of": as_of.isoformat(),
        "event_types": mine["event_type"].value_counts().to_dict(),
    }
    return body, info


# --------------------------------------------------------------------------- in-process job


def _alternate(
    cases: dict[str, Callable[[], Any]], calls: int, block: int = 100
) -> dict[str, list[int]]:
    """Each case `calls` times, in blocks of `block` that take turns: slow phases of other work
    on the machine then fall on every case alike. Nanoseconds per call."""
    out: dict[str, list[int]] = {name: [] for name in cases}
    clock = time.perf_counter_ns
    for _ in range(max(calls // block, 1)):
        for name, case in cases.items():
            times = out[name]
            for _ in range(block):
                started = clock()
                case()
                times.append(clock() - started)
    return out


#: What score() calls, timed by wrapping each callee (see `_stage_timers`); the rest of
#: score() (request to dicts, glue) is its total minus these.
STAGES = (
    "lead_features",
    "model_row",
    "booster.predict",
    "calibrate",
    "tier",
    "rule_points",
    "reasons",
    "ScoreOut",
)


class _Timed:
    """A callable that adds its callee's nanoseconds to a running sum."""

    def __init__(self, function: Callable[..., Any], sums: dict[str, int], stage: str) -> None:
        self.function, self.sums, self.stage = function, sums, stage

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.sums[self.stage] += time.perf_counter_ns() - started


def _stage_timers(scoring: ModuleType, model: Any, sums: dict[str, int]) -> Callable[[], None]:
    """Wrap what `serving.scoring.score` calls, by name in its module and on the model's
    objects, so the split follows score() as it is now. Returns the undo."""
    undo: list[Callable[[], None]] = []

    def wrap(owner: Any, name: str, stage: str, instance: bool = False) -> None:
        original = getattr(owner, name)
        timed = _Timed(original, sums, stage)
        if instance:  # frozen dataclasses too: an instance attribute shadows the method
            object.__setattr__(owner, name, timed)
            undo.append(lambda: object.__delattr__(owner, name))
        else:
            setattr(owner, name, timed)
            undo.append(lambda: setattr(owner, name, original))

    for name, stage in (
        ("lead_features", "lead_features"),
        ("model_row", "model_row"),
        ("rule_points", "rule_points"),
        ("reasons", "reasons"),
        ("ScoreOut", "ScoreOut"),
    ):
        if hasattr(scoring, name):
            wrap(scoring, name, stage)
    scorer = model.scorer
    wrap(scorer.booster, "predict", "booster.predict", instance=True)
    wrap(scorer.calibrator, "apply", "calibrate", instance=True)
    wrap(scorer.tiers, "assign", "tier", instance=True)

    def restore() -> None:
        for step in reversed(undo):
            step()

    return restore


def inprocess_job(
    tracking_uri: str, body_path: Path, calls: int, accounts: str | None = None
) -> None:
    """Child process: the floor, score() and its stages, as one JSON line on stdout."""
    use_package()
    from dataclasses import replace

    import lightgbm as lgb
    import pandas as pd

    from serving import scoring
    from serving.accounts import read_book
    from serving.lead import lead_features, model_row
    from serving.model_store import load_model
    from serving.schemas import ScoreRequest
    from training.rules import half_lives

    raw_body = body_path.read_bytes()
    model = load_model(MODEL_URI, tracking_uri)
    if accounts is not None:  # as `leadscore serve --accounts` holds it
        model = replace(model, accounts=read_book(accounts, model.config))
    scoring.warm_up(model)
    scorer = model.scorer
    booster = scorer.booster
    request = ScoreRequest.model_validate_json(raw_body)
    result = scoring.score(model, request)

    features = lead_features(
        request.lead.model_dump(),
        [e.model_dump() for e in request.events],
        request.as_of,
        model.config,
        half_lives(model.rules),
        accounts=None if model.accounts is None else model.accounts.context,
    )
    row = model_row(features.values, scorer.spec)

    # mlflow models serve's input: the same lead's feature row, as build_features gives it
    names, kinds = scorer.spec.names, scorer.spec.kinds
    frame = pd.DataFrame([{name: features.values[name] for name in names}])
    numeric = [n for n, k in zip(names, kinds, strict=True) if k != "categorical"]
    frame = frame.astype(dict.fromkeys(numeric, "float64"))
    mlflow_body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    pyfunc_probability = float(scorer.score(frame)["probability"].iloc[0])

    def floor() -> None:  # as Scorer.raw_score and Scorer.contributions call it
        booster.predict(row, raw_score=True)
        booster.predict(row, pred_contrib=True)

    def floor_1() -> None:
        booster.predict(row, raw_score=True, num_threads=1)
        booster.predict(row, pred_contrib=True, num_threads=1)

    def whole() -> Any:
        return scoring.score(model, request)

    def parse() -> Any:  # what FastAPI does with the body, roughly: json.loads, then validate
        return ScoreRequest.model_validate(json.loads(raw_body))

    def serialize() -> Any:  # and with the answer
        return json.dumps(result.model_dump(mode="json")).encode()

    busy = _cpu_counters()
    started = time.perf_counter()
    _alternate({"floor": floor, "floor_1": floor_1, "score": whole}, 200)
    floors = _alternate({"default_threads": floor, "one_thread": floor_1}, calls)
    wholes = _alternate({"score": whole}, calls)["score"]

    # the stage split: score() again, its callees wrapped; one sum per call and stage
    sums = dict.fromkeys(STAGES, 0)
    stages: dict[str, list[int]] = {name: [] for name in (*STAGES, "rest of score()")}
    restore = _stage_timers(scoring, model, sums)
    try:
        for _ in range(calls):
            for name in sums:
                sums[name] = 0
            t = time.perf_counter_ns()
            scoring.score(model, request)
            total = time.perf_counter_ns() - t
            for name, ns in sums.items():
                stages[name].append(ns)
            stages["rest of score()"].append(total - sum(sums.values()))
    finally:
        restore()
    http_side = _alternate({"parse": parse, "serialize": serialize}, calls)
    seconds = time.perf_counter() - started
    cpu = _cpu_counters()
    own = cpu["own"] - busy["own"]
    print(
        RESULT_PREFIX
        + json.dumps(
            {
                "lightgbm": lgb.__version__,
                "trees": booster.num_trees(),
                "features": len(names),
                "booster_num_threads": booster.params.get("num_threads"),
                "calibration": scorer.calibrator.method,
                "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
                "calls": calls,
                "seconds": seconds,
                "own_cpu_s": own,
                "others_cpu_s": max(cpu["machine"] - busy["machine"] - own, 0.0),
                "floor": {k: _ms(v) for k, v in floors.items()},
                "score": _ms(wholes),
                "stages": {k: _ms(v) for k, v in stages.items() if any(v)},
                "http_side": {k: _ms(v) for k, v in http_side.items()},
                "probability": result.probability,
                "tier": result.tier,
                "pyfunc_probability": pyfunc_probability,
                "mlflow_body": mlflow_body,
            }
        )
    )


def _cpu_counters() -> dict[str, float]:
    """Busy CPU seconds of the whole machine and of this process."""
    import psutil

    t = psutil.cpu_times()
    machine = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
    own = psutil.Process().cpu_times()
    return {"machine": machine, "own": own.user + own.system}


# --------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process started here (in its own session, so its children stop with it)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        path: str,
        body: bytes,
        ready: str,
        log: Path,
    ) -> None:
        self.name, self.port, self.path, self.body, self.log = name, port, path, body, log
        self.command = command
        self._log = log.open("w")
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.ready_url = f"http://127.0.0.1:{port}{ready}"
        self.started = time.perf_counter()

    def wait_ready(self, seconds: float = 180) -> float:
        """Seconds from the process start to its first 200 on the ready URL."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                sys.exit(
                    f"{self.name} exited with {self.process.returncode}; log {self.log}:\n{tail}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.25)
        self.stop()
        sys.exit(f"{self.name} did not answer {self.ready_url} in {seconds:.0f} s; log {self.log}")

    def tree(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        """CPU seconds of the server's process tree so far."""
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(Exception):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def rss_gib(self) -> float:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(Exception):
                total += proc.memory_info().rss
        return total / GIB

    def pids(self) -> list[int]:
        return [p.pid for p in self.tree()]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the group of the process started here
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self._log.close()


# --------------------------------------------------------------------------- clients


class Client:
    """One keep-alive HTTP/1.1 connection posting one prepared body."""

    def __init__(self, server: Server, timeout: float = 30) -> None:
        self.server, self.timeout = server, timeout
        self.headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)

    def post(self) -> tuple[int, bytes]:
        self.conn.request("POST", self.server.path, self.server.body, self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout)

    def close(self) -> None:
        self.conn.close()


def _meter(servers: list[Server]) -> dict[str, Any]:
    counters = _cpu_counters()
    return {"at": counters, "servers": {s.name: s.cpu_s() for s in servers}}


def _metered(before: dict[str, Any], servers: list[Server]) -> dict[str, float]:
    """CPU seconds since `before`: each server's, this client's, and the rest of the machine's."""
    now = _meter(servers)
    out = {f"server:{s.name}": now["servers"][s.name] - before["servers"][s.name] for s in servers}
    out["client"] = now["at"]["own"] - before["at"]["own"]
    machine = now["at"]["machine"] - before["at"]["machine"]
    out["others"] = max(
        machine - out["client"] - sum(v for k, v in out.items() if k.startswith("server:")), 0.0
    )
    return out


def closed_loop(servers: list[Server], requests: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Sequential requests, one connection per server; rounds alternate between servers."""
    clients = {s.name: Client(s) for s in servers}
    for s in servers:
        for _ in range(warmup):
            status, data = clients[s.name].post()
            if status != 200:
                sys.exit(f"{s.name}: warm-up answered {status}: {data[:500]!r}")
    latencies: dict[str, list[int]] = {s.name: [] for s in servers}
    busy: dict[str, float] = {s.name: 0.0 for s in servers}
    cpu: dict[str, dict[str, float]] = {
        s.name: {"server": 0.0, "client": 0.0, "others": 0.0} for s in servers
    }
    errors = {s.name: 0 for s in servers}
    per_round = max(requests // rounds, 1)
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for s in servers:
            client, times = clients[s.name], latencies[s.name]
            # uvicorn drops a connection idle for 5 s (its keep-alive timeout), as this one was
            # while the other servers had their turn: a new one, warmed, for each round
            client.reconnect()
            for _ in range(10):
                client.post()
            before = _meter([s])
            started = clock()
            for _ in range(per_round):
                t = clock()
                status, _ = client.post()
                times.append(clock() - t)
                if status != 200:
                    errors[s.name] += 1
            busy[s.name] += (clock() - started) / 1e9
            used = _metered(before, [s])
            cpu[s.name]["server"] += used[f"server:{s.name}"]
            cpu[s.name]["client"] += used["client"]
            cpu[s.name]["others"] += used["others"]
    for c in clients.values():
        c.close()
    out = {}
    for s in servers:
        n = len(latencies[s.name])
        out[s.name] = {
            "latency_ms": _ms(latencies[s.name]),
            "rps": n / busy[s.name],
            "seconds": busy[s.name],
            "errors": errors[s.name],
            "server_cpu_ms_per_request": cpu[s.name]["server"] * 1000 / n,
            "client_cpu_ms_per_request": cpu[s.name]["client"] * 1000 / n,
            "cpu_s": cpu[s.name],
        }
    return out


def concurrent(server: Server, requests: int, threads: int) -> dict[str, Any]:
    """`threads` client threads, one connection each, `requests` in all, as fast as answered."""
    per_thread = max(requests // threads, 1)
    latencies: list[list[int]] = [[] for _ in range(threads)]
    errors = [0] * threads
    gate = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        client = Client(server)
        for _ in range(10):
            client.post()
        gate.wait()
        clock, times = time.perf_counter_ns, latencies[k]
        for _ in range(per_thread):
            t = clock()
            try:
                status, _ = client.post()
            except (OSError, http.client.HTTPException):
                errors[k] += 1
                client.reconnect()
                continue
            times.append(clock() - t)
            if status != 200:
                errors[k] += 1
        client.close()

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    gate.wait()
    before = _meter([server])
    started = time.perf_counter()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    used = _metered(before, [server])
    n = per_thread * threads
    return {
        "threads": threads,
        "requests": n,
        "seconds": seconds,
        "rps": n / seconds,
        "errors": sum(errors),
        "latency_ms": _ms([x for t in latencies for x in t]),
        "server_cpu_ms_per_request": used[f"server:{server.name}"] * 1000 / n,
        "client_cpu_ms_per_request": used["client"] * 1000 / n,
        "cpu_s": used,
    }


def open_loop(server: Server, rate: float, seconds: float, workers: int) -> dict[str, Any]:
    """Request i is due at start + i/rate; latency is answer time minus due time.

    Worker threads take the next due request in turn; one that is late (all workers busy, or
    the client itself slow) still counts from its due time. Bounded: requests not sent by
    `seconds` + 30 s are errors, and each request times out after 10 s.
    """
    total = int(rate * seconds)
    counter = itertools.count()
    lock = threading.Lock()
    latency: list[int] = []
    service: list[int] = []
    lag: list[int] = []
    errors: dict[str, int] = {}
    clock = time.perf_counter_ns
    start = clock() + 200_000_000  # 0.2 s to get the workers going
    deadline = start + int((seconds + 30) * 1e9)
    step = 1e9 / rate

    def error(kind: str) -> None:
        with lock:
            errors[kind] = errors.get(kind, 0) + 1

    def work() -> None:
        client = Client(server, timeout=10)
        while True:
            i = next(counter)
            if i >= total:
                break
            due = start + int(i * step)
            wait = due - clock()
            if wait > 0:
                time.sleep(wait / 1e9)
            sent = clock()
            if sent > deadline:
                error("not sent by the deadline")
                continue
            try:
                status, _ = client.post()
            except (OSError, http.client.HTTPException) as problem:
                error(type(problem).__name__)
                client.reconnect()
                continue
            done = clock()
            if status != 200:
                error(f"HTTP {status}")
                continue
            with lock:
                latency.append(done - due)
                service.append(done - sent)
                lag.append(sent - due)
        client.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    before = _meter([server])
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = (clock() - start) / 1e9
    used = _metered(before, [server])
    n = len(latency)
    return {
        "target_rate": rate,
        "seconds": seconds,
        "workers": workers,
        "scheduled": total,
        "ok": n,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "achieved_rate": n / elapsed if elapsed > 0 else 0.0,
        "elapsed_s": elapsed,
        "latency_ms": _ms(latency),
        "service_ms": _ms(service),
        "send_lag_ms": _ms(lag),
        "server_cpu_ms_per_request": used[f"server:{server.name}"] * 1000 / max(n, 1),
        "cpu_s": used,
    }


# --------------------------------------------------------------------------- profile

#: Where the server's GIL time goes: the first category (in this order) any frame of a sampled
#: stack matches. Frames are py-spy's "function (file:line)".
PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "score() (serving/scoring.py)",
        ("score (serving/scoring.py", "score (/work/main/serving/scoring.py"),
    ),
    ("answer: validate + serialize", ("serialize_response (",)),
    (
        "request: read + JSON + validate",
        (
            "request_body_to_args (",
            "_validate_value_with_model_field (",
            "Request.body (",
            "Request.json (",
            "json/decoder.py",
        ),
    ),
    ("logging (uvicorn access log)", ("logging/__init__.py",)),
    ("prometheus metrics", ("prometheus_client/",)),
    (
        "thread-pool hops (sync deps + endpoint)",
        (
            "run_in_threadpool (",
            "run_sync_in_worker_thread (",
            "WorkerThread.run (",
            "to_thread.py",
            "call_soon_threadsafe (",
        ),
    ),
    ("HTTP/1.1 parse + write (h11)", ("h11/", "H11Protocol.", "RequestResponseCycle.send (")),
    ("middleware + routing", ("starlette/", "fastapi/")),
    ("asyncio event loop", ("asyncio/",)),
    ("other", ("",)),
)


def profile_server(server: Server, seconds: int, py_spy: Path, out: Path) -> dict[str, Any]:
    """`py-spy record --gil` on the server while one client posts sequentially.

    --gil keeps only samples of the thread holding the GIL: Python CPU time, with the waits
    of the other thread left out. GIL ms per request = samples / rate / requests.
    """
    rate = 200
    if not py_spy.is_file():
        return {"error": f"no {py_spy} (pip install py-spy)"}
    spy = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "-p",
            str(server.process.pid),
            "-d",
            str(max(seconds, 2)),
            "-r",
            str(rate),
            "--gil",
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    client = Client(server)
    requests = 0
    end = time.monotonic() + seconds - 1.5
    while time.monotonic() < end:
        client.post()
        requests += 1
    client.close()
    spy.wait(timeout=seconds + 60)
    if not out.is_file():
        return {"error": f"py-spy wrote nothing (exit {spy.returncode})"}
    categories = dict.fromkeys((name for name, _ in PROFILE_CATEGORIES), 0)
    functions: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")[1:]
        for name, marks in PROFILE_CATEGORIES:
            if any(m in f for f in frames for m in marks):
                categories[name] += n
                break
        for frame in {f.rsplit(":", 1)[0] + ")" for f in frames}:
            functions[frame] = functions.get(frame, 0) + n
    per_request = 1000 / rate / max(requests, 1)
    top = sorted(functions.items(), key=lambda kv: -kv[1])
    return {
        "seconds": seconds,
        "rate_hz": rate,
        "requests": requests,
        "gil_samples": total,
        "gil_ms_per_request": total * per_request,
        "categories_ms_per_request": {k: v * per_request for k, v in categories.items()},
        "top_inclusive_ms_per_request": {k: v * per_request for k, v in top[:60]},
        "raw": str(out),
    }


# --------------------------------------------------------------------------- main


def _cells(lat: dict[str, float], digits: int) -> str:
    return "".join(f"{lat[k]:>{9 if k == 'mean' else 8}.{digits}f}" for k in LATENCY_COLUMNS)


def _pair(lat: dict[str, float]) -> str:
    return f"{lat['p50']:>8.3f} /{lat['p99']:>7.3f}"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "FAIL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=20_000, help="Snapshot size (setup only).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, help="Snapshot folder to reuse or fill.")
    parser.add_argument("--events", type=int, default=50, help="Events of the posted lead.")
    parser.add_argument("--requests", type=int, default=2000, help="Per server and test.")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="Alternations between servers.")
    parser.add_argument("--threads", type=int, default=4, help="Client threads, throughput test.")
    parser.add_argument("--calls", type=int, default=2000, help="In-process calls per case.")
    parser.add_argument("--load-rate", type=float, default=200.0)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--load-workers", type=int, default=8)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument(
        "--omp1", action="store_true", help="Also a leadscore server with OMP_NUM_THREADS=1."
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="Also py-spy (--gil) the leadscore server this long under one client.",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="Keep the work folder and logs.")
    parser.add_argument("--inprocess-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracking", help=argparse.SUPPRESS)
    parser.add_argument("--body", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--accounts", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-accounts",
        action="store_true",
        help="Serve without the account history (serve.accounts): account features unknown.",
    )
    args = parser.parse_args()

    if args.inprocess_job:
        inprocess_job(args.tracking, args.body, args.calls, args.accounts)
        return

    import psutil

    # stopped (kill PID): still stop the servers and remove the work folder, in `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bf = bench_features()
    bin_dir = Path(sys.executable).parent
    leadscore = str(bin_dir / "leadscore")
    machine = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
    }
    print(
        f"machine: {machine['cpus']} cores, {machine['memory_gib']} GiB, "
        f"load average {machine['load_avg_at_start']} (other work may be running)"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    if args.data_dir is None:
        args.data_dir = work / "snapshot"
    servers: list[Server] = []
    try:
        snap = ensure_snapshot(args, leadscore, bf)
        model = train(args.data_dir, work, leadscore)
        body, lead = build_body(args.data_dir, args.events, args.seed)
        body_path = work / "body.json"
        body_path.write_text(json.dumps(body))
        print(
            f"lead: {lead['lead_id']} as of {lead['as_of']}, {lead['events']} events "
            f"({lead['padded']} padded), body {body_path.stat().st_size:,} bytes"
        )

        # the account history, as `leadscore serve --accounts` reads it
        accounts = [] if args.no_accounts else ["--accounts", str(args.data_dir)]
        # in-process, in a fresh child, before any server runs
        job = bf.measure(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--inprocess-job",
                "--tracking",
                model["tracking_uri"],
                "--body",
                str(body_path),
                "--calls",
                str(args.calls),
                *accounts,
            ],
            work / "inprocess.log",
        )
        lines = [x for x in job.pop("output").splitlines() if x.startswith(RESULT_PREFIX)]
        inproc = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
        mlflow_body = inproc.pop("mlflow_body")
        inproc["child"] = job
        print(
            f"in-process: {inproc['trees']} trees, {inproc['features']} features, LightGBM "
            f"{inproc['lightgbm']} (booster num_threads={inproc['booster_num_threads']}); "
            f"{job['seconds']:.1f} s, others used {job['others_cpu_s']:.1f} CPU s meanwhile"
        )

        env = {
            **os.environ,
            "LEADSCORE__MLFLOW__TRACKING_URI": model["tracking_uri"],
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }
        for key in ("LEADSCORE_API_KEYS", "LEADSCORE_ADMIN_KEYS"):
            env.pop(key, None)
        payload = json.dumps(body).encode()
        port = _free_port()
        servers.append(
            Server(
                "leadscore",
                [leadscore, "serve", "--port", str(port), *accounts],
                env,
                port,
                SCORE_PATH,
                payload,
                "/readyz",
                work / "leadscore.log",
            )
        )
        if args.omp1:
            port = _free_port()
            servers.append(
                Server(
                    "leadscore OMP=1",
                    [leadscore, "serve", "--port", str(port), *accounts],
                    {**env, "OMP_NUM_THREADS": "1"},
                    port,
                    SCORE_PATH,
                    payload,
                    "/readyz",
                    work / "leadscore-omp1.log",
                )
            )
        if not args.skip_mlflow:
            port = _free_port()
            servers.append(
                Server(
                    "mlflow",
                    [
                        str(bin_dir / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        MODEL_URI,
                        "--env-manager",
                        "local",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-w",
                        "1",
                    ],
                    {**env, "MLFLOW_TRACKING_URI": model["tracking_uri"]},
                    port,
                    MLFLOW_PATH,
                    json.dumps(mlflow_body).encode(),
                    "/ping",
                    work / "mlflow.log",
                )
            )
        started_in = {s.name: s.wait_ready() for s in servers}
        print("servers: " + ", ".join(f"{k} ready in {v:.1f} s" for k, v in started_in.items()))

        # answers: the same probability everywhere
        answers: dict[str, float] = {}
        for s in servers:
            client = Client(s)
            status, data = client.post()
            client.close()
            if status != 200:
                sys.exit(f"{s.name} answered {status}: {data[:1000]!r}")
            answer = json.loads(data)
            answers[s.name] = float(
                answer["predictions"][0]["probability"]
                if s.name == "mlflow"
                else answer["probability"]
            )
        agree = all(abs(p - inproc["probability"]) <= 1e-9 for p in answers.values())
        print(
            f"answers: in-process p={inproc['probability']:.6f} ({inproc['tier']}); "
            + ", ".join(f"{k} p={v:.6f}" for k, v in answers.items())
            + (" (all agree)" if agree else " (DIFFER)")
        )

        print(f"closed loop: {args.requests} sequential requests per server, {args.rounds} rounds")
        closed = closed_loop(servers, args.requests, args.warmup, args.rounds)
        print(f"throughput: {args.threads} client threads, {args.requests} requests per server")
        parallel = {s.name: concurrent(s, args.requests, args.threads) for s in servers}
        rss = {s.name: s.rss_gib() for s in servers}

        profile: dict[str, Any] = {}
        if args.profile > 0:
            print(f"profile: py-spy record --gil on leadscore serve for {args.profile:g} s")
            raw = args.results.with_name(args.results.stem + "-pyspy.txt")
            raw.parent.mkdir(parents=True, exist_ok=True)
            profile = profile_server(servers[0], args.profile, bin_dir / "py-spy", raw)

        loads: dict[str, Any] = {}
        if not args.skip_load:
            for s in servers:
                if s.name == "mlflow":
                    continue
                print(f"load: {s.name}, {args.load_rate:g} req/s for {args.load_seconds:g} s")
                loads[s.name] = open_loop(s, args.load_rate, args.load_seconds, args.load_workers)
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")

    # ------------------------------------------------------------------ report
    print()
    print(
        f"{'':<18}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'mean ms':>9}{'req/s 1':>9}"
        f"{f'req/s {args.threads}':>9}{'srv CPU ms':>11}{'others CPU s':>14}"
    )
    for s in servers:
        c, p = closed[s.name], parallel[s.name]
        print(
            f"{s.name:<18}{_cells(c['latency_ms'], 2)}{c['rps']:>9.0f}{p['rps']:>9.0f}"
            f"{c['server_cpu_ms_per_request']:>11.2f}"
            f"{c['cpu_s']['others'] + p['cpu_s']['others']:>14.1f}"
        )
    rows = (
        ("score()", inproc["score"]),
        ("floor", inproc["floor"]["default_threads"]),
        ("floor 1 thread", inproc["floor"]["one_thread"]),
    )
    for name, lat in rows:
        print(f"{name:<18}{_cells(lat, 3)}")
    print(
        f"(in-process, {inproc['calls']} calls each; floor = booster.predict raw_score + "
        f"pred_contrib, LightGBM's default threads or num_threads=1; others used "
        f"{inproc['others_cpu_s']:.1f} CPU s meanwhile)"
    )
    print()
    print("score() stages, ms (p50 / p99), in-process:")
    for stage, lat in inproc["stages"].items():
        print(f"  {stage:<24}{_pair(lat)}")
    for stage, lat in inproc["http_side"].items():
        name = f"request {stage}" if stage == "parse" else f"answer {stage}"
        print(f"  {name:<24}{_pair(lat)}   (pydantic + json, as FastAPI does)")
    if "categories_ms_per_request" in profile:
        print()
        print(
            f"leadscore serve, GIL-held ms per request (py-spy --gil, {profile['requests']:,} "
            f"requests): {profile['gil_ms_per_request']:.2f} in all"
        )
        for name, ms in profile["categories_ms_per_request"].items():
            print(f"  {name:<40}{ms:>7.3f}")
    elif profile:
        print(f"profile: {profile['error']}")
    if loads:
        print()
    for name, run in loads.items():
        lat = run["latency_ms"]
        print(
            f"load {name}: {run['ok']:,}/{run['scheduled']:,} ok, {run['errors']} errors "
            f"{run['error_kinds'] or ''}, {run['achieved_rate']:.1f} req/s; from due time "
            f"p50 {lat.get('p50', NAN):.2f} p99 {lat.get('p99', NAN):.2f} "
            f"max {lat.get('max', NAN):.1f} ms; server "
            f"{run['server_cpu_ms_per_request']:.2f} CPU ms/req; others "
            f"{run['cpu_s']['others']:.1f} CPU s"
        )

    ls = closed["leadscore"]
    p50, p99 = ls["latency_ms"]["p50"], ls["latency_ms"]["p99"]
    p50_ok, p99_ok = p50 <= GOAL_P50_MS, p99 <= GOAL_P99_MS
    ratio = ratio_1 = None
    if "mlflow" in parallel:
        ratio = parallel["leadscore"]["rps"] / parallel["mlflow"]["rps"]
        ratio_1 = ls["rps"] / closed["mlflow"]["rps"]
    rps_ok = None if ratio is None else ratio >= GOAL_RPS_RATIO
    load = loads.get("leadscore")
    load_ok = None
    if load is not None:
        kept = load["achieved_rate"] >= LOAD_RATE_KEPT * args.load_rate
        load_ok = load["errors"] == 0 and load["ok"] == load["scheduled"] and kept
    print()
    print(f"goal: p50 <= {GOAL_P50_MS:g} ms (leadscore serve): {_verdict(p50_ok)} ({p50:.2f} ms)")
    print(f"goal: p99 <= {GOAL_P99_MS:g} ms (leadscore serve): {_verdict(p99_ok)} ({p99:.2f} ms)")
    shown = "" if ratio is None else f" ({ratio:.2f}x with {args.threads} threads"
    shown += "" if ratio_1 is None else f"; {ratio_1:.2f}x one client)"
    print(f"goal: req/s >= {GOAL_RPS_RATIO:g}x mlflow models serve: {_verdict(rps_ok)}{shown}")
    shown = ""
    if load is not None:
        p99_load = load["latency_ms"].get("p99", NAN)
        shown = f" ({load['errors']} errors, {load['achieved_rate']:.1f} req/s achieved"
        shown += f", p99 {p99_load:.2f} ms from the due time)"
    print(
        f"goal: {args.load_rate:g} req/s for {args.load_seconds:g} s, 0 errors"
        f" (kept: >= {LOAD_RATE_KEPT:.0%} of the rate): "
        f"{_verdict(load_ok)}{shown}"
    )

    results = {
        "benchmark": "serve",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "snapshot": snap,
        "model": model,
        "lead": lead,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": {
            s.name: {"command": s.command, "ready_s": started_in[s.name], "rss_gib": rss[s.name]}
            for s in servers
        },
        "answers": answers,
        "inprocess": inproc,
        "closed_loop": closed,
        "concurrent": parallel,
        "load": loads,
        "profile": profile,
        "rps_ratio": ratio,
        "rps_ratio_one_client": ratio_1,
        "goals": {
            "p50_le_5ms": p50_ok,
            "p99_le_10ms": p99_ok,
            "rps_ge_4x_mlflow": rps_ok,
            "load_zero_errors": load_ok,
        },
        "scoring_py_sha256": hashlib.sha256(
            (ROOT / "serving" / "scoring.py").read_bytes()
        ).hexdigest(),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
