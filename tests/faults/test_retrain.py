"""`leadscore retrain` under faults: two runs at once, a bad snapshot, a gate failure and a
broken artifact store midway; the champion alias must never move on a failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from cli import app
from common.config import build_config
from features.contract import ContractError
from features.synthetic import generate, write_snapshot
from serving.model_store import load_model
from tests.conftest import POSTGRES_URL
from training import retrain as loop

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
runner = CliRunner()


def _aliases(tracking_uri: str) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return {k: str(v) for k, v in client.get_registered_model("leadscore").aliases.items()}


def _versions(tracking_uri: str) -> int:
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return len(client.search_model_versions("name='leadscore'"))


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A snapshots root: a good new snapshot and an older one that breaks the contract."""
    root = tmp_path_factory.mktemp("retrain")
    snapshots = root / "snapshots"
    write_snapshot(generate(8_000, seed=11), snapshots / "2026-06-30")
    (snapshots / "2026-06-30" / "snapshot.json").write_text('{"as_of": "2026-06-30"}')
    old = snapshots / "zz-older"  # the greater name, but an older as_of: must not be picked
    old.mkdir()
    (old / "leads.csv").write_text("lead_id,created_at\nL1,yesterday\n")
    (old / "events.csv").write_text("lead_id,occurred_at,event_type\n")
    (old / "snapshot.json").write_text('{"as_of": "2025-01-01"}')
    return {"root": root, "snapshots": snapshots, "good": snapshots / "2026-06-30", "old": old}


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {
        "LEADSCORE__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(root / "artifacts"),
        "LEADSCORE__TRAINING__SHAP_SAMPLE": "100",  # small: the faults are the point here
        "LEADSCORE__TRAINING__NUM_BOOST_ROUND": "300",
        **extra,
    }


def test_latest_snapshot_by_as_of_then_mtime(tmp_path: Path) -> None:
    for name, as_of in (("a", "2026-03-01"), ("b", "2026-05-01"), ("c", None)):
        (tmp_path / name).mkdir()
        if as_of:
            (tmp_path / name / "snapshot.json").write_text(json.dumps({"as_of": as_of}))
    os.utime(tmp_path / "c", (0, 0))  # no as_of, modified in 1970: the oldest
    assert loop.latest_snapshot(tmp_path) == tmp_path / "b"
    (tmp_path / "a" / "snapshot.json").write_text('{"as_of": "2026-09-01T00:00:00+02:00"}')
    assert loop.latest_snapshot(tmp_path) == tmp_path / "a"
    (tmp_path / "c" / "snapshot.json").write_text("{not json")
    with pytest.raises(ContractError, match=r"c/snapshot.json: not a readable JSON"):
        loop.latest_snapshot(tmp_path)
    with pytest.raises(ContractError, match="no snapshot folders"):
        loop.latest_snapshot(tmp_path / "a")


def test_default_lock_sits_beside_the_store(tmp_path: Path) -> None:
    settings = build_config({"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"}}).mlflow
    assert loop.default_lock_path(settings) == tmp_path / "m.db.retrain.lock"
    relative = build_config({"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}}).mlflow
    assert loop.default_lock_path(relative) == Path("mlflow.db.retrain.lock")


def test_two_runs_at_once_one_refuses_then_failures_leave_the_champion(
    place: dict[str, Path],
) -> None:
    root, env = place["root"], _env(place["root"])
    lenient = _env(root, LEADSCORE__MLFLOW__GATE__MAX_ECE="1")  # the first model must pass
    uri = env["LEADSCORE__MLFLOW__TRACKING_URI"]
    lock = root / "mlflow.db.retrain.lock"
    command = [
        str(BIN / "leadscore"),
        "retrain",
        "--snapshots-root",
        str(place["snapshots"]),
        "-r",
        str(root / "report"),
    ]
    full_env = {**os.environ, **lenient}
    first = subprocess.Popen(
        command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while f"pid {first.pid}" not in (lock.read_text() if lock.exists() else ""):
        assert first.poll() is None, first.communicate()[0].decode()
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.1)
    started = time.monotonic()
    second = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60)
    assert second.returncode == loop.EXIT_BUSY, second.stdout + second.stderr
    assert time.monotonic() - started < 30  # refused at once, not after waiting
    assert f"another retrain is running (lock {lock} held by pid {first.pid}" in second.stderr
    output = first.communicate(timeout=300)[0].decode()
    assert first.returncode == 0, output
    assert "2026-06-30" in output and "version 1 is champion" in output
    assert _aliases(uri) == {"challenger": "1", "champion": "1"}
    assert _versions(uri) == 1  # the refused run registered nothing

    # a snapshot that breaks the contract: exit 2 naming the problem, nothing registered
    bad = runner.invoke(app, ["retrain", "-s", str(place["old"]), "-r", str(root / "r2")], env=env)
    assert bad.exit_code == loop.EXIT_BAD_INPUT, bad.output
    assert "column 'created_at': 1 row(s) have a timestamp that is not ISO 8601" in bad.output
    assert _aliases(uri) == {"challenger": "1", "champion": "1"} and _versions(uri) == 1

    # a challenger that fails the gate (no split allowed: no tree ranks a lead, only the
    # bend's line by age does, AUC about 0.6): it is registered as challenger, the champion stays
    flat = _env(root, LEADSCORE__TRAINING__PARAMS__MIN_DATA_IN_LEAF="1000000")
    gated = runner.invoke(
        app, ["retrain", "-s", str(place["good"]), "-r", str(root / "r3")], env=flat
    )
    assert gated.exit_code == 0, gated.output
    assert "not promoted: champion stays version 1" in gated.output
    assert re.search(r"AUC 0\.[56]\d{3} below the champion's", gated.output), gated.output
    assert _aliases(uri) == {"challenger": "2", "champion": "1"}

    # the artifact store breaks after training: exit 1 naming the step, champion kept
    artifacts = root / "artifacts"
    artifacts.rename(root / "artifacts.saved")
    artifacts.write_text("not a folder")
    try:
        broken = runner.invoke(
            app, ["retrain", "-s", str(place["good"]), "-r", str(root / "r4")], env=env
        )
    finally:
        artifacts.unlink()
        (root / "artifacts.saved").rename(artifacts)
    assert broken.exit_code == loop.EXIT_FAILED, broken.output
    assert "logging the run to MLflow failed" in broken.output
    assert "the champion is unchanged" in broken.output
    assert _aliases(uri)["champion"] == "1"
    # the champion still loads and scores after all of that
    assert load_model("models:/leadscore@champion", uri).version == "1"


def test_a_held_lock_refuses_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "held.lock"
    with loop.file_lock(lock):
        result = runner.invoke(
            app,
            ["retrain", "-s", str(tmp_path / "nowhere"), "--lock-file", str(lock)],
            env=_env(tmp_path),
        )
    assert result.exit_code == loop.EXIT_BUSY, result.output
    assert f"held by pid {os.getpid()}" in result.output
    with loop.file_lock(lock):  # released: it can be taken again
        pass


def test_train_does_not_register_while_a_retrain_holds_the_lock(
    place: dict[str, Path], tmp_path: Path
) -> None:
    """`leadscore train` takes the same lock to register and gate: while a retrain holds it,
    it trains and writes its report but registers nothing (exit 3); afterwards it registers."""
    env = _env(tmp_path, LEADSCORE__MLFLOW__GATE__MAX_ECE="1")
    uri = env["LEADSCORE__MLFLOW__TRACKING_URI"]
    command = ["train", "-s", str(place["good"]), "-r", str(tmp_path / "report")]
    with loop.file_lock(tmp_path / "mlflow.db.retrain.lock"):
        held = runner.invoke(app, command, env=env)
    assert held.exit_code == loop.EXIT_BUSY, held.output
    assert f"held by pid {os.getpid()}" in held.output and "not logged or registered" in held.output
    assert (tmp_path / "report" / "index.html").is_file()
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert not client.search_registered_models()
    free = runner.invoke(app, command, env=env)
    assert free.exit_code == 0, free.output
    assert _aliases(uri) == {"challenger": "1", "champion": "1"}


@pytest.mark.postgres
def test_postgresql_advisory_lock_refuses_a_second_holder() -> None:
    with loop.advisory_lock(POSTGRES_URL, "leadscore-test"):
        with (
            pytest.raises(loop.RetrainBusyError, match="advisory lock"),
            loop.advisory_lock(POSTGRES_URL, "leadscore-test"),
        ):
            pass
        with loop.advisory_lock(POSTGRES_URL, "another-model"):  # per model name
            pass
    with loop.advisory_lock(POSTGRES_URL, "leadscore-test"):  # released
        pass


def test_registry_lock_picks_advisory_for_postgresql() -> None:
    settings = build_config({"mlflow": {"tracking_uri": "postgresql://u@h/db"}}).mlflow
    assert loop.registry_lock(settings).func is loop.advisory_lock.__wrapped__  # type: ignore[attr-defined]
