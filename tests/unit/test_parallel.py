"""Chunks run on several threads give exactly what the serial run gives.

`features.parallel.ordered_map` keeps the chunks' order and bounds the work in flight; a
training set built by `leadscore features` with 1, 2 or 3 workers is the same file, byte for
byte, over a snapshot cut into many chunks of whole accounts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app as cli
from common.config import build_config
from features.parallel import ordered_map, read_ahead, worker_count
from features.reader import read_snapshot, row_group_runs
from features.reader import sources as reader_sources
from features.synthetic import generate, write_snapshot
from tests.fixtures import RowGroupMetadata


def test_ordered_map_keeps_the_order_of_the_items() -> None:
    def slow_for_small(n: int) -> int:
        time.sleep(0.002 * (10 - n % 10))  # early items finish last
        return n * n

    assert list(ordered_map(slow_for_small, range(40), workers=3)) == [n * n for n in range(40)]


def test_ordered_map_runs_serially_in_the_caller_with_one_worker() -> None:
    caller = threading.get_ident()
    assert list(ordered_map(lambda _: threading.get_ident(), range(5), 1)) == [caller] * 5


def test_ordered_map_bounds_the_work_ahead_of_the_consumer() -> None:
    drawn: list[int] = []

    def items() -> object:
        for n in range(100):
            drawn.append(n)
            yield n

    results = ordered_map(lambda n: n, items(), workers=2)
    assert next(results) == 0
    assert len(drawn) <= 4  # the one taken, and at most 2 more computed or running ahead


def test_ordered_map_raises_the_first_failure_in_order() -> None:
    def fails_at_three(n: int) -> int:
        if n == 3:
            raise ValueError("chunk 3")
        return n

    seen = []
    with pytest.raises(ValueError, match="chunk 3"):
        for value in ordered_map(fails_at_three, range(10), workers=2):
            seen.append(value)
    assert seen == [0, 1, 2]


def test_worker_count() -> None:
    assert worker_count(0) >= 1
    assert worker_count(None) == worker_count(0)
    assert worker_count(3) == 3
    assert worker_count(3, chunks=2) == 2
    assert worker_count(0, chunks=0) == 1
    with pytest.raises(ValueError, match=r"features\.workers"):
        worker_count(-1)


def test_the_setting_is_validated() -> None:
    assert build_config({}).features.workers == 0
    assert build_config({"features": {"workers": 2}}).features.workers == 2
    with pytest.raises(ValueError, match=r"features\.workers"):
        build_config({"features": {"workers": -1}})


def test_row_group_runs() -> None:
    assert row_group_runs(RowGroupMetadata([4, 4, 4, 1, 9]), 9) == [[0, 1], [2, 3], [4]]
    assert row_group_runs(RowGroupMetadata([]), 9) == []
    assert row_group_runs(RowGroupMetadata([4, 10]), 9) is None


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small snapshot whose events file has many row groups."""
    folder = tmp_path_factory.mktemp("parallel") / "snapshot"
    write_snapshot(generate(3_000, seed=5), folder)
    events = pq.read_table(folder / "events.parquet")
    pq.write_table(events, folder / "events.parquet", row_group_size=7_000)
    return folder


@pytest.fixture
def small_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events read in chunks of two or three row groups, so that the workers share them."""
    monkeypatch.setattr(reader_sources, "EVENT_BATCH_ROWS", 20_000)


@pytest.fixture(scope="module")
def csv_snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("parallel-csv") / "snapshot"
    write_snapshot(generate(1_500, seed=6), folder, fmt="csv")
    return folder


@pytest.mark.usefixtures("small_reads")
@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_read_snapshot_is_the_same_with_any_workers(
    snapshot_dir: Path, csv_snapshot_dir: Path, kind: str
) -> None:
    folder = snapshot_dir if kind == "parquet" else csv_snapshot_dir

    def read(workers: int) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        config = build_config({"source": {"path": str(folder)}, "features": {"workers": workers}})
        snap = read_snapshot(config)
        log = snap.events
        return (log.lead, log.at_ms, log.kind), vars(snap.report)

    (serial, report) = read(1)
    assert len(serial[0]) > 3 * 20_000  # several chunks
    if kind == "parquet":
        assert pq.ParquetFile(folder / "events.parquet").metadata.num_row_groups > 10
    for workers in (2, 3):
        arrays, theirs = read(workers)
        assert theirs == report
        for mine, expected in zip(arrays, serial, strict=True):
            assert mine.dtype == expected.dtype
            np.testing.assert_array_equal(mine, expected)


@pytest.mark.usefixtures("small_reads")
def test_leadscore_features_writes_the_same_bytes_with_any_workers(
    snapshot_dir: Path, tmp_path: Path
) -> None:
    written = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"training_set-{workers}.parquet"
        env = {
            "LEADSCORE__FEATURES__WORKERS": str(workers),
            # many chunks of whole accounts, so that the workers really share the work
            "LEADSCORE__FEATURES__CHUNK_LEADS": "250",
        }
        result = CliRunner().invoke(
            cli, ["features", "--snapshot", str(snapshot_dir), "--out", str(out)], env=env
        )
        assert result.exit_code == 0, result.output
        written[workers] = (out.read_bytes(), out.with_suffix(".json").read_bytes())
    assert len(written[1][0]) > 10_000
    assert written[2] == written[1]
    assert written[3] == written[1]
    # and the chunks' size changes nothing either: one chunk of every lead, serially
    out = tmp_path / "training_set-one-chunk.parquet"
    result = CliRunner().invoke(
        cli,
        ["features", "--snapshot", str(snapshot_dir), "--out", str(out)],
        env={"LEADSCORE__FEATURES__WORKERS": "1", "LEADSCORE__FEATURES__CHUNK_LEADS": "100000"},
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == written[1][0]


def test_ordered_map_raises_an_earlier_failure_before_a_later_items_error() -> None:
    def items() -> object:
        yield from range(3)
        raise OSError("reading item 3")

    def fails_at_one(n: int) -> int:
        if n == 1:
            raise ValueError("chunk 1")
        return n

    with pytest.raises(ValueError, match="chunk 1"):
        list(ordered_map(fails_at_one, items(), workers=3))
    with pytest.raises(OSError, match="reading item 3"):
        list(ordered_map(lambda n: n, items(), workers=3))


def test_read_ahead_starts_at_once_keeps_order_and_bounds_what_waits() -> None:
    drawn: list[int] = []
    started = threading.Event()

    def items() -> object:
        for n in range(50):
            started.set()
            drawn.append(n)
            yield n

    ahead = read_ahead(items(), depth=4)
    assert started.wait(5)  # drawing began before anything was taken
    deadline = time.monotonic() + 5
    while len(drawn) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(drawn) <= 4 + 1  # 4 waiting, one blocked on the full queue
    assert list(ahead) == list(range(50))


def test_read_ahead_raises_a_failure_after_the_items_before_it() -> None:
    def items() -> object:
        yield 0
        yield 1
        raise ValueError("table 2")

    seen = []
    with pytest.raises(ValueError, match="table 2"):
        for value in read_ahead(items(), depth=8):
            seen.append(value)
    assert seen == [0, 1]


def test_read_ahead_stops_its_thread_when_closed() -> None:
    closed = threading.Event()

    def items() -> object:
        try:
            yield from range(1000)
        finally:
            closed.set()

    ahead = read_ahead(items(), depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert closed.wait(5)  # the thread ended and closed the source
    with pytest.raises(StopIteration):
        next(ahead)
