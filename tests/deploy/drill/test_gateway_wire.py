"""The drill's SIPp gateway: what it did not expect is counted from its own error file.

A real gateway (``deploy.drill.load.start_gateway``) gets, over UDP from this test: an
INVITE, the same INVITE resent with a new branch after the 200 (as an edge that lost the
transaction sends it), the ACK, the BYE, the BYE again after its 200 (answered again, as a
UAS's BYE transaction does until Timer J: the 200 may have died with the edge relaying it) and
a BYE for a call it never knew (not answered); then a call whose BYE comes before its ACK
(answered, as a UAS does) and the ACK late.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.drill.load import start_gateway, unexpected_at_gateway
from deploy.labs.ports import LOOPBACK
from deploy.processes import stop_process

pytestmark = [pytest.mark.wire]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    process, port = start_gateway(tmp_path, LOOPBACK)
    yield port, tmp_path / "gateway.err"
    stop_process(process)


def request(method: str, call_id: str, branch: str, ports: tuple[int, int]) -> bytes:
    """`method` from the test's port to the gateway's (`ports`: the gateway's, the test's)."""
    port, own = ports
    to_tag = "" if method == "INVITE" else ";tag=g1"
    cseq = 2 if method == "BYE" else 1
    return (
        f"{method} sip:15550100@{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{own};branch=z9hG4bK{branch}\r\n"
        f"From: <sip:edge@{LOOPBACK}>;tag=e1\r\nTo: <sip:15550100@{LOOPBACK}>{to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {'ACK' if method == 'ACK' else method}\r\n"
        f"Contact: <sip:edge@{LOOPBACK}:{own}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answer(sock: socket.socket, method: str) -> None:
    """Until a 200 to `method` arrives (the gateway's 180 comes before its 200 to an INVITE,
    which it resends until the ACK)."""
    while True:
        data = sock.recv(65535)
        if data.startswith(b"SIP/2.0 200 ") and f" {method}\r\n".encode() in data:
            return


def test_retransmissions_the_gateway_ignores_are_counted_by_kind(
    gateway: tuple[int, Path],
) -> None:
    port, errors = gateway
    since = errors.stat().st_size if errors.exists() else 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(5.0)
        ports = port, sock.getsockname()[1]
        to = (LOOPBACK, port)
        sock.sendto(request("INVITE", "c1", "inv1", ports), to)
        answer(sock, "INVITE")
        sock.sendto(request("INVITE", "c1", "inv2", ports), to)  # a new branch
        sock.sendto(request("ACK", "c1", "ack1", ports), to)
        sock.sendto(request("BYE", "c1", "bye1", ports), to)
        answer(sock, "BYE")
        sock.sendto(request("BYE", "c1", "bye1", ports), to)  # resent
        answer(sock, "BYE")  # its 200 again
        sock.sendto(request("BYE", "c2", "bye2", ports), to)  # no such call
        sock.sendto(request("INVITE", "c3", "inv3", ports), to)
        answer(sock, "INVITE")
        sock.sendto(request("BYE", "c3", "bye3", ports), to)  # its ACK lost on the way
        answer(sock, "BYE")  # answered all the same, as a UAS does
        sock.sendto(request("ACK", "c3", "ack3", ports), to)  # the ACK, late
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            answer(sock, "BYE")  # the BYE of no call is not answered
    seen = unexpected_at_gateway(errors, since)
    assert seen == {"INVITE": 1, "BYE": 1, "ACK": 1}
    assert unexpected_at_gateway(errors, errors.stat().st_size) == {}
    assert unexpected_at_gateway(errors.with_name("none.err"), 0) == {}
