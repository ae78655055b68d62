"""Models trained through the CRM presets with the real CLI (`leadscore train -c
examples/<preset>.yaml`) rank as the contract's model does on the same seed, and the leak
audit flags nothing; a custom field the CRM fills as of the export is named by the audit.

Rows are at mql_at only: the extra sampled ages hash the lead id, which each CRM spells its
own way, so with them the training sets would differ by chance alone (tests/data/
test_presets.py shows the rows are otherwise the contract's).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from features.layouts import write_layout
from features.synthetic import generate

pytestmark = pytest.mark.slow

N = 5_000
SEED = 11
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICY = {
    "LEADSCORE__SNAPSHOT_POLICY__SAMPLED_AGES": "0",
    "LEADSCORE__SNAPSHOT_POLICY__WEEKLY_WEEKS": "0",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("presets-train")
    for layout in ("contract", "hubspot", "salesforce", "hubspot-export", "salesforce-export"):
        write_layout(generate(N, SEED, chunk_leads=2_000), out / layout, layout=layout)  # type: ignore[arg-type]
    return out


def train(root: Path, layout: str, config: Path | None) -> dict:
    report = root / f"report-{layout}-{config.stem if config else 'contract'}"
    args = ["train", "--snapshot", str(root / layout), "--no-register", "-r", str(report)]
    if config is not None:
        args += ["-c", str(config)]
    result = CliRunner().invoke(app, args, env=POLICY)
    assert result.exit_code == 0, result.output
    return json.loads((report / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def contract(root: Path) -> dict:
    metrics = train(root, "contract", None)
    assert metrics["test"]["model"]["roc_auc"] > 0.7
    return metrics


@pytest.mark.parametrize("preset", ["hubspot", "salesforce", "salesforce-export"])
def test_preset_model_ranks_as_the_contracts(preset: str, root: Path, contract: dict) -> None:
    metrics = train(root, preset, EXAMPLES / f"{preset}.yaml")
    auc, reference = metrics["test"]["model"]["roc_auc"], contract["test"]["model"]["roc_auc"]
    assert abs(auc - reference) <= 0.02, (preset, auc, reference)
    assert metrics["leak_guard"] == []
    assert metrics["leakage_flagged"] == []


def test_hubspot_export_ranks_on_fit_alone(root: Path, contract: dict) -> None:
    """The contacts export has no events: its model knows who the lead is, not what it did,
    so it ranks clearly below the contract's (the cost docs/hubspot.md states), yet above
    chance, and nothing leaks."""
    metrics = train(root, "hubspot-export", EXAMPLES / "hubspot-export.yaml")
    auc, reference = metrics["test"]["model"]["roc_auc"], contract["test"]["model"]["roc_auc"]
    assert 0.55 < auc < reference - 0.02, (auc, reference)
    assert metrics["leak_guard"] == []


def test_an_as_of_export_column_added_by_hand_is_named_by_the_audit(root: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "hubspot.yaml").read_text(encoding="utf-8"))
    config["source"]["path"] = str(root / "hubspot")
    config["custom_fields"] = [
        {"column": "property_hubspotscore", "kind": "engagement"},
        {"column": "property_hs_analytics_num_page_views", "kind": "engagement"},
    ]
    path = root / "hubspot-leaky.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    metrics = train(root, "hubspot", path)
    named = {flag["column"] for flag in metrics["leak_guard"]}
    assert {"property_hubspotscore", "property_hs_analytics_num_page_views"} <= named
