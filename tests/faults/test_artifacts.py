"""A corrupt or tampered model artifact is refused with an error naming it: by the serving
loader, by any `mlflow.pyfunc.load_model`, and by `leadscore serve` (503 on /readyz).

The model's code too (issue 16.1): every file of the model folder is checked against digests
kept in its run before MLflow runs any of it, so a line added to `mlflow_model.py` or to the
code MLflow imports is refused by name by the Python loader, `leadscore predict` and
`leadscore serve`, and never runs (the marker file it would write stays absent)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from serving.model_store import ModelUnavailableError, load_model
from tests.faults.serve_process import free_port, serve_process, wait_for_answer
from tests.fixtures import copy_registry
from training.integrity import (
    DIGESTS_KEY,
    FILES_KEY,
    artifact_digests,
    digests_digest,
    folder_digests,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
URI = "models:/leadscore@champion"


@pytest.fixture(scope="module")
def registry(
    trained_store: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A copy of the shared champion's store: these tests tamper with its files and tags."""
    return copy_registry(trained_store, tmp_path_factory.mktemp("artifacts"))


def test_the_store_is_a_copy_that_records_only_its_own_paths(
    registry: dict[str, str], trained_store: dict[str, str]
) -> None:
    """What these tests tamper with never reaches the session's shared champion."""
    database = Path(registry["tracking"].removeprefix("sqlite:///"))
    assert database.parent == Path(registry["root"]) != Path(trained_store["root"])
    with contextlib.closing(sqlite3.connect(database)) as connection:
        dump = "\n".join(connection.iterdump())
    assert f"{registry['root']}/" in dump and f"{trained_store['root']}/" not in dump
    assert load_model(URI, registry["tracking"]).version == "1"


@pytest.fixture
def model_dir(registry: dict[str, str]) -> Iterator[Path]:
    """The champion's folder in the artifact store, restored after each test."""
    (folder,) = Path(registry["root"]).glob("artifacts/models/*/artifacts")
    backup = folder.with_name("pristine")
    shutil.copytree(folder, backup)
    yield folder
    shutil.rmtree(folder)
    backup.rename(folder)


def _rewrite(name: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "artifacts" / name
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")

    return apply


def _truncate(name: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "artifacts" / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return apply


def _nudge_a_leaf(text: str) -> str:
    """A valid booster whose first leaf value is changed: parses, scores, and lies."""
    found = re.search(r"leaf_value=([-+0-9.eE]+)", text)
    assert found is not None
    nudged = str(float(found.group(1)) + 0.5)
    return text[: found.start(1)] + nudged + text[found.end(1) :]


def _pickle_instead(folder: Path) -> None:
    (folder / "artifacts" / "calibrator.json").write_bytes(pickle.dumps({"method": "isotonic"}))


def _delete(name: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / "artifacts" / name).unlink()

    return apply


#: (what, how, the artifact the error must name)
TAMPERING = [
    ("booster truncated", _truncate("booster.txt"), "file 'artifacts/booster.txt'"),
    ("booster leaf nudged", _rewrite("booster.txt", _nudge_a_leaf), "'artifacts/booster.txt'"),
    ("calibrator not JSON", _rewrite("calibrator.json", lambda t: "{oops"), "calibrator.json"),
    ("calibrator swapped for a pickle", _pickle_instead, "file 'artifacts/calibrator.json'"),
    (
        "spec with a category renamed",
        _rewrite("spec.json", lambda t: t.replace('"united states"', '"atlantis"', 1)),
        "file 'artifacts/spec.json'",
    ),
    (
        "tier cut points edited",
        _rewrite("tiers.json", lambda t: t.replace("0.", "0.9", 1)),
        "artifacts/tiers.json",
    ),
    ("rules edited", _rewrite("rules.yaml", lambda t: t + "\n# more points\n"), "rules.yaml"),
    ("config edited", _rewrite("config.json", lambda t: t.replace("90", "30", 1)), "config.json"),
    ("an artifact deleted", _delete("tiers.json"), "'artifacts/tiers.json' (an artifact"),
]


def test_the_untouched_model_loads_and_records_every_artifact_digest(
    registry: dict[str, str], model_dir: Path
) -> None:
    model = load_model(URI, registry["tracking"])
    assert model.version == "1"
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    recorded = mlmodel["flavors"]["python_function"]["config"][DIGESTS_KEY]
    names = set(mlmodel["flavors"]["python_function"]["artifacts"])
    assert set(recorded) == names >= {"booster", "calibrator", "spec", "tiers", "rules", "config"}
    files = {n: model_dir / "artifacts" / Path(p).name for n, p in _paths(mlmodel).items()}
    assert artifact_digests(files) == recorded
    client = mlflow.MlflowClient(tracking_uri=registry["tracking"])
    # a second copy, outside the artifact store: one digest of the map, on the model version
    version = client.get_model_version("leadscore", "1")
    assert version.tags[DIGESTS_KEY] == digests_digest(recorded)
    assert DIGESTS_KEY not in client.get_run(mlmodel["run_id"]).data.tags  # no long run tag


def _paths(mlmodel: dict[str, object]) -> dict[str, str]:
    flavor = mlmodel["flavors"]["python_function"]  # type: ignore[index]
    return {name: info["path"] for name, info in flavor["artifacts"].items()}


@pytest.mark.parametrize(("what", "tamper", "named"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_a_tampered_artifact_is_refused_naming_it(
    registry: dict[str, str], model_dir: Path, what: str, tamper: Callable[[Path], None], named: str
) -> None:
    tamper(model_dir)
    with pytest.raises(ModelUnavailableError) as refused:
        load_model(URI, registry["tracking"])
    assert "refusing models:/leadscore@champion" in str(refused.value)
    assert named in str(refused.value), str(refused.value)
    # any pyfunc loader refuses it too (mlflow models serve, the gate's champion scoring)
    with pytest.raises(Exception, match=r"corrupt or was tampered with|missing|not those recorded"):
        mlflow.pyfunc.load_model(str(model_dir))


def test_rewriting_the_recorded_digests_too_is_caught_by_the_version_tag(
    registry: dict[str, str], model_dir: Path
) -> None:
    _rewrite("booster.txt", _nudge_a_leaf)(model_dir)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    files = {n: model_dir / p for n, p in _paths(mlmodel).items()}
    mlmodel["flavors"]["python_function"]["config"][DIGESTS_KEY] = artifact_digests(files)
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ModelUnavailableError, match=r"file 'MLmodel'.*tampered"):
        load_model(URI, registry["tracking"])


def test_a_model_logged_before_file_digests_still_has_its_artifacts_checked(
    registry: dict[str, str], model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Older models have no FILES_KEY tag: artifacts checked as before, a warning for the code."""
    client = mlflow.MlflowClient(tracking_uri=registry["tracking"])
    run_id = yaml.safe_load((model_dir / "MLmodel").read_text())["run_id"]
    files = client.get_run(run_id).data.tags[FILES_KEY]
    client.delete_tag(run_id, FILES_KEY)
    try:
        with caplog.at_level("WARNING"):
            assert load_model(URI, registry["tracking"]).version == "1"
        assert "its code is not" in caplog.text
        _rewrite("booster.txt", _nudge_a_leaf)(model_dir)
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        paths = {n: model_dir / p for n, p in _paths(mlmodel).items()}
        mlmodel["flavors"]["python_function"]["config"][DIGESTS_KEY] = artifact_digests(paths)
        (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        with pytest.raises(ModelUnavailableError, match="differ from those its run recorded"):
            load_model(URI, registry["tracking"])
    finally:
        client.set_tag(run_id, FILES_KEY, files)


def test_a_pickled_python_model_is_never_unpickled(
    registry: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Touch(str(marker)))
    (model_dir / "python_model.pkl").write_bytes(payload)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    flavor["loader_module"] = "mlflow.pyfunc.model"
    flavor["python_model"] = "python_model.pkl"
    flavor.pop("model_code_path", None)
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ModelUnavailableError, match=r"file 'python_model.pkl' \(a pickle"):
        load_model(URI, registry["tracking"])
    assert not marker.exists()
    with pytest.raises(Exception, match="not a models-from-code pyfunc"):
        from training.integrity import check_model_dir

        check_model_dir(model_dir)
    assert not marker.exists()


class _Touch:
    """Unpickling this creates a file: proof that a loader ran pickled code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_serve_answers_503_naming_the_tampered_artifact(
    registry: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    _truncate("booster.txt")(model_dir)
    log = tmp_path / "serve.log"
    port = free_port()
    env = {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__SERVE__STARTUP_ATTEMPTS": "2",
        "LEADSCORE__SERVE__STARTUP_WAIT_SECONDS": "0.2",
    }
    started = time.monotonic()
    with serve_process(env, port, log) as process:
        answer = wait_for_answer(f"http://127.0.0.1:{port}/readyz", process, 90)
    assert time.monotonic() - started < 90
    assert answer is not None, log.read_text()
    status, body = answer
    assert status == 503 and "file 'artifacts/booster.txt'" in body, body
    text = log.read_text()
    assert "model load attempt 2/2 failed" in text and "tampered" in text


# --------------------------------------------------------------------------- the model's code


def _planted(marker: Path) -> str:
    """A line of Python whose only effect is to create `marker`: proof that it ran."""
    return f"\nopen({str(marker)!r}, 'w').close()\n"


def test_the_run_records_every_file_of_the_model_its_code_included(
    registry: dict[str, str], model_dir: Path
) -> None:
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    run = mlflow.MlflowClient(tracking_uri=registry["tracking"]).get_run(mlmodel["run_id"])
    recorded = json.loads(run.data.tags[FILES_KEY])
    assert recorded == folder_digests(model_dir)
    assert {"MLmodel", "mlflow_model.py", "code/training/scorer.py"} <= set(recorded)
    assert {"code/training/integrity.py", "artifacts/booster.txt", "conda.yaml"} <= set(recorded)


def test_every_file_of_the_model_tampered_is_refused_by_name_and_never_runs(
    registry: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    """Each file in turn gets a line appended (code: one that writes a marker file)."""
    marker = tmp_path / "tampered-code-ran"
    refused = []
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        name = path.relative_to(model_dir).as_posix()
        original = path.read_bytes()
        added = _planted(marker) if path.suffix == ".py" else "\n# edited\n"
        path.write_bytes(original + added.encode())
        try:
            with pytest.raises(ModelUnavailableError) as error:
                load_model(URI, registry["tracking"])
        finally:
            path.write_bytes(original)
        assert f"file '{name}'" in str(error.value) and "tampered" in str(error.value), name
        assert not marker.exists(), f"the code appended to {name} ran"
        refused.append(name)
    assert len(refused) >= 30 and "mlflow_model.py" in refused
    assert load_model(URI, registry["tracking"]).version == "1"  # all restored: loads again


@pytest.mark.parametrize(
    ("planted", "why"),
    [
        ("code/lightgbm.py", "shadows a library: MLflow puts code/ first on the import path"),
        ("code/training/sitecustomize.py", "a module the model's code could import"),
        ("artifacts/extra.json", "an artifact nobody logged"),
    ],
)
def test_a_file_added_to_the_model_is_refused_by_name(
    registry: dict[str, str], model_dir: Path, tmp_path: Path, planted: str, why: str
) -> None:
    marker = tmp_path / "planted-code-ran"
    (model_dir / planted).write_text(_planted(marker), encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match=f"file '{planted}'.*not in the model"):
        load_model(URI, registry["tracking"])
    assert not marker.exists(), why


def test_predict_refuses_tampered_code_and_never_runs_it(
    registry: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    import subprocess

    from tests.faults.serve_process import BIN

    marker = tmp_path / "predict-ran-tampered-code"
    with (model_dir / "mlflow_model.py").open("a", encoding="utf-8") as code:
        code.write(_planted(marker))
    out = tmp_path / "scores.parquet"
    env = {**os.environ, "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"]}
    snapshot = str(Path(registry["root"]) / "snapshot")
    done = subprocess.run(
        [
            str(BIN / "leadscore"),
            "predict",
            "--as-of",
            "2026-01-01",
            "-o",
            str(out),
            "-s",
            snapshot,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "file 'mlflow_model.py'" in said and "tampered" in said, said
    assert not marker.exists() and not out.exists()


def test_serve_refuses_tampered_code_and_never_runs_it(
    registry: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "serve-ran-tampered-code"
    with (model_dir / "code" / "training" / "scorer.py").open("a", encoding="utf-8") as code:
        code.write(_planted(marker))
    log = tmp_path / "serve.log"
    port = free_port()
    env = {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE__SERVE__STARTUP_ATTEMPTS": "1",
    }
    with serve_process(env, port, log) as process:
        answer = wait_for_answer(f"http://127.0.0.1:{port}/readyz", process, 90)
    assert answer is not None, log.read_text()
    status, body = answer
    assert status == 503 and "file 'code/training/scorer.py'" in body, body
    assert not marker.exists()
