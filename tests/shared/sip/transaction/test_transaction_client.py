"""Client transactions, transition by transition, with time stepped explicitly."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.sip.message import Request, parse_message
from shared.sip.timers import TimerSettings
from shared.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    Send,
    State,
    Terminated,
    TimedOut,
    TimerName,
    TransactionEvent,
    TransactionTable,
    TransportFailed,
)
from tests.shared.sip.transaction.support import (
    SETTINGS,
    TCP_PEER,
    UDP_PEER,
    request,
    response,
)


def started(
    method: str = "INVITE", *, reliable: bool = False, proxy: bool = False, **kw: object
) -> tuple[TransactionTable, ClientTransaction, list[TransactionEvent]]:
    table = TransactionTable(SETTINGS)
    message = request(method, transport="TCP" if reliable else "UDP", **kw)  # type: ignore[arg-type]
    client, events = table.start_client(
        message, TCP_PEER if reliable else UDP_PEER, now=0.0, proxy=proxy
    )
    return table, client, events


def fired(table: TransactionTable, now: float) -> list[TransactionEvent]:
    return [event for _, event in table.expire(now)]


def sent_requests(events: list[TransactionEvent]) -> list[Request]:
    out = []
    for event in events:
        if isinstance(event, Send):
            message = parse_message(event.data)
            assert isinstance(message, Request)
            out.append(message)
    return out


def assert_timed_out_with_408(events: Sequence[TransactionEvent], timer: str) -> None:
    """The TU is told of the timeout with a 408 it can treat as the best response."""
    timed_out, terminated = events
    assert terminated == Terminated()
    assert isinstance(timed_out, TimedOut) and timed_out.timer is timer
    assert timed_out.response is not None
    assert timed_out.response.status == 408
    assert timed_out.response.call_id == "a84b4c76e66710"
    assert str(timed_out.response.cseq) == "314159 " + (
        "OPTIONS" if timer is TimerName.F else "INVITE"
    )


# ----- INVITE client --------------------------------------------------------------------


def test_invite_start_sends_and_arms_a_and_b() -> None:
    table, client, events = started()
    assert events == [Send(client.request.to_bytes(), UDP_PEER)]
    assert client.state is State.CALLING
    assert client.armed == {TimerName.A: 0.5, TimerName.B: 32.0}
    assert table.next_deadline() == 0.5


def test_timer_a_doubles_without_cap_until_timer_b_times_out() -> None:
    table, client, _ = started()
    retransmit_times = []
    now = 0.0
    while client.state is State.CALLING:
        now = table.next_deadline() or 0.0
        events = fired(table, now)
        if any(isinstance(event, Send) for event in events):
            retransmit_times.append(now)
    # A: T1, 2T1, 4T1, ... (8 s and 16 s intervals exceed T2: A is not capped).
    assert retransmit_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert now == 32.0
    assert_timed_out_with_408(events, TimerName.B)
    assert len(table) == 0
    assert table.next_deadline() is None


def test_nothing_fires_before_its_deadline() -> None:
    table, _, _ = started()
    assert fired(table, 0.499) == []


def test_provisional_moves_to_proceeding_and_stops_retransmissions() -> None:
    table, client, _ = started()
    ringing = response(180)
    assert client.receive_response(ringing, now=0.2) == [ResponseReceived(ringing)]
    assert client.state is State.PROCEEDING
    assert client.armed == {}
    assert fired(table, 100.0) == []
    assert client.receive_response(ringing, now=1.0) == [ResponseReceived(ringing)]


def test_non_2xx_final_sends_ack_and_waits_timer_d() -> None:
    _, client, _ = started(routes=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    busy = response(486)
    events = client.receive_response(busy, now=1.0)
    assert events[0] == ResponseReceived(busy)
    assert isinstance(events[1], Send) and events[1].destination == UDP_PEER
    (ack,) = sent_requests(events)
    assert ack.method == "ACK"
    assert ack.uri_text == "sip:bob@example.com"
    assert str(ack.cseq) == "314159 ACK"
    assert ack.to_tag == "as83kd"
    assert ack.from_tag == "1928301774"
    assert ack.call_id == "a84b4c76e66710"
    assert [str(via) for via in ack.vias] == [str(client.request.top_via)]
    assert ack.headers("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert client.state is State.COMPLETED
    assert client.armed == {TimerName.D: 33.0}


def test_the_ack_of_a_failure_is_spelled_as_usual_and_reports_its_send_failure() -> None:
    """The ACK's Send names its transaction (§17.1.4: a failure to send it reaches the
    transaction), and its header names are written in their usual spelling."""
    _, client, _ = started()
    _, send = client.receive_response(response(486), now=1.0)
    assert isinstance(send, Send) and send.client is client
    assert b"\r\nFrom: " in send.data and b"\r\nTo: " in send.data


def test_completed_resends_ack_for_retransmitted_final_without_delivering_it() -> None:
    table, client, _ = started()
    first = client.receive_response(response(486), now=1.0)
    again = client.receive_response(response(486), now=2.0)
    assert again == [first[1]]
    assert client.receive_response(response(180), now=2.5) == []
    assert fired(table, 33.0) == [Terminated()]
    assert client.state is State.TERMINATED
    assert table.match_response(response(486)) is None


def test_2xx_moves_to_accepted_and_passes_retransmissions_up_until_timer_m() -> None:
    table, client, _ = started()
    ok = response(200)
    assert client.receive_response(ok, now=1.0) == [ResponseReceived(ok)]
    assert client.state is State.ACCEPTED
    assert client.armed == {TimerName.M: 33.0}
    # RFC 6026: each 2xx retransmission still reaches the TU (which ACKs or forwards it).
    assert client.receive_response(ok, now=2.0) == [ResponseReceived(ok)]
    assert client.receive_response(response(486), now=2.0) == []
    assert fired(table, 33.0) == [Terminated()]
    assert len(table) == 0


def test_reliable_invite_has_no_timer_a_and_no_timer_d() -> None:
    table, client, _ = started(reliable=True)
    assert client.armed == {TimerName.B: 32.0}
    events = client.receive_response(response(503), now=1.0)
    assert [type(event) for event in events] == [ResponseReceived, Send, Terminated]
    assert len(table) == 0


def test_proxy_timer_c_before_any_provisional_ends_like_a_408() -> None:
    table, client, _ = started(proxy=True)
    assert client.armed[TimerName.C] == 10.0
    events = [event for event in fired(table, 10.0) if not isinstance(event, Send)]
    assert_timed_out_with_408(events, TimerName.C)


def test_proxy_timer_c_is_reset_by_provisionals_other_than_100() -> None:
    _table, client, _ = started(proxy=True, reliable=True)
    client.receive_response(response(100, to_tag=None), now=4.0)
    assert client.armed == {TimerName.C: 10.0}
    client.receive_response(response(183), now=6.0)
    assert client.armed == {TimerName.C: 16.0}


def test_proxy_timer_c_after_provisional_asks_for_cancel_then_waits_for_487() -> None:
    table, client, _ = started(proxy=True, reliable=True)
    client.receive_response(response(180), now=1.0)
    assert fired(table, 11.0) == [TimedOut(TimerName.C)]
    assert client.state is State.PROCEEDING
    assert client.armed == {TimerName.C: 11.0 + 32.0}
    # A late 180 does not extend the grace period.
    client.receive_response(response(180), now=12.0)
    assert client.armed == {TimerName.C: 43.0}
    terminated = client.receive_response(response(487), now=12.5)
    assert isinstance(terminated[0], ResponseReceived) and terminated[-1] == Terminated()


def test_proxy_timer_c_grace_expiring_terminates() -> None:
    table, client, _ = started(proxy=True, reliable=True)
    client.receive_response(response(180), now=1.0)
    fired(table, 11.0)
    assert_timed_out_with_408(fired(table, 43.0), TimerName.C)


def test_transport_error_tells_the_tu_and_terminates() -> None:
    table, client, _ = started()
    assert client.transport_error() == [TransportFailed(), Terminated()]
    assert len(table) == 0
    assert client.transport_error() == []


# ----- non-INVITE client ----------------------------------------------------------------


def test_timer_e_doubles_up_to_t2_until_timer_f() -> None:
    table, client, _ = started("OPTIONS")
    assert client.armed == {TimerName.E: 0.5, TimerName.F: 32.0}
    times = []
    while client.state is State.TRYING:
        now = table.next_deadline() or 0.0
        events = fired(table, now)
        if any(isinstance(event, Send) for event in events):
            times.append(now)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert_timed_out_with_408(events, TimerName.F)


def test_proceeding_retransmits_every_t2() -> None:
    table, client, _ = started("REGISTER")
    fired(table, 0.5)  # E: next at 1.5
    trying = response(100, method="REGISTER", to_tag=None)
    assert client.receive_response(trying, now=1.0) == [ResponseReceived(trying)]
    assert client.state is State.PROCEEDING
    assert fired(table, 1.5) == [Send(client.data, UDP_PEER)]
    assert client.armed[TimerName.E] == 5.5
    fired(table, 5.5)
    assert client.armed[TimerName.E] == 9.5


def test_final_response_completes_and_timer_k_absorbs_retransmissions() -> None:
    table, client, _ = started("OPTIONS")
    ok = response(200, method="OPTIONS")
    assert client.receive_response(ok, now=1.0) == [ResponseReceived(ok)]
    assert client.state is State.COMPLETED
    assert client.armed == {TimerName.K: 6.0}
    assert client.receive_response(ok, now=2.0) == []
    assert fired(table, 6.0) == [Terminated()]


def test_reliable_non_invite_has_no_timer_e_and_terminates_on_final() -> None:
    table, client, _ = started("BYE", reliable=True)
    assert client.armed == {TimerName.F: 32.0}
    events = client.receive_response(response(200, method="BYE"), now=1.0)
    assert [type(event) for event in events] == [ResponseReceived, Terminated]
    assert table.counts()["non_invite_client"] == 0


# ----- matching and construction --------------------------------------------------------


def test_responses_match_by_branch_and_cseq_method() -> None:
    table, invite, _ = started()
    cancel, _ = table.start_client(request("CANCEL"), UDP_PEER, now=0.0)
    assert table.match_response(response(200, method="INVITE")) is invite
    assert table.match_response(response(200, method="CANCEL")) is cancel
    assert table.match_response(response(200, branch="z9hG4bKother")) is None
    assert table.counts() == {
        "invite_client": 1,
        "non_invite_client": 1,
        "invite_server": 0,
        "non_invite_server": 0,
    }


def test_duplicate_client_transaction_is_refused() -> None:
    table, _, _ = started()
    with pytest.raises(ValueError, match="already exists"):
        table.start_client(request(), UDP_PEER, now=0.0)


def test_configured_t1_scales_every_timer() -> None:
    table = TransactionTable(TimerSettings(t1=0.1, t2=0.4))
    client, _ = table.start_client(request("OPTIONS"), UDP_PEER, now=100.0)
    assert client.armed == {TimerName.E: 100.1, TimerName.F: 106.4}


@pytest.mark.parametrize(("method", "status"), [("INVITE", 200), ("INVITE", 486), ("BYE", 200)])
def test_a_finished_client_keeps_its_request_as_parsed_for_its_tu(method: str, status: int) -> None:
    """Its TU reads the request on the final response (the proxy pops its Via against the
    request's parsed one): the transaction lets go of nothing, its TU says what to keep."""
    _, client, _ = started(method)
    top = client.request.top_via  # parsed while the transaction runs
    client.receive_response(response(status, method=method), now=1.0)
    assert client.answered
    assert client.request.top_via is top


def test_a_running_client_is_not_answered() -> None:
    _, client, _ = started()
    assert not client.answered
    client.receive_response(response(180), now=1.0)
    assert not client.answered


def test_a_retransmitted_failure_gets_the_same_ack_with_the_request_held() -> None:
    """§17.1.1.2: the ACK is passed again, as it was; its TU held the request as bytes."""
    _, client, _ = started()
    first = client.receive_response(response(486), now=1.0)
    client.hold_request_as_bytes()
    client._held = b"unreadable"  # a re-read would raise: the ACK is not built again
    (resent,) = client.receive_response(response(486), now=2.0)
    ack = first[1]
    assert isinstance(resent, Send) and isinstance(ack, Send)
    assert resent == ack and resent.data is ack.data


@pytest.mark.parametrize(("method", "status"), [("INVITE", 200), ("INVITE", 486), ("BYE", 200)])
def test_a_finished_client_keeps_its_request_until_its_tu_holds_it_as_bytes(
    method: str, status: int
) -> None:
    """Its TU reads the request on the response that ended the transaction (the proxy pops
    its own Via against it): as bytes already, that would be a parse per call. The TU holds
    it as bytes once done (`hold_request_as_bytes`)."""
    _, client, _ = started(method)
    sent = client.request
    client.receive_response(response(status, method=method), now=1.0)
    assert client.request is sent
    client.hold_request_as_bytes()
    assert (client._request, client._held) == (None, sent.to_bytes())
