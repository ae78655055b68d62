"""Test helpers shared by several test folders' conftests (plain functions, not fixtures)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cli import app as cli
from features.synthetic import generate, write_snapshot


def trained_registry(root: Path, *, leads: int, seed: int) -> tuple[dict[str, str], str]:
    """Generate a synthetic snapshot of `leads` leads in `root` and `leadscore train` it into a
    temporary MLflow sqlite store there (the run must succeed).

    Returns ({snapshot, tracking, root, and the LEADSCORE__MLFLOW__ variables naming the
    store}, the command's output).
    """
    snapshot = root / "snapshot"
    write_snapshot(generate(leads, seed=seed), snapshot)
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    env = {
        "LEADSCORE__MLFLOW__TRACKING_URI": tracking,
        "LEADSCORE__MLFLOW__ARTIFACT_LOCATION": str(root / "artifacts"),
    }
    result = CliRunner().invoke(
        cli, ["train", "-s", str(snapshot), "-r", str(root / "report")], env=env
    )
    assert result.exit_code == 0, result.output
    return {
        "snapshot": str(snapshot),
        "tracking": tracking,
        "root": str(root),
        **env,
    }, result.output


def copy_registry(registry: Mapping[str, str], root: Path) -> dict[str, str]:
    """A private copy of a `trained_registry` in `root`: snapshot, MLflow store and artifacts.

    MLflow records absolute artifact paths in its database, so a plain copy would still load
    (and let a test change) the original's model files: every path under the original root
    recorded in the copy's database is moved to the copy. The model files are copied byte for
    byte, so their integrity digests still hold.

    Returns the registry's mapping with its paths in `root`.
    """
    source = Path(registry["root"])
    shutil.copytree(source, root, dirs_exist_ok=True)
    old, new = f"{source}{os.sep}", f"{root}{os.sep}"
    with contextlib.closing(sqlite3.connect(root / "mlflow.db")) as connection, connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                connection.execute(
                    f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                    f'WHERE typeof("{column[1]}") = \'text\' AND instr("{column[1]}", ?) > 0',
                    (old, new, old),
                )
    return {key: value.replace(old, new) for key, value in registry.items()} | {"root": str(root)}


def plant_post_outcome_column(folder: Path, seed: int = 1) -> None:
    """Add `meeting_held` to a synthetic snapshot's leads: recorded by sales after the outcome,
    yes for 70% of the leads that converted within 90 days of their MQL and 6% of the others
    (alone it ranks leads with AUC about 0.82)."""
    leads = pd.read_parquet(folder / "leads.parquet")
    won = (
        leads["sql_at"].notna()
        & leads["mql_at"].notna()
        & ((leads["sql_at"] - leads["mql_at"]) <= pd.Timedelta(days=90))
    ).to_numpy()
    draw = np.random.default_rng(seed).random(len(leads))
    leads["meeting_held"] = np.where(won, draw < 0.70, draw < 0.06)
    leads.to_parquet(folder / "leads.parquet")


FLAT_CONFIG = """source: {{path: {folder}, leads: leads.csv, events: null, flat: true}}
mapping:
  leads: {{Prospect ID: lead_id, Converted: converted, Lead Source: lead_source}}
custom_fields:
  - {{column: Origin, kind: fit}}
  - {{column: Visits, kind: engagement}}
  - {{column: Do Not Email, kind: fit, type: boolean}}
"""


def flat_export(folder: Path, rows: int, seed: int = 0) -> Path:
    """A flat export as X Education's (one row per lead, no timestamps, `Converted`), with a
    categorical, a numeric and a boolean custom field that carry signal; returns its config."""
    rng = np.random.default_rng(seed)
    origin = rng.choice(["Landing Page", "API", "Lead Import"], rows)
    visits = rng.gamma(2.0, 2.0, rows).round(0)
    no_email = rng.random(rows) < 0.1
    logit = -1.0 + 1.0 * (origin == "Landing Page") + 0.2 * visits - 1.5 * no_email
    converted = rng.random(rows) < 1 / (1 + np.exp(-logit))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "Prospect ID": [f"P{i:06d}" for i in range(rows)],
            "Converted": converted.astype(int),
            "Lead Source": rng.choice(["Google", "Direct Traffic", "Reference"], rows),
            "Origin": origin,
            "Visits": visits,
            "Do Not Email": np.where(no_email, "Yes", "No"),
        }
    ).to_csv(folder / "leads.csv", index=False)
    config = folder / "config.yaml"
    config.write_text(FLAT_CONFIG.format(folder=folder), encoding="utf-8")
    return config


class RowGroup:
    """A Parquet row group's metadata, as far as the row-group runs read it."""

    def __init__(self, rows: int) -> None:
        self.num_rows = rows


class RowGroupMetadata:
    """A Parquet file's metadata with row groups of these sizes (`row_group_runs`)."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.num_row_groups = len(sizes)

    def row_group(self, i: int) -> RowGroup:
        return RowGroup(self.sizes[i])
