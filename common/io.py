"""Writing results atomically: a reader sees the old file or the whole new one, never a part.

Every stage writes through these: a temporary file beside the target (same file system, so it
can replace it), made durable, then moved onto the target.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def temporary_beside(target: Path) -> Path:
    """A new empty file beside `target` (same file system, so it can replace it), readable
    like the results it will become, and named so that `remove_strays` finds it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    path = Path(name)
    path.chmod(0o666 & ~umask)  # mkstemp makes 0600; results are meant to be read
    return path


def make_durable(path: Path) -> None:
    """fsync a written file (raises OSError, e.g. ENOSPC, if its data cannot be stored)."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def sync_folder(folder: Path) -> None:
    """fsync a folder, so the renames and removals inside it survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_strays(folder: Path, names: Sequence[str]) -> None:
    """Remove the temporary files (`temporary_beside`) a killed run left for these targets."""
    for name in names:
        for stray in folder.glob(f".{glob.escape(name)}.*.tmp"):
            stray.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, else it goes."""
    temporary = temporary_beside(target)
    try:
        yield temporary
        make_durable(temporary)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Run `write(temporary_path)` and move the result onto `target` only if it succeeds."""
    with atomic_path(target) as temporary:
        write(temporary)


def write_parquet(frame: pd.DataFrame, target: Path) -> None:
    write_atomic(target, lambda p: frame.to_parquet(p, index=False))


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy and pandas scalars unwrapped, NaN and infinities to None."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, pd.DataFrame):
        return [to_jsonable(row) for row in value.to_dict(orient="records")]
    if isinstance(value, pd.Series | np.ndarray | list | tuple | set | frozenset):
        return [to_jsonable(item) for item in list(value)]
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def write_json(payload: Mapping[str, Any], target: Path) -> None:
    """Strict JSON (NaN becomes null, numpy values plain), written atomically."""
    text = json.dumps(to_jsonable(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    write_atomic(target, write)
