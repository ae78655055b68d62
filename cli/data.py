"""Snapshots and training sets: `leadscore generate`, `validate` and `features`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer

from cli.common import (
    ConfigOption,
    EngineOption,
    MasterOption,
    SnapshotOption,
    check_engine,
    clear_errors,
    console,
    load_settings,
    progress,
    say,
    spark_training_set,
)
from common.config import Config


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
    file_format: Annotated[
        Literal["parquet", "csv"], typer.Option("--format", help="File format of the tables.")
    ] = "parquet",
    layout: Annotated[
        Literal["contract", "hubspot", "salesforce", "hubspot-export", "salesforce-export"],
        typer.Option(
            help="Tables to write: the data contract, a CRM's connector tables, or its own CSV"
            " export (always CSV)."
        ),
    ] = "contract",
    shift: Annotated[
        str | None,
        typer.Option(
            help="Plant a change of market after --shift-after, to test monitoring: "
            "lead_source, conversion or company_size."
        ),
    ] = None,
    shift_after: Annotated[
        str | None, typer.Option("--shift-after", help="The date the planted shift starts.")
    ] = None,
    shift_size: Annotated[
        float | None, typer.Option("--shift-size", help="The shift's strength (kind's default).")
    ] = None,
) -> None:
    """Generate a synthetic CRM snapshot with known truth.

    Writes leads and events in the data contract (or the same CRM as HubSpot's or Salesforce's
    warehouse tables, see docs/crm-layouts.md) plus truth.parquet: the true conversion
    probability each MQL's outcome was drawn from, for judging models against the best possible.
    """
    from features.layouts import write_layout
    from features.synthetic import SHIFT_KINDS, MarketShift
    from features.synthetic import generate as generate_chunks

    planted = None
    if shift is not None or shift_after is not None:
        if shift not in SHIFT_KINDS or shift_after is None:
            raise typer.BadParameter(
                f"--shift takes one of {list(SHIFT_KINDS)} and needs --shift-after DATE"
            )
        try:
            after = pd.Timestamp(shift_after)
        except ValueError:
            raise typer.BadParameter(f"--shift-after {shift_after!r} is not a date") from None
        planted = MarketShift(shift, after, shift_size)  # type: ignore[arg-type]
    started = time.perf_counter()
    with clear_errors(), progress("generating leads") as update:
        chunks = generate_chunks(
            leads,
            seed,
            as_of=as_of,
            events_per_lead=events_per_lead,
            progress=update,
            shift=planted,
        )
        counts = write_layout(chunks, out, layout=layout, fmt=file_format)
    shown = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    console.print(f"wrote {out}: {shown} in {time.perf_counter() - started:.1f} s")


def validate(
    snapshot: SnapshotOption = None,
    config: ConfigOption = None,
) -> None:
    """Check a snapshot against the data contract and report what reading it dropped or replaced.

    Exits 2 with every problem listed (file or table, column, bad row count, examples).
    """
    from features.quarantine import write_quarantine
    from features.reader import read_snapshot

    with clear_errors():
        settings = load_settings(config, snapshot)
        snap = read_snapshot(settings)
    for line in snap.report.lines():
        console.print(line, highlight=False)
    if settings.source.quarantine is not None:  # validate writes only where told to
        written = write_quarantine(snap.report.quarantine, settings.source.quarantine)
        if written is not None:
            console.print(f"set-aside rows: {written}", highlight=False)
    console.print(
        f"as of {snap.as_of}; {'flat export' if snap.flat else 'timestamped'}: contract OK"
    )


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
    engine: EngineOption = "pandas",
    master: MasterOption = None,
) -> None:
    """Build the training set: point-in-time features and labels of (lead, cutoff) rows.

    Rows follow the snapshot policy (one at mql_at by default). Rows whose horizon has not
    closed by the snapshot's as-of time are censored: left out and counted. Writes the
    Parquet file and a JSON summary beside it, atomically.
    """
    from features.training_file import write_training_set

    started = time.perf_counter()
    with clear_errors():
        settings = load_settings(config, snapshot)
        overrides: dict[str, Any] = {}
        if weekly_weeks is not None:
            overrides["snapshot_policy"] = {"weekly_weeks": weekly_weeks}
        if horizon_days is not None:
            overrides["horizon_days"] = horizon_days
        if overrides:
            settings = Config.model_validate({**settings.model_dump(by_alias=True), **overrides})
        check_engine(engine, master)
        built = None
        if engine == "spark":  # the same functions per bucket of accounts
            on_spark = spark_training_set(settings, master)
            built = (on_spark.snapshot, on_spark.training_set, on_spark.counts)
        with progress("building features") as update:
            written = write_training_set(settings, out, say=say, progress=update, built=built)
        if written.quarantined is not None:
            console.print(f"set-aside rows: {written.quarantined}", highlight=False)
    counts, spec, summary_path = written.counts, written.spec, written.summary
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
