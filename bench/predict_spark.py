"""Benchmark `leadscore predict --engine spark` (local[2]) against the pandas engine.

    python bench/predict_spark.py                   # 1M open MQLs, ~50M events
    python bench/predict_spark.py --leads 100000    # a smaller scale

The job is bench/predict.py's: its open-MQL variant of the bench snapshot (DATA/snapshot[-N]-open,
every lead an open MQL at the as-of time) and its model (DATA/predict-model). When they are not
there yet, `python bench/predict.py --leads N --skip-anchor` prepares them (not measured here).

Measured, each in a fresh child: `leadscore predict --engine pandas` (the anchor) and
`leadscore predict --engine spark --master local[2]`, the same snapshot, as-of time and model.
Spark's time includes starting the JVM; beside wall time, the CPU seconds of each job's whole
process tree (as bench/features_spark.py counts them). Both files are then compared: the same
leads in the same order, probabilities within 1e-9, every other column but scored_at equal.
Goal: Spark within 2x of pandas. Prints the figures and writes them to
bench/results/predict_spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _paths import bench_features
from features_spark import tree_cpu

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "predict_spark.json"
DEFAULT_DATA = ROOT / "data" / "bench"
GOAL_RATIO = 2.0


def _prepared(data: Path, leads: int) -> tuple[Path, Path]:
    name = "snapshot" if leads == 1_000_000 else f"snapshot-{leads}"
    snapshot, model = data / f"{name}-open", data / "predict-model"
    if not (snapshot / "snapshot.json").is_file() or not (model / "trained").is_file():
        print(f"preparing {snapshot} and {model} with bench/predict.py (not measured)")
        subprocess.run(
            [
                sys.executable,
                str(HERE / "predict.py"),
                "--leads",
                str(leads),
                "--skip-anchor",
                "--data-dir",
                str(data),
            ],
            check=True,
        )
    return snapshot, model


def _compare(pandas_file: Path, spark_file: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(pandas_file), pd.read_parquet(spark_file)
    same_rows = a["lead_id"].tolist() == b["lead_id"].tolist()
    diff = float(np.abs(a["probability"] - b["probability"]).max()) if same_rows and len(a) else 0
    others = [c for c in a.columns if c not in ("probability", "scored_at")]
    unequal = [c for c in others if same_rows and not a[c].equals(b[c])]
    return {
        "rows": len(a),
        "same_rows": same_rows,
        "max_probability_diff": diff,
        "unequal_columns": unequal,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="Leads in the snapshot.")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    bf = bench_features()
    snapshot, model = _prepared(args.data_dir, args.leads)
    as_of = json.loads((snapshot / "snapshot.json").read_text())["as_of"]
    leadscore = str(Path(sys.executable).with_name("leadscore"))
    saved = dict(os.environ)
    os.environ.update(
        {
            "LEADSCORE__MLFLOW__TRACKING_URI": f"sqlite:///{model / 'mlflow.db'}",
            "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(model / "artifacts"),
            "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
        }
    )
    runs: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-predict-spark-") as tmp:
            folder = Path(tmp)
            for engine in ("pandas", "spark"):
                out = folder / f"{engine}.parquet"
                command = [
                    leadscore, "predict", "--snapshot", str(snapshot), "--as-of", as_of,
                    "--out", str(out), "--engine", engine,
                ]  # fmt: skip
                if engine == "spark":
                    command += ["--master", args.master]
                load = [round(x, 2) for x in os.getloadavg()]
                measured = tree_cpu(bf.measure)(command, folder / f"{engine}.log")
                print(f"--- {engine} (load average before: {load})\n{measured['output'][-1200:]}")
                runs[engine] = {k: v for k, v in measured.items() if k != "output"}
                runs[engine]["load_avg_before"] = load
                runs[engine]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
            agreement = _compare(folder / "pandas.parquet", folder / "spark.parquet")
    finally:
        os.environ.clear()
        os.environ.update(saved)

    ratio = runs["spark"]["seconds"] / runs["pandas"]["seconds"]
    result = {
        "leads": args.leads,
        "snapshot": str(snapshot),
        "as_of": as_of,
        "master": args.master,
        "pandas": runs["pandas"],
        "spark": runs["spark"],
        "ratio_spark_vs_pandas": ratio,
        "goal_ratio": GOAL_RATIO,
        "agreement": agreement,
        "cores": os.cpu_count(),
    }
    # wait4 sees the driver process only: Spark's JVM and Python workers are counted among
    # the "others", so for Spark this is the machine's whole load, Spark's own included
    busy = {k: (v["cpu_s"] + v["others_cpu_s"]) / v["seconds"] for k, v in runs.items()}
    result["machine_busy_cores"] = busy
    cpu = {k: v["tree_cpu_s"] for k, v in runs.items()}
    result["cpu_ratio_spark_vs_pandas"] = cpu["spark"] / cpu["pandas"]
    print(
        f"{agreement['rows']:,} open MQLs: pandas {runs['pandas']['seconds']:.1f} s, "
        f"spark {args.master} {runs['spark']['seconds']:.1f} s: {ratio:.2f}x "
        f"(goal {GOAL_RATIO:.0f}x). Machine busy (cores, every process): "
        f"{busy['pandas']:.2f} in the pandas run ({runs['pandas']['cpu_s']:.0f} CPU s its own), "
        f"{busy['spark']:.2f} in the Spark run. CPU s of each job's process tree: pandas "
        f"{cpu['pandas']:.1f}, spark {cpu['spark']:.1f} ({cpu['spark'] / cpu['pandas']:.2f}x). "
        f"Load average before: pandas {runs['pandas']['load_avg_before']}, spark "
        f"{runs['spark']['load_avg_before']}. Same rows: {agreement['same_rows']}, max |dp| "
        f"{agreement['max_probability_diff']:.1e}, unequal columns: {agreement['unequal_columns']}"
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
