"""Plot the scaling runs of bench/features.py and bench/predict.py: time and peak per size.

    python bench/scaling_plot.py                      # bench/results/{features,predict}.json
    python bench/scaling_plot.py --out bench/results/scaling.png

Reads the JSON figures that `features.py --scaling` and `predict.py --scaling` write (either may
be missing) and draws, per job, wall seconds and peak GiB against leads for every side measured
(each --workers setting and DuckDB), with dashed the straight line fitted through each side's
sizes (least squares: a fixed part plus a cost per lead), against which the benches judge
linear growth. The points are what the runs measured; nothing is smoothed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GIB = 1024**3


def series(payload: dict[str, Any]) -> dict[str, list[tuple[int, float, float]]]:
    """Per side: (leads, seconds, peak GiB) of each size, from a features or predict result."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for size in payload.get("sizes", []):
        if payload.get("benchmark") == "features":
            sides = {n: (s["seconds"], s["peak_gib"]) for n, s in size["sides"].items() if s}
        else:
            sides = {
                n: (s["seconds"], s["peak_bytes"] / GIB)
                for n, s in size["leadscore_predict"].items()
            }
            anchor = size.get("anchor")
            if anchor:
                sides["raw LightGBM predict"] = (anchor["stages_s"]["raw_predict"], float("nan"))
        for name, (seconds, peak) in sides.items():
            out.setdefault(name, []).append((int(size["leads"]), seconds, peak))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, default=HERE / "results" / "features.json")
    parser.add_argument("--predict", type=Path, default=HERE / "results" / "predict.json")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaling.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    jobs = [
        (title, json.loads(path.read_text()))
        for title, path in (
            ("leadscore features", args.features),
            ("leadscore predict", args.predict),
        )
        if path.is_file()
    ]
    if not jobs:
        raise SystemExit(f"no results: run the benches with --scaling first ({args.features})")
    figure, axes = plt.subplots(len(jobs), 2, figsize=(11, 4 * len(jobs)), squeeze=False)
    for row, (title, payload) in enumerate(jobs):
        load = payload.get("machine", {}).get("load_avg_at_start") or payload.get(
            "load_avg", {}
        ).get("start")
        for col, (label, index) in enumerate((("seconds", 1), ("peak GiB", 2))):
            ax = axes[row][col]
            for name, points in series(payload).items():
                leads = [p[0] for p in points]
                values = [p[index] for p in points]
                if all(v != v for v in values):  # NaN only: no such figure for this side
                    continue
                (line,) = ax.plot(leads, values, marker="o", label=name)
                if len(points) > 2:
                    slope, fixed = np.polyfit(leads, values, 1)
                    fitted = [fixed + slope * n for n in leads]
                    ax.plot(leads, fitted, linestyle="--", color=line.get_color(), alpha=0.4)
            ax.set_xlabel("leads")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g}M"))
            ax.set_ylabel(label)
            ax.set_title(
                f"{title}: {label}\n{payload.get('when', '')[:16]}, load average {load}", fontsize=9
            )
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
