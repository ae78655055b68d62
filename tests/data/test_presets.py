"""The CRM presets (features.presets, examples/*.yaml) recover the contract's training set.

Each layout of the generator, written with the same seed and read through its preset, must
give the same leads, outcomes and features as the contract layout, except where the CRM's own
form loses information (docs/hubspot.md, docs/salesforce.md):

- HubSpot warehouse: marketing-email events reach a contact only by its address, so contacts
  without one lose their email events, and contacts sharing one get each other's; every
  feature built on those events (email counts, event totals, active days, the account's
  other events) differs for them and for their accounts' other leads. Nothing else differs.
- Salesforce warehouse: nothing is lost.
- HubSpot contacts export: no events at all and no disqualification time; fit fields, MQL,
  SQL and labels are the contract's.
- Salesforce Data Export: no disqualification time, and ConvertedDate is a date, so an SQL on
  the MQL's own day reads as the MQL time (those leads leave the training set: converted at
  the cutoff) and the account's SQL count of the other leads may shift by a day.

Rows are compared at mql_at and the weekly cutoffs: the extra sampled ages hash the lead id,
which each CRM spells its own way, so they fall on other days by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from common.config import ConfigError, load_config
from features.contract import EVENT_TYPES as EVENT_TYPES_ALL
from features.layouts import write_layout
from features.presets import as_of_export_columns, preset_settings
from features.presets.common import value_as_of
from features.reader import read_snapshot
from features.synthetic import SyntheticSnapshot, generate, generate_snapshot

# whole generated CRMs read back through their layouts: the full suite, not test-fast
pytestmark = pytest.mark.integration

N = 3_000
SEED = 7
CHUNK = 1_000
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = ["lead_id", "cutoff"]
#: Deterministic cutoffs only (see the module docstring).
POLICY = {
    "LEADSCORE__SNAPSHOT_POLICY__SAMPLED_AGES": "0",
    "LEADSCORE__SNAPSHOT_POLICY__WEEKLY_WEEKS": "2",
}
EMAIL_TYPES = ("email_open", "email_click", "email_bounce", "email_unsubscribe")


@pytest.fixture(scope="module")
def snap() -> SyntheticSnapshot:
    return generate_snapshot(N, SEED, chunk_leads=CHUNK)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in ("contract", "hubspot", "salesforce", "hubspot-export", "salesforce-export"):
        out[layout] = root / layout
        write_layout(generate(N, SEED, chunk_leads=CHUNK), out[layout], layout=layout)  # type: ignore[arg-type]
    return out


def training_set(snapshot: str, out: Path, preset: str | None = None) -> pd.DataFrame:
    """`leadscore features` of a snapshot (through a preset), lead ids as the contract's."""
    args = ["features", "--snapshot", snapshot, "--out", str(out)]
    if preset is not None:
        args += ["-c", str(EXAMPLES / f"{preset}.yaml")]
    result = CliRunner().invoke(app, args, env=POLICY)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out)
    rows["lead_id"] = contract_ids(rows["lead_id"], preset)
    return rows.sort_values(KEY, ignore_index=True)


def contract_ids(ids: pd.Series, preset: str | None) -> pd.Series:
    """The contract's `L0000123` from a HubSpot record id (123) or a Salesforce id (00Q...)."""
    text = ids.astype(str)
    if preset is None:
        return text
    number = text.str[3:15] if preset.startswith("salesforce") else text
    return "L" + number.astype("int64").astype(str).str.zfill(7)


@pytest.fixture(scope="module")
def contract_rows(
    folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    rows = training_set(str(folders["contract"]), tmp_path_factory.mktemp("rows") / "c.parquet")
    assert len(rows) > 1_500 and rows["label"].sum() > 300
    return rows


def _read(folders: dict[str, Path], preset: str, tmp: Path) -> pd.DataFrame:
    return training_set(str(folders[preset]), tmp / f"{preset}.parquet", preset)


def test_salesforce_preset_gives_the_contracts_training_set(
    folders: dict[str, Path], contract_rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows = _read(folders, "salesforce", tmp_path)
    pd.testing.assert_frame_equal(rows, contract_rows)


def _affected_by_mail(snap: SyntheticSnapshot) -> tuple[set[str], set[str]]:
    """Leads whose email events HubSpot cannot attribute exactly, and every lead of their
    accounts (whose account features count those events)."""
    email = snap.leads["email"].str.strip().str.casefold()
    mailed = set(snap.events.loc[snap.events["event_type"].isin(EMAIL_TYPES), "lead_id"])
    odd = snap.leads["lead_id"].isin(mailed) & (email.isna() | email.duplicated(keep=False))
    leads = set(snap.leads.loc[odd, "lead_id"])
    accounts = set(snap.leads.loc[odd, "account_id"].dropna())
    same_account = set(snap.leads.loc[snap.leads["account_id"].isin(accounts), "lead_id"])
    return leads, same_account


def _mail_features(columns: pd.Index) -> list[str]:
    """Features built on email events: per type, event totals, activity and account counts."""
    stems = (*EMAIL_TYPES, "n_events", "active_days", "trend_", "days_since_last_event")
    return [
        c for c in columns if any(s in c for s in stems) or c.startswith("account_other_events")
    ]


def test_hubspot_preset_differs_only_where_mail_lacks_a_contact(
    folders: dict[str, Path],
    contract_rows: pd.DataFrame,
    snap: SyntheticSnapshot,
    tmp_path: Path,
) -> None:
    rows = _read(folders, "hubspot", tmp_path)
    pd.testing.assert_frame_equal(rows[[*KEY, "label"]], contract_rows[[*KEY, "label"]])
    mail = _mail_features(rows.columns)
    others = [c for c in rows.columns if c not in mail]
    pd.testing.assert_frame_equal(rows[others], contract_rows[others])
    odd, same_account = _affected_by_mail(snap)
    clean = ~rows["lead_id"].isin(odd | same_account)
    pd.testing.assert_frame_equal(
        rows.loc[clean, mail].reset_index(drop=True),
        contract_rows.loc[clean, mail].reset_index(drop=True),
    )
    a, b = rows[mail], contract_rows[mail]
    differs = (~((a == b) | (a.isna() & b.isna()))).any(axis=1)
    assert differs.any()  # the loss is real
    assert set(rows.loc[differs, "lead_id"]) <= odd | same_account


def test_hubspot_export_keeps_fit_and_outcomes_but_no_events(
    folders: dict[str, Path],
    contract_rows: pd.DataFrame,
    snap: SyntheticSnapshot,
    tmp_path: Path,
) -> None:
    rows = _read(folders, "hubspot-export", tmp_path)
    both = contract_rows[KEY].merge(rows, on=KEY, how="left", indicator=True)
    assert (both["_merge"] == "both").all()  # every contract row is there
    extra = rows.merge(contract_rows[KEY], on=KEY, how="left", indicator=True)
    extra_leads = set(extra.loc[extra["_merge"] == "left_only", "lead_id"])
    disqualified = set(snap.leads.loc[snap.leads["disqualified_at"].notna(), "lead_id"])
    assert extra_leads and extra_leads <= disqualified  # no disqualification time: kept longer
    kept = both.drop(columns="_merge")
    fit = ["label", "seniority", "job_function", "industry", "country", "region"]
    fit += ["lead_source", "company_size", "email_free"]
    pd.testing.assert_frame_equal(kept[KEY + fit], contract_rows[KEY + fit])
    assert (kept.filter(like="n_events").fillna(0) == 0).all().all()


def test_salesforce_export_loses_the_time_of_conversion_only(
    folders: dict[str, Path],
    contract_rows: pd.DataFrame,
    snap: SyntheticSnapshot,
    tmp_path: Path,
) -> None:
    rows = _read(folders, "salesforce-export", tmp_path)
    leads = snap.leads
    sql = contract_rows["lead_id"].map(leads.set_index("lead_id")["sql_at"])
    # the SQL's day starts at or before the cutoff, the SQL itself comes after it
    on_its_day = (sql.dt.floor("D") <= contract_rows["cutoff"]) & (contract_rows["cutoff"] < sql)
    assert on_its_day.any()  # the loss is real
    lost_rows = set(map(tuple, contract_rows.loc[on_its_day, KEY].to_numpy().tolist()))
    disqualified = set(leads.loc[leads["disqualified_at"].notna(), "lead_id"])
    merged = contract_rows.merge(rows, on=KEY, how="outer", indicator=True, suffixes=("", "_x"))
    left_only = merged.loc[merged["_merge"] == "left_only", KEY].to_numpy().tolist()
    assert set(map(tuple, left_only)) == lost_rows
    assert set(merged.loc[merged["_merge"] == "right_only", "lead_id"]) <= disqualified
    both = merged[merged["_merge"] == "both"]
    # rows whose account has another lead converting on the day of the moment counted (the
    # cutoff, or the lead's mql_at for the count as it stood then), after that moment
    pairs = both[KEY].merge(leads[["lead_id", "account_id", "mql_at"]], on="lead_id")
    pairs = pairs.merge(
        leads[["lead_id", "account_id", "sql_at"]], on="account_id", suffixes=("", "_other")
    )
    pairs = pairs[pairs["lead_id"] != pairs["lead_id_other"]]

    def near(moment: pd.Series) -> set[str]:
        on_day = (pairs["sql_at"].dt.floor("D") <= moment) & (moment < pairs["sql_at"])
        return set(pairs.loc[on_day, "lead_id"])

    near_by_column = {
        "account_other_sqls": near(pairs["cutoff"]),
        "account_other_sqls_at_mql": near(pairs["mql_at"]),
    }
    for column in contract_rows.columns.drop(KEY):
        a, b = both[column], both[column + "_x"]
        differs = ~((a == b) | (a.isna() & b.isna())).fillna(False)
        if column in near_by_column:
            assert set(both.loc[differs, "lead_id"]) <= near_by_column[column], column
        else:
            assert not differs.any(), column


@pytest.mark.parametrize("preset", ["hubspot", "salesforce"])
def test_presets_read_from_postgres_as_from_files(
    preset: str, folders: dict[str, Path], postgres_schema: str
) -> None:
    """The warehouse tables loaded into PostgreSQL and read by URL give the same snapshot."""
    import sqlalchemy as sa

    from tests.conftest import POSTGRES_URL

    engine = sa.create_engine(POSTGRES_URL)
    for path in sorted(folders[preset].glob("*.parquet")):
        if path.stem != "truth":
            pd.read_parquet(path).to_sql(path.stem, engine, schema=postgres_schema, index=False)
    engine.dispose()
    as_of = json.loads((folders[preset] / "snapshot.json").read_text())["as_of"]
    files = load_config(EXAMPLES / f"{preset}.yaml")
    files = files.model_copy(
        update={"source": files.source.model_copy(update={"path": folders[preset]})}
    )
    by_url = files.model_copy(
        update={
            "source": files.source.model_copy(
                update={"path": None, "url": POSTGRES_URL, "db_schema": postgres_schema}
            ),
            "as_of": pd.Timestamp(as_of).to_pydatetime(),
        }
    )
    from_files, from_db = read_snapshot(files), read_snapshot(by_url)
    pd.testing.assert_frame_equal(from_db.leads, from_files.leads)
    assert from_db.as_of == from_files.as_of
    events = [s.events.to_frame(s.leads["lead_id"]) for s in (from_db, from_files)]
    pd.testing.assert_frame_equal(events[0], events[1])
    assert len(events[0]) > 100_000


def test_columns_match_ignoring_case_and_underscores(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """Salesforce's Data Export spells tables and columns in API names (Lead.csv,
    CreatedDate); the warehouse preset's settings read it all the same."""
    config = load_config(EXAMPLES / "salesforce-export.yaml")
    config = config.model_copy(
        update={"source": config.source.model_copy(update={"path": folders["salesforce-export"]})}
    )
    snap = read_snapshot(config)
    assert snap.leads["lead_id"].str.startswith("00Q").all()
    assert snap.leads["mql_at"].notna().sum() > 1_000


def test_bad_preset_settings_name_the_key(folders: dict[str, Path]) -> None:
    config = load_config(EXAMPLES / "hubspot.yaml")
    bad = config.model_copy(update={"preset": {**config.preset, "lifecycle": "guess"}})
    with pytest.raises(ConfigError, match=r"preset\.lifecycle"):
        preset_settings(bad)
    unknown = config.model_copy(update={"preset": {"mql_stage": ["x"]}})
    with pytest.raises(ConfigError, match=r"preset\.mql_stage"):
        preset_settings(unknown)


def test_as_of_export_columns_are_known_per_crm() -> None:
    hubspot = [
        "property_hubspotscore",
        "property_hs_analytics_num_page_views",
        "property_lifecyclestage",
        "Lead Status",
        "Number of Pageviews",
        "property_jobtitle",
        "property_numemployees",
        "Number of Employees",
    ]
    assert as_of_export_columns("hubspot", hubspot) == hubspot[:5]
    salesforce = ["Status", "pi__score__c", "last_activity_date", "Rating", "title", "industry"]
    assert as_of_export_columns("salesforce", salesforce) == salesforce[:4]
    assert as_of_export_columns(None, hubspot) == []


def test_a_fit_value_is_taken_as_of_the_mql_from_its_history() -> None:
    """The last change at or before the cutoff counts; with none yet, the value before the
    first change (Salesforce keeps it) or missing (HubSpot: not set yet); without history,
    the current value."""
    at = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    current = pd.Series(["CTO", "CEO", "Intern", "VP"])
    cutoff = pd.Series([at[1], at[1], at[0], at[2]])
    history = pd.DataFrame(
        {
            "pos": [0, 0, 1, 2],  # the leads' rows: the fourth has no history
            "at": [at[0], at[2], at[2], at[1]],
            "value": ["Engineer", "CTO", "CEO", "Intern"],
            "old": [None, "Engineer", "Manager", "Student"],
        }
    )
    hubspot, n = value_as_of(current, cutoff, history.drop(columns="old"))
    assert hubspot.tolist() == ["Engineer", pd.NA, pd.NA, "VP"] and n == 3
    salesforce, _ = value_as_of(current, cutoff, history)
    assert salesforce.tolist() == ["Engineer", "Manager", "Student", "VP"]


def test_the_hubspot_preset_reads_a_changed_title_as_of_the_mql(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """A contact whose job title changed after its MQL is read with the title it had then."""
    folder = tmp_path / "hubspot"
    folder.mkdir()
    for path in folders["hubspot"].iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    contact = pd.read_parquet(folder / "contact.parquet")
    mql = contact["property_hs_lifecyclestage_marketingqualifiedlead_date"]
    changed = contact.index[mql.notna()][:50]
    history = pd.read_parquet(folder / "contact_property_history.parquet")
    later = pd.DataFrame(
        {
            "contact_id": contact.loc[changed, "id"].to_numpy(),
            "name": "jobtitle",
            "value": "Chief Revenue Officer",
            "timestamp": (mql[changed] + pd.Timedelta(days=30)).to_numpy(),
            "source": "CRM_UI",
            "source_id": None,
        }
    )
    pd.concat([history, later.astype(history.dtypes.to_dict())]).to_parquet(
        folder / "contact_property_history.parquet"
    )
    contact.loc[changed, "property_jobtitle"] = "Chief Revenue Officer"
    contact.to_parquet(folder / "contact.parquet")
    config = load_config(EXAMPLES / "hubspot.yaml")
    config = config.model_copy(update={"source": config.source.model_copy(update={"path": folder})})
    as_of_mql = read_snapshot(config).leads.set_index("lead_id")["job_title"]
    now = read_snapshot(config.model_copy(update={"preset": {"fit_as_of": "current"}}))
    ids = contact.loc[changed, "id"].astype(str)
    assert (now.leads.set_index("lead_id").loc[ids, "job_title"] == "Chief Revenue Officer").all()
    assert not (as_of_mql.loc[ids] == "Chief Revenue Officer").any()


def _share_one_address(source: Path, out: Path, contacts: int) -> tuple[list[str], int]:
    """A copy of a HubSpot layout in which `contacts` mailed contacts, each with an address of
    its own, share one address (their mail and the email property's history re-addressed to
    it too); returns their record ids and how many email events were sent to it."""
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(source, out)
    contact = pq.read_table(out / "contact.parquet").to_pandas()
    mail = pq.read_table(out / "email_event.parquet").to_pandas()
    email = contact["property_email"].str.strip().str.casefold()
    own = email.notna() & ~email.duplicated(keep=False)
    mailed = email.isin(set(mail["recipient"].str.strip().str.casefold()))
    chosen = contact.index[own & mailed][:contacts]
    assert len(chosen) == contacts
    addresses = set(email[chosen])
    contact.loc[chosen, "property_email"] = "shared@example.com"
    moved = mail["recipient"].str.strip().str.casefold().isin(addresses)
    mail.loc[moved, "recipient"] = "shared@example.com"
    history = pq.read_table(out / "contact_property_history.parquet").to_pandas()
    ours = (history["name"] == "email") & history["contact_id"].isin(contact.loc[chosen, "id"])
    history.loc[ours, "value"] = "shared@example.com"
    contact.to_parquet(out / "contact.parquet", index=False)
    mail.to_parquet(out / "email_event.parquet", index=False)
    history.to_parquet(out / "contact_property_history.parquet", index=False)
    return contact.loc[chosen, "id"].astype(str).tolist(), int(moved.sum())


def test_an_address_shared_past_the_cap_reaches_none_of_its_contacts(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    ids, sent = _share_one_address(folders["hubspot"], tmp_path / "hubspot", contacts=12)
    config = load_config(EXAMPLES / "hubspot.yaml")
    source = config.source.model_copy(update={"path": tmp_path / "hubspot"})
    config = config.model_copy(update={"source": source})
    email_codes = [i for i, name in enumerate(EVENT_TYPES_ALL) if name in EMAIL_TYPES]

    def mail_of_sharers(preset: dict[str, object]) -> np.ndarray:
        snap = read_snapshot(config.model_copy(update={"preset": {**config.preset, **preset}}))
        rows = np.flatnonzero(snap.leads["lead_id"].astype(str).isin(ids).to_numpy())
        assert rows.size == len(ids)
        events = snap.events
        is_mail = np.isin(events.kind, email_codes) & np.isin(events.lead, rows)
        return np.bincount(events.lead[is_mail], minlength=len(snap.leads))[rows]

    assert (mail_of_sharers({}) == 0).all()  # 12 sharers, more than the default 10
    assert (mail_of_sharers({"email_match": "unique"}) == 0).all()
    fanned = mail_of_sharers({"email_sharers_max": 12})
    assert fanned.min() > 0 and (fanned == fanned[0]).all()  # each gets the address's mail
    assert fanned[0] <= sent  # less any event the reader drops (exact duplicates, unknown)
