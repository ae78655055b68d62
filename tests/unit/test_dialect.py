"""CSV dialects: delimiters and encodings detected, and a hint when a header looks wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import build_config
from features.contract import ContractError
from features.dialect import detect_delimiter, detect_encoding, resolve_dialect
from features.reader import read_snapshot

LEADS = [
    ["lead_id", "created_at", "country", "Plan Tier"],
    ["L1", "2025-01-01T00:00:00Z", "México", "Gold, annual"],
    ["L2", "2025-01-02T00:00:00Z", "Österreich", "Silver"],
    ["L3", "2025-01-03T00:00:00Z", "Deutschland", "Bronze"],
]


def _text(sep: str) -> str:
    def cell(value: str) -> str:
        return f'"{value}"' if sep in value or "," in value else value

    return "\n".join(sep.join(cell(v) for v in row) for row in LEADS) + "\n"


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_the_one_that_splits_the_header_consistently(sep: str) -> None:
    assert detect_delimiter(_text(sep)) == sep


def test_a_one_column_file_reads_as_comma_delimited() -> None:
    assert detect_delimiter("lead_id\nL1\nL2\n") == ","


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Müller;México\n".encode(), "utf-8"),
        (b"\xef\xbb\xbf" + "Müller\n".encode(), "utf-8"),  # utf-8-sig reads the mark away
        ("Müller\n".encode("utf-16"), "utf-16"),
        ("Müller 5 €\n".encode("cp1252"), "cp1252"),
        (b"M\xfcller \x81\n", "latin-1"),  # 0x81 is undefined in cp1252
        (b"plain ascii\n", "utf-8"),
    ],
)
def test_encoding_detection(data: bytes, expected: str) -> None:
    assert detect_encoding(data, complete=True) == expected


def test_a_cut_character_at_the_end_of_a_sample_is_still_utf8() -> None:
    data = "Mü".encode()[:2]  # 'M' and the first of the two bytes of 'ü'
    assert detect_encoding(data, complete=False) == "utf-8"


def test_mixed_encodings_are_refused_naming_both() -> None:
    data = "México\n".encode() + "général\n".encode("latin-1")
    with pytest.raises(ContractError, match=r"mixes encodings: 1 UTF-8 characters, and 2 bytes"):
        detect_encoding(data, complete=True, path=Path("leads.csv"))


def _folder(tmp_path: Path, sep: str, encoding: str, name: str = "leads.csv") -> Path:
    (tmp_path / name).write_bytes(_text(sep).encode(encoding))
    # one event: a header-only events file is refused (every lead would look unengaged)
    (tmp_path / "events.csv").write_text(
        "lead_id,occurred_at,event_type\nL1,2025-01-02T00:00:00Z,page_view\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("sep", "encoding", "noted"),
    [
        (";", "latin-1", "detected delimiter ';' and encoding cp1252"),
        ("\t", "utf-16", "detected delimiter tab and encoding utf-16"),
        ("|", "utf-8-sig", "detected delimiter '|'"),
        (",", "cp1252", "detected encoding cp1252"),
    ],
)
def test_exports_read_in_any_detected_dialect(
    tmp_path: Path, sep: str, encoding: str, noted: str
) -> None:
    folder = _folder(tmp_path, sep, encoding)
    config = build_config(
        {"source": {"path": str(folder)}, "custom_fields": [{"column": "Plan Tier", "kind": "fit"}]}
    )
    snap = read_snapshot(config)
    got = snap.leads.set_index("lead_id")
    assert list(got["country"]) == ["méxico", "österreich", "deutschland"]
    assert got.loc["L1", "custom_plan_tier"] == "gold, annual"  # a quoted delimiter stays
    assert any(noted in line for line in snap.report.lines()), snap.report.lines()


def test_comma_delimited_utf8_needs_no_note(tmp_path: Path) -> None:
    snap = read_snapshot(build_config({"source": {"path": str(_folder(tmp_path, ",", "utf-8"))}}))
    assert not any("detected" in line for line in snap.report.lines())


def test_a_tsv_file_is_tab_delimited_and_configured_values_win(tmp_path: Path) -> None:
    (tmp_path / "leads.tsv").write_text(_text("\t"))
    source = build_config({"source": {"delimiter": ";", "encoding": "latin-1"}}).source
    dialect = resolve_dialect(tmp_path / "leads.tsv", source)
    assert (dialect.delimiter, dialect.encoding) == ("\t", "latin-1")
    assert dialect.note(tmp_path / "leads.tsv") is None


def test_a_wrong_configured_delimiter_gets_a_hint_in_the_mapping_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ";", "utf-8")
    config = build_config(
        {
            "source": {"path": str(folder), "delimiter": ","},
            "mapping": {"leads": {"created_at": "created_at", "country": "country"}},
        }
    )
    with pytest.raises(ContractError, match=r"names columns not in the file.*holds ';'.*"):
        read_snapshot(config)


def test_a_wrong_configured_delimiter_gets_a_hint_for_required_columns(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "|", "utf-8")
    config = build_config({"source": {"path": str(folder), "delimiter": ";"}})
    with pytest.raises(ContractError, match=r"required column is missing.*delimiter wrong"):
        read_snapshot(config)
