"""The snapshot reader: a CRM export (files or SQL tables) read and held to the data contract.

One module per concern, `read_snapshot` the entry:

- `sources`: finding and opening the tables (CSV/Parquet files, SQL), joins, batch size;
- `columns`: an export's columns put onto the contract (renaming, exclusion, required);
- `cleaning`: the messy values of real exports cleaned once per distinct value;
- `leads`: lead preparation as a sequence of small named steps;
- `eventlog` and `events`: events encoded against the leads into sorted arrays;
- `checks`: checks of the files and of the export as a whole;
- `problems` and `report`: what is wrong (raised together) and what reading dropped;
- `snapshot`: `read_snapshot` and `snapshot_from_frames`.

Every breach of the contract is collected into one `ContractError` naming the table, the
column, how many rows are bad and a few examples. The names below are the reader's public
seams: the rest of the project imports them from `features.reader`.
"""

from features.reader.checks import (
    EARLIEST,
    MAX_CELL_CHARS,
    boolean_size_problems,
    cell_lengths,
    check_as_of_after_data,
    check_event_log,
    check_lead_timeline,
    check_parquet_types,
    checked_event_chunks,
    declared_time,
    line_breaks_with_delimiter,
    long_cell_problems,
    one_file,
    plausible_range,
    swallowed_line_problems,
    unterminated_quote,
)
from features.reader.cleaning import (
    clean_category,
    clean_text,
    free_mail_flag,
    parse_company_size,
    parse_flags,
    parse_timestamps,
)
from features.reader.columns import (
    drop_excluded,
    event_source_columns,
    missing_required,
    rename_to_contract,
)
from features.reader.eventlog import NAT_MS, EventLog, sort_events
from features.reader.events import (
    OTHER,
    CodedEvents,
    EncodedChunk,
    EventChunk,
    collect_events,
    contract_event_chunks,
    encode_coded_events,
    encode_events,
    event_type_codes,
    lead_rows,
    takes_coded_events,
)
from features.reader.leads import prepare_leads
from features.reader.problems import Problem, raise_problems
from features.reader.report import ReadReport
from features.reader.snapshot import (
    Snapshot,
    read_snapshot,
    snapshot_as_of,
    snapshot_from_frames,
)
from features.reader.sources import (
    EVENT_BATCH_ROWS,
    TABLE_EXTENSIONS,
    find_table_file,
    read_tables,
    row_group_runs,
    shown_url,
    with_declared_as_of,
)

__all__ = [
    "EARLIEST",
    "EVENT_BATCH_ROWS",
    "MAX_CELL_CHARS",
    "NAT_MS",
    "OTHER",
    "TABLE_EXTENSIONS",
    "CodedEvents",
    "EncodedChunk",
    "EventChunk",
    "EventLog",
    "Problem",
    "ReadReport",
    "Snapshot",
    "boolean_size_problems",
    "cell_lengths",
    "check_as_of_after_data",
    "check_event_log",
    "check_lead_timeline",
    "check_parquet_types",
    "checked_event_chunks",
    "clean_category",
    "clean_text",
    "collect_events",
    "contract_event_chunks",
    "declared_time",
    "drop_excluded",
    "encode_coded_events",
    "encode_events",
    "event_source_columns",
    "event_type_codes",
    "find_table_file",
    "free_mail_flag",
    "lead_rows",
    "line_breaks_with_delimiter",
    "long_cell_problems",
    "missing_required",
    "one_file",
    "parse_company_size",
    "parse_flags",
    "parse_timestamps",
    "plausible_range",
    "prepare_leads",
    "raise_problems",
    "read_snapshot",
    "read_tables",
    "rename_to_contract",
    "row_group_runs",
    "shown_url",
    "snapshot_as_of",
    "snapshot_from_frames",
    "sort_events",
    "swallowed_line_problems",
    "takes_coded_events",
    "unterminated_quote",
    "with_declared_as_of",
]
