"""The proxy's failure reports (`answers.py`): what the health service learns of a gateway."""

from __future__ import annotations

import pytest

from services.edge.proxy.actions import Publish
from shared.contracts.edge import GatewayFailed
from tests.services.edge.proxy.test_core import GW1, Run, answer, invite, only_request, run

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
