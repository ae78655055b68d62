"""What every `leadscore` command shares: the console, the --config and --snapshot options,
loading the settings, clear errors (exit status 2) and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from common.config import Config, ConfigError, load_config
from features.contract import ContractError

if TYPE_CHECKING:
    from serving.spark_features import SparkTrainingSet

# plain text unless a line asks for markup (`flagged`): messages quote export columns and values
console = Console(stderr=True, soft_wrap=True, markup=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (see examples/). Without it, defaults apply; LEADSCORE__* variables "
        "override either.",
        exists=True,
        dir_okay=False,
    ),
]
SnapshotOption = Annotated[
    str | None,
    typer.Option(
        "--snapshot",
        "-s",
        help="Snapshot folder (CSV or Parquet files) or SQLAlchemy URL; "
        "overrides the config's source.",
    ),
]


def say(line: str) -> None:
    """Print one line of a job's story (no highlighting of numbers and paths)."""
    console.print(line, highlight=False)


def flagged(label: str, text: object) -> str:
    """A line for `console.print(..., markup=True)`: `label` in its style (rich markup, e.g.
    "[bold red]error:[/]"), then `text` as it is. A message's own brackets (a column named
    'Revenue [USD]', the extra in leadscore[spark]) would otherwise be read as markup and
    vanish from the line."""
    return f"{label} {escape(str(text))}"


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn contract and config errors into one message and exit status 2."""
    try:
        yield
    except (ContractError, ConfigError) as error:
        console.print(flagged("[bold red]error:[/]", error), markup=True, highlight=False)
        raise typer.Exit(code=2) from None


class _Bar:
    """A progress callback (done, total) on one rich task, with `stage(name)` for work in
    stages (a moment model's boosters: see `training.model.staged`)."""

    def __init__(self, bar: Progress, task: TaskID, label: str) -> None:
        self.bar, self.task, self.label = bar, task, label

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def stage(self, name: str) -> None:
        """Name the stage now running; its rounds count from the start of the bar again."""
        self.bar.update(self.task, description=f"{self.label}: {name}", completed=0, total=None)
        self.bar.refresh()  # shown at once, not at the next tick


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar whose callback takes (done, total); silent when stderr is not a terminal.

    When the work ends early (LightGBM's early stopping ends the boosting rounds long before
    the round limit), the bar ends full at what was done, not stopped part way.
    """
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(label, total=None)
        yield _Bar(bar, task, label)
        bar.update(task, total=bar.tasks[0].completed)


def load_settings(config: Path | None, snapshot: str | None) -> Config:
    """The config file (or defaults, with LEADSCORE__* variables), its source replaced by
    --snapshot when given (a URL or a folder)."""
    loaded = load_config(config)
    if snapshot is None:
        return loaded
    source: dict[str, Any] = loaded.source.model_dump(by_alias=True)
    if "://" in snapshot:
        source.update(url=snapshot, path=None)
    else:
        source.update(path=Path(snapshot), url=None)
    values = loaded.model_dump(by_alias=True)
    values["source"] = source
    return Config.model_validate(values)


def existing_store(settings: Config) -> None:
    """A command that only reads or moves aliases needs a store that exists: opening a
    missing local one would create it (an empty mlflow.db wherever the command ran)."""
    from serving.model_store import ModelUnavailableError, require_store

    try:
        require_store(settings.mlflow.tracking_uri)
    except ModelUnavailableError as error:
        raise ContractError(str(error)) from None


EngineOption = Annotated[
    Literal["pandas", "spark"],
    typer.Option(
        "--engine",
        help="pandas (in this process) or spark (the same functions per group of accounts; "
        "needs the spark extra and Java 17+).",
    ),
]
MasterOption = Annotated[
    str | None,
    typer.Option("--master", help="Spark master URL for --engine spark (default local[2])."),
]


def check_engine(engine: str, master: str | None, training_set: Path | None = None) -> None:
    """--master only with --engine spark; --engine spark builds the training set itself."""
    if master is not None and engine != "spark":
        raise ContractError("--engine is pandas or spark; --master goes with --engine spark")
    if training_set is not None and engine == "spark":
        raise ContractError("--engine spark builds the training set: drop it or --training-set")


def spark_training_set(settings: Config, master: str | None) -> SparkTrainingSet:
    """The training set built on Spark (serving/spark_features.py)."""
    from serving.spark_features import spark_training_set as on_spark

    return on_spark(settings, master)
