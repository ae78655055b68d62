"""Threads or processes for the feature kernel: `build_features` over chunks of whole accounts.

    python bench/kernel_workers.py --snapshot data/bench/snapshot-200000 --workers 2

Reads the snapshot once (not measured), builds the training rows, then times the kernel over
the same chunks three ways in this one run, each the fastest of --repeat:

- serial: `build_features` with `features.workers` 1 (the anchor);
- threads: `build_features` with `features.workers` N (`features.parallel`, as shipped);
- processes: the same chunks (`serving.batch.sub_snapshot`, whole accounts) handed to N forked
  processes, each running `build_features` serially on its chunk; the frames come back
  pickled and are concatenated in order.

Prints wall and CPU seconds of each and their ratio to the serial run, and checks that all
three give the same frame. The load average is printed with them: on a shared machine the
ratios say little unless it is low.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from pathlib import Path
from typing import Any

from _paths import use_package

_STATE: dict[str, Any] = {}


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _chunk_in_child(bounds: tuple[int, int]) -> Any:
    """One chunk's features in a forked child, from the snapshot it inherited."""
    import numpy as np

    from features.pipeline import build_features
    from serving.batch import sub_snapshot

    first, stop = bounds
    snapshot, rows, config, position = (
        _STATE[k] for k in ("snapshot", "rows", "config", "position")
    )
    chosen = np.flatnonzero((position >= first) & (position < stop))
    if chosen.shape[0] == 0:
        return None
    return build_features(sub_snapshot(snapshot, first, stop), rows.iloc[chosen], config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--chunk-leads", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    use_package()
    import numpy as np
    import pandas as pd

    from common.config import build_config
    from features.pipeline import account_chunks, build_features
    from features.rows import training_rows
    from features.reader import read_snapshot

    def config_with(workers: int) -> Any:
        return build_config(
            {
                "source": {"path": str(args.snapshot)},
                "features": {"workers": workers, "chunk_leads": args.chunk_leads},
            }
        )

    serial_config = config_with(1)
    snapshot = read_snapshot(serial_config)
    rows, _ = training_rows(snapshot.leads, snapshot.as_of, serial_config, snapshot.flat)
    position = pd.Index(snapshot.leads["lead_id"].to_numpy()).get_indexer(rows["lead_id"])
    account, _ = pd.factorize(snapshot.leads["account_id"], use_na_sentinel=True)
    chunks = account_chunks(account, args.chunk_leads)
    print(
        f"{len(snapshot.leads):,} leads, {len(snapshot.events):,} events, {len(rows):,} rows, "
        f"{len(chunks)} chunks of up to {args.chunk_leads:,} leads; {args.workers} workers"
    )

    def processes() -> pd.DataFrame:
        _STATE.update(snapshot=snapshot, rows=rows, config=serial_config, position=position)
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            parts = [p for p in pool.map(_chunk_in_child, chunks, chunksize=1) if p is not None]
        return pd.concat(parts).loc[rows.index]

    ways = {
        "serial": lambda: build_features(snapshot, rows, serial_config),
        "threads": lambda: build_features(snapshot, rows, config_with(args.workers)),
        "processes": processes,
    }
    results: dict[str, pd.DataFrame] = {}
    timings: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, run in ways.items():
            cpu, started = _cpu_s(), time.perf_counter()
            results[name] = run()
            wall, used = time.perf_counter() - started, _cpu_s() - cpu
            best = timings.get(name)
            timings[name] = (wall, used) if best is None or wall < best[0] else best
    serial_wall = timings["serial"][0]
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}")
    print(f"{'':<12}{'wall s':>8}{'CPU s':>8}{'vs serial':>11}")
    for name, (wall, used) in timings.items():
        print(f"{name:<12}{wall:>8.2f}{used:>8.2f}{wall / serial_wall:>10.2f}x")
    for name in ("threads", "processes"):
        same = results[name].equals(results["serial"])
        print(f"{name}: {'the same frame as serial' if same else 'DIFFERENT from serial'}")
    assert np.array_equal(results["serial"].index, rows.index)


if __name__ == "__main__":
    main()
