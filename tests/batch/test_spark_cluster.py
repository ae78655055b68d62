"""A real distributed run (issue 16.10): a Spark standalone master and two workers, each its
own process on this machine, run `leadscore predict --engine spark --master spark://…`; the
file equals the pandas engine's, and equals it again when one worker (with its executor) is
killed mid-run.

Needs Java 17+ and pyspark (the spark extra): marked `spark_cluster`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app as cli
from serving.batch import COLUMNS
from tests.batch.conftest import AS_OF, LEADSCORE

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")
pytestmark = [
    pytest.mark.spark_cluster,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="a Spark cluster needs Java 17+"),
]
SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
# the cluster's spark-defaults.conf: its executors compile with C1 only (a short job)
SPARK_CONF = Path(__file__).parent / "spark_conf"


def _free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise AssertionError("no free port")


def _spark_env() -> dict[str, str]:
    """The master's, the workers' and the driver's environment: this Python and this tree."""
    return {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_CONF_DIR": str(SPARK_CONF),
        "SPARK_DAEMON_JAVA_OPTS": "-XX:TieredStopAtLevel=1",  # the master's and workers' JVMs
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).parents[2])),
    }


@dataclass
class Cluster:
    master: str
    ui: str
    workers: list[subprocess.Popen[bytes]]

    def alive_workers(self) -> int:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as answer:
            state = json.load(answer)
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def running_apps(self) -> list[dict[str, object]]:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as answer:
            return list(json.load(answer).get("activeapps", []))


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            command,
            env=_spark_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a worker dies with its executors
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} within {seconds:.0f} s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master on 127.0.0.1:7077 (another port if taken) and two one-core workers."""
    logs = tmp_path_factory.mktemp("spark-cluster")
    port, ui_port = _free_port(7077), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    master = _start(
        [
            *(str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"),
            *("--port", str(port), "--webui-port", str(ui_port)),
        ],
        logs / "master.log",
    )
    processes = [master]
    cluster = Cluster(master_url, f"http://127.0.0.1:{ui_port}", [])
    try:
        _wait(lambda: cluster.alive_workers() == 0, 120, "the master did not answer")
        for n in range(2):
            worker = _start(
                [
                    *(str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", master_url),
                    *("--host", "127.0.0.1", "--cores", "1", "--memory", "1536m"),
                    *("--webui-port", str(_free_port()), "--work-dir", str(logs / f"work{n}")),
                ],
                logs / f"worker{n}.log",
            )
            processes.append(worker)
            cluster.workers.append(worker)
        _wait(lambda: cluster.alive_workers() == 2, 120, "two workers did not register")
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="module")
def pandas_scores(
    registry: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    """The pandas engine's file for the same night: what every cluster run must equal."""
    out = tmp_path_factory.mktemp("pandas") / "scores.parquet"
    result = CliRunner().invoke(
        cli,
        ["predict", "-s", registry["snapshot"], "--as-of", AS_OF.isoformat(), "--out", str(out)],
        env={
            "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
            "LEADSCORE__SERVE__MODEL_URI": "models:/leadscore/1",
        },
    )
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out)


def _cluster_command(registry: dict[str, str], cluster: Cluster, out: Path) -> list[str]:
    return [
        LEADSCORE,
        *("predict", "-s", registry["snapshot"], "--as-of", AS_OF.isoformat()),
        *("--out", str(out), "--engine", "spark", "--master", cluster.master),
    ]


def _cluster_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**_spark_env(), **cli_env}


def _busy(work: Path) -> bool:
    """Whether the executor under a worker's work folder is running a task now."""
    logs = "".join(p.read_text(errors="replace") for p in work.glob("app-*/*/stderr"))
    return logs.count("Running task") > logs.count("Finished task")


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same rows and values; what every run stamps afresh (scored_at, run_id) aside."""
    got = got.sort_values("lead_id", ignore_index=True)
    expected = expected.sort_values("lead_id", ignore_index=True)
    assert got["lead_id"].tolist() == expected["lead_id"].tolist()
    np.testing.assert_allclose(got["probability"], expected["probability"], rtol=0, atol=1e-9)
    for name in COLUMNS:
        if name not in ("probability", "scored_at"):
            assert got[name].tolist() == expected[name].tolist(), name


def test_a_standalone_cluster_gives_the_pandas_engines_file(
    cluster: Cluster,
    registry: dict[str, str],
    cli_env: dict[str, str],
    pandas_scores: pd.DataFrame,
    tmp_path: Path,
) -> None:
    expected = pandas_scores
    out = tmp_path / "cluster.parquet"
    done = subprocess.run(
        _cluster_command(registry, cluster, out),
        env=_cluster_env(cli_env),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"scored {len(expected):,} open MQLs" in " ".join((done.stdout + done.stderr).split())
    _assert_same(pd.read_parquet(out), expected)


def test_a_worker_killed_mid_run_gives_the_same_file(
    cluster: Cluster,
    registry: dict[str, str],
    cli_env: dict[str, str],
    pandas_scores: pd.DataFrame,
    tmp_path: Path,
) -> None:
    expected = pandas_scores
    out = tmp_path / "cluster.parquet"
    log = tmp_path / "driver.log"
    with log.open("wb") as sink:
        job = subprocess.Popen(
            _cluster_command(registry, cluster, out),
            env=_cluster_env(cli_env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        # both workers run an executor for the job: then one of them goes, executor and all
        work = [Path(w.args[-1]) for w in cluster.workers]  # type: ignore[index]
        _wait(
            lambda: all(any(folder.glob("app-*/*/stderr")) for folder in work) or job.poll(),
            600,
            "the job never had executors on both workers",
        )
        # kill it while its executor is inside a task (its log: started, not finished)
        _wait(lambda: _busy(work[0]) or job.poll() is not None, 600, "no task ran on worker 0")
        assert job.poll() is None, "the job ended before a worker could be killed"
        victim = cluster.workers[0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert job.wait(timeout=900) == 0, log.read_text()[-5000:]
    finally:
        if job.poll() is None:
            job.kill()
    said = " ".join(log.read_text().split())
    assert f"scored {len(expected):,} open MQLs" in said
    _assert_same(pd.read_parquet(out), expected)


def test_a_standalone_cluster_builds_the_pandas_engines_training_set(
    cluster: Cluster, registry: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`leadscore features --engine spark --master spark://…` on the two workers writes the
    pandas engine's training set and summary, byte for byte (issue 17.3)."""
    expected = tmp_path / "pandas" / "training_set.parquet"
    result = CliRunner().invoke(
        cli, ["features", "-s", registry["snapshot"], "-o", str(expected)], env=cli_env
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "cluster" / "training_set.parquet"
    done = subprocess.run(
        [
            *(LEADSCORE, "features", "-s", registry["snapshot"], "-o", str(out)),
            *("--engine", "spark", "--master", cluster.master),
        ],
        env=_cluster_env(cli_env),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(pd.read_parquet(out)) > 1_000
    assert out.read_bytes() == expected.read_bytes()
    summaries = [p.with_suffix(".json").read_text() for p in (expected, out)]
    assert summaries[0] == summaries[1]
