"""The runner waits for a proxy's readiness URL, when it names one, before offering calls."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.proxy.errors import BenchError
from bench.proxy.proxy import _wait_ready
from bench.proxy.routing import LOOPBACK


@contextmanager
def readiness(not_ready: int) -> Iterator[tuple[str, list[int]]]:
    """A ``/readyz`` answering 503 `not_ready` times, then 200: its URL and the statuses sent."""
    sent: list[int] = []

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 503 if len(sent) < not_ready else 200
            sent.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/readyz", sent
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def process() -> Iterator[subprocess.Popen[bytes]]:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield running
    running.kill()
    running.wait()


def test_the_runner_waits_until_the_proxy_says_ready(
    process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    with readiness(not_ready=3) as (url, sent):
        _wait_ready(process, "edge", url, tmp_path / "edge.log", time.monotonic() + 10)
    assert sent == [503, 503, 503, 200]


def test_a_proxy_never_ready_is_a_clear_error(
    process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    with readiness(not_ready=10**6) as (url, _), pytest.raises(BenchError, match="did not answer"):
        _wait_ready(process, "edge", url, tmp_path / "edge.log", time.monotonic() + 0.5)


def test_a_proxy_that_exits_while_starting_says_so(tmp_path: Path) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait()
    (tmp_path / "edge.log").write_text("boom\n")
    with pytest.raises(BenchError, match="exited with 3"):
        _wait_ready(exited, "edge", "http://127.0.0.1:9/readyz", tmp_path / "edge.log", 1e12)
