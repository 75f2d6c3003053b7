"""A call an edge took and died with before relaying its answer: the edge that gets the 2xx.

The fault drill SIGKILLed an edge while a call was being set up: the INVITE had
left (its `CallStarted` journaled), the gateway's 200 had not been read.  The
gateway retransmits its 200 to the same address, where the restarted edge (or,
behind a VIP, the other box) has no transaction for it and forwards it
statelessly: the caller talks, hangs up through it (`CallEnded`), and without a
`CallAnswered` from anyone the record stayed open, the call unbilled.
"""

from __future__ import annotations

from services.edge.proxy.call_events import UNMATCHED_ANSWERS_PER_SECOND
from services.edge.proxy.dialogs import RecordRouteSigner
from shared.contracts.calls import CallAnswered, CallStarted
from tests.services.edge.proxy.support import published
from tests.services.edge.proxy.test_call_events import KEY, START, WALL, events_run
from tests.services.edge.proxy.test_core import (
    CALLER,
    GW1,
    Run,
    answer,
    invite,
    only_request,
    sent_to,
)

RESPONDER = {"target": f"sip:{GW1.host}:5060", "target_kind": "uri", "address": f"{GW1.host}:5060"}
"""Who answered, as the edge without the transaction knows it: by the 2xx's source alone."""


def edge(signer: RecordRouteSigner, now: float) -> Run:
    """The edge (its keys `signer`) as it is started, again after a kill."""
    run = events_run(signer=signer)
    run.now = now
    return run


def test_a_2xx_reaching_an_edge_without_its_transaction_is_the_calls_answer() -> None:
    signer = RecordRouteSigner.ephemeral()
    killed = edge(signer, START)
    actions = killed.send(invite())
    assert [type(event) for event in published(actions)] == [CallStarted]
    forwarded = only_request(actions, GW1)
    restarted = edge(signer, START + 3)
    actions = restarted.send(answer(forwarded, 200), GW1)
    assert len(sent_to(actions, CALLER)) == 1  # relayed statelessly, as before
    assert published(actions) == [
        CallAnswered(**KEY, **RESPONDER, at=WALL + START + 3, to_tag="gw")
    ]


def test_a_caller_retransmitting_first_still_gets_the_2xx_as_the_answer() -> None:
    """The caller's INVITE reaches the restarted edge before the gateway's 200 does: routed
    anew, on a branch the gateway takes for another INVITE; its 200 still matches none."""
    signer = RecordRouteSigner.ephemeral()
    forwarded = only_request(edge(signer, START).send(invite()), GW1)
    restarted = edge(signer, START + 3)
    assert [type(event) for event in published(restarted.send(invite()))] == [CallStarted]
    restarted.now += 0.01
    assert published(restarted.send(answer(forwarded, 200), GW1)) == [
        CallAnswered(**KEY, **RESPONDER, at=WALL + START + 3.01, to_tag="gw")
    ]


def test_a_stray_answer_to_no_invite_is_no_call_answered() -> None:
    """A 2xx of a BYE (or any other request) with no transaction: relayed, nothing published."""
    signer = RecordRouteSigner.ephemeral()
    forwarded = only_request(edge(signer, START).send(invite()), GW1)
    bye = answer(forwarded, 200).replace(b"CSeq: 1 INVITE", b"CSeq: 2 BYE")
    restarted = edge(signer, START + 3)
    actions = restarted.send(bye, GW1)
    assert len(sent_to(actions, CALLER)) == 1
    assert published(actions) == []
    failure = answer(forwarded, 486)  # a failure with no transaction is not forwarded at all
    assert published(restarted.send(failure, GW1)) == []


def test_forged_2xxs_with_no_transaction_publish_a_bounded_few_a_second() -> None:
    """Any host can send a 2xx naming the edge in its top Via: each is relayed statelessly
    (§16.7), but one dialog's is published once a second, and at most
    `UNMATCHED_ANSWERS_PER_SECOND` in all — a flood is not a flood of events and records."""
    signer = RecordRouteSigner.ephemeral()
    forwarded = answer(only_request(edge(signer, START).send(invite()), GW1), 200)
    restarted = edge(signer, START + 3)
    again = [published(restarted.send(forwarded, GW1)) for _ in range(3)]
    assert [len(events) for events in again] == [1, 0, 0]  # one dialog: once
    forged = [forwarded.replace(b";tag=gw", b";tag=f%d" % n) for n in range(200)]
    count = sum(len(published(restarted.send(each, GW1))) for each in forged)
    assert count == UNMATCHED_ANSWERS_PER_SECOND - 1  # the first dialog took one
    restarted.now += 1.0  # the next second: published again
    assert len(published(restarted.send(forwarded, GW1))) == 1
