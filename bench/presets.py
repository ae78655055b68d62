"""Reading through a CRM preset against the contract reader, on the same generated CRM.

    python bench/presets.py                          # 100k leads, seed 7, hubspot and salesforce
    python bench/presets.py --leads 1000000 --layouts salesforce

Writes the synthetic CRM in the contract layout and in each CRM layout (reused from
--data-dir when already there), then times `features.reader.read_snapshot` of each, the
contract's with the default config and each CRM's through examples/<layout>.yaml: the whole
read, from files to a checked snapshot. Each read runs --repeat times in this process; the
best wall time counts, and the CPU time of this process beside it (the machine is shared, so
CPU seconds say more than wall seconds under load). Goal: a preset's read at most 1.5x the
contract reader's. Writes bench/results/presets.json.
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


def time_read(config: Any, repeat: int) -> dict[str, Any]:
    from features.reader import read_snapshot

    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        snap = read_snapshot(config)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        leads, events = len(snap.leads), len(snap.events)
        del snap
    return {"wall_s": min(walls), "cpu_s": min(cpus), "leads": leads, "events": events}


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
    base = Config(source=SourceConfig(path=contract))
    results["contract"] = time_read(base, args.repeat)
    print(f"contract: {results['contract']}", flush=True)
    for layout in args.layouts:
        folder = folder_of(args.data_dir, layout, args.leads, args.seed)
        config = load_config(EXAMPLES / f"{layout}.yaml")
        config = config.model_copy(
            update={"source": config.source.model_copy(update={"path": folder})}
        )
        if args.email_match and layout == "hubspot":
            preset = {**dict(config.preset), "email_match": args.email_match}
            config = config.model_copy(update={"preset": preset})
        timing = time_read(config, args.repeat)
        timing["wall_ratio"] = timing["wall_s"] / results["contract"]["wall_s"]
        timing["cpu_ratio"] = timing["cpu_s"] / results["contract"]["cpu_s"]
        timing["goal"] = f"<= {GOAL}x"
        timing["pass"] = timing["cpu_ratio"] <= GOAL
        results[layout] = timing
        print(f"{layout}: {timing}", flush=True)
    results["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "presets.json"
    temp = out.with_suffix(".json.tmp")
    temp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    temp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
