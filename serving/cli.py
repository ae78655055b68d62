"""`leadscore`: every job of the project as a subcommand.

This is an edge: it reads config and files, calls the pure stages, and writes results
atomically. Contract and config errors print a clear message and exit with status 2,
leaving no output behind.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.config import Config, ConfigError, load_config
from features.contract import ContractError

app = typer.Typer(
    name="leadscore",
    help="Predict which marketing qualified leads (MQLs) become sales qualified leads (SQLs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)

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


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn contract and config errors into one message and exit status 2."""
    try:
        yield
    except (ContractError, ConfigError) as error:
        console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=2) from None


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar whose callback takes (done, total); silent when stderr is not a terminal."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _config(config: Path | None, snapshot: str | None) -> Config:
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


@app.command()
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the snapshot into.")
    ] = Path("data/snapshot"),
    leads: Annotated[int, typer.Option("--leads", "-n", min=1, help="Number of leads.")] = 50_000,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives the same snapshot.")
    ] = 7,
    as_of: Annotated[
        str, typer.Option("--as-of", help="The snapshot's as-of date.")
    ] = "2026-06-30",
    events_per_lead: Annotated[
        float, typer.Option(help="Average engagement events per lead.")
    ] = 50.0,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Generate a synthetic CRM snapshot with known truth.

    Writes leads and events in the data contract plus truth.parquet: the true conversion
    probability each MQL's outcome was drawn from, for judging models against the best possible.
    """
    from features.synthetic import generate as generate_chunks
    from features.synthetic import write_snapshot

    if file_format not in ("parquet", "csv"):
        raise typer.BadParameter("--format must be parquet or csv")
    fmt: Literal["parquet", "csv"] = "parquet" if file_format == "parquet" else "csv"
    started = time.perf_counter()
    with _clear_errors(), _progress("generating leads") as update:
        chunks = generate_chunks(
            leads, seed, as_of=as_of, events_per_lead=events_per_lead, progress=update
        )
        counts = write_snapshot(chunks, out, fmt=fmt)
    shown = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    console.print(f"wrote {out}: {shown} in {time.perf_counter() - started:.1f} s")


@app.command()
def validate(
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
) -> None:
    """Check a snapshot against the data contract and report what reading it dropped or replaced.

    Exits 2 with every problem listed (file or table, column, bad row count, examples).
    """
    from features.snapshot import read_snapshot

    with _clear_errors():
        settings = _config(config, snapshot)
        snap = read_snapshot(settings)
    for line in snap.report.lines():
        console.print(line, highlight=False)
    console.print(
        f"as of {snap.as_of}; {'flat export' if snap.flat else 'timestamped'}: contract OK"
    )


@app.command()
def features(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Training set file to write (.parquet).")
    ],
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
    weekly_weeks: Annotated[
        int | None,
        typer.Option(help="Also add a row each week after mql_at while the lead is open, up to N."),
    ] = None,
    horizon_days: Annotated[
        int | None,
        typer.Option(help="An SQL within this many days after the cutoff is a positive."),
    ] = None,
) -> None:
    """Build the training set: point-in-time features and labels of (lead, cutoff) rows.

    Rows follow the snapshot policy (one at mql_at by default). Rows whose horizon has not
    closed by the snapshot's as-of time are censored: left out and counted. Writes the
    Parquet file and a JSON summary beside it, atomically.
    """
    from features.output import write_json, write_parquet
    from features.pipeline import build_training_set, feature_spec
    from features.snapshot import read_snapshot

    started = time.perf_counter()
    with _clear_errors():
        settings = _config(config, snapshot)
        overrides: dict[str, Any] = {}
        if weekly_weeks is not None:
            overrides["snapshot_policy"] = {"weekly_weeks": weekly_weeks}
        if horizon_days is not None:
            overrides["horizon_days"] = horizon_days
        if overrides:
            settings = Config.model_validate({**settings.model_dump(by_alias=True), **overrides})
        snap = read_snapshot(settings)
        for line in snap.report.lines():
            console.print(line, highlight=False)
        with _progress("building features") as update:
            training_set, counts = build_training_set(snap, settings, update)
        spec = feature_spec(settings, snap.flat)
        write_parquet(training_set, out)
        summary_path = out.with_suffix(".json")
        write_json(
            {
                "as_of": snap.as_of,
                "flat": snap.flat,
                "horizon_days": settings.horizon_days,
                "snapshot_policy": settings.snapshot_policy.model_dump(),
                "rows": counts.as_dict(),
                "features": [
                    {"name": n, "kind": k} for n, k in zip(spec.names, spec.kinds, strict=True)
                ],
                "read": snap.report.lines(),
            },
            summary_path,
        )
    rate = counts.positives / counts.kept if counts.kept else float("nan")
    console.print(
        f"{counts.kept:,} rows ({counts.positives:,} positive, {rate:.1%}), "
        f"{len(spec.names)} features; left out: {counts.censored:,} censored, "
        f"{counts.converted_before_cutoff:,} converted before the cutoff, "
        f"{counts.disqualified_before_cutoff:,} disqualified before it, "
        f"{counts.no_outcome:,} without an outcome",
        highlight=False,
    )
    console.print(f"wrote {out} and {summary_path} in {time.perf_counter() - started:.1f} s")


def main() -> None:  # pragma: no cover - the console script
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
