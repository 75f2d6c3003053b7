"""The SDP found in a body and put back: whole bodies, and multipart/mixed parts byte for byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.edge.proxy.bodies import sdp_of, with_sdp

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)
NEW = b"v=0\r\no=- 1 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
ISUP = b"\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x33\x63\x21\x43\x00\x00\x03"
MIXED = 'multipart/mixed;boundary="unique-boundary-1"'


def multipart(*parts: tuple[str, bytes], boundary: bytes = b"unique-boundary-1") -> bytes:
    body = b"preamble, ignored\r\n"
    for content_type, content in parts:
        body += b"--" + boundary + b"\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n"
        body += content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def test_a_whole_body_is_sdp_when_its_type_says_so_or_says_nothing() -> None:
    assert sdp_of(SDP, "application/sdp") == SDP
    assert sdp_of(SDP, "Application/SDP ; charset=x") == SDP
    assert sdp_of(SDP, None) == SDP
    assert sdp_of(b"", "application/sdp") is None
    assert sdp_of(b"<xml/>", "application/pidf+xml") is None
    assert with_sdp(SDP, "application/sdp", NEW) == NEW


def test_the_sdp_part_of_a_multipart_body_is_replaced_and_nothing_else() -> None:
    body = multipart(("application/ISUP;version=itu-t92+", ISUP), ("application/sdp", SDP))
    assert sdp_of(body, MIXED) == SDP
    rewritten = with_sdp(body, MIXED, NEW)
    assert rewritten == body.replace(SDP, NEW)
    assert sdp_of(rewritten, MIXED) == NEW


def test_boundaries_unquoted_compact_part_headers_and_the_first_sdp_part() -> None:
    body = (
        b"--b1\r\nc: application/sdp\r\n\r\n" + SDP + b"\r\n"
        b"--b1\r\nContent-Type: application/sdp\r\n\r\nsecond\r\n--b1--"
    )
    assert sdp_of(body, "multipart/mixed; boundary=b1") == SDP
    assert with_sdp(body, "Multipart/Mixed;Boundary=b1", NEW).endswith(b"second\r\n--b1--")


def test_a_part_whose_content_type_holds_a_colon_is_still_read() -> None:
    body = multipart(('application/sdp; x="a:b"', SDP))
    assert sdp_of(body, MIXED) == SDP


def test_a_multipart_body_without_an_sdp_part_or_that_does_not_parse_carries_none() -> None:
    assert sdp_of(multipart(("application/ISUP", ISUP)), MIXED) is None
    assert sdp_of(multipart(("application/sdp", SDP)), "multipart/mixed") is None  # no boundary
    unclosed = b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n" + SDP
    assert sdp_of(unclosed, MIXED) is None
    no_blank_line = b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n--unique-boundary-1--"
    assert sdp_of(no_blank_line, MIXED) is None
    headerless = b"--unique-boundary-1\r\n\r\n" + SDP + b"\r\n--unique-boundary-1--"
    assert sdp_of(headerless, MIXED) is None  # text/plain by RFC 2046
    assert sdp_of(multipart(("application/sdp", SDP)), "multipart/alternative;boundary=x") is None
    assert with_sdp(unclosed, MIXED, NEW) == NEW  # nothing found: the caller never asks this


PART = st.binary(max_size=60).filter(lambda data: b"--b0" not in data and not data.endswith(b"\r"))


@given(before=st.lists(PART, max_size=3), sdp=PART, after=st.lists(PART, max_size=3), new=PART)
def test_any_multipart_body_keeps_every_other_byte(
    before: list[bytes], sdp: bytes, after: list[bytes], new: bytes
) -> None:
    parts = [("text/plain", part) for part in before]
    parts += [("application/sdp", sdp)] + [("application/sdp", part) for part in after]
    body = multipart(*parts, boundary=b"b0")
    content_type = "multipart/mixed;boundary=b0"
    assert sdp_of(body, content_type) == sdp
    rewritten = with_sdp(body, content_type, new)
    assert sdp_of(rewritten, content_type) == new
    assert with_sdp(rewritten, content_type, sdp) == body


PIECES = st.sampled_from(
    [b"--b0", b"\r\n", b"\r\n\r\n", b"--", b"Content-Type: application/sdp", b"c:", b"v=0", b"x"]
)


@given(pieces=st.lists(PIECES, max_size=30), noise=st.binary(max_size=20))
def test_any_body_is_read_without_an_error(pieces: list[bytes], noise: bytes) -> None:
    """Whatever arrives (compiled too: a slice running backwards raises under mypyc)."""
    body = b"".join(pieces) + noise
    content_type = "multipart/mixed;boundary=b0"
    found = sdp_of(body, content_type)
    if found is not None:
        assert found in body
        assert sdp_of(with_sdp(body, content_type, b"new"), content_type) == b"new"
