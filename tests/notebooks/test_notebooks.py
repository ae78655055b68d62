"""The notebooks in notebooks/ run top to bottom on small data, so that they cannot rot.

Each is executed with nbclient in a real Jupyter kernel (the venv's ipykernel), from the
notebooks folder as a user would open it. They are committed without outputs, and running them
leaves no file behind in the repository (they write to temporary folders).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
#: Each runs in 20-45 s on the loaded 2-core development machine; far more means it has grown.
LIMIT_SECONDS = 120.0
#: What MLflow writes by default: a notebook must never leave these in the repository.
MLFLOW_LEFTOVERS = ("mlflow.db", "mlruns", "mlartifacts")


#: Notebooks that read the real datasets in ../shared: skipped where that folder is missing
#: (a clone of its own), as every other test that needs it.
READS_SHARED = {"04_real_data_x_education"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _runs(paths: list[Path]) -> list[Any]:
    """The notebooks to run, those that read ../shared marked so."""
    return [
        pytest.param(p, id=p.stem, marks=[pytest.mark.shared] if p.stem in READS_SHARED else [])
        for p in paths
    ]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if ".ipynb_checkpoints" not in p.parts}


def test_the_four_numbered_notebooks_are_there() -> None:
    prefixes = [p.name[:3] for p in NOTEBOOKS]
    assert prefixes == ["01_", "02_", "03_", "04_"], [p.name for p in NOTEBOOKS]
    assert {p.stem for p in NOTEBOOKS} >= READS_SHARED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    with_outputs = [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not with_outputs, f"{path.name}: cells {with_outputs} hold outputs; clear them"


@pytest.mark.slow
@pytest.mark.parametrize("path", _runs(NOTEBOOKS))
def test_runs_top_to_bottom(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    before = _files(FOLDER)
    leftovers_before = {name for name in MLFLOW_LEFTOVERS if (ROOT / name).exists()}
    client = NotebookClient(
        notebook,
        timeout=int(LIMIT_SECONDS),  # per cell; the whole notebook is held to it below
        kernel_name="python3",
        resources={"metadata": {"path": str(FOLDER)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    seconds = time.perf_counter() - started
    print(f"{path.name}: {seconds:.1f} s")
    assert seconds < LIMIT_SECONDS, f"{path.name} took {seconds:.0f} s; keep its data small"
    assert _files(FOLDER) == before, f"{path.name} wrote {_files(FOLDER) - before}"
    leftovers = {name for name in MLFLOW_LEFTOVERS if (ROOT / name).exists()}
    assert leftovers <= leftovers_before, f"{path.name} left {leftovers - leftovers_before}"
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
