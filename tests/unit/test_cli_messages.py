"""Messages reach the user as written: a message's own brackets are not read as markup."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli import app as cli
from cli.common import flagged


def _export(folder: Path, header: str, row: str) -> Path:
    folder.mkdir()
    (folder / "leads.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    (folder / "events.csv").write_text(
        "lead_id,event_type,occurred_at\nL1,email_open,2026-01-03T00:00:00Z\n", encoding="utf-8"
    )
    return folder


def test_a_bracketed_column_is_named_whole_in_notes_and_errors(tmp_path: Path) -> None:
    """An export column named 'Amount [eur]' appears whole in the reader's note and in the
    error that lists the columns found (rich took "[eur]" for a style and dropped it)."""
    kept = _export(
        tmp_path / "kept", "lead_id,account_id,created_at,Amount [eur]", "L1,A1,2026-01-02,10"
    )
    args = ["features", "-s", str(kept), "-o", str(tmp_path / "ts.parquet")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "columns not in the contract, ignored: Amount [eur]" in result.output

    broken = _export(tmp_path / "broken", "account_id,created_at,Amount [eur]", "A1,2026-01-02,10")
    args = ["features", "-s", str(broken), "-o", str(tmp_path / "ts2.parquet")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert "column 'lead_id'" in result.output and "'Amount [eur]'" in result.output


def test_flagged_keeps_the_label_markup_and_escapes_the_text() -> None:
    line = flagged("[bold red]error:[/]", "pip install 'leadscore[spark]'")
    assert line.startswith("[bold red]error:[/] ")
    assert line.endswith(r"pip install 'leadscore\[spark]'")
