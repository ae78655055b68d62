"""A synthetic snapshot rewritten as a real CRM would export it: several tables, its own
column names, `;`-delimited Latin-1 text, custom fields, and one row that breaks the contract.

- `mqls.csv`: one row per MQL (`MQL Id`, `Company Id`, `First Contact`, which is both the
  lead's creation and its MQL date, title, country, source) plus three custom fields:
  `Web Visits` (numeric: page views before the MQL), `Newsletter` (yes/no) and `Catégorie`
  (categorical, accented values);
- `deals.csv`: the outcome table, a won deal per converted lead at its SQL time, a later
  upsell deal for some of them (the earliest deal counts), and deals of unknown MQLs;
- `accounts.csv`: firmographics per company (`Sector`, `Employees` as ranges);
- `events.csv`: the engagement log (`MQL Id`, `When`, `Activity` in words);
- `export.yaml`: the config that maps it all onto the contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CONFIG = """\
source:
  path: .
  leads: mqls
  events: events
  joins:
    - {table: deals, key: MQL Id, columns: [Won Date], order_by: Won Date}
    - {table: accounts, key: Company Id, columns: [Sector, Employees]}
  on_bad_rows: drop
mapping:
  leads:
    MQL Id: lead_id
    Company Id: account_id
    First Contact: [created_at, mql_at]
    Won Date: sql_at
    Title: job_title
    Country: country
    Source: lead_source
    Sector: industry
    Employees: company_size
  events:
    MQL Id: lead_id
    When: occurred_at
    Activity: event_type
custom_fields:
  - {column: Web Visits, kind: engagement}
  - {column: Newsletter, kind: fit}
  - {column: Catégorie, kind: fit}
training:
  params: {min_data_in_leaf: 40}
"""

_CATEGORIES = {
    "Software": "Logiciel",
    "Financial Services": "Finance et assurance",
    "Healthcare": "Santé",
    "Manufacturing": "Industrie",
    "Professional Services": "Conseil",
    "Education": "Éducation",
}


def _size_band(size: float) -> str:
    if pd.isna(size):
        return ""
    for low, high in ((1, 10), (11, 50), (51, 200), (201, 1000), (1001, 5000)):
        if size <= high:
            return f"{low}-{high}"
    return "5001+"


def write_export(snapshot: Path, out: Path, seed: int = 0, broken_rows: int = 1) -> Path:
    """Rewrite the snapshot in `snapshot` (a synthetic one) as a multi-table export in `out`;
    returns the config file. `broken_rows` leads get a deal dated before their MQL."""
    rng = np.random.default_rng(seed)
    leads = pd.read_parquet(snapshot / "leads.parquet")
    events = pd.read_parquet(snapshot / "events.parquet")
    mqls = leads[leads["mql_at"].notna()].reset_index(drop=True)
    events = events[events["lead_id"].isin(mqls["lead_id"])].reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)

    stamp = "%Y-%m-%dT%H:%M:%SZ"
    views = events[events["event_type"].isin(["page_view", "pricing_page_view"])]
    views = views.merge(mqls[["lead_id", "mql_at"]], on="lead_id")
    web_visits = (views[views["occurred_at"] < views["mql_at"]].groupby("lead_id").size()).reindex(
        mqls["lead_id"], fill_value=0
    )
    industry = mqls["industry"].astype("str").str.strip().str.title()
    table = pd.DataFrame(
        {
            "MQL Id": mqls["lead_id"],
            "Company Id": mqls["account_id"],
            "First Contact": mqls["mql_at"].dt.strftime(stamp),
            "Title": mqls["job_title"],
            "Country": mqls["country"],
            "Source": mqls["lead_source"],
            "Web Visits": web_visits.to_numpy(),
            "Newsletter": rng.choice(["yes", "no", ""], len(mqls), p=[0.4, 0.5, 0.1]),
            "Catégorie": industry.map(_CATEGORIES).fillna("Autre"),
        }
    )
    won = mqls[mqls["sql_at"].notna()]
    deals = pd.DataFrame({"MQL Id": won["lead_id"], "Won Date": won["sql_at"]})
    upsell = won.sample(frac=0.3, random_state=seed)
    later = upsell["sql_at"] + pd.to_timedelta(rng.integers(5, 200, len(upsell)), unit="D")
    orphans = pd.DataFrame(
        {"MQL Id": [f"GONE{i}" for i in range(5)], "Won Date": won["sql_at"].iloc[:5].to_numpy()}
    )
    deals = pd.concat(
        [deals, pd.DataFrame({"MQL Id": upsell["lead_id"], "Won Date": later}), orphans]
    )
    for row in range(broken_rows):  # a deal booked before the MQL: sql_at before mql_at
        lead = mqls.iloc[row]
        early = lead["mql_at"] - pd.Timedelta(days=3)
        deals = pd.concat([deals, pd.DataFrame({"MQL Id": [lead["lead_id"]], "Won Date": [early]})])
    deals = deals.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    deals.insert(0, "Deal Id", [f"D{i:06d}" for i in range(len(deals))])
    deals["Won Date"] = pd.to_datetime(deals["Won Date"], utc=True).dt.strftime(stamp)

    firms = mqls.dropna(subset=["account_id"]).drop_duplicates("account_id")
    accounts = pd.DataFrame(
        {
            "Company Id": firms["account_id"],
            "Sector": firms["industry"],
            "Employees": firms["company_size"].astype("float64").map(_size_band),
        }
    )
    log = pd.DataFrame(
        {
            "MQL Id": events["lead_id"],
            "When": events["occurred_at"].dt.strftime(stamp),
            "Activity": events["event_type"].astype("str").str.replace("_", " ").str.title(),
        }
    )
    for name, frame in (("mqls", table), ("deals", deals), ("accounts", accounts), ("events", log)):
        frame.to_csv(out / f"{name}.csv", sep=";", index=False, encoding="latin-1")
    config = out / "export.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return config
