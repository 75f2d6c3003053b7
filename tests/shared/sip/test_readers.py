"""The readers' framing of received bytes: line limits, folds, and what a response keeps of
its wire form (the rest of the parser's cases are in test_message.py)."""

from __future__ import annotations

from shared.sip.message import MAX_LINE_LENGTH, Response, parse_message

TWO_VIAS = (
    b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, "
    b"SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n"
)


def test_an_unedited_response_is_relayed_as_the_bytes_received_in_bare_lf_too() -> None:
    data = b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\nl: 0\n\n"
    response = parse_message(data)
    assert isinstance(response, Response)
    assert response.to_bytes() == data


def test_an_edited_response_keeps_its_status_line_as_received() -> None:
    """Without a reason phrase nor its space (as some gateways send it), not respelled."""
    response = parse_message(b"SIP/2.0 200\r\n" + TWO_VIAS)
    assert isinstance(response, Response)
    response.pop_via()
    assert response.to_bytes().startswith(b"SIP/2.0 200\r\nVia: SIP/2.0/UDP b.example.com;")


def test_a_head_longer_than_the_line_limit_made_of_short_lines_is_read() -> None:
    """The line limit bounds each line, not the head."""
    line = b"X: " + b"y" * 97 + b"\r\n"
    data = b"OPTIONS sip:a@b SIP/2.0\r\n" + line * (MAX_LINE_LENGTH // len(line) + 1) + b"\r\n"
    assert len(parse_message(data).headers("x")) == MAX_LINE_LENGTH // len(line) + 1


def test_a_header_folded_with_a_tab_is_one_field() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: first\r\n\tsecond\r\nl: 0\r\n\r\n"
    assert parse_message(data).header("Subject") == "first second"


def test_a_crlf_line_in_a_bare_lf_head_is_written_back_with_one_cr() -> None:
    """The lenient bare-LF form lets a line end in CRLF all the same; the line is read
    without its CR, so an edited message writes it back as ``CR LF``, not ``CR CR LF``
    (a bare CR the reader refuses, downstream and when a held request is read again)."""
    data = (
        b"BYE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"To: <sip:bob@example.com>;tag=1\nFrom: <sip:a@example.com>;tag=2\nCall-ID: c\n"
        b"CSeq: 1 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    request = parse_message(data)
    assert request.to_bytes() == data  # unedited: as received
    assert request.header("via") == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"
    request.prepend_via("SIP/2.0/UDP 192.0.2.200;branch=z9hG4bKcm1")
    edited = request.to_bytes()
    assert b"\r\r" not in edited
    assert parse_message(edited).header_fields() == request.header_fields()
