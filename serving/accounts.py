"""Account history for the scoring API: every account's leads and event times, from a snapshot.

A posted lead carries its own profile and events, not its colleagues'. In training, the account
features (`account_other_leads`, `account_other_sqls`, `account_other_events_30d`, ...) count
what the lead's account did before the cutoff, and on the synthetic data they carry much of the
signal. Without the account's history the API can only score them as unknown, the value
training gives a lead with no account. An `AccountBook` holds that history, read once from a
snapshot (the same export the batch job reads, `serve.accounts`), so that a posted lead gets the
account features `build_features` would give it.

The book holds, for leads with an account only, their ids and created/MQL/SQL times, and the
times of their events in one array with offsets per lead (CSR). `context(account, lead)` cuts
the account's slice without the posted lead itself: its own events come from the request. The
history is as of the snapshot: an account's activity after the snapshot's as-of time is not
known until the book is read again (`/v1/admin/reload`, or the poll when the files change).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from common.config import Config, ServeConfig, SourceConfig
from features.pipeline import utc_ms
from features.reader import Snapshot, read_snapshot, shown_url
from serving.lead import AccountContext

__all__ = [
    "AccountBook",
    "as_source",
    "book_config",
    "build_book",
    "read_book",
    "shown_source",
    "source_fingerprint",
]


@dataclass(frozen=True)
class AccountBook:
    """Each account's leads and event times, as of a snapshot.

    Attributes:
        source: where it was read from (a folder or a database URL without its password).
        as_of: the snapshot's as-of time: activity after it is not in the book.
        spans: cleaned account id -> [first, stop) positions of its leads.
        lead_ids: the cleaned lead id at each position.
        created_ms, mql_ms, sql_ms: the leads' times, ms since the epoch (UTC), `NAT_MS` missing.
        event_start: offsets into `event_ms` per position (one more entry than positions).
        event_ms: the event times of every lead with an account, lead by lead.
    """

    source: str
    as_of: datetime | None
    spans: dict[str, tuple[int, int]]
    lead_ids: np.ndarray
    created_ms: np.ndarray
    mql_ms: np.ndarray
    sql_ms: np.ndarray
    event_start: np.ndarray
    event_ms: np.ndarray

    @property
    def accounts(self) -> int:
        return len(self.spans)

    @property
    def leads(self) -> int:
        return int(self.lead_ids.shape[0])

    @property
    def events(self) -> int:
        return int(self.event_ms.shape[0])

    def context(self, account_id: str, lead_id: str) -> AccountContext:
        """The account's other leads and all their events, without `lead_id`.

        An account the book does not hold gives an empty context: no other leads known, so the
        account features are zero (not unknown), as `build_features` gives a lead alone in its
        account.
        """
        span = self.spans.get(account_id)
        if span is None:
            return AccountContext()
        first, stop = span
        others = self.lead_ids[first:stop] != lead_id
        starts = self.event_start[first : stop + 1]
        events = self.event_ms[starts[0] : starts[-1]]
        if not others.all():
            events = events[np.repeat(others, np.diff(starts))]
        return AccountContext(
            self.created_ms[first:stop][others],
            self.mql_ms[first:stop][others],
            self.sql_ms[first:stop][others],
            events,
        )


def build_book(snapshot: Snapshot, source: str) -> AccountBook:
    """The book of a snapshot read by `read_snapshot` (leads ordered by account)."""
    leads = snapshot.leads
    has_account = leads["account_id"].notna().to_numpy(dtype=bool)
    positions = np.flatnonzero(has_account)
    accounts = leads["account_id"].to_numpy(dtype=object)[positions]
    changes = np.r_[True, accounts[1:] != accounts[:-1]] if len(accounts) else np.empty(0, bool)
    starts = np.flatnonzero(changes)
    stops = np.r_[starts[1:], len(accounts)].astype(np.int64)
    spans = {str(accounts[s]): (int(s), int(e)) for s, e in zip(starts, stops, strict=True)}
    if len(spans) != len(starts):
        raise ValueError(f"{source}: leads are not ordered by account (read it with read_snapshot)")
    log = snapshot.events
    per_lead = np.bincount(log.lead, minlength=len(leads)) if len(log) else np.zeros(len(leads))
    # the log is sorted by lead: the events of leads with an account come out in position order
    event_ms = log.at_ms[has_account[log.lead]] if len(log) else np.empty(0, np.int64)
    event_start = np.r_[0, np.cumsum(per_lead[positions])].astype(np.int64)
    subset = leads.iloc[positions]
    as_of = snapshot.as_of
    return AccountBook(
        source=source,
        as_of=None if as_of is None else pd.Timestamp(as_of).to_pydatetime().astimezone(UTC),
        spans=spans,
        lead_ids=subset["lead_id"].to_numpy(dtype=object),
        created_ms=utc_ms(subset["created_at"]),
        mql_ms=utc_ms(subset["mql_at"]),
        sql_ms=utc_ms(subset["sql_at"]),
        event_start=event_start,
        event_ms=np.ascontiguousarray(event_ms, dtype=np.int64),
    )


def book_config(source: SourceConfig, model_config: Config) -> Config:
    """The model's config (its mapping and custom fields clean the ids as training did)
    reading `source` instead of its training source."""
    return model_config.model_copy(update={"source": source, "as_of": None})


def as_source(place: SourceConfig | str | Path) -> SourceConfig:
    """A source as `serve.accounts` takes it: a folder or URL becomes a `SourceConfig`."""
    if isinstance(place, SourceConfig):
        return place
    accounts = ServeConfig.model_validate({"accounts": str(place)}).accounts
    assert accounts is not None
    return accounts


def read_book(source: SourceConfig | str | Path, model_config: Config) -> AccountBook:
    """Read `source` held to the contract and build its book.

    Raises:
        ContractError: the snapshot breaks the contract (the message names file and column).
        ValueError: the model was trained on a flat export (it has no account features), or
            the source is one.
    """
    source = as_source(source)
    if model_config.source.flat or source.flat:
        raise ValueError("a flat export has no account features: no account history to read")
    snapshot = read_snapshot(book_config(source, model_config))
    return build_book(snapshot, shown_source(source))


def source_fingerprint(source: SourceConfig) -> tuple[tuple[str, int, int], ...] | None:
    """Names, sizes and modification times of a folder's files; None for a database (the poll
    cannot see a table change cheaply) or a folder that is not there."""
    folder = source.path
    if folder is None or not folder.is_dir():
        return None
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            found.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def shown_source(source: SourceConfig) -> str:
    """The folder, or the URL without its password (and the schema), for logs and answers."""
    if source.path is not None:
        return str(source.path)
    shown = shown_url(str(source.url))
    return shown + (f" (schema {source.db_schema})" if source.db_schema else "")
