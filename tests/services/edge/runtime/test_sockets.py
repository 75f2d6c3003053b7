from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.edge.runtime.sockets import EdgeSockets, top_via_names_port
from shared.settings import ListenAddress
from shared.sip.transport.base import BindError
from tests.services.edge.support import free_port

RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:40001;branch=z9hG4bKa\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKb\r\n"
    b"Call-ID: x\r\n\r\n"
)


def test_the_top_via_names_a_port_or_not() -> None:
    assert top_via_names_port(RESPONSE, 40001)
    assert not top_via_names_port(RESPONSE, 5060)  # the second Via does not count
    assert top_via_names_port(RESPONSE.replace(b";branch=z9hG4bKa", b""), 40001)
    assert top_via_names_port(RESPONSE.replace(b"\nVia:", b"\nv:"), 40001)


def test_an_unreadable_via_counts_as_ours() -> None:
    assert top_via_names_port(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", 40001)


async def test_a_port_in_use_is_named_in_the_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        sockets = EdgeSockets(lambda *_: None)
        with pytest.raises(BindError) as caught:
            await sockets.open([ListenAddress("udp", "127.0.0.1", port)], shared=True)
    assert str(caught.value) == f"udp:127.0.0.1:{port}: address already in use"


def test_the_process_stops_with_one_line_naming_the_socket(tmp_path: Path) -> None:
    """It once said `[Errno 98] Address already in use`, not which socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(
            os.environ,
            CALLMESH_SIP_LISTEN=f"tcp:127.0.0.1:{port}",
            CALLMESH_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
            CALLMESH_DATA_DIR=str(tmp_path),
        )
        env.pop("CALLMESH_RABBITMQ_URL", None)
        env.pop("CALLMESH_REDIS_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "services"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    errors = [json.loads(line) for line in done.stdout.splitlines() if '"error"' in line]
    assert [(e["msg"], e["error"]) for e in errors] == [
        ("cannot start", f"tcp:127.0.0.1:{port}: address already in use")
    ]
    assert "Traceback" not in done.stdout + done.stderr
