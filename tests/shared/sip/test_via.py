"""Via parsing: sent-protocol, sent-by, parameters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.sip.errors import SipParseError
from shared.sip.message import parse_message
from shared.sip.params import param_value, parse_params
from shared.sip.via import Via, branch_of, parse_via, parse_vias
from tests.examples import examples
from tests.shared.sip.torture import manifest_4475, rfc4475


def test_via_with_all_parameters() -> None:
    via = parse_via(
        "SIP/2.0/udp [2001:db8::1]:5070;branch=z9hG4bK1;received=192.0.2.1;rport=4000"
        ";maddr=224.2.0.1;ttl=16"
    )
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "[2001:db8::1]",
        5070,
    )
    assert (via.branch, via.received, via.rport, via.maddr, via.ttl) == (
        "z9hG4bK1",
        "192.0.2.1",
        4000,
        "224.2.0.1",
        16,
    )
    assert via.wants_rport
    assert via.sent_by == "[2001:db8::1]:5070"


def test_rport_request_and_fill_in() -> None:
    via = parse_via("SIP/2.0/UDP host.example.com;rport;branch=z9hG4bKx")
    assert via.wants_rport and via.rport is None
    filled = via.with_params(received="192.0.2.9", rport="5062")
    assert (
        str(filled) == "SIP/2.0/UDP host.example.com;rport=5062;branch=z9hG4bKx;received=192.0.2.9"
    )
    assert parse_via(str(filled)) == filled


def test_whitespace_in_sent_protocol_and_sent_by() -> None:
    via = parse_via("SIP / 2.0 / TCP   host.example.com : 5060 ;  branch = z9hG4bKy")
    assert via == Via("TCP", "host.example.com", 5060, (("branch", "z9hG4bKy"),))


def test_several_hops_in_one_value() -> None:
    assert [v.host for v in parse_vias("SIP/2.0/UDP a;branch=1, SIP/2.0/TCP b;branch=2")] == [
        "a",
        "b",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SIP/2.0 host", "malformed Via (sent-protocol)"),
        ("SIP/2.0/UDP", "malformed Via (sent-protocol or sent-by missing)"),
        ("SIP/2.0/UDP host;;", "malformed Via parameter"),
        ("SIP/2.0/UDP host;received=", "malformed Via parameter value"),
        ("SIP/2.0/UDP host junk", "malformed Via sent-by"),
        ("SIP/2.0/U@P host", "malformed Via transport"),
        ("S(P/2.0/UDP host", "malformed Via (sent-protocol)"),
        ("SIP/2.0/UDP host:port", "malformed port"),
    ],
)
def test_malformed_vias(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_via(text)
    assert caught.value.reason == reason


def test_bad_ttl_and_rport_raise_when_read() -> None:
    via = parse_via("SIP/2.0/UDP host;ttl=300;rport=x")
    with pytest.raises(SipParseError, match="malformed Via ttl"):
        _ = via.ttl
    with pytest.raises(SipParseError, match="malformed port"):
        _ = via.rport


@pytest.mark.parametrize("text", ["SIP/2@0/UDP h", "SIP/2.0 x/UDP h"])
def test_a_sent_protocol_version_other_than_2_0_must_be_a_token(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_a_spaced_sent_protocol_is_read_stripped() -> None:
    assert parse_via("SIP / 2.1 /UDP h").protocol == "SIP/2.1"


def _torture_vias() -> list[str]:
    values = []
    for name in manifest_4475():
        try:
            values += parse_message(rfc4475(name)).headers("via")
        except SipParseError:
            continue
    return values


@pytest.mark.parametrize("text", _torture_vias())
def test_the_branch_alone_is_the_whole_parse_s_branch(text: str) -> None:
    try:
        branch = parse_via(text).branch
    except SipParseError:
        return
    assert branch_of(text) == branch


@pytest.mark.parametrize(
    ("text", "branch"),
    [
        ("SIP/2.0/UDP h;branch=z9hG4bKa;rport", "z9hG4bKa"),
        ("SIP/2.0/UDP h ; BRANCH = z9hG4bKb", "z9hG4bKb"),
        ("SIP/2.0/UDP h:5060", None),
        ("SIP / 2.0 / UDP h;received=x", None),
        ("SIP/2.0/UDP bad host;branch=z9hG4bKc", "z9hG4bKc"),  # a sent-by it does not read
    ],
)
def test_the_branch_is_read_from_the_parameters_alone(text: str, branch: str | None) -> None:
    assert branch_of(text) == branch


def test_a_branch_in_malformed_parameters_is_not_read() -> None:
    with pytest.raises(SipParseError, match="malformed Via"):
        branch_of("SIP/2.0/UDP h;;branch=z9hG4bKa")


def branch_read_by(read: object, text: str) -> str | tuple[str] | None:
    """What `read(text)` gives: the branch, or the refusal's message as a 1-tuple."""
    try:
        return read(text)  # type: ignore[operator,no-any-return]
    except SipParseError as error:
        return (str(error),)


def branch_by_parameters(text: str) -> str | None:
    """The branch as the whole parameter parse reads it (what `branch_of` reads alone)."""
    semicolon = text.find(";")
    return None if semicolon < 0 else param_value(parse_params(text[semicolon:], "Via"), "branch")


PLAIN_PIECES = ["branch", "BRANCH", "Branch", "branchx", "branc", "rport", "=", "=", ";", ";"]


@settings(max_examples=examples(2000))
@given(st.lists(st.sampled_from([*PLAIN_PIECES, "z9hG4bKa", "x", "1"]), max_size=12))
def test_the_plain_branch_reads_as_the_parameters_do(pieces: list[str]) -> None:
    """Parameters without blanks or quotes take `branch_of`'s own reading: the same branch
    (the first, any case, "" for a flag) and the same refusals as `parse_params` gives."""
    text = "SIP/2.0/UDP h;" + "".join(pieces)
    assert branch_read_by(branch_of, text) == branch_read_by(branch_by_parameters, text)


@pytest.mark.parametrize(
    ("text", "branch"),
    [
        ("SIP/2.0/UDP h;rport;branch=z9hG4bKa;branch=z9hG4bKb", "z9hG4bKa"),
        ("SIP/2.0/UDP h;BRANCH=z9hG4bKa", "z9hG4bKa"),
        ("SIP/2.0/UDP h;branch", ""),
        ("SIP/2.0/UDP h;branchy=1;rport", None),
        ("SIP/2.0/UDP h;branch=", ("malformed Via parameter value",)),
        ("SIP/2.0/UDP h;branch=z9hG4bKa;", ("malformed Via parameter",)),
        ("SIP/2.0/UDP h;=z9hG4bKa", ("malformed Via parameter",)),
    ],
)
def test_plain_parameters_edge_cases(text: str, branch: str | tuple[str] | None) -> None:
    assert branch_read_by(branch_of, text) == branch
    assert branch_read_by(branch_by_parameters, text) == branch
