"""No open relay, on the wire: real edges, registrar, RabbitMQ, Redis; SIPp as carrier and caller.

Edge A of the cluster trusts no loopback source, so the attacker's raw
requests and the subscriber's calls (all from 127.0.0.1) are strangers
there; the SIPp gateway is trusted as a gateway of the routing table.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import (
    LOOPBACK,
    SipClient,
    Sipp,
    sip_request,
    sipp,
    status_of,
    wait_bound,
)
from tests.services.edge.test_subscribers_wire import with_credentials

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dialogs-wire")


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Cluster]:
    with running_cluster(workdir) as running:
        yield running


def gateway_for(cluster: Cluster, workdir: Path, prefix: str) -> tuple[Sipp, int]:
    port = free_port()
    cluster.a.route({f"gw{prefix}": port}, {f"r{prefix}": (prefix, [f"gw{prefix}"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    return gateway, port


def subscriber_call(cluster: Cluster, workdir: Path, user: str, number: str, hold_ms: int) -> Sipp:
    """`user` calls `number` through edge A (407, digest), holds `hold_ms`, then hangs up."""
    cluster.subscriber(user)
    scenario = with_credentials(workdir, "subscriber_caller", user)
    held = scenario.with_name(f"held-{hold_ms}-{scenario.name}")
    text = re.sub(
        r'(<send retrans="500">\s*<!\[CDATA\[\s*BYE)',
        rf'<pause milliseconds="{hold_ms}" />\n  \1',
        scenario.read_text(),
    )
    held.write_text(text)
    return sipp(
        workdir,
        held,
        free_port(),
        remote=cluster.a.sip_port,
        args=(
            "-s",
            number,
            "-key",
            "user",
            user,
            "-key",
            "domain",
            DOMAIN,
            "-key",
            "password",
            PASSWORD,
            "-auth_uri",
            f"{number}@{DOMAIN}",
        ),
    )


def test_a_forged_to_tag_never_reaches_the_gateway(cluster: Cluster, workdir: Path) -> None:
    gateway, port = gateway_for(cluster, workdir, "4420")
    client = SipClient(cluster.a.sip_port)
    uri = f"sip:4420999@{LOOPBACK}:{port}"
    try:
        for method in ("INVITE", "BYE", "MESSAGE", "INFO"):
            request = sip_request(method, uri, "udp", client.port)
            client.send(request.replace(f"To: <{uri}>".encode(), f"To: <{uri}>;tag=2".encode()))
            answer = client.final()
            assert status_of(answer) == 404, answer
        client.send(sip_request("ACK", uri, "udp", client.port))  # no To tag: absorbed
    finally:
        client.close()
    # Positive control: the same gateway, listening all along, takes a subscriber's call;
    # it would have failed its scenario on any request before this INVITE.
    caller = subscriber_call(cluster, workdir, "erin", "4420999", 0)
    assert caller.wait() == 0, caller.errors() + cluster.a.log()
    assert gateway.wait() == 0, gateway.errors()
    assert [gateway.received(m) for m in ("INVITE", "ACK", "BYE")] == [1, 1, 1]
    assert "MESSAGE sip" not in gateway.messages() and "INFO sip" not in gateway.messages()
    assert ";cm-rr=" in gateway.messages().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]


def test_a_strangers_bye_follows_the_signed_route_after_the_edge_restarts(
    cluster: Cluster, workdir: Path
) -> None:
    gateway, _port = gateway_for(cluster, workdir, "4421")
    caller = subscriber_call(cluster, workdir, "fred", "4421999", 8000)
    deadline = time.monotonic() + 15
    while gateway.received("ACK") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.received("ACK") == 1, caller.errors() + cluster.a.log()
    cluster.a.kill()
    cluster.a.start()  # a new process: only the key in Redis is shared with the old one
    assert caller.wait() == 0, caller.errors() + cluster.a.log()
    assert gateway.wait() == 0, gateway.errors()
    assert gateway.received("BYE") == 1
