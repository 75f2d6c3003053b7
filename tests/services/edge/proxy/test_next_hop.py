"""Where a request goes next (`next_hop.py`): the edge itself, a Route, or the Request-URI."""

from __future__ import annotations

import pytest

from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.routing_table.model import Gateway, Rule
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    EDGE,
    GW1,
    GW2,
    PEER,
    TRUSTED,
    TRUSTED_PEER,
    Run,
    Table,
    final_of,
    in_dialog,
    invite,
    only_request,
    run,
    statuses,
    trusting_run,
)

__all__ = ["run", "trusting_run"]  # the fixtures, shared with test_core

NEIGHBOUR = Destination("udp", EDGE, 5080)
"""A SIP service on the edge's own address but another port (a media server beside it)."""


def options(uri: str, max_forwards: int = 70, route: str = "", branch: str = "z9hG4bKo1") -> bytes:
    data = invite(uri=uri, extra=f"Route: {route}\r\n" if route else "", branch=branch)
    data = data.replace(b"INVITE", b"OPTIONS")
    return data.replace(b"Max-Forwards: 70", f"Max-Forwards: {max_forwards}".encode())


def test_an_options_with_no_hop_left_is_answered_by_the_edge_whatever_its_user(run: Run) -> None:
    """§11 / §16.3: with Max-Forwards 0 the proxy answers an OPTIONS itself, not 483."""
    assert statuses(run.send(options(f"sip:bob@{EDGE}", max_forwards=0))) == [200]
    # The control: one hop left, so it is routed like any request to bob (no registrar here).
    assert statuses(run.send(options(f"sip:bob@{EDGE}", 1, branch="z9hG4bKo2"))) == [404]


@pytest.mark.parametrize(
    ("route", "answered"),
    [
        (f"<sip:{EDGE}:5060;lr>", True),
        (f"<sip:{GW1.host};lr>", False),
        (f"<sip:{EDGE}:5080;lr>", False),  # our address, not our port
        ("<tel:+15551234>", False),  # no SIP URI: nobody's address, so not ours
    ],
)
def test_an_options_to_the_edge_is_answered_only_if_every_route_is_ours(
    trusting_run: Run, route: str, answered: bool
) -> None:
    actions = trusting_run.send(options(f"sip:{EDGE}", route=route))
    assert (statuses(actions) == [200]) is answered


def test_a_request_uri_on_our_address_but_not_our_port_is_a_next_hop(run: Run) -> None:
    """Without a Route, the Request-URI is the next hop unless it is one of our sockets."""
    bye = in_dialog("BYE", 70).replace(
        f"sip:gw@{GW2.host}:5060".encode(), b"sip:box@%s:5080" % EDGE.encode()
    )
    bye = bye.replace(f"Route: <sip:{EDGE}:5060;lr>\r\n".encode(), b"")
    assert only_request(run.send(bye, TRUSTED_PEER), NEIGHBOUR).method == "BYE"


def test_the_route_handed_to_a_strict_router_is_spelled_route(run: Run) -> None:
    data = in_dialog("BYE", 70).replace(
        f"Route: <sip:{EDGE}:5060;lr>".encode(),
        f"Route: <sip:{EDGE}:5060;lr>, <sip:{GW1.host}:5060>".encode(),
    )
    forwarded = only_request(run.send(data, TRUSTED_PEER), GW1)
    assert f"\r\nRoute: <sip:gw@{GW2.host}:5060>\r\n".encode() in forwarded.to_bytes()
    assert statuses(run.send(options(f"sip:{EDGE}", route=f"<sip:{GW1.host};lr>"))) == [403]


def test_a_strict_routers_last_route_is_the_request_uri_not_a_preloaded_route(run: Run) -> None:
    """§16.4: our URI in the Request-URI, the real one in the last Route: an untrusted
    caller's request is routed by that Request-URI, not refused for a route of its own."""
    data = invite(uri=f"sip:{EDGE}:5060;lr", extra=f"Route: <sip:14075551234@{GW2.host}>\r\n")
    actions = run.send(data)
    assert statuses(actions) == [100]
    assert only_request(actions, GW1).uri_text == f"sip:0014075551234@{GW1.host}"


# ----- a TLS socket's address written without a port: 5061 (RFC 3261 §19.1.2) ---------------


def tls_run() -> Run:
    """An edge on TLS port 5061 and UDP port 5080 (nothing of ours on 5060), trusting PEER."""
    interfaces = Interfaces(
        [Interface("udp", EDGE, 5080, 5080), Interface("tls", EDGE, 5061, 5061)]
    )
    table = Table()
    dialogs = DialogGate(RecordRouteSigner.ephemeral(), lambda source: source.host in TRUSTED)
    proxy = Proxy(
        interfaces, NumberRouter(table), ProxyTimers(fr=2.0, fr_inv=10.0), dialogs=dialogs
    )
    return Run(proxy, table)


TLS_IN = Listener("tls", EDGE, 5061)
TLS_PEER = Destination("tls", PEER.host, 5070)
OUR_TLS = f"{EDGE};transport=tls"
"""Our TLS socket as a URI host part without a port: the default port of TLS, 5061, is ours."""


def test_an_options_to_our_tls_address_without_a_port_is_answered_by_the_edge() -> None:
    run = tls_run()
    data = options(f"sip:{OUR_TLS}").replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")
    assert statuses(run.send(data, TLS_PEER, TLS_IN), TLS_PEER) == [200]


def test_an_options_to_the_edge_through_our_tls_route_without_a_port_is_answered() -> None:
    run = tls_run()
    data = options(f"sip:{OUR_TLS}", route=f"<sip:{OUR_TLS};lr>")
    data = data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")
    assert statuses(run.send(data, TLS_PEER, TLS_IN), TLS_PEER) == [200]


def test_an_in_dialog_request_along_our_tls_route_without_a_port_reaches_the_callee() -> None:
    run = tls_run()
    bye = in_dialog("BYE", 70).replace(
        f"<sip:{EDGE}:5060;lr>".encode(), f"<sip:{OUR_TLS};lr>".encode()
    )
    assert only_request(run.send(bye, TRUSTED_PEER, TLS_IN), GW2).method == "BYE"


def test_an_in_dialog_request_along_our_sips_route_without_a_port_reaches_the_callee() -> None:
    run = tls_run()
    bye = in_dialog("BYE", 70).replace(
        f"<sip:{EDGE}:5060;lr>".encode(), f"<sips:{EDGE};lr>".encode()
    )
    assert only_request(run.send(bye, TRUSTED_PEER, TLS_IN), GW2).method == "BYE"


def test_a_sips_request_uri_gets_our_sips_record_route_on_the_tls_side() -> None:
    run = tls_run()
    run.table.put("gateway", "9", Gateway(address=f"sips:{GW1.host}:5061"))
    run.table.put("rule", "r1555", Rule(prefix="1555", gateways=("9",)))
    data = invite(uri=f"sip:15551234@{EDGE}:5080")
    gateway = Destination("tls", GW1.host, 5061, pinned=True)
    forwarded = only_request(run.send(data, PEER, Listener("udp", EDGE, 5080)), gateway)
    assert forwarded.uri_text.startswith("sips:15551234@")
    routes = forwarded.headers("record-route")
    assert routes[0].startswith(f"<sips:{EDGE}:5061;lr;")
    assert routes[1].startswith(f"<sip:{EDGE}:5080;lr;")


def test_a_sip_request_routed_to_a_sips_hop_gets_our_sips_record_route_on_the_tls_side() -> None:
    run = tls_run()
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sips:{GW1.host}:5061;lr>\r\n")
    gateway = Destination("tls", GW1.host, 5061)
    forwarded = only_request(run.send(data, PEER, Listener("udp", EDGE, 5080)), gateway)
    routes = forwarded.headers("record-route")
    assert routes[0].startswith(f"<sips:{EDGE}:5061;lr;")
    assert routes[1].startswith(f"<sip:{EDGE}:5080;lr;")


def test_an_in_dialog_request_to_our_tls_address_without_a_port_and_route_is_481() -> None:
    run = tls_run()
    lost = in_dialog("BYE", 70).replace(f"Route: <sip:{EDGE}:5060;lr>\r\n".encode(), b"")
    lost = lost.replace(f"BYE sip:gw@{GW2.host}:5060".encode(), f"BYE sip:{OUR_TLS}".encode())
    final = final_of(run.send(lost, TRUSTED_PEER, TLS_IN), TRUSTED_PEER)
    assert (final.status, final.reason) == (481, "no dialog route to follow")


def test_a_loop_through_our_tls_via_without_a_port_is_482() -> None:
    """A Via's transport is upper-case (`TLS`): our TLS socket without a port is still ours."""
    run = tls_run()
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(
        run.send(data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS"), TLS_PEER, TLS_IN), GW1
    )
    ours = forwarded.headers("via")[0]
    assert ours.startswith(f"SIP/2.0/UDP {EDGE}:5080;")
    back = forwarded.to_bytes().replace(
        f"Via: SIP/2.0/UDP {EDGE}:5080;".encode(), f"Via: SIP/2.0/TLS {EDGE};".encode()
    )
    back = back.replace(
        b"Via: ", f"Via: SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgw9\r\nVia: ".encode(), 1
    )
    looped = final_of(run.send(back, GW1), GW1)
    assert (looped.status, looped.reason) == (482, "Loop Detected")


def test_a_loop_through_our_via_on_a_port_not_the_default_is_482() -> None:
    """Our Via's port is part of "ours": the UDP socket here is on 5080, not 5060."""
    run = tls_run()
    data = invite(uri="sip:bob@example.com", extra=f"Route: <sip:{GW1.host};lr>\r\n")
    forwarded = only_request(run.send(data, PEER, Listener("udp", EDGE, 5080)), GW1)
    assert forwarded.headers("via")[0].startswith(f"SIP/2.0/UDP {EDGE}:5080;")
    forwarded.prepend_via(f"SIP/2.0/UDP {GW1.host}:5060;branch=z9hG4bKgw1")
    looped = final_of(run.send(forwarded.to_bytes(), GW1), GW1)
    assert (looped.status, looped.reason) == (482, "Loop Detected")
