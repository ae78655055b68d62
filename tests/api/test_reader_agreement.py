"""The API and the snapshot reader read odd values alike: one timestamp parser and one
company-size parser (features/clean.py) serve both.

Each value below is written into a one-lead export (leads.csv, events.csv) and read by
`read_snapshot`, and posted to the API as that lead. Both must accept it or both refuse it;
when accepted, the API's probability equals the model's on the reader's feature row, and the
API's feature function gives the reader's features to the last bit.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from common.config import build_config
from features.contract import ContractError
from features.pipeline import build_features
from features.reader import read_snapshot
from serving.lead import lead_features
from serving.model_store import ModelStore

pytestmark = pytest.mark.api

AS_OF = "2026-06-01T00:00:00Z"
BASE = {"lead_id": "odd-1", "created_at": "2026-05-01T08:00:00Z", "company_size": "350"}
EVENT = {"event_type": "pricing_page_view", "occurred_at": "2026-05-20T10:00:00Z"}

# (column, the text an export holds): the reader sees the text; the API gets it as a string
ODD_TEXT = [
    ("created_at", "1700000000"),
    ("created_at", " 2026-01-05T09:00:00Z "),
    ("created_at", "2026-01-05"),
    ("created_at", "20260105"),
    ("created_at", "2026-01-05T09:00:00+01:00"),
    ("created_at", "2026-01-05 09:00:00.123456789"),
    ("created_at", "0001-01-01T00:00:00+01:00"),
    ("created_at", "9999-12-31T23:59:59-01:00"),
    ("created_at", "1969-12-31T23:59:59Z"),
    ("created_at", "2026-02-30T00:00:00Z"),
    ("created_at", "2026-01-05T24:00:00Z"),
    ("created_at", "yesterday"),
    ("occurred_at", "2026-05-20T10:00:00.5Z"),
    ("occurred_at", " 2026-05-20 "),
    ("occurred_at", "1700000000"),
    ("occurred_at", "0001-01-01T00:00:00+01:00"),
    ("company_size", "true"),
    ("company_size", "Infinity"),
    ("company_size", "inf"),
    ("company_size", "200-51"),
    ("company_size", "51-200"),
    ("company_size", "10,000+"),
    ("company_size", " 350 "),
    ("company_size", "1e3"),
    ("company_size", "-5"),
    ("company_size", "many"),
]


def _export(folder: Path, lead: dict[str, str], event: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    for name, row in (("leads.csv", lead), ("events.csv", {"lead_id": lead["lead_id"], **event})):
        with (folder / name).open("w", newline="") as sink:
            writer = csv.DictWriter(sink, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or pd.isna(b)
    return bool(a == (b if isinstance(b, str) else float(b)))


@pytest.mark.parametrize(("column", "text"), ODD_TEXT)
def test_the_api_accepts_what_the_reader_accepts_with_the_same_features(
    client: TestClient, store: ModelStore, tmp_path: Path, column: str, text: str
) -> None:
    lead = {**BASE, **({column: text} if column != "occurred_at" else {})}
    event = {**EVENT, **({column: text} if column == "occurred_at" else {})}
    model = store.current
    assert model is not None
    folder = tmp_path / "export"
    _export(folder, lead, event)
    config = build_config({**model.config.model_dump(by_alias=True), "source": {"path": folder}})
    try:
        snapshot = read_snapshot(config)
        reader_error = None
    except ContractError as error:
        reader_error = str(error)

    answer = client.post("/v1/score", json={"lead": lead, "events": [event], "as_of": AS_OF})
    assert answer.status_code in (200, 422), answer.text
    api_accepts = answer.status_code == 200
    reader = f"refuses: {reader_error}" if reader_error else "accepts"
    assert api_accepts == (reader_error is None), (
        f"{column}={text!r}: the reader {reader}, the API answers "
        f"{answer.status_code} {answer.text[:300]}"
    )
    if not api_accepts:
        named = {str(part) for e in answer.json()["detail"] for part in e["loc"]}
        assert column in named, answer.json()
        return

    rows = pd.DataFrame({"lead_id": [lead["lead_id"]], "cutoff": [pd.Timestamp(AS_OF)]})
    features = build_features(snapshot, rows, config)
    expected = model.scorer.score(features)["probability"].iloc[0]
    assert answer.json()["probability"] == pytest.approx(expected, abs=1e-12)
    posted = lead_features(lead, [event], AS_OF, model.config)
    for name, value in posted.values.items():
        assert _same(value, features[name].iloc[0]), (name, value, features[name].iloc[0])


@pytest.mark.parametrize("value", [True, False, float("inf"), -1.0, 1700000000])
def test_typed_json_values_the_reader_could_not_hold_are_refused(
    client: TestClient, value: Any
) -> None:
    """JSON types a CSV cannot carry: a true/false or infinite size, a numeric time."""
    field = "created_at" if value == 1700000000 else "company_size"
    body = {"lead": {**BASE, field: value}, "events": [EVENT], "as_of": AS_OF}
    answer = client.post("/v1/score", json=body) if np.isfinite(value) else None
    if answer is None:  # Infinity is not JSON; a client sends it as the bare token
        text = f'{{"lead":{{"lead_id":"odd-1","created_at":"{BASE["created_at"]}",'
        answer = client.post(
            "/v1/score",
            content=(text + '"company_size":Infinity}}').encode(),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 422, answer.text
    assert any(field in map(str, e["loc"]) for e in answer.json()["detail"])
