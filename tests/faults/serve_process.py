"""`leadscore serve` as a real process for the fault tests: started, watched, always stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    env: Mapping[str, str],
    port: int,
    log: Path,
    args: Sequence[str] = (),
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `leadscore serve` on `port` (with more `args`, in `cwd`), its output to `log`;
    stopped (SIGTERM) on exit."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "leadscore"), "serve", "--port", str(port), *args],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_for_answer(
    url: str, process: subprocess.Popen[bytes], seconds: float
) -> tuple[int, str] | None:
    """The first HTTP answer (status, body); None if the process exited first.

    Raises AssertionError when neither happens within `seconds`: a hang.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer and the server did not exit in {seconds} s")
