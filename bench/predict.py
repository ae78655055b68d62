"""Benchmark `leadscore predict` (batch scoring of open MQLs) against raw LightGBM predict.

    python bench/predict.py                         # 1M open MQLs, ~50M events
    python bench/predict.py --leads 100000          # a smaller scale
    python bench/predict.py --leads 200000 --workers 1,0   # serial, then every core
    python bench/predict.py --scaling               # 0.25M, 0.5M, 1M, 2M leads

1. Snapshot: the bench snapshot (data/bench/snapshot, 1M leads, seed 7, as bench/features.py
   generates it; another size goes to data/bench/snapshot-N). Reused when already there.
2. Open MQLs: the synthetic generator closes most MQLs quickly (about 4% are open at its as-of
   time), so no as-of time of a generated snapshot has 1M open MQLs. This script therefore
   writes a variant (DIR-open/): the same leads and events (events.parquet is linked), with
   every lead made an open MQL at the as-of time: sql_at and disqualified_at cleared, mql_at
   moved to max(created_at, as_of - 89 days). Every lead is then scored, with all its events
   before the as-of time, which is what the job does for an open MQL. Not measured.
3. Model: trained once on a separate small snapshot (50k leads, seed 11) with `leadscore
   train` into a bench MLflow store (data/bench/predict-model/), reused. Not measured.
4. Measured: `leadscore predict --snapshot DIR-open --as-of AS_OF --out TMP/scores.parquet` in a
   fresh child with `serve.reasons` 0, the goal's scope: reading and checking the snapshot, the
   open-MQL rows, features, probability, tier, points, writing the Parquet file and the
   monitoring record. Wall time and peak RSS (os.wait4: that child alone), once per
   `--workers` setting (`features.workers`; their scores must agree). Goal: end to end within
   4x the anchor's raw LightGBM predict, peak at most 4 GiB. With --with-reasons, the same run
   with the top-3 reasons of every row is measured too (TreeSHAP costs about 1 ms per row per
   core with the default model: long at 1M rows). With --scaling, all of it at 0.25M, 0.5M, 1M
   and 2M leads, each size's time and peak judged against the straight line fitted through all
   sizes (goal: within 15% of it).
5. Anchor (--anchor-job, another fresh child, the same run): reads the same snapshot, builds the
   same rows and the ready matrix (timed as stages, not part of the anchor), then times the
   booster's own `predict` (raw scores) on the whole matrix, and on its first --reason-rows rows
   (100,000) `predict(pred_contrib=True)` and the package's reasons
   (`training.scoring.reason_texts`) on those contributions. Goal: reasons for every row
   (pred_contrib + reason_texts) within 1.2x of pred_contrib alone.
6. Prints the figures and writes them to bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from _paths import bench_features, use_package

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "predict.json"
DEFAULT_DATA = ROOT / "data" / "bench"
GIB = 1024**3
GOAL_RATIO = 4.0  # end to end within 4x raw LightGBM predict on the ready matrix (issue 17)
GOAL_GIB = 4.0  # peak RSS at most 4 GiB (issue 17; it was 8 GiB and 180 s before)
GOAL_REASONS_RATIO = 1.2
GOAL_LINEAR = 0.15  # scaling: every size within 15% of the straight line fitted through all
SCALING_LEADS = (250_000, 500_000, 1_000_000, 2_000_000)
MODEL_LEADS = 50_000
MODEL_SEED = 11


def _rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def _as_of(folder: Path) -> str:
    return str(json.loads((folder / "snapshot.json").read_text())["as_of"])


# --------------------------------------------------------------------------- preparing


def open_job(source: Path, target: Path) -> None:
    """Write the open-MQL variant of `source` into `target` (see the module docstring)."""
    use_package()
    import pandas as pd

    from common.io import write_parquet

    as_of = pd.Timestamp(_as_of(source))
    leads = pd.read_parquet(source / "leads.parquet")
    created = leads["created_at"]
    start = as_of - pd.Timedelta(days=89)
    leads["mql_at"] = created.where(created > start, start).where(created <= as_of, as_of)
    leads["sql_at"] = pd.NaT
    leads["disqualified_at"] = pd.NaT
    write_parquet(leads, target / "leads.parquet")
    events = target / "events.parquet"
    if not events.exists():
        events.symlink_to((source / "events.parquet").resolve())
    meta = json.loads((source / "snapshot.json").read_text())
    meta["files"] = {"leads": "leads.parquet", "events": "events.parquet"}
    meta["open_variant_of"] = str(source)
    (target / "snapshot.json").write_text(json.dumps(meta, indent=2))


def ensure_open(source: Path) -> Path:
    target = source.with_name(source.name + "-open")
    marker = target / "snapshot.json"
    if marker.is_file() and json.loads(marker.read_text()).get("n_leads") == json.loads(
        (source / "snapshot.json").read_text()
    ).get("n_leads"):
        print(f"open variant: reusing {target}")
        return target
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--open-job", "--folder", str(source), "--out", str(target)],
        check=True,
    )
    print(f"open variant: wrote {target} in {time.perf_counter() - started:.1f} s (not measured)")
    return target


def _model_env(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(folder / "artifacts"),
        "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
    }


def ensure_model(data: Path, leadscore: str) -> Path:
    folder = data / "predict-model"
    if (folder / "trained").is_file():
        print(f"model: reusing {folder}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    env = _model_env(folder)
    snapshot = folder / "snapshot"
    subprocess.run(
        [
            leadscore,
            "generate",
            "-n",
            str(MODEL_LEADS),
            "--seed",
            str(MODEL_SEED),
            "-o",
            str(snapshot),
        ],
        check=True,
        env=env,
    )
    subprocess.run(
        [leadscore, "train", "-s", str(snapshot), "-r", str(folder / "report")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    (folder / "trained").write_text("1\n")
    print(f"model: trained in {time.perf_counter() - started:.1f} s (not measured)")
    return folder


# --------------------------------------------------------------------------- the anchor


def anchor_job(snapshot_dir: Path, model_dir: Path, out: Path, reason_rows: int) -> None:
    """Stage times on the way to the ready matrix, then the booster alone on it."""
    use_package()
    os.environ.update(_model_env(model_dir))
    import numpy as np
    import pandas as pd

    from common.config import build_config
    from features.pipeline import build_features
    from features.reader import read_snapshot
    from serving.batch import open_mql_rows
    from serving.model_store import load_model
    from training.reasons import choose
    from training.scorer import feature_matrix
    from training.scoring import reason_texts

    stages: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        stages[name] = time.perf_counter() - started

    t = time.perf_counter()
    model = load_model("models:/leadscore/1", f"sqlite:///{model_dir / 'mlflow.db'}")
    timed("load_model", t)
    t = time.perf_counter()
    source = build_config({"source": {"path": str(snapshot_dir)}}).source
    snap = read_snapshot(model.config.model_copy(update={"source": source}))
    timed("read_snapshot", t)
    t = time.perf_counter()
    rows = open_mql_rows(snap.leads, pd.Timestamp(_as_of(snapshot_dir)), model.config.horizon_days)
    timed("open_rows", t)
    t = time.perf_counter()
    features = build_features(snap, rows, model.config)
    timed("features", t)
    t = time.perf_counter()
    # row-major, LightGBM's fastest layout to predict from: the anchor is the best raw predict
    matrix = np.ascontiguousarray(feature_matrix(features, model.scorer.spec))
    timed("matrix", t)
    booster = model.scorer.booster
    t = time.perf_counter()
    raw = booster.predict(matrix, raw_score=True)
    timed("raw_predict", t)
    part = slice(0, min(reason_rows, len(rows)))  # TreeSHAP costs ~10x predict: a slice
    t = time.perf_counter()
    contributions = np.asarray(booster.predict(matrix[part], pred_contrib=True), dtype=np.float64)
    timed("pred_contrib", t)
    t = time.perf_counter()
    plan = model.reason_plan
    chosen = choose(plan, matrix[part], contributions[:, :-1], 3)
    texts = reason_texts(plan, features.iloc[part], contributions[:, :-1], chosen)
    timed("reason_texts", t)
    assert np.allclose(contributions.sum(axis=1), raw[part], atol=1e-9)
    out.write_text(
        json.dumps(
            {
                "rows": len(rows),
                "reason_rows": part.stop,
                "features": matrix.shape[1],
                "trees": booster.num_trees(),
                "stages_s": stages,
                "peak_gib": _rss_gib(),
                "reasons_sample": str(texts[0]) if len(texts) else None,
            },
            indent=2,
        )
    )


# --------------------------------------------------------------------------- main


def _measure(
    bf: ModuleType,
    command: list[str],
    log: Path,
    model_dir: Path,
    reasons: int,
    workers: int | None = None,
) -> dict[str, Any]:
    """`measure` with the bench model's registry, `serve.reasons` and, when given,
    `features.workers` in the child's environment."""
    env = {**bf.leadscore_env(workers), **_model_env(model_dir)}
    env["LEADSCORE__SERVE__REASONS"] = str(reasons)
    return dict(bf.measure(command, log, env=env))


def measure_size(
    args: argparse.Namespace, bf: ModuleType, leadscore: str, leads: int, model_dir: Path
) -> dict[str, Any]:
    """One snapshot size: leadscore predict with each --workers setting, then the anchor."""
    name = "snapshot" if leads == 1_000_000 else f"snapshot-{leads}"
    snap_args = argparse.Namespace(
        data_dir=args.data_dir / name,
        leads=leads,
        events_per_lead=args.events_per_lead,
        seed=args.seed,
    )
    snapshot = bf.ensure_snapshot(snap_args, leadscore)
    open_dir = ensure_open(Path(snapshot["path"]))
    as_of = _as_of(open_dir)
    settings = bf.worker_settings(args.workers)
    sides: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        folder = Path(tmp)
        written = []
        for workers in settings:
            out = folder / f"scores-{workers}.parquet"
            command = [
                leadscore, "predict", "--snapshot", str(open_dir), "--as-of", as_of,
                "--out", str(out),
            ]  # fmt: skip
            # the goal's scope: read, features, probability, points, tier (no reasons)
            measured = _measure(
                bf, command, folder / f"predict-{workers}.log", model_dir, 0, workers
            )
            print(measured.pop("output")[-800:])
            sides[bf.side_name(workers)] = measured
            # scored_at differs between runs: compare everything else
            written.append(pd_read_without(out, "scored_at"))
        identical = all(frame.equals(written[0]) for frame in written)
        if len(settings) > 1:
            print(
                "check: the scores of every --workers setting are "
                + ("identical (scored_at aside)" if identical else "DIFFERENT")
            )
        scored = len(written[0])
        with_reasons = None
        if args.with_reasons:
            with_reasons = _measure(bf, command, folder / "reasons.log", model_dir, 3, settings[-1])
            print(with_reasons.pop("output")[-600:])
        anchor: dict[str, Any] | None = None
        if not args.skip_anchor:
            anchor_out = folder / "anchor.json"
            anchor_run = bf.measure(
                [sys.executable, __file__, "--anchor-job", "--folder", str(open_dir),
                 "--model", str(model_dir), "--out", str(anchor_out),
                 "--reason-rows-job", str(args.reason_rows)],
                folder / "anchor.log",
            )  # fmt: skip
            anchor = json.loads(anchor_out.read_text())
            anchor["seconds"] = anchor_run["seconds"]
    ratios = {}
    if anchor is not None:
        raw = anchor["stages_s"]["raw_predict"]
        ratios = {name: side["seconds"] / raw for name, side in sides.items()}
    return {
        "leads": leads,
        "open_mqls_scored": scored,
        "events": snapshot["meta"].get("row_counts", {}).get("events"),
        "as_of": as_of,
        "leadscore_predict": sides,
        "identical_scores": identical,
        "leadscore_predict_with_reasons": with_reasons,
        "anchor": anchor,
        "ratio_end_to_end_vs_raw_predict": ratios,
    }


def pd_read_without(path: Path, column: str) -> Any:
    import pandas as pd

    return pd.read_parquet(path).drop(columns=[column])


def print_size(result: dict[str, Any]) -> None:
    print()
    print(f"{result['leads']:,} leads: {result['open_mqls_scored']:,} open MQLs scored")
    for name, side in result["leadscore_predict"].items():
        peak = side["peak_bytes"] / GIB
        ratio = result["ratio_end_to_end_vs_raw_predict"].get(name)
        shown = f"; {ratio:.1f}x raw LightGBM predict (goal {GOAL_RATIO:g}x)" if ratio else ""
        print(
            f"{name}: {side['seconds']:.1f} s, {peak:.2f} GiB peak (goal {GOAL_GIB:g} GiB), "
            f"{side['cpu_s']:.1f} CPU s; other processes used "
            f"{side['others_cpu_s'] / side['seconds']:.2f} cores meanwhile{shown}"
        )
    with_reasons = result["leadscore_predict_with_reasons"]
    if with_reasons is not None:
        print(
            f"with top-3 reasons: {with_reasons['seconds']:.1f} s, "
            f"{with_reasons['peak_bytes'] / GIB:.2f} GiB peak"
        )
    anchor = result["anchor"]
    if anchor is not None:
        s = anchor["stages_s"]
        reasons_ratio = (s["pred_contrib"] + s["reason_texts"]) / s["pred_contrib"]
        result["ratio_reasons_vs_pred_contrib"] = reasons_ratio
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in s.items())
        print(f"anchor stages ({anchor['rows']:,} rows, {anchor['trees']} trees): {shown}")
        print(
            f"reasons on {anchor['reason_rows']:,} rows: pred_contrib {s['pred_contrib']:.1f} s "
            f"+ reason_texts {s['reason_texts']:.1f} s = {reasons_ratio:.2f}x pred_contrib "
            f"(goal {GOAL_REASONS_RATIO}x)"
        )


def scaling_table(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Time and peak of each size against the smallest, and how far each size is from a
    straight line (bench/features.py's `scaling_verdict`)."""
    bf = bench_features()
    smallest = results[0]
    verdicts: dict[str, Any] = {}
    print()
    print(f"scaling (x: against {smallest['leads']:,} leads; goal: on a straight line within "
          f"{GOAL_LINEAR:.0%})")  # fmt: skip
    print(
        f"{'leads':>10}{'side':>16}{'seconds':>10}{'x time':>8}{'peak GiB':>10}{'x peak':>8}"
        f"{'vs raw predict':>16}"
    )
    for name, base in smallest["leadscore_predict"].items():
        sizes, seconds, peaks = [], [], []
        for result in results:
            side = result["leadscore_predict"].get(name)
            if side is None:
                continue
            sizes.append(result["leads"])
            seconds.append(side["seconds"])
            peaks.append(side["peak_bytes"] / GIB)
            ratio = result["ratio_end_to_end_vs_raw_predict"].get(name)
            print(
                f"{result['leads']:>10,}{name:>16}{side['seconds']:>10.1f}"
                f"{side['seconds'] / base['seconds']:>8.2f}{side['peak_bytes'] / GIB:>10.2f}"
                f"{side['peak_bytes'] / base['peak_bytes']:>8.2f}"
                + (f"{ratio:>16.1f}" if ratio else "")
            )
        if len(sizes) > 2:
            verdicts[name] = bf.scaling_verdict(name, sizes, seconds, peaks)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="Leads in the snapshot.")
    parser.add_argument("--events-per-lead", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--skip-anchor", action="store_true", help="Measure leadscore only.")
    parser.add_argument(
        "--reason-rows",
        type=int,
        default=100_000,
        help="Rows the anchor times pred_contrib and the reasons on (the first N).",
    )
    parser.add_argument(
        "--with-reasons",
        action="store_true",
        help="Also measure leadscore predict with the top-3 reasons of every row (TreeSHAP: "
        "about 1 ms per row per core with the default model, so long at 1M rows).",
    )
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
    parser.add_argument("--scaling-leads", help="Comma-separated sizes for --scaling.")
    parser.add_argument("--reason-rows-job", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument("--open-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--anchor-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open_job:
        open_job(args.folder, args.out)
        return
    if args.anchor_job:
        anchor_job(args.folder, args.model, args.out, args.reason_rows_job)
        return

    bf = bench_features()
    leadscore = str(Path(sys.executable).with_name("leadscore"))
    load_start = [round(x, 2) for x in os.getloadavg()]
    print(f"machine: {os.cpu_count()} cores, load average {load_start} (other work may be running)")
    model_dir = ensure_model(args.data_dir, leadscore)
    if args.scaling:
        sizes = sorted(
            int(n) for n in (args.scaling_leads or ",".join(map(str, SCALING_LEADS))).split(",")
        )
    else:
        sizes = [args.leads]
    results = []
    for leads in sizes:
        result = measure_size(args, bf, leadscore, leads, model_dir)
        print_size(result)
        results.append(result)
    scaling = scaling_table(results) if len(results) > 1 else None
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end: {load_end}")
    payload = {
        "benchmark": "predict",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_avg": {"start": load_start, "end": load_end},
        "workers": bf.worker_settings(args.workers),
        "goals": {
            "ratio_vs_raw_predict": GOAL_RATIO,
            "peak_gib": GOAL_GIB,
            "reasons_ratio": GOAL_REASONS_RATIO,
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
