"""The API's /docs and /redoc pages, served from files installed with a package: no CDN.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN, so on a machine without
internet /docs is a blank page. This follows FastAPI's "self-hosting JavaScript and CSS for
docs" recipe: the app is created with `docs_url=None, redoc_url=None`, the static files of
the `fastapi-offline` package (Swagger UI's and ReDoc's dist files and a favicon) are mounted
under /docs-assets, and the two pages are rebuilt with FastAPI's `get_swagger_ui_html` and
`get_redoc_html` pointing at them.

It also tags the operations (so the docs group them) and holds the API-key scheme
(`X-API-Key`) that the app's key checks use, so the OpenAPI schema declares it and the
docs' Authorize button sends the key with "Try it out".
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles

API_KEY_HEADER = "X-API-Key"
ASSETS_URL = "/docs-assets"
# the pages may load images, fonts and data from the app only: ReDoc's attribution logo is an
# image on its CDN (it hides itself when refused), and Swagger UI can fetch a validator badge
PAGE_POLICY = "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

# auto_error=False: the app answers a missing key itself (401, or open when no keys are set)
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKey",
    description="A key from LEADSCORE_API_KEYS (scoring) or LEADSCORE_ADMIN_KEYS (admin). "
    "Not needed when neither is set.",
    auto_error=False,
)

# path prefix -> tag, first match wins; the docs list the tags in this order
ROUTE_TAGS: tuple[tuple[str, str], ...] = (
    ("/v1/score", "scoring"),
    ("/v1/model", "model"),
    ("/v1/admin", "admin"),
    ("/", "operations"),
)
TAG_DESCRIPTIONS: dict[str, str] = {
    "scoring": "Score leads: calibrated probability, tier, rule points and reasons.",
    "model": "The model being served.",
    "admin": "Admin jobs; need an admin key.",
    "operations": "Health, readiness and Prometheus metrics for the platform.",
}


def assets_folder() -> Path:
    """The folder of Swagger UI's and ReDoc's files, as installed with fastapi-offline."""
    folder = Path(str(files("fastapi_offline").joinpath("static")))
    missing = [name for name in ASSET_FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"the docs assets are incomplete in {folder}: missing {missing}")
    return folder


def tag_for(path: str) -> str:
    """The docs group of an operation path."""
    return next(tag for prefix, tag in ROUTE_TAGS if path.startswith(prefix))


def tag_routes(app: FastAPI) -> None:
    """Give every untagged operation of the schema its tag, by path prefix."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema and not route.tags:
            route.tags = [tag_for(route.path)]
    used = {tag for route in app.routes if isinstance(route, APIRoute) for tag in route.tags}
    app.openapi_tags = [
        {"name": name, "description": text}
        for name, text in TAG_DESCRIPTIONS.items()
        if name in used
    ]
    app.openapi_schema = None  # built again, with the tags, on the next request


def mount_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve /docs and /redoc from the packaged assets; the app must be created with
    `docs_url=None, redoc_url=None` so FastAPI's CDN pages are not registered too."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_folder()), name="docs-assets")
    title = app.title
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    # Swagger UI would ask validator.swagger.io to check the schema: nothing leaves the machine
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    def under_root(request: Request, url: str) -> str:
        return f"{request.scope.get('root_path', '')}{url}"

    def local_only(page: HTMLResponse) -> HTMLResponse:
        page.headers["Content-Security-Policy"] = PAGE_POLICY
        return page

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=under_root(request, app.openapi_url or "/openapi.json"),
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=under_root(request, oauth2_redirect_url),
            swagger_js_url=under_root(request, f"{ASSETS_URL}/swagger-ui-bundle.js"),
            swagger_css_url=under_root(request, f"{ASSETS_URL}/swagger-ui.css"),
            swagger_favicon_url=under_root(request, f"{ASSETS_URL}/favicon.png"),
            swagger_ui_parameters=parameters,
        )
        return local_only(page)

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=under_root(request, app.openapi_url or "/openapi.json"),
            title=f"{title} - ReDoc",
            redoc_js_url=under_root(request, f"{ASSETS_URL}/redoc.standalone.js"),
            redoc_favicon_url=under_root(request, f"{ASSETS_URL}/favicon.png"),
            with_google_fonts=False,
        )
        return local_only(page)
