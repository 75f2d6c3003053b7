"""What the core does without a transaction (`core.py`): stray responses, bad input, timers."""

from __future__ import annotations

import logging

import pytest

from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    TCP_IN,
    Run,
    invite,
    run,
    statuses,
)

__all__ = ["run"]  # the fixture, shared with test_core


def stray_2xx(top_via: str) -> bytes:
    """A 200 no transaction waits for (its INVITE's ended), with `top_via` on top."""
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: {top_via};branch=z9hG4bKcmgone\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKc9;received=198.51.100.20;rport=5070\r\n"
        "From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\n"
        "Call-ID: gone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    "top_via",
    [
        f"SIP/2.0/UDP {EDGE}:5080",  # our address, another port
        f"SIP/2.0/TLS {EDGE}",  # TLS's default port 5061: we have no TLS socket
    ],
)
def test_a_stray_response_whose_top_via_is_not_ours_is_dropped(run: Run, top_via: str) -> None:
    assert len(run.send(stray_2xx(f"SIP/2.0/UDP {EDGE}:5060"), GW1)) == 1  # the control
    assert run.send(stray_2xx(top_via), GW1) == []


def test_a_response_with_a_malformed_via_is_dropped_without_an_answer(run: Run) -> None:
    data = stray_2xx(f"SIP/2.0/UDP {EDGE}:5060").replace(b"SIP/2.0/UDP 192", b"SIP/2.0/UDP [192")
    assert run.send(data, GW1) == []
    assert statuses(run.send(invite())) == [100]  # and the proxy goes on


def test_a_junk_flood_is_dropped_each_time_but_logged_once_per_ten_seconds(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    junk = b"SIP/2.0 200 OK\r\n\x00garbage"  # a response: nothing to answer
    caplog.set_level(logging.INFO)
    for _ in range(500):
        assert run.send(junk, GW1) == []
    lines = [r.getMessage() for r in caplog.records if "dropped unanswerable" in r.getMessage()]
    assert len(lines) == 1 and "(0 more dropped" in lines[0]
    run.now += 10.0
    assert run.send(junk, GW1) == []
    lines = [r.getMessage() for r in caplog.records if "dropped unanswerable" in r.getMessage()]
    assert len(lines) == 2 and "(499 more dropped since the last such line)" in lines[1]


def test_a_request_over_tcp_without_content_length_is_400(run: Run) -> None:
    """RFC 3261 §18.3: on a stream the Content-Length is mandatory (UDP: the datagram ends it)."""
    caller = Destination("tcp", CALLER.host, CALLER.port, connection_id=3)
    bare = invite().replace(b"SIP/2.0/UDP 10.0.0.5", b"SIP/2.0/TCP 10.0.0.5")
    bare = bare.replace(b"Content-Length: 0\r\n", b"")
    assert statuses(run.send(bare, caller, TCP_IN), caller) == [400]
    assert statuses(run.send(bare.replace(b"TCP", b"UDP"))) == [100]  # the control


def test_the_next_deadline_is_what_the_adapter_sleeps_until(run: Run) -> None:
    assert run.proxy.next_deadline() is None  # nothing pending: sleep until a message comes
    run.send(invite())
    deadline = run.proxy.next_deadline()
    assert deadline is not None and run.now < deadline <= run.now + 2.0  # fr of these tests
