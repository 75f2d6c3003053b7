"""Property-based tests: generated messages round-trip; mutated messages fail only cleanly."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.sip.address import Address, tag_of
from shared.sip.checks import check_proxy_request
from shared.sip.errors import SipError
from shared.sip.message import Message, Request, Response, parse_message
from shared.sip.responses import error_response
from shared.sip.uri import SipUri
from shared.sip.via import Via, branch_of
from tests.examples import examples
from tests.shared.sip.torture import manifest_4475, rfc4475

TOKEN = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=12)
LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
IPV6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda groups: "[" + ":".join(f"{g:x}" for g in groups) + "]"
)
HOST = st.one_of(HOSTNAME, IPV4, IPV6)
PORT = st.none() | st.integers(1, 65535)
FREE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x7f"),
    max_size=12,
)
RESERVED_PARAMS = {"ttl", "rport", "received", "maddr", "branch", "tag", "expires", "q"}
PARAM_NAME = TOKEN.map(str.lower).filter(lambda name: name not in RESERVED_PARAMS)
"""Generic parameters only: the reserved ones have value grammars of their own."""
PARAMS = st.lists(st.tuples(PARAM_NAME, st.none() | TOKEN), max_size=3).map(tuple)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s))
    password = draw(st.none() | FREE_TEXT.filter(bool)) if user is not None else None
    return SipUri(
        host=draw(HOST),
        user=user,
        password=password,
        port=draw(PORT),
        params=draw(PARAMS),
        scheme=draw(st.sampled_from(["sip", "sips"])),
    )


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    display = draw(st.none() | FREE_TEXT)
    return Address(draw(sip_uris()), display, draw(PARAMS))


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: list[tuple[str, str | None]] = [("branch", "z9hG4bK" + draw(TOKEN))]
    params += draw(PARAMS)
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]))
    return Via(transport, draw(HOST), draw(PORT), tuple(params))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE"]) | TOKEN)
    headers = [("Via", str(v)) for v in draw(st.lists(vias(), min_size=1, max_size=4))]
    headers += [
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("From", str(draw(addresses()))),
        ("To", str(draw(addresses()))),
        ("Call-ID", draw(TOKEN) + "@" + draw(HOSTNAME)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    headers += [("Route", str(a)) for a in draw(st.lists(addresses(), max_size=3))]
    headers += [("Contact", str(a)) for a in draw(st.lists(addresses(), max_size=2))]
    headers += draw(st.lists(st.tuples(TOKEN.map(lambda t: "X-" + t), FREE_TEXT.map(str.strip))))
    body = draw(st.binary(max_size=64))
    return Request.build(method, draw(sip_uris()), headers, body)


def summary(message: Message) -> tuple[object, ...]:
    """Everything a proxy reads, as values."""
    start: tuple[object, ...]
    if isinstance(message, Request):
        start = (message.method, message.uri)
    else:
        assert isinstance(message, Response)
        start = (message.status, message.reason)
    return (
        start,
        message.vias,
        message.from_,
        message.to,
        message.call_id,
        message.cseq,
        message.max_forwards,
        message.routes,
        message.contacts,
        message.header_fields(),
        message.body,
    )


@settings(max_examples=examples(300))
@given(addresses(), st.none() | TOKEN)
def test_the_tag_alone_reads_as_the_whole_address_does(address: Address, tag: str | None) -> None:
    if tag is not None:
        address = address.with_param("tag", tag)
    assert tag_of(str(address)) == address.tag


@settings(max_examples=examples(300))
@given(vias())
def test_the_branch_alone_reads_as_the_whole_via_does(via: Via) -> None:
    assert branch_of(str(via)) == via.branch


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_generated_messages_round_trip(built: Request) -> None:
    wire = built.to_bytes()
    first = parse_message(wire, stream=True)
    first.validate()
    assert summary(first) == summary(built)
    again = parse_message(first.to_bytes(), stream=True)
    assert summary(again) == summary(first)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(requests(), vias(), addresses())
def test_forwarding_edits_round_trip(built: Request, via: Via, record_route: Address) -> None:
    message = parse_message(built.to_bytes())
    assert isinstance(message, Request)
    expected_vias = [via, *message.vias]
    expected_routes = message.routes[1:]
    if message.max_forwards:
        message.decrement_max_forwards()
    message.pop_route()
    message.prepend_via(via)
    message.add_record_route(record_route)
    again = parse_message(message.to_bytes(), stream=True)
    assert again.vias == expected_vias
    assert again.routes == expected_routes
    assert again.record_routes == [record_route]
    assert summary(again)[2:7] == summary(message)[2:7]


def exercise(data: bytes) -> None:
    """Everything a server might do with untrusted bytes; only SipError may escape."""
    try:
        message = parse_message(data)
        message.validate()
        _ = (message.top_via, message.contacts, message.header_fields(), message.to_bytes())
        if isinstance(message, Request):
            check_proxy_request(message)
            stamped = message.top_via.with_params(received="192.0.2.1", rport="5060")
            message.replace_top_via(stamped)  # as a proxy does (§18.2.1, RFC 3581)
            message.decrement_max_forwards()
            message.pop_route()
            message.prepend_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKfuzz")
            parse_message(message.to_bytes(), stream=True)
    except SipError as error:
        error_response(data, error)


SEEDS = [rfc4475(name) for name in sorted(manifest_4475())]


@settings(max_examples=examples(1500), suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "truncate", "insert", "delete"]),
            st.integers(0, 2**16),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_messages_only_raise_the_layers_error(
    seed: bytes, mutations: list[tuple[str, int, bytes]]
) -> None:
    data = bytearray(seed)
    for kind, position, payload in mutations:
        at = position % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= payload[0] or 0x20
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = payload
        else:
            del data[at : at + len(payload)]
    exercise(bytes(data))


@settings(max_examples=examples(300))
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_the_layers_error(data: bytes) -> None:
    exercise(data)
