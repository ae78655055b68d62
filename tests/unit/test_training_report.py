"""The training report is one self-contained page that opens with its verdict, in words."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from common.config import Config, build_config
from features.pipeline import build_training_set
from features.reader import read_snapshot
from features.synthetic import generate, write_snapshot
from training.reporting import Registration, TrainingReport, verdict
from training.rules import load_rules, rule_inputs, score_points
from training.train import TrainResult, train_model

pytestmark = pytest.mark.slow


class _Page(HTMLParser):
    """Every tag's attributes, the headings' text, and whether the page parsed whole."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[str] = []
        self._in_heading = False
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_heading = tag in ("h1", "h2", "h3")
        if tag in ("section", "table", "figure", "body"):
            self.open.append(tag)
        if self._in_heading:
            self.headings.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_heading = False if tag in ("h1", "h2", "h3") else self._in_heading
        if tag in ("section", "table", "figure", "body"):
            assert self.open.pop() == tag

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.headings[-1] += data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Config]:
    folder = tmp_path_factory.mktemp("report") / "snapshot"
    write_snapshot(generate(8000, seed=3), folder)
    config = build_config({"source": {"path": str(folder)}})
    snap = read_snapshot(config)
    training_set, _ = build_training_set(snap, config)
    rules = load_rules()
    points = score_points(rule_inputs(snap, training_set[["lead_id", "cutoff"]], rules), rules)
    result = train_model(training_set, config, points=points.total)
    return result, config


@pytest.fixture(scope="module")
def report(trained: tuple[TrainResult, Config]) -> TrainingReport:
    result, config = trained
    return TrainingReport.build(result, config=config, source="/data/crm (as of 2026-06-30)")


def _parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    page.close()
    assert page.open == []  # every section, table and figure closed
    return text, page


def test_the_page_is_self_contained(report: TrainingReport, tmp_path: Path) -> None:
    index = report.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "metrics.json"]
    text, page = _parse(index)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= 7  # reliability, gains, tiers, beeswarm, categories, 3 leads, points
    for attrs in images:
        source = str(attrs["src"])
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for tag, attrs in page.tags:
        assert tag not in ("link", "script", "iframe")
        assert "src" not in attrs or str(attrs["src"]).startswith("data:")
        assert "href" not in attrs or str(attrs["href"]).startswith("#"), attrs
    assert "http://" not in text and "https://" not in text


def test_the_page_opens_with_the_verdict_and_the_facts(
    report: TrainingReport, tmp_path: Path
) -> None:
    text, page = _parse(report.write(tmp_path))
    model, rules = report.result.metrics["test"]["model"], report.result.metrics["test"]["rules"]
    body = text[text.index("<body>") :]
    verdict_at = body.index('id="verdict"')
    assert verdict_at < body.index("<dl") < body.index("<section")
    expected = f"(AUC {model['roc_auc']:.2f} vs {rules['roc_auc']:.2f})"
    assert expected in body[verdict_at : body.index("</p>", verdict_at)]
    for label in ("Model", "Trained", "Data", "Leads scored at", "Tested on", "Rows"):
        assert f"<dt>{label}</dt>" in body
    assert "leadscore, not registered" in body and "/data/crm (as of 2026-06-30)" in body
    # plain words: no internal keys as headings, notes not a dict, the tier table once
    for heading in page.headings:
        assert heading.strip() not in ("test", "tiers_test", "seconds", "Summary")
        assert "_" not in heading
    assert body.count("<th>Tier</th>") == 1
    assert "{'" not in body and "seconds" not in body


def test_a_registered_version_and_a_failed_gate_show(
    report: TrainingReport, tmp_path: Path
) -> None:
    model = report.result.metrics["test"]["model"]
    failed = Registration(
        name="leadscore",
        version="7",
        promoted=False,
        passed=False,
        reasons=("AUC below the champion's",),
        champion_version="6",
        champion={"roc_auc": model["roc_auc"] + 0.05},
    )
    text, _ = _parse(report.write(tmp_path, failed))
    assert "leadscore version 7 (challenger; the champion stays version 6)" in text
    assert "Not ready:" in text and "ranks worse than the champion, version 6" in text


def test_verdict_words() -> None:
    bounds = build_config({}).mlflow.gate
    good = {"roc_auc": 0.84, "ece": 0.007, "ece_floor": 0.004}
    points = {"roc_auc": 0.68}
    ready = verdict(good, points, bounds)
    assert ready.ready
    assert ready.detail == (
        "ranks better than your points (AUC 0.84 vs 0.68), calibrated within 0.7 points"
    )
    weak = verdict({**good, "roc_auc": 0.66}, points, bounds)
    assert not weak.ready and weak.detail.startswith("ranks no better than your points")
    off = verdict({**good, "ece": 0.06}, points, bounds)
    assert not off.ready and "off by 6.0 points" in off.detail


def test_waterfall_leads_carry_their_reasons(report: TrainingReport) -> None:
    leads = next(s for s in report.sections if s.anchor == "leads")
    assert len(leads.images) == 3
    for image in leads.images:
        assert image.title.startswith("Lead ") and image.items
        assert all(r.endswith(("raises the chance", "lowers the chance")) for r in image.items)
        assert len(set(image.items)) == len(image.items)
    assert np.isfinite(report.result.shap_values).all()
