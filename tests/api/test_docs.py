"""/docs and /redoc without internet: the pages name no outside URL, their assets come from
the app, the API-key scheme is declared for Authorize, and every operation is tagged.

No model is needed for any of this: the app is used without its lifespan (nothing loads).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from common.config import build_config
from serving.app import create_app
from serving.docs_assets import ASSET_FILES, ASSETS_URL, assets_folder, tag_for
from serving.model_store import ModelStore

pytestmark = pytest.mark.api
URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""")
LOCAL = re.compile(r"(?:https?:)?//(?:localhost|127\.0\.0\.1|testserver)(?:[:/]|$)")


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("docs")
    config = build_config({"mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}})
    store = ModelStore(config.serve.model_uri, config.mlflow.tracking_uri)
    # no `with`: the lifespan (model loading) never runs
    yield TestClient(create_app(config, store))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_name_no_outside_url(docs_client: TestClient, page: str) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    outside = [url for url in URL.findall(response.text) if not LOCAL.match(url)]
    assert outside == [], f"{page} would load {outside} from the internet"
    assert f"{ASSETS_URL}/" in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_a_docs_page_names_is_served(docs_client: TestClient, page: str) -> None:
    html = docs_client.get(page).text
    assets = re.findall(rf"""["']({re.escape(ASSETS_URL)}/[^"']+)["']""", html)
    assert len(assets) >= 2, html  # the script (and the style sheet) plus the favicon
    for url in assets:
        response = docs_client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 1000, url


def test_the_asset_folder_comes_from_the_installed_package() -> None:
    folder = assets_folder()
    assert "site-packages" in str(folder) or "dist-packages" in str(folder), folder
    for name in ASSET_FILES:
        assert (folder / name).stat().st_size > 1000, name


def test_the_api_key_scheme_is_declared_for_authorize(docs_client: TestClient) -> None:
    schema = docs_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes == {
        "APIKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": schemes["APIKey"]["description"],
        }
    }
    paths = schema["paths"]
    for path, method in [
        ("/v1/score", "post"),
        ("/v1/score/batch", "post"),
        ("/v1/admin/reload", "post"),
    ]:
        assert paths[path][method]["security"] == [{"APIKey": []}], path
    assert "security" not in paths["/healthz"]["get"]


def test_every_operation_is_tagged(docs_client: TestClient) -> None:
    schema = docs_client.get("/openapi.json").json()
    declared = {tag["name"] for tag in schema["tags"]}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("tags") == [tag_for(path)], f"{method} {path}"
            assert set(operation["tags"]) <= declared
    assert {"scoring", "model", "admin", "operations"} <= declared


def test_keys_are_still_checked_through_the_scheme(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header the docs send is the one the app checks: 401 without it, 403 with a wrong
    one, and a right key gets past the check (to the 503 of an app with no model)."""
    monkeypatch.setenv("LEADSCORE_API_KEYS", "score-key")
    root = tmp_path_factory.mktemp("keys")
    config = build_config({"mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}})
    client = TestClient(create_app(config, ModelStore(config.serve.model_uri, "sqlite://")))
    body = {"lead": {"lead_id": "L1", "created_at": "2026-05-02T09:14:00Z"}, "events": []}
    assert client.post("/v1/score", json=body).status_code == 401
    assert client.post("/v1/score", json=body, headers={"X-API-Key": "nope"}).status_code == 403
    given = client.post("/v1/score", json=body, headers={"X-API-Key": "score-key"})
    assert given.status_code == 503, given.text
