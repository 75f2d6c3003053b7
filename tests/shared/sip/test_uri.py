"""SIP/SIPS/TEL URI parsing, escaping and serialisation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.sip.errors import SipParseError
from shared.sip.uri import AbsoluteUri, SipUri, TelUri, UserSlot, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sips:alice:secret@Example.COM:5061;transport=tcp;lr?Subject=hi&Priority=urgent"
    )
    assert uri == SipUri(
        host="Example.COM",
        user="alice",
        password="secret",
        port=5061,
        params=(("transport", "tcp"), ("lr", None)),
        headers=(("Subject", "hi"), ("Priority", "urgent")),
        scheme="sips",
    )
    assert isinstance(uri, SipUri)
    assert uri.transport == "TCP"
    assert uri.param("LR") == ""
    assert uri.param("maddr") is None
    assert uri.host_port == "Example.COM:5061"


def test_escapes_are_decoded_and_reencoded() -> None:
    uri = parse_uri("sip:I%20have%20spaces@example.net;n%61me=v%61lue%25%34%31")
    assert uri == SipUri("example.net", "I have spaces", params=(("name", "value%41"),))
    assert str(uri) == "sip:I%20have%20spaces@example.net;name=value%2541"
    assert parse_uri(str(uri)) == uri


def test_percent_that_is_not_an_escape_is_literal() -> None:
    assert parse_uri("sip:100%zz@example.com") == SipUri("example.com", "100%zz")


def test_ipv6_hosts() -> None:
    assert parse_uri("sip:[2001:db8::10]:5070") == SipUri("[2001:db8::10]", port=5070)
    assert parse_uri("sip:[2001:db8::10:5070]") == SipUri("[2001:db8::10:5070]")
    with pytest.raises(SipParseError, match="malformed port"):
        parse_uri("sip:2001:db8::10")
    with pytest.raises(SipParseError, match="no closing bracket"):
        parse_uri("sip:[2001:db8::10")
    with pytest.raises(SipParseError, match="malformed IPv6 reference"):
        parse_uri("sip:[example.com]")


def test_tel_and_other_schemes() -> None:
    assert parse_uri("tel:+1-201-555-0123;phone-context=example.com") == TelUri(
        "+1-201-555-0123", (("phone-context", "example.com"),)
    )
    assert str(parse_uri("tel:+15550123")) == "tel:+15550123"
    assert parse_uri("urn:service:sos") == AbsoluteUri("urn", "service:sos")
    assert str(parse_uri("mailto:a@example.com")) == "mailto:a@example.com"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sip:", "malformed host"),
        ("sip:@example.com", "malformed SIP URI (empty user)"),
        ("sip:a@exa mple.com", "malformed URI (contains whitespace or control characters)"),
        ("sip:a@example.com:99999", "malformed port"),
        ("sip:a@example.com;;lr", "malformed URI parameter (empty name)"),
        ("sip:a@example.com?novalue", "malformed URI header"),
        ("example.com", "malformed URI (no scheme)"),
        ("tel:", "malformed tel URI (no number)"),
        ("9abc:x", "malformed URI (no scheme)"),
        ("urn:", "malformed URI (empty)"),
        ("sip:[2001:db8::1", "malformed IPv6 reference (no closing bracket)"),
        ("sip:[v4.example]", "malformed IPv6 reference"),
    ],
)
def test_malformed_uris(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_uri(text)
    assert caught.value.reason == reason


# ----- what the mutation run found unguarded ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice:se%20cret@example.com",  # a password, escaped
        "sip:alice@example.com?subject=a%20b&priority=urgent",  # URI headers
        "tel:+15551234;isub=12;phone-context=example.com;npdi",  # a valueless parameter
        "sip:[2001:db8::1]:5070;transport=tcp",
    ],
)
def test_uris_print_as_they_parse(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_an_upper_case_scheme_is_still_sip() -> None:
    uri = parse_uri("SIP:alice@example.com:5070")
    assert isinstance(uri, SipUri) and (uri.user, uri.port) == ("alice", 5070)


@pytest.mark.parametrize(("port", "ok"), [("65535", True), ("65536", False), ("0", True)])
def test_the_highest_port_is_65535(port: str, ok: bool) -> None:
    if ok:
        assert parse_uri(f"sip:example.com:{port}").port == int(port)  # type: ignore[union-attr]
        return
    with pytest.raises(SipParseError):
        parse_uri(f"sip:example.com:{port}")


def test_text_after_an_ipv6_reference_is_refused() -> None:
    with pytest.raises(SipParseError, match=r"^malformed host \(text after IPv6 reference\)$"):
        parse_uri("sip:[::1]x")
    uri = parse_uri("sip:[::1]")
    assert isinstance(uri, SipUri) and (uri.host, uri.port) == ("[::1]", None)


def test_a_user_part_that_is_not_utf8_round_trips() -> None:
    uri = parse_uri("sip:%FF%FEbob@example.com")
    assert str(uri) == "sip:%FF%FEbob@example.com"


def test_a_tel_uri_parameter_is_found_in_any_case() -> None:
    uri = parse_uri("tel:+14075551234;phone-context=example.com")
    assert isinstance(uri, TelUri)
    assert uri.param("Phone-Context") == "example.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:10.0.0.1:5070",
        "sip:old@gw.example.net;transport=tcp;x=%25",
        "sip:old:secret@[2001:db8::1]:5080;lr?subject=a%20b",
        "sips:gw.example.net",
    ],
)
@pytest.mark.parametrize("user", ["14075550100", "+14075550100", "a b%c", "1-407;x", ""])
def test_a_user_slot_reads_as_the_uri_with_that_user(text: str, user: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert UserSlot(uri).with_user(user) == str(replace(uri, user=user))
