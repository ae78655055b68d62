"""Reading through a CRM preset against the contract reader, on the same generated CRM.

    python bench/presets.py                          # 100k leads, seed 7, hubspot and salesforce
    python bench/presets.py --leads 1000000 --layouts salesforce

Writes the synthetic CRM in the contract layout and in each CRM layout (reused from
--data-dir when already there), then times `features.reader.read_snapshot` of each, the
contract's with the default config and each CRM's through examples/<layout>.yaml: the whole
read, from files to a checked snapshot. The reads run in --repeat rounds in this process, each
round the contract's and then each layout's, so that a host that speeds up or slows down over
the minutes of a run weighs on both sides of a ratio alike. The best wall time of each side
counts, and its best CPU time of this process beside it (the machine is shared, so CPU seconds
say more than wall seconds under load). Goal: a preset's read at most 1.5x the contract
reader's. Writes bench/results/presets.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _paths import use_package

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EXAMPLES = HERE.parent / "examples"
GOAL = 1.5


def folder_of(root: Path, layout: str, leads: int, seed: int) -> Path:
    """The layout's folder, generated unless a matching one is there."""
    from features.layouts import write_layout
    from features.synthetic import generate

    folder = root / f"presets_{leads}_{seed}" / layout
    meta = folder / "snapshot.json"
    if not (meta.is_file() and json.loads(meta.read_text()).get("n_leads") == leads):
        write_layout(generate(leads, seed, chunk_leads=min(leads, 100_000)), folder, layout=layout)  # type: ignore[arg-type]
    return folder


def time_read(config: Any) -> dict[str, Any]:
    """One whole read: wall and CPU seconds, leads and events."""
    from features.reader import read_snapshot

    start, cpu = time.perf_counter(), time.process_time()
    snap = read_snapshot(config)
    timing = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
    return {**timing, "leads": len(snap.leads), "events": len(snap.events)}


def best(reads: list[dict[str, Any]]) -> dict[str, Any]:
    """The best wall and the best CPU seconds of a side's reads, with each read's."""
    return {
        "wall_s": min(r["wall_s"] for r in reads),
        "cpu_s": min(r["cpu_s"] for r in reads),
        "walls": [round(r["wall_s"], 2) for r in reads],
        "cpus": [round(r["cpu_s"], 2) for r in reads],
        "leads": reads[-1]["leads"],
        "events": reads[-1]["events"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--layouts", nargs="+", default=["hubspot", "salesforce"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("data") / "bench")
    parser.add_argument(
        "--email-match",
        choices=["all", "unique"],
        help="HubSpot's preset.email_match (default: the example's); `unique` leaves out the "
        "mail of the generator's shared addresses instead of fanning it out to every sharer",
    )
    args = parser.parse_args()
    use_package()
    from common.config import Config, SourceConfig, load_config

    results: dict[str, Any] = {"leads": args.leads, "seed": args.seed, "load": os.getloadavg()}
    if args.email_match:
        results["hubspot_email_match"] = args.email_match
    contract = folder_of(args.data_dir, "contract", args.leads, args.seed)
    configs = {"contract": Config(source=SourceConfig(path=contract))}
    for layout in args.layouts:
        folder = folder_of(args.data_dir, layout, args.leads, args.seed)
        config = load_config(EXAMPLES / f"{layout}.yaml")
        config = config.model_copy(
            update={"source": config.source.model_copy(update={"path": folder})}
        )
        if args.email_match and layout == "hubspot":
            preset = {**dict(config.preset), "email_match": args.email_match}
            config = config.model_copy(update={"preset": preset})
        configs[layout] = config
    reads: dict[str, list[dict[str, Any]]] = {side: [] for side in configs}
    for round_ in range(1, args.repeat + 1):
        for side, config in configs.items():
            reads[side].append(time_read(config))
            shown = {k: round(v, 2) for k, v in reads[side][-1].items()}
            print(f"round {round_} {side}: {shown}", flush=True)
    results["contract"] = best(reads["contract"])
    for layout in args.layouts:
        timing = best(reads[layout])
        timing["wall_ratio"] = timing["wall_s"] / results["contract"]["wall_s"]
        timing["cpu_ratio"] = timing["cpu_s"] / results["contract"]["cpu_s"]
        timing["goal"] = f"<= {GOAL}x"
        timing["pass"] = timing["cpu_ratio"] <= GOAL
        results[layout] = timing
        print(
            f"{layout}: {timing['wall_ratio']:.2f}x wall, {timing['cpu_ratio']:.2f}x CPU "
            f"(goal {GOAL}x CPU: {'met' if timing['pass'] else 'not met'})",
            flush=True,
        )
    results["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "presets.json"
    temp = out.with_suffix(".json.tmp")
    temp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    temp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
