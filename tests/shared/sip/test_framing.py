"""Stream framing: every split point, batches, keep-alives, hostile input."""

from __future__ import annotations

import pytest

from shared.sip.framing import PING, PONG, FrameEvent, FramingError, StreamFramer

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1;transport=tcp>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(SDP)
) + SDP
# Compact form, odd spacing, no body.
OPTIONS = (
    b"OPTIONS sip:example.com SIP/2.0\r\n"
    b"v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKopt\r\n"
    b"i: opt-1\r\n"
    b"L  :\t0\r\n"
    b"\r\n"
)
RESPONSE = b"SIP/2.0 200 OK\r\ncontent-LENGTH: 4\r\nCSeq: 1 OPTIONS\r\n\r\nbody"


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[FrameEvent]:
    events: list[FrameEvent] = []
    for chunk in chunks:
        events.extend(framer.feed(chunk))
    return events


def test_one_message_in_one_segment_is_returned_whole() -> None:
    assert StreamFramer().feed(INVITE) == [INVITE]


@pytest.mark.parametrize("message", [INVITE, OPTIONS, RESPONSE], ids=["invite", "compact", "resp"])
def test_every_split_point_yields_the_same_message(message: bytes) -> None:
    for cut in range(1, len(message)):
        framer = StreamFramer()
        assert feed_all(framer, [message[:cut], message[cut:]]) == [message], cut
        assert framer.buffered == 0


def test_byte_by_byte_feed_of_several_messages_and_keepalives() -> None:
    stream = INVITE + b"\r\n\r\n" + OPTIONS + RESPONSE + b"\r\n\r\n" + INVITE
    framer = StreamFramer()
    events = feed_all(framer, [stream[i : i + 1] for i in range(len(stream))])
    # The first CRLF of a split ping is reported as a pong at once (a pinging
    # client must not wait for it); the ping is still recognised and answered.
    assert events == [INVITE, PONG, PING, OPTIONS, RESPONSE, PONG, PING, INVITE]


def test_ping_split_after_first_crlf_is_reported_as_pong_then_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [PONG]
    assert framer.feed(b"\r\n") == [PING]
    assert framer.feed(OPTIONS) == [OPTIONS]


def test_ping_split_inside_its_second_crlf_waits_for_the_rest() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == [PING]


def test_many_messages_in_one_segment() -> None:
    batch = (INVITE + OPTIONS + RESPONSE) * 50
    events = StreamFramer().feed(batch)
    assert events == [INVITE, OPTIONS, RESPONSE] * 50


def test_many_messages_across_arbitrary_segments() -> None:
    batch = (INVITE + b"\r\n\r\n" + RESPONSE) * 20
    for size in (7, 64, 333, 1000):
        framer = StreamFramer()
        events = feed_all(framer, [batch[i : i + size] for i in range(0, len(batch), size)])
        assert [event for event in events if event is not PONG] == [INVITE, PING, RESPONSE] * 20
        assert framer.buffered == 0


def test_keepalives_between_messages() -> None:
    events = StreamFramer().feed(b"\r\n\r\n" + OPTIONS + b"\r\n" + OPTIONS + b"\r\n\r\n\r\n\r\n")
    assert events == [PING, OPTIONS, PONG, OPTIONS, PING, PING]


def test_lone_crlf_before_message_is_a_pong_not_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + OPTIONS) == [PONG, OPTIONS]
    # The next message's leading bytes must not be mistaken for half a ping.
    assert framer.feed(OPTIONS) == [OPTIONS]


def test_missing_content_length_is_fatal() -> None:
    message = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n"
    events = StreamFramer().feed(OPTIONS + message + OPTIONS)
    assert events == [OPTIONS, FramingError("missing Content-Length on a stream transport")]


def test_framer_ignores_input_after_an_error() -> None:
    framer = StreamFramer()
    framer.feed(b"OPTIONS sip:a SIP/2.0\r\n\r\n")
    assert framer.feed(OPTIONS) == []


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"Content-Length: -1", "bad Content-Length '-1'"),
        (b"Content-Length: abc", "bad Content-Length 'abc'"),
        (b"Content-Length: 99999999999999999999", "bad Content-Length '99999999999999999999'"),
        (b"Content-Length: 3\r\nl: 4", "conflicting Content-Length headers"),
        # Each one is read, not only the first and the last:
        (
            b"Content-Length: 3\r\nContent-Length: 4\r\nContent-Length: 3",
            "conflicting Content-Length headers",
        ),
    ],
)
def test_bad_content_length_is_fatal(header: bytes, reason: str) -> None:
    message = b"OPTIONS sip:a SIP/2.0\r\n" + header + b"\r\n\r\n"
    assert StreamFramer().feed(message) == [FramingError(reason)]


def test_duplicate_equal_content_length_is_accepted() -> None:
    message = b"SIP/2.0 200 OK\r\nContent-Length: 2\r\nl: 2\r\n\r\nok"
    assert StreamFramer().feed(message) == [message]


def test_header_names_merely_starting_with_l_are_not_content_length() -> None:
    message = b"SIP/2.0 302 Moved\r\nLocation: x\r\nl:1\r\n\r\n!"
    assert StreamFramer().feed(message) == [message]


def test_oversized_header_block_is_refused_before_its_end_arrives() -> None:
    framer = StreamFramer(max_header_size=256)
    events = framer.feed(b"OPTIONS sip:a SIP/2.0\r\nX: " + b"a" * 300)
    assert events == [FramingError("header block exceeds the size limit")]
    assert framer.buffered == 0


def test_oversized_header_block_in_one_piece_is_refused() -> None:
    framer = StreamFramer(max_header_size=256)
    message = b"OPTIONS sip:a SIP/2.0\r\nX: " + b"a" * 300 + b"\r\nl: 0\r\n\r\n"
    assert framer.feed(message) == [FramingError("header block exceeds the size limit")]


def test_oversized_body_is_refused_as_soon_as_content_length_is_read() -> None:
    framer = StreamFramer(max_body_size=1000)
    events = framer.feed(b"OPTIONS sip:a SIP/2.0\r\nl: 1001\r\n\r\n")
    assert events == [FramingError("Content-Length 1001 exceeds the body limit")]


def test_body_is_not_scanned_for_headers_or_keepalives() -> None:
    body = b"\r\n\r\nContent-Length: 999\r\n\r\n"
    message = b"MESSAGE sip:a SIP/2.0\r\nl: %d\r\n\r\n" % len(body) + body
    framer = StreamFramer()
    assert feed_all(framer, [message[:40], message[40:], OPTIONS]) == [message, OPTIONS]


def test_stray_cr_between_messages_is_fatal() -> None:
    assert StreamFramer().feed(b"\rX") == [FramingError("stray CR between messages")]


def test_partial_message_stays_buffered() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE[:-5]) == []
    assert framer.buffered == len(INVITE) - 5
    assert framer.feed(INVITE[-5:] + OPTIONS[:3]) == [INVITE]
    assert framer.buffered == 3


def test_a_ten_digit_content_length_is_read() -> None:
    message = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0000000002\r\n\r\nok"
    assert StreamFramer().feed(message) == [message]


def test_a_tab_before_the_colon_of_content_length_is_whitespace() -> None:
    message = b"OPTIONS sip:a SIP/2.0\r\nContent-Length\t: 2\r\n\r\nok"
    assert StreamFramer().feed(message) == [message]


def test_content_length_is_read_on_the_first_line_of_a_block_too() -> None:
    """A block starting with a stray LF has Content-Length as its first line: the framer
    still frames it by that (the parser refuses it for its start line; the stream goes on)."""
    block = b"\nContent-Length: 0\r\n\r\n"
    assert StreamFramer().feed(block + OPTIONS) == [block, OPTIONS]


def test_pongs_one_per_segment_after_our_pings_are_each_a_pong() -> None:
    """A phone's pong to each of our pings, each in its own segment: without `expect_pong`
    the second would complete a 'split ping' (a pong lost, and a pong sent back for it)."""
    framer = StreamFramer()
    for _ in range(3):
        framer.expect_pong()
        assert framer.feed(b"\r\n") == [PONG]
    framer.expect_pong()
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [PONG]
    # The expectation is spent: a split ping of the phone's own is recognised again.
    assert framer.feed(b"\r\n") == [PONG]
    assert framer.feed(b"\r\n") == [PING]
    framer.expect_pong()
    assert framer.feed(b"\r\n\r\n" + OPTIONS) == [PING, OPTIONS]  # a whole ping is a ping
