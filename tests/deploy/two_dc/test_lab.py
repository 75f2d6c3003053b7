"""Two data centres on loopback (``deploy.two_dc.lab``), then DC 1 killed whole.

Each DC runs its own RabbitMQ node (two separate brokers, federating each
other's events exchange), edge, registrar and routing service as real
processes; the Redis primary is in DC 1, its replica in DC 2, one Sentinel per
DC and a tie-breaker.  Shown in order:

- a route change made through DC 1's routing service reaches DC 2's edge, and
  one made through DC 2's reaches DC 1's edge (the federated events);
- a call through DC 2 leaves its call events in DC 2 (each DC's accounting
  counts its own calls), while its route change crosses;
- a phone registered through DC 1's edge is called through DC 2's edge (the
  INVITE reaches it at its received address); one behind a NAT is reached
  through DC 1's edge (DC 2's edge mints the flow token, DC 1's checks it with the
  secret both read from the shared Redis); one
  that unregisters through DC 1 is no longer offered by DC 2's edge, which had
  it cached (the binding event crossed);
- every DC 1 process SIGKILLed (edge, services, broker, Redis, Sentinel): once
  DC 2's Redis is named primary, DC 2 routes a call to the gateway, reaches the
  phone registered before, accepts its re-registration, and applies a new
  route change; the phone behind a NAT is unreachable until it re-registers
  through DC 2, then reached;
- DC 1 started again (its Redis a replica of DC 2's, its broker with its data):
  a route change through DC 2 reaches DC 1's edge, which reaches the phone
  re-registered through DC 2 and the gateway.

The lab takes 10-40 s to start; the whole test stays under a minute on a quiet
machine.  Every wait is bounded; none is asserted on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deploy.two_dc.lab import NAMESPACE, TwoDcLab, two_dc_lab
from deploy.two_dc.peers import UdpPeer, call
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus

pytestmark = [pytest.mark.wire, pytest.mark.integration, pytest.mark.lab]

NUMBER = "1555"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[TwoDcLab]:
    with two_dc_lab(tmp_path / "lab") as running:
        yield running


@pytest.fixture
def gateway() -> Iterator[UdpPeer]:
    peer = UdpPeer()
    yield peer
    peer.close()


def phone(lab: TwoDcLab, user: str, *, behind_nat: bool = False) -> UdpPeer:
    lab.subscriber(user, f"{user}-pw")
    return UdpPeer(user, password=f"{user}-pw", behind_nat=behind_nat)


def test_a_phone_registered_in_dc1_is_called_through_dc2_which_serves_alone_once_dc1_dies(
    lab: TwoDcLab, gateway: UdpPeer
) -> None:
    version = lab.put(1, {
        "gateways/gw": {"address": f"sip:127.0.0.1:{gateway.port}"},
        "rules/gw": {"prefix": NUMBER, "gateways": ["gw"]},
    })  # fmt: skip # the table as a table
    lab.wait_routed(1, version)
    lag_to_dc2 = lab.wait_routed(2, version)
    version = lab.put(2, {"gateways/from-dc2": {"address": "sip:192.0.2.2"}})
    lag_to_dc1 = lab.wait_routed(1, version)

    alice, bob = phone(lab, "alice"), phone(lab, "bob")
    carol = phone(lab, "carol", behind_nat=True)
    for each in (alice, bob, carol):
        assert each.register(lab.dcs[1].edge_sip) == 200
    assert call(lab.dcs[2].edge_sip, alice.aor, alice) == 486  # alice answered
    # carol's NAT lets in only DC 1's edge: DC 2's edge goes through it (the flow token it
    # mints, DC 1's edge checks: their secret is the deployment's, in the shared Redis)
    assert call(lab.dcs[2].edge_sip, carol.aor, carol) == 486
    assert call(lab.dcs[2].edge_sip, bob.aor, bob) == 486  # and DC 2's edge has bob cached
    assert bob.register(lab.dcs[1].edge_sip, expires=0) == 200
    assert _until_status(lab, bob, 480)  # the removal crossed: DC 2 no longer offers bob

    # a call through DC 2 (its events) stays in DC 2; a route change through DC 2 crosses
    with heard(lab.dcs[1].broker_url) as in_dc1, heard(lab.dcs[2].broker_url) as in_dc2:
        assert call(lab.dcs[2].edge_sip, f"sip:{NUMBER}0002@example.com", gateway) == 486
        _until(lambda: _calls(in_dc2) != [], "DC 2 heard no call events")
        lab.put(2, {"gateways/crossing": {"address": "sip:192.0.2.5"}})
        _until(lambda: "routing.gateway.upserted" in in_dc1, "DC 1 heard no route change")
        assert _calls(in_dc1) == [], in_dc1

    lab.kill_dc(1)
    named = lab.wait_primary(2)
    lab.check_serving(2, [alice], gateway, NUMBER)
    # carol is reached only through DC 1's dead edge until she registers through DC 2
    assert call(lab.dcs[2].edge_sip, carol.aor, carol) != 486
    lab.reregister(2, carol)
    # the binding's change reaches DC 2's edge as an event just after the 200: a call at once
    # may still take the old way (408 after 2 s), the next one the new
    assert _until_status(lab, carol, 486)
    version = lab.put(2, {"gateways/after": {"address": "sip:192.0.2.3"}})
    lab.wait_routed(2, version)

    back = lab.restart_dc(1)  # DC 1's machines come back: it serves beside DC 2 again
    version = lab.put(2, {"gateways/back": {"address": "sip:192.0.2.4"}})
    lab.wait_routed(1, version)
    assert call(lab.dcs[1].edge_sip, alice.aor, alice) == 486  # registered through DC 2
    assert call(lab.dcs[1].edge_sip, f"sip:{NUMBER}0001@example.com", gateway) == 486
    print(  # the figures, for the docs (pytest -s)
        f"route change DC 1 -> DC 2 edge {lag_to_dc2:.3f}s, DC 2 -> DC 1 edge "
        f"{lag_to_dc1:.3f}s; DC 2's Redis named primary {named:.2f}s after DC 1 died; "
        f"DC 1 back and ready in {back:.1f}s"
    )


@contextmanager
def heard(broker_url: str) -> Iterator[list[str]]:
    """The types of the call and routing events a DC's broker delivers while inside (a bus
    of the lab's namespace on its own event loop, in a thread)."""
    kinds: list[str] = []
    ready, done = threading.Event(), threading.Event()

    async def listen() -> None:
        bus = AmqpBus(broker_url, NAMESPACE, "test", "listener")
        await bus.start()

        async def note(envelope: Envelope) -> None:
            kinds.append(envelope.type)

        await bus.subscribe(["edge.call.#", "routing.#"], note)
        ready.set()
        await asyncio.to_thread(done.wait)
        await bus.close()

    thread = threading.Thread(target=asyncio.run, args=(listen(),))
    thread.start()
    try:
        assert ready.wait(30), "the listener did not start"
        yield kinds
    finally:
        done.set()
        thread.join(30)


def _calls(kinds: list[str]) -> list[str]:
    return [kind for kind in kinds if kind.startswith("edge.call.")]  # one or in a batch


def _until(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _until_status(lab: TwoDcLab, peer: UdpPeer, status: int, within: float = 20.0) -> bool:
    """Whether a call to `peer` through DC 2 gets `status` within `within` seconds (by time,
    not a count of calls: a CI run on loaded cores made its 50 calls before the change
    crossed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if call(lab.dcs[2].edge_sip, peer.aor, peer) == status:
            return True
        time.sleep(0.1)
    return False
