"""Scalar header values and their range limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.sip import values
from shared.sip.errors import SipParseError
from shared.sip.values import (
    CSeq,
    parse_call_id,
    parse_content_length,
    parse_cseq,
    parse_date,
    parse_delta_seconds,
    parse_max_forwards,
    parse_token_list,
)


def test_cseq() -> None:
    assert parse_cseq("0009 \t INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    with pytest.raises(SipParseError, match="CSeq sequence number out of range"):
        parse_cseq("2147483648 INVITE")
    with pytest.raises(SipParseError, match="malformed CSeq"):
        parse_cseq("1")
    with pytest.raises(SipParseError, match="malformed CSeq sequence number"):
        parse_cseq("-1 INVITE")


def test_the_cseq_methods_read_without_the_pattern_are_tokens_the_pattern_takes() -> None:
    """The known methods skip the token pattern: each must be one it matches, and any other
    method is still matched by it, in either case."""
    for method in values._METHODS:
        assert values._TOKEN.fullmatch(method), method
        assert parse_cseq(f"1 {method}") == CSeq(1, method)
    assert parse_cseq("7 invite") == CSeq(7, "invite")
    assert parse_cseq("7 X-Custom.Method") == CSeq(7, "X-Custom.Method")
    for method in ("INV@ITE", "INVITE;", "BYE\x00", "<BYE>", "MESSAGE/2"):
        with pytest.raises(SipParseError, match="malformed CSeq"):
            parse_cseq(f"1 {method}")


def test_max_forwards_bounds() -> None:
    assert parse_max_forwards("0068") == 68
    assert parse_max_forwards("255") == 255
    with pytest.raises(SipParseError, match="Max-Forwards out of range"):
        parse_max_forwards("256")
    with pytest.raises(SipParseError, match="malformed Max-Forwards"):
        parse_max_forwards("٣")


def test_delta_seconds_and_content_length() -> None:
    assert parse_delta_seconds("4294967295", "Expires") == 2**32 - 1
    with pytest.raises(SipParseError, match="Expires out of range"):
        parse_delta_seconds("1" + "0" * 100, "Expires")
    assert parse_content_length("0") == 0
    with pytest.raises(SipParseError, match="malformed Content-Length"):
        parse_content_length("-5")


def test_call_id() -> None:
    assert parse_call_id("a84b4c76e66710@pc33.atlanta.com") == "a84b4c76e66710@pc33.atlanta.com"
    with pytest.raises(SipParseError, match="malformed Call-ID"):
        parse_call_id("has space")
    with pytest.raises(SipParseError, match="malformed Call-ID"):
        parse_call_id("")


def test_date_must_be_gmt() -> None:
    assert parse_date("Sat, 13 Nov 2010 23:29:00 GMT") == datetime(2010, 11, 13, 23, 29, tzinfo=UTC)
    assert parse_date("Sat, 13 Nov 2010 23:29:45 GMT") == datetime(
        2010, 11, 13, 23, 29, 45, tzinfo=UTC
    )
    with pytest.raises(SipParseError, match="must be RFC 1123 in GMT"):
        parse_date("Fri, 01 Jan 2010 16:00:00 EST")
    with pytest.raises(SipParseError, match="no such day"):
        parse_date("Sat, 31 Feb 2010 23:29:00 GMT")


def test_token_lists() -> None:
    assert parse_token_list("100rel, timer ,replaces") == ["100rel", "timer", "replaces"]
    assert parse_token_list("  ") == []
    with pytest.raises(SipParseError, match=r"^malformed option tag list$"):
        parse_token_list("a,,b")


def test_content_length_goes_up_to_2_to_the_31_minus_1() -> None:
    assert parse_content_length("2147483647") == 2**31 - 1
    with pytest.raises(SipParseError):
        parse_content_length("2147483648")
