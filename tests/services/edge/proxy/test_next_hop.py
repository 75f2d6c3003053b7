"""Where a request goes next (`next_hop.py`): the edge itself, a Route, or the Request-URI."""

from __future__ import annotations

import pytest

from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    EDGE,
    GW1,
    GW2,
    TRUSTED_PEER,
    Run,
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
