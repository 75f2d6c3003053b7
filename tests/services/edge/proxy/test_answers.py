"""The proxy's state and failure reports (`answers.py`): its timers, what health learns."""

from __future__ import annotations

import pytest

from services.edge.proxy.actions import Publish
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.contracts.edge import GatewayFailed
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    TCP_IN,
    UDP_IN,
    Run,
    Table,
    answer,
    invite,
    only_request,
    run,
    sent_to,
    statuses,
)

__all__ = ["run"]  # the fixture, shared with test_core


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30),
        ("30;duration=60", 30),
        ("30 (maintenance)", 30),
        ("30(maintenance)", 30),  # RFC 3261 §20.33: no space needed before the comment
        ("30 (back (soon))", 30),  # comments nest
        ("soon", None),
    ],
)
def test_the_retry_after_of_a_failed_gateway_is_published_in_seconds(
    run: Run, header: str, seconds: int | None
) -> None:
    first = only_request(run.send(invite()), GW1)
    actions = run.send(answer(first, 503, f"Retry-After: {header}\r\n"), GW1)
    [event] = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(event, GatewayFailed)
    assert event.retry_after == seconds


def test_the_configured_t1_paces_the_retransmissions_to_a_gateway() -> None:
    """Timer A starts at T1 (RFC 3261 §17.1.1.2): an operator's T1, not the default 0.5 s."""
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    proxy = Proxy(interfaces, NumberRouter(Table()), ProxyTimers(t1=0.2))
    proxy.receive(invite(), CALLER, UDP_IN, 100.0)
    assert sent_to(proxy.expire(100.19), GW1) == []  # the control: not yet
    [again] = sent_to(proxy.expire(100.21), GW1)
    assert again.startswith(b"INVITE ")


def test_the_configured_t2_caps_the_retransmissions_of_a_non_invite() -> None:
    """Timer E doubles from T1 up to T2 (RFC 3261 §17.1.2.2): an operator's T2, not 4 s."""
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    proxy = Proxy(interfaces, NumberRouter(Table()), ProxyTimers(t1=0.5, t2=1.0))
    message = invite().replace(b"INVITE sip", b"MESSAGE sip").replace(b"1 INVITE", b"1 MESSAGE")
    proxy.receive(message, CALLER, UDP_IN, 100.0)
    assert len(sent_to(proxy.expire(100.51), GW1)) == 1  # T1
    assert len(sent_to(proxy.expire(101.51), GW1)) == 1  # 2·T1 = T2
    assert sent_to(proxy.expire(102.49), GW1) == []  # the control: not yet
    assert len(sent_to(proxy.expire(102.51), GW1)) == 1  # T2 again, not 4·T1


def test_a_forwarding_is_forgotten_when_its_transaction_ends_at_once_over_tcp(run: Run) -> None:
    """Over TCP no Timer J or I waits (§17.2.2, §17.2.1): a MESSAGE's transaction ends with
    its final response, an INVITE's with the ACK of its failure; no forwarding stays behind."""
    caller = Destination("tcp", CALLER.host, CALLER.port, connection_id=7)
    data = invite().replace(b"SIP/2.0/UDP 10.0.0.5", b"SIP/2.0/TCP 10.0.0.5")
    message = data.replace(b"INVITE sip", b"MESSAGE sip").replace(b"1 INVITE", b"1 MESSAGE")
    forwarded = only_request(run.send(message, caller, TCP_IN), GW1)
    assert len(run.proxy._forwardings) == 1
    assert statuses(run.send(answer(forwarded, 200), GW1), caller) == [200]
    assert run.proxy._forwardings == {}
    forwarded = only_request(run.send(data, caller, TCP_IN), GW1)
    assert statuses(run.send(answer(forwarded, 486), GW1), caller) == [486]
    ack = data.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
    run.send(
        ack.replace(b"example.com>\r\nCall-ID", b"example.com>;tag=gw\r\nCall-ID"), caller, TCP_IN
    )
    assert run.proxy._forwardings == {}
