"""Shared fixtures: small seeded CRM frames in the contract, built without the generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import Config, build_config
from features.contract import EVENT_TYPES

START = pd.Timestamp("2025-01-01", tz="UTC")


def random_crm(
    n_leads: int = 300, seed: int = 0, events_per_lead: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw contract frames: accounts with several leads, MQLs, SQLs, events around them."""
    rng = np.random.default_rng(seed)
    n_accounts = max(n_leads // 3, 1)
    account = rng.integers(0, n_accounts, n_leads)
    account_id = pd.array([f"A{a:04d}" for a in account], dtype="str")
    account_id[rng.random(n_leads) < 0.1] = pd.NA
    created = START + pd.to_timedelta(rng.integers(0, 300 * 86400, n_leads), unit="s")
    is_mql = rng.random(n_leads) < 0.7
    mql = created + pd.to_timedelta(rng.integers(3600, 40 * 86400, n_leads), unit="s")
    converts = is_mql & (rng.random(n_leads) < 0.35)
    sql = mql + pd.to_timedelta(rng.integers(60, 120 * 86400, n_leads), unit="s")
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i:05d}" for i in range(n_leads)],
            "account_id": account_id,
            "created_at": created,
            "mql_at": pd.Series(mql).where(is_mql),
            "sql_at": pd.Series(sql).where(converts),
            "job_title": rng.choice(
                ["VP Marketing", "Head of Growth", "Marketing Intern", "", "CTO"], n_leads
            ),
            "country": rng.choice(["United States", " germany", "INDIA", "n/a"], n_leads),
            "industry": rng.choice(["Software", "retail ", "Finance"], n_leads),
            "lead_source": rng.choice(["paid_search", "webinar", "referral"], n_leads),
            "company_size": rng.integers(1, 5000, n_leads),
            "email": rng.choice(["x@gmail.com", "y@acme.io", ""], n_leads),
        }
    )
    n_events = n_leads * events_per_lead
    owner = rng.integers(0, n_leads, n_events)
    offset = pd.to_timedelta(rng.integers(0, 200 * 86400, n_events), unit="s")
    events = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[owner],
            "occurred_at": created[owner] + offset,
            "event_type": rng.choice(list(EVENT_TYPES[:-1]), n_events),
        }
    )
    return leads, events


@pytest.fixture
def config() -> Config:
    return build_config({"as_of": "2026-01-01T00:00:00Z"})


@pytest.fixture
def crm() -> tuple[pd.DataFrame, pd.DataFrame]:
    return random_crm()
