"""Flow tokens: what one edge mints, any edge of the deployment opens; nobody else forges one."""

from __future__ import annotations

from services.edge.proxy.flows import FlowTokens, is_from_flow
from shared.sip.transport.destination import Destination

SECRET = b"deployment-secret"
NAT_FLOW = Destination("udp", "203.0.113.9", 40123)
TCP_FLOW = Destination("tcp", "2001:db8::7", 5061, connection_id=42)


def test_a_token_opens_to_the_flow_it_was_minted_for() -> None:
    tokens = FlowTokens(SECRET)
    assert tokens.open(tokens.mint(NAT_FLOW)) == NAT_FLOW
    assert tokens.open(tokens.mint(TCP_FLOW)) == TCP_FLOW


def test_another_edge_with_the_same_secret_opens_it() -> None:
    assert FlowTokens(SECRET).open(FlowTokens(SECRET).mint(TCP_FLOW)) == TCP_FLOW


def test_a_token_is_a_route_parameter_value() -> None:
    token = FlowTokens(SECRET).mint(TCP_FLOW)
    assert all(c.isalnum() or c in "-_." for c in token), token


def test_a_token_of_a_foreign_secret_is_refused() -> None:
    assert FlowTokens(SECRET).open(FlowTokens(b"someone-else").mint(NAT_FLOW)) is None


def test_a_tampered_flow_is_refused() -> None:
    tokens = FlowTokens(SECRET)
    encoded, mac = tokens.mint(NAT_FLOW).split(".")
    other, _ = tokens.mint(Destination("udp", "198.51.100.66", 5060)).split(".")
    assert tokens.open(f"{other}.{mac}") is None  # another flow under this flow's MAC
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert tokens.open(f"{encoded}.{flipped}") is None


def test_garbage_is_refused_without_an_exception() -> None:
    tokens = FlowTokens(SECRET)
    for token in ("", ".", "no-dot", "!!!.abc", tokens.mint(NAT_FLOW) + "x"):
        assert tokens.open(token) is None


def test_text_beyond_ascii_is_refused_without_an_exception() -> None:
    """A %-unescaped `cm-flow` may hold any text: a MAC beyond ASCII made
    `hmac.compare_digest` raise, a byte no UTF-8 holds (U+DCFF) the MAC's encoding."""
    tokens = FlowTokens(SECRET)
    encoded, mac = tokens.mint(NAT_FLOW).split(".")
    for token in (f"{encoded}.{mac[:-1]}\u00e9", f"{encoded}\udcff.{mac}", f"\u00e9.{mac}"):
        assert tokens.open(token) is None


def test_a_request_from_the_flow_itself_is_recognised() -> None:
    assert is_from_flow(TCP_FLOW, Destination("tcp", "2001:db8::7", 5061, connection_id=42))
    assert is_from_flow(NAT_FLOW, NAT_FLOW)
    assert not is_from_flow(NAT_FLOW, Destination("udp", "203.0.113.9", 40124))


def test_a_connection_id_names_the_flow_on_its_own_transport_only() -> None:
    """Each transport numbers its connections from 1: edge B's TCP connection 42 to us is
    not the phone's WebSocket 42, and a call from B goes down the phone's flow."""
    web = Destination("ws", "198.51.100.4", 51000, connection_id=42)
    assert not is_from_flow(web, Destination("tcp", "192.0.2.1", 40000, connection_id=42))
    assert is_from_flow(web, Destination("ws", "198.51.100.4", 51000, connection_id=42))


def test_the_token_format_is_fixed_so_every_version_opens_it() -> None:
    """During a rolling upgrade one edge's token is opened by an edge of another release:
    the payload, its encoding and the MAC's length (16 bytes of HMAC-SHA256) are pinned."""
    token = "dWRwIDIwMy4wLjExMy45IDQwMTIzIA.b1e67d310a305ea4501522d8143842e7"
    assert FlowTokens(SECRET).mint(NAT_FLOW) == token
    assert FlowTokens(SECRET).open(token) == NAT_FLOW


def test_the_connection_a_flow_names_is_the_flow_whatever_its_address_reads() -> None:
    """On a stream the connection is the flow: the same id from another port is still it."""
    assert is_from_flow(TCP_FLOW, Destination("tcp", "2001:db8::7", 40000, connection_id=42))
