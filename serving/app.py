"""The scoring API: FastAPI, model loaded once in the lifespan and kept on app.state.

One lead is scored on the event loop (about a millisecond of CPU, cheaper than a thread
hand-off); a batch runs in FastAPI's thread pool so that health checks stay answered. Bad
input gets a 4xx naming the field, never a 500; with no model loaded the answer is a 503.
API keys come from the environment and are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response, Security, status
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.config import Config
from features.contract import ContractError
from serving.docs_assets import API_KEY_HEADER, api_key_scheme, mount_docs, tag_routes
from serving.model_store import LoadedModel, ModelStore, ModelUnavailableError
from serving.openapi import describe_lead_fields
from serving.schemas import BatchOut, BatchRequest, ModelOut, Problem, ScoreOut, ScoreRequest
from serving.scoring import account_history, score, warm_up

log = logging.getLogger("leadscore.serving")
# the X-API-Key header, declared as the OpenAPI security scheme (the docs' Authorize button)
GivenKey = Annotated[str | None, Security(api_key_scheme)]


def _keys(variable: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in os.environ.get(variable, "").split(",") if k.strip())


class Metrics:
    """Prometheus metrics of one app (its own registry, so apps in tests don't collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "leadscore_requests_total", "Requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "leadscore_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.tiers = Counter(
            "leadscore_scores_total", "Scores by tier", ["tier"], registry=self.registry
        )


class MeasureMiddleware:
    """Counts and times every request by route; a plain ASGI middleware, since Starlette's
    `BaseHTTPMiddleware` costs a task group and a memory stream per request.

    An exception that escapes the app becomes a JSON 500 (logged without the body: it holds
    PII) instead of a bare error page, and is counted like any other answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_and_note(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            log.exception("unexpected error on %s", scope.get("path", "?"))
            if response_started:
                raise
            status_code = 500
            await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            metrics: Metrics = scope["app"].state.metrics
            metrics.requests.labels(endpoint, str(status_code)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def _require(allowed: tuple[str, ...], given: str | None) -> None:
    """401 without a key, 403 with a wrong one; open when no keys are configured."""
    if not allowed:
        return
    if not given:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing {API_KEY_HEADER} header")
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in allowed):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this API key is not allowed here")


async def scoring_key(request: Request, given: GivenKey) -> None:
    keys = request.app.state.api_keys + request.app.state.admin_keys
    _require(keys, given)


async def admin_key(request: Request, given: GivenKey) -> None:
    _require(request.app.state.admin_keys, given)
    if not request.app.state.admin_keys:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "set LEADSCORE_ADMIN_KEYS to use admin")


def _model_or_503(request: Request) -> LoadedModel:
    model = request.app.state.store.current
    if model is None:
        error = request.app.state.store.last_error or "still loading"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no model loaded: {error}")
    return model


async def current_model(request: Request) -> LoadedModel:
    """The dependency: async, so FastAPI does not hand it to its thread pool per request."""
    return _model_or_503(request)


Model = Annotated[LoadedModel, Depends(current_model)]


def _poll(app: FastAPI, seconds: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        store: ModelStore = app.state.store
        if store.current is None:
            store.load_with_retries(1, 0)
        elif store.poll_once():
            log.info("reloaded: now serving version %s", store.current.version)


def create_app(config: Config, store: ModelStore | None = None) -> FastAPI:
    """The app; `store` may be given (tests), else one for config.serve.model_uri is made."""
    serve = config.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.store.current is None:
            app.state.store.load_with_retries(serve.startup_attempts, serve.startup_wait_seconds)
        stop = threading.Event()
        poller = None
        if serve.poll_seconds > 0 or app.state.store.current is None:
            every = serve.poll_seconds or serve.startup_wait_seconds or 5.0
            poller = threading.Thread(target=_poll, args=(app, every, stop), daemon=True)
            poller.start()
        yield
        stop.set()

    app = FastAPI(
        title="leadscore",
        version="1",
        summary="Calibrated MQL-to-SQL probabilities with reasons, beside the rule points.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from serving/docs_assets.py, without a CDN
        redoc_url=None,
    )
    app.state.store = store or ModelStore(
        serve.model_uri, config.mlflow.tracking_uri, on_load=warm_up, accounts=serve.accounts
    )
    app.state.api_keys = _keys("LEADSCORE_API_KEYS")
    app.state.admin_keys = _keys("LEADSCORE_ADMIN_KEYS")
    app.state.metrics = Metrics()
    app.state.batch_limit = serve.batch_limit

    app.add_middleware(MeasureMiddleware)
    describe_lead_fields(app)  # /docs shows the served model's custom fields and export names

    @app.exception_handler(ContractError)
    async def contract_error(request: Request, error: ContractError) -> JSONResponse:
        """A value the contract cannot read (e.g. company_size 'many'): 422 naming each field,
        shaped like FastAPI's own validation errors."""
        problems = getattr(error, "problems", None) or []
        detail = [
            {
                "loc": ["body", "events" if p.table == "events" else "lead", p.column],
                "msg": str(p),
                "type": "contract",
            }
            for p in problems
        ] or [{"loc": ["body"], "msg": str(error), "type": "contract"}]
        return JSONResponse({"detail": detail}, status_code=422)

    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem},
        403: {"model": Problem},
        503: {"model": Problem},
    }

    @app.post(
        "/v1/score",
        response_model=ScoreOut,
        responses=responses,
        dependencies=[Depends(scoring_key)],
        summary="Score one lead: probability, tier, rule points and reasons",
    )
    async def score_one(body: ScoreRequest, model: Model, request: Request) -> ScoreOut:
        # async on purpose: one lead takes about a millisecond of CPU, less than the hand-off
        # to the thread pool and back costs; the GIL would serialise the threads anyway
        result = score(model, body)
        request.app.state.metrics.tiers.labels(result.tier).inc()
        return result

    @app.post(
        "/v1/score/batch",
        response_model=BatchOut,
        responses={**responses, 413: {"model": Problem}},
        dependencies=[Depends(scoring_key)],
        summary="Score up to the configured number of leads",
    )
    def score_batch(body: BatchRequest, model: Model, request: Request) -> BatchOut:
        limit = request.app.state.batch_limit
        if len(body.leads) > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"leads: {len(body.leads)} leads, more than the limit of {limit}",
            )
        results = [score(model, lead) for lead in body.leads]
        for result in results:
            request.app.state.metrics.tiers.labels(result.tier).inc()
        return BatchOut(results=results)

    @app.get("/v1/model", response_model=ModelOut, responses=responses)
    def describe_model(model: Model) -> ModelOut:
        """The served model: name, version, alias, training date, test metrics, tiers, features."""
        return ModelOut(
            name=model.name,
            version=model.version,
            alias=model.alias,
            uri=model.uri,
            trained_at=model.trained_at,
            test_metrics=model.test_metrics,
            tiers=model.scorer.tiers.as_dict(),
            features=list(model.scorer.spec.names),
            account_history=account_history(model.accounts),
        )

    @app.post(
        "/v1/admin/reload",
        response_model=ModelOut,
        responses=responses,
        dependencies=[Depends(admin_key)],
    )
    def reload(request: Request) -> ModelOut:
        """Load the model URI again (e.g. after a promotion); in-flight requests finish first
        on the old model."""
        try:
            request.app.state.store.reload()
        except ModelUnavailableError as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
        return describe_model(_model_or_503(request))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem}})
    def readyz(request: Request) -> dict[str, str]:
        model = _model_or_503(request)
        return {"status": "ready", "model": f"{model.name}/{model.version}"}

    @app.get("/metrics", response_class=Response)
    def metrics(request: Request) -> Response:
        body = generate_latest(request.app.state.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    mount_docs(app)
    tag_routes(app)
    return app
