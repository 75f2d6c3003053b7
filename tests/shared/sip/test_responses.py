"""make_response and error_response."""

from __future__ import annotations

from shared.sip.errors import SipError, SipParseError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import error_response, make_response, reason_phrase

REQUEST = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK0;received=192.0.2.1\r\n"
    b"Max-Forwards: 69\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1@example.com\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Timestamp: 54\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def request() -> Request:
    message = parse_message(REQUEST)
    assert isinstance(message, Request)
    return message


def test_make_response_copies_dialog_headers_and_adds_tag() -> None:
    response = make_response(request(), 486, to_tag="b2", headers=[("Retry-After", "30")])
    assert response.to_bytes() == (
        b"SIP/2.0 486 Busy Here\r\n"
        b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK0;received=192.0.2.1\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:bob@example.com>;tag=b2\r\n"
        b"Call-ID: c1@example.com\r\n"
        b"CSeq: 7 INVITE\r\n"
        b"Retry-After: 30\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response)
    assert again.to_tag == "b2"


def test_trying_copies_timestamp_and_keeps_existing_to_tag() -> None:
    trying = make_response(request(), 100)
    assert trying.header("Timestamp") == "54"
    assert trying.reason == "Trying"
    assert trying.to_tag is None
    tagged = parse_message(
        REQUEST.replace(b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=x")
    )
    assert isinstance(tagged, Request)
    assert make_response(tagged, 200, to_tag="y").to_tag == "x"


def test_reason_phrases() -> None:
    assert reason_phrase(420) == "Bad Extension"
    assert reason_phrase(499) == "Bad Request"
    assert reason_phrase(799) == "Unknown"
    assert make_response(request(), 200, "Fine").reason == "Fine"


def test_error_response_from_bytes() -> None:
    broken = REQUEST.replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE")
    answer = error_response(broken, SipParseError("malformed CSeq sequence number"))
    assert answer is not None
    parsed = parse_message(answer)
    assert isinstance(parsed, Response)
    assert (parsed.status, parsed.reason) == (400, "Bad Request (malformed CSeq sequence number)")
    assert len(parsed.vias) == 2
    assert parsed.to_tag is not None
    assert parsed.header("CSeq") == "seven INVITE"


def test_error_response_from_parsed_request_and_extra_headers() -> None:
    error = SipError("Bad Extension", 420, (("Unsupported", "foo"),))
    answer = error_response(request(), error)
    assert answer is not None
    assert answer.startswith(b"SIP/2.0 420 Bad Extension\r\n")
    assert b"\r\nUnsupported: foo\r\n" in answer


def test_no_answer_without_usable_via_or_for_responses() -> None:
    no_via = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"
    assert error_response(no_via, SipParseError("missing Via header")) is None
    bad_via = b"OPTIONS sip:a@b SIP/2.0\r\nVia: nonsense\r\n\r\n"
    assert error_response(bad_via, SipParseError("malformed Via")) is None
    response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\n"
    assert error_response(response, SipParseError("x")) is None
    parsed = parse_message(response)
    assert error_response(parsed, SipParseError("x")) is None


def test_an_error_response_spells_its_headers_and_cleans_its_phrase() -> None:
    request = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    answer = error_response(request, SipError("bad\tthing\x00here", 400))
    assert answer is not None
    assert answer.startswith(b"SIP/2.0 400 Bad Request (bad thing here)\r\n")
    assert answer.endswith(b"\r\nContent-Length: 0\r\n\r\n")


def test_built_messages_keep_their_bodies() -> None:
    headers = [("Content-Type", "text/plain")]
    request = Request.build("MESSAGE", "sip:a@example.com", headers, body=b"hello")
    response = Response.build(200, "OK", headers, body=b"world")
    assert (request.body, response.body) == (b"hello", b"world")
    assert b"\r\nContent-Length: 5\r\n" in request.to_bytes()
    request.set_body(b"hi")
    assert request.to_bytes().endswith(b"\r\nContent-Length: 2\r\n\r\nhi")


# ----- survivors of the second mutation run -------------------------------------------------

IN_DIALOG = (
    b"BYE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com> ; tag=9\r\n"
    b"Call-ID:\r\n folded-X\r\nCSeq: 2 BYE\r\nContent-Length: 20\r\n\r\n"
    b"Via: SIP/2.0/UDP evil"
)


def test_an_error_response_copies_folded_headers_and_keeps_an_existing_to_tag() -> None:
    """Unfolded with one space, a trailing X kept (only CRs are stripped), and a To tag
    spelled with spaces is still a tag: no second one added."""
    answer = error_response(IN_DIALOG, SipParseError("x"))
    assert answer is not None
    assert b"\r\nCall-ID: folded-X\r\n" in answer
    assert b"\r\nTo: <sip:a@example.com> ; tag=9\r\n" in answer
    assert answer.count(b"tag=") == 2  # From's and To's, as received


def test_an_error_response_copies_no_header_from_the_body() -> None:
    answer = error_response(IN_DIALOG, SipParseError("x"))
    assert answer is not None
    assert b"evil" not in answer
    assert answer.count(b"\r\nVia: ") == 1


def test_an_error_response_reads_line_ends_from_the_first_line() -> None:
    """A request in bare LFs whose last header line ends in CRLF is still split at LFs."""
    mixed = IN_DIALOG.split(b"Content-Length")[0].replace(b"\r\n", b"\n")
    mixed = mixed.replace(b"CSeq: 2 BYE\n", b"CSeq: 2 BYE\r\n") + b"Max-Forwards: 1\r\n\r\n"
    answer = error_response(mixed, SipParseError("x"))
    assert answer is not None
    assert b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\n" in (
        answer
    )
    assert b"\r\nCSeq: 2 BYE\r\n" in answer


def test_an_error_response_answers_a_request_after_a_keep_alive_line_feed() -> None:
    """A line break first (a keep-alive glued to it) is no line-end style: still answered.

    Compiled by mypyc, reading the style by a bytes slice that starts past its end raised
    SystemError there: the request was not answered.
    """
    broken = REQUEST.replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE")
    for glued in (b"\n" + broken, b"\r\n" + broken):
        answer = error_response(glued, SipParseError("malformed CSeq sequence number"))
        assert answer is not None
        parsed = parse_message(answer)
        assert isinstance(parsed, Response)
        assert (parsed.status, len(parsed.vias)) == (400, 2)
        assert parsed.header("CSeq") == "seven INVITE"


def test_an_error_response_answers_a_top_via_without_parameters_in_a_list() -> None:
    """The top Via is the first element of its line even when it has no parameters."""
    listed = REQUEST.replace(
        b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1",
        b"Via: SIP/2.0/UDP p1.example.com, SIP/2.0/UDP p2.example.com;branch=z9hG4bK1",
    )
    answer = error_response(listed, SipParseError("x"))
    assert answer is not None
    assert b"\r\nVia: SIP/2.0/UDP p1.example.com, SIP/2.0/UDP p2.example.com;" in answer
