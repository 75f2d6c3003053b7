"""Proxy request checks (RFC 3261 §16.3)."""

from __future__ import annotations

import pytest

from shared.sip.checks import check_proxy_request
from shared.sip.errors import SipError
from shared.sip.message import Request, parse_message

BASE = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 5\r\n"
    b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n"
    b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\nProxy-Require: foo, bar\r\nContent-Length: 0\r\n\r\n"
)


def request(data: bytes = BASE) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    ("supported", "unsupported"),
    [
        ({"foo", "bar"}, None),
        ({"foo", "bar", "baz"}, None),
        ({"bar"}, "foo"),
        ({"foo"}, "bar"),
        (set(), "foo, bar"),
    ],
)
def test_a_request_passes_exactly_when_every_proxy_require_tag_is_supported(
    supported: set[str], unsupported: str | None
) -> None:
    """Passing is only meaningful beside failing: the same request, one tag fewer, is 420."""
    if unsupported is None:
        check_proxy_request(request(), supported=supported)
        return
    with pytest.raises(SipError) as caught:
        check_proxy_request(request(), supported=supported)
    assert (caught.value.status, caught.value.headers) == (420, (("Unsupported", unsupported),))


def test_without_proxy_require_nothing_needs_support() -> None:
    check_proxy_request(request(BASE.replace(b"Proxy-Require: foo, bar\r\n", b"")))


def test_unsupported_extension_is_420_listing_only_the_unsupported() -> None:
    with pytest.raises(SipError) as caught:
        check_proxy_request(request(), supported={"foo"})
    assert caught.value.status == 420
    assert caught.value.headers == (("Unsupported", "bar"),)


def test_tel_is_routable_but_unknown_scheme_is_416() -> None:
    check_proxy_request(
        request(BASE.replace(b"sip:a@example.com SIP", b"tel:+1555 SIP")), supported={"foo", "bar"}
    )
    with pytest.raises(SipError) as caught:
        check_proxy_request(
            request(BASE.replace(b"sip:a@example.com SIP", b"im:a@example.com SIP"))
        )
    assert (caught.value.status, caught.value.reason) == (416, "Unsupported URI Scheme")


@pytest.mark.parametrize("max_forwards", [b"Max-Forwards: 1\r\n", b"Max-Forwards: 70\r\n", b""])
def test_one_hop_left_or_none_said_may_be_forwarded(max_forwards: bytes) -> None:
    data = BASE.replace(b"Max-Forwards: 5\r\n", max_forwards)
    check_proxy_request(request(data), supported={"foo", "bar"})


def test_zero_max_forwards_is_483() -> None:
    with pytest.raises(SipError) as caught:
        check_proxy_request(
            request(BASE.replace(b"Max-Forwards: 5", b"Max-Forwards: 0")), supported={"foo", "bar"}
        )
    assert caught.value.status == 483


# ----- survivors of the second mutation run -------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (BASE.replace(b"Max-Forwards: 5", b"Max-Forwards: 0"), 483, "Too Many Hops"),
        (BASE, 420, "Bad Extension"),
    ],
)
def test_a_refusal_carries_the_rfc_reason_phrase(data: bytes, status: int, reason: str) -> None:
    """The reason is the RFC's phrase exactly, so the answer does not repeat it in brackets."""
    with pytest.raises(SipError) as raised:
        check_proxy_request(request(data))
    assert (raised.value.status, raised.value.reason) == (status, reason)
