"""Hostile bytes through the whole parse → route → forward path: only SIP answers come out.

An attacker found a request the parser took whose Via could not be
written back (a bare CR in a parameter): a `ValueError` escaped `receive`, no
answer went out and the log got a traceback.  Here mutated requests go through
`Proxy.receive` and every message it sends must itself parse again.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.edge.proxy.actions import Send
from shared.sip.message import parse_message
from tests.examples import examples
from tests.services.edge.proxy.test_core import CALLER, EDGE, GW1, core_run, invite

BYE = (
    f"BYE sip:gw@{GW1.host} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKb1;rport\r\n"
    f"Route: <sip:{EDGE}:5060;lr>, <sip:{GW1.host};lr>\r\n"
    "From: <sip:alice@example.com>;tag=a1\r\n"
    "To: <sip:14075551234@example.com>;tag=gw\r\n"
    "Call-ID: call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
).encode()
SEEDS = [invite(), invite(extra="Record-Route: <sip:10.0.0.9;lr>\r\n"), BYE]
PIECES = [b"\r", b"\n", b"\r\n", b"\r\n ", b"\x00", b"\xff", b" ", b"\\", b"%"]
PIECES += [bytes([c]) for c in b'";,<>:[]=']
HOSTILE = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map(b"".join)


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 2**16), HOSTILE), min_size=1, max_size=3),
)
def test_mutated_requests_get_only_parseable_messages_out(
    seed: bytes, insertions: list[tuple[int, bytes]]
) -> None:
    head_end = seed.index(b"\r\n\r\n")
    data = bytearray(seed)
    for position, payload in insertions:
        at = position % head_end
        data[at:at] = payload
    run = core_run()
    for action in run.send(bytes(data), CALLER):  # nothing but SipError is handled inside
        if isinstance(action, Send):
            parse_message(action.data)
