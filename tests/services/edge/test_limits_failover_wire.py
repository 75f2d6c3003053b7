"""A call failing over to a capped gateway takes its channel there, across two edges.

Gateway g1 refuses every call (500, no Retry-After, so it stays in the route), g2 has
a channel cap of 1. A held call through edge A fails over from g1 to g2 and takes g2's
channel (g1's is given back); a call through edge B then fails over too and finds g2 at
its cap: g2 is skipped like a busy gateway, g2 never sees it, and the caller gets the
failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import SCENARIOS, Edge, sipp, wait_bound
from tests.services.edge.test_limits_wire import _workdirs, edge_settings, edges, leases, until

pytestmark = [pytest.mark.wire, pytest.mark.integration]

__all__ = ["_workdirs", "edge_settings", "edges"]  # the fixtures of the concurrency tests, shared


def test_a_failover_to_a_capped_gateway_takes_its_channel_across_edges(
    edges: tuple[Edge, Edge], tmp_path: Path
) -> None:
    first, second = edges
    g1, g2 = free_port(), free_port()
    first.route({"g1": g1, "g2": g2}, {"all": ("1", ["g1", "g2"])})
    version = first.put({
        "gateways/g1": {"address": f"sip:127.0.0.1:{g1}", "limits": {"max_concurrent": 10}},
        "gateways/g2": {"address": f"sip:127.0.0.1:{g2}", "limits": {"max_concurrent": 1}},
        "peers/pbx": {"addresses": ["127.0.0.1/32"], "trusted": True},
    })  # fmt: skip # the table as it is put, one resource a line
    second.wait_routed(version)
    refusing = tmp_path / "gateway_500.xml"
    text = (SCENARIOS / "gateway_reject.xml").read_text().replace("      Retry-After: 30\n", "")
    refusing.write_text(text.replace("[status] [reason]", "500 Server Internal Error"))
    sipp(tmp_path, refusing, g1, calls=2)
    capped = sipp(tmp_path, "gateway", g2, calls=2)
    wait_bound(g1)
    wait_bound(g2)
    held = ("-s", "14075551234", "-set", "hold", "8000")
    up = sipp(tmp_path, "caller", free_port(), remote=first.sip_port, args=held)
    until(lambda: leases(first.namespace, "gateway:g2") == 1)  # failed over, channel taken
    assert leases(first.namespace, "gateway:g1") == 0  # the one it left, given back
    turned = sipp(tmp_path, "caller", free_port(), remote=second.sip_port, args=held)
    assert turned.wait(timeout=30) != 0  # refused: g2 at its cap was skipped
    assert "SIP/2.0 500" in turned.messages()
    assert up.wait(timeout=30) == 0, up.errors()
    assert capped.received("INVITE") == 1
    until(lambda: leases(first.namespace, "gateway:g2") == 0)
