"""The local rtpengine starts on free ports, answers ng, and is gone after the block."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deploy.rtpengine import running_rtpengine

pytestmark = pytest.mark.integration


def ping(port: int) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.5)
        probe.sendto(b"t1 d7:command4:pinge", ("127.0.0.1", port))
        try:
            return probe.recv(256)
        except OSError:
            return None


def test_two_daemons_run_side_by_side_and_stop_on_exit(tmp_path: Path) -> None:
    with running_rtpengine(tmp_path) as one, running_rtpengine(tmp_path) as two:
        assert one.instance.port != two.instance.port
        assert ping(one.instance.port) == ping(two.instance.port) == b"t1 d6:result4:ponge"
        assert one.log.exists()
    assert ping(one.instance.port) is None
