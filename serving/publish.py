"""Publishing a batch run's outputs as one: the scores file, its monitoring record and the SQL
table hold the same run (one run id in all three), or the previous run, whole.

Files are written to temporary names beside their targets first. Then, under the run lock:

1. a journal (`.<scores name>.publish.json`) names the run id, the temporary files, their
   targets and the SQL table, and is made durable;
2. the SQL table is upserted in one transaction (the run's commit point when there is one);
3. the temporary files replace their targets;
4. the journal is removed.

A run killed anywhere leaves the journal behind; the next run for the same file settles it
under the lock before doing anything (`settle`): it finishes the moves when the run had
committed (no table, or the table holds the journal's run id), else it removes the temporary
files, so the old run stays whole. A disk that fills up fails a step before 3, when nothing
has been replaced yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.io import atomic_path, sync_folder
from serving.monitor import publish_journal_path

#: journal format
JOURNAL_FORMAT = "leadscore.publish/1"


class PublishError(RuntimeError):
    """A run's outputs could not be published or settled; the message says what was left."""


@dataclass(frozen=True)
class Journal:
    """What a run is publishing: its id, the (temporary, target) moves, the SQL table."""

    run_id: str
    moves: tuple[tuple[str, str], ...]  # file names in the scores file's folder
    table: str | None = None  # as given to --table
    database: str | None = None  # the URL without its password, for messages
    rows: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": JOURNAL_FORMAT,
                "run_id": self.run_id,
                "moves": [list(move) for move in self.moves],
                "table": self.table,
                "database": self.database,
                "rows": self.rows,
            },
            indent=1,
        )

    @staticmethod
    def read(path: Path) -> Journal:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != JOURNAL_FORMAT:
                raise ValueError(f"not a {JOURNAL_FORMAT} journal")
            return Journal(
                run_id=str(data["run_id"]),
                moves=tuple((str(a), str(b)) for a, b in data["moves"]),
                table=data.get("table"),
                database=data.get("database"),
                rows=int(data.get("rows", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise PublishError(
                f"{path}: an interrupted run's journal that cannot be read ({error}); "
                "remove it to keep the outputs as they are"
            ) from None


def _write_journal(journal: Journal, path: Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(journal.to_json(), encoding="utf-8")
    sync_folder(path.parent)


def _finish(journal: Journal, folder: Path, path: Path) -> None:
    """Do the moves (those a killed run did not do) and drop the journal."""
    for temporary, target in journal.moves:
        source = folder / temporary
        if source.exists():
            source.replace(folder / target)
    sync_folder(folder)
    path.unlink(missing_ok=True)
    sync_folder(folder)


def _undo(journal: Journal, folder: Path, path: Path) -> None:
    """Remove the run's temporary files and its journal: the old outputs stay."""
    for temporary, _ in journal.moves:
        (folder / temporary).unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    sync_folder(folder)


def commit(
    scores: Path,
    journal: Journal,
    commit_table: Callable[[], None] | None = None,
) -> None:
    """Publish the journal's moves for the scores file `scores`, with the SQL commit (if any)
    as the point after which the run counts as done. Call under the run lock, with every
    temporary file written and durable.

    Raises whatever `commit_table` raises, after undoing (the old outputs stay).
    """
    path = publish_journal_path(scores)
    folder = scores.parent
    _write_journal(journal, path)
    if commit_table is not None:
        try:
            commit_table()
        except BaseException:
            _undo(journal, folder, path)
            raise
    _finish(journal, folder, path)


def settle(
    scores: Path, table_run: Callable[[str], tuple[str | None, int] | None] | None
) -> str | None:
    """Settle a run interrupted while publishing `scores`; call under the run lock.

    `table_run(table)` gives the (run id, rows) a table holds now, or None when this
    invocation cannot look at that table (another table, or no --to-sql). Returns what was
    done ("finished run X", "undid run X") or None when no run was interrupted.

    Raises:
        PublishError: the run had a table that cannot be looked at now.
    """
    path = publish_journal_path(scores)
    if not path.exists():
        return None
    journal = Journal.read(path)
    folder = scores.parent
    if journal.table is None:
        _finish(journal, folder, path)
        return f"finished run {journal.run_id}, interrupted after its files were written"
    found = table_run(journal.table) if table_run is not None else None
    if found is None:
        raise PublishError(
            f"{path}: run {journal.run_id} was interrupted while publishing and may have "
            f"committed to table {journal.table} at {journal.database}; run again with that "
            "--to-sql and --table to settle it (or remove the journal to keep the old files)"
        )
    table_id, rows = found
    committed = table_id == journal.run_id or (table_id is None and rows == journal.rows == 0)
    if committed:
        _finish(journal, folder, path)
        return f"finished run {journal.run_id}: table {journal.table} holds it"
    _undo(journal, folder, path)
    return f"undid run {journal.run_id}: table {journal.table} does not hold it"
