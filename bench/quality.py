"""The model against the generator's truth and the rules, on the synthetic default snapshot.

    python bench/quality.py                        # the demo's 400k leads, seed 7
    python bench/quality.py --leads 60000 --seed 101

Generates the snapshot (reused from --data-dir when already there), builds the training set
as `leadscore features` does, scores the default rules at every row's cutoff, trains as
`leadscore train` does (no registration) and prints the test slice's figures for the model,
the truth (the generator's p_true) and the rules, against the quality goals:

- test ROC AUC within 0.005 of the truth's;
- expected calibration error at most 0.01;
- Brier score within 2% of the truth's;
- precision at the top 10% at least 1.5x the rules' precision at the same volume.

Writes bench/results/quality.json. Not a test: the goals need the default snapshot's size
(tests/model/test_quality.py checks the same behaviour, with wider bounds, on 60k leads).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _paths import use_package

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def goals(model: dict[str, float], truth: dict[str, float], rules: dict[str, float]) -> dict:
    """Each goal: the measured figure, the bound and whether it holds."""
    gap = truth["roc_auc"] - model["roc_auc"]
    brier = model["brier"] / truth["brier"] - 1.0
    lift = model["precision_at_10pct"] / rules["precision_at_10pct"]
    return {
        "auc_gap_to_truth": {"value": gap, "goal": "<= 0.005", "pass": gap <= 0.005},
        "ece": {"value": model["ece"], "goal": "<= 0.01", "pass": model["ece"] <= 0.01},
        "brier_over_truth": {"value": brier, "goal": "<= 2%", "pass": brier <= 0.02},
        "precision_at_10pct_over_rules": {"value": lift, "goal": ">= 1.5", "pass": lift >= 1.5},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, help="Snapshot folder to reuse or fill.")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    use_package()  # imported here: bench/features.py would shadow the package
    from features.config import build_config
    from features.pipeline import build_training_set
    from features.snapshot import read_snapshot
    from features.synthetic import generate, write_snapshot
    from features.truth import truth_of_rows
    from training import rules as rules_module
    from training.train import train_model

    started = time.perf_counter()
    folder = args.data_dir or Path("data") / "bench" / f"quality_{args.leads}_{args.seed}"
    if not (folder / "truth.parquet").is_file():
        print(f"generating {args.leads:,} leads (seed {args.seed}) into {folder}", flush=True)
        write_snapshot(generate(args.leads, seed=args.seed), folder)
    config = build_config({"source": {"path": str(folder)}})
    snapshot = read_snapshot(config)
    training_set, counts = build_training_set(snapshot, config)
    rule_set = rules_module.load_rules(config.training.rules)
    inputs = rules_module.rule_inputs(snapshot, training_set[["lead_id", "cutoff"]], rule_set)
    points = np.asarray(rules_module.score_points(inputs, rule_set).total, dtype=np.float64)
    truth = truth_of_rows(folder, training_set)
    print(f"{counts.kept:,} rows ({time.perf_counter() - started:.0f} s); training", flush=True)
    result = train_model(training_set, config, points=points, truth=truth)

    test = result.metrics["test"]
    model, truth_m, rules = test["model"], test["truth"], test["rules"]
    print(f"\ntest slice: {int(model['n']):,} rows, base rate {model['base_rate']:.3f}")
    print(f"{'':>22} {'model':>8} {'truth':>8} {'rules':>8}")
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision_at_10pct"):
        row = [m.get(key, float("nan")) for m in (model, truth_m, rules)]
        print(f"{key:>22} " + " ".join(f"{v:8.4f}" for v in row))
    checked = goals(model, truth_m, rules)
    print()
    for name, goal in checked.items():
        verdict = "PASS" if goal["pass"] else "FAIL"
        print(f"{name:>32} {goal['value']:8.4f}  goal {goal['goal']:<7} {verdict}")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "quality.json"
    payload = {
        "leads": args.leads,
        "seed": args.seed,
        "rows": counts.kept,
        "test": {"model": model, "truth": truth_m, "rules": rules},
        "goals": checked,
        "seconds": time.perf_counter() - started,
    }
    out.write_text(json.dumps(payload, indent=2, default=float))
    print(f"\nwrote {out} ({payload['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
