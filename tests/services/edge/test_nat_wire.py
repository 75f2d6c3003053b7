"""A phone behind a real NAT (network namespaces, nft masquerade): it registers through edge A,
is called, and calls out to a gateway whose re-INVITE and BYE must find their way back to it.

The phone's Via and Contact name 192.168.77.2, which this host cannot reach
(no route: only the router's mappings lead there); edge A listens on the
host's end of the router's public link and sees the phone's packets come
from the router's address with a port the NAT chose.  Every request that
reaches the phone got there through the NAT mapping its own request opened.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.netns import NatNetwork, natted_network
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import (
    SCENARIOS,
    Sipp,
    sipp,
    wait_bound,
)
from tests.services.edge.test_subscribers_wire import dial_at_b, with_credentials

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nat-wire")


@pytest.fixture(scope="module")
def network() -> Iterator[NatNetwork]:
    with natted_network() as created:
        yield created


@pytest.fixture(scope="module")
def cluster(workdir: Path, network: NatNetwork) -> Iterator[Cluster]:
    with running_cluster(workdir, a_host=network.host_address) as running:
        yield running


def keys(user: str, **more: str) -> tuple[str, ...]:
    values = {"user": user, "domain": DOMAIN, "password": PASSWORD, **more}
    return tuple(item for key, value in values.items() for item in ("-key", key, value))


def natted_sipp(
    cluster: Cluster, network: NatNetwork, workdir: Path, scenario: Path, args: tuple[str, ...]
) -> Sipp:
    """SIPp in the phone's namespace, talking to edge A across the NAT."""
    return sipp(
        workdir, scenario, free_port(), remote=cluster.a.sip_port, args=args,
        host=network.phone_address, remote_host=network.host_address,
        netns=network.phone_namespace,
    )  # fmt: skip # SIPp's addresses together


async def test_a_natted_phone_registers_and_is_called(
    cluster: Cluster, network: NatNetwork, workdir: Path
) -> None:
    cluster.subscriber("natphone")
    args = keys("natphone", expires="300", contact_host=network.phone_address, contact_port="5062")
    args += ("-auth_uri", DOMAIN, "-oocsf", str(SCENARIOS / "phone_answer.xml"))
    phone = natted_sipp(
        cluster, network, workdir, with_credentials(workdir, "phone", "natphone"), args
    )
    [binding] = cluster.wait_bindings("natphone", 1)
    assert binding["contact"] == f"sip:natphone@{network.phone_address}:5062;transport=UDP"
    assert str(binding["received"]).startswith(f"sip:{network.nat_address}:")
    assert await asyncio.to_thread(dial_at_b, cluster, workdir, "natphone") == 0
    phone.stop()
    assert phone.received("INVITE") == 1
    assert phone.received("BYE") == 1


def call_out(
    cluster: Cluster,
    network: NatNetwork,
    workdir: Path,
    hold_ms: int,
    gateway_scenario: str = "gateway_reinvite_then_bye",
) -> tuple[Sipp, Sipp]:
    """The phone calls a gateway that re-INVITEs it, then hangs up `hold_ms` later."""
    cluster.subscriber("natcaller")
    port = free_port()
    cluster.a.route({"gw1": port}, {"r1": ("1555", ["gw1"])})
    gateway = sipp(workdir, gateway_scenario, port, args=("-set", "hold", str(hold_ms)))
    wait_bound(port)
    scenario = with_credentials(workdir, "subscriber_caller_far_end_ends", "natcaller")
    args = (*keys("natcaller"), "-s", "15550002", "-auth_uri", f"15550002@{DOMAIN}")
    return natted_sipp(cluster, network, workdir, scenario, args), gateway


def test_a_natted_caller_gets_the_far_ends_reinvite_and_bye(
    cluster: Cluster, network: NatNetwork, workdir: Path
) -> None:
    caller, gateway = call_out(cluster, network, workdir, hold_ms=0)
    assert caller.wait() == 0, caller.errors() + cluster.a.log()
    assert gateway.wait() == 0, gateway.errors()
    assert caller.received("INVITE") == 1  # the re-INVITE
    assert caller.received("BYE") == 1
    assert_reached_by_the_edges_contact(caller, gateway, network)


def assert_reached_by_the_edges_contact(caller: Sipp, gateway: Sipp, network: NatNetwork) -> None:
    """The gateway addressed its re-INVITE to the edge's Contact for her (her flow in it); she
    got it addressed to her own private Contact."""
    sent = gateway.messages().split("INVITE sip:", 2)[2]  # the one the gateway sent
    assert sent.startswith(f"natcaller@{network.host_address}:"), sent
    assert ";cm-flow=" in sent.partition(" ")[0]
    [received] = re.findall(
        r"message received \[\d+\] bytes :\s*INVITE sip:(\S+)", caller.messages()
    )
    assert received.startswith(f"natcaller@{network.phone_address}:"), received


def test_a_far_end_sending_to_the_contact_without_route_reaches_a_natted_caller(
    cluster: Cluster, network: NatNetwork, workdir: Path
) -> None:
    """A gateway that ignores the Record-Route: its re-INVITE, the ACK and the BYE go to the
    Contact it got, the edge's, which names her flow; they reach her through her NAT."""
    caller, gateway = call_out(
        cluster,
        network,
        workdir,
        hold_ms=0,
        gateway_scenario="gateway_reinvite_then_bye_to_contact",
    )
    assert caller.wait() == 0, caller.errors() + cluster.a.log()
    assert gateway.wait() == 0, gateway.errors()
    assert (caller.received("INVITE"), caller.received("BYE")) == (1, 1)
    bye = gateway.messages().split("BYE sip:", 1)[1].split("Content-Length", 1)[0]
    assert "Route:" not in bye
    assert_reached_by_the_edges_contact(caller, gateway, network)


def test_the_far_ends_bye_reaches_a_natted_caller_after_an_edge_restart(
    cluster: Cluster, network: NatNetwork, workdir: Path
) -> None:
    """Nothing about the call is kept at the edge: the restarted one reads the flow from the
    Route and checks it with the deployment's keys."""
    caller, gateway = call_out(cluster, network, workdir, hold_ms=4000)
    deadline = time.monotonic() + 15
    while caller.received("INVITE") < 1:  # the re-INVITE: the call is up
        assert time.monotonic() < deadline, caller.errors() + cluster.a.log()
        time.sleep(0.1)
    cluster.a.kill()
    cluster.a.start()
    assert caller.wait() == 0, caller.errors() + cluster.a.log()
    assert gateway.wait() == 0, gateway.errors()
    assert caller.received("BYE") == 1
