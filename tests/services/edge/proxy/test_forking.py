"""Forwarding and forking (`forking.py`, `forwarding.py`): failover, give-up, best answer, CANCEL.

Each test pins a behaviour a mutation run showed unguarded: what the
caller gets, what the gateways get, and which failures reach the health service.
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.edge.proxy.actions import Action, Publish, Send
from services.edge.proxy.core import ProxyTimers
from shared.contracts.edge import GatewayFailed
from shared.sip.message import Request, parse_message
from tests.services.edge.proxy.test_core import (
    CALLER,
    GW1,
    GW2,
    Run,
    answer,
    final_of,
    invite,
    only_request,
    run,
    sent_to,
    statuses,
)
from tests.services.edge.proxy.test_core_udp_mtu import TCP_GW1, large_invite, requests_to

__all__ = ["run"]  # the fixture, shared with test_core


def failures(actions: list[Action]) -> list[tuple[str, str, int]]:
    """The gateway failures published: (gateway, reason, status)."""
    events = [a.event for a in actions if isinstance(a, Publish)]
    return [(e.gateway_id, e.reason, e.status) for e in events if isinstance(e, GatewayFailed)]


def test_no_final_answer_after_ringing_is_published_as_a_timeout(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    run.send(answer(first, 180), GW1)
    actions = run.later(10.5)  # fr_inv (Timer C): the transaction's own 408
    assert failures(actions) == [("1", "timeout", 408)]
    assert only_request(actions, GW2).method == "INVITE"


def test_a_transport_failure_is_published_and_fails_over(run: Run) -> None:
    [send] = [a for a in run.send(invite()) if isinstance(a, Send) and a.destination == GW1]
    assert send.client is not None
    actions = run.proxy.transport_failed(send.client, run.now)
    assert failures(actions) == [("1", "transport", 503)]
    assert only_request(actions, GW2).method == "INVITE"


def test_a_late_answer_from_a_gateway_given_up_on_changes_nothing(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    moved_on = run.later(2.1)  # fr: GW1 given up, GW2 tried
    assert failures(moved_on) == [("1", "timeout", 408)]
    second = only_request(moved_on, GW2)
    late = run.send(answer(first, 503), GW1)
    assert failures(late) == []  # reported once, as the timeout
    assert statuses(late) == []
    assert statuses(run.send(answer(second, 200), GW2)) == [200]


def test_the_first_response_of_the_lowest_class_is_the_one_that_counts(run: Run) -> None:
    """§16.7 step 6: 503 then 502 is a 503 (so the caller gets 500), not the 502."""
    first = only_request(run.send(invite()), GW1)
    second = only_request(run.send(answer(first, 503), GW1), GW2)
    assert final_of(run.send(answer(second, 502), GW2)).status == 500


def test_a_600_after_a_failover_wins_over_the_5xx_before_it(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    second = only_request(run.send(answer(first, 503), GW1), GW2)
    assert final_of(run.send(answer(second, 600), GW2)).status == 600


def test_the_487_after_a_cancel_is_the_gateways_own(run: Run) -> None:
    first = only_request(run.send(invite()), GW1)
    run.send(answer(first, 180), GW1)
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    run.send(cancel)
    final = final_of(run.send(answer(first, 487), GW1))
    assert (final.status, final.reason, final.to_tag) == (487, "Whatever", "gw")


def calls_set_up() -> float:
    return REGISTRY.get_sample_value("callmesh_edge_calls_set_up_total") or 0.0


def test_an_answered_invite_counts_as_a_call_set_up(run: Run) -> None:
    before = calls_set_up()
    first = only_request(run.send(invite()), GW1)
    run.send(answer(first, 183), GW1)
    assert calls_set_up() == before  # the control: a provisional is no call yet
    run.send(answer(first, 200), GW1)
    assert calls_set_up() == before + 1


def test_a_retry_over_udp_is_no_gateway_failure(run: Run) -> None:
    [(_, over_tcp)] = requests_to(run.send(large_invite()), TCP_GW1)
    assert over_tcp.client is not None
    retried = run.proxy.transport_failed(over_tcp.client, run.now)
    assert len(requests_to(retried, GW1)) == 1  # the control: the UDP retry
    assert failures(retried) == []
    assert statuses(retried, CALLER) == []


def test_a_transaction_timeout_before_the_failover_timer_is_published_as_a_timeout(
    run: Run,
) -> None:
    """fr set longer than fr_inv (Timer C, 10 s here): the transaction's own 408 ends a
    branch that got no answer at all, and it is still the gateway's failure."""
    run.proxy.timers = ProxyTimers(fr=40.0, fr_inv=10.0)
    run.send(invite())
    assert failures(run.later(9.0)) == []  # the control: not yet
    actions = run.later(1.5)
    assert failures(actions) == [("1", "timeout", 408)]
    assert only_request(actions, GW2).method == "INVITE"


def test_a_487_echoing_only_our_cancels_via_reaches_the_caller_with_its_own(run: Run) -> None:
    """A gateway that builds its 487 from the CANCEL (our Via alone): the caller still gets
    its Vias back, so its ACK matches (the edge once relayed such a 487 without any Via)."""
    first = only_request(run.send(invite()), GW1)
    run.send(answer(first, 180), GW1)
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    cancel_sent = only_request(run.send(cancel), GW1)
    assert len(cancel_sent.vias) == 1  # hop by hop: ours only
    from_the_cancel = answer(cancel_sent, 487).replace(b"1 CANCEL", b"1 INVITE")
    final = final_of(run.send(from_the_cancel, GW1))
    assert final.status == 487
    [via] = final.vias
    assert (via.host, via.port, via.branch) == ("10.0.0.5", 5070, "z9hG4bKc1")
    assert (via.received, via.rport) == (CALLER.host, CALLER.port)


def test_a_2xx_retransmission_is_relayed_without_reading_the_requests_held_as_bytes(
    run: Run,
) -> None:
    """Once its 2xx is relayed, the answered branch and the call's server transaction keep
    their requests as bytes (the 32 s of Timers M and L). A retransmitted 2xx reaches the
    caller as the first did without reading them again: a callee retransmitting until the
    ACK comes costs no parse of either (their bytes made unreadable here would show it)."""
    received = invite()
    [send] = [a for a in run.send(received) if isinstance(a, Send) and a.destination == GW1]
    assert send.client is not None
    server = run.proxy.table.match_request(parse_message(received))  # type: ignore[arg-type]
    assert server is not None
    first = parse_message(send.data)
    assert isinstance(first, Request)
    ok = answer(first, 200)
    [relayed] = sent_to(run.send(ok, GW1), CALLER)
    assert (send.client._request, send.client._held) == (None, send.data)
    assert server._request is None
    assert server._held.startswith(b"INVITE ")
    send.client._held = server._held = b"unreadable"
    assert sent_to(run.send(ok, GW1), CALLER) == [relayed]


def test_a_failed_branch_and_a_cancels_own_client_keep_their_requests_as_bytes(
    run: Run,
) -> None:
    """Timer D keeps a failed branch for 32 s, Timer K a CANCEL's transaction for 5 s: once
    their final responses were read, their requests are held as bytes."""
    [send] = [a for a in run.send(invite()) if isinstance(a, Send) and a.destination == GW1]
    assert send.client is not None
    first = parse_message(send.data)
    assert isinstance(first, Request)
    run.send(answer(first, 180), GW1)
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    ours = only_request(run.send(cancel), GW1)
    cancelled = run.proxy.table.match_response(parse_message(answer(ours, 200)))  # type: ignore[arg-type]
    assert cancelled is not None
    run.send(answer(ours, 200), GW1)
    assert (cancelled._request, cancelled._held) == (None, cancelled.data)
    run.send(answer(first, 487), GW1)
    assert (send.client._request, send.client._held) == (None, send.data)
