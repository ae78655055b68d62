"""A real `leadscore serve` against slow and oversized clients, load beyond its capacity, and an
e-mail canary posted through every path and looked for in its log and the MLflow store."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.faults.serve_process import free_port, serve_process, wait_for_answer

pytestmark = [pytest.mark.api, pytest.mark.integration, pytest.mark.serial]

SECRET = "canary.process@example.net"
LEAD = {
    "lead": {
        "lead_id": "p1",
        "created_at": "2026-05-01T00:00:00Z",
        "company_size": "51-200",
        "email": SECRET,
    },
    "events": [{"event_type": "demo_request", "occurred_at": "2026-05-11T10:00:00Z"}],
    "as_of": "2026-05-12T00:00:00Z",
}
LIMITS = {
    "HEADER_TIMEOUT_SECONDS": "1",
    "BODY_TIMEOUT_SECONDS": "1",
    "MAX_HEADER_BYTES": "4096",
    "MAX_LEAD_BYTES": "65536",
    "SCORING_THREADS": "1",
    "MAX_IN_FLIGHT": "2",
}


@pytest.fixture(scope="module")
def guarded(registry: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The server with short timeouts, small heads and two requests in flight at most."""
    port = free_port()
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    env = {
        **os.environ,
        "LEADSCORE__MLFLOW__TRACKING_URI": registry["tracking"],
        "LEADSCORE_API_KEYS": "score-key",
        "LEADSCORE_ADMIN_KEYS": "admin-key",
        **{f"LEADSCORE__SERVE__LIMITS__{k}": v for k, v in LIMITS.items()},
    }
    with serve_process(env, port, log) as process:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            answer = wait_for_answer(f"{base}/readyz", process, 120)
            assert answer is not None, log.read_text()
            if answer[0] == 200:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield {"base": base, "port": port, "log": log, "process": process}


def _post(
    url: str, body: bytes, key: str | None = "score-key", timeout: float = 60
) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def _raw_exchange(port: int, parts: list[bytes], pause: float = 0.0) -> bytes:
    """Send `parts` on one connection (pausing after the last) and read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        for part in parts:
            sock.sendall(part)
        time.sleep(pause)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_slow_head_is_cut_off_with_408(guarded: dict[str, Any]) -> None:
    started = time.monotonic()
    answer = _raw_exchange(guarded["port"], [b"POST /v1/score HTTP/1.1\r\nHost: x\r\n"])
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 14  # closed by the server, not by our read timeout
    assert _raw_exchange(guarded["port"], []).startswith(b"HTTP/1.1 408")  # silent connection


def test_a_huge_head_is_refused_with_431(guarded: dict[str, Any]) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 100_000 + b"\r\n\r\n"
    answer = _raw_exchange(guarded["port"], [head])
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_slow_body_is_cut_off_with_408(guarded: dict[str, Any]) -> None:
    head = (
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: score-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    answer = _raw_exchange(guarded["port"], [head, b'{"lead": '])
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_load_beyond_capacity_is_shed_with_503_and_health_answers(guarded: dict[str, Any]) -> None:
    """Batches fill the one scoring thread and the two slots in flight: the rest get a 503 with
    Retry-After, never a hang; /healthz keeps answering meanwhile."""
    base = guarded["base"]
    batch = json.dumps({"leads": [LEAD] * 200}).encode()
    stop = threading.Event()
    health: list[int] = []

    def probe() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
                    health.append(response.status)
            except OSError:
                health.append(-1)  # no answer within 10 s
            time.sleep(0.05)

    shed_before = _shed_counts(base)
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _post(f"{base}/v1/score/batch", batch), range(16)))
    finally:
        stop.set()
        prober.join(timeout=30)
    codes = [code for code, _, _ in answers]
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, codes
    assert all(h.get("retry-after") == "1" for code, h, _ in answers if code == 503)
    assert health and set(health) == {200}
    # every 503 is counted in /metrics, those shed from the request head included
    shed = _shed_counts(base)
    assert set(shed) == {"head", "app", "pool"}, shed
    assert sum(shed.values()) - sum(shed_before.values()) == codes.count(503), (shed, codes)


def _shed_counts(base: str) -> dict[str, float]:
    """leadscore_shed_total by stage, from /metrics (read with the scoring key)."""
    request = urllib.request.Request(f"{base}/metrics", headers={"X-API-Key": "score-key"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("leadscore_shed_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('stage="')[1].split('"')[0]] = float(value)
    return counts


def test_an_email_posted_everywhere_reaches_no_log_store_or_answer(
    guarded: dict[str, Any], registry: dict[str, str]
) -> None:
    base = guarded["base"]
    lead = json.dumps(LEAD).encode()
    bad = json.dumps({**LEAD, "lead": {**LEAD["lead"], "company_size": SECRET}}).encode()
    nan = lead.replace(b'"51-200"', b"NaN")
    calls = [
        ("/v1/score", lead, 200),
        ("/v1/score", bad, 422),
        ("/v1/score", nan, 422),
        ("/v1/score", lead[:-5], 400),
        ("/v1/score/batch", json.dumps({"leads": [LEAD, LEAD]}).encode(), 200),
        ("/v1/score/batch", b'{"leads": [' + lead + b"," + bad + b"]}", 422),
    ]
    for path, body, expected in calls:
        code, _, text = _post(f"{base}{path}", body)
        assert code == expected, (path, code, text[:300])
        assert SECRET not in text, (path, text[:300])
    head = (
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: score-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    too_large = _raw_exchange(guarded["port"], [head, lead])  # refused before it is read
    assert too_large.startswith(b"HTTP/1.1 413") and SECRET.encode() not in too_large
    code, _, text = _post(f"{base}/v1/admin/reload", lead, key="admin-key")
    assert code == 200 and SECRET not in text
    code, _, text = _post(f"{base}/v1/score", lead, key="wrong")
    assert code == 403 and SECRET not in text
    for path in ("/v1/model", "/metrics"):
        request = urllib.request.Request(f"{base}{path}", headers={"X-API-Key": "score-key"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert SECRET.encode() not in response.read()
    time.sleep(0.5)  # let the log flush
    log: Path = guarded["log"]
    assert SECRET not in log.read_text(errors="replace")
    stored = [p for p in Path(registry["root"]).rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if SECRET.encode() in p.read_bytes()]
