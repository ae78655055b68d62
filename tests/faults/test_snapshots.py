"""Malformed snapshots through the real CLI: each kind exits 2 with an error naming the file,
the column and the count, and writes nothing (no output, no summary, no temporary file)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import random_crm

pytestmark = pytest.mark.integration
runner = CliRunner()
BIN = Path(sys.executable).parent
Breaker = Callable[[Path], None]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, valid CSV snapshot: 40 leads, 200 events."""
    folder = tmp_path_factory.mktemp("faults") / "good"
    folder.mkdir()
    leads, events = random_crm(40, seed=1, events_per_lead=5)
    leads.to_csv(folder / "leads.csv", index=False)
    events.to_csv(folder / "events.csv", index=False)
    return folder


def _frame(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype="str", keep_default_na=False)


def _edit(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Breaker:
    """Rewrite one CSV table as `change` returns it."""

    def apply(folder: Path) -> None:
        change(_frame(folder, name)).to_csv(folder / f"{name}.csv", index=False)

    return apply


def _set(name: str, column: str, row: int, value: str) -> Breaker:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return _edit(name, change)


def _lines(name: str, change: Callable[[list[str]], list[str]]) -> Breaker:
    def apply(folder: Path) -> None:
        path = folder / f"{name}.csv"
        path.write_text("\n".join(change(path.read_text().splitlines())) + "\n")

    return apply


def _to_parquet(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Breaker:
    def apply(folder: Path) -> None:
        frame = change(_frame(folder, name))
        (folder / f"{name}.csv").unlink()
        frame.to_parquet(folder / f"{name}.parquet", index=False)

    return apply


def _truncated_parquet(folder: Path) -> None:
    _to_parquet("events", lambda f: f)(folder)
    data = (folder / "events.parquet").read_bytes()
    (folder / "events.parquet").write_bytes(data[: len(data) // 2])


def _mql_before_created(frame: pd.DataFrame) -> pd.DataFrame:
    row = int(frame.index[frame["mql_at"] != ""][0])
    created = pd.Timestamp(str(frame.loc[row, "created_at"]))
    frame.loc[row, "mql_at"] = (created - pd.Timedelta(days=3)).isoformat()
    return frame


def _write(name: str, data: bytes) -> Breaker:
    def apply(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return apply


def _remove(*names: str) -> Breaker:
    def apply(folder: Path) -> None:
        for name in names:
            (folder / name).unlink()

    return apply


def _latin1(folder: Path) -> None:
    path = folder / "leads.csv"
    path.write_bytes(path.read_bytes().replace(b"Marketing Intern", b"Directeur g\xe9n\xe9ral"))


def _mixed_encodings(folder: Path) -> None:
    """Latin-1 bytes in a file that also holds UTF-8 characters: no one encoding reads both."""
    _latin1(folder)
    path = folder / "leads.csv"
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b",", b",M\xc3\xa9xico ", 1)
    path.write_bytes(b"\n".join(lines))


def _duplicate_header(lines: list[str]) -> list[str]:
    return [lines[0] + ",country"] + [line + ",x" for line in lines[1:]]


def _semicolons(lines: list[str]) -> list[str]:
    return [line.replace(",", ";") for line in lines]


def _one_row_with_semicolons(lines: list[str]) -> list[str]:
    return [*lines[:3], lines[3].replace(",", ";"), *lines[4:]]


def _bom(folder: Path) -> None:
    path = folder / "leads.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _also_parquet(folder: Path) -> None:
    _frame(folder, "leads").to_parquet(folder / "leads.parquet", index=False)


def _disqualified_before_created(frame: pd.DataFrame) -> pd.DataFrame:
    created = pd.Timestamp(str(frame.loc[3, "created_at"]))
    frame["disqualified_at"] = ""
    frame.loc[3, "disqualified_at"] = (created - pd.Timedelta(days=5)).isoformat()
    return frame


def _open_quote(line: int, field: int, close: tuple[int, int] | None = None) -> Breaker:
    """A quote opened at the start of a leads.csv field and closed at `close` (line, field)
    or never."""

    def change(lines: list[str]) -> list[str]:
        parts = lines[line - 1].split(",")
        parts[field] = '"' + parts[field]
        lines[line - 1] = ",".join(parts)
        if close is not None:
            parts = lines[close[0] - 1].split(",")
            parts[close[1]] += '"'
            lines[close[0] - 1] = ",".join(parts)
        return lines

    return _lines("leads", change)


HUGE = "x" * 10_000_000  # a 10 MB cell

#: (kind, break the good snapshot, what the error must say)
CASES: list[tuple[str, Breaker, str]] = [
    ("empty leads file", _write("leads.csv", b""), r"leads.csv: the file is empty"),
    ("empty events file", _write("events.csv", b""), r"events.csv: the file is empty"),
    (
        "header-only leads",
        _lines("leads", lambda lines: lines[:1]),
        r"leads.csv: the table has no rows \(a header only\)",
    ),
    (
        "mixed delimiter",
        _lines("leads", _one_row_with_semicolons),
        r"column 'created_at': 1 row\(s\) have no created_at.*delimited differently",
    ),
    (
        "missing required column",
        _edit("leads", lambda f: f.drop(columns="created_at")),
        r"leads.csv: column 'created_at': 40 row\(s\) \(all\): required column is missing",
    ),
    (
        "missing event column",
        _edit("events", lambda f: f.drop(columns="event_type")),
        r"events.csv: column 'event_type': 200 row\(s\) \(all\): required column is missing",
    ),
    (
        "bad timestamp",
        _set("leads", "created_at", 2, "yesterday"),
        r"column 'created_at': 1 row\(s\) have a timestamp that is not ISO 8601; "
        r"e.g. row 3: 'yesterday'",
    ),
    (
        "day-first timestamp in events",
        _set("events", "occurred_at", 4, "31/12/2025 10:00"),
        r"events.csv: column 'occurred_at': 1 row\(s\) have a timestamp that is not ISO 8601; "
        r"e.g. row 5",
    ),
    (
        "event without a timestamp",
        _set("events", "occurred_at", 7, ""),
        r"events.csv: column 'occurred_at': 1 row\(s\) have no timestamp",
    ),
    (
        "lead without created_at",
        _set("leads", "created_at", 5, ""),
        r"column 'created_at': 1 row\(s\) have no created_at, which the contract requires; "
        r"e.g. lead 'L00005'",
    ),
    (
        "duplicate ids",
        _set("leads", "lead_id", 1, "L00000"),
        r"column 'lead_id': 2 row\(s\) share a lead_id with another row",
    ),
    (
        "all ids empty",
        _edit("leads", lambda f: f.assign(lead_id="")),
        r"column 'lead_id': 40 row\(s\) have no lead_id",
    ),
    (
        "huge string (10 MB cell)",
        _set("leads", "job_title", 3, HUGE),
        r"column 'job_title': 1 row\(s\) are longer than 10,000 characters "
        r"\(the longest has 10,000,000\); e.g. row 4",
    ),
    (
        "huge event type",
        _set("events", "event_type", 9, HUGE),
        r"events.csv: column 'event_type': 1 row\(s\) are longer than 10,000 characters",
    ),
    (
        "mixed encodings",
        _mixed_encodings,
        r"leads.csv: mixes encodings: 1 UTF-8 characters, and \d+ bytes that are not UTF-8 "
        r"\(the first at byte \d+\); re-export it in one encoding or set source.encoding",
    ),
    (
        "negative company size",
        _set("leads", "company_size", 0, "-20"),
        r"column 'company_size': 1 row\(s\) are not a non-negative number of employees; "
        r"e.g. row 1: '-20'",
    ),
    (
        "company size that is not a number",
        _set("leads", "company_size", 6, "lots"),
        r"column 'company_size': 1 row\(s\) .*e.g. row 7: 'lots'",
    ),
    (
        "company size as booleans (Parquet)",
        _to_parquet("leads", lambda f: f.assign(company_size=True)),
        r"leads.parquet: column 'company_size': 40 row\(s\) are true/false, not a non-negative",
    ),
    (
        "events only of unknown leads",
        _edit("events", lambda f: f.assign(lead_id="X" + f["lead_id"])),
        r"events.csv: none of its 200 events belongs to a lead in .*leads.csv",
    ),
    (
        "event far in the future",
        _set("events", "occurred_at", 3, "2999-01-01T00:00:00Z"),
        r"events.csv: column 'occurred_at': 1 row\(s\) are implausible: before 1970-01-01 or "
        r"after \d{4}-\d\d-\d\d.*2999-01-01",
    ),
    (
        "year 0 timestamp",
        _set("leads", "created_at", 2, "0000-01-01"),
        r"column 'created_at': 1 row\(s\) are implausible.*lead 'L00002': 0000-01-01",
    ),
    (
        "year 9999 timestamp",
        _set("leads", "sql_at", 0, "9999-12-31T00:00:00Z"),
        r"column 'sql_at': 1 row\(s\) are implausible",
    ),
    (
        "mql_at before created_at",
        _edit("leads", _mql_before_created),
        r"column 'mql_at': 1 row\(s\) have mql_at before created_at",
    ),
    (
        "sql_at before mql_at",
        _set("leads", "sql_at", 0, "2025-01-01T00:00:00Z"),
        r"column 'sql_at': 1 row\(s\) have sql_at before mql_at",
    ),
    ("leads file missing", _remove("leads.csv"), r"no 'leads' file in .*looked for leads.parquet"),
    ("events file missing", _remove("events.csv"), r"no 'events' file in "),
    ("empty snapshot folder", _remove("leads.csv", "events.csv"), r"no 'leads' file in "),
    (
        "Parquet timestamps as integers",
        _to_parquet(
            "leads", lambda f: f.assign(created_at=pd.to_datetime(f["created_at"]).astype("int64"))
        ),
        r"leads.parquet: column 'created_at': 40 row\(s\) have a timestamp that is not ISO 8601",
    ),
    (
        "truncated Parquet file",
        _truncated_parquet,
        r"events.parquet: not a readable Parquet file",
    ),
    (
        "malformed snapshot.json",
        _write("snapshot.json", b'{"as_of": '),
        r"snapshot.json: not a readable JSON object",
    ),
    (
        "snapshot.json not an object",
        _write("snapshot.json", b"[1, 2]"),
        r"snapshot.json: must hold a JSON object, not list",
    ),
    (
        "snapshot.json as_of not a time",
        _write("snapshot.json", b'{"as_of": "next tuesday"}'),
        r"snapshot.json: as_of 'next tuesday' is not an ISO 8601 time",
    ),
    # issue 16.9: what used to be read silently
    (
        "snapshot.json as_of before all the data",
        _write("snapshot.json", b'{"as_of": "2000-01-01"}'),
        r"snapshot.json: as_of 2000-01-01T00:00:00\+00:00 is before every lead in .*leads.csv "
        r"was created \(the first created_at is 2025-",
    ),
    (
        "snapshot.json numeric as_of",
        _write("snapshot.json", b'{"as_of": 1735689600}'),
        r"snapshot.json: as_of 1735689600 \(int\) must be an ISO 8601 time in quotes",
    ),
    (
        "leads as both CSV and Parquet",
        _also_parquet,
        r"both leads.parquet and leads.csv hold the 'leads' table",
    ),
    (
        "header-only events",
        _lines("events", lambda lines: lines[:1]),
        r"events.csv: the table has no rows.*source.events: null",
    ),
    (
        "infinite company size",
        _set("leads", "company_size", 2, "inf"),
        r"column 'company_size': 1 row\(s\) are not a non-negative number of employees; "
        r"e.g. row 3: 'inf'",
    ),
    (
        "list-typed Parquet text",
        _to_parquet("leads", lambda f: f.assign(job_title=[["Owner"]] * len(f))),
        r"leads.parquet: column\(s\) 'job_title' \(list<.*hold lists or records",
    ),
    (
        "list-typed Parquet events",
        _to_parquet("events", lambda f: f.assign(event_type=[["page_view"]] * len(f))),
        r"events.parquet: column\(s\) 'event_type' \(list<.*hold lists or records",
    ),
    (
        "disqualified_at before created_at",
        _edit("leads", _disqualified_before_created),
        r"column 'disqualified_at': 1 row\(s\) have disqualified_at before created_at; "
        r"e.g. lead 'L00003'",
    ),
    (
        "unterminated quote",
        _open_quote(6, 5),
        r"leads.csv: line 6, column 'job_title': a quoted value opens here and is never closed",
    ),
    (
        "quote closed lines later",
        _open_quote(6, 5, close=(10, 7)),
        r"leads.csv: column 'job_title': 1 row\(s\) hold a line break and the delimiter: a quote "
        r"opens there.*e.g. row 5",
    ),
    (
        "duplicate column names",
        _lines("leads", _duplicate_header),
        r"leads.csv: the header names these columns more than once: \['country'\]",
    ),
]


def _broken(good: Path, tmp_path: Path, breaker: Breaker) -> Path:
    folder = tmp_path / "snapshot"
    shutil.copytree(good, folder)
    breaker(folder)
    return folder


@pytest.mark.parametrize(("kind", "breaker", "expected"), CASES, ids=[c[0] for c in CASES])
def test_malformed_snapshot_exits_2_naming_the_problem_and_writes_nothing(
    good: Path, tmp_path: Path, kind: str, breaker: Breaker, expected: str
) -> None:
    folder = _broken(good, tmp_path, breaker)
    out = tmp_path / "out" / "training_set.parquet"
    result = runner.invoke(app, ["features", "-s", str(folder), "-o", str(out)])
    assert result.exit_code == 2, f"{kind}: {result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert "error:" in result.output and "Traceback" not in result.output
    assert re.search(expected, result.output, re.DOTALL), result.output
    assert len(result.output) < 5_000  # a 10 MB cell is never echoed back
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    checked = runner.invoke(app, ["validate", "-s", str(folder)])
    assert checked.exit_code == 2 and "contract OK" not in checked.output


def test_there_are_at_least_twenty_kinds() -> None:
    assert len({kind for kind, _, _ in CASES}) >= 20


@pytest.mark.parametrize(
    ("kind", "breaker", "reported"),
    [
        ("byte-order mark (Excel)", _bom, "40 leads"),
        ("semicolons", _lines("leads", _semicolons), "leads.csv: detected delimiter ';'"),
        ("latin-1", _latin1, "leads.csv: detected encoding cp1252"),
        (
            "some events of unknown leads",
            _set("events", "lead_id", 0, "nobody"),
            "1 events of unknown leads dropped",
        ),
        (
            "unknown event type",
            _set("events", "event_type", 0, "Chat Started"),
            "kept as 'other' ('Chat Started': 1)",
        ),
    ],
    ids=["bom", "semicolons", "latin-1", "unknown-lead", "unknown-type"],
)
def test_tolerated_oddities_are_reported_not_rejected(
    good: Path, tmp_path: Path, kind: str, breaker: Breaker, reported: str
) -> None:
    folder = _broken(good, tmp_path, breaker)
    result = runner.invoke(app, ["validate", "-s", str(folder)])
    assert result.exit_code == 0, f"{kind}: {result.output}"
    assert reported in result.output and "contract OK" in result.output


def test_the_console_script_exits_2_in_a_real_process(good: Path, tmp_path: Path) -> None:
    folder = _broken(good, tmp_path, _set("leads", "job_title", 3, HUGE))
    out = tmp_path / "ts.parquet"
    done = subprocess.run(
        [str(BIN / "leadscore"), "features", "-s", str(folder), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "longer than 10,000 characters" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
