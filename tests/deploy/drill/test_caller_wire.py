"""The drill's caller SIPp gives up on a call that got its 100 Trying and nothing after.

The VIP step's calls' SIPp outlived its -timeout (stopped, the row in bold): one call
had sent its INVITE to the box being killed, whose edge answered 100 Trying and died
before the INVITE left.  A 1xx stops the INVITE's retransmissions, and the scenario's
optional 100/180 waits had no timeout of their own, so that call waited for ever; at
its -timeout SIPp only waits for its calls to end.  Here the edge is this test's
socket: it answers the INVITE 100 and nothing more.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from deploy.drill.load import Entry, outcome, place_calls
from deploy.drill.measure import ended_by
from deploy.labs.ports import LOOPBACK, free_port
from deploy.processes import stop_process

pytestmark = [pytest.mark.wire]


def trying(invite: bytes) -> bytes:
    """The 100 Trying to `invite`, its Via, From, To, Call-ID and CSeq echoed."""
    lines = invite.decode().split("\r\n")
    echoed = [line for line in lines if line.split(":")[0] in ("Via", "From", "To", "Call-ID")]
    echoed += [line for line in lines if line.startswith("CSeq:")]
    return ("\r\n".join(["SIP/2.0 100 Trying", *echoed]) + "\r\nContent-Length: 0\r\n\r\n").encode()


def test_a_call_trying_and_then_silent_fails_and_the_caller_exits(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as edge:
        edge.bind((LOOPBACK, free_port()))
        edge.settimeout(10.0)
        log = tmp_path / "calls.log"
        process = place_calls(log, Entry(LOOPBACK, edge.getsockname()[1]), 1, 1, 1000)
        try:
            invite, caller = edge.recvfrom(65535)
            assert invite.startswith(b"INVITE ")
            edge.sendto(trying(invite), caller)
            assert ended_by(process, time.monotonic() + 30.0)  # not its -timeout's 62 s, nor ever
        finally:
            stop_process(process)
    calls = outcome(log, "up")
    assert len(calls.placed) == 1 and calls.failed == list(calls.placed)
