"""``python -m services`` (what ``make run`` starts): no broker, no Redis, everything up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port


def _options(port: int, transport: str = "UDP") -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:9;rport;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:ping@127.0.0.1>;tag=1\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def all_in_one(tmp_path: Path) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    with running_all_in_one(tmp_path) as running:
        yield running


@contextmanager
def running_all_in_one(
    tmp_path: Path, *, listen: str = "", **settings: str
) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """`python -m services` on fresh ports with no CALLMESH_* setting but its ports and data
    directory, `listen` (more SIP listeners, as in CALLMESH_SIP_LISTEN) and `settings`."""
    sip, http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMESH_")}
    env |= {
        "CALLMESH_SIP_LISTEN": f"udp:127.0.0.1:{sip},tcp:127.0.0.1:{sip}" + listen,
        "CALLMESH_HTTP_LISTEN": f"127.0.0.1:{http}",
        "CALLMESH_DATA_DIR": str(tmp_path),
    }
    env |= {f"CALLMESH_{name.upper()}": value for name, value in settings.items()}
    process = subprocess.Popen(
        [sys.executable, "-m", "services"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{http}/livez", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the all-in-one did not come up"
        time.sleep(0.2)
    try:
        yield sip, http, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_api_and_sip_come_up_without_broker_or_redis(
    all_in_one: tuple[int, int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    sip, http, process = all_in_one
    assert httpx.get(f"http://127.0.0.1:{http}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"http://127.0.0.1:{http}/openapi.json").status_code == 200
    cdrs = httpx.get(f"http://127.0.0.1:{http}/v1/cdrs")
    assert cdrs.json() == {"items": [], "next_cursor": None}
    assert (tmp_path / "accounting.sqlite3").is_file(), "call records in SQLite under the data dir"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(_options(sip), ("127.0.0.1", sip))
        answer = udp.recv(65535)
    assert answer.startswith(b"SIP/2.0 200 ")

    with socket.create_connection(("127.0.0.1", sip), timeout=5) as tcp:
        tcp.sendall(_options(sip, "TCP"))
        answer = tcp.recv(65535)
    assert answer.startswith(b"SIP/2.0 200 ")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    output = process.stdout.read().decode() if process.stdout else ""
    assert '"msg":"stopped"' in output
    assert "Traceback" not in output
