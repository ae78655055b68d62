"""How a CSV export is written: its delimiter and its text encoding, detected when not given.

Real exports come as Excel or a CRM writes them: `;` where the comma is the decimal mark,
tabs, `|`; UTF-8 with or without a byte-order mark, UTF-16 from Excel's "Unicode text", or a
Windows code page. With `source.delimiter: auto` and `source.encoding: auto` (the defaults)
the reader looks at the start of each file and says what it found in its summary.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import SourceConfig
from features.contract import ContractError

AUTO = "auto"
#: Delimiters tried, in the order that breaks ties.
DELIMITERS = (",", ";", "\t", "|")
#: Bytes looked at to choose an encoding: a whole export of leads, the start of a large one.
SAMPLE_BYTES = 8 << 20
_SHOWN = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


@dataclass(frozen=True)
class Dialect:
    """The delimiter and encoding a CSV file is read with, and whether each was detected."""

    delimiter: str
    encoding: str
    detected_delimiter: bool = False
    detected_encoding: bool = False

    def note(self, path: Path) -> str | None:
        """What was detected, for the reader's summary; None when the file turned out to be
        comma-delimited UTF-8 (or both were configured)."""
        found = []
        if self.detected_delimiter and self.delimiter != ",":
            found.append(f"delimiter {shown_delimiter(self.delimiter)}")
        if self.detected_encoding and self.encoding != "utf-8":
            found.append(f"encoding {self.encoding}")
        if not found:
            return None
        return (
            f"{path.name}: detected {' and '.join(found)} (source.delimiter and "
            "source.encoding are auto; set them to override)"
        )


def shown_delimiter(sep: str) -> str:
    return _SHOWN.get(sep, repr(sep))


def _head(path: Path, size: int) -> bytes:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data: bytes = handle.read(size)
            return data
    except (OSError, EOFError):
        return b""  # the reader reports an unreadable file with its own message


def detect_encoding(sample: bytes, complete: bool, path: Path | None = None) -> str:
    """UTF-8 (utf-8-sig reads a byte-order mark away), UTF-16 by its mark, else cp1252 when
    every byte is defined there, else latin-1 (which reads any byte).

    `complete`: the sample is the whole file (else a cut multi-byte character at its end is
    not an error). A sample with both UTF-8 characters and bytes that are not UTF-8 is an
    error: any single encoding would garble one of the two.
    """
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
        return "utf-8"
    except UnicodeDecodeError as error:
        first_bad = error.start
    decoded = (sample if complete else sample[:-3]).decode("utf-8", errors="replace")
    bad = decoded.count("\ufffd")
    good = len(decoded) - len(decoded.encode("ascii", errors="ignore")) - bad
    if good and bad:
        name = path.name if path is not None else "the file"
        raise ContractError(
            f"{name}: mixes encodings: {good:,} UTF-8 characters, and {bad:,} bytes that are not "
            f"UTF-8 (the first at byte {first_bad}); re-export it in one encoding or set "
            "source.encoding"
        )
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _header_line(text: str) -> str:
    """The first record's text (a quoted header cell may hold a line break)."""
    reader = csv.reader(io.StringIO(text), delimiter="\x00")
    try:
        first = next(reader)
    except (StopIteration, csv.Error):
        return ""
    return "\x00".join(first)


def _fields(line: str, sep: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=sep)))
    except (StopIteration, csv.Error):
        return 0


def detect_delimiter(text: str) -> str:
    """The delimiter that splits the header into the most columns, consistently with the next
    lines; a comma when none splits it (a one-column file)."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        return ","
    header = _header_line(text) or lines[0]
    best, best_score = ",", (0, 0)
    for sep in DELIMITERS:
        columns = _fields(header, sep)
        if columns < 2:
            continue
        agreeing = sum(_fields(line, sep) == columns for line in lines[1:6])
        score = (agreeing, columns)
        if score > best_score:
            best, best_score = sep, score
    return best


def resolve_dialect(path: Path, source: SourceConfig) -> Dialect:
    """The file's delimiter and encoding: the configured ones, detected where set to auto.

    A `.tsv` file is tab-delimited whatever the config says.
    """
    auto_encoding = source.encoding.strip().lower() == AUTO
    auto_delimiter = source.delimiter == AUTO and path.suffix != ".tsv"
    sample = _head(path, SAMPLE_BYTES + 1) if auto_encoding or auto_delimiter else b""
    complete = len(sample) <= SAMPLE_BYTES
    sample = sample[:SAMPLE_BYTES]
    encoding = detect_encoding(sample, complete, path) if auto_encoding else source.encoding
    if path.suffix == ".tsv" or source.delimiter.lower() == "tab":
        delimiter = "\t"
    elif auto_delimiter:
        text = sample[:65536].decode(encoding, errors="replace")
        delimiter = detect_delimiter(text.lstrip("\ufeff"))
    else:
        delimiter = source.delimiter
    return Dialect(delimiter, encoding, auto_delimiter, auto_encoding)


def with_dialect(source: SourceConfig, dialect: Dialect) -> SourceConfig:
    """The source with the file's delimiter and encoding filled in."""
    return source.model_copy(update={"delimiter": dialect.delimiter, "encoding": dialect.encoding})


def delimiter_hint(columns: list[str], configured: str) -> str:
    """A hint when a header looks split on the wrong delimiter: few columns, one of which holds
    another candidate delimiter ('' when the header looks fine)."""
    for name in map(str, columns):
        for sep in DELIMITERS:
            if sep == configured or sep not in name:
                continue
            if len(columns) <= 3 or name.count(sep) >= 2:
                return (
                    f" (the column {name[:60]!r} holds {shown_delimiter(sep)}: is the file "
                    f"delimited by {shown_delimiter(sep)}, {name.count(sep) + 1} columns read "
                    f"as one? set source.delimiter to {'tab' if sep == chr(9) else repr(sep)}, "
                    "or auto to detect it)"
                )
    return ""
