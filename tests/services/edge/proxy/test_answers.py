"""The proxy's state and failure reports (`answers.py`): its timers, what health learns."""

from __future__ import annotations

import pytest

from services.edge.proxy.actions import Publish
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.contracts.edge import GatewayFailed
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    UDP_IN,
    Run,
    Table,
    answer,
    invite,
    only_request,
    run,
    sent_to,
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
