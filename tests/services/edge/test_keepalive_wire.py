"""Keepalives behind a real NAT whose UDP mappings expire fast: a registered phone that says
nothing stays reachable, and a phone that is gone is removed with an event.

The issue's figures scaled down twenty times to keep the run short: the
router's conntrack forgets a UDP mapping after 3 s of silence (both the
one-way and the "stream" timeouts, set in the router's own network
namespace: the host's are untouched), the edge pings every 1.5 s and gives
a binding up after 6 s without an answer, and the phone stays idle 15 s (five
times the mapping's life) before it is called. The NAT rewrites source ports
at random, so a forgotten mapping is not found again by chance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import NatNetwork, natted_network, run
from tests.services.edge.cluster import (
    DOMAIN,
    Cluster,
    next_event,
    registrar_events,
    running_cluster,
)
from tests.services.edge.support import SCENARIOS
from tests.services.edge.test_nat_wire import keys, natted_sipp
from tests.services.edge.test_subscribers_wire import dial_at_b, with_credentials

pytestmark = [pytest.mark.wire, pytest.mark.integration]

MAPPING_LIFE = 3
IDLE = 5 * MAPPING_LIFE
INTERVAL, TIMEOUT = 1.5, 6.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keepalive-wire")


@pytest.fixture(scope="module")
def network() -> Iterator[NatNetwork]:
    with natted_network() as created:
        in_router = ("ip", "netns", "exec", created.router_namespace, "sysctl", "-qw")
        for name in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            run(*in_router, f"net.netfilter.{name}={MAPPING_LIFE}")
        yield created


@pytest.fixture(scope="module")
def cluster(workdir: Path, network: NatNetwork) -> Iterator[Cluster]:
    with running_cluster(
        workdir,
        a_host=network.host_address,
        nat_keepalive_interval=str(INTERVAL),
        nat_keepalive_timeout=str(TIMEOUT),
    ) as running:
        yield running


async def test_an_idle_natted_phone_stays_reachable_then_goes_with_an_event(
    cluster: Cluster, network: NatNetwork, workdir: Path
) -> None:
    cluster.subscriber("idlephone")
    args = keys("idlephone", expires="300", contact_host=network.phone_address, contact_port="5062")
    args += ("-auth_uri", DOMAIN, "-oocsf", str(SCENARIOS / "phone_answer_keepalive.xml"))
    phone = natted_sipp(
        cluster, network, workdir, with_credentials(workdir, "phone", "idlephone"), args
    )
    cluster.wait_bindings("idlephone", 1)
    await asyncio.sleep(IDLE)  # no REGISTER, no call: only the edge's keepalives
    pinged = phone.received("OPTIONS")
    assert pinged >= IDLE / INTERVAL - 2, cluster.a.log()
    assert await asyncio.to_thread(dial_at_b, cluster, workdir, "idlephone") == 0
    assert phone.received("INVITE") == 1
    async with registrar_events(cluster.a.namespace) as heard:
        phone.stop()
        gone_at = time.monotonic()
        event = await next_event(
            heard, "registrar.binding.removed", f"sip:idlephone@{DOMAIN}", TIMEOUT + 10
        )
    assert event.data["cause"] == "unreachable"
    assert time.monotonic() - gone_at >= TIMEOUT - INTERVAL  # not before the timeout
    assert cluster.bindings("idlephone") == []
