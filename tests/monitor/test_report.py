"""`leadscore monitor` on scoring runs made here: drift, exit codes, outcomes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from common.config import MonitorConfig
from serving.monitor import monitor_path, monitor_record, write_monitor_record
from serving.monitor_report import ALERT_EXIT, ScoringRun, monitor, outcomes
from training.drift import profile_counts, psi_floor, reference_profile

from .test_profile import SPEC, scored_frame

runner = CliRunner()
UTC = "UTC"


def _write_run(
    folder: Path,
    name: str,
    reference: dict[str, object],
    *,
    n: int,
    seed: int,
    shift: float = 0.0,
    as_of: str = "2026-03-01",
    version: str = "1",
    record_version: str | None = None,
) -> Path:
    """A scores file and its monitoring record, as `leadscore predict` writes them."""
    frame, probability, tier = scored_frame(n, seed, shift)
    scores = pd.DataFrame(
        {
            "lead_id": [f"{name}-{i}" for i in range(n)],
            "as_of": pd.Series(pd.Timestamp(as_of, tz=UTC), index=range(n)),
            "probability": probability,
            "tier": tier,
            "model_name": "leadscore",
            "model_version": version,
        }
    )
    path = folder / f"{name}.parquet"
    scores.to_parquet(path, index=False)
    counts = profile_counts(frame, probability, tier, reference)
    record = monitor_record(
        counts,
        reference,
        model_name="leadscore",
        model_version=record_version or version,
        as_of=as_of,
    )
    write_monitor_record(record, path)
    return path


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    frame, probability, tier = scored_frame(4_000, seed=100)
    return reference_profile(frame, probability, tier, SPEC, horizon_days=90, weekly_weeks=12)


def _monitor(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["monitor", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_same_distribution_is_no_drift(tmp_path: Path, reference: dict[str, object]) -> None:
    runs = [
        _write_run(tmp_path, "march", reference, n=3_000, seed=1, as_of="2026-03-01"),
        _write_run(tmp_path, "april", reference, n=3_000, seed=2, as_of="2026-04-01"),
    ]
    code, output = _monitor(
        *[a for run in runs for a in ("--scores", str(run))], "-r", str(tmp_path / "report")
    )
    assert code == 0, output
    assert "status: ok" in output
    report = json.loads((tmp_path / "report" / "monitor.json").read_text())
    assert report["status"] == "ok" and report["exit_code"] == 0
    assert [run["as_of"] for run in report["runs"]] == ["2026-03-01", "2026-04-01"]
    for run in report["runs"]:
        assert run["psi_score"] < 0.02
        assert max(f["psi"] for f in run["features"]) < 0.02
    html = (tmp_path / "report" / "report.html").read_text()
    assert "plots/psi_features.png" in html and "plots/tier_shares.png" in html
    assert (tmp_path / "report" / "plots" / "psi_features.png").stat().st_size > 1000


def test_shifted_run_alerts_with_exit_3(tmp_path: Path, reference: dict[str, object]) -> None:
    calm = _write_run(tmp_path, "calm", reference, n=3_000, seed=1, as_of="2026-03-01")
    shifted = _write_run(
        tmp_path, "shifted", reference, n=3_000, seed=3, shift=2.0, as_of="2026-04-01"
    )
    code, output = _monitor(
        "--scores", str(calm), "--scores", str(shifted), "-r", str(tmp_path / "report")
    )
    assert code == ALERT_EXIT, output
    report = json.loads((tmp_path / "report" / "monitor.json").read_text())
    assert report["status"] == "alert"
    alerts = " ".join(report["alerts"])
    assert "feature engagement PSI" in alerts
    assert "probability PSI" in alerts
    assert "industry" not in alerts  # the shift moved engagement and scores, not industry
    calm_psi, shifted_psi = (
        {f["feature"]: f["psi"] for f in run["features"]} for run in report["runs"]
    )
    assert shifted_psi["engagement"] > 0.25 > calm_psi["engagement"]
    assert all(alert.startswith("run 2026-04-01") for alert in report["alerts"])


def test_ignored_feature_is_shown_but_does_not_alert(
    tmp_path: Path, reference: dict[str, object]
) -> None:
    runs = [_write_run(tmp_path, "shifted", reference, n=3_000, seed=3, shift=2.0)]
    drift = monitor(
        [_read(runs[0])],
        MonitorConfig(ignore_features=("engagement",), psi_score_alert=5, tier_share_alert=1),
    )
    assert drift.alerts == []
    assert drift.notes == []  # days_since_mql, ignored by default, is no feature here: no note
    typo = monitor([_read(runs[0])], MonitorConfig(ignore_features=("engagment",)))
    assert "monitor.ignore_features names no model feature: ['engagment']" in typo.notes
    features = drift.runs[0].features
    assert features.loc[features["feature"] == "engagement", "psi"].iloc[0] > 0.25


def _read(path: Path) -> ScoringRun:
    from serving.monitor_report import read_run

    return read_run(path)


def test_small_runs_alert_only_beyond_chance(tmp_path: Path, reference: dict[str, object]) -> None:
    # 60 leads of the same distribution: raw PSI is noisy, the floor absorbs it
    small = _write_run(tmp_path, "small", reference, n=60, seed=9)
    result = monitor([_read(small)], MonitorConfig(tier_share_alert=1))
    features = result.runs[0].features
    assert psi_floor(5, 60, 4_000) == pytest.approx(4 * (1 / 60 + 1 / 4_000))
    assert (features["psi"] - features["psi_floor"] < 0.25).all()
    assert result.alerts == []


def test_realised_conversion_per_tier_by_hand() -> None:
    """Hand-checked: which rows have a closed horizon, their labels, tiers and months."""
    t = pd.Timestamp
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6", "L7"],
            "sql_at": [
                t("2026-01-10", tz=UTC),  # within 90 days of 2026-01-01: converted
                pd.NaT,
                t("2026-05-01", tz=UTC),  # after run 1's horizon, within run 2's
                t("2026-03-31", tz=UTC),  # on the last day of run 1's horizon
                pd.NaT,
                t("2025-12-15", tz=UTC),  # converted before it was scored: left out
                pd.NaT,
            ],
            "disqualified_at": [pd.NaT] * 4 + [t("2026-02-01", tz=UTC), pd.NaT, pd.NaT],
        }
    )

    def run(as_of: str, rows: list[tuple[str, float, str]]) -> ScoringRun:
        scores = pd.DataFrame(rows, columns=["lead_id", "probability", "tier"])
        scores["as_of"] = pd.Timestamp(as_of, tz=UTC)
        return ScoringRun(Path(f"{as_of}.parquet"), {"as_of": as_of}, scores)

    runs = [
        run(
            "2026-01-01",
            [
                ("L1", 0.8, "A"),
                ("L2", 0.6, "A"),
                ("L3", 0.4, "B"),
                ("L4", 0.1, "D"),
                ("L5", 0.2, "C"),
                ("L6", 0.05, "D"),
                ("L99", 0.3, "C"),  # not in the snapshot
            ],
        ),
        run("2026-02-01", [("L2", 0.5, "B"), ("L3", 0.45, "B")]),
        run("2026-05-01", [("L7", 0.3, "C")]),  # horizon still open at the snapshot
    ]
    result = outcomes(runs, leads, pd.Timestamp("2026-06-30", tz=UTC), 90)
    labelled = result.rows.set_index(["lead_id", result.rows["as_of"].dt.strftime("%m")])
    assert labelled["label"].to_dict() == {
        ("L1", "01"): 1,
        ("L2", "01"): 0,
        ("L3", "01"): 0,
        ("L4", "01"): 1,
        ("L5", "01"): 0,
        ("L2", "02"): 0,
        ("L3", "02"): 1,
    }
    tiers = result.tiers.set_index("tier")
    assert tiers["n"].to_dict() == {"A": 2, "B": 3, "C": 1, "D": 1}
    assert tiers["conversions"].to_dict() == {"A": 1, "B": 1, "C": 0, "D": 1}
    assert tiers.loc["B", "mean_expected"] == pytest.approx((0.4 + 0.5 + 0.45) / 3)
    calibration = result.calibration.set_index("month")
    assert calibration["n"].to_dict() == {"2026-01": 5, "2026-02": 2}
    assert calibration.loc["2026-01", "predicted"] == pytest.approx(0.42)
    assert calibration.loc["2026-01", "realised"] == pytest.approx(0.4)
    assert calibration.loc["2026-02", "gap"] == pytest.approx(0.5 - 0.475)
    notes = " ".join(result.notes)
    assert "1 scored lead(s) are not in the snapshot" in notes
    assert "1 scored lead(s) have a horizon still open" in notes
    assert "1 scored lead(s) were already converted or disqualified" in notes


def test_missing_monitoring_record_is_a_clear_error(
    tmp_path: Path, reference: dict[str, object]
) -> None:
    path = _write_run(tmp_path, "run", reference, n=50, seed=1)
    monitor_path(path).unlink()
    code, output = _monitor("--scores", str(path), "-r", str(tmp_path / "report"))
    assert code == 2
    assert "no monitoring record" in output and "run.monitor.json" in output
    assert not (tmp_path / "report").exists()  # nothing written


def test_scores_of_another_model_version_are_refused(
    tmp_path: Path, reference: dict[str, object]
) -> None:
    path = _write_run(tmp_path, "run", reference, n=50, seed=1, version="4", record_version="3")
    code, output = _monitor("--scores", str(path), "-r", str(tmp_path / "report"))
    assert code == 2
    assert "50 of 50 rows were scored by leadscore version(s) ['4']" in output
    assert "is of version 3" in output
    assert not (tmp_path / "report").exists()


def test_each_run_is_judged_against_its_own_models_reference(
    tmp_path: Path, reference: dict[str, object]
) -> None:
    # version 2 was trained on a moved market: its runs match its own reference, not version 1's
    frame, probability, tier = scored_frame(4_000, seed=200, shift=1.5)
    retrained = reference_profile(frame, probability, tier, SPEC, horizon_days=90)
    one = _write_run(tmp_path, "one", reference, n=3_000, seed=1, as_of="2026-03-01")
    two = _write_run(
        tmp_path, "two", retrained, n=3_000, seed=2, shift=1.5, as_of="2026-04-01", version="2"
    )
    report_dir = tmp_path / "report"
    code, output = _monitor("--scores", str(one), "--scores", str(two), "-r", str(report_dir))
    assert code == 0, output
    report = json.loads((report_dir / "monitor.json").read_text())
    assert [run["model_version"] for run in report["runs"]] == ["1", "2"]
    assert report["model"]["versions"] == ["1", "2"]
    assert report["verdict"].startswith("No drift") and "1, 2" in report["verdict"]
    # the same moved run against version 1's reference is drift
    moved = _write_run(tmp_path, "moved", reference, n=3_000, seed=3, shift=1.5, version="1")
    code, output = _monitor("--scores", str(moved), "-r", str(tmp_path / "moved_report"))
    assert code == ALERT_EXIT, output


def test_damaged_record_and_missing_scores(tmp_path: Path, reference: dict[str, object]) -> None:
    path = _write_run(tmp_path, "run", reference, n=50, seed=1)
    monitor_path(path).write_text("{not json", encoding="utf-8")
    code, output = _monitor("--scores", str(path))
    assert code == 2 and "not readable JSON" in output
    code, output = _monitor("--scores", str(tmp_path / "absent.parquet"))
    assert code == 2 and "absent.parquet: no such file" in output
    empty = tmp_path / "no_runs"
    empty.mkdir()
    (empty / "training_set.parquet").write_bytes(b"")  # no monitoring record beside it
    code, output = _monitor("--scores", str(empty))
    assert code == 2 and "no_runs: a folder without any scores file" in output


def test_counts_of_another_run_are_refused(tmp_path: Path, reference: dict[str, object]) -> None:
    path = _write_run(tmp_path, "run", reference, n=50, seed=1)
    record = json.loads(monitor_path(path).read_text())
    record["counts"]["rows"] = 49
    monitor_path(path).write_text(json.dumps(record), encoding="utf-8")
    code, output = _monitor("--scores", str(path))
    assert code == 2 and "50 rows, but its monitoring record" in output and "counted 49" in output


def test_a_snapshot_of_another_crm_is_refused(tmp_path: Path, reference: dict[str, object]) -> None:
    path = _write_run(tmp_path, "run", reference, n=50, seed=1, as_of="2025-01-01")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    leads = pd.DataFrame(
        {
            "lead_id": ["X1", "X2"],
            "created_at": ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"],
            "mql_at": ["2024-01-02T00:00:00Z", None],
        }
    )
    leads.to_csv(snapshot / "leads.csv", index=False)
    pd.DataFrame(
        {"lead_id": ["X1"], "occurred_at": ["2024-01-01T10:00:00Z"], "event_type": ["page_view"]}
    ).to_csv(snapshot / "events.csv", index=False)
    (snapshot / "snapshot.json").write_text('{"as_of": "2026-06-30T00:00:00Z"}')
    code, output = _monitor(
        "--scores", str(path), "--snapshot", str(snapshot), "-r", str(tmp_path / "report")
    )
    assert code == 2, output
    assert "none of the 50 scored leads is in the snapshot" in output
    assert not (tmp_path / "report").exists()


def test_outcomes_before_any_horizon_closed_say_so_instead_of_failing() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "mql_at": [pd.Timestamp("2026-06-01", tz=UTC)] * 2,
            "sql_at": pd.Series([pd.NaT, pd.NaT], dtype="datetime64[us, UTC]"),
            "disqualified_at": pd.Series([pd.NaT, pd.NaT], dtype="datetime64[us, UTC]"),
        }
    )
    scores = pd.DataFrame({"lead_id": ["L1", "L2"], "probability": [0.3, 0.1], "tier": ["B", "D"]})
    scores["as_of"] = pd.Timestamp("2026-06-29", tz=UTC)
    run = ScoringRun(Path("2026-06-29.parquet"), {"as_of": "2026-06-29"}, scores)
    result = outcomes([run], leads, pd.Timestamp("2026-06-30", tz=UTC), 90)
    assert result.rows.empty and result.calibration.empty
    assert result.tiers["tier"].tolist() == ["A", "B", "C", "D"]
    assert result.tiers["n"].tolist() == [0, 0, 0, 0]
    assert "no realised conversion yet" in " ".join(result.notes)


def test_a_tier_share_allows_for_chance_at_the_run_size() -> None:
    """A tier's share strays by chance on a small run, and hardly on a large one: a run of 265
    leads may hold a 15% tier at 19% by chance alone, one of 10,000 at 15.7%."""
    from serving.monitor_report import tier_chance

    assert tier_chance(0.15, 265) == pytest.approx(0.0439, abs=1e-4)
    assert tier_chance(0.15, 10_000) == pytest.approx(0.00714, abs=1e-5)
    assert tier_chance(0.0, 265) == 0.0
