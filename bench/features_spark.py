"""Benchmark `leadscore features --engine spark` (local[2]) against the pandas engine.

    python bench/features_spark.py                  # 1M leads, ~50M events (issue 17 goal)
    python bench/features_spark.py --leads 100000   # a smaller scale

The snapshot is bench/features.py's (generated unless --data-dir already holds one of that
size; not measured): DATA for 1M leads, DATA-N otherwise. Measured, each in a fresh child, in
the same run: `leadscore features` (the pandas engine, every core) and `leadscore features
--engine spark --master local[2]`, the same snapshot and settings. Spark's time includes
starting the JVM. The two training sets and summaries are then compared byte for byte.
Goal (issue 17): Spark within 1.3x of pandas at 1M leads. Prints the figures with the load
average beside each run and writes them to bench/results/features_spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _paths import bench_features

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "features_spark.json"
DEFAULT_DATA = ROOT / "data" / "bench" / "snapshot"
GOAL_RATIO = 1.3


def _folder(data: Path, leads: int) -> Path:
    return data if leads == 1_000_000 else data.with_name(f"{data.name}-{leads}")


def tree_cpu(measure: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`measure` that also adds up the CPU seconds of the child's whole process tree
    (`tree_cpu_s`: Spark's JVM and its Python workers included), read twice a second: on a
    machine shared with other work, CPU seconds compare the engines where wall time cannot."""
    import psutil

    def measured(command: list[str], log: Path) -> dict[str, Any]:
        seen: dict[int, float] = {}
        stop = threading.Event()
        me = psutil.Process()
        known = {c.pid for c in me.children(recursive=True)}

        def poll() -> None:
            while not stop.wait(0.5):
                for job in me.children():  # the job's driver: its own CPU comes from wait4
                    if job.pid in known:
                        continue
                    try:
                        below = job.children(recursive=True)  # the JVM, the Python workers
                    except psutil.Error:
                        continue
                    for child in below:
                        try:
                            times = child.cpu_times()
                        except psutil.Error:
                            continue
                        total = times.user + times.system
                        seen[child.pid] = max(seen.get(child.pid, 0.0), total)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            result = measure(command, log)
        finally:
            stop.set()
            watcher.join()
        # the driver's figure is exact (wait4); its descendants' (Spark's JVM and workers,
        # which it does not wait for) as last read, so a little short
        result["tree_cpu_s"] = result["cpu_s"] + sum(seen.values())
        return result

    return measured


def _same_bytes(a: Path, b: Path) -> dict[str, bool]:
    return {
        "training_set": a.read_bytes() == b.read_bytes(),
        "summary": a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="Leads in the snapshot.")
    parser.add_argument("--events-per-lead", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="1M-lead snapshot.")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    bf = bench_features()
    leadscore = str(Path(sys.executable).with_name("leadscore"))
    args.data_dir = _folder(args.data_dir, args.leads)
    snapshot = bf.ensure_snapshot(args, leadscore)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-features-spark-") as tmp:
        folder = Path(tmp)
        for engine in ("pandas", "spark"):
            out = folder / engine / "training_set.parquet"
            command = [
                leadscore, "features", "--snapshot", str(args.data_dir), "--out", str(out),
                "--engine", engine,
            ]  # fmt: skip
            if engine == "spark":
                command += ["--master", args.master]
            load = [round(x, 2) for x in os.getloadavg()]
            measured = tree_cpu(bf.measure)(command, folder / f"{engine}.log")
            print(f"--- {engine} (load average before: {load})\n{measured['output'][-800:]}")
            runs[engine] = {k: v for k, v in measured.items() if k != "output"}
            runs[engine]["load_avg_before"] = load
            runs[engine]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        same = _same_bytes(
            folder / "pandas" / "training_set.parquet", folder / "spark" / "training_set.parquet"
        )

    ratio = runs["spark"]["seconds"] / runs["pandas"]["seconds"]
    # wait4 sees the driver process only: Spark's JVM and Python workers are among the
    # "others", so for Spark this is the machine's whole load, Spark's own included
    busy = {k: (v["cpu_s"] + v["others_cpu_s"]) / v["seconds"] for k, v in runs.items()}
    result = {
        "leads": args.leads,
        "snapshot": snapshot,
        "master": args.master,
        "pandas": runs["pandas"],
        "spark": runs["spark"],
        "ratio_spark_vs_pandas": ratio,
        "goal_ratio": GOAL_RATIO,
        "byte_identical": same,
        "machine_busy_cores": busy,
        "cores": os.cpu_count(),
    }
    cpu = {k: v["tree_cpu_s"] for k, v in runs.items()}
    result["cpu_ratio_spark_vs_pandas"] = cpu["spark"] / cpu["pandas"]
    verdict = "pass" if ratio <= GOAL_RATIO else "FAIL"
    print(
        f"{args.leads:,} leads: pandas {runs['pandas']['seconds']:.1f} s "
        f"(peak {runs['pandas']['peak_bytes'] / 1024**3:.2f} GiB), spark {args.master} "
        f"{runs['spark']['seconds']:.1f} s (driver peak "
        f"{runs['spark']['peak_bytes'] / 1024**3:.2f} GiB): {ratio:.2f}x, goal "
        f"{GOAL_RATIO}x at 1M: {verdict}. Load average before: pandas "
        f"{runs['pandas']['load_avg_before']}, spark {runs['spark']['load_avg_before']}; "
        f"machine busy (cores, every process): {busy['pandas']:.2f} / {busy['spark']:.2f}. "
        f"CPU s of each job's process tree: pandas {cpu['pandas']:.1f}, spark "
        f"{cpu['spark']:.1f} ({cpu['spark'] / cpu['pandas']:.2f}x). "
        f"Byte-identical: {same}"
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
