"""What keeps the scoring API standing: request bodies read within limits, JSON read without
letting a value through that cannot be answered, errors that carry no personal data, and
load shed before it queues.

- `GuardMiddleware` reads a POST body before the app sees it: too large (declared or counted
  while reading) is a 413 before any parsing, too slow a 408; scoring requests beyond
  `max_in_flight`, or while the event loop runs `max_queue_seconds` behind (`LoopLag`), get a
  503 with Retry-After at once.
- `Pressure.overloaded` also sheds while the queued requests would take more than
  `max_queued_work_seconds` to score on the event loop, at the time one took lately: the
  bound on the loop's queue is then a time, whatever the machine's speed, so that a health
  check waits at most that long behind them.
- `parse_body` reads JSON: unparseable is a 400; NaN, Infinity and unpaired surrogates are
  422s naming their field, before any model sees them.
- `problems_of` turns pydantic's errors into the 422 detail without the input values, and
  `scrub` masks e-mail addresses and truncates anything else echoed.
- `GuardedHttpToolsProtocol` is uvicorn's httptools protocol with a header read timeout and a
  header size limit (uvicorn has neither for httptools).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, TypeVar

import httptools
from fastapi import HTTPException, status
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common.config import LimitsConfig
from serving.schemas import MAX_CUSTOM_FIELDS, MAX_CUSTOM_NAME_CHARS

M = TypeVar("M", bound=BaseModel)
#: Where `GuardMiddleware` notes when the request arrived (time.monotonic()).
ARRIVED: Final = "leadscore.arrived"
BATCH_PATH: Final = "/v1/score/batch"
SCORING_PATHS: Final = frozenset({"/v1/score", BATCH_PATH})
RETRY_AFTER_SECONDS: Final = 1
SHOWN_CHARS: Final = 60
_EMAIL: Final = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+")


def scrub(text: str, limit: int = 300) -> str:
    """Text fit to echo: e-mail addresses masked, unpaired surrogates escaped, truncated."""
    safe = _EMAIL.sub("<email>", text)
    if not safe.isascii():
        safe = safe.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def _loc_part(part: Any) -> str | int:
    return part if isinstance(part, int) else scrub(str(part), SHOWN_CHARS)


def problem(loc: tuple[Any, ...], msg: str, kind: str) -> dict[str, Any]:
    """One entry of a 422 detail, FastAPI's shape without the input value."""
    return {"loc": [_loc_part(p) for p in loc], "msg": scrub(msg), "type": kind}


def refuse(problems: list[dict[str, Any]]) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems)


# --------------------------------------------------------------------------- reading JSON


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _walk(value: Any, loc: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    """Values JSON may carry but no answer can: non-finite numbers and unpaired surrogates."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                yield problem(where, "text holds an unpaired surrogate", "string_unicode")
        elif isinstance(item, float):
            if not math.isfinite(item):
                yield problem(where, "a number must be finite, not NaN or Infinity", "finite")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if _has_surrogate(key):
                    yield problem(where, "a key holds an unpaired surrogate", "string_unicode")
                stack.append((inner, (*where, key)))
        elif isinstance(item, list):
            stack.extend((inner, (*where, i)) for i, inner in enumerate(item))


def parse_body(body: bytes) -> Any:
    """The JSON body; 400 when it is not JSON, 422 naming each non-finite number or unpaired
    surrogate (which no answer could echo and no model could use)."""
    data, found = parse_json(body)
    if found:
        raise refuse(found)
    return data


_DECODER: Final = json.JSONDecoder()
_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _skip(text: str, at: int) -> int:
    found = _SPACE.match(text, at)
    return at if found is None else found.end()


def _loads_in_steps(text: str) -> Any:
    """`json.loads(text)`, a top-level object's `leads` array decoded one element per call.

    json.loads holds the GIL for the whole text: megabytes of batch would stop the event loop
    (and /healthz) for as long. Decoded a lead at a time, other threads run in between.
    """
    at = _skip(text, 0)
    if not text.startswith("{", at):
        return json.loads(text)
    out: dict[str, Any] = {}
    at = _skip(text, at + 1)
    if text.startswith("}", at):
        end = at + 1
    else:
        while True:
            if not text.startswith('"', at):
                raise json.JSONDecodeError("Expecting property name enclosed in quotes", text, at)
            key, at = _DECODER.raw_decode(text, at)
            at = _skip(text, at)
            if not text.startswith(":", at):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
            at = _skip(text, at + 1)
            if key == "leads" and text.startswith("[", at):
                out[key], at = _array_in_steps(text, at + 1)
            else:
                out[key], at = _DECODER.raw_decode(text, at)
            at = _skip(text, at)
            if text.startswith(",", at):
                at = _skip(text, at + 1)
                continue
            if text.startswith("}", at):
                end = at + 1
                break
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
    if _skip(text, end) != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return out


def _array_in_steps(text: str, at: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    at = _skip(text, at)
    if text.startswith("]", at):
        return items, at + 1
    while True:
        item, at = _DECODER.raw_decode(text, at)
        items.append(item)
        at = _skip(text, at)
        if text.startswith(",", at):
            at = _skip(text, at + 1)
        elif text.startswith("]", at):
            return items, at + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)


def parse_json(body: bytes) -> tuple[Any, list[dict[str, Any]]]:
    """The JSON body (400 when it is not JSON) and the 422 problems of its values: each
    non-finite number and unpaired surrogate, located."""
    if not body.strip():
        raise refuse([problem(("body",), "a JSON body is required", "missing")])
    try:
        data = _loads_in_steps(body.decode("utf-8")) if len(body) > 65536 else json.loads(body)
    except json.JSONDecodeError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"the body is not JSON: {error.msg} (line {error.lineno}, column {error.colno})",
        ) from None
    except (UnicodeDecodeError, RecursionError) as error:
        reason = "not UTF-8" if isinstance(error, UnicodeDecodeError) else "nested too deeply"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body is {reason}") from None
    if b"\\u" not in body and b"NaN" not in body and b"Infinity" not in body:
        return data, []  # a lone surrogate needs a \u escape; a non-finite number its token
    return data, list(_walk(data, ("body",)))


def problems_of(error: ValidationError, loc: tuple[Any, ...]) -> list[dict[str, Any]]:
    """pydantic's errors as 422 entries under `loc`, without the input values."""
    return [
        problem((*loc, *e["loc"]), e["msg"], e["type"])
        for e in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def unknown_field_problems(
    lead: dict[str, Any], known: frozenset[str], loc: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """Custom (unknown) lead fields: a bounded number with short names (their values are
    checked by `LeadIn`)."""
    unknown = [k for k in lead if k not in known]
    if len(unknown) > MAX_CUSTOM_FIELDS:
        msg = f"{len(unknown)} custom fields, more than {MAX_CUSTOM_FIELDS}"
        return [problem(loc, msg, "too_many_fields")]
    return [
        problem((*loc, k), f"a name longer than {MAX_CUSTOM_NAME_CHARS} characters", "too_long")
        for k in unknown
        if len(k) > MAX_CUSTOM_NAME_CHARS
    ]


def read_model(
    kind: type[M], data: Any, loc: tuple[Any, ...]
) -> tuple[M | None, list[dict[str, Any]]]:
    """`kind` validated from `data`, or the problems under `loc`."""
    try:
        return kind.model_validate(data), []
    except ValidationError as error:
        return None, problems_of(error, loc)


# --------------------------------------------------------------------------- overload


class LoopLag:
    """How far the event loop runs behind: a tick due every `every` seconds notes how late
    it ran; between ticks, a tick overdue is lag already."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.lag = 0.0
        self.due = time.monotonic()
        self.running = False

    def current(self) -> float:
        """Seconds behind now; 0 while the tick is not running (no lifespan: nothing known)."""
        if not self.running:
            return 0.0
        return max(self.lag, time.monotonic() - self.due)

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                self.due = time.monotonic() + self.every
                await asyncio.sleep(self.every)
                self.lag = max(0.0, time.monotonic() - self.due)
        finally:
            self.running = False


class Pressure:
    """What the overload guards share: scoring requests inside the app, those waiting for a
    scoring thread, the event loop's lag, and the requests shed so far."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.lag = LoopLag()
        self.in_flight = 0
        self.waiting = 0
        #: requests answered 503 so far, by where they were shed: "head" (from the request
        #: head, before a task), "app" (in the middleware) and "pool" (waiting for a thread)
        self.shed: dict[str, int] = {"head": 0, "app": 0, "pool": 0}
        #: CPU seconds one lead takes to score on the event loop, a moving average (0: none yet)
        self.inline_seconds = 0.0
        self._lock = threading.Lock()

    def note_inline(self, seconds: float) -> None:
        """Note the CPU seconds a lead took to score on the event loop (a moving average of
        1/16)."""
        self.inline_seconds += (seconds - self.inline_seconds) / 16

    def note_shed(self, where: str) -> None:
        """Count one request shed at `where` (for /metrics)."""
        self.shed[where] += 1

    def add_waiting(self, change: int) -> None:
        """Jobs waiting for a scoring thread (changed from the loop and from the threads)."""
        with self._lock:
            self.waiting += change

    def overloaded(self, queued: int = 0) -> str | None:
        """Why a new scoring request must be shed now (None: take it). `queued`: requests the
        server has accepted and not yet answered (uvicorn's tasks)."""
        limits = self.limits
        if self.in_flight >= limits.max_in_flight:
            return f"{self.in_flight} requests in flight"
        if queued >= limits.max_queued:
            return f"{queued} requests queued"
        if queued and queued * self.inline_seconds > limits.max_queued_work_seconds:
            return f"{queued} requests queued, about {queued * self.inline_seconds:.3f} s of work"
        behind = self.lag.current()
        if behind > limits.max_queue_seconds:
            return f"the server runs {behind:.2f} s behind"
        return None


def shed_body(why: str) -> bytes:
    return json.dumps({"detail": f"overloaded ({why}): retry later"}).encode()


async def _answer(
    send: Send, code: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": code, "headers": head})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Limits before work, for POST requests (GETs pass straight through: health, model,
    metrics and docs are cheap and must stay answered)."""

    def __init__(self, app: ASGIApp, pressure: Pressure) -> None:
        self.app = app
        self.limits = pressure.limits
        self.pressure = pressure

    def _limit(self, path: str) -> int:
        limits = self.limits
        return limits.max_batch_bytes if path == BATCH_PATH else limits.max_lead_bytes

    def _declared(self, scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        arrived = scope.get(ARRIVED, now)  # when its head was read, under uvicorn
        path: str = scope["path"]
        limits = self.limits
        pressure = self.pressure
        waited = now - arrived
        why = pressure.overloaded()
        if why is None and waited > limits.max_queue_seconds:
            why = f"it waited {waited:.2f} s in the server's queue"
        if path in SCORING_PATHS and why is not None:
            pressure.note_shed("app")
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            await _answer(send, 503, f"overloaded ({why}): retry later", retry)
            return
        limit = self._limit(path)
        close = [(b"connection", b"close")]
        declared = self._declared(scope)
        if declared is not None and declared > limit:
            detail = f"the body of {declared:,} bytes is over the limit of {limit:,} bytes"
            await _answer(send, 413, detail, close)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(limits.body_timeout_seconds):
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        detail = f"the body is over the limit of {limit:,} bytes"
                        await _answer(send, 413, detail, close)
                        return
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            detail = f"the body took longer than {limits.body_timeout_seconds:g} s to arrive"
            await _answer(send, 408, detail, close)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope[ARRIVED] = arrived
        pressure.in_flight += 1
        try:
            await self.app(scope, replay, send)
        finally:
            pressure.in_flight -= 1


# --------------------------------------------------------------------------- uvicorn


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request head that must arrive in time and within
    a size: a slow or huge head is answered 408 or 431 and the connection closed.

    With a `pressure`, a scoring request that arrives while the server is overloaded gets its
    503 with Retry-After right here, from the parsed head, before any task is made for it: the
    cheapest answer there is, so that shedding still keeps up when scoring has the CPU.

    Limits come from the class attributes, set by `guarded_protocol`.
    """

    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 16 << 10
    pressure: Pressure | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._shedding = False
        self._start_head_timer()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.header_timeout_seconds, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse_head(self, code: int, reason: bytes) -> None:
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        content = reason + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (code, reason, len(content), content)
        )
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse_head(408, b"Request Timeout")

    def _count_head(self, part: bytes) -> None:
        self._head_bytes += len(part)
        if self._head_bytes > self.max_header_bytes:
            self._head_too_large = True
            raise ValueError("request head too large")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._start_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(name)
        self._count_head(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        pressure = self.pressure
        if (
            pressure is not None
            and (self.cycle is None or self.cycle.response_complete)  # no pipelined answer due
            and self.url.split(b"?", 1)[0].decode("latin-1") in SCORING_PATHS
            and self.parser.get_method() == b"POST"
            and (why := pressure.overloaded(len(self.tasks))) is not None
        ):
            pressure.note_shed("head")
            self._shedding = True
            body = shed_body(why)
            self.transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: %d\r\ncontent-length: %d\r\n\r\n%s"
                % (RETRY_AFTER_SECONDS, len(body), body)
            )
            if not self.parser.should_keep_alive():
                self.transport.close()
            return
        self.scope[ARRIVED] = time.monotonic()  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._shedding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._shedding:
            self._shedding = False  # the request was answered; its body is dropped
            return
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._head_too_large:
                self._refuse_head(431, b"Request Header Fields Too Large")
            else:
                self.send_400_response("Invalid HTTP request received.")


def guarded_protocol(
    limits: LimitsConfig, pressure: Pressure | None = None
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` with these limits (and the app's pressure)."""
    return type(
        "LimitedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout_seconds": limits.header_timeout_seconds,
            "max_header_bytes": limits.max_header_bytes,
            "pressure": pressure,
        },
    )


def uvicorn_settings(limits: LimitsConfig, pressure: Pressure | None = None) -> dict[str, Any]:
    """uvicorn.run keywords for these limits (connections, keep-alive, the guarded head and,
    given the app's `pressure`, shedding before a task is made).

    The event loop is asyncio's own, not uvloop: libuv (since 1.45) accepts one new
    connection per loop turn, and a turn that scores a lead inline lasts milliseconds, so a
    burst of new connections waits in the kernel's accept queue for seconds, never seen by
    the shedding above. asyncio accepts up to the backlog per turn, so each new request is
    answered (200 or 503) at once.
    """
    return {
        "loop": "asyncio",
        "http": guarded_protocol(limits, pressure),
        "limit_concurrency": limits.max_connections,
        "timeout_keep_alive": limits.keep_alive_seconds,
    }
