"""The demo's training as `make demo` runs it, against today's model (at `mql_at` only).

    python bench/demo_cost.py                      # the demo's 400k leads, seed 7, 2 rounds
    python bench/demo_cost.py --leads 100000 --repeat 3

Issue 13's cost goal: the demo's training at most 2x the time of the model trained only at
`mql_at`. This bench times the two training commands of `make demo`, each in a fresh child
process and a fresh folder (its own `mlflow.db` and `mlartifacts/`, as on a first run):

    leadscore features --snapshot S --out ts.parquet
    leadscore train --training-set ts.parquet --snapshot S --report-dir report

once with the defaults and once with today's config (no sampled ages, no counts at `mql_at`:
the model before issue 13), in --repeat rounds of default-then-today, so a host that speeds up
or slows down weighs on both sides alike. The fastest round of each side counts. Prints both
commands' seconds, peak GiB and the ratios (the two commands together against the goal, and
`train` alone), and writes bench/results/demo_cost.json. `bench/quality.py --cost` times the
fit inside `run_training` instead, without the report, the MLflow run and the registration
that a user of `make demo` waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _paths import bench_features

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "demo_cost.json"
GIB = 1024**3
GOAL = 2.0
TODAY = """\
snapshot_policy:
  weekly_weeks: 0
  sampled_ages: 0
features:
  at_mql: false
"""
SIDES = ("default", "today")


def clean_env() -> dict[str, str]:
    """The environment without settings that would change either side's config or store."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LEADSCORE__") and not k.startswith("MLFLOW_")
    }


def one_side(bench: Any, side: str, snapshot: Path, work: Path, leadscore: str) -> dict[str, Any]:
    """`leadscore features` then `leadscore train`, as the demo runs them, in `work`."""
    work.mkdir(parents=True)
    config: list[str] = []
    if side == "today":
        (work / "today.yaml").write_text(TODAY)
        config = ["-c", str(work / "today.yaml")]
    env = clean_env()
    out = work / "training_set.parquet"
    features = bench.measure(
        [leadscore, "features", *config, "--snapshot", str(snapshot), "--out", str(out)],
        work / "features.log",
        cwd=work,
        env=env,
    )
    train = bench.measure(
        [
            leadscore,
            "train",
            *config,
            "--training-set",
            str(out),
            "--snapshot",
            str(snapshot),
            "--report-dir",
            str(work / "report"),
        ],
        work / "train.log",
        cwd=work,
        env=env,
    )
    rows = re.search(r"read ([\d,]+) rows", train["output"])
    auc = re.search(r"model: AUC ([\d.]+)", train["output"])
    truth = re.search(r"truth: AUC ([\d.]+)", train["output"])
    return {
        "features_s": features["seconds"],
        "train_s": train["seconds"],
        "total_s": features["seconds"] + train["seconds"],
        "cpu_s": features["cpu_s"] + train["cpu_s"],
        "others_cpu_s": features["others_cpu_s"] + train["others_cpu_s"],
        "peak_gib": max(features["peak_bytes"], train["peak_bytes"]) / GIB,
        "rows": int(rows.group(1).replace(",", "")) if rows else None,
        "auc": float(auc.group(1)) if auc else None,
        "truth_auc": float(truth.group(1)) if truth else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=400_000, help="The demo's size.")
    parser.add_argument("--seed", type=int, default=7, help="The demo's seed.")
    parser.add_argument("--events-per-lead", type=float, default=50.0)
    parser.add_argument("--data-dir", type=Path, help="default: data/bench/demo_<leads>_<seed>")
    parser.add_argument("--repeat", type=int, default=2, help="Rounds of default-then-today.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON figures file.")
    args = parser.parse_args()
    if args.data_dir is None:
        args.data_dir = ROOT / "data" / "bench" / f"demo_{args.leads}_{args.seed}"
    bench = bench_features()
    bin_dir = Path(sys.executable).parent
    leadscore = str(bin_dir / "leadscore") if (bin_dir / "leadscore").exists() else "leadscore"
    print(f"machine: {os.cpu_count()} cores, load average {[round(x, 2) for x in os.getloadavg()]}")
    snapshot = bench.ensure_snapshot(args, leadscore)
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="demo_cost_") as tmp:
        for round_ in range(1, args.repeat + 1):
            for side in SIDES:
                work = Path(tmp) / f"{side}{round_}"
                run = one_side(bench, side, Path(args.data_dir), work, leadscore)
                rounds[side].append(run)
                print(
                    f"round {round_} {side:>7}: features {run['features_s']:.1f} s + train "
                    f"{run['train_s']:.1f} s = {run['total_s']:.1f} s, peak {run['peak_gib']:.2f} "
                    f"GiB, {run['rows']:,} rows, AUC {run['auc']} (others "
                    f"{run['others_cpu_s']:.1f} CPU s meanwhile)"
                )
    best = {side: min(runs, key=lambda r: r["total_s"]) for side, runs in rounds.items()}
    ratio = best["default"]["total_s"] / best["today"]["total_s"]
    train_ratio = best["default"]["train_s"] / best["today"]["train_s"]
    print()
    print(f"{'':>9}{'features s':>12}{'train s':>10}{'total s':>10}{'peak GiB':>10}{'rows':>10}")
    for side in SIDES:
        b = best[side]
        print(
            f"{side:>9}{b['features_s']:>12.1f}{b['train_s']:>10.1f}{b['total_s']:>10.1f}"
            f"{b['peak_gib']:>10.2f}{b['rows']:>10,}"
        )
    print(f"(fastest of {args.repeat} rounds each)")
    print(
        f"goal: the demo's training at most {GOAL:g}x today's: "
        f"{'PASS' if ratio <= GOAL else 'FAIL'} ({ratio:.2f}x; `train` alone {train_ratio:.2f}x)"
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "demo_cost",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "load_after": os.getloadavg(),
        "snapshot": {"path": snapshot["path"], "leads": args.leads, "seed": args.seed},
        "rounds": rounds,
        "best": best,
        "ratio": ratio,
        "train_ratio": train_ratio,
        "goal": {"max_ratio": GOAL, "met": ratio <= GOAL},
    }
    tmp_out = args.results.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(payload, indent=2))
    tmp_out.replace(args.results)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
