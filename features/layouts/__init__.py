"""The synthetic CRM in each CRM's warehouse layout: `contract`, `hubspot`, `salesforce`.

`write_layout` writes the same generated chunks (same seed: same leads, events, outcomes and
truth) either in the data contract (`features.synthetic.write_snapshot`) or as the tables a
Fivetran connector lands for HubSpot or Salesforce, one file per table named after it, plus
truth.parquet and snapshot.json. See docs/crm-layouts.md for what each contract field became.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Literal

from features.layouts.common import Format, Layout, TableFiles, to_table
from features.layouts.exports import HubSpotExportLayout, SalesforceExportLayout
from features.layouts.hubspot import HubSpotLayout
from features.layouts.salesforce import SalesforceLayout
from features.synthetic import SyntheticSnapshot, write_snapshot

LayoutName = Literal["contract", "hubspot", "salesforce", "hubspot-export", "salesforce-export"]
#: The CRM layouts and how to build each one's tables.
CRM_LAYOUTS: Final[dict[str, Callable[[], Layout]]] = {
    "hubspot": HubSpotLayout,
    "salesforce": SalesforceLayout,
    "hubspot-export": HubSpotExportLayout,
    "salesforce-export": SalesforceExportLayout,
}
#: The CRMs' own CSV exports: always CSV, whatever the format asked.
CSV_ONLY: Final = frozenset({"hubspot-export", "salesforce-export"})
LAYOUTS: Final = ("contract", *CRM_LAYOUTS)


def write_layout(
    chunks: Iterable[SyntheticSnapshot],
    out_dir: Path,
    *,
    layout: LayoutName = "contract",
    fmt: Format = "parquet",
) -> dict[str, int]:
    """Write generated chunks into out_dir in `layout`; all files appear at once or none do.

    Args:
        chunks: Chunks from `features.synthetic.generate` (or one whole snapshot).
        out_dir: Folder to write into; created if missing.
        layout: `contract` (leads and events), `hubspot` or `salesforce` (connector tables),
            `hubspot-export` or `salesforce-export` (the CRM's own CSV export).
        fmt: File format of the tables (the exports are always CSV); truth is always Parquet.

    Returns:
        Row counts per table written.

    Raises:
        ValueError: An unknown layout or format.
    """
    if layout == "contract":
        return write_snapshot(chunks, out_dir, fmt=fmt)
    if layout not in CRM_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    builder = CRM_LAYOUTS[layout]()
    files = TableFiles(Path(out_dir), "csv" if layout in CSV_ONLY else fmt)
    params: dict[str, object] = {}
    as_of = None
    try:
        for chunk in chunks:
            params = params or dict(chunk.params)
            as_of = chunk.as_of
            for name, table in builder.chunk_tables(chunk).items():
                files.write(name, table)
            files.write("truth", to_table(chunk.truth))
        for name, table in builder.final_tables().items():
            files.write(name, table)
        files.commit(
            {
                **params,
                "layout": layout,
                "as_of": None if as_of is None else as_of.isoformat(),
            }
        )
    except BaseException:
        files.abort()
        raise
    return dict(files.counts)
