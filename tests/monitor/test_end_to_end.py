"""Train → predict → monitor through the CLI, on a real MLflow store and synthetic snapshots.

The model is trained with weekly cutoffs (`snapshot_policy.weekly_weeks`), as a model that
re-scores open MQLs should be, so its reference and a batch run describe the same population.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from features.synthetic import generate, write_snapshot
from serving.model_store import load_model
from serving.monitor_report import ALERT_EXIT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()
MODEL = "models:/leadscore/1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | dict[str, str]]:
    root = tmp_path_factory.mktemp("monitor")
    write_snapshot(generate(6_000, seed=11, months=12), root / "snapshot")
    # the same market a year on is not needed: fewer events per lead is drift enough
    write_snapshot(generate(5_000, seed=12, months=12, events_per_lead=15), root / "shifted")
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(root / "artifacts"),
        "LEADSCORE__SNAPSHOT_POLICY__WEEKLY_WEEKS": "12",
    }
    result = runner.invoke(
        app, ["train", "-s", str(root / "snapshot"), "-r", str(root / "train_report")], env=env
    )
    assert result.exit_code == 0, result.output
    return {"root": root, "env": env}


def _predict(trained: dict, snapshot: str, as_of: str, out: Path) -> None:
    snapshot_path = str(trained["root"] / snapshot)
    args = ["predict", "-s", snapshot_path, "--as-of", as_of, "--out", str(out)]
    result = runner.invoke(app, [*args, "--model-uri", MODEL], env=trained["env"])
    assert result.exit_code == 0, result.output
    assert out.with_name(f"{out.stem}.monitor.json").is_file()


def test_the_model_carries_its_reference(trained: dict) -> None:
    model = load_model(MODEL, trained["env"]["LEADSCORE__MLFLOW__TRACKING_URI"])
    assert model.reference is not None
    assert set(model.reference["features"]) == set(model.scorer.spec.names)
    assert model.reference["horizon_days"] == 90
    assert model.reference["weekly_weeks"] == 12


def _monitor(trained: dict, report: Path, *args: str, **env: str) -> tuple[int, dict, str]:
    result = runner.invoke(
        app, ["monitor", *args, "-r", str(report)], env={**trained["env"], **env}
    )
    return result.exit_code, json.loads((report / "monitor.json").read_text()), result.output


def test_predict_then_monitor(trained: dict) -> None:
    root: Path = trained["root"]
    runs = root / "runs"
    _predict(trained, "snapshot", "2026-02-28", runs / "2026-02-28.parquet")
    _predict(trained, "snapshot", "2026-03-31", runs / "2026-03-31.parquet")
    same = ["--scores", str(runs / "2026-02-28.parquet")]
    same += ["--scores", str(runs / "2026-03-31.parquet"), "--snapshot", str(root / "snapshot")]
    code, summary, output = _monitor(trained, root / "report", *same)
    # the folder of nightly files stands for its runs, in name order
    code_folder, by_folder, _ = _monitor(
        trained, root / "report_folder", "--scores", str(runs), "--snapshot", str(root / "snapshot")
    )
    assert code_folder == code
    assert [r["scores"] for r in by_folder["runs"]] == [r["scores"] for r in summary["runs"]]
    assert by_folder["alerts"] == summary["alerts"]
    # the runs come from the market the model was trained on: the score, the tiers and the
    # calibration hold. Windowed engagement features follow the campaign calendar of the day,
    # which one run sees and the year-long reference averages out (PSI up to about 0.6 here).
    assert not [a for a in summary["alerts"] if "feature" not in a], summary["alerts"]
    for run in summary["runs"]:
        assert run["psi_score"] < 0.1
        assert run["rows"] > 200
    # both runs' horizons closed by the snapshot's as-of (2026-06-30): outcomes are known
    calibration = summary["outcomes"]["calibration"]
    assert [m["month"] for m in calibration] == ["2026-02", "2026-03"]
    assert sum(m["n"] for m in calibration) == sum(r["rows"] for r in summary["runs"])
    for month in calibration:
        assert abs(month["gap"]) < 0.05, calibration
    tiers = {t["tier"]: t for t in summary["outcomes"]["tiers"]}
    assert tiers["A"]["conversion_rate"] > tiers["D"]["conversion_rate"]
    page = (root / "report" / "report.html").read_text()
    assert "plots/calibration.png" in page and "plots/realised_tiers.png" in page
    # with feature alerts at PSI 1, the same market passes
    tolerant = {"LEADSCORE__MONITOR__PSI_FEATURE_ALERT": "1.0"}
    code, summary, output = _monitor(trained, root / "report", *same, **tolerant)
    assert code == 0, output
    assert summary["status"] == "ok" and "status: ok" in output

    # another market, fewer events per lead: alerts even at PSI 1
    _predict(trained, "shifted", "2026-03-31", runs / "shifted.parquet")
    code, shifted, output = _monitor(
        trained, root / "report2", "--scores", str(runs / "shifted.parquet"), **tolerant
    )
    assert code == ALERT_EXIT, output
    assert any("feature n_events_all PSI" in alert for alert in shifted["alerts"]), output
    worst = max(
        f["psi"] for f in shifted["runs"][0]["features"] if f["feature"] != "days_since_mql"
    )
    assert worst > 2 * max(
        f["psi"]
        for run in summary["runs"]
        for f in run["features"]
        if f["feature"] != "days_since_mql"
    )


@pytest.mark.browser
def test_reports_render_in_a_browser_with_every_image(trained: dict) -> None:
    """The training report and the monitoring report open from disk in headless chromium
    (no network): every image loads (naturalWidth > 0) and the page has its headings."""
    from tests.browser import chromium, images, severe_console_errors

    root: Path = trained["root"]
    out = root / "browser_runs" / "2026-03-31.parquet"
    _predict(trained, "snapshot", "2026-03-31", out)
    code, _, output = _monitor(
        trained, root / "browser_report", "--scores", str(out), "--snapshot", str(root / "snapshot")
    )
    assert code in (0, ALERT_EXIT), output
    pages = [root / "train_report" / "index.html", root / "browser_report" / "report.html"]
    with chromium() as browser:
        for page in pages:
            browser.get(page.as_uri())
            shown = images(browser)
            assert len(shown) >= 3, (page, shown)
            broken = [image["src"] for image in shown if image["width"] == 0]
            assert broken == [], (page, broken)
            assert browser.find_elements("css selector", "h1, h2"), page
            assert severe_console_errors(browser) == [], page
