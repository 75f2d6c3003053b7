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
from shared.contracts.calls import BranchTried, CallAnswered, CallEnded, CallStarted
from tests.services.edge.proxy.support import published
from tests.services.edge.proxy.test_call_events import (
    KEY,
    START,
    WALL,
    callers_request,
    events_run,
    reply,
)
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


def test_a_caller_retransmitting_first_gets_the_2xx_through_a_transaction_again() -> None:
    """The caller's INVITE reaches the restarted edge before the gateway's 200 does: routed
    anew on the branch the first edge gave it (a function of the caller's), so the gateway
    takes it for the retransmission it is, and its 200 matches the new transaction: the
    attempt and the answer, the gateway named, as if the edge had never died."""
    signer = RecordRouteSigner.ephemeral()
    forwarded = only_request(edge(signer, START).send(invite()), GW1)
    restarted = edge(signer, START + 3)
    again = only_request(restarted.send(invite()), GW1)
    assert again.top_branch == forwarded.top_branch
    restarted.now += 0.01
    events = published(restarted.send(answer(forwarded, 200), GW1))
    assert [type(event) for event in events] == [BranchTried, CallAnswered]
    tried, answered = events
    assert isinstance(tried, BranchTried) and isinstance(answered, CallAnswered)
    assert (tried.status, tried.target, tried.sent_at) == (200, "1", WALL + START + 3)
    assert (answered.to_tag, answered.target, answered.target_kind) == ("gw", "1", "gateway")


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


def test_a_bye_the_killed_edge_had_forwarded_gets_the_callees_200_again() -> None:
    """The edge died after forwarding the caller's BYE: the caller's retransmission leaves the
    restarted edge with the same branch, so the callee answers it as the retransmission it
    is (200 again, §17.2.2), not 481 as for a new BYE of an ended dialog, and the call ends
    as the caller hung it up."""
    signer = RecordRouteSigner.ephemeral()
    killed = edge(signer, START + 60)
    bye = callers_request(killed, "BYE", 2)
    forwarded = only_request(killed.send(bye), GW1)
    restarted = edge(signer, START + 61)
    again = only_request(restarted.send(bye), GW1)
    assert again.top_branch == forwarded.top_branch
    actions = restarted.send(reply(forwarded, 200), GW1)
    assert len(sent_to(actions, CALLER)) == 1
    assert published(actions) == [CallEnded(**KEY, to_tag="gw", at=WALL + START + 61, status=200)]
