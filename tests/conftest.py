"""Shared fixtures: small seeded CRM frames in the contract, built without the generator, and
one trained registry for the suites that need a model (`trained_store`).

Also the needs of some tests (PostgreSQL, Spark, the `../shared` datasets, a browser): on a
machine without one of them its tests are skipped with the reason; with
`LEADSCORE_TEST_REQUIRE_ALL=1` (CI sets it) they fail instead, so nothing is skipped there.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import Config, build_config
from features.contract import EVENT_TYPES

START = pd.Timestamp("2025-01-01", tz="UTC")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REQUIRE_ALL = "LEADSCORE_TEST_REQUIRE_ALL"


@functools.cache
def _postgres_missing() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return None
    except OSError as error:
        return f"no PostgreSQL server at 127.0.0.1:5432 ({error})"


@functools.cache
def _spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed: pip install '.[spark]'"
    if shutil.which("java") is None:
        return "no java on PATH (Spark needs Java 17+)"
    return None


@functools.cache
def _shared_missing() -> str | None:
    if not (SHARED / "datasets").is_dir():
        return f"the shared datasets folder is missing: {SHARED / 'datasets'}"
    return None


@functools.cache
def _browser_missing() -> str | None:
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).is_file()]
    return (
        f"missing: {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if missing
        else None
    )


NEEDS: dict[str, Callable[[], str | None]] = {
    "postgres": _postgres_missing,
    "spark": _spark_missing,
    "shared": _shared_missing,
    "browser": _browser_missing,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a PostgreSQL schema fixture needs PostgreSQL, and one that uses a
    trained registry is slow, marked or not."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_schema" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "registry" in fixtures or "trained_store" in fixtures:
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, missing in NEEDS.items():
        if item.get_closest_marker(marker) is None:
            continue
        reason = missing()
        if reason is None:
            continue
        if os.environ.get(REQUIRE_ALL) == "1":
            pytest.fail(f"{marker}: {reason} ({REQUIRE_ALL}=1 makes it required)", pytrace=False)
        pytest.skip(f"{marker}: {reason}")


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


#: The shared model's synthetic snapshot (the API tests' behaviour marks were measured on it).
SHARED_MODEL_LEADS = 12_000
SHARED_MODEL_SEED = 77


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One trained champion (`models:/leadscore/1`, alias champion) in a temporary MLflow
    store, for every suite that needs just a trained default model: built on first use, once
    a session, so a run that needs no model trains none.

    Read only: a test that changes the store, the model's files or the snapshot works on a
    `tests.fixtures.copy_registry` of it, so no test depends on another's order.

    Returns the snapshot folder, the tracking URI, the root folder and the
    LEADSCORE__MLFLOW__ variables naming the store.
    """
    from tests.fixtures import trained_registry  # imports the CLI: only when a model is needed

    registry, output = trained_registry(
        tmp_path_factory.mktemp("registry"), leads=SHARED_MODEL_LEADS, seed=SHARED_MODEL_SEED
    )
    assert "is champion" in output
    return registry


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the real PostgreSQL, dropped afterwards (the test is marked
    `postgres` by `pytest_collection_modifyitems`)."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL)
    schema = f"leadscore_test_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with engine.begin() as conn:
        # a failed read may still hold a connection (its traceback keeps it): never hang here
        conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def config() -> Config:
    return build_config({"as_of": "2026-01-01T00:00:00Z"})


@pytest.fixture
def crm() -> tuple[pd.DataFrame, pd.DataFrame]:
    return random_crm()
