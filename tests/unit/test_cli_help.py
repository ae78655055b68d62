"""The CLI's surface: --version, shell completion, choices for enumerated options, help text
wrapped once with no type placeholder on flags, and progress bars that end full."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import cli
from cli import common
from cli.help import reflow

runner = CliRunner()


def _commands() -> Iterator[list[str]]:
    """Every command path of the CLI, the root included (e.g. [], ["train"], ["rules",
    "suggest"])."""
    root = typer.main.get_command(cli.app)

    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(root, [])


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"leadscore {version('leadscore')}"


def test_shell_completion_is_offered_and_completes_choices() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert "--install-completion" in result.output
    assert "--show-completion" in result.output
    # what bash asks the installed script when completing `leadscore predict --engine <TAB>`
    script = Path(sys.executable).parent / "leadscore"
    env = {
        **os.environ,
        "_LEADSCORE_COMPLETE": "complete_bash",
        "COMP_WORDS": "leadscore predict --engine ",
        "COMP_CWORD": "3",
    }
    completed = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert completed.stdout.split() == ["pandas", "spark"], completed


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["generate", "--format", "xml"], "--format"),
        (
            ["predict", "--as-of", "2026-06-30", "--out", "x.parquet", "--engine", "dask"],
            "--engine",
        ),
    ],
)
def test_choices_reject_other_values_with_exit_2(args: list[str], option: str) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize(
    ("command", "choices"), [("generate", "<parquet|csv>"), ("predict", "<pandas|spark>")]
)
def test_help_lists_the_choices(command: str, choices: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"})
    assert choices in result.output


def test_no_help_shows_a_bool_placeholder() -> None:
    for path in _commands():
        result = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path


def test_help_paragraphs_are_wrapped_once() -> None:
    """On a wide terminal each paragraph of a command's docstring is one line: the docstring's
    own line breaks are not kept on top of the terminal's wrapping."""
    root = typer.main.get_command(cli.app)
    checked = 0
    for path in _commands():
        command: Any = root
        for name in path:
            command = command.commands[name]
        result = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": "2000"})
        lines = [line.strip(" │") for line in result.output.splitlines()]
        for paragraph in reflow(command.help or "").split("\n\n"):
            assert paragraph in lines, (path, paragraph)
            checked += 1
    assert checked > 20


def test_reflow_joins_lines_and_keeps_paragraphs() -> None:
    text = """First line
    goes on.

    Second paragraph,
      indented oddly.
    """
    assert reflow(text) == "First line goes on.\n\nSecond paragraph, indented oddly."


def test_a_bar_that_ends_early_ends_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Early stopping ends training at round 704 of 3000: the bar ends at 704/704."""
    screen = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with common.progress("boosting rounds") as update:
        for done in range(1, 705):
            update(done, 3000)
    final = screen.getvalue().rsplit("\r", 1)[-1]
    assert "704/704" in final, final
    assert "3000" not in final


def test_a_fit_in_stages_names_the_stage_on_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """A moment model's boosters each count their rounds from 1 under their own name."""
    from training.progress import reporting, staged

    screen = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with common.progress("boosting rounds") as update:
        staged(update, "the moment booster")
        for done in range(1, 301):
            update(done, 3000)
        report = reporting(staged(update, "cross-fitting 1 of 4"), 150)[0]
        for done in range(40):
            report(SimpleNamespace(iteration=done, begin_iteration=0))
    final = screen.getvalue().rsplit("\r", 1)[-1]
    assert "boosting rounds: cross-fitting 1 of 4" in final, final
    assert "40/40" in final, final
    assert "the moment booster" in screen.getvalue()
    calls: list[tuple[int, int]] = []
    plain = staged(lambda done, total: calls.append((done, total)), "the bend by age")
    assert plain is not None
    plain(1, 2)  # any other callback: the rounds alone
    assert calls == [(1, 2)]


def test_python_m_cli_is_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"leadscore {version('leadscore')}"
