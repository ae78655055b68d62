"""Lead preparation: an export's leads table mapped, cleaned and checked against the contract.

`prepare_leads` runs small named steps in order: put the columns onto the contract, check the
required and custom columns are there, set aside bad rows (under `on_bad_rows: drop`), then
clean each family of columns (ids, timestamps, fit attributes, outcome, custom fields). Each
cleaning step returns its columns and the problems it found; every problem is raised at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.config import Config, CustomField, MappingConfig
from features import clean
from features.columns import fan_out, with_row_ids
from features.contract import CONVERTED, LEAD_CATEGORIES, LEAD_COLUMNS, LEAD_TIMESTAMPS
from features.dialect import delimiter_hint
from features.quarantine import set_aside_leads
from features.reader.cleaning import (
    clean_category,
    clean_text,
    free_mail_flag,
    parse_company_size,
    parse_flags,
    parse_timestamps,
)
from features.reader.columns import drop_excluded, missing_required, rename_to_contract
from features.reader.problems import Problem, raise_problems, row_examples
from features.reader.report import ReadReport

#: Cleaned columns by name, in the order they join the leads frame.
Columns = dict[str, pd.Series | float]


def _missing_text(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(pd.NA, index=frame.index, dtype="str")


def contract_named_leads(
    raw: pd.DataFrame, config: Config, table: str, report: ReadReport
) -> pd.DataFrame:
    """The raw leads with excluded columns dropped (before and after renaming), wide columns
    fanned out, export names renamed to the contract and row ids added where configured."""
    frame, excluded = drop_excluded(raw, config.exclude)
    frame = fan_out(frame, config.mapping, table)
    frame, problems = rename_to_contract(frame, config.mapping.leads, table, "leads")
    frame, excluded_after = drop_excluded(frame, config.exclude)
    report.excluded_columns = excluded + excluded_after
    raise_problems(problems)
    frame, report.notes = with_row_ids(frame, config, table)
    return frame


def check_lead_columns(
    frame: pd.DataFrame, config: Config, custom: dict[str, CustomField], table: str
) -> None:
    """Refuse a leads table without a required column (a flat export needs only lead_id) or
    without a declared custom field's column."""
    flat = config.source.flat
    required = [c for c, needed in LEAD_COLUMNS.items() if needed and not (flat and c != "lead_id")]
    raise_problems(missing_required(frame, required, table))
    absent = [name for name in custom if name not in frame.columns]
    raise_problems(
        [
            Problem(
                table,
                n,
                "(all): custom field column is not in the table"
                + delimiter_hint([str(c) for c in frame.columns], ""),
                len(frame),
            )
            for n in absent
        ]
    )


def lead_ids(
    frame: pd.DataFrame, mapping: MappingConfig, table: str
) -> tuple[Columns, list[Problem]]:
    """`lead_id` (present and unique) and `account_id` (may be missing), as cleaned text."""
    problems = []
    ids = clean_text(frame["lead_id"], mapping, "lead_id")
    if ids.isna().any():
        problems.append(
            Problem(
                table,
                "lead_id",
                "have no lead_id",
                int(ids.isna().sum()),
                row_examples(frame["lead_id"], ids.isna().to_numpy()),
            )
        )
    dup = ids.duplicated(keep=False) & ids.notna()
    if dup.any():
        problems.append(
            Problem(
                table,
                "lead_id",
                "share a lead_id with another row (duplicate ids)",
                int(dup.sum()),
                row_examples(ids, dup.to_numpy()),
            )
        )
    accounts = (
        clean_text(frame["account_id"], mapping, "account_id")
        if "account_id" in frame
        else _missing_text(frame)
    )
    return {"lead_id": ids, "account_id": accounts}, problems


def lead_timestamps(
    frame: pd.DataFrame, mapping: MappingConfig, table: str
) -> tuple[Columns, list[Problem]]:
    """The lifecycle timestamps as UTC (absent columns as NaT); no SQL before its MQL."""
    problems = []
    columns: Columns = {}
    for column in LEAD_TIMESTAMPS:
        if column in frame:
            parsed, bad = parse_timestamps(frame[column], mapping)
            if bad.any():
                problems.append(
                    Problem(
                        table,
                        column,
                        "have a timestamp that is not ISO 8601",
                        int(bad.sum()),
                        row_examples(frame[column], bad),
                    )
                )
            columns[column] = parsed
        else:
            columns[column] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ms, UTC]")
    if "mql_at" in frame and "sql_at" in frame:
        sql_at, mql_at = columns["sql_at"], columns["mql_at"]
        assert isinstance(sql_at, pd.Series) and isinstance(mql_at, pd.Series)
        early = (sql_at < mql_at).fillna(False).to_numpy()
        if early.any():
            shown = frame["sql_at"].astype("str") + " < mql_at " + frame["mql_at"].astype("str")
            problems.append(
                Problem(
                    table,
                    "sql_at",
                    "have sql_at before mql_at",
                    int(early.sum()),
                    row_examples(shown, early),
                )
            )
    return columns, problems


def fit_attributes(
    frame: pd.DataFrame, mapping: MappingConfig, table: str
) -> tuple[Columns, list[Problem]]:
    """Job title, the categorical attributes, company size and the free-mail flag (the only
    thing the email becomes)."""
    problems = []
    columns: Columns = {
        "job_title": (
            clean_text(frame["job_title"], mapping, "job_title")
            if "job_title" in frame
            else _missing_text(frame)
        )
    }
    for column in LEAD_CATEGORIES:
        columns[column] = (
            clean_category(frame[column], mapping, column)
            if column in frame
            else _missing_text(frame)
        )
    if "company_size" in frame:
        size, bad = parse_company_size(frame["company_size"], mapping)
        if bad.any():
            problems.append(
                Problem(
                    table,
                    "company_size",
                    "are not a non-negative number of employees",
                    int(bad.sum()),
                    row_examples(frame["company_size"], bad),
                )
            )
        columns["company_size"] = size
    else:
        columns["company_size"] = np.nan
    columns["email_free"] = (
        free_mail_flag(frame["email"], mapping)
        if "email" in frame
        else pd.Series(pd.NA, index=frame.index, dtype="boolean")
    )
    return columns, problems


def _flag_problems(values: pd.Series, bad: np.ndarray, table: str, column: str) -> list[Problem]:
    if not bad.any():
        return []
    issue = "are neither a true nor a false value"
    return [Problem(table, column, issue, int(bad.sum()), row_examples(values, bad))]


def flat_outcome(
    frame: pd.DataFrame, mapping: MappingConfig, table: str
) -> tuple[Columns, list[Problem]]:
    """A flat export's `converted` flag, when it has one."""
    if CONVERTED not in frame:
        return {}, []
    flag, bad = parse_flags(frame[CONVERTED], mapping, CONVERTED)
    return {CONVERTED: flag}, _flag_problems(frame[CONVERTED], bad, table, CONVERTED)


def _custom_number(
    values: pd.Series, mapping: MappingConfig, name: str
) -> tuple[pd.Series, np.ndarray]:
    return clean.numbers_of(values, mapping, name)


def custom_values(
    frame: pd.DataFrame, custom: dict[str, CustomField], mapping: MappingConfig, table: str
) -> tuple[Columns, list[Problem]]:
    """One `custom_*` column per custom field: categories folded, flags and numbers as floats."""
    problems: list[Problem] = []
    columns: Columns = {}
    for name, cf in custom.items():
        values = frame[name]
        if cf.value_type == "categorical":
            columns[cf.feature] = clean_category(values, mapping, name)
        elif cf.value_type == "boolean":
            flag, bad = parse_flags(values, mapping, name)
            problems += _flag_problems(values, bad, table, name)
            columns[cf.feature] = flag.astype("float64")
        else:
            number, bad = _custom_number(values, mapping, name)
            if bad.any():
                problems.append(
                    Problem(
                        table, name, "are not numbers", int(bad.sum()), row_examples(values, bad)
                    )
                )
            columns[cf.feature] = number
    return columns, problems


def prepare_leads(
    raw: pd.DataFrame, config: Config, table: str = "leads"
) -> tuple[pd.DataFrame, ReadReport]:
    """Map, clean and check the leads table; raises `ContractError` listing every problem.

    The result holds the contract columns (email replaced by `email_free`), `converted` for a
    flat export, and one `custom_*` column per custom field, ordered by (account_id, lead_id).
    """
    out, report, _ = prepare_leads_placed(raw, config, table)
    return out, report


def prepare_leads_placed(
    raw: pd.DataFrame, config: Config, table: str = "leads"
) -> tuple[pd.DataFrame, ReadReport, np.ndarray | None]:
    """`prepare_leads`, and the row of `raw` that each prepared lead came from (None when
    `raw`'s index does not say: labels that repeat), so that events that name leads by
    their place in `raw` (an adapter's coded events) find them without hashing their ids."""
    report = ReadReport()
    mapping = config.mapping
    frame = contract_named_leads(raw, config, table, report)
    custom = {cf.column.strip(): cf for cf in config.custom_fields}
    check_lead_columns(frame, config, custom, table)
    if config.source.on_bad_rows == "drop":
        frame = set_aside_leads(frame, config, table, custom, report.quarantine)
    known = set(LEAD_COLUMNS) | {CONVERTED} | set(custom)
    report.ignored_columns = [str(c) for c in frame.columns if str(c) not in known]

    out = pd.DataFrame(index=frame.index)
    problems: list[Problem] = []
    for step in (lead_ids, lead_timestamps, fit_attributes, flat_outcome):
        columns, found = step(frame, mapping, table)
        problems += found
        for name, values in columns.items():
            out[name] = values
    columns, found = custom_values(frame, custom, mapping, table)
    problems += found
    for name, values in columns.items():
        out[name] = values
    raise_problems(problems)

    out = out.sort_values(["account_id", "lead_id"], na_position="last", kind="stable")
    report.leads = len(out)
    placed = raw.index.get_indexer(out.index) if raw.index.is_unique else None
    return out.reset_index(drop=True), report, placed
