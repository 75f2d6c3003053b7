"""Message framing, header access, forwarding edits and serialisation."""

from __future__ import annotations

import uuid

import pytest

from shared.sip.address import parse_address
from shared.sip.errors import SipError, SipParseError
from shared.sip.headers import KEY_MEMO
from shared.sip.message import (
    MAX_HEADER_FIELDS,
    MAX_LINE_LENGTH,
    MAX_MESSAGE_SIZE,
    Request,
    Response,
    find_head_end,
    parse_message,
    peek_call_id,
    peek_header,
)
from shared.sip.responses import error_response
from shared.sip.uri import SipUri
from shared.sip.via import Via

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKaaa, "
    b"SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKbbb\r\n"
    b"v: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKccc\r\n"
    b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Route: <sip:p3.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: Alice <sip:alice@example.com>;tag=abc\r\n"
    b"t: <sip:bob@example.com>\r\n"
    b"i: call-1@example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:alice@192.0.2.1>;expires=60;q=0.5\r\n"
    b"Subject: first line\r\n"
    b"  second line\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def invite() -> Request:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    return message


def test_unedited_message_serialises_to_the_received_bytes() -> None:
    message = invite()
    assert message.to_bytes() is INVITE


def test_compact_and_long_names_are_the_same_header() -> None:
    message = invite()
    assert message.header("From") == message.header("f") == "Alice <sip:alice@example.com>;tag=abc"
    assert message.header("CALL-ID") == "call-1@example.com"
    assert message.headers("v") == message.headers("Via")
    assert len(message.headers("via")) == 3
    assert message.header("via") == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKaaa"
    assert message.header("X-Absent") is None
    assert message.headers("X-Absent") == []


def test_folded_header_is_unfolded_on_read() -> None:
    assert invite().header("Subject") == "first line second line"


def test_typed_accessors() -> None:
    message = invite()
    assert message.method == "INVITE"
    assert message.uri == SipUri("example.com", "bob")
    assert [v.branch for v in message.vias] == ["z9hG4bKaaa", "z9hG4bKbbb", "z9hG4bKccc"]
    assert message.top_via.port == 5060
    assert message.call_id == "call-1@example.com"
    assert (message.cseq.seq, message.cseq.method) == (1, "INVITE")
    assert message.from_tag == "abc"
    assert message.from_.display_name == "Alice"
    assert message.to_tag is None
    assert message.max_forwards == 70
    assert [r.uri.host for r in message.routes if isinstance(r.uri, SipUri)] == [
        "p1.example.com",
        "p2.example.com",
        "p3.example.com",
    ]
    (contact,) = message.contacts
    assert (contact.expires, contact.q) == (60, 0.5)
    assert message.content_type == "application/sdp"
    assert message.content_length == 4
    assert message.body == b"v=0\n"
    message.validate()


def test_forwarding_edits() -> None:
    message = invite()
    assert message.pop_route() == parse_address("<sip:p1.example.com;lr>")
    assert message.decrement_max_forwards() == 69
    message.prepend_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKfwd")
    message.add_record_route("<sip:proxy.example.com;lr>")
    message.set_uri("sip:bob@192.0.2.50:5080")
    wire = message.to_bytes()
    assert wire.startswith(b"INVITE sip:bob@192.0.2.50:5080 SIP/2.0\r\n")
    assert b"Route: <sip:p2.example.com;lr>\r\nRoute: <sip:p3.example.com;lr>\r\n" in wire
    assert b"Max-Forwards: 69\r\n" in wire
    assert b"\r\nRecord-Route: <sip:proxy.example.com;lr>\r\n" in wire  # spelled as usual
    assert b"Subject: first line\r\n  second line\r\n" in wire
    again = parse_message(wire)
    assert isinstance(again, Request)
    assert again.max_forwards == 69
    assert [v.branch for v in again.vias] == [
        "z9hG4bKfwd",
        "z9hG4bKaaa",
        "z9hG4bKbbb",
        "z9hG4bKccc",
    ]
    assert [str(r.uri) for r in again.record_routes] == ["sip:proxy.example.com;lr"]
    assert [str(r.uri) for r in again.routes] == ["sip:p2.example.com;lr", "sip:p3.example.com;lr"]
    assert again.uri == SipUri("192.0.2.50", "bob", port=5080)
    assert again.body == b"v=0\n"


def test_accessors_see_edits() -> None:
    message = invite()
    assert message.top_via.branch == "z9hG4bKaaa"
    message.prepend_via(Via("TCP", "proxy.example.com", 5061, (("branch", "z9hG4bKnew"),)))
    assert message.top_via.branch == "z9hG4bKnew"
    assert len(message.vias) == 4
    message.replace_top_via(message.top_via.with_params(received="192.0.2.99"))
    assert message.top_via.received == "192.0.2.99"
    assert len(message.vias) == 4


def test_pop_via_on_a_response() -> None:
    response = parse_message(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, "
        b"SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.pop_via().host == "a.example.com"
    assert response.to_bytes() == (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_max_forwards_zero_refuses_to_decrement() -> None:
    message = parse_message(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    with pytest.raises(SipError) as caught:
        message.decrement_max_forwards()
    assert (caught.value.status, caught.value.reason) == (483, "Too Many Hops")


def test_missing_max_forwards_is_added() -> None:
    message = parse_message(INVITE.replace(b"Max-Forwards: 70\r\n", b""))
    assert message.max_forwards is None
    assert message.decrement_max_forwards() == 69
    assert b"\r\nMax-Forwards: 69\r\n" in message.to_bytes()


def test_an_element_popped_from_a_spaced_field_leaves_it_spelled_as_usual() -> None:
    message = parse_message(INVITE.replace(b"Route: <sip:p1", b"Route \t: <sip:p1"))
    assert isinstance(message, Request)
    assert message.pop_route() == parse_address("<sip:p1.example.com;lr>")
    assert b"\r\nRoute: <sip:p2.example.com;lr>\r\nRoute: <sip:p3" in message.to_bytes()


def test_an_edited_message_is_serialised_once_until_edited_again() -> None:
    """A proxy sizes a request for the MTU, then its transaction sends it: one join, not two."""
    message = invite()
    message.prepend_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKfwd")
    wire = message.to_bytes()
    assert message.to_bytes() is wire
    message.decrement_max_forwards()
    assert message.to_bytes() is not wire and b"Max-Forwards: 69\r\n" in message.to_bytes()


def test_generic_header_edits() -> None:
    message = invite()
    message.add_header("X-Trace", "1")
    message.add_header("X-Trace", "0", first=True)
    assert message.headers("x-trace") == ["0", "1"]
    message.set_header("X-Trace", "only")
    assert message.headers("x-trace") == ["only"]
    assert message.remove_header("x-trace") == 1
    assert not message.has_header("X-Trace")
    message.set_header("X-New", "1")  # absent: added
    assert message.has_header("x-new") and message.headers("X-New") == ["1"]
    message.set_header("x-new", "2")
    assert message.headers("x-new") == ["2"]
    message.set_body(b"hello", "text/plain")
    again = parse_message(message.to_bytes(), stream=True)
    assert (again.body, again.content_type) == (b"hello", "text/plain")
    assert b"\r\nContent-Type: text/plain\r\n" in message.to_bytes()  # the usual spelling
    with pytest.raises(ValueError, match="line break"):
        message.add_header("X-Evil", "a\r\nVia: injected")


def test_copy_is_independent() -> None:
    original = invite()
    branch = original.copy()
    assert isinstance(branch, Request)
    branch.prepend_via("SIP/2.0/UDP proxy;branch=z9hG4bKcopy")
    branch.set_uri("sip:other@example.org")
    assert original.to_bytes() is INVITE
    assert len(branch.vias) == 4
    assert original.uri_text == "sip:bob@example.com"


def test_build_request_adds_content_length() -> None:
    request = Request.build(
        "OPTIONS",
        "sip:gw.example.com",
        [("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"), ("Max-Forwards", "70")],
    )
    assert request.to_bytes() == (
        b"OPTIONS sip:gw.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_header_fields_in_order() -> None:
    fields = invite().header_fields()
    assert fields[0] == (
        "Via",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKaaa, SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKbbb",
    )
    assert fields[1][0] == "v"
    assert ("Subject", "first line second line") in fields
    spaced = parse_message(INVITE.replace(b"CSeq:", b"X-TAX \t: 1\r\nCSeq:"))
    assert ("X-TAX", "1") in spaced.header_fields()  # the blanks before the colon only


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = INVITE.replace(b"l: 4\r\n", b"")
    message = parse_message(data)
    assert message.body == b"v=0\n"
    assert message.to_bytes().endswith(b"Content-Length: 4\r\n\r\nv=0\n")


def test_stream_requires_content_length() -> None:
    with pytest.raises(SipParseError, match="missing Content-Length on a stream transport"):
        parse_message(INVITE.replace(b"l: 4\r\n", b""), stream=True)
    with pytest.raises(
        SipParseError, match=r"^incomplete message: no empty line after the headers$"
    ):
        parse_message(INVITE[:100], stream=True)


def test_leading_keepalive_crlf_is_skipped() -> None:
    assert isinstance(parse_message(b"\r\n\r\n" + INVITE), Request)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty start line"),
        (
            b"INVITE sip:a@b SIP/2.0\r\n continued: x\r\n\r\n",
            "continuation line before the first header",
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n",
            "malformed header line (no name or colon)",
        ),
        (b"INVITE sip:a@b SIP/2.0\r\n: x\r\n\r\n", "malformed header line (no name or colon)"),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", "malformed header name"),
        (b"INV@TE sip:a@b SIP/2.0\r\n\r\n", "malformed method"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "malformed status code"),
        (b"SIP/2.0 099 Low\r\n\r\n", "malformed status code"),
        (b"SIP/2.0\r\n\r\n", "malformed status line"),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", "malformed SIP version"),
        (b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\nx", "more than one Content-Length header"),
        (b"INVITE sip:a@b SIP/2.0\r\nTo: \xff\r\n\r\n", None),
        # A datagram without its blank line loses its last line breaks, no other character:
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\x0c",
            "malformed header line (no name or colon)",
        ),
    ],
)
def test_framing_errors(data: bytes, reason: str | None) -> None:
    if reason is None:
        with pytest.raises(SipParseError, match=r"^header value is not valid UTF-8$"):
            parse_message(data).header("To")
        return
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert caught.value.reason == reason


BARE_BREAKS = {
    # Each once went unanswered and logged a ValueError when the edge
    # stamped `received` on the Via and wrote it back.
    "via-branch-bare-cr": b"branch=z9hG4bKa2\r;rport",
    "via-quoted-bare-cr": b'branch=z9hG4bKa2;rport;x="a\rb"',
    "via-branch-bare-lf": b"branch=z9hG4bKa2\n;rport",
    "via-quoted-bare-lf": b'branch=z9hG4bKa2;rport;x="a\nb"',
}


def with_via_params(params: bytes) -> bytes:
    return (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;" + params + b"\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: bare-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize("name", sorted(BARE_BREAKS))
def test_a_bare_cr_or_lf_in_a_header_is_refused_with_an_answerable_400(name: str) -> None:
    data = with_via_params(BARE_BREAKS[name])
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert (caught.value.status, caught.value.reason) == (
        400,
        "bare CR or LF inside a header field",
    )
    answer = error_response(data, caught.value)
    assert answer is not None
    parsed = parse_message(answer)  # itself free of bare line breaks
    assert isinstance(parsed, Response)
    assert parsed.status == 400
    assert parsed.top_via.branch is not None
    assert parsed.top_via.branch.startswith("z9hG4bKa2")
    assert parsed.call_id == "bare-1"


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x\ry\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x\ny\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x\n y\r\n\r\n",  # a fold needs CRLF
        b"OPTIONS sip:a\r@b SIP/2.0\r\nSubject: x\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\nSubject: x\ry\n\n",  # the bare-LF form
    ],
)
def test_a_bare_line_break_anywhere_in_the_head_is_refused(data: bytes) -> None:
    with pytest.raises(SipParseError, match="bare CR or LF"):
        parse_message(data)


def test_line_endings_and_folds_are_not_bare_breaks() -> None:
    assert parse_message(INVITE).header("Subject") == "first line second line"
    lf = INVITE.replace(b"\r\n", b"\n")
    assert parse_message(lf).header("Subject") == "first line second line"
    assert parse_message(b"OPTIONS sip:a@b SIP/2.0\nX: y\r\n\n").header("X") == "y"
    # In the bare-LF form a line may still end in CRLF, not only the last one.
    assert parse_message(b"OPTIONS sip:a@b SIP/2.0\nX: y\r\nZ: w\n\n").header("Z") == "w"


def test_bounds_on_hostile_input() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(b"X" * (MAX_MESSAGE_SIZE + 1))
    assert caught.value.status == 513
    many = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * MAX_HEADER_FIELDS + b"\r\n"
    with pytest.raises(SipParseError, match=r"^too many header fields$") as caught:
        parse_message(many)
    assert caught.value.status == 400
    ten_digits = BASE_OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 9999999999")
    with pytest.raises(SipParseError, match=r"^Content-Length out of range$"):
        parse_message(ten_digits, stream=True)
    long_line = b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"y" * MAX_LINE_LENGTH + b"\r\n\r\n"
    with pytest.raises(SipParseError, match="header line too long"):
        parse_message(long_line)


def test_missing_required_header_is_reported_on_access() -> None:
    message = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n")
    with pytest.raises(SipParseError, match="missing Call-ID header"):
        _ = message.call_id
    with pytest.raises(SipParseError, match="missing Via header"):
        message.validate()


def test_contact_wildcard() -> None:
    base = b"REGISTER sip:example.com SIP/2.0\r\nContact: *\r\nExpires: 0\r\nl: 0\r\n\r\n"
    message = parse_message(base)
    assert message.contact_is_wildcard
    assert message.contacts == []
    assert message.expires == 0
    mixed = parse_message(base.replace(b"Contact: *", b"Contact: *, <sip:a@b>"))
    with pytest.raises(SipParseError, match="only Contact value"):
        _ = mixed.contacts


PEEKED = (
    b"INVITE sip:14075550001@edge SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a84b4c76e66710@pc33\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    "message",
    [
        PEEKED,
        PEEKED.replace(b"\r\n", b"\n"),
        PEEKED.replace(b"Call-ID:", b"i:"),
        PEEKED.replace(b"Call-ID:", b"call-id  :\t"),
        PEEKED.replace(b"Call-ID:", b"CALL-ID:"),
        PEEKED.replace(b"Via:", b"VIA:").replace(b"Call-ID:", b"CALL-ID:"),
    ],
    ids=["canonical", "lf", "compact", "spaced", "upper", "upper-first-line"],
)
def test_a_header_is_peeked_in_any_spelling(message: bytes) -> None:
    assert peek_header(message, "call-id") == b"a84b4c76e66710@pc33"
    assert peek_header(message, "via") == b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"


def test_a_peeked_header_must_be_in_the_header_block() -> None:
    headers, body = PEEKED.replace(b"Call-ID: a84b4c76e66710@pc33\r\n", b"").split(b"\r\n\r\n")
    assert peek_header(headers + b"\r\n\r\n" + body, "call-id") is None
    assert peek_header(headers + b"\r\n\r\nCall-ID: in-the-body\r\n", "call-id") is None
    assert peek_header(b"\r\n\r\n", "call-id") is None
    assert peek_header(b"OPTIONS sip:x SIP/2.0\r\nbad line\r\n\r\n", "call-id") is None
    assert peek_header(PEEKED.replace(b"a84b4c76e66710@pc33", b""), "call-id") == b""


@pytest.mark.parametrize(
    "message",
    [
        PEEKED,
        PEEKED.replace(b"\r\n", b"\n"),
        PEEKED.replace(b"Call-ID:", b"i:"),
        PEEKED.replace(b"Call-ID:", b"CALL-ID:"),
        PEEKED.replace(b"a84b4c76e66710@pc33", b"spaced \t"),
        PEEKED.replace(b"Call-ID: a84b4c76e66710@pc33\r\n", b"") + b"Call-ID: in-the-body\r\n",
        PEEKED.replace(b"CSeq", b"\r\nCSeq"),  # a blank line just before it: body
        PEEKED.replace(b"Call-ID", b"\r\nCall-ID"),  # the same, right before
        PEEKED.replace(b"\r\n\r\n", b"\r\n\r\nv=0\n\nx"),  # a bare-LF blank in the body
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID: cut",
        b"\r\nCall-ID: first\r\ni: second\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\ni: head\n\nbody\r\nCall-ID: in-the-body\r\n",  # bare-LF head
    ],
)
def test_the_call_id_is_peeked_as_peek_header_reads_it(message: bytes) -> None:
    """`peek_call_id`'s fast path for the canonical spelling answers as `peek_header`."""
    assert peek_call_id(message) == peek_header(message, "call-id")


def test_the_first_of_the_usual_and_compact_spellings_is_peeked() -> None:
    mixed = PEEKED.replace(
        b"Via: SIP", b"v: SIP/2.0/UDP 10.0.0.1:40001;branch=z9hG4bKa\r\nVia: SIP"
    )
    assert peek_header(mixed, "via") == b"SIP/2.0/UDP 10.0.0.1:40001;branch=z9hG4bKa"


# ----- what the mutation runs found unguarded ---------------------------------------------

BASE_OPTIONS = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    b"Via: SIP/2.0/UDP g;branch=z9hG4bK0\r\n"
    b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"branch=z9hG4bK1", b"branch=z9hG4bK1;ttl=abc"),
        (b"branch=z9hG4bK1", b"branch=z9hG4bK1;rport=x"),
        (b"Content-Length: 0", b"Require: a b\r\nContent-Length: 0"),
    ],
)
def test_validate_reads_via_ttl_rport_and_require(old: bytes, new: bytes) -> None:
    message = parse_message(BASE_OPTIONS.replace(old, new))
    with pytest.raises(SipParseError):
        message.validate()


def test_a_response_keeps_its_body_and_a_popped_via_leaves_the_list() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Via: SIP/2.0/UDP g;branch=z9hG4bK0\r\nFrom: <sip:b@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\n"
        b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nok"
    )
    response = parse_message(data)
    assert isinstance(response, Response) and response.body == b"ok"
    assert [via.host for via in response.vias] == ["h", "g"]
    assert response.pop_via().host == "h"
    assert [via.host for via in response.vias] == ["g"]
    assert Response.build(180, "Ringing", []).status == 180


def test_a_bare_lf_datagram_body_longer_than_declared_is_trusted_and_relabelled() -> None:
    data = BASE_OPTIONS.replace(b"\r\n", b"\n").replace(b"Content-Length: 0", b"Content-Length: 9")
    message = parse_message(data + b"hi")
    assert message.body == b"hi"
    assert b"\r\nContent-Length: 2\r\n" in message.to_bytes()


@pytest.mark.parametrize(
    ("data", "stream", "reason"),
    [
        (
            BASE_OPTIONS.replace(b"Call-ID: c", b"Call-ID: " + b"c" * 9000),
            False,
            "header line too long",
        ),
        (
            BASE_OPTIONS.replace(b"Content-Length: 0\r\n", b""),
            True,
            "missing Content-Length on a stream transport",
        ),
    ],
)
def test_parse_errors_name_the_problem(data: bytes, stream: bool, reason: str) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_message(data, stream=stream)
    assert raised.value.reason == reason


# ----- survivors of the second mutation run -------------------------------------------------


def never_seen_name() -> str:
    """A header name no earlier test used: the name and peek memos are process-wide, and a
    name met before would skip the code that reads a new one."""
    return f"X-Fresh-{uuid.uuid4().hex}"


def test_a_new_header_name_is_read_with_or_without_a_space_after_its_colon() -> None:
    spaced, tight = never_seen_name(), never_seen_name()
    data = BASE_OPTIONS.replace(
        b"Call-ID: c", f"{spaced}: one\r\n{tight}:two\r\nCall-ID: c".encode()
    )
    message = parse_message(data)
    assert (message.header(spaced), message.header(tight)) == ("one", "two")


def test_a_new_one_letter_header_name_is_read() -> None:
    """A one-character name (its colon at offset 1) is a name like any other.

    The parser's memo of names is forgotten for `q:` first: mutmut runs each mutant's tests
    in a fork of the process that ran them all once, whose memo knows `q:` already.
    """
    KEY_MEMO.pop(b"q:", None)
    KEY_MEMO.pop(b"q", None)
    data = BASE_OPTIONS.replace(b"Call-ID: c", b"q: one\r\nCall-ID: c")
    assert parse_message(data).header("q") == "one"


def test_a_status_line_without_a_reason_phrase_reads_as_an_empty_reason() -> None:
    """RFC 3261's Reason-Phrase may be empty; some gateways send none, nor its space."""
    response = parse_message(b"SIP/2.0 200\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (200, "")


def test_leading_line_breaks_are_dropped_and_nothing_more() -> None:
    """Keep-alive CRLFs before a message go (RFC 3261 §7.5); the method after them stays whole,
    one starting with a letter that is no line break (an `X` extension method) included."""
    data = b"\r\n\r\n" + BASE_OPTIONS.replace(b"OPTIONS sip:", b"XPING sip:", 1)
    request = parse_message(data.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 XPING"))
    assert isinstance(request, Request)
    assert request.method == "XPING"


def test_a_header_never_peeked_before_is_found() -> None:
    name = never_seen_name()
    data = BASE_OPTIONS.replace(b"Call-ID: c", f"{name}: v1\r\nCall-ID: c".encode())
    assert peek_header(data, name.lower()) == b"v1"


def test_peeking_takes_the_first_spelling_even_at_the_very_start() -> None:
    assert peek_header(b"\nCall-ID: first\r\ni: second\r\n\r\n", "call-id") == b"first"


@pytest.mark.parametrize("blank", [b"\n\n", b"\n\r\n\r\n"])
def test_a_blank_line_at_the_very_start_ends_the_peeked_header_block(blank: bytes) -> None:
    assert peek_header(blank + b"Call-ID: in-the-body\r\n", "call-id") is None


def test_a_header_peeked_by_a_scan_keeps_its_first_character() -> None:
    """Other cases than the two spellings are found by a scan of the lines."""
    assert peek_header(PEEKED.replace(b"Call-ID: ", b"CALL-ID:"), "call-id") == (
        b"a84b4c76e66710@pc33"
    )


def test_the_head_ends_at_its_crlf_blank_line_whatever_bare_lf_blank_the_body_holds() -> None:
    data = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: c\r\n\r\nv=0\n\nx"
    end = data.find(b"\r\n\r\n")
    assert find_head_end(data) == (end, end + 4)


def test_a_malformed_header_name_does_not_end_the_scan_for_a_peeked_header() -> None:
    data = b"OPTIONS sip:x SIP/2.0\r\nBad Name: y\r\nCALL-ID: after\r\n\r\n"
    assert peek_header(data, "call-id") == b"after"


def test_a_removed_header_is_no_longer_read_from_the_cache() -> None:
    message = parse_message(BASE_OPTIONS)
    assert (message.call_id, len(message.vias)) == ("c", 2)
    assert message.remove_header("Call-ID") == 1
    with pytest.raises(SipParseError):
        message.call_id  # noqa: B018 - the property raises
    assert message.remove_header("via") == 2
    assert message.vias == []


def test_a_copied_response_keeps_its_body() -> None:
    data = BASE_OPTIONS.replace(b"OPTIONS sip:a@example.com SIP/2.0", b"SIP/2.0 200 OK")
    response = parse_message(data.replace(b"Content-Length: 0", b"Content-Length: 2") + b"ok")
    clone = response.copy()
    clone.remove_header("Via")
    assert clone.body == b"ok"
    assert clone.to_bytes().endswith(b"\r\n\r\nok")


def test_the_largest_number_of_header_lines_is_accepted() -> None:
    """MAX_HEADER_FIELDS lines, the start line included, parse; one more does not (above)."""
    data = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * (MAX_HEADER_FIELDS - 1) + b"\r\n"
    assert len(parse_message(data).headers("x")) == MAX_HEADER_FIELDS - 1


def test_a_message_too_large_says_so() -> None:
    with pytest.raises(SipParseError) as raised:
        parse_message(BASE_OPTIONS + b"x" * MAX_MESSAGE_SIZE)
    assert (raised.value.status, raised.value.reason) == (513, "message too large")


def test_a_reason_phrase_or_request_uri_that_is_not_utf8_is_named() -> None:
    with pytest.raises(SipParseError, match=r"^reason phrase is not valid UTF-8$"):
        parse_message(b"SIP/2.0 200 \xff\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(SipParseError, match=r"^Request-URI is not valid UTF-8$"):
        parse_message(b"OPTIONS sip:\xff@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")


def test_header_values_and_a_datagram_without_blank_line_keep_their_edge_characters() -> None:
    """Only whitespace is stripped off a value (an X at either end stays)."""
    data = BASE_OPTIONS.replace(b"Call-ID: c", b"Call-ID: XcX")
    assert parse_message(data).header("Call-ID") == "XcX"
    unterminated = data.removesuffix(b"Content-Length: 0\r\n\r\n") + b"Subject: endX\r\n"
    assert parse_message(unterminated).header("Subject") == "endX"


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"A: 1\n\nbody\n\nmore", (4, 6)),  # the first blank line, not a later one
        (b"\r\n\r\nbody", (0, 4)),
        (b"\n\nA: 1\r\n\r\n", (0, 2)),  # a bare-LF blank line first, before a CRLF one
    ],
)
def test_the_head_ends_at_the_first_blank_line(data: bytes, end: tuple[int, int]) -> None:
    assert find_head_end(data) == end


def test_a_header_value_with_a_line_break_is_refused() -> None:
    for value in ("a\nb", "a\rb"):
        with pytest.raises(ValueError, match="line break"):
            Request.build("OPTIONS", "sip:a@b", [("Subject", value)])


def test_max_forwards_added_once_and_read_back_after_each_decrement() -> None:
    message = parse_message(BASE_OPTIONS)
    assert message.max_forwards is None
    assert message.decrement_max_forwards() == 69
    assert message.decrement_max_forwards() == 68
    assert message.max_forwards == 68
    assert message.to_bytes().count(b"Max-Forwards") == 1
    assert b"\r\nMax-Forwards: 68\r\n" in message.to_bytes()
    present = parse_message(BASE_OPTIONS.replace(b"Call-ID: c", b"Max-Forwards: 5\r\nCall-ID: c"))
    assert present.max_forwards == 5
    present.decrement_max_forwards()
    assert present.max_forwards == 4


def test_a_new_via_goes_right_above_the_old_ones_in_canonical_spelling() -> None:
    data = BASE_OPTIONS.replace(b"SIP/2.0\r\nVia:", b"SIP/2.0\r\nMax-Forwards: 5\r\nVia:")
    message = parse_message(data)
    below = [via.host for via in message.vias]
    message.prepend_via("SIP/2.0/UDP p;branch=z9hG4bK2")
    assert b"\r\nMax-Forwards: 5\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK2\r\nVia: " in bytes(message)
    assert [via.host for via in message.vias] == ["p", *below]  # read again, not the memo
    assert message.top_via.host == "p"
    message.replace_top_via("SIP/2.0/UDP q;branch=z9hG4bK3")
    assert b"\r\nMax-Forwards: 5\r\nVia: SIP/2.0/UDP q;branch=z9hG4bK3\r\nVia: " in bytes(message)


def test_a_response_made_without_a_body_has_none() -> None:
    assert Response(200, "OK", keys=[], lines=[]).body == b""


def test_forgotten_fields_are_parsed_again_from_the_edited_lines() -> None:
    request = invite()
    top = request.top_via
    request.decrement_max_forwards()
    request.pop_route()
    request.forget_parsed()
    assert request.top_via is not top  # parsed again, not the memo
    assert request.top_via == top
    assert request.max_forwards == 69
    assert [str(route.uri) for route in request.routes] == [
        "sip:p2.example.com;lr",
        "sip:p3.example.com;lr",
    ]
    assert request.to_bytes() == invite().copy().to_bytes().replace(
        b"Max-Forwards: 70", b"Max-Forwards: 69"
    ).replace(b"<sip:p1.example.com;lr>, ", b"")


def test_the_tags_are_read_without_the_addresses_and_follow_edits() -> None:
    """A proxy reads tags on every message: a To URI it never reads is not checked for them."""
    message = parse_message(INVITE.replace(b"t: <sip:bob@example.com>", b"t: <sip:b b>;tag=x"))
    assert (message.from_tag, message.to_tag) == ("abc", "x")
    with pytest.raises(SipParseError):
        message.to  # noqa: B018 - the whole address is still checked when read
    message.set_header("To", "<sip:bob@example.com>;tag=y")
    assert message.to_tag == "y"
    assert message.copy().to_tag == "y"
    message.remove_header("From")
    with pytest.raises(SipParseError, match="missing From"):
        message.from_tag  # noqa: B018


def test_the_top_branch_is_the_first_hop_s_even_in_a_list() -> None:
    message = invite()
    assert message.top_branch == "z9hG4bKaaa"
    message.pop_via()
    assert message.top_branch == "z9hG4bKbbb"
    message.prepend_via("SIP/2.0/UDP p.example.com;branch=z9hG4bKp")
    assert message.top_branch == "z9hG4bKp"


@pytest.mark.parametrize(
    ("subject", "value"),
    [
        (b"caf\xc3\xa9\r\n \t na\xc3\xafve \t", "caf\xe9 na\xefve"),  # a fold between text
        (b"\r\n  x\r\n\ty", "x y"),  # a value starting on its continuation line
        (b"caf\xc3\r\n \xa9", None),  # UTF-8 cut by a fold: invalid before and after
    ],
)
def test_a_folded_value_reads_as_one_line_of_text(subject: bytes, value: str | None) -> None:
    message = parse_message(
        BASE_OPTIONS.replace(b"Content-Length", b"Subject: " + subject + b"\r\nContent-Length")
    )
    if value is None:
        with pytest.raises(SipParseError, match=r"^header value is not valid UTF-8$"):
            message.header("subject")
    else:
        assert message.header("subject") == value


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (b"", None),  # repeated Vias and Routes are lists, not repeats of a single header
        (b"CSeq: 2 INVITE\r\nc: text/plain\r\n", "more than one CSeq header"),
        (b"Expires: 1\r\nExpires: 2\r\nt: <sip:c@d>\r\n", "more than one To header"),
        (b"Subject: x\r\nSubject: y\r\n", None),  # not a single header
    ],
)
def test_the_proxy_check_refuses_a_single_header_repeated_naming_the_first_in_order(
    edit: bytes, reason: str | None
) -> None:
    message = parse_message(INVITE.replace(b"l: 4\r\n", edit + b"l: 4\r\n"))
    assert isinstance(message, Request)
    if reason is None:
        message.validate_for_proxy()
        return
    with pytest.raises(SipParseError, match=reason):
        message.validate_for_proxy()


@pytest.mark.parametrize("missing", [b"i: call-1@example.com\r\n", b"t: <sip:bob@example.com>\r\n"])
def test_the_proxy_check_names_the_missing_header(missing: bytes) -> None:
    message = parse_message(INVITE.replace(missing, b""))
    assert isinstance(message, Request)
    name = "Call-ID" if missing.startswith(b"i:") else "To"
    with pytest.raises(SipParseError, match=f"missing {name} header"):
        message.validate_for_proxy()
