"""Server transactions and request matching, transition by transition, time stepped explicitly."""

from __future__ import annotations

import pytest

from shared.sip.errors import SipParseError
from shared.sip.message import MAX_HEADER_FIELDS, MAX_LINE_LENGTH, parse_message
from shared.sip.transaction import (
    AckReceived,
    InviteServerTransaction,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    TimerName,
    TransactionEvent,
    TransactionTable,
    TransportFailed,
)
from shared.sip.transport.destination import Destination
from tests.shared.sip.transaction.support import (
    SETTINGS,
    TCP_PEER,
    UDP_PEER,
    request,
    response,
)


def created(
    method: str = "INVITE", destination: Destination = UDP_PEER, **kw: object
) -> tuple[TransactionTable, ServerTransaction]:
    table = TransactionTable(SETTINGS)
    return table, table.create_server(request(method, **kw), destination)  # type: ignore[arg-type]


def fired(table: TransactionTable, now: float) -> list[TransactionEvent]:
    return [event for _, event in table.expire(now)]


def state_of(transaction: ServerTransaction) -> State:
    """Read the state afresh (keeps the type checker from narrowing it across calls)."""
    return transaction.state


def sent(data: bytes, destination: Destination = UDP_PEER) -> Send:
    return Send(data, destination)


# ----- INVITE server --------------------------------------------------------------------


def test_invite_retransmission_before_any_response_is_absorbed() -> None:
    table, server = created()
    assert server.state is State.PROCEEDING
    retransmission = request()
    assert table.match_request(retransmission) is server
    assert server.receive_request(retransmission, now=0.1) == []


def test_invite_retransmission_gets_the_last_provisional_again() -> None:
    _, server = created()
    trying = response(100, to_tag=None)
    ringing = response(180)
    assert server.respond(trying, now=0.0) == [sent(trying.to_bytes())]
    assert server.respond(ringing, now=0.1) == [sent(ringing.to_bytes())]
    assert server.receive_request(request(), now=0.2) == [sent(ringing.to_bytes())]
    assert server.state is State.PROCEEDING


def test_non_2xx_final_is_retransmitted_by_timer_g_capped_at_t2_until_timer_h() -> None:
    table, server = created()
    busy = response(486)
    server.respond(busy, now=0.0)
    assert server.state is State.COMPLETED
    assert server.armed == {TimerName.G: 0.5, TimerName.H: 32.0}
    times = []
    while server.state is State.COMPLETED:
        now = table.next_deadline() or 0.0
        events = fired(table, now)
        if events == [sent(busy.to_bytes())]:
            times.append(now)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert events == [TimedOut(TimerName.H), Terminated()]
    assert len(table) == 0


def test_invite_retransmission_in_completed_gets_the_final_again() -> None:
    _, server = created()
    busy = response(486)
    server.respond(busy, now=0.0)
    assert server.receive_request(request(), now=0.3) == [sent(busy.to_bytes())]


def test_ack_for_non_2xx_is_absorbed_and_timer_i_ends_it() -> None:
    table, server = created()
    server.respond(response(486), now=0.0)
    ack = request("ACK", to_tag="as83kd")
    assert table.match_request(ack) is server
    assert server.receive_request(ack, now=1.0) == []
    assert server.state is State.CONFIRMED
    assert server.armed == {TimerName.I: 6.0}
    # Retransmitted ACKs and INVITEs are absorbed; no more Timer G.
    assert server.receive_request(ack, now=2.0) == []
    assert server.receive_request(request(), now=2.0) == []
    assert fired(table, 6.0) == [Terminated()]
    assert table.match_request(ack) is None


def test_reliable_ack_terminates_at_once_and_no_timer_g_runs() -> None:
    table, server = created(transport="TCP", destination=TCP_PEER)
    server.respond(response(404), now=0.0)
    assert server.armed == {TimerName.H: 32.0}
    assert server.receive_request(request("ACK", to_tag="as83kd"), now=1.0) == [Terminated()]
    assert len(table) == 0


def test_2xx_moves_to_accepted_absorbs_invites_and_sends_further_2xx() -> None:
    table, server = created()
    ok = response(200)
    assert server.respond(ok, now=0.0) == [sent(ok.to_bytes())]
    assert server.state is State.ACCEPTED
    assert server.armed == {TimerName.L: 32.0}
    # RFC 6026: the INVITE retransmission is absorbed, the 2xx is not re-sent by us.
    assert server.receive_request(request(), now=0.5) == []
    # A 2xx retransmission from the TU (a proxy forwarding one) still goes out.
    assert server.respond(ok, now=1.0) == [sent(ok.to_bytes())]
    assert server.respond(response(486), now=1.0) == []
    assert server.respond(response(300), now=1.0) == []  # the first status past the 2xx
    assert fired(table, 32.0) == [Terminated()]


def test_ack_for_2xx_has_its_own_branch_and_does_not_match() -> None:
    table, server = created()
    server.respond(response(200), now=0.0)
    assert table.match_request(request("ACK", branch="z9hG4bKe2e", to_tag="as83kd")) is None


def test_responses_after_completion_are_discarded() -> None:
    _, server = created()
    server.respond(response(486), now=0.0)
    assert server.respond(response(200), now=0.1) == []
    assert server.respond(response(180), now=0.1) == []


def test_server_transport_error_terminates() -> None:
    table, server = created()
    assert server.transport_error() == [TransportFailed(), Terminated()]
    assert len(table) == 0


# ----- non-INVITE server ----------------------------------------------------------------


def test_non_invite_trying_absorbs_retransmissions() -> None:
    table, server = created("OPTIONS")
    assert server.state is State.TRYING
    assert table.match_request(request("OPTIONS")) is server
    assert server.receive_request(request("OPTIONS"), now=0.1) == []


def test_non_invite_proceeding_and_completed_resend_the_last_response() -> None:
    table, server = created("REGISTER")
    trying = response(100, method="REGISTER", to_tag=None)
    ok = response(200, method="REGISTER")
    assert server.respond(trying, now=0.0) == [sent(trying.to_bytes())]
    assert server.state is State.PROCEEDING
    assert server.receive_request(request("REGISTER"), now=0.1) == [sent(trying.to_bytes())]
    assert server.respond(ok, now=0.2) == [sent(ok.to_bytes())]
    assert state_of(server) is State.COMPLETED
    assert server.armed == {TimerName.J: 32.2}
    assert server.receive_request(request("REGISTER"), now=0.3) == [sent(ok.to_bytes())]
    assert server.respond(response(500, method="REGISTER"), now=0.4) == []
    assert fired(table, 32.2) == [Terminated()]
    assert len(table) == 0


def test_a_completed_transaction_holds_its_request_as_bytes_and_reads_it_again() -> None:
    """While it only absorbs retransmissions, a transaction keeps its request as bytes (no
    message, no lines for the collector); read again, the request is the same, and it
    stays read."""
    _table, server = created("BYE")
    received = server.request
    wire = received.to_bytes()
    ok = response(200, method="BYE")
    server.respond(ok, now=0.0)
    assert (server._request, server._held) == (None, wire)
    assert server.receive_request(request("BYE"), now=0.1) == [sent(ok.to_bytes())]
    assert server._request is None  # a retransmission is answered from the bytes alone
    again = server.request
    assert again is not received
    assert (again.to_bytes(), again.method, again.call_id) == (wire, "BYE", received.call_id)
    assert (server.request, server._held) == (again, b"")


@pytest.mark.parametrize(
    "extra",
    [
        [("Subject", "w" * MAX_LINE_LENGTH)],
        [("Subject", "z")] * MAX_HEADER_FIELDS,
    ],
    ids=["a-line-past-the-limit", "past-the-field-limit"],
)
def test_a_request_the_edge_took_past_the_readers_limits_reads_back(
    extra: list[tuple[str, str]],
) -> None:
    """The edge's own edits (a stamped Via, an added Record-Route) can take a request that
    was just within the reader's limits past them: held as bytes, it still reads back."""
    table = TransactionTable(SETTINGS)
    received = request("BYE")
    for name, value in extra:
        received.add_header(name, value)
    with pytest.raises(SipParseError):
        parse_message(received.to_bytes())  # as it would be refused coming in
    server = table.create_server(received, UDP_PEER)
    server.respond(response(200, method="BYE"), now=0.0)
    assert server._request is None
    again = server.request
    assert again.to_bytes() == received.to_bytes()
    assert again.header_fields() == received.header_fields()


def test_reliable_non_invite_terminates_on_the_final_response() -> None:
    table, server = created("BYE", transport="TCP", destination=TCP_PEER)
    ok = response(200, method="BYE")
    assert server.respond(ok, now=0.0) == [sent(ok.to_bytes(), TCP_PEER), Terminated()]
    assert len(table) == 0


# ----- matching ---------------------------------------------------------------------------


def test_matching_needs_the_same_sent_by() -> None:
    table, server = created()
    assert table.match_request(request(sent_by="192.0.2.1:5060")) is server
    assert table.match_request(request(sent_by="192.0.2.99:5060")) is None
    assert table.match_request(request(sent_by="192.0.2.1:5070")) is None


def test_same_branch_different_method_is_another_transaction() -> None:
    table, invite = created()
    assert table.match_request(request("OPTIONS")) is None
    options = table.create_server(request("OPTIONS"), UDP_PEER)
    assert options is not invite
    assert table.match_request(request("OPTIONS")) is options


def test_cancel_finds_its_invite_and_gets_its_own_transaction() -> None:
    table, invite = created()
    cancel = request("CANCEL")
    assert table.match_request(cancel) is None
    assert table.match_cancel(cancel) is invite
    cancel_server = table.create_server(cancel, UDP_PEER)
    assert table.match_request(cancel) is cancel_server
    assert table.match_cancel(request("CANCEL", branch="z9hG4bKelse")) is None
    assert table.counts() == {
        "invite_client": 0,
        "non_invite_client": 0,
        "invite_server": 1,
        "non_invite_server": 1,
    }


def test_cancel_does_not_find_a_non_invite_transaction() -> None:
    table, _ = created("OPTIONS")
    assert table.match_cancel(request("CANCEL")) is None


# ----- RFC 2543 fallback (branch without the magic cookie) ------------------------------


def test_rfc2543_invite_retransmission_matches_on_the_dialog_fields() -> None:
    table, server = created(branch="oldstyle1")
    assert table.match_request(request(branch="oldstyle1")) is server
    assert table.match_request(request(branch="oldstyle1", call_id="other")) is None
    assert table.match_request(request(branch="oldstyle1", uri="sip:carol@example.com")) is None
    assert table.match_request(request(branch="oldstyle1", to_tag="x")) is None
    assert table.match_request(request(branch="oldstyle2")) is None  # the top Via differs


def test_rfc2543_ack_matches_with_the_to_tag_of_the_final_response() -> None:
    table, server = created(branch="oldstyle1")
    assert table.match_request(request("ACK", branch="oldstyle1", to_tag="as83kd")) is None
    server.respond(response(486, branch="oldstyle1", to_tag="as83kd"), now=0.0)
    assert table.match_request(request("ACK", branch="oldstyle1", to_tag="wrong")) is None
    ack = request("ACK", branch="oldstyle1", to_tag="as83kd")
    assert table.match_request(ack) is server
    assert server.receive_request(ack, now=0.1) == []
    assert server.state is State.CONFIRMED


def test_rfc2543_ack_for_2xx_reaches_the_tu_in_accepted() -> None:
    table, server = created(branch="oldstyle1")
    server.respond(response(200, branch="oldstyle1", to_tag="as83kd"), now=0.0)
    ack = request("ACK", branch="oldstyle1", to_tag="as83kd")
    assert table.match_request(ack) is server
    assert server.receive_request(ack, now=0.1) == [AckReceived(ack)]


def test_rfc2543_cancel_finds_its_invite() -> None:
    table, invite = created(branch="oldstyle1")
    assert isinstance(invite, InviteServerTransaction)
    assert table.match_cancel(request("CANCEL", branch="oldstyle1")) is invite
    assert table.match_cancel(request("CANCEL", branch="oldstyle1", call_id="x")) is None
    assert table.match_cancel(request("CANCEL", branch="oldstyle1", to_tag="t")) is None


def test_ack_does_not_create_a_transaction() -> None:
    table = TransactionTable(SETTINGS)
    with pytest.raises(ValueError, match="ACK does not create"):
        table.create_server(request("ACK"), UDP_PEER)
    assert len(table) == 0
