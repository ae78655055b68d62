"""The monitor alerts on a change of market, not on the calendar: both directions, end to end.

A model is trained (default config: sampled ages) on two years of one synthetic CRM; its drift
reference is built as `leadscore train` builds it, its calendar allowance from the last year.
Nights of another CRM from the same generator (other leads, the same market with its seasons,
campaigns and slow drift) are scored and written as `leadscore predict` writes them, and
`leadscore monitor` must exit 0. The same CRM with a shift planted after a date (the lead-source
mix, one feature's distribution, the conversion rate), or scored days after its export, must
make it exit 3 and name what moved.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from common.config import Config, build_config
from features.pipeline import build_features, build_training_set
from features.reader import read_snapshot
from features.synthetic import MarketShift, generate, write_snapshot
from serving.batch import open_mql_rows
from serving.monitor import monitor_record, write_monitor_record
from serving.monitor_report import ALERT_EXIT
from training.drift import profile_counts
from training.tracking import training_reference
from training.train import TrainResult, train_model

pytestmark = [pytest.mark.slow]
runner = CliRunner()
LEADS, MONTHS, AS_OF = 16_000, 24, "2026-06-30"
SHIFT_AT = pd.Timestamp("2026-03-01", tz="UTC")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("market")
    write_snapshot(generate(LEADS, seed=21, months=MONTHS, as_of=AS_OF), root / "train")
    config = build_config({"source": {"path": str(root / "train")}})
    training_set, _ = build_training_set(read_snapshot(config), config)
    result = train_model(training_set, config)
    reference = training_reference(result, config, training_set)
    return {"root": root, "config": config, "result": result, "reference": reference}


def _market(trained: dict, name: str, shift: MarketShift | None) -> Path:
    folder = trained["root"] / name
    if not folder.is_dir():
        chunks = generate(LEADS, seed=22, months=MONTHS, as_of=AS_OF, shift=shift)
        write_snapshot(chunks, folder)
    return folder


def _score_night(trained: dict, snapshot: Path, night: str, out: Path) -> Path:
    """What `leadscore predict` writes: the scores of the open MQLs and the monitoring record."""
    config: Config = trained["config"]
    result: TrainResult = trained["result"]
    snap = read_snapshot(build_config({"source": {"path": str(snapshot)}}))
    as_of = pd.Timestamp(night, tz="UTC")
    rows = open_mql_rows(snap.leads, as_of, config.horizon_days)
    features = build_features(snap, rows, config)
    scored = result.scorer.score(features)
    frame = pd.DataFrame(
        {
            "lead_id": rows["lead_id"].to_numpy(),
            "as_of": rows["cutoff"].to_numpy(),
            "probability": scored["probability"].to_numpy(),
            "tier": scored["tier"].to_numpy(),
            "model_name": "leadscore",
            "model_version": "1",
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out)
    reference = trained["reference"]
    counts = profile_counts(features, frame["probability"].to_numpy(), frame["tier"], reference)
    record = monitor_record(
        counts, reference, model_name="leadscore", model_version="1", as_of=as_of
    )
    write_monitor_record(record, out)
    return out


def _monitor(report: Path, runs: list[Path], snapshot: Path | None = None) -> tuple[int, dict]:
    args = ["monitor", *[a for run in runs for a in ("--scores", str(run))], "-r", str(report)]
    if snapshot is not None:
        args += ["--snapshot", str(snapshot)]
    result = runner.invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads((report / "monitor.json").read_text())


def test_runs_of_the_same_market_exit_0(trained: dict) -> None:
    same = _market(trained, "same", None)
    nights = ["2026-01-15", "2026-03-15", "2026-05-15", "2026-06-29"]
    runs = [
        _score_night(trained, same, n, trained["root"] / "same_runs" / f"{n}.parquet")
        for n in nights
    ]
    code, report = _monitor(trained["root"] / "same_report", runs, snapshot=same)
    assert code == 0, report["alerts"]
    assert report["verdict"].startswith("No drift")
    assert report["outcomes"]["rows"] > 0  # the early nights' horizons have closed


def test_scoring_past_the_exports_time_alerts_on_recency(trained: dict) -> None:
    """Scored two days after the export's as-of time, every lead reads as silent for those
    days: the recency features move beyond any week of the reference's last year. (Over every
    week since the CRM's history began, the calendar allowance excused it.)"""
    same = _market(trained, "same", None)
    runs = [
        _score_night(trained, same, n, trained["root"] / "stale_runs" / f"{n}.parquet")
        for n in ("2026-06-29", "2026-07-02")
    ]
    code, report = _monitor(trained["root"] / "stale_report", runs)
    assert code == ALERT_EXIT
    assert all("run 2026-07-02" in alert for alert in report["alerts"])
    assert "days_since_last_event" in report["verdict"], report["alerts"]


@pytest.mark.parametrize(
    ("kind", "named"),
    [("lead_source", "lead_source"), ("company_size", "company_size")],
)
def test_a_planted_shift_of_the_leads_alerts_and_is_named(
    trained: dict, kind: str, named: str
) -> None:
    shifted = _market(trained, kind, MarketShift(kind, SHIFT_AT))  # type: ignore[arg-type]
    before = _score_night(trained, shifted, "2026-02-15", trained["root"] / kind / "before.parquet")
    after = _score_night(trained, shifted, "2026-06-29", trained["root"] / kind / "after.parquet")
    code, report = _monitor(trained["root"] / f"{kind}_report", [before, after])
    assert code == ALERT_EXIT
    feature_alerts = report["alert_groups"]["features"]
    assert any(f"feature {named} " in alert for alert in feature_alerts), feature_alerts
    assert all("run 2026-06-29" in alert for alert in report["alerts"])  # nothing before it
    assert named in report["verdict"]


def test_a_planted_conversion_shift_alerts_on_calibration(trained: dict) -> None:
    # the odds of converting fall by exp(-1.5) for MQLs from October on: every lead open on
    # the nights below is one of them
    shift = MarketShift("conversion", pd.Timestamp("2025-10-01", tz="UTC"), -1.5)
    shifted = _market(trained, "conversion", shift)
    runs = [
        _score_night(trained, shifted, night, trained["root"] / "conversion" / f"{night}.parquet")
        for night in ("2026-02-15", "2026-03-15")
    ]
    code, report = _monitor(trained["root"] / "conversion_report", runs, snapshot=shifted)
    assert code == ALERT_EXIT
    assert "calibration" in report["alert_groups"], (report["alerts"], report["outcomes"])
    months = report["outcomes"]["calibration"]
    assert all(month["gap"] < -0.03 for month in months)  # fewer convert than predicted
    assert "calibration" in report["verdict"]
    assert np.isfinite([m["realised"] for m in months]).all()
