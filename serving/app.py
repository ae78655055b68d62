"""The scoring API: FastAPI, model loaded once in the lifespan and kept on app.state.

One small lead is scored on the event loop (about a millisecond of CPU, cheaper than a thread
hand-off); a large lead and every batch are read and scored in the app's own scoring threads,
so that health checks, which answer on the event loop, stay answered. Request bodies are read
within limits before any parsing and load beyond capacity is shed with a 503 (serving/guard.py,
docs/api-safety.md). Bad input gets a 4xx naming the field, never a 500, and never echoes a
value beyond a short truncated one; with no model loaded the answer is a 503. API keys come
from the environment and are compared in constant time.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, FastAPI, HTTPException, Request, Response, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.config import Config, LimitsConfig
from features.contract import ContractError
from serving.docs_assets import API_KEY_HEADER, api_key_scheme, mount_docs, tag_routes
from serving.guard import (
    ARRIVED,
    RETRY_AFTER_SECONDS,
    GuardMiddleware,
    Pressure,
    parse_body,
    parse_json,
    problem,
    read_model,
    refuse,
    unknown_field_problems,
)
from serving.model_store import (
    LoadedModel,
    ModelStore,
    ModelUnavailableError,
    shown_model_uri,
)
from serving.openapi import describe_lead_fields
from serving.schemas import (
    BatchOut,
    BatchRequest,
    LeadIn,
    ModelOut,
    Problem,
    Problems,
    ScoreOut,
    ScoreRequest,
)
from serving.scoring import account_history, score, warm_up

log = logging.getLogger("leadscore.serving")
# the X-API-Key header, declared as the OpenAPI security scheme (the docs' Authorize button)
GivenKey = Annotated[str | None, Security(api_key_scheme)]
T = TypeVar("T")
_LEAD_FIELDS = frozenset(LeadIn.model_fields)


def _keys(variable: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in os.environ.get(variable, "").split(",") if k.strip())


class ShedCollector(Collector):
    """`leadscore_shed_total{stage}`: scoring requests answered 503 because the server was
    overloaded, by where they were shed. Those shed from the request head never reach the
    app, so `leadscore_requests_total` does not see them; this counts every stage."""

    def __init__(self, pressure: Pressure) -> None:
        self.pressure = pressure

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "leadscore_shed",
            "Scoring requests answered 503 (overloaded), by where they were shed: head "
            "(before a task was made), app (in the middleware), pool (waiting for a thread)",
            labels=["stage"],
        )
        for stage, count in self.pressure.shed.items():
            family.add_metric([stage], count)
        yield family


class Metrics:
    """Prometheus metrics of one app (its own registry, so apps in tests don't collide)."""

    def __init__(self, pressure: Pressure) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ShedCollector(pressure))
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
        except Exception as error:
            # the type and the frames, not the message: a message may quote the request
            frames = "".join(traceback.format_tb(error.__traceback__))
            log.error(
                "unexpected %s on %s\n%s", type(error).__name__, scope.get("path", "?"), frames
            )
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


async def info_key(request: Request, given: GivenKey) -> None:
    """/v1/model and /metrics: a scoring key when keys are set, unless serve.public_info."""
    if not request.app.state.public_info:
        await scoring_key(request, given)


async def current_model(request: Request) -> LoadedModel:
    """The dependency: async, so FastAPI does not hand it to its thread pool per request."""
    return _model_or_503(request)


Model = Annotated[LoadedModel, Depends(current_model)]


def _freeze_heap(collect: bool = False) -> None:
    """Move what is alive now (libraries, the model) out of the garbage collector's sight.

    A full collection scans every tracked object, and the libraries a model needs hold
    millions: each one held the GIL, and so the event loop and /healthz, for a tenth of a
    second and more while batches were being scored.
    """
    if collect:
        gc.collect()
    gc.freeze()


def _poll(app: FastAPI, seconds: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        store: ModelStore = app.state.store
        if store.current is None:
            store.load_with_retries(1, 0)
        elif store.poll_once():
            _freeze_heap()
            log.info("reloaded: now serving version %s", store.current.version)


def create_app(config: Config, store: ModelStore | None = None) -> FastAPI:
    """The app; `store` may be given (tests), else one for config.serve.model_uri is made."""
    serve = config.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.store.current is None:
            app.state.store.load_with_retries(serve.startup_attempts, serve.startup_wait_seconds)
        if not (app.state.api_keys or app.state.admin_keys):
            log.warning(
                "no API keys set (LEADSCORE_API_KEYS, LEADSCORE_ADMIN_KEYS): anyone who can "
                "reach %s:%s can score leads, read /v1/model and /metrics; reload is off",
                serve.host,
                serve.port,
            )
        _freeze_heap(collect=True)
        ticker = asyncio.create_task(app.state.pressure.lag.run())
        stop = threading.Event()
        poller = None
        if serve.poll_seconds > 0 or app.state.store.current is None:
            every = serve.poll_seconds or serve.startup_wait_seconds or 5.0
            poller = threading.Thread(target=_poll, args=(app, every, stop), daemon=True)
            poller.start()
        yield
        stop.set()
        ticker.cancel()
        with suppress(asyncio.CancelledError):
            await ticker

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
    app.state.pressure = Pressure(serve.limits)
    app.state.metrics = Metrics(app.state.pressure)
    app.state.batch_limit = serve.batch_limit
    app.state.public_info = serve.public_info
    app.state.limits = serve.limits
    app.state.pool = ThreadPoolExecutor(
        serve.limits.scoring_threads, thread_name_prefix="leadscore-score"
    )

    app.add_middleware(GuardMiddleware, pressure=app.state.pressure)
    app.add_middleware(MeasureMiddleware)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422 without the input values (they may hold personal data)."""
        detail = [
            problem(tuple(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", "")))
            for e in error.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    describe_lead_fields(app)  # /docs shows the served model's custom fields and export names

    @app.exception_handler(ContractError)
    async def contract_error(request: Request, error: ContractError) -> JSONResponse:
        """A value the contract cannot read (e.g. company_size 'many'): 422 naming each field,
        shaped like FastAPI's own validation errors."""
        return JSONResponse({"detail": contract_problems(error, ("body",))}, status_code=422)

    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem},
        403: {"model": Problem},
        503: {"model": Problem},
    }
    posted: dict[int | str, dict[str, Any]] = {
        **responses,
        400: {"model": Problem, "description": "The body is not JSON."},
        408: {"model": Problem, "description": "The body took too long to arrive."},
        413: {"model": Problem, "description": "Over a size or count limit."},
        422: {"model": Problems, "description": "A field is wrong: each one named."},
        503: {
            "model": Problem,
            "description": "No model loaded, or overloaded (then with Retry-After).",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }

    @app.post(
        "/v1/score",
        response_model=ScoreOut,
        responses=posted,
        dependencies=[Depends(scoring_key)],
        summary="Score one lead: probability, tier, rule points and reasons",
        openapi_extra=_body_of("ScoreRequest"),
    )
    async def score_one(model: Model, request: Request) -> ScoreOut:
        # a small lead is scored on the event loop: about a millisecond of CPU, less than the
        # hand-off to a thread and back costs; a large one goes to the scoring threads
        body = await request.body()
        if await request.is_disconnected():  # its client has left while it queued
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the client has gone")
        limits: LimitsConfig = request.app.state.limits
        job = partial(_score_body, model, body, limits)
        if len(body) <= limits.inline_bytes:
            # CPU time of this thread: the work itself, not the waits for the GIL held by a
            # reload or a batch, which would make a few requests look like a long queue
            started = time.thread_time()
            result = job()
            request.app.state.pressure.note_inline(time.thread_time() - started)
        else:
            result = await _in_pool(request, job)
        request.app.state.metrics.tiers.labels(result.tier).inc()
        return result

    @app.post(
        "/v1/score/batch",
        response_model=BatchOut,
        responses=posted,
        dependencies=[Depends(scoring_key)],
        summary="Score up to the configured number of leads; any bad lead refuses the batch",
        openapi_extra=_body_of("BatchRequest"),
    )
    async def score_batch(model: Model, request: Request) -> Response:
        """All or nothing: a 422 names every failing lead by its index and scores none."""
        body = await request.body()
        state = request.app.state
        job = partial(_batch_answer, model, body, state.limits, state.batch_limit)
        answer, tiers = await _in_pool(request, job, takes_gone=True)
        for tier in tiers:
            state.metrics.tiers.labels(tier).inc()
        # serialised in the scoring thread: a thousand answers are too much for the event loop
        return Response(answer, media_type="application/json")

    @app.get(
        "/v1/model",
        response_model=ModelOut,
        responses=responses,
        dependencies=[Depends(info_key)],
    )
    async def describe_model(model: Model) -> ModelOut:
        """The served model: name, version, alias, training date, test metrics, tiers, features."""
        return ModelOut(
            name=model.name,
            version=model.version,
            alias=model.alias,
            uri=shown_model_uri(model.uri),
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
    async def reload(request: Request) -> ModelOut:
        """Load the model URI again (e.g. after a promotion); in-flight requests finish first
        on the old model."""
        try:
            # in a thread of its own: a load takes seconds and must not stop the event loop
            await asyncio.to_thread(request.app.state.store.reload)
            _freeze_heap()
        except ModelUnavailableError as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
        return await describe_model(_model_or_503(request))

    # health, readiness and metrics answer on the event loop: no thread pool to wait for
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem}})
    async def readyz(request: Request) -> dict[str, str]:
        model = _model_or_503(request)
        return {"status": "ready", "model": f"{model.name}/{model.version}"}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={401: {"model": Problem}, 403: {"model": Problem}},
        dependencies=[Depends(info_key)],
    )
    async def metrics(request: Request) -> Response:
        body = generate_latest(request.app.state.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    mount_docs(app)
    tag_routes(app)
    return app


def _body_of(name: str) -> dict[str, Any]:
    """The request body's schema for /docs: the endpoints read raw bytes themselves."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request models the scoring endpoints read themselves."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,  # the docs' groups (serving.docs_assets.tag_routes)
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for kind in (ScoreRequest, BatchRequest):
            body = kind.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[kind.__name__] = body
        # the configured counts, so that clients (and schemathesis) see the real limits
        components["BatchRequest"]["properties"]["leads"]["maxItems"] = app.state.batch_limit
        events = components["ScoreRequest"]["properties"]["events"]
        events["maxItems"] = min(events.get("maxItems", 10**9), app.state.limits.max_events)
        app.openapi_schema = schema
    return app.openapi_schema


def contract_problems(error: ContractError, loc: tuple[Any, ...]) -> list[dict[str, Any]]:
    """A contract error as 422 entries, each naming its field under `loc` (the request's)."""
    found = getattr(error, "problems", None) or []
    detail = [
        problem(
            (*loc, p.column)
            if p.table == "request"
            else (*loc, "events" if p.table == "events" else "lead", p.column),
            str(p),
            "contract",
        )
        for p in found
    ]
    return detail or [problem(loc, str(error), "contract")]


def _read_lead(data: Any, limits: LimitsConfig, loc: tuple[Any, ...]) -> ScoreRequest:
    """One lead's request from parsed JSON, counted and checked before validation."""
    found: list[dict[str, Any]] = []
    if isinstance(data, dict):
        events = data.get("events")
        if isinstance(events, list) and len(events) > limits.max_events:
            where = ".".join(map(str, (*loc[1:], "events"))) or "events"
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"{where}: {len(events):,} events, more than the limit of {limits.max_events:,}",
            )
        lead = data.get("lead")
        if isinstance(lead, dict):
            found = unknown_field_problems(lead, _LEAD_FIELDS, (*loc, "lead"))
    request, problems = read_model(ScoreRequest, data, loc)
    if found or problems or request is None:
        raise refuse(found + problems)
    return request


def _score_body(model: LoadedModel, body: bytes, limits: LimitsConfig) -> ScoreOut:
    """POST /v1/score's work: the body read, checked and scored."""
    request = _read_lead(parse_body(body), limits, ("body",))
    try:
        return score(model, request)
    except ContractError as error:
        raise refuse(contract_problems(error, ("body",))) from None


def _score_batch_body(
    model: LoadedModel,
    body: bytes,
    limits: LimitsConfig,
    batch_limit: int,
    gone: threading.Event,
) -> BatchOut:
    """POST /v1/score/batch's work: the count first, then every lead read and scored; any
    failure refuses the whole batch with a 422 naming each failing lead by its index (the
    valid ones are not returned). Between leads, stop if the client has gone."""
    data, odd = parse_json(body)
    # odd values inside a lead are that lead's problems; anywhere else, the batch's
    odd_leads = {p["loc"][2] for p in odd if p["loc"][1:2] == ["leads"] and len(p["loc"]) > 2}
    if any(p["loc"][1:2] != ["leads"] or len(p["loc"]) <= 2 for p in odd):
        raise refuse(odd)
    leads = data.get("leads") if isinstance(data, dict) else None
    if not isinstance(leads, list):
        _, problems = read_model(BatchRequest, data, ("body",))
        raise refuse(problems or [problem(("body", "leads"), "a list of leads", "list_type")])
    if len(leads) > batch_limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"leads: {len(leads)} leads, more than the limit of {batch_limit}",
        )
    _, shell = read_model(BatchRequest, {**data, "leads": []}, ("body",))
    problems = list(shell) + odd
    requests: list[ScoreRequest | None] = []
    for i, lead in enumerate(leads):
        if i in odd_leads:
            requests.append(None)
            continue
        try:
            requests.append(_read_lead(lead, limits, ("body", "leads", i)))
        except HTTPException as error:
            if error.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT:
                raise
            problems.extend(cast(list[dict[str, Any]], error.detail))
            requests.append(None)
    results = []
    for i, request in enumerate(requests):
        if gone.is_set():
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the client has gone")
        if request is None:
            continue
        try:
            results.append(score(model, request))
        except ContractError as error:
            problems.extend(contract_problems(error, ("body", "leads", i)))
    if problems:
        raise refuse(problems)
    return BatchOut(results=results)


def _batch_answer(
    model: LoadedModel,
    body: bytes,
    limits: LimitsConfig,
    batch_limit: int,
    gone: threading.Event,
) -> tuple[bytes, list[str]]:
    """The batch's JSON answer and its tiers (for the metrics)."""
    out = _score_batch_body(model, body, limits, batch_limit, gone)
    # one answer per call, so that no single call holds the GIL for the whole batch
    answers = b",".join(result.model_dump_json().encode() for result in out.results)
    return b'{"results":[' + answers + b"]}", [result.tier for result in out.results]


async def _watch_disconnect(request: Request, gone: threading.Event) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _in_pool(request: Request, job: Callable[..., T], takes_gone: bool = False) -> T:
    """`job` in the scoring threads, unless the request waited past its deadline or the
    client left meanwhile: then nothing is computed. With `takes_gone`, the job is given the
    event set when the client leaves, to stop early."""
    state = request.app.state
    limits: LimitsConfig = state.limits
    pressure: Pressure = state.pressure
    if pressure.waiting >= limits.scoring_threads:  # a job already waits for each thread
        pressure.note_shed("pool")
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"overloaded ({pressure.waiting} requests wait for a scoring thread): retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    deadline = request.scope.get(ARRIVED, time.monotonic()) + limits.deadline_seconds
    gone = threading.Event()

    claimed = threading.Lock()

    def stop_waiting() -> None:
        """Once, by whichever comes first: the job starting, or the request ending unstarted."""
        if claimed.acquire(blocking=False):
            pressure.add_waiting(-1)

    def guarded() -> T:
        stop_waiting()
        if gone.is_set():
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the client has gone")
        if time.monotonic() > deadline:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"waited over {limits.deadline_seconds:g} s for a scoring thread",
                headers={"Retry-After": "1"},
            )
        return job(gone) if takes_gone else job()

    watcher = asyncio.create_task(_watch_disconnect(request, gone))
    pressure.add_waiting(1)
    try:
        return await asyncio.get_running_loop().run_in_executor(state.pool, guarded)
    finally:
        watcher.cancel()
        stop_waiting()
