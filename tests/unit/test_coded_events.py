"""A preset's coded events read as the same events handed over as contract frames.

`read_snapshot` takes a CRM preset's events as `CodedEvents` (lead positions, milliseconds,
type codes); every other reader of the tables gets contract frames. Both forms of the same
batches must give the same log and count the same: unknown leads, unknown types by name (in
the order a frame's types are met), rows read, duplicates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.config import Config, MappingConfig, SourceConfig
from features.presets.common import event_form
from features.reader import (
    CodedEvents,
    ReadReport,
    checked_event_chunks,
    collect_events,
    takes_coded_events,
)
from features.reader.checks import MAX_CELL_CHARS
from features.reader.events import EventChunk

#: The reader's leads, in its own order (not the adapter's).
READER_LEADS = pd.DataFrame({"lead_id": ["c", "a", "b"]})


def _batches(lead_ids: pd.Series, coded: bool) -> list[EventChunk]:
    """Two batches of an adapter's events of `lead_ids` in one form."""
    form = event_form(lead_ids, coded)
    at = pd.Series(
        pd.to_datetime(
            [
                "2024-01-01 00:00:00.0019",
                "2024-01-02",
                "2024-01-02",
                None,
                "2024-01-03",
                "2024-01-04",
            ],
            utc=True,
            format="ISO8601",
        )
    ).astype("datetime64[us, UTC]")
    kinds = ["email_open", "Webinar Typo", "email_open", "demo_request", "drop", "other"]
    first = form.events(np.array([0, 1, 0, 2, 1, 3]), at, pd.Series(kinds, dtype="category"))
    later = ["x", "Webinar Typo", "page_view", "Sales Call", "form_submission", "Sales Call"]
    second = form.events(np.array([3, 2, -1, 1, 0, 2]), at, pd.Series(later))
    return [first, second]


def _read(chunks: list[EventChunk], config: Config) -> tuple[object, ReadReport]:
    report = ReadReport()
    checked = checked_event_chunks(chunks, "events", ["lead_id", "occurred_at", "event_type"])
    log = collect_events(checked, READER_LEADS, config, "events", report)
    return log, report


@pytest.mark.parametrize(
    "lead_ids",
    [
        pd.Series(["a", "b", "c", "zz"], dtype="string"),  # unique: categorical frames
        pd.Series(["a", " b ", None, "a"], dtype="string"),  # missing and repeated ids
    ],
)
def test_coded_events_read_as_their_frames(lead_ids: pd.Series) -> None:
    mapping = MappingConfig(values={"event_type": {"Sales Call": "meeting_booked"}})
    config = Config(source=SourceConfig(path=None), mapping=mapping)
    assert takes_coded_events(config)
    coded = _batches(lead_ids, coded=True)
    assert all(isinstance(batch, CodedEvents) for batch in coded)
    from_frames, frames_report = _read(_batches(lead_ids, coded=False), config)
    from_codes, codes_report = _read(coded, config)
    for name in ("lead", "at_ms", "kind"):
        want, got = getattr(from_frames, name), getattr(from_codes, name)
        assert want.dtype == got.dtype and np.array_equal(want, got), name
    assert list(codes_report.unknown_event_types.items()) == list(
        frames_report.unknown_event_types.items()
    )
    assert codes_report == frames_report
    assert frames_report.events_unknown_lead > 0 and frames_report.unknown_event_types


def test_a_long_type_name_is_refused_as_in_a_frame() -> None:
    config = Config(source=SourceConfig(path=None))
    at = pd.Series(pd.to_datetime(["2024-01-01"] * 2, utc=True)).astype("datetime64[us, UTC]")
    kinds = pd.Series(["email_open", "x" * (MAX_CELL_CHARS + 1)])
    messages = []
    for coded in (False, True):
        batch = event_form(pd.Series(["a", "b"], dtype="string"), coded).events(
            np.array([0, 1]), at, kinds
        )
        with pytest.raises(Exception) as error:
            _read([batch], config)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "longer than" in messages[0]


@pytest.mark.parametrize(
    "update",
    [
        {"mapping": MappingConfig(events={"when": "occurred_at"})},
        {"exclude": ("url",)},
        {"source": SourceConfig(path=None, on_bad_rows="drop")},
    ],
)
def test_configs_that_act_on_event_frames_take_frames(update: dict[str, object]) -> None:
    assert not takes_coded_events(Config(source=SourceConfig(path=None)).model_copy(update=update))


@pytest.mark.parametrize(
    "ids",
    [
        ["c", "a", "b"],  # the reader's own order: no ids hashed
        [" c", "a ", "b"],  # the same once trimmed
        ["a", "b", "c"],  # another order
        ["c", "a"],  # fewer
        ["c", None, "b"],  # a missing id
        ["c", "x", "b"],  # an unknown one
        ["c", "a", "b", "d"],  # more
    ],
)
def test_lead_rows_find_each_id_s_row_as_a_dictionary_does(ids: list[str | None]) -> None:
    from features.reader.events import lead_rows

    lead_index = pd.Index(READER_LEADS["lead_id"].to_numpy())
    where = {lead: row for row, lead in enumerate(lead_index)}
    want = [where.get(i.strip(), -1) if isinstance(i, str) else -1 for i in ids]
    assert lead_rows(pd.Index(pd.Series(ids, dtype="str")), lead_index).tolist() == want


@pytest.mark.parametrize(
    "ids",
    [
        ["c", "a", "b"],
        [" c", "a ", "b"],
        ["c", None, "b"],
        ["c", "x", "b", "d", ""],
        ["B", "A ", "é", "a\u0301"],  # case and Unicode forms are other ids
    ],
)
@pytest.mark.parametrize(
    "leads",
    [
        ["c", "a", "b"],
        ["c", "a", "b", "é"],  # non-ASCII text
        [3, 1, 2],  # ids that are not text: the hash table
    ],
)
def test_a_lead_lookup_finds_the_rows_the_hash_table_finds(
    ids: list[str | None], leads: list[object]
) -> None:
    """`LeadLookup` (hashes searched, then checked as text) gives `get_indexer`'s rows."""
    from features.reader.events import LeadLookup, lead_rows

    lead_index = pd.Index(leads)
    wanted = pd.Index(pd.Series(ids, dtype="str"))
    assert lead_rows(wanted, LeadLookup(lead_index)).tolist() == (
        lead_rows(wanted, lead_index).tolist()
    )


def test_a_lead_lookup_agrees_with_the_hash_table_on_many_scattered_ids() -> None:
    from features.reader.events import LeadLookup, hashed_lead_rows

    rng = np.random.default_rng(7)
    lead_index = pd.Index(pd.array([f"L{i:07d}" for i in rng.permutation(50_000)], dtype="str"))
    asked = [f"L{i:07d}" for i in rng.integers(0, 60_000, 5_000)] + [" L0000001 ", "l0000001"]
    wanted = pd.Index(pd.array(asked, dtype="str"))
    rows = hashed_lead_rows(wanted, LeadLookup(lead_index))
    assert rows.tolist() == hashed_lead_rows(wanted, lead_index).tolist()
    assert (rows == -1).any() and (rows >= 0).any()


@pytest.mark.parametrize("leads", [["a", "bb", "ccc"], ["a", "b", "cc"]])
def test_a_lead_lookup_checks_hashed_matches_as_text(
    leads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a hash that collides (the text's length): an id whose hash is a lead's but whose
    text is not finds no row, and leads whose hashes collide are looked up in the hash table."""
    from features.reader.events import LeadLookup, lead_rows

    def by_length(values: np.ndarray, categorize: bool = True) -> np.ndarray:
        return np.array([len(v) for v in values], dtype=np.uint64)

    monkeypatch.setattr(pd.util, "hash_array", by_length)
    wanted = pd.Index(pd.Series(["x", "bb", "yy", "ccc", "a"], dtype="str"))
    rows = lead_rows(wanted, LeadLookup(pd.Index(leads)))
    where = {lead: row for row, lead in enumerate(leads)}
    assert rows.tolist() == [where.get(i, -1) for i in wanted]


@pytest.mark.parametrize(
    "placed",
    [
        None,  # in order
        [2, 0, 1],  # the reader's lead r came from row placed[r]: right for ["a", "b", "c"]
        [1, 2, 0],  # a wrong order
        [2, 2, 1],  # a row twice
        [2, 0],  # too few
        [-1, 0, 1],  # a lead from nowhere
    ],
)
@pytest.mark.parametrize("ids", [["c", "a", "b"], ["a", "b", "c"], [" a", "b ", "c"], ["a", "b"]])
def test_leads_placed_by_the_reader_find_their_rows_or_none(
    ids: list[str], placed: list[int] | None
) -> None:
    """Rows found from where the reader took each lead are the dictionary's rows, or None
    (then hashed) when the places do not hold; the right places for reordered ids are used."""
    from features.reader.events import same_lead_rows

    lead_index = pd.Index(READER_LEADS["lead_id"].to_numpy())
    where = {lead: row for row, lead in enumerate(lead_index)}
    want = [where.get(i.strip(), -1) for i in ids]
    rows = same_lead_rows(
        pd.Index(pd.Series(ids, dtype="str")),
        lead_index,
        None if placed is None else np.array(placed),
    )
    assert rows is None or rows.tolist() == want
    if placed == [2, 0, 1] and [i.strip() for i in ids] == ["a", "b", "c"]:
        assert rows is not None


def test_ids_known_to_be_unique_label_events_as_checked_ones() -> None:
    ids = pd.Series(["3", "1", "12"], dtype="string")
    assert event_form(ids, True, unique=True).labels == event_form(ids, True).labels
    with_gap = pd.Series(["3", None], dtype="string")
    assert event_form(with_gap, True, unique=True).labels is with_gap
