"""Writing results atomically: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, else it goes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Run `write(temporary_path)` and move the result onto `target` only if it succeeds."""
    with atomic_path(target) as temporary:
        write(temporary)


def write_parquet(frame: pd.DataFrame, target: Path) -> None:
    write_atomic(target, lambda p: frame.to_parquet(p, index=False))


def write_json(payload: Mapping[str, Any], target: Path) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    write_atomic(target, write)
