"""Hostile bytes into a B2BUA call at each step: only SIP comes out, never an exception.

The caller's INVITE, the gateway's answer and in-dialog requests from both sides, each
mutated (line breaks, NULs, bad UTF-8, separators spliced into the head), go through
`B2bua.receive`; whatever the engine sends must parse again, and nothing but the engine's
own answers may escape it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.edge.b2bua.engine import Action, Originate, PairTarget
from shared.sip.message import parse_message
from shared.sip.transaction import Send
from tests.examples import examples
from tests.services.edge.b2bua.support import GATEWAY, SDP_A, SDP_B, Call, answer, caller_invite

PIECES = [b"\r", b"\n", b"\r\n", b"\r\n ", b"\x00", b"\xff", b" ", b"\\", b"%"]
PIECES += [bytes([c]) for c in b'";,<>:[]=']
HOSTILE = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map(b"".join)
STEPS = ("invite", "answer", "bye_a", "reinvite_b", "info_a", "ack_a")


def _seed(call: Call, step: str) -> tuple[bytes, bool]:
    """The bytes of `step` in `call` (set up as far as it needs), and whether the caller sends."""
    if step == "invite":
        return caller_invite(), True
    if step == "answer":
        call.invite()
        assert call.invite_b is not None
        ok = answer(call.invite_b, 200, tag="gw", contact="<sip:gw@203.0.113.5>", body=SDP_B)
        return ok, False
    caller, gateway = call.answered()
    if step == "reinvite_b":
        return gateway.request("INVITE", SDP_B), False
    if step == "info_a":
        return caller.request("INFO", extra=(("Info-Package", "dtmf"),)), True
    if step == "ack_a":
        return caller.request("ACK", SDP_A, cseq=10), True
    return caller.request("BYE"), True


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(STEPS),
    st.lists(st.tuples(st.integers(0, 2**16), HOSTILE), min_size=1, max_size=3),
)
def test_mutated_messages_get_only_parseable_messages_out(
    step: str, insertions: list[tuple[int, bytes]]
) -> None:
    call = Call()
    seed, from_caller = _seed(call, step)
    head_end = seed.index(b"\r\n\r\n")
    data = bytearray(seed)
    for position, payload in insertions:
        at = position % head_end
        data[at:at] = payload
    actions = call.from_a(bytes(data)) if from_caller else call.from_b(bytes(data))
    _check(actions)
    for action in actions:
        if isinstance(action, Originate):
            target = PairTarget("sip:+15550100@gw.example", GATEWAY)
            _check(call.engine.originate(action.pair_id, target, 0.0))


def _check(actions: list[Action]) -> None:
    for action in actions:
        if isinstance(action, Send):
            parse_message(action.data)
