"""The model against the generator's truth and the rules, at every age of a lead.

    python bench/quality.py                        # the demo's 400k leads, seed 7
    python bench/quality.py --leads 60000 --seed 101
    python bench/quality.py --leads 80000 --cost   # also train today's at-mql_at-only model
    python bench/quality.py --leads 100000 --config '{"training": {"model": "hazard"}}'

Generates the snapshot (reused from --data-dir when already there), then reads it, builds the
training set and trains through `training.pipeline.run_training`, the pipeline `leadscore train`
runs (no report, no registration), so the model measured is the one the CLI ships; then scores
the test leads at mql_at and every week after it while they are open (0-12 weeks) and holds
each age against the truth at that age (`features.synthetic.probability_at_age`). A nightly
backtest scores the open MQLs of three past nights of a second snapshot (another seed, which
the model never saw) and holds them against what happened next. Goals:

- age 0 (mql_at): test ROC AUC within 0.005 of the truth's; ECE at most 0.01; Brier within 2%
  of the truth's; precision at the top 10% at least 1.5x the rules' at the same volume;
- every week 1-12: ECE at most 0.015, AUC within 0.01 of the truth's;
- nightly backtest: ECE at most 0.02 overall, |mean p - realised| at most 0.02 per age bucket;
- with --cost: the training at most 2x the time of today's (at mql_at only) on the same
  snapshot, both through run_training in this process; reading and building the training set
  are timed apart from the fit (baseline, LightGBM, calibration, evaluation).

Beside each week's AUC gap, two references: `carried_gap`, the gap of ranking each week by the
lead's own score at mql_at (what the model knew at age 0, carried forward), and `implied_gap`,
the gap of a model whose only error is noise that puts it exactly at the age-0 goal (0.005).
The truth at any age is a rising function of the truth at mql_at, so a weekly gap well above
both is ranking lost at that age, not at age 0.

Writes bench/results/quality.json. Not a test: the goals need the default snapshot's size
(tests/model/test_quality.py and test_ages.py check the same behaviour, with wider bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from _paths import use_package

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
T = TypeVar("T")


def goal(value: float, bound: str, holds: bool) -> dict[str, Any]:
    return {"value": value, "goal": bound, "pass": bool(holds)}


def age_zero_goals(model: dict, truth: dict, rules: dict) -> dict[str, dict[str, Any]]:
    """Each goal at mql_at: the measured figure, the bound and whether it holds."""
    gap = truth["roc_auc"] - model["roc_auc"]
    brier = model["brier"] / truth["brier"] - 1.0
    lift = model["precision_at_10pct"] / rules["precision_at_10pct"]
    return {
        "age0_auc_gap_to_truth": goal(gap, "<= 0.005", gap <= 0.005),
        "age0_ece": goal(model["ece"], "<= 0.01", model["ece"] <= 0.01),
        "age0_brier_over_truth": goal(brier, "<= 2%", brier <= 0.02),
        "age0_precision_at_10pct_over_rules": goal(lift, ">= 1.5", lift >= 1.5),
    }


def weekly_goals(per_age: pd.DataFrame) -> dict[str, dict[str, Any]]:
    later = per_age[per_age["age_weeks"] >= 1]
    worst_ece = float(later["ece"].max())
    worst_gap = float(later["auc_gap"].max())
    return {
        "weeks_1_12_worst_ece": goal(worst_ece, "<= 0.015", worst_ece <= 0.015),
        "weeks_1_12_worst_auc_gap": goal(worst_gap, "<= 0.01", worst_gap <= 0.01),
    }


def backtest_goals(table: pd.DataFrame, overall_ece: float) -> dict[str, dict[str, Any]]:
    worst = float(table["gap"].abs().max())
    return {
        "nightly_ece": goal(overall_ece, "<= 0.02", overall_ece <= 0.02),
        "nightly_worst_bucket_gap": goal(worst, "<= 0.02", worst <= 0.02),
    }


def week_aucs(rows: pd.DataFrame, score: np.ndarray, only: int | None = None) -> dict[int, float]:
    """ROC AUC of `score` per `age_weeks` (only week `only` when given), weeks with both
    outcomes."""
    from sklearn.metrics import roc_auc_score

    weeks, labels = rows["age_weeks"].to_numpy(), rows["label"].to_numpy()
    out = {}
    for week in np.unique(weeks) if only is None else [only]:
        index = np.flatnonzero(weeks == week)
        if labels[index].min() != labels[index].max():
            out[int(week)] = float(roc_auc_score(labels[index], score[index]))
    return out


def carried(rows: pd.DataFrame, at_zero: np.ndarray) -> np.ndarray:
    """Each row's lead's value in `at_zero` (one per row of week 0, in their order)."""
    lead = pd.Index(rows["lead_id"].to_numpy())
    zero = (rows["age_weeks"] == 0).to_numpy()
    return np.asarray(at_zero, dtype=np.float64)[pd.Index(lead[zero]).get_indexer(lead)]


def carried_gaps(
    rows: pd.DataFrame, probability: np.ndarray, truth: np.ndarray
) -> dict[int, float]:
    """Per week: the truth's AUC minus the AUC of each row's lead's score at mql_at.

    The truth at any age is a rising function of the truth at mql_at (the generator draws the
    outcome from mql_at's observables alone), so ranking each week by the age-0 score is what a
    model knows at age 0 carried forward; a weekly gap near this one is inherited from age 0.
    """
    zero = (rows["age_weeks"] == 0).to_numpy()
    model = week_aucs(rows, carried(rows, probability[zero]))
    return {week: auc - model[week] for week, auc in week_aucs(rows, truth).items()}


def noise_at_gap(
    rows: pd.DataFrame, truth: np.ndarray, age_zero_gap: float, draws: int = 8, seed: int = 0
) -> tuple[float, dict[int, float]]:
    """What an age-0 AUC gap of `age_zero_gap` implies at later weeks, for a model whose only
    error is noise: the truth's logit at mql_at plus N(0, sigma), sigma chosen by bisection so
    that the mean age-0 gap over `draws` draws is the given one; returns sigma and the mean gap
    per week of ranking by that noisy age-0 score (the truth's own transform to an age keeps
    the order within a week, so no model that knows only this much ranks better)."""
    zero = (rows["age_weeks"] == 0).to_numpy()
    p0 = np.clip(truth[zero], 1e-9, 1 - 1e-9)
    logit0 = np.log(p0 / (1 - p0))
    noise = np.random.default_rng(seed).standard_normal((draws, len(logit0)))
    truth_auc = week_aucs(rows, truth)

    def gaps(sigma: float, only: int | None = None) -> dict[int, float]:
        aucs = [week_aucs(rows, carried(rows, logit0 + sigma * draw), only) for draw in noise]
        return {week: truth_auc[week] - np.mean([a[week] for a in aucs]) for week in aucs[0]}

    low, high = 0.0, 2.0
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (middle, high) if gaps(middle, only=0)[0] < age_zero_gap else (low, middle)
    sigma = (low + high) / 2
    return sigma, gaps(sigma)


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """What `action` returns and the wall seconds it took."""
    clock = time.perf_counter()
    value = action()
    return value, time.perf_counter() - clock


def snapshot_folder(leads: int, seed: int, given: Path | None) -> Path:
    from features.synthetic import generate, write_snapshot

    folder = given or Path("data") / "bench" / f"quality_{leads}_{seed}"
    if not (folder / "truth.parquet").is_file():
        print(f"generating {leads:,} leads (seed {seed}) into {folder}", flush=True)
        write_snapshot(generate(leads, seed=seed), folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, help="Snapshot folder to reuse or fill.")
    parser.add_argument("--backtest-leads", type=int, default=100_000)
    parser.add_argument("--backtest-seed", type=int, help="Default: --seed + 1000.")
    parser.add_argument("--backtest-dir", type=Path, help="Backtest snapshot to reuse or fill.")
    parser.add_argument("--cost", action="store_true", help="Also time today's training.")
    parser.add_argument("--config", type=json.loads, default={}, help="Config overrides (JSON).")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    use_package()  # imported here: bench/features.py would shadow the package
    from common.config import Config, build_config
    from features.pipeline import build_features
    from features.reader import read_snapshot
    from features.truth import truth_of_rows
    from training import rules as rules_module
    from training.ages import (
        backtest_table,
        open_rows_on_nights,
        per_age_metrics,
        weekly_age_rows,
    )
    from training.evaluate import evaluate_scores
    from training.pipeline import TrainingData, TrainOutcome, run_training, training_data

    def train(settings: Config, rows: TrainingData) -> TrainOutcome:  # no report, no registration
        return run_training(settings, data=rows, report_dir=None, register=False)

    started = time.perf_counter()
    folder = snapshot_folder(args.leads, args.seed, args.data_dir)
    config = build_config({"source": {"path": str(folder)}, **args.config})
    data, data_seconds = timed(lambda: training_data(config))
    snapshot, training_set = data.snapshot, data.training_set
    assert snapshot is not None
    print(f"{len(training_set):,} rows ({data_seconds:.0f} s); training", flush=True)
    outcome, train_seconds = timed(lambda: train(config, data))
    result = outcome.result
    assert result is not None
    config = data.settings  # with the custom fields' inferred types, as the pipeline used
    load = os.getloadavg()
    calibrator = result.scorer.calibrator
    print(
        f"trained in {train_seconds:.0f} s (load {load[0]:.1f}, 2 cores); calibrator "
        f"{calibrator.method} (cross-validated log loss {calibrator.cv_log_loss}); "
        + ", ".join(f"{k} {v}" for k, v in result.scorer.describe().items() if k != "features"),
        flush=True,
    )

    # every test lead at mql_at and each week after it while open
    test_leads = result.scored.loc[result.split.mask("test"), "lead_id"].unique()
    horizon = config.horizon_days
    rows = weekly_age_rows(snapshot.leads, test_leads, snapshot.as_of, horizon)
    probability = result.scorer.score(build_features(snapshot, rows, config))["probability"]
    probability = probability.to_numpy(dtype=np.float64)
    truth_rows = truth_of_rows(folder, rows, horizon)
    assert truth_rows is not None
    per_age = per_age_metrics(rows, probability, truth_rows)
    carried = carried_gaps(rows, probability, truth_rows)
    sigma, implied = noise_at_gap(rows, truth_rows, 0.005)
    per_age["carried_gap"] = per_age["age_weeks"].map(carried)
    per_age["implied_gap"] = per_age["age_weeks"].map(implied)
    at_zero = (rows["age_weeks"] == 0).to_numpy()
    rule_set = rules_module.load_rules(config.training.rules)
    zero_rows = rows.loc[at_zero, ["lead_id", "cutoff"]]
    inputs = rules_module.rule_inputs(snapshot, zero_rows, rule_set)
    points = np.asarray(rules_module.score_points(inputs, rule_set).total, dtype=np.float64)
    zero = evaluate_scores(
        rows.loc[at_zero, "label"].to_numpy(),
        {"model": probability[at_zero], "truth": truth_rows[at_zero], "rules": points},
        ["model", "truth"],
    )

    # past nights of a snapshot the model never saw
    backtest_seed = args.backtest_seed if args.backtest_seed is not None else args.seed + 1000
    other = snapshot_folder(args.backtest_leads, backtest_seed, args.backtest_dir)
    other_config = build_config({**config.model_dump(), "source": {"path": str(other)}})
    other_snapshot = read_snapshot(other_config)
    last = other_snapshot.as_of.floor("D") - pd.Timedelta(days=horizon)
    nights = [last - pd.Timedelta(days=d) for d in (60, 30, 0)]
    night_rows = open_rows_on_nights(other_snapshot.leads, nights, horizon, other_snapshot.as_of)
    night_features = build_features(other_snapshot, night_rows, other_config)
    night_p = result.scorer.score(night_features)["probability"].to_numpy(dtype=np.float64)
    backtest, night_ece = backtest_table(night_rows, night_p)
    night_truth = truth_of_rows(other, night_rows, horizon)
    if night_truth is not None:  # the truth's own gap: what sampling alone leaves per bucket
        truth_table, truth_ece = backtest_table(night_rows, night_truth)
        backtest["truth_p"] = truth_table["mean_p"].to_numpy()
        backtest["truth_gap"] = truth_table["gap"].to_numpy()

    cost: dict[str, Any] = {
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "load": load[0],
        "stages_seconds": result.seconds,  # train_model's own clock: fit, calibrate, audit...
    }
    model, truth_m, rules = zero["model"], zero["truth"], zero["rules"]
    print(f"\nage 0 (mql_at): {int(model['n']):,} test rows, base rate {model['base_rate']:.3f}")
    print(f"{'':>22} {'model':>8} {'truth':>8} {'rules':>8}")
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision_at_10pct"):
        row = [m.get(key, float("nan")) for m in (model, truth_m, rules)]
        print(f"{key:>22} " + " ".join(f"{v:8.4f}" for v in row))
    print("\nper week since mql_at, test leads while open:")
    print(per_age.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(
        "carried_gap: the truth's AUC minus that of each lead's own score at mql_at; "
        f"implied_gap: the same for the truth's logit plus noise (sd {sigma:.3f}) that is "
        "0.005 under the truth at age 0, the age-0 goal"
    )
    print(f"\nnightly backtest (seed {backtest_seed}, nights {[str(n.date()) for n in nights]}):")
    print(backtest.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"overall ECE {night_ece:.4f} on {len(night_rows):,} open MQLs", flush=True)
    if night_truth is not None:
        print(f"the truth's own ECE on them {truth_ece:.4f}", flush=True)
    checked = {
        **age_zero_goals(model, truth_m, rules),
        **weekly_goals(per_age),
        **backtest_goals(backtest, night_ece),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "quality.json"
    payload = {
        "leads": args.leads,
        "seed": args.seed,
        "rows": len(training_set),
        "model": config.training.model,
        "sampled_ages": config.snapshot_policy.sampled_ages,
        "calibrator": {"method": calibrator.method, "cv_log_loss": calibrator.cv_log_loss},
        "overrides": args.config,
        "age0": {"model": model, "truth": truth_m, "rules": rules},
        "per_age": per_age.to_dict(orient="records"),
        "implied_noise_sd": sigma,
        "backtest": {
            "seed": backtest_seed,
            "nights": [n.isoformat() for n in nights],
            "buckets": backtest.to_dict(orient="records"),
            "ece": night_ece,
        },
        "cost": cost,
        "goals": checked,
        "seconds": time.perf_counter() - started,
    }
    # written before the cost run (a second training): the quality figures stand without it
    out.write_text(json.dumps(payload, indent=2, default=float))
    if args.cost:
        today = build_config(
            {
                **config.model_dump(),
                "snapshot_policy": {"weekly_weeks": 0, "sampled_ages": 0},
                "features": {**config.features.model_dump(), "at_mql": False},
            }
        )
        today_data, cost["today_data_seconds"] = timed(lambda: training_data(today))
        today_outcome, cost["today_train_seconds"] = timed(lambda: train(today, today_data))
        assert today_outcome.result is not None
        cost["today_stages_seconds"] = today_outcome.result.seconds
        cost["ratio"] = train_seconds / cost["today_train_seconds"]
        cost["ratio_with_data"] = (data_seconds + train_seconds) / (
            cost["today_data_seconds"] + cost["today_train_seconds"]
        )
        cost["today_rows"] = len(today_data.training_set)
        cost["load_after"] = os.getloadavg()[0]
        checked["training_cost_over_today"] = goal(cost["ratio"], "<= 2.0", cost["ratio"] <= 2.0)
        print(
            f"\ntraining {train_seconds:.0f} s on {len(training_set):,} rows against today's "
            f"{cost['today_train_seconds']:.0f} s on {cost['today_rows']:,} rows; reading and "
            f"building the rows {data_seconds:.0f} s against {cost['today_data_seconds']:.0f} s "
            f"(with them {cost['ratio_with_data']:.2f}x; "
            f"load {cost['load']:.1f} / {cost['load_after']:.1f})"
        )
        for name, seconds in cost["stages_seconds"].items():
            today_s = cost["today_stages_seconds"].get(name, float("nan"))
            print(f"  {name:>12} {seconds:8.1f} s against {today_s:8.1f} s")
    print()
    for name, item in checked.items():
        verdict = "PASS" if item["pass"] else "FAIL"
        print(f"{name:>36} {item['value']:8.4f}  goal {item['goal']:<8} {verdict}")
    payload["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(payload, indent=2, default=float))
    print(f"\nwrote {out} ({payload['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
