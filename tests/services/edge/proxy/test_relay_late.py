"""Media relay beyond the INVITE's offer (`relay.py`): late offers (offer in the 1xx/2xx, answer in
the PRACK or ACK), UPDATE either way, 2xx retransmissions with no transaction, multipart bodies."""

from __future__ import annotations

import logging

import pytest

from services.edge import metrics
from services.edge.proxy.actions import Action, Send
from services.edge.proxy.dialogs import DIALOG_PARAM
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    PEER,
    Run,
    answer,
    invite,
    only_request,
    sent_to,
    statuses,
)
from tests.services.edge.proxy.test_relay import (
    GW_RELAYED,
    GW_SDP,
    RELAYED,
    SDP,
    media,
    media_run,
    offered,
    to_caller,
    with_sdp,
)

CALLER_PUBLIC = f"{CALLER.host}:{CALLER.port}"


@pytest.fixture
def run() -> Run:
    return media_run()


def late(run: Run, data: bytes | None = None) -> Request:
    """An INVITE without SDP toward an `always` gateway: what the gateway gets, at once."""
    actions = run.send(data or invite())
    assert media(actions) == []
    return only_request(actions, GW1)


def answered(run: Run, forwarded: Request, status: int = 200) -> Response:
    """The gateway's `status` with its SDP (the callee's offer), taken through rtpengine."""
    [offer] = media(run.send(with_sdp(answer(forwarded, status), GW_SDP), GW1))
    return to_caller(run.proxy.media_done(offer.ticket, GW_RELAYED, run.now))


def from_caller(method: str, forwarded: Request, cseq: int, extra: str = "") -> bytes:
    """An in-dialog request of the caller along the route set of `forwarded`'s Record-Route."""
    routes = "".join(f"Route: {route}\r\n" for route in forwarded.headers("record-route"))
    return (
        f"{method} sip:gw@{GW1.host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK{method}{cseq};rport\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:14075551234@example.com>;tag=gw\r\n"
        f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"{routes}{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def to_caller_all(actions: list[Action]) -> list[Response]:
    found = [parse_message(data) for data in sent_to(actions, CALLER)]
    return [message for message in found if isinstance(message, Response)]


def requests(actions: list[Action]) -> list[tuple[Destination, Request]]:
    found = []
    for action in actions:
        if isinstance(action, Send) and not action.data.startswith(b"SIP/2.0 "):
            message = parse_message(action.data)
            assert isinstance(message, Request)
            found.append((action.destination, message))
    return found


def test_a_late_offer_leaves_at_once_its_record_route_marked_late(run: Run) -> None:
    forwarded = late(run)
    assert forwarded.body == b""
    [record_route] = forwarded.headers("record-route")
    assert ";cm-media=late;" in record_route
    params = run.proxy.dialogs.route_params("call-1", None, media=True, late=True)
    assert record_route == f"<sip:{EDGE}:5060;lr{params}>"


def test_the_callees_offer_in_the_200_goes_to_rtpengine_its_tag_first(run: Run) -> None:
    forwarded = late(run)
    before = metrics.MEDIA_RELAYED_CALLS.value
    actions = run.send(with_sdp(answer(forwarded, 200), GW_SDP), GW1)
    assert sent_to(actions, CALLER) == []  # held for rtpengine
    [offer] = media(actions)
    assert (offer.command, offer.from_tag, offer.to_tag, offer.sdp) == ("offer", "gw", "a1", GW_SDP)
    sent = to_caller(run.proxy.media_done(offer.ticket, GW_RELAYED, run.now))
    assert (sent.status, sent.body) == (200, GW_RELAYED)
    assert metrics.MEDIA_RELAYED_CALLS.value == before + 1
    again = run.send(with_sdp(answer(forwarded, 200), GW_SDP), GW1)  # retransmitted
    assert media(again) == [] and to_caller(again).body == GW_RELAYED


def test_the_acks_answer_is_held_then_leaves_rewritten(run: Run) -> None:
    forwarded = late(run)
    answered(run, forwarded)
    actions = run.send(with_sdp(from_caller("ACK", forwarded, 1)))
    assert sent_to(actions, GW1) == []
    [rewrite] = media(actions)
    assert (rewrite.command, rewrite.from_tag, rewrite.to_tag, rewrite.sdp) == (
        "answer",
        "gw",
        "a1",
        SDP,
    )  # the offerer's tag first, as for the offer
    ack = only_request(run.proxy.media_done(rewrite.ticket, RELAYED, run.now), GW1)
    assert (ack.method, ack.body, ack.content_length) == ("ACK", RELAYED, len(RELAYED))
    assert ack.max_forwards == 69 and len(ack.vias) == 2
    plain = run.send(from_caller("ACK", forwarded, 1))  # no SDP: nothing to wait for
    assert media(plain) == [] and only_request(plain, GW1).body == b""


def test_a_late_offer_rtpengine_cannot_take_goes_as_it_came_counted_as_an_offer(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """The callee's 2xx carries the offer of a late-offer call: its failure is an offer's."""
    forwarded = late(run)
    before = metrics.MEDIA_FAILURES["offer", "unrelayed"]
    [offer] = media(run.send(with_sdp(answer(forwarded, 200), GW_SDP), GW1))
    with caplog.at_level(logging.WARNING, logger="callmesh.edge"):
        sent = to_caller(run.proxy.media_done(offer.ticket, None, run.now))
    assert (sent.status, sent.body) == (200, GW_SDP)
    assert metrics.MEDIA_FAILURES["offer", "unrelayed"] == before + 1
    assert [r.getMessage() for r in caplog.records] == [
        "rtpengine offer for call-1 failed: its SDP goes unrelayed"
    ]


def test_an_ack_rtpengine_cannot_answer_leaves_as_it_came_and_is_counted(run: Run) -> None:
    forwarded = late(run)
    answered(run, forwarded)
    before = metrics.MEDIA_FAILURES["answer", "unrelayed"]
    [rewrite] = media(run.send(with_sdp(from_caller("ACK", forwarded, 1))))
    ack = only_request(run.proxy.media_done(rewrite.ticket, None, run.now), GW1)
    assert ack.body == SDP
    assert metrics.MEDIA_FAILURES["answer", "unrelayed"] == before + 1


def test_an_ack_with_sdp_in_an_unrelayed_dialog_is_not_asked() -> None:
    run = media_run("never")
    forwarded = late(run)
    actions = run.send(with_sdp(from_caller("ACK", forwarded, 1)))
    assert media(actions) == [] and only_request(actions, GW1).body == SDP


def test_a_trusted_peers_ack_with_an_unsigned_mark_is_not_asked(run: Run) -> None:
    """A trusted source passes the dialog check without a token: its mark is not taken on trust."""
    forwarded = late(run)
    unmarked = run.proxy.dialogs.route_params("call-1", None)  # signed without the mark
    route = f"<sip:{EDGE}:5060;lr;cm-media=late{unmarked}>"
    ack = with_sdp(from_caller("ACK", forwarded, 1)).replace(
        forwarded.headers("record-route")[0].encode(), route.encode()
    )
    actions = run.send(ack, PEER)
    assert media(actions) == [] and only_request(actions, GW1).body == SDP


def test_the_late_mark_is_covered_by_the_signature(run: Run) -> None:
    forwarded = late(run)
    ack = with_sdp(from_caller("ACK", forwarded, 1))
    assert run.send(ack.replace(b";cm-media=late", b";cm-media")) == []  # dropped, not relayed
    assert run.send(ack.replace(b";cm-media=late", b"")) == []
    bye = from_caller("BYE", forwarded, 2).replace(b";cm-media=late", b";cm-media")
    assert statuses(run.send(bye)) == [403]


def test_a_late_call_failing_deletes_the_session_its_offer_made(run: Run) -> None:
    forwarded = late(run)
    answered(run, forwarded, 183)
    actions = run.send(answer(forwarded, 486), GW1)
    assert [(m.command, m.call_id) for m in media(actions)] == [("delete", "call-1")]


def test_a_response_behind_one_held_for_rtpengine_waits_its_turn(run: Run) -> None:
    """The 486 right after a 183 whose offer is out does not overtake it: the caller gets the
    183 (rewritten) then the 486, and the session the offer made is deleted."""
    forwarded = late(run)
    [offer] = media(run.send(with_sdp(answer(forwarded, 183), GW_SDP), GW1))
    failed = run.send(answer(forwarded, 486), GW1)
    assert media(failed) == [] and statuses(failed) == []
    actions = run.proxy.media_done(offer.ticket, GW_RELAYED, run.now)
    assert statuses(actions) == [183, 486]
    assert to_caller_all(actions)[0].body == GW_RELAYED
    assert [m.command for m in media(actions)] == ["delete"]


def test_a_late_call_given_up_while_its_offer_is_out_is_deleted_again_once_it_is_in(
    run: Run,
) -> None:
    forwarded = late(run)
    [offer] = media(run.send(with_sdp(answer(forwarded, 183), GW_SDP), GW1))
    assert media(run.later(2.5)) == []  # it answered: no failover while rtpengine rewrites
    run.later(8)  # Timer C (`fr_inv`): no final answer in time, gateway 2 is tried
    timed_out = run.later(3)  # and is silent: the call fails, its offer still out
    assert [m.command for m in media(timed_out)] == ["delete"]
    actions = run.proxy.media_done(offer.ticket, GW_RELAYED, run.now)
    assert [m.command for m in media(actions)] == ["delete"]  # the offer made it again
    assert statuses(actions) == []  # the 183 of a call given up already


def test_a_late_call_that_never_offered_deletes_nothing(run: Run) -> None:
    forwarded = late(run)
    actions = run.send(answer(forwarded, 486), GW1)
    assert media(actions) == []


def test_a_2xx_with_no_transaction_is_rewritten_again_per_its_mark(run: Run) -> None:
    """A 200 reaching the edge after its transactions ended (or a restarted edge): the mark in
    its Record-Route, verified, says offer (`late`) or answer; a forged or absent one, nothing."""

    def stray_200(mark: str, token_for: str = "call-1") -> bytes:
        params = run.proxy.dialogs.route_params(token_for, None, bool(mark), mark == "late")
        if token_for != "call-1":  # another call's token with this call's mark
            params = params.split(f";{DIALOG_PARAM}=")[1]
            params = f";cm-media{'=late' if mark else ''};{DIALOG_PARAM}={params}"
        return with_sdp(
            (
                "SIP/2.0 200 OK\r\n"
                f"Via: SIP/2.0/UDP {EDGE}:5060;branch=z9hG4bKgone\r\n"
                "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKc1;rport=5070;"
                f"received={CALLER.host}\r\n"
                f"Record-Route: <sip:{EDGE}:5060;lr{params}>\r\n"
                "From: <sip:alice@example.com>;tag=a1\r\n"
                "To: <sip:14075551234@example.com>;tag=gw\r\n"
                "Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@203.0.113.1>\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            GW_SDP,
        )

    [offer] = media(actions := run.send(stray_200("late"), GW1))
    assert sent_to(actions, CALLER) == []
    assert (offer.command, offer.from_tag, offer.to_tag) == ("offer", "gw", "a1")
    assert to_caller(run.proxy.media_done(offer.ticket, GW_RELAYED, run.now)).body == GW_RELAYED
    [again] = media(run.send(stray_200("early"), GW1))
    assert (again.command, again.from_tag, again.to_tag) == ("answer", "a1", "gw")
    failed = to_caller(run.proxy.media_done(again.ticket, None, run.now))
    assert failed.body == GW_SDP  # rtpengine could not: it goes as it came
    for unmarked in (stray_200(""), stray_200("late", token_for="call-2")):
        actions = run.send(unmarked, GW1)
        assert media(actions) == [] and to_caller(actions).body == GW_SDP


def test_a_reliable_183s_offer_and_the_pracks_answer(run: Run) -> None:
    forwarded = late(run, invite(extra="Supported: 100rel\r\n"))
    progress = answered(run, forwarded, 183)
    assert progress.body == GW_RELAYED
    [rewrite] = media(
        run.send(with_sdp(from_caller("PRACK", forwarded, 2, "RAck: 1 1 INVITE\r\n")))
    )
    assert (rewrite.command, rewrite.from_tag, rewrite.to_tag) == ("answer", "gw", "a1")
    prack = only_request(run.proxy.media_done(rewrite.ticket, RELAYED, run.now), GW1)
    assert (prack.method, prack.body) == ("PRACK", RELAYED)


def test_a_prack_in_an_early_offer_dialog_offers(run: Run) -> None:
    forwarded = offered(run)
    [rewrite] = media(
        run.send(with_sdp(from_caller("PRACK", forwarded, 2, "RAck: 1 1 INVITE\r\n")))
    )
    assert (rewrite.command, rewrite.from_tag, rewrite.to_tag) == ("offer", "a1", "gw")
    prack = only_request(run.proxy.media_done(rewrite.ticket, RELAYED, run.now), GW1)
    [ok] = media(
        run.send(with_sdp(answer(prack, 200), GW_SDP).replace(b";tag=gw;tag=gw", b";tag=gw"), GW1)
    )
    assert (ok.command, ok.from_tag, ok.to_tag) == ("answer", "a1", "gw")


def test_an_update_from_the_far_end_is_offered_and_the_callers_200_answered(run: Run) -> None:
    forwarded = late(run)
    answered(run, forwarded)
    routes = "".join(f"Route: {route}\r\n" for route in reversed(forwarded.headers("record-route")))
    update = with_sdp(
        (
            "UPDATE sip:alice@10.0.0.5:5070 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKupd\r\n"
            "From: <sip:14075551234@example.com>;tag=gw\r\n"
            "To: <sip:alice@example.com>;tag=a1\r\n"
            f"Call-ID: call-1\r\nCSeq: 7 UPDATE\r\nMax-Forwards: 70\r\n{routes}"
            "Content-Length: 0\r\n\r\n"
        ).encode(),
        GW_SDP,
    )
    [offer] = media(run.send(update, GW1))
    assert (offer.command, offer.from_tag, offer.to_tag, offer.sdp) == ("offer", "gw", "a1", GW_SDP)
    [(destination, sent)] = requests(run.proxy.media_done(offer.ticket, GW_RELAYED, run.now))
    assert (sent.method, sent.body) == ("UPDATE", GW_RELAYED)
    vias = "".join(f"Via: {via}\r\n" for via in sent.headers("via"))
    ok = with_sdp(
        (
            f"SIP/2.0 200 OK\r\n{vias}From: {sent.header('from')}\r\nTo: {sent.header('to')}\r\n"
            "Call-ID: call-1\r\nCSeq: 7 UPDATE\r\nContent-Length: 0\r\n\r\n"
        ).encode(),
        SDP,
    )
    [rewrite] = media(run.send(ok, destination))
    assert (rewrite.command, rewrite.from_tag, rewrite.to_tag, rewrite.sdp) == (
        "answer",
        "gw",
        "a1",
        SDP,
    )
    [data] = sent_to(run.proxy.media_done(rewrite.ticket, RELAYED, run.now), GW1)
    response = parse_message(data)
    assert isinstance(response, Response) and (response.status, response.body) == (200, RELAYED)


def test_only_the_sdp_part_of_a_multipart_body_is_rewritten(run: Run) -> None:
    isup = b"\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10"
    body = (
        b"--bnd\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\r\n" + isup + b"\r\n"
        b"--bnd\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--bnd--\r\n"
    )
    message = parse_message(invite())
    message.set_body(body, "multipart/mixed;boundary=bnd")
    [offer] = media(run.send(message.to_bytes()))
    assert offer.sdp == SDP
    forwarded = only_request(run.proxy.media_done(offer.ticket, RELAYED, run.now), GW1)
    assert forwarded.body == body.replace(SDP, RELAYED)
    assert forwarded.content_type == "multipart/mixed;boundary=bnd"
    assert forwarded.content_length == len(body) - len(SDP) + len(RELAYED)
