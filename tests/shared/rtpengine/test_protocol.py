"""The ng protocol without I/O: request datagrams, cookies, replies matched and refused."""

from __future__ import annotations

import pytest

from shared.rtpengine.protocol import (
    Exchange,
    NgCommandError,
    NgProtocolError,
    encode_request,
    parse_reply,
)


def test_a_request_is_its_cookie_a_space_and_the_bencoded_parameters() -> None:
    datagram = encode_request("c1", "offer", {"call-id": "x", "sdp": "v=0"})
    assert datagram == b"c1 d7:call-id1:x7:command5:offer3:sdp3:v=0e"


def test_the_command_cannot_be_smuggled_among_the_parameters() -> None:
    with pytest.raises(ValueError, match="apart"):
        encode_request("c1", "ping", {"command": "delete"})


def test_a_reply_is_parsed_into_its_cookie_result_and_members() -> None:
    cookie, reply = parse_reply(b"abc_1 d6:result2:ok3:sdp3:v=0e")
    assert cookie == "abc_1"
    assert reply.result == "ok"
    assert reply.text("sdp") == "v=0"
    assert reply.text("missing") is None
    assert reply.checked("offer") is reply


def test_an_error_reply_raises_with_rtpengine_s_reason() -> None:
    _, reply = parse_reply(b"c d6:result5:error12:error-reason15:Unknown call-IDe")
    with pytest.raises(NgCommandError, match="Unknown call-ID") as raised:
        reply.checked("delete")
    assert raised.value.command == "delete"
    _, bare = parse_reply(b"c d6:result5:errore")
    with pytest.raises(NgCommandError, match="no reason given"):
        bare.checked("delete")


@pytest.mark.parametrize(
    ("datagram", "says"),
    [
        (b"", "no cookie"),
        (b"nocookie", "no cookie"),
        (b" d6:result2:oke", "no cookie"),
        (b"c" * 65 + b" d6:result2:oke", "no cookie"),
        (b"\xffc d6:result2:oke", "no cookie"),
        (b"c d6:result2:ok", "not bencode"),
        (b"c l2:oke", "not a dictionary"),
        (b"c d3:sdp1:xe", "no result"),
        (b"c d6:resulti1ee", "no result"),
        (b"c d6:result0:e", "no result"),
    ],
)
def test_a_malformed_reply_raises_saying_why(datagram: bytes, says: str) -> None:
    with pytest.raises(NgProtocolError, match=says):
        parse_reply(datagram)


def test_the_exchange_hands_back_only_awaited_replies_once() -> None:
    exchange = Exchange(prefix="p")
    first, datagram = exchange.request("ping", {})
    second, _ = exchange.request("ping", {})
    assert datagram == b"p_1 d7:command4:pinge"
    assert (first, second) == ("p_1", "p_2")
    received = exchange.receive(b"p_2 d6:result4:ponge")
    assert received is not None and received[0] == "p_2" and received[1].result == "pong"
    assert exchange.receive(b"p_2 d6:result4:ponge") is None  # a late duplicate
    assert exchange.receive(b"q_9 d6:result4:ponge") is None  # nobody asked
    assert exchange.strays == 2
    exchange.forget(first)
    assert exchange.receive(b"p_1 d6:result4:ponge") is None
    assert exchange.waiting == set()


def test_two_exchanges_do_not_share_cookies() -> None:
    one, two = Exchange(), Exchange()
    assert one.request("ping", {})[0] != two.request("ping", {})[0]
