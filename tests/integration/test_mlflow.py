"""Training end to end through MLflow: runs, the registry, aliases and the champion gate,
against the local SQLite store, a real `mlflow server` process, and `mlflow models serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features.synthetic import generate, write_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow") / "snapshot"
    write_snapshot(generate(15_000, seed=31), folder)
    return folder


def _env(tracking_uri: str, artifacts: Path, **extra: str) -> dict[str, str]:
    return {
        "LEADSCORE__MLFLOW__TRACKING_URI": tracking_uri,
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(artifacts),
        **extra,
    }


def _train(snapshot: Path, report: Path, env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, ["train", "-s", str(snapshot), "-r", str(report), *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _aliases(tracking_uri: str) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return {k: str(v) for k, v in client.get_registered_model("leadscore").aliases.items()}


def test_train_register_gate_promote_rollback(snapshot: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = _env(uri, tmp_path / "artifacts")
    output = _train(snapshot, tmp_path / "report", env)
    assert "version 1 is champion" in output
    assert (tmp_path / "report" / "index.html").is_file()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"model", "rules", "truth"} <= set(metrics["test"])
    assert _aliases(uri) == {"challenger": "1", "champion": "1"}

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("leadscore").experiment_id])[0]
    assert run.data.tags["data_fingerprint"] and run.data.tags["git_commit"]
    assert run.data.metrics["test_model_roc_auc"] > 0.7
    assert "lgb.num_leaves" in run.data.params
    assert run.data.params["increasing_events"] == (
        "demo_request,trial_signup,form_submission,email_reply,webinar_attendance"
    )
    _check_lineage(client, run, snapshot)
    first = client.get_model_version("leadscore", "1")
    assert first.description.startswith("Ready: ranks better than your points (AUC 0.")
    assert "Promoted to champion." in first.description
    assert first.tags["gate.passed"] == "true" and first.tags["gate.promoted"] == "true"
    assert float(first.tags["gate.roc_auc"]) == pytest.approx(
        run.data.metrics["test_model_roc_auc"], abs=1e-4
    )

    # a second, much weaker model (one tree) ranks worse on the same slice: it stays challenger
    weak = {**env, "LEADSCORE__TRAINING__NUM_BOOST_ROUND": "1"}
    output = _train(snapshot, tmp_path / "report2", weak)
    assert "gate failed" in output and "below the champion's" in output
    assert _aliases(uri) == {"challenger": "2", "champion": "1"}
    second = client.get_model_version("leadscore", "2")
    assert second.description.startswith("Not ready: ")
    assert "ranks worse than the champion, version 1" in second.description
    assert "Not promoted; the champion stays version 1." in second.description
    assert second.tags["gate.passed"] == "false" and second.tags["gate.champion_version"] == "1"
    assert float(second.tags["gate.champion_roc_auc"]) == pytest.approx(
        float(first.tags["gate.roc_auc"]), abs=1e-4
    )
    # the report names the version and the gate's verdict, and went to the run as well
    page = (tmp_path / "report2" / "index.html").read_text()
    assert "leadscore version 2 (challenger; the champion stays version 1)" in page
    assert "Not ready:" in page
    logged = Path(
        mlflow.artifacts.download_artifacts(
            run_id=second.run_id, artifact_path="report/index.html", dst_path=str(tmp_path / "d")
        )
    )
    assert logged.read_text() == page

    assert runner.invoke(app, ["promote", "2"], env=env).exit_code == 0
    assert _aliases(uri)["champion"] == "2"
    rolled = runner.invoke(app, ["rollback"], env=env)
    assert rolled.exit_code == 0 and "version 2 -> 1" in rolled.output
    assert _aliases(uri)["champion"] == "1"
    missing = runner.invoke(app, ["promote", "9"], env=env)
    assert missing.exit_code == 2 and "no version 9" in missing.output


def _check_lineage(client: mlflow.MlflowClient, run: mlflow.entities.Run, snapshot: Path) -> None:
    """Inputs with source and digest, a name that says what the run was, a span from the
    job's start, and no long digest tag on the run (the version keeps one digest)."""
    assert run.info.run_name == f"train on {snapshot.parent.name}/snapshot (as of 2026-06-30)"
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"snapshot as of 2026-06-30", "training set"}
    for found in inputs.values():
        assert json.loads(found.dataset.source)["uri"] == str(snapshot.resolve())
        assert len(found.dataset.digest) == 20
    contexts = {d.dataset.name: {t.key: t.value for t in d.tags} for d in inputs.values()}
    assert contexts["training set"]["mlflow.data.context"] == "training"
    profile = json.loads(inputs["training set"].dataset.profile)
    assert profile["num_rows"] == int(run.data.tags["rows"])
    assert "artifact_sha256" not in run.data.tags
    version = client.get_model_version("leadscore", "1")
    assert len(version.tags["artifact_sha256"]) == 64
    # the run began when the job did: before the boosting, not when logging started
    fit_seconds = json.loads(
        Path(client.download_artifacts(run.info.run_id, "report/metrics.json")).read_text()
    )["seconds"]["fit"]
    assert (run.info.end_time - run.info.start_time) / 1000 > fit_seconds


def test_training_refuses_to_register_an_excluded_column(snapshot: Path, tmp_path: Path) -> None:
    features = tmp_path / "ts.parquet"
    assert runner.invoke(app, ["features", "-s", str(snapshot), "-o", str(features)]).exit_code == 0
    config = tmp_path / "c.yaml"
    config.write_text("exclude: [country]\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(
        app,
        ["train", "-t", str(features), "-c", str(config), "-r", str(tmp_path / "r")],
        env=_env(uri, tmp_path / "a"),
    )
    assert result.exit_code == 2 and "refused" in result.output and "country" in result.output
    assert (
        not (tmp_path / "mlflow.db").exists()
        or not mlflow.MlflowClient(tracking_uri=uri).search_registered_models()
    )


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_against_a_real_mlflow_server(snapshot: Path, tmp_path: Path, mlflow_server: str) -> None:
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": mlflow_server,
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": "null",
    }
    assert "version 1 is champion" in _train(snapshot, tmp_path / "report", env)
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/leadscore@champion")
    example = pd.DataFrame(model.input_example) if model.input_example is not None else None
    assert example is not None
    scored = model.predict(example)
    assert scored["probability"].between(0, 1).all()
    assert set(scored["tier"]) <= {"A", "B", "C", "D"}


def test_mlflow_models_serve_answers(snapshot: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _train(snapshot, tmp_path / "report", _env(uri, tmp_path / "artifacts"))
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/leadscore@champion")
    port = _free_port()
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/leadscore@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        # mlflow starts `uvicorn` through the shell: the venv's bin must be on PATH
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", process)
        example = pd.DataFrame(model.input_example)
        payload = json.dumps(
            {"dataframe_split": json.loads(example.to_json(orient="split", index=False))}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=payload,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            served = pd.DataFrame(json.loads(response.read())["predictions"])
        expected = model.predict(example)
        np.testing.assert_allclose(served["probability"], expected["probability"], rtol=1e-9)
    finally:
        process.terminate()
        process.wait(timeout=30)
