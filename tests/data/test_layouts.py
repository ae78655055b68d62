"""Tests of the CRM layouts of the synthetic generator (features.layouts, generate --layout).

Each layout is read back here with plain pandas joins, as a preset would, to show that the
contract's leads, lifecycle times and events can be recovered, except where the CRM's own form
loses them (documented in docs/crm-layouts.md): HubSpot email events of contacts without an
email address, and Salesforce's ConvertedDate without a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features.layouts import write_layout
from features.layouts.common import FORM_NAMES
from features.layouts.exports import EMPTY_LOOKUP, HUBSPOT_EXPORT
from features.layouts.hubspot import EMAIL_EVENT_TYPES, ENGAGEMENT_TYPES, WEB_EVENT_TYPES
from features.layouts.salesforce import TASK_SUBJECTS
from features.synthetic import SyntheticSnapshot, generate, generate_snapshot, write_snapshot

# whole generated CRMs read back through their layouts: the full suite, not test-fast
pytestmark = pytest.mark.integration

N = 3_000
SEED = 7
CHUNK = 1_000  # several chunks, so ids and shared tables must hold across chunks
DOCS = Path(__file__).resolve().parents[2] / "docs" / "crm-layouts.md"
EMAIL_TYPES = ("email_open", "email_click", "email_bounce", "email_unsubscribe")
KEY = ["lead_id", "occurred_at", "event_type"]


@pytest.fixture(scope="module")
def snap() -> SyntheticSnapshot:
    return generate_snapshot(N, SEED, chunk_leads=CHUNK)


def _write(out: Path, layout: str, n: int = N, seed: int = SEED) -> dict[str, pd.DataFrame]:
    write_layout(generate(n, seed, chunk_leads=CHUNK), out, layout=layout)  # type: ignore[arg-type]
    return {p.stem: pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))}


@pytest.fixture(scope="module")
def hubspot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    return _write(tmp_path_factory.mktemp("hubspot"), "hubspot")


@pytest.fixture(scope="module")
def salesforce(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    return _write(tmp_path_factory.mktemp("salesforce"), "salesforce")


def documented(section: str) -> dict[str, list[str]]:
    """Tables and their columns as docs/crm-layouts.md lists them under `## <section>`."""
    text = DOCS.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[str]] = {}
    for block in re.split(r"\n### ", body)[1:]:
        name = re.match(r"`([\w-]+)`", block)
        assert name is not None, block[:40]
        tables[name.group(1)] = re.findall(r"^\| `([^`]+)` \|", block, flags=re.MULTILINE)
    return tables


def _number(ids: pd.Series) -> pd.Series:
    """The contract number in an 18-character Salesforce id (3-char prefix, 12 digits, checksum)."""
    assert ids.astype(str).str.fullmatch(r"[0-9A-Za-z]{18}").all()
    return ids.astype(str).str[3:15].astype("int64")


def _lead_ids(numbers: pd.Series, snap: SyntheticSnapshot) -> pd.Series:
    width = len(snap.leads["lead_id"].iloc[0]) - 1
    return "L" + numbers.astype(str).str.zfill(width)


def _events_key(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[KEY].assign(occurred_at=pd.to_datetime(frame["occurred_at"], utc=True))
    return out.sort_values(KEY, ignore_index=True).astype({"lead_id": str, "event_type": str})


# --- HubSpot ----------------------------------------------------------------------------------


def hubspot_events(t: dict[str, pd.DataFrame], snap: SyntheticSnapshot) -> pd.DataFrame:
    """Contract events from the HubSpot tables, joined and classified as a preset would."""
    contacts = t["contact"][["id", "property_email"]].dropna()
    mail = t["email_event"].merge(contacts, left_on="recipient", right_on="property_email")
    back_email = {v: k for k, v in EMAIL_EVENT_TYPES.items()}
    forms = t["contact_form_submission"].merge(t["form"], left_on="form_id", right_on="guid")
    back_form = {v: k for k, v in FORM_NAMES.items()}
    web = t["contacts_web_analytics"]
    back_web = {v: k for k, v in WEB_EVENT_TYPES.items() if k != "pricing_page_view"}
    web_type = web["event_type"].map(back_web)
    pricing = web["properties_hs_page_title"].str.startswith("Pricing").fillna(False)
    web_type = web_type.where(~pricing.astype(bool), "pricing_page_view")
    eng = t["engagement"].merge(t["engagement_contact"], left_on="id", right_on="engagement_id")
    back_eng = {v: k for k, v in ENGAGEMENT_TYPES.items()}
    parts = [
        (mail["id_y"], mail["created"], mail["type"].map(back_email)),
        (forms["contact_id"], forms["timestamp"], forms["name"].map(back_form)),
        (web["object_id"], web["occurred_at"], web_type),
        (eng["contact_id"], eng["timestamp"], eng["type"].map(back_eng)),
    ]
    return pd.concat(
        [
            pd.DataFrame({"lead_id": _lead_ids(n, snap), "occurred_at": at, "event_type": kind})
            for n, at, kind in parts
        ],
        ignore_index=True,
    )


def test_hubspot_tables_have_the_documented_columns(hubspot: dict[str, pd.DataFrame]) -> None:
    docs = documented("HubSpot")
    assert set(hubspot) - {"truth"} == set(docs)
    for name, columns in docs.items():
        assert list(hubspot[name].columns) == columns, name


def test_hubspot_link_keys_resolve(hubspot: dict[str, pd.DataFrame]) -> None:
    t = hubspot
    contact_ids = set(t["contact"]["id"])
    emails = set(t["contact"]["property_email"].dropna())
    assert set(t["email_event"]["recipient"]) <= emails
    event_ids = set(t["email_event"]["id"])
    assert t["email_event"]["id"].is_unique
    for sub in ("open", "click", "bounce", "status_change"):
        assert set(t[f"email_event_{sub}"]["id"]) <= event_ids, sub
    assert set(t["email_event"]["email_campaign_id"].dropna()) <= set(t["email_campaign"]["id"])
    assert set(t["contact_form_submission"]["form_id"]) == set(t["form"]["guid"])
    for table, column in (
        ("contact_form_submission", "contact_id"),
        ("contacts_web_analytics", "object_id"),
        ("engagement_contact", "contact_id"),
        ("contact_property_history", "contact_id"),
        ("contact_company", "contact_id"),
    ):
        assert set(t[table][column]) <= contact_ids, table
    companies = set(t["company"]["id"])
    assert set(t["contact_company"]["company_id"]) <= companies
    assert set(t["contact"]["property_associatedcompanyid"].dropna()) <= companies
    assert set(t["engagement_contact"]["engagement_id"]) == set(t["engagement"]["id"])
    replies_and_calls = set(t["engagement_email"]["engagement_id"]) | set(
        t["engagement_call"]["engagement_id"]
    )
    assert replies_and_calls == set(t["engagement"]["id"])


def test_hubspot_lifecycle_dates_are_the_contracts(
    hubspot: dict[str, pd.DataFrame], snap: SyntheticSnapshot
) -> None:
    contact = hubspot["contact"].assign(lead_id=lambda f: _lead_ids(f["id"], snap))
    both = snap.leads.merge(contact, on="lead_id", validate="one_to_one")
    assert len(both) == len(snap.leads)
    prefix = "property_hs_lifecyclestage_"
    for column, contract in (
        ("lead_date", "created_at"),
        ("marketingqualifiedlead_date", "mql_at"),
        ("salesqualifiedlead_date", "sql_at"),
    ):
        pd.testing.assert_series_equal(
            both[prefix + column], both[contract], check_names=False, check_dtype=False
        )
    history = hubspot["contact_property_history"]
    for name, value, contract in (
        ("lifecyclestage", "marketingqualifiedlead", "mql_at"),
        ("lifecyclestage", "salesqualifiedlead", "sql_at"),
        ("hs_lead_status", "UNQUALIFIED", "disqualified_at"),
    ):
        rows = history[(history["name"] == name) & (history["value"] == value)]
        first = rows.groupby("contact_id")["timestamp"].min()
        first.index = _lead_ids(pd.Series(first.index), snap)
        expected = snap.leads.set_index("lead_id")[contract].dropna()
        pd.testing.assert_series_equal(
            first.sort_index(), expected.sort_index(), check_names=False, check_index_type=False
        )


def test_hubspot_events_map_back_except_mail_without_an_address(
    hubspot: dict[str, pd.DataFrame], snap: SyntheticSnapshot
) -> None:
    """Every contract event is recovered, except email events of contacts with no address;
    contacts sharing an address are left out of the comparison (their mail joins to both)."""
    email = snap.leads["email"]
    shared = set(snap.leads.loc[email.notna() & email.duplicated(keep=False), "lead_id"])
    no_address = set(snap.leads.loc[email.isna(), "lead_id"])
    expected = snap.events[~snap.events["lead_id"].isin(shared)]
    lost = expected["lead_id"].isin(no_address) & expected["event_type"].isin(EMAIL_TYPES)
    assert lost.sum() > 0  # the loss is real, not vacuous
    got = hubspot_events(hubspot, snap)
    got = got[~got["lead_id"].isin(shared)]
    pd.testing.assert_frame_equal(_events_key(got), _events_key(expected[~lost]))


def test_hubspot_writes_the_export_time_aggregates(
    hubspot: dict[str, pd.DataFrame], snap: SyntheticSnapshot
) -> None:
    contact = hubspot["contact"].assign(lead_id=lambda f: _lead_ids(f["id"], snap))
    leaky = documented_leaks("HubSpot")["contact"]
    assert "property_hs_analytics_num_page_views" in leaky
    assert contact[leaky].notna().any().all()
    # page views counted over the whole history: more than before the MQL for some MQLs
    views = snap.events.drop_duplicates()
    views = views[views["event_type"].isin(["page_view", "pricing_page_view"])]
    views = views.merge(snap.leads[["lead_id", "mql_at"]], on="lead_id")
    total = views.groupby("lead_id").size()
    before = views[views["occurred_at"] < views["mql_at"]].groupby("lead_id").size()
    got = contact.set_index("lead_id")["property_hs_analytics_num_page_views"]
    pd.testing.assert_series_equal(
        got[got > 0].sort_index().astype("int64"),
        total.sort_index().astype("int64"),
        check_names=False,
    )
    mql = snap.leads.loc[snap.leads["mql_at"].notna(), "lead_id"]
    assert (total.reindex(mql, fill_value=0) > before.reindex(mql, fill_value=0)).any()
    stage = contact.set_index("lead_id")["property_lifecyclestage"]
    sql = snap.leads.set_index("lead_id")["sql_at"].notna()
    assert (stage[sql[sql].index] == "salesqualifiedlead").all()


def documented_leaks(section: str) -> dict[str, list[str]]:
    """Columns the docs mark *as of export*, per table."""
    text = DOCS.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n### ", body)[1:]:
        name = re.match(r"`(\w+)`", block)
        assert name is not None
        out[name.group(1)] = re.findall(
            r"^\| `(\w+)` \|.*\*as of export\*", block, flags=re.MULTILINE
        )
    return out


# --- Salesforce -------------------------------------------------------------------------------


def salesforce_events(t: dict[str, pd.DataFrame], snap: SyntheticSnapshot) -> pd.DataFrame:
    """Contract events from Salesforce tasks: who_id to the lead (through the converted
    contact), subject (and URL for pricing pages) to the event type."""
    task = t["task"]
    by_contact = t["lead"].dropna(subset=["converted_contact_id"])
    lead_of = dict(zip(by_contact["converted_contact_id"], by_contact["id"], strict=True))
    who = task["who_id"].map(lambda w: lead_of.get(w, w))
    assert who.str.startswith("00Q").all()
    back = {v: k for k, v in TASK_SUBJECTS.items()}
    form = task["subject"].str.startswith("Form Submitted: ")
    activity = task["subject"].where(form, task["subject"].str.split(": ").str[0])
    kind = activity.map(back)
    return pd.DataFrame(
        {
            "lead_id": _lead_ids(_number(who), snap),
            "occurred_at": task["completed_date_time"],
            "event_type": kind,
        }
    )


def test_salesforce_tables_have_the_documented_columns(
    salesforce: dict[str, pd.DataFrame],
) -> None:
    docs = documented("Salesforce")
    assert set(salesforce) - {"truth"} == set(docs)
    for name, columns in docs.items():
        assert list(salesforce[name].columns) == columns, name


def test_salesforce_link_keys_resolve(salesforce: dict[str, pd.DataFrame]) -> None:
    t = salesforce
    leads, contacts = set(t["lead"]["id"]), set(t["contact"]["id"])
    accounts = set(t["account"]["id"])
    for frame in t.values():
        if "id" in frame.columns:
            assert frame["id"].is_unique
    assert set(t["task"]["who_id"]) <= leads | contacts
    assert set(t["lead_history"]["lead_id"]) <= leads
    assert set(t["campaign_member"]["lead_id"]) <= leads
    assert set(t["campaign_member"]["contact_id"].dropna()) <= contacts
    assert set(t["campaign_member"]["campaign_id"]) == set(t["campaign"]["id"])
    assert set(t["lead"]["matched_account_c"]) <= accounts
    assert set(t["lead"]["converted_account_id"].dropna()) <= accounts
    assert set(t["lead"]["converted_contact_id"].dropna()) == contacts
    assert set(t["lead"]["converted_opportunity_id"].dropna()) == set(t["opportunity"]["id"])
    assert set(t["contact"]["account_id"]) <= accounts
    assert set(t["lead"]["status"]) <= set(t["lead_status"]["api_name"])


def test_salesforce_status_history_and_converted_date(
    salesforce: dict[str, pd.DataFrame], snap: SyntheticSnapshot
) -> None:
    history = salesforce["lead_history"]
    status = history[history["field"] == "Status"]
    for value, contract in (
        ("Marketing Qualified", "mql_at"),
        ("Closed - Converted", "sql_at"),
        ("Closed - Not Converted", "disqualified_at"),
    ):
        first = status[status["new_value"] == value].groupby("lead_id")["created_date"].min()
        first.index = _lead_ids(_number(pd.Series(first.index)), snap)
        expected = snap.leads.set_index("lead_id")[contract].dropna()
        pd.testing.assert_series_equal(
            first.sort_index(), expected.sort_index(), check_names=False, check_index_type=False
        )
    lead = salesforce["lead"].assign(lead_id=lambda f: _lead_ids(_number(f["id"]), snap))
    both = snap.leads.merge(lead, on="lead_id", validate="one_to_one")
    assert len(both) == len(snap.leads)
    # ConvertedDate keeps the date only: the loss the CRM's form itself makes
    expected_date = both["sql_at"].dt.date
    got = both["converted_date"]
    assert (got.isna() == expected_date.isna()).all()
    assert (got.dropna() == expected_date.dropna()).all()
    assert (both["sql_at"].dropna() != both["sql_at"].dropna().dt.floor("D")).any()
    assert (both["is_converted"] == both["sql_at"].notna()).all()
    pd.testing.assert_series_equal(
        both["created_date"], both["created_at"], check_names=False, check_dtype=False
    )


def test_salesforce_events_map_back(
    salesforce: dict[str, pd.DataFrame], snap: SyntheticSnapshot
) -> None:
    got = salesforce_events(salesforce, snap)
    pd.testing.assert_frame_equal(_events_key(got), _events_key(snap.events))
    # tasks move to the contact at the conversion
    assert salesforce["task"]["who_id"].str.startswith("003").any()


def test_salesforce_writes_the_export_time_aggregates(
    salesforce: dict[str, pd.DataFrame], snap: SyntheticSnapshot
) -> None:
    leaks = documented_leaks("Salesforce")
    assert {"status", "last_activity_date", "pi_score_c"} <= set(leaks["lead"])
    lead = salesforce["lead"].assign(lead_id=lambda f: _lead_ids(_number(f["id"]), snap))
    assert lead[leaks["lead"]].notna().any().all()
    last = snap.events.groupby("lead_id")["occurred_at"].max().dt.date
    got = lead.set_index("lead_id")["last_activity_date"].dropna()
    assert (got == last.reindex(got.index)).all()
    assert {"number_of_leads", "number_of_responses"} <= set(leaks["campaign"])


def salesforce_leads(t: dict[str, pd.DataFrame], snap: SyntheticSnapshot) -> pd.DataFrame:
    """Contract leads from `lead` and the Status history, as a preset would map them."""
    lead, history = t["lead"], t["lead_history"]
    status = history[history["field"] == "Status"]

    def first(value: str) -> pd.Series:
        times = status[status["new_value"] == value].groupby("lead_id")["created_date"].min()
        return lead["id"].map(times).astype("datetime64[us, UTC]")

    width = len(snap.leads["account_id"].iloc[0]) - 1
    return pd.DataFrame(
        {
            "lead_id": _lead_ids(_number(lead["id"]), snap),
            "account_id": "A" + _number(lead["matched_account_c"]).astype(str).str.zfill(width),
            "created_at": lead["created_date"],
            "mql_at": first("Marketing Qualified"),
            "sql_at": first("Closed - Converted"),
            "disqualified_at": first("Closed - Not Converted"),
            "job_title": lead["title"],
            "country": lead["country"],
            "industry": lead["industry"],
            "lead_source": lead["lead_source"],
            "company_size": lead["number_of_employees"],
            "email": lead["email"],
        }
    )


def _no_text(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def test_salesforce_read_back_gives_the_contracts_training_set(
    salesforce: dict[str, pd.DataFrame], snap: SyntheticSnapshot, tmp_path: Path
) -> None:
    """Mapped back with the joins above, the Salesforce layout gives the very training set of
    the contract layout (every feature of every row): nothing a feature needs is lost."""
    write_snapshot([snap], tmp_path / "contract")
    back = tmp_path / "back"
    events = salesforce_events(salesforce, snap)
    write_snapshot(
        [
            SyntheticSnapshot(
                salesforce_leads(salesforce, snap),
                events.assign(campaign=_no_text(events), url=_no_text(events)),
                snap.truth,
                snap.as_of,
                snap.params,
            )
        ],
        back,
    )
    sets = {}
    for name in ("contract", "back"):
        out = tmp_path / f"{name}-rows.parquet"
        result = CliRunner().invoke(
            app, ["features", "--snapshot", str(tmp_path / name), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        sets[name] = pd.read_parquet(out)
    assert len(sets["contract"]) > 500
    pd.testing.assert_frame_equal(sets["back"], sets["contract"])


# --- Both -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["hubspot", "salesforce"])
def test_layout_is_deterministic_per_seed_and_keeps_the_truth(
    layout: str, tmp_path: Path, snap: SyntheticSnapshot
) -> None:
    first = _write(tmp_path / "a", layout, n=800)
    again = _write(tmp_path / "b", layout, n=800)
    other = _write(tmp_path / "c", layout, n=800, seed=SEED + 1)
    assert first.keys() == again.keys()
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, again[name], obj=name)
    assert not first["truth"].equals(other["truth"])
    truth = generate_snapshot(800, SEED, chunk_leads=CHUNK).truth
    pd.testing.assert_frame_equal(first["truth"], truth, check_dtype=False)


def test_cli_generate_layout_writes_csv_tables(tmp_path: Path) -> None:
    out = tmp_path / "sf"
    result = CliRunner().invoke(
        app,
        ["generate", "--out", str(out), "-n", "300", "--layout", "salesforce", "--format", "csv"],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {"lead.csv", "task.csv", "truth.parquet"}
    lead = pd.read_csv(out / "lead.csv")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(lead["converted_date"].dropna().iloc[0]))
    bad = CliRunner().invoke(app, ["generate", "--out", str(tmp_path / "x"), "--layout", "zoho"])
    assert bad.exit_code == 2
    assert "zoho" in bad.output


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def chunks() -> Iterator[SyntheticSnapshot]:
        yield from generate(500, SEED, chunk_leads=200)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_layout(chunks(), tmp_path, layout="hubspot")
    assert list(tmp_path.iterdir()) == []


# --- The CRMs' own CSV exports ----------------------------------------------------------------


def _csv_files(out: Path, layout: str, n: int = 1_500) -> dict[str, pd.DataFrame]:
    write_layout(generate(n, SEED, chunk_leads=CHUNK), out, layout=layout)  # type: ignore[arg-type]
    return {p.stem: pd.read_csv(p, dtype=str) for p in sorted(out.glob("*.csv"))}


def test_hubspot_export_is_labelled_and_keeps_lifecycle_dates(tmp_path: Path) -> None:
    files = _csv_files(tmp_path, "hubspot-export")
    snap = generate_snapshot(1_500, SEED, chunk_leads=CHUNK)
    docs = documented("HubSpot contacts export")
    assert set(files) == set(docs) == {HUBSPOT_EXPORT}
    export = files[HUBSPOT_EXPORT]
    assert list(export.columns) == docs[HUBSPOT_EXPORT]
    export["lead_id"] = _lead_ids(export["Record ID"].astype("int64"), snap)
    both = snap.leads.merge(export, on="lead_id", validate="one_to_one")
    assert len(both) == len(snap.leads)
    for label, contract in (
        ("Became a Lead Date", "created_at"),
        ("Became a Marketing Qualified Lead Date", "mql_at"),
        ("Became a Sales Qualified Lead Date", "sql_at"),
    ):
        got = pd.to_datetime(both[label], format="%Y-%m-%d %H:%M:%S").dt.tz_localize("UTC")
        pd.testing.assert_series_equal(got, both[contract], check_names=False, check_dtype=False)
    assert set(both["Lifecycle Stage"]) == {
        "Lead",
        "Marketing Qualified Lead",
        "Sales Qualified Lead",
    }
    assert both["Number of Pageviews"].astype(int).gt(0).any()
    assert both["HubSpot Score"].notna().all()


def test_salesforce_data_export_forms(tmp_path: Path) -> None:
    files = _csv_files(tmp_path, "salesforce-export")
    snap = generate_snapshot(1_500, SEED, chunk_leads=CHUNK)
    docs = documented("Salesforce Data Export")
    assert set(files) == set(docs)
    for name, columns in docs.items():
        assert list(files[name].columns) == columns, name
    lead = files["Lead"]
    assert set(lead["IsConverted"]) | set(lead["HasOptedOutOfEmail"]) <= {"0", "1"}
    lead["lead_id"] = _lead_ids(_number(lead["Id"]), snap)
    both = snap.leads.merge(lead, on="lead_id", validate="one_to_one")
    converted = both["sql_at"].notna()
    expected = both["sql_at"].dt.strftime("%Y-%m-%d 00:00:00")
    assert (both.loc[converted, "ConvertedDate"] == expected[converted]).all()
    assert both.loc[~converted, "ConvertedDate"].isna().all()
    assert (both.loc[~converted, "ConvertedContactId"] == EMPTY_LOOKUP).all()
    mql = both["mql_at"].notna()
    assert (
        both.loc[mql, "MQL_Date__c"] == both.loc[mql, "mql_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    ).all()
    assert both.loc[~mql, "MQL_Date__c"].isna().all()
    people = set(lead["Id"]) | set(files["Contact"]["Id"])
    assert set(files["Task"]["WhoId"]) <= people
    assert len(files["Task"]) == len(snap.events)
