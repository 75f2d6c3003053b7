"""RFC 4475 torture messages: what each parses to, and how each invalid one is rejected."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.sip.address import Address
from shared.sip.auth.digest import parse_credentials
from shared.sip.checks import check_proxy_request
from shared.sip.errors import SipError, SipParseError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import error_response
from shared.sip.uri import AbsoluteUri, SipUri
from shared.sip.values import CSeq
from tests.shared.sip.torture import manifest_4475, rfc4475


def request(name: str) -> Request:
    message = parse_message(rfc4475(name))
    assert isinstance(message, Request)
    message.validate()
    return message


def response(name: str) -> Response:
    message = parse_message(rfc4475(name))
    assert isinstance(message, Response)
    message.validate()
    return message


def test_manifest_covers_all_49_referenced_messages() -> None:
    categories = manifest_4475()
    referenced = [name for name, category in categories.items() if category != "unreferenced"]
    assert len(referenced) == 49


def test_wsinv_short_tortuous_invite() -> None:
    m = request("wsinv")
    assert m.method == "INVITE"
    assert m.uri == SipUri("chair-dnrc.example.com", "vivekg", params=(("unknownparam", None),))
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.header("s") == ""
    assert m.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.param("newparam") == "newvalue"
    assert contact.param("secondparam") == ""
    assert contact.q == 0.33
    (route,) = m.routes
    assert isinstance(route.uri, SipUri)
    assert route.uri.param("lr") == ""
    assert route.uri.param("unknownwith") == "value"
    assert m.content_length == 150
    assert m.body.startswith(b"v=0\r\n")


def test_intmeth_wide_range_of_valid_characters() -> None:
    m = request("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.param("fromparam''~+*_!.-%") == '"работающий"'
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.header("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escapes_are_decoded() -> None:
    m = request("esc01")
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert isinstance(m.to.uri, SipUri) and m.to.uri.user == "user"
    assert isinstance(m.from_.uri, SipUri) and m.from_.uri.user == "I have spaces"
    (contact,) = m.contacts
    assert contact.uri == SipUri(
        "host5.example.net", "caller", params=(("lr", None), ("name", "value%41"))
    )
    assert m.content_type == "application/sdp"


def test_escnull_keeps_escaped_nulls() -> None:
    m = request("escnull")
    assert isinstance(m.to.uri, SipUri) and m.to.uri.user == "null-\x00-null"
    users = [c.uri.user for c in m.contacts if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]


def test_esc02_percent_that_is_not_an_escape() -> None:
    m = request("esc02")
    assert m.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    hosts = [c.uri.host for c in m.contacts if isinstance(c.uri, SipUri)]
    assert hosts == ["host1.example.com", "host3.example.com"]
    assert m.header("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_display_name_without_space() -> None:
    assert request("lwsdisp").from_.display_name == "caller"


def test_longreq_long_values() -> None:
    m = request("longreq")
    assert len(m.vias) == 34
    assert m.vias[0].host == "sip33.example.com"
    assert m.vias[-1].received == "192.0.2.5"
    assert m.vias[-1].branch is not None and m.vias[-1].branch.endswith("longbranchvalue")
    assert m.to.display_name is not None and m.to.display_name.endswith("extreme proportion")
    assert isinstance(m.to.uri, SipUri) and m.to.uri.port == 6000
    assert m.from_.tag is not None
    assert m.from_.tag.startswith("1298298") and m.from_.tag.endswith("982982424")


def test_dblreq_ignores_trailing_octets() -> None:
    m = request("dblreq")
    assert m.method == "REGISTER"
    assert m.body == b""
    assert m.to_bytes().endswith(b"Content-Length: 0\r\n\r\n")
    assert b"INVITE" not in m.to_bytes()


def test_semiuri_semicolon_in_user() -> None:
    m = request("semiuri")
    assert m.uri == SipUri("example.com", "user;par=u@example.net")


def test_transports_unknown_transport_kept() -> None:
    transports = [v.transport for v in request("transports").vias]
    assert transports == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_multipart_body_untouched() -> None:
    data = rfc4475("mpart01")
    m = request("mpart01")
    assert m.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert len(m.body) == 553
    assert data.endswith(m.body)
    m.prepend_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKx")
    assert m.to_bytes().endswith(m.body)


def test_unreason_and_noreason_phrases() -> None:
    assert response("unreason").reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = response("noreason")
    assert (noreason.status, noreason.reason) == (100, "")


INVALID = {
    "badinv01": (400, "malformed Via parameter"),
    "clerr": (400, "Content-Length larger than the message"),
    "ncl": (400, "malformed Content-Length"),
    "scalar02": (400, "CSeq sequence number out of range"),
    "scalarlg": (400, "CSeq sequence number out of range"),
    "quotbal": (400, "unterminated quoted string"),
    "ltgtruri": (400, "Request-URI must not be enclosed in <>"),
    "lwsruri": (400, "malformed request line (need method SP URI SP version)"),
    "lwsstart": (400, "malformed request line (need method SP URI SP version)"),
    "trws": (400, "malformed request line (need method SP URI SP version)"),
    "escruri": (400, "Request-URI must not contain headers"),
    "baddate": (400, "malformed Date (must be RFC 1123 in GMT)"),
    "regbadct": (400, "URI with '?' or ',' must be enclosed in <>"),
    "badaspec": (400, "malformed URI (contains whitespace or control characters)"),
    "baddn": (400, "malformed display name (must be tokens or a quoted string)"),
    "badvers": (505, "SIP/7.0 is not supported"),
    "mismatch01": (400, "CSeq method does not match the request method"),
    "mismatch02": (400, "CSeq method does not match the request method"),
    "bigcode": (400, "malformed status code"),
    "insuf": (400, "missing From header"),
    "multi01": (400, "more than one To header"),
    "mcl01": (400, "more than one Content-Length header"),
}


def parse_and_validate(data: bytes) -> None:
    parse_message(data).validate()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_are_rejected_with_reason(name: str) -> None:
    status, reason = INVALID[name]
    with pytest.raises(SipParseError) as caught:
        parse_and_validate(rfc4475(name))
    assert (caught.value.status, caught.value.reason) == (status, reason)


def test_every_invalid_category_message_is_in_the_table() -> None:
    invalid = {name for name, category in manifest_4475().items() if category == "invalid"}
    assert invalid <= set(INVALID)


def via_lines(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n")[0]
    return [line for line in head.split(b"\r\n") if line.lower().startswith((b"via", b"v:"))]


REQUESTS_ANSWERED = sorted(name for name in INVALID if name not in ("scalarlg", "bigcode"))


@pytest.mark.parametrize("name", REQUESTS_ANSWERED)
def test_error_answer_built_for_each_rejected_request(name: str) -> None:
    data = rfc4475(name)
    with pytest.raises(SipParseError) as caught:
        parse_and_validate(data)
    answer = error_response(data, caught.value)
    assert answer is not None
    parsed = parse_message(answer)
    assert isinstance(parsed, Response)
    assert parsed.status == INVALID[name][0]
    assert INVALID[name][1] in parsed.reason or parsed.reason == "Version Not Supported"
    assert via_lines(answer) == via_lines(data)
    to = parsed.header("to")
    assert to is None or ";tag=" in to


@pytest.mark.parametrize("name", ["scalarlg", "bigcode"])
def test_invalid_responses_are_dropped_not_answered(name: str) -> None:
    data = rfc4475(name)
    with pytest.raises(SipParseError) as caught:
        parse_and_validate(data)
    assert error_response(data, caught.value) is None


def test_badbranch_parses_but_is_not_an_rfc3261_branch() -> None:
    from shared.sip.branch import is_rfc3261_branch

    m = request("badbranch")
    assert m.top_via.branch == "z9hG4bK"
    assert not is_rfc3261_branch(m.top_via.branch)


def proxy_check(name: str, supported: tuple[str, ...] = ()) -> SipError:
    m = request(name)
    with pytest.raises(SipError) as caught:
        check_proxy_request(m, supported=supported)
    return caught.value


def test_unkscm_unknown_request_uri_scheme_gets_416() -> None:
    m = request("unkscm")
    assert m.uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")
    assert proxy_check("unkscm").status == 416


def test_novelsc_atypical_scheme_parses_and_gets_416() -> None:
    m = request("novelsc")
    assert m.uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")
    assert proxy_check("novelsc").status == 416


def test_unksm2_unknown_schemes_in_headers_parse() -> None:
    m = request("unksm2")
    assert m.to.uri == AbsoluteUri("isbn", "2983792873")
    assert m.from_ == Address(AbsoluteUri("http", "//www.example.com"), None, (("tag", "3234233"),))
    assert [c.uri for c in m.contacts] == [AbsoluteUri("name", "John_Smith")]


def test_bext01_proxy_require_gets_420_with_unsupported() -> None:
    error = proxy_check("bext01")
    assert error.status == 420
    assert error.headers == (("Unsupported", "noProxiesSupportThis, norDoAnyProxiesSupportThis"),)
    answer = error_response(rfc4475("bext01"), error)
    assert answer is not None
    assert b"\r\nUnsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n" in answer


def test_zeromf_max_forwards_zero_gets_483() -> None:
    assert request("zeromf").max_forwards == 0
    assert proxy_check("zeromf").status == 483


def test_invut_unknown_content_type_is_syntactically_fine() -> None:
    m = request("invut")
    assert m.content_type == "application/unknownformat"
    check_proxy_request(m)


def test_regaut01_unknown_authorization_scheme_parses() -> None:
    credentials = parse_credentials(request("regaut01").header("Authorization") or "")
    assert credentials.scheme == "NoOneKnowsThisScheme"
    assert credentials.params == {"opaque-data": "here"}
    assert not credentials.is_digest


def test_bcast_broadcast_via_parses() -> None:
    assert [v.host for v in response("bcast").vias] == ["192.0.2.198", "255.255.255.255"]


def test_cparam01_addr_spec_param_belongs_to_header() -> None:
    (contact,) = request("cparam01").contacts
    assert contact.uri == SipUri("gw1.example.net", "+19725552222")
    assert contact.params == (("unknownparam", None),)


def test_cparam02_name_addr_param_belongs_to_uri() -> None:
    (contact,) = request("cparam02").contacts
    assert contact.uri == SipUri(
        "gw1.example.net", "+19725552222", params=(("unknownparam", None),)
    )
    assert contact.params == ()


def test_regescrt_escaped_header_in_contact_uri() -> None:
    (contact,) = request("regescrt").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == (("Route", "<sip:sip.example.com>"),)


def test_sdp01_accept_is_readable() -> None:
    assert request("sdp01").headers("Accept") == ["text/nobodyKnowsThis"]


def test_inv2543_rfc2543_syntax_accepted() -> None:
    m = request("inv2543")
    assert m.top_via.host == "iftgw.example.com"
    assert m.top_via.branch is None
    assert m.max_forwards is None
    assert m.from_.tag is None
    assert m.call_id == "inv2543.1717@ift.client.example.com"
    assert m.body.startswith(b"v=0")


def test_unreferenced_test_dat_is_rejected() -> None:
    with pytest.raises(SipParseError, match="malformed header line"):
        parse_message(rfc4475("test"))


def test_valid_messages_survive_forwarding_edits() -> None:
    for name, category in manifest_4475().items():
        if category != "valid":
            continue
        message = parse_message(rfc4475(name))
        if not isinstance(message, Request):
            continue
        before = message.vias
        message.decrement_max_forwards()
        message.prepend_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKfwd")
        message.add_record_route("<sip:proxy.example.com;lr>")
        again = parse_message(message.to_bytes())
        assert isinstance(again, Request)
        again.validate()
        assert again.vias[1:] == before, name
        assert again.top_via.host == "proxy.example.com"
        assert again.body == message.body


def _refusal(check: Callable[[], None]) -> tuple[int, str] | None:
    try:
        check()
    except SipError as error:
        return error.status, error.reason
    return None


@pytest.mark.parametrize("name", list(manifest_4475()))
def test_a_proxy_refuses_what_full_validation_refuses_with_the_same_answer(name: str) -> None:
    """The proxy checks less than `validate`, but every torture request refused whole is
    refused by the proxy's check too, for the same reason."""
    try:
        message = parse_message(rfc4475(name))
    except SipError:
        return  # refused while framing, before either check
    if isinstance(message, Request):
        assert _refusal(message.validate_for_proxy) == _refusal(message.validate)


@pytest.mark.parametrize(
    "header",
    [
        "Record-Route: <sip:p.example.com;lr",
        "Expires: soon",  # not a REGISTER's
        "Require: a b",
        "Via: SIP/2.0/UDP lower.example.com;branch=z9hG4bKl;ttl=999",
    ],
)
def test_what_a_proxy_does_not_use_is_left_to_whom_it_goes(header: str) -> None:
    """RFC 3261 §16.3 step 1: a value the proxy does not read is forwarded, not refused."""
    data = (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\n"
        f"{header}\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        "Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(data.encode())
    assert isinstance(message, Request)
    with pytest.raises(SipParseError):
        message.validate()
    message.validate_for_proxy()


def test_a_proxy_refuses_a_contact_it_may_rewrite() -> None:
    """The edge rewrites a NAT'd phone's Contact once past the check: checked up front."""
    data = rfc4475("regbadct").replace(b"REGISTER", b"INVITE")
    message = parse_message(data)
    assert isinstance(message, Request)
    with pytest.raises(SipParseError, match="must be enclosed in <>"):
        message.validate_for_proxy()
