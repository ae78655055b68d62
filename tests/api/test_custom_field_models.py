"""Models with custom fields, end to end through the real commands and a real uvicorn process:
`leadscore train` -> `leadscore serve` -> POST /v1/score -> `leadscore predict`.

Two exports, each copied or written into a temporary folder that is also the commands' working
directory: X Education (flat, nineteen custom fields, `../shared/datasets/x-education`) and a
synthetic timestamped export written here under its own column names, with custom fields of
both kinds (fit, engagement) and every type (categorical, numeric, boolean) that carry signal.
For each: the API's probability for a lead equals the batch job's at the same as-of time, with
the lead posted under the export's column names or the contract's, and with its custom fields
left out when the export's cells are empty. Every command runs quietly (no library warnings,
no progress bars) and writes only where it was told. `leadscore monitor` reads the batch run of
the export the model was trained on as no drift in the score or tiers, and the same export with
its lead-source mix shifted as drift.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from common.config import load_config
from tests.faults.serve_process import BIN, free_port, serve_process, wait_for_answer

pytestmark = [pytest.mark.api, pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
X_EDUCATION = ROOT / "examples" / "x-education.yaml"
#: Library warnings ("RuntimeWarning: All-NaN slice ...") and progress bars ("Downloading
#: artifacts: 100%|...| 33/33 [00:00<00:00, 2.1it/s]") that a normal run must not print.
NOISE = re.compile(r"\w*Warning: |Downloading artifacts|\d+it/s\]|\|\s*\d+/\d+ \[")
#: The lead the API and the batch job are compared on, per export.
COMPARED = 20
#: Of those, the leads whose custom fields are empty in the export and left out when posted.
WITHOUT_CUSTOM = 6


@dataclass(frozen=True)
class Served:
    """A trained export, its batch scores and its running API."""

    folder: Path
    config: dict[str, Any]
    export: pd.DataFrame  # the leads file as text, as the export holds it
    events: pd.DataFrame | None
    scores: pd.DataFrame  # `leadscore predict`'s output
    url: str
    as_of: str
    blanked: tuple[str, ...]  # leads whose custom fields are empty in the export
    outputs: dict[str, str]  # command -> what it printed
    entries: dict[str, list[str]]  # command -> the working folder's entries after it
    log: Path  # the server's output


def _run(command: list[str], cwd: Path) -> str:
    """A `leadscore` command in `cwd`; it must succeed; returns what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADSCORE", "MLFLOW_"))}
    result = subprocess.run(
        [str(BIN / "leadscore"), *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _post(url: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read() or b"{}")


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return dict(json.loads(response.read()))


def _custom_columns(config: Mapping[str, Any]) -> list[str]:
    """The export's names of the config's custom fields."""
    exports = {contract: export for export, contract in config["mapping"]["leads"].items()}
    return [exports.get(cf["column"], cf["column"]) for cf in config["custom_fields"]]


def _blank_custom_fields(
    export: pd.DataFrame, config: Mapping[str, Any], chosen: pd.Series
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The export with the custom field cells of the first `WITHOUT_CUSTOM` chosen leads empty."""
    id_column = next(k for k, v in config["mapping"]["leads"].items() if v == "lead_id")
    ids = tuple(export.loc[chosen[chosen].index[:WITHOUT_CUSTOM], id_column])
    out = export.copy()
    out.loc[out[id_column].isin(ids), _custom_columns(config)] = ""
    return out, ids


def _open_leads(export: pd.DataFrame, config: Mapping[str, Any], as_of: str) -> pd.Series:
    """Which rows of the export `leadscore predict` scores at `as_of` (a flat export: those not
    converted; else the MQLs open at `as_of` within the 90-day horizon)."""
    exports = {contract: export for export, contract in config["mapping"]["leads"].items()}
    if config["source"].get("flat"):
        return export[exports["converted"]].str.strip() == "0"
    moment = pd.Timestamp(as_of)

    def times(column: str) -> pd.Series:
        text = export[exports.get(column, column)]
        return pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")

    mql = times("mql_at")
    is_open = (mql <= moment) & (mql + pd.Timedelta(days=90) > moment)
    for closing in ("sql_at", "disqualified_at"):
        is_open &= times(closing).isna() | (times(closing) > moment)
    return is_open


def _serve(
    folder: Path,
    config: dict[str, Any],
    export: pd.DataFrame,
    events: pd.DataFrame | None,
    as_of: str,
    log: Path,
) -> Iterator[Served]:
    """Write the export and config into `folder`, then train, predict and serve there."""
    leads_file = folder / "export" / config["source"]["leads"]
    chosen = _open_leads(export, config, as_of)
    assert chosen.sum() >= COMPARED, "too few open leads to compare"
    export, blanked = _blank_custom_fields(export, config, chosen)
    export.to_csv(leads_file, index=False)
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    outputs: dict[str, str] = {}
    entries: dict[str, list[str]] = {}
    outputs["train"] = _run(["train", "-c", "config.yaml", "-r", "report"], folder)
    entries["train"] = sorted(p.name for p in folder.iterdir())
    name = config.get("mlflow", {}).get("model_name", "leadscore")
    model = ["--model-uri", f"models:/{name}/1"]  # whatever the gate decided
    out = ["--out", "scores/run.parquet"]
    predict = ["predict", "-c", "config.yaml", "--as-of", as_of, *out, *model]
    outputs["predict"] = _run(predict, folder)
    entries["predict"] = sorted(p.name for p in folder.iterdir())
    scores = pd.read_parquet(folder / "scores" / "run.parquet")
    port = free_port()
    accounts = [] if config["source"].get("flat") else ["--accounts", "export"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADSCORE", "MLFLOW_"))}
    args = ["-c", "config.yaml", *model, *accounts]
    with serve_process(env, port, log, args, cwd=folder) as process:
        url = f"http://127.0.0.1:{port}"
        answer = wait_for_answer(f"{url}/readyz", process, 180)
        assert answer is not None and answer[0] == 200, log.read_text()
        entries["serve"] = sorted(p.name for p in folder.iterdir())
        yield Served(
            folder, config, export, events, scores, url, as_of, blanked, outputs, entries, log
        )


def _x_education(folder: Path) -> tuple[dict[str, Any], pd.DataFrame, None]:
    """The shipped X Education config on a copy of the export, with a local MLflow store."""
    source = load_config(X_EDUCATION, environ={}).source
    assert source.path is not None and (source.path / "Leads.csv").is_file(), (
        f"the shared dataset is missing: {source.path}/Leads.csv"
    )
    (folder / "export").mkdir()
    shutil.copy(source.path / "Leads.csv", folder / "export" / "Leads.csv")
    config = yaml.safe_load(X_EDUCATION.read_text(encoding="utf-8"))
    config["source"]["path"] = "export"
    config["mlflow"] = {**config.get("mlflow", {}), **_mlflow(folder)}  # its own model name
    config["training"] = {"num_boost_round": 300}
    export = pd.read_csv(folder / "export" / "Leads.csv", dtype=str, keep_default_na=False)
    return config, export, None


def _mlflow(folder: Path) -> dict[str, str]:
    store = folder / "mlflow"
    return {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}", "artifact_location": str(store)}


#: The synthetic export's column names (contract name -> export name) and its custom fields:
#: both kinds, every type, two typed by their kind's default, one mapped to another name.
SYNTHETIC_NAMES = {
    "lead_id": "Lead ID",
    "created_at": "Created",
    "mql_at": "MQL Date",
    "sql_at": "SQL Date",
    "company_size": "Employees",
    "budget": "Budget (USD)",
}
SYNTHETIC_FIELDS = [
    {"column": "Plan Interest", "kind": "fit"},
    {"column": "budget", "kind": "fit", "type": "numeric"},
    {"column": "Partner", "kind": "fit", "type": "boolean"},
    {"column": "Last Activity", "kind": "engagement", "type": "categorical"},
    {"column": "Web Visits", "kind": "engagement"},
    {"column": "Webinar Attended", "kind": "engagement", "type": "boolean"},
]


def _with_signal(leads: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Custom columns that lean towards the lead's eventual outcome (about a tenth empty)."""
    rng = np.random.default_rng(seed)
    n = len(leads)
    converts = (leads["sql_at"] != "").to_numpy()

    def pick(values: list[str], p_yes: list[float], p_no: list[float]) -> np.ndarray:
        yes, no = rng.choice(values, n, p=p_yes), rng.choice(values, n, p=p_no)
        return np.where(converts, yes, no)

    budget = np.exp(rng.normal(np.log(8000), 0.8, n)) * np.where(converts, 1.8, 1.0)
    columns = {
        "Plan Interest": pick(["Enterprise", "Pro", "Starter"], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]),
        "Budget (USD)": np.round(budget).astype(int).astype(str),
        "Partner": pick(["Yes", "No"], [0.45, 0.55], [0.2, 0.8]),
        "Last Activity": pick(
            ["Email Opened", "Page Visited", "Form Submitted"], [0.2, 0.3, 0.5], [0.5, 0.3, 0.2]
        ),
        "Web Visits": rng.poisson(np.where(converts, 6.0, 3.0)).astype(str),
        "Webinar Attended": pick(["true", "false"], [0.4, 0.6], [0.15, 0.85]),
    }
    out = leads.copy()
    for name, values in columns.items():
        out[name] = np.where(rng.random(n) < 0.1, "", values)
    return out.rename(columns={k: v for k, v in SYNTHETIC_NAMES.items() if k in out})


def _synthetic(folder: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """A generated snapshot turned into an export of its own: renamed columns, custom fields."""
    _run(["generate", "--leads", "8000", "--seed", "11", "--format", "csv", "--out", "gen"], folder)
    (folder / "export").mkdir()
    leads = pd.read_csv(folder / "gen" / "leads.csv", dtype=str, keep_default_na=False)
    shutil.copy(folder / "gen" / "events.csv", folder / "export" / "events.csv")
    shutil.copy(folder / "gen" / "snapshot.json", folder / "export" / "snapshot.json")
    shutil.rmtree(folder / "gen")
    events = pd.read_csv(folder / "export" / "events.csv", dtype=str, keep_default_na=False)
    config = {
        "source": {"path": "export", "leads": "leads.csv", "events": "events.csv"},
        "mapping": {"leads": {v: k for k, v in SYNTHETIC_NAMES.items()}},
        "custom_fields": SYNTHETIC_FIELDS,
        "mlflow": _mlflow(folder),
        "training": {"num_boost_round": 150, "params": {"min_data_in_leaf": 30}},
    }
    return config, _with_signal(leads, seed=5), events


@pytest.fixture(
    scope="module", params=[pytest.param("x-education", marks=pytest.mark.shared), "synthetic"]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """An export trained, batch-scored and served, in a folder of its own (the commands' cwd)."""
    folder = tmp_path_factory.mktemp(request.param)
    log = tmp_path_factory.mktemp(f"{request.param}-log") / "serve.log"
    if request.param == "x-education":
        config, export, events = _x_education(folder)
        as_of = "2026-01-01T00:00:00Z"
    else:
        config, export, events = _synthetic(folder)
        as_of = "2026-05-15T00:00:00Z"
    yield from _serve(folder, config, export, events, as_of, log)


# --------------------------------------------------------------------------- requests


def _id_column(served: Served) -> str:
    return next(k for k, v in served.config["mapping"]["leads"].items() if v == "lead_id")


def _compared(served: Served) -> list[str]:
    """The blanked leads, then others the batch job scored, `COMPARED` in all."""
    others = [i for i in served.scores["lead_id"] if i not in served.blanked]
    return [*served.blanked, *others[: COMPARED - len(served.blanked)]]


def _body(served: Served, lead_id: str, *, contract_names: bool = False) -> dict[str, Any]:
    """The lead as the export holds it (text; its empty custom cells left out), its events,
    and the batch run's as-of time; under the contract's names if asked."""
    row = served.export.loc[served.export[_id_column(served)] == lead_id].iloc[0]
    custom = set(_custom_columns(served.config))
    lead = {k: v for k, v in row.items() if not (k in custom and v == "")}
    if contract_names:
        renames = served.config["mapping"]["leads"]
        lead = {renames.get(k, k): (None if v == "" else v) for k, v in lead.items()}
    events: list[dict[str, str]] = []
    if served.events is not None:
        own = served.events.loc[served.events["lead_id"] == lead_id]
        events = [
            {"event_type": e.event_type, "occurred_at": e.occurred_at} for e in own.itertuples()
        ]
    return {"lead": lead, "events": events, "as_of": served.as_of}


def _batch(served: Served, lead_id: str) -> pd.Series:
    return served.scores.loc[served.scores["lead_id"] == lead_id].iloc[0]


# --------------------------------------------------------------------------- tests


def test_commands_are_quiet_and_write_only_where_told(served: Served) -> None:
    """No library warning or progress bar in train, predict or serve; the working folder holds
    only what the config and the options named (MLflow store, report, scores), and serving
    adds nothing."""
    outputs = {**served.outputs, "serve": served.log.read_text()}
    for command, output in outputs.items():
        assert not NOISE.search(output), f"{command}: {NOISE.search(output)}\n{output}"
    entries = served.entries
    assert entries["train"] == ["config.yaml", "export", "mlflow", "report"]
    assert entries["predict"] == [*entries["train"], "scores"]
    assert entries["serve"] == entries["predict"]


def test_the_api_scores_each_lead_as_the_batch_job_does(served: Served) -> None:
    """Posted under the export's names, custom fields left out where the export's cells are
    empty: the batch job's probability (1e-9), tier and points for every compared lead."""
    for lead_id in _compared(served):
        status, answer = _post(f"{served.url}/v1/score", _body(served, lead_id))
        assert status == 200, (lead_id, answer)
        batch = _batch(served, lead_id)
        assert answer["lead_id"] == lead_id
        assert answer["probability"] == pytest.approx(batch["probability"], abs=1e-9), lead_id
        assert answer["tier"] == batch["tier"] and answer["points"]["total"] == batch["points"]


def test_contract_names_score_the_same(served: Served) -> None:
    for lead_id in _compared(served)[: COMPARED // 2]:
        status, answer = _post(
            f"{served.url}/v1/score", _body(served, lead_id, contract_names=True)
        )
        assert status == 200, (lead_id, answer)
        assert answer["probability"] == pytest.approx(_batch(served, lead_id)["probability"])


def test_custom_fields_are_optional_and_matter(served: Served) -> None:
    """A lead with every custom field left out is scored (they are unknown), and differently
    from the same lead with them: the model uses them."""
    custom = set(_custom_columns(served.config))
    changed = 0
    for lead_id in _compared(served)[WITHOUT_CUSTOM:]:
        body = _body(served, lead_id)
        bare = {**body, "lead": {k: v for k, v in body["lead"].items() if k not in custom}}
        status, answer = _post(f"{served.url}/v1/score", bare)
        assert status == 200, (lead_id, answer)
        changed += answer["probability"] != pytest.approx(_batch(served, lead_id)["probability"])
    assert changed >= (COMPARED - WITHOUT_CUSTOM) // 2


def test_two_names_that_disagree_get_a_422_naming_both(served: Served) -> None:
    lead_id = _compared(served)[0]
    body = _body(served, lead_id)
    body["lead"]["lead_id"] = f"{lead_id}-other"
    status, answer = _post(f"{served.url}/v1/score", body)
    assert status == 422
    (problem,) = answer["detail"]
    assert problem["loc"] == ["body", "lead", "lead_id"]
    assert f"'{_id_column(served)}'" in problem["msg"] and "'lead_id'" in problem["msg"]


def test_the_schema_shows_the_models_custom_fields(served: Served) -> None:
    properties = _get(f"{served.url}/openapi.json")["components"]["schemas"]["LeadIn"]
    names = set(properties["properties"])
    assert {cf["column"] for cf in served.config["custom_fields"]} <= names
    assert set(_custom_columns(served.config)) | {_id_column(served)} <= names


def _monitor(served: Served, scores: Path, report: Path) -> tuple[int, dict[str, Any], str]:
    """`leadscore monitor` on one run's scores, in the export's folder; exit code, monitor.json
    and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADSCORE", "MLFLOW_"))}
    command = ["monitor", "-c", "config.yaml", "--scores", str(scores), "-r", str(report)]
    result = subprocess.run(
        [str(BIN / "leadscore"), *command],
        cwd=served.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads((report / "monitor.json").read_text(encoding="utf-8"))
    return result.returncode, summary, result.stdout + result.stderr


def test_the_monitor_reads_the_export_as_its_own_market_and_a_shifted_one_as_drift(
    served: Served, tmp_path: Path
) -> None:
    """The batch run of the export the model was trained on passes the monitor: a flat export's
    run scores only the leads not converted, and its reference holds those. The same export
    with the lead source of 60% of its leads set to one value alerts, naming the feature."""
    code, summary, output = _monitor(served, served.folder / "scores", tmp_path / "same")
    assert not [a for a in summary["alerts"] if "feature" not in a], output
    if served.config["source"].get("flat"):
        assert code == 0 and summary["status"] == "ok", output

    exports = {contract: export for export, contract in served.config["mapping"]["leads"].items()}
    source = exports.get("lead_source", "lead_source")
    shifted = served.export.copy()
    rarest = shifted[source][shifted[source] != ""].value_counts().index[-3]
    moved = np.random.default_rng(3).random(len(shifted)) < 0.6
    shifted.loc[moved, source] = rarest
    folder = tmp_path / "shifted"
    (folder / "export").mkdir(parents=True)
    shifted.to_csv(folder / "export" / served.config["source"]["leads"], index=False)
    for name in ("events.csv", "snapshot.json"):
        if (served.folder / "export" / name).is_file():
            shutil.copy(served.folder / "export" / name, folder / "export" / name)
    shutil.copy(served.folder / "config.yaml", folder / "config.yaml")
    name = served.config.get("mlflow", {}).get("model_name", "leadscore")
    model = ["--model-uri", f"models:/{name}/1"]
    _run(
        ["predict", "-c", "config.yaml", "--as-of", served.as_of, "--out", "run.parquet", *model],
        folder,
    )
    code, summary, output = _monitor(served, folder / "run.parquet", tmp_path / "shift")
    assert code == 3 and summary["status"] != "ok", output
    assert any("lead_source" in alert for alert in summary["alerts"]), output
