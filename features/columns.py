"""Column steps of mapping an export that a rename alone cannot do.

- One export column may feed several contract columns (`mapping.leads` with a list, e.g. a
  first-contact date that is both `created_at` and `mql_at`): it is copied before renaming.
- A flat export without an id column gets one from its row numbers (`row-1`, `row-2`, ... in
  the file's order), so its leads can be told apart; a note says so. The ids are stable as
  long as the export keeps its row order.
"""

from __future__ import annotations

import pandas as pd

from common.config import Config, MappingConfig
from features.contract import LEAD_ID, ContractError

ROW_ID_PREFIX = "row-"


def fan_out(frame: pd.DataFrame, mapping: MappingConfig, table: str) -> pd.DataFrame:
    """The frame with a copy of each export column under every further contract name it
    feeds (`mapping.leads_also`), ready for the rename of its first name."""
    if not mapping.leads_also:
        return frame
    columns = {str(c).strip(): c for c in frame.columns}
    copies: dict[str, pd.Series] = {}
    for export, targets in mapping.leads_also.items():
        if export.strip() not in columns:
            continue  # the rename reports a mapped column that is not in the file
        for target in targets:
            if target in columns or target in mapping.leads.values():
                raise ContractError(
                    f"{table}: column '{target}': mapping.leads feeds it from {export!r}, but "
                    f"it comes from another column too; map each contract column once"
                )
            copies[target] = frame[columns[export.strip()]]
    return frame.assign(**copies) if copies else frame


def with_row_ids(frame: pd.DataFrame, config: Config, table: str) -> tuple[pd.DataFrame, list[str]]:
    """A flat export's frame (contract names) with `lead_id` from row numbers when it has no
    id column; other frames as they are."""
    if LEAD_ID in frame.columns or not config.source.flat:
        return frame, []
    ids = pd.Series(
        [f"{ROW_ID_PREFIX}{i + 1}" for i in range(len(frame))], index=frame.index, dtype="str"
    )
    note = (
        f"{table}: no lead_id column; each lead's id is its row number ({ROW_ID_PREFIX}1 to "
        f"{ROW_ID_PREFIX}{len(frame)}), stable while the export keeps its row order; map an "
        "id column with mapping.leads to use your own"
    )
    return frame.assign(**{LEAD_ID: ids}), [note]
