"""Benchmark `leadscore serve` under overload, slow clients and saturating batches.

    python bench/overload.py                        # 20k-lead snapshot (reused from --data-dir)
    python bench/overload.py --burst-seconds 10 --steady-seconds 20   # shorter

Setup as bench/serve.py (not measured): the snapshot in --data-dir (generated if missing), a
model trained into a fresh MLflow store, one MQL lead with 50 events as the body, and
`leadscore serve --accounts SNAPSHOT` with the shipped limits (no API keys).

Phases, each an open loop (request i is due at start + i/rate; its latency runs from that due
time, so a slow server cannot hide its queue), one asyncio client with keep-alive connections
opened as needed, a client timeout per request (a client that times out closes its
connection: it has left):

1. baseline: --base-rate (50) req/s for 5 s: the normal latency (p50, p99).
2. burst: --burst-rate (1000) req/s for --burst-seconds (20) with a 1 s client timeout, while
   /healthz is probed every 50 ms on a connection of its own. Goal: every request answered
   within 1 s, 200 or 503, no timeout; /healthz fast.
3. recovery: --base-rate req/s for 5 s right after the burst: the first 0.5 s window whose
   p99 is within 2x the baseline p99 (and under 50 ms) marks latency back. Goal: <= 2 s.
4. steady: --steady-rate (200) req/s for --steady-seconds (60), 5 s client timeout. Goal: 0
   errors.
5. batches: --batch-clients (8) clients posting 1,000-lead batches back to back for 20 s while
   /healthz is probed every 50 ms. Goal: /healthz p99 <= 100 ms.
6. slow heads: --slow-clients (500) connections that send half a request head and stall;
   seconds until the server closes them, and the latency of normal requests meanwhile.

Prints each figure with the CPU the rest of the machine used meanwhile and writes
bench/results/overload.json. The anchor is the baseline latency of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _paths import bench_features, use_package

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "overload.json"
SCORE_PATH = "/v1/score"


def _serve_module() -> ModuleType:
    """bench/serve.py, for its setup (snapshot, training, body) and its Server class."""
    spec = importlib.util.spec_from_file_location("bench_serve", HERE / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the client


class Pool:
    """Keep-alive HTTP/1.1 connections to one server, at most `size` at once (a client
    fleet's connection pools): a request waits for one, and its wait counts in its latency."""

    def __init__(self, port: int, size: int = 256) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)
        self.opened = 0
        # where each timed-out request was when its time ran out: waiting for a free
        # connection of the pool, opening a new one, or waiting for the server's answer
        self.timed_out: dict[str, int] = {}
        self.stage: dict[int, str] = {}

    async def _connection(
        self, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle and not fresh:
            return self.idle.pop()
        self.opened += 1
        self.stage[id(asyncio.current_task())] = "connecting"
        return await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 24)

    async def request(self, raw: bytes, timeout: float) -> int | None:
        """The status of one request: None when no answer came within `timeout`, -1 when
        the connection failed. A kept-alive connection the server has closed meanwhile is
        retried once on a new one, as HTTP clients do."""
        key = id(asyncio.current_task())
        self.stage[key] = "pool slot"
        try:
            async with asyncio.timeout(timeout), self.slots:
                reused = bool(self.idle)
                status = await self._exchange(raw)
                if status == -1 and reused:
                    status = await self._exchange(raw, fresh=True)
                return status
        except TimeoutError:
            stage = self.stage.get(key, "pool slot")
            self.timed_out[stage] = self.timed_out.get(stage, 0) + 1
            return None
        finally:
            self.stage.pop(key, None)

    async def _exchange(self, raw: bytes, fresh: bool = False) -> int | None:
        conn = None
        try:
            conn = await self._connection(fresh)
            reader, writer = conn
            self.stage[id(asyncio.current_task())] = "answer"
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"connection" and b"close" in value.lower():
                    close = True
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if conn is not None:
                conn[1].close()
            return -1
        except asyncio.CancelledError:  # timed out: the client leaves, the server sees it
            if conn is not None:
                conn[1].close()
            raise
        if close:
            conn[1].close()
        else:
            self.idle.append(conn)
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def _raw(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    x = np.asarray(values) * 1000
    return {
        "n": int(x.size),
        "p50": float(np.percentile(x, 50)),
        "p99": float(np.percentile(x, 99)),
        "max": float(x.max()),
    }


async def open_loop(
    pool: Pool, raw: bytes, rate: float, seconds: float, timeout: float
) -> list[tuple[float, int | None, float]]:
    """(due offset, status or None, latency) of each request of an open loop."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    out: list[tuple[float, int | None, float]] = []

    async def one(due: float) -> None:
        status = await pool.request(raw, timeout)
        out.append((due - start, status, loop.time() - due))

    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return out


async def loop_lag(stop: asyncio.Event, every: float = 0.01) -> list[float]:
    """How late the client's own event loop wakes from a `every`-second sleep: a client
    that is itself starved of CPU times out requests the server answered in time."""
    loop = asyncio.get_running_loop()
    lags = []
    while not stop.is_set():
        due = loop.time() + every
        await asyncio.sleep(every)
        lags.append(max(loop.time() - due, 0.0))
    return lags


async def probe(port: int, path: str, stop: asyncio.Event, every: float = 0.05) -> list[float]:
    """Latencies of GET `path` every `every` seconds (10 s timeout) until `stop`."""
    pool = Pool(port)
    raw = _raw("GET", path)
    loop = asyncio.get_running_loop()
    latencies = []
    while not stop.is_set():
        started = loop.time()
        status = await pool.request(raw, 10)
        latencies.append(loop.time() - started if status == 200 else 10.0)
        await asyncio.sleep(every)
    pool.close()
    return latencies


def summarise(results: list[tuple[float, int | None, float]], within: float) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for _, status, _ in results:
        key = {None: "timeout", -1: "error"}.get(status, str(status))
        statuses[key] = statuses.get(key, 0) + 1
    answered = [lat for _, status, lat in results if status is not None and status > 0]
    ok = [lat for _, status, lat in results if status == 200]
    return {
        "sent": len(results),
        "statuses": statuses,
        "answered_within": sum(1 for _, s, lat in results if s in (200, 503) and lat <= within),
        "latency_all_ms": _ms(answered),
        "latency_200_ms": _ms(ok),
    }


def _by_second(results: list[tuple[float, int | None, float]]) -> dict[int, int]:
    """Timed-out requests per second of the phase, by due time: clustered or spread."""
    seconds: dict[int, int] = {}
    for due, status, _ in results:
        if status is None:
            seconds[int(due)] = seconds.get(int(due), 0) + 1
    return seconds


def recovery_seconds(
    results: list[tuple[float, int | None, float]], base_p99_s: float
) -> float | None:
    """Start of the first 0.5 s window whose p99 is within 2x the baseline p99 (< 50 ms)."""
    bound = min(max(2 * base_p99_s, 0.005), 0.05)
    for start in np.arange(0, 5, 0.25):
        window = [lat for due, s, lat in results if start <= due < start + 0.5 and s == 200]
        if len(window) >= 5 and float(np.percentile(window, 99)) <= bound:
            return float(start)
    return None


async def batches(port: int, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` posting batches back to back, /healthz probed meanwhile."""
    stop = asyncio.Event()
    statuses: dict[str, int] = {}
    raw = _raw("POST", "/v1/score/batch", body)

    async def client() -> None:
        pool = Pool(port)
        while not stop.is_set():
            status = await pool.request(raw, 120)
            key = {None: "timeout", -1: "error"}.get(status, str(status))
            statuses[key] = statuses.get(key, 0) + 1
            if status == 503:
                await asyncio.sleep(0.2)
        pool.close()

    prober = asyncio.create_task(probe(port, "/healthz", stop))
    workers = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*workers)
    health = await prober
    return {"batches": statuses, "healthz_ms": _ms(health)}


async def slow_heads(port: int, n: int, raw: bytes) -> dict[str, Any]:
    """`n` connections that stall mid-head: how long the server holds them, and normal
    requests' latency meanwhile."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def stall() -> float | None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None
        writer.write(b"POST /v1/score HTTP/1.1\r\nHost: slow\r\n")
        try:
            async with asyncio.timeout(60):
                await reader.read()  # until the server closes it
        except TimeoutError:
            pass
        writer.close()
        return loop.time() - started

    stalls = [asyncio.create_task(stall()) for _ in range(n)]
    await asyncio.sleep(1)
    pool = Pool(port)
    meanwhile = await open_loop(pool, raw, 20, 5, 5)
    pool.close()
    held = [h for h in await asyncio.gather(*stalls) if h is not None]
    return {
        "connections": n,
        "held_s": _ms(held) if held else {"n": 0},
        "normal_meanwhile": summarise(meanwhile, 1.0),
    }


async def shed_counts(port: int) -> dict[str, float]:
    """leadscore_shed_total by stage, from /metrics: where the server shed what it shed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_raw("GET", "/metrics").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    text = (await reader.read()).decode(errors="replace")
    writer.close()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("leadscore_shed_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('stage="')[1].split('"')[0]] = float(value)
    return counts


async def run_phases(
    args: argparse.Namespace, serve: ModuleType, port: int, raw: bytes, batch: bytes
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def meter() -> dict[str, float]:
        return dict(serve._cpu_counters())

    pool = Pool(port)
    for _ in range(args.warmup):
        await pool.request(raw, 10)
    base = await open_loop(pool, raw, args.base_rate, 5, 5)
    out["baseline"] = summarise(base, 1.0)
    base_p99 = out["baseline"]["latency_200_ms"]["p99"] / 1000
    print(f"baseline: {json.dumps(out['baseline'])}", flush=True)

    stop = asyncio.Event()
    prober = asyncio.create_task(probe(port, "/healthz", stop))
    lagger = asyncio.create_task(loop_lag(stop))
    before = meter()
    opened = pool.opened
    shed_before = await shed_counts(port)
    burst = await open_loop(pool, raw, args.burst_rate, args.burst_seconds, 1.0)
    shed_after = await shed_counts(port)
    timed_out = dict(pool.timed_out)
    opened_in_burst = pool.opened - opened
    recovery = await open_loop(pool, raw, args.base_rate, 5, 5)
    stop.set()
    out["burst"] = summarise(burst, 1.0)
    out["burst"]["timeouts_by_stage"] = timed_out
    out["burst"]["connections_opened"] = opened_in_burst
    out["burst"]["shed_by_stage"] = {k: v - shed_before.get(k, 0) for k, v in shed_after.items()}
    out["burst"]["timeouts_by_second"] = _by_second(burst)
    out["burst"]["client_loop_lag_ms"] = _ms(await lagger)
    out["burst"]["healthz_ms"] = _ms(await prober)
    out["burst"]["cpu"] = {k: v - before.get(k, 0.0) for k, v in meter().items()}
    out["recovery"] = summarise(recovery, 1.0)
    out["recovery"]["back_after_s"] = recovery_seconds(recovery, base_p99)
    print(f"burst: {json.dumps(out['burst'])}", flush=True)
    print(f"recovery: {json.dumps(out['recovery'])}", flush=True)

    steady = await open_loop(pool, raw, args.steady_rate, args.steady_seconds, 5)
    out["steady"] = summarise(steady, 5.0)
    print(f"steady: {json.dumps(out['steady'])}", flush=True)
    pool.close()

    out["batches"] = await batches(port, batch, args.batch_clients, 20)
    print(f"batches: {json.dumps(out['batches'])}", flush=True)
    out["slow_heads"] = await slow_heads(port, args.slow_clients, raw)
    print(f"slow heads: {json.dumps(out['slow_heads'])}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/leadscore-bench/snap20k"))
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--base-rate", type=float, default=50)
    parser.add_argument("--burst-rate", type=float, default=1000)
    parser.add_argument("--burst-seconds", type=float, default=20)
    parser.add_argument("--steady-rate", type=float, default=200)
    parser.add_argument("--steady-seconds", type=float, default=60)
    parser.add_argument("--batch-clients", type=int, default=8)
    parser.add_argument("--slow-clients", type=int, default=500)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    use_package()
    serve = _serve_module()
    bf = bench_features()
    leadscore = str(Path(sys.executable).parent / "leadscore")
    work = Path(tempfile.mkdtemp(prefix="leadscore-overload-"))
    snapshot = serve.ensure_snapshot(args, leadscore, bf)
    model = serve.train(Path(snapshot["path"]), work, leadscore)
    body, info = serve.build_body(Path(snapshot["path"]), args.events, args.seed)
    raw_body = json.dumps(body).encode()
    batch = json.dumps({"leads": [body] * 1000}).encode()
    port = serve._free_port()
    env = {**os.environ, "LEADSCORE__MLFLOW__TRACKING_URI": model["tracking_uri"]}
    env.pop("LEADSCORE_API_KEYS", None)
    env.pop("LEADSCORE_ADMIN_KEYS", None)
    server = serve.Server(
        "leadscore",
        [leadscore, "serve", "--port", str(port), "--accounts", snapshot["path"]],
        env,
        port,
        SCORE_PATH,
        raw_body,
        "/readyz",
        work / "server.log",
    )
    load_before = os.getloadavg()
    try:
        ready_s = server.wait_ready()
        print(
            f"server ready in {ready_s:.1f} s; lead {info['lead_id']} with {info['events']} events"
        )
        import uvloop  # the client's own loop must not be what saturates first

        results = uvloop.run(
            run_phases(args, serve, port, _raw("POST", SCORE_PATH, raw_body), batch)
        )
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["load_average_before"] = load_before
    results["load_average_after"] = os.getloadavg()
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    burst = results["burst"]
    goals = {
        "burst: every request answered within 1 s, 200 or 503": burst["answered_within"]
        == burst["sent"],
        "burst: /healthz p99 <= 100 ms": burst["healthz_ms"].get("p99", 1e9) <= 100,
        "recovery: normal latency back within 2 s": results["recovery"]["back_after_s"] is not None
        and results["recovery"]["back_after_s"] <= 2,
        "steady: 0 errors": results["steady"]["statuses"] == {"200": results["steady"]["sent"]},
        "batches: /healthz p99 <= 100 ms": results["batches"]["healthz_ms"].get("p99", 1e9) <= 100,
    }
    results["goals"] = goals
    for goal, ok in goals.items():
        print(f"{'PASS' if ok else 'FAIL'}  {goal}")
    print(f"load average before {load_before}, after {results['load_average_after']}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str))
    with contextlib.suppress(Exception):
        print(f"wrote {args.results.relative_to(Path.cwd())}")


if __name__ == "__main__":
    main()
