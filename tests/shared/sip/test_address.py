"""name-addr / addr-spec parsing and serialisation."""

from __future__ import annotations

import pytest

from shared.sip.address import Address, parse_address, parse_address_list, tag_of
from shared.sip.errors import SipParseError
from shared.sip.message import parse_message
from shared.sip.uri import SipUri
from tests.shared.sip.torture import manifest_4475, rfc4475


def test_name_addr_with_quoted_display_name() -> None:
    address = parse_address('"Alice \\"A\\" Smith" <sip:alice@example.com;transport=udp>;tag=1')
    assert address == Address(
        SipUri("example.com", "alice", params=(("transport", "udp"),)),
        'Alice "A" Smith',
        (("tag", "1"),),
    )
    assert address.tag == "1"
    assert str(address) == '"Alice \\"A\\" Smith" <sip:alice@example.com;transport=udp>;tag=1'
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ('"Alice" <sip:a@example.com>', "Alice"),
        ('"" <sip:a@example.com>', ""),
        ('"a;b<c>,d" <sip:a@example.com>', "a;b<c>,d"),
        (r'"x\\"<sip:a@example.com>', "x\\"),  # an escaped backslash, then the closing quote
        (r'"x\" y" <sip:a@example.com>', 'x" y'),  # an escaped quote is inside
        (r'"x\\" y" <sip:a@example.com>', None),  # a quote after the closing one
        (r'"a \\" <sip:a@example.com>;x="<sip:b@example.com>"', "a \\"),
        (r'"x\\\"y" <sip:a@example.com>', 'x\\"y'),
        ('"caf\u00e9" <sip:a@example.com>', "caf\u00e9"),
    ],
)
def test_a_display_name_is_cut_at_its_closing_quote_with_or_without_escapes(
    text: str, display: str | None
) -> None:
    """A display name without a backslash is cut at the first quote after the opening one
    (no walk, no unescaping); with one, the walk decides which quote closes it."""
    if display is None:
        with pytest.raises(SipParseError):
            parse_address(text)
        return
    assert parse_address(text).display_name == display


def test_token_display_name_and_addr_spec_params() -> None:
    assert parse_address("Bob Jones <sip:bob@b.example>").display_name == "Bob Jones"
    spec = parse_address("sip:bob@b.example;user=phone;tag=x")
    assert spec.uri == SipUri("b.example", "bob")
    assert spec.params == (("user", "phone"), ("tag", "x"))
    assert str(spec) == "<sip:bob@b.example>;user=phone;tag=x"


def test_contact_parameters() -> None:
    contact = parse_address("<sip:a@192.0.2.1>;expires=3600;q=0.7")
    assert (contact.expires, contact.q) == (3600, 0.7)
    assert contact.with_param("expires", "0").expires == 0
    assert contact.with_param("x", None).params[-1] == ("x", None)
    with pytest.raises(SipParseError, match="q parameter out of range"):
        _ = parse_address("<sip:a@b>;q=1.5").q
    with pytest.raises(SipParseError, match="malformed Contact expires"):
        _ = parse_address("<sip:a@b>;expires=soon").expires


def test_lists_split_outside_quotes_and_brackets() -> None:
    addresses = parse_address_list('"Doe, John" <sip:j@a.example>, <sip:x@b.example;p=1,2>')
    assert [a.display_name for a in addresses] == ["Doe, John", None]
    assert len(addresses) == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty address"),
        ('"unterminated <sip:a@b>', "unterminated quoted string"),
        ('"x" sip:a@b', "malformed address (quoted display name without <URI>)"),
        ("<sip:a@b", "malformed address (no closing >)"),
        ("Bell, Alexander <sip:a@b>", "malformed display name (must be tokens or a quoted string)"),
        ("sip:a@b?x=y", "URI with '?' or ',' must be enclosed in <>"),
        ("< sip:a@b >", "malformed URI (contains whitespace or control characters)"),
        ("<sip:a@b>;;", "malformed address parameter"),
        ("<sip:a@b> junk", "malformed address (unexpected text before parameters)"),
    ],
)
def test_malformed_addresses(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_address(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize("text", ['<sip:a@example.com>;x="open', 'sip:a@example.com;x="open'])
def test_an_address_parameter_error_names_the_address(text: str) -> None:
    """In the name-addr form and the bare addr-spec form alike."""
    with pytest.raises(SipParseError, match=r"^unterminated quoted string in address$"):
        parse_address(text)


def test_a_backslash_in_a_display_name_is_escaped_when_written() -> None:
    address = Address(SipUri("example.com", "a"), "C:\\dir")
    assert str(address) == '"C:\\\\dir" <sip:a@example.com>'
    assert parse_address(str(address)) == address


def _from_and_to_of_the_torture_messages() -> list[str]:
    values = []
    for name in manifest_4475():
        try:
            message = parse_message(rfc4475(name))
        except SipParseError:
            continue
        values += message.headers("from") + message.headers("to")
    return values


@pytest.mark.parametrize("text", _from_and_to_of_the_torture_messages())
def test_the_tag_alone_is_the_whole_parse_s_tag(text: str) -> None:
    try:
        tag = parse_address(text).tag
    except SipParseError:
        return  # a malformed URI or display name: see the next test
    assert tag_of(text) == tag


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("<sip:a b@example.com>;tag=1", "1"),  # a URI it does not read
        ("Bell, Alexander <sip:a@example.com>;tag=43", "43"),  # nor a display name
        ("sip:a@example.com?x;tag=2", "2"),
        ("<sip:a@example.com;tag=uri-param>", None),  # in the URI: not the header's
        ("sip:a@example.com", None),
        ('"a;tag=no" <sip:a@example.com>;tag=3', "3"),  # quoted: the whole parse
    ],
)
def test_the_tag_is_read_without_the_rest_of_the_address(text: str, tag: str | None) -> None:
    assert tag_of(text) == tag


@pytest.mark.parametrize(
    "text", ["", "<sip:a@example.com;tag=1", "<sip:a@example.com>;;tag=1", '"open <sip:a@b>;tag=1']
)
def test_a_tag_in_malformed_parameters_is_not_read(text: str) -> None:
    with pytest.raises(SipParseError):
        tag_of(text)
