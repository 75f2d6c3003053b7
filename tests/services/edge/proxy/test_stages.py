"""The policy stages' no-op default: the core always has one, and it lets everything through."""

from __future__ import annotations

from services.edge.proxy.actions import Action
from services.edge.proxy.core import Proxy
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import Hop, NumberRouter
from services.edge.proxy.stages import PolicyStages
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import MemoryTable

EDGE = Interface("udp", "192.0.2.10", 5060, 5060)
CALLER = Destination("udp", "198.51.100.20", 5070)
GATEWAY = Destination("udp", "203.0.113.1", 5060)


def _invite() -> Request:
    request = parse_message(
        b"INVITE sip:14075550100@192.0.2.10 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.20:5070;branch=z9hG4bK-stages\r\n"
        b"From: <sip:alice@198.51.100.20>;tag=a\r\nTo: <sip:14075550100@192.0.2.10>\r\n"
        b"Call-ID: stages@198.51.100.20\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(request, Request)
    return request


def test_a_proxy_without_policies_holds_the_no_op_stages() -> None:
    proxy = Proxy(Interfaces([EDGE]), NumberRouter(MemoryTable({}, {})))
    assert type(proxy.policies) is PolicyStages


def test_the_no_op_stages_refuse_nothing_and_change_nothing() -> None:
    stages = PolicyStages()
    request = _invite()
    before = request.to_bytes()
    actions: list[Action] = []
    hop = Hop(request.uri_text, GATEWAY)
    found = ([hop], 0)

    assert not stages.drop_flood(before, CALLER, 1.0, actions)
    assert not stages.refuse_connection(CALLER, 1.0, actions)
    assert not stages.screen(request, CALLER, 1.0, actions)
    assert stages.inbound(request) is None
    assert stages.admit_call(request, CALLER, 1.0) is None
    assert stages.decide(request, CALLER, "14075550100", found) is found
    stages.outgoing(request, None, hop, EDGE)
    stages.call_ended(request.call_id)
    assert request.to_bytes() == before
    assert actions == []

    response = Response.build(200, "OK", [("Via", "SIP/2.0/UDP 198.51.100.20:5070")])
    sent = response.to_bytes()
    assert stages.restore_response(response)
    stages.upstream(response, response.top_via, EDGE)
    stages.failure_sent(request)
    assert response.to_bytes() == sent
    assert request.to_bytes() == before
