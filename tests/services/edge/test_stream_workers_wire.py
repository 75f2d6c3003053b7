"""A TCP or TLS phone on a two-worker edge is reached whichever worker routes its call.

Edge A runs two workers sharing its ports; the phone's connection belongs to the
one the kernel gave it. A SIPp caller dials it at edge B, which hands each call to
edge A over the binding's transport; each call's messages go to the worker its
Call-ID hashes to (whichever worker accepted B's connection), and that worker
hands what it sends down the phone's connection to the worker holding it, which
hands the phone's answers back. Before, a call routed by the other worker failed
(the connection was not in its table): about half of them.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.registrar import Phone
from deploy.labs.certificates import CertAuthority
from deploy.labs.ports import free_port
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import LOOPBACK, sipp
from tests.services.edge.test_tls_phone_wire import exchange
from tests.services.edge.tls_support import Answerer, Stream, edge_certificates, tls_client

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = 40
"""Calls with distinct Call-IDs: all of them owned by one worker has odds of 2 in 10^12."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stream-workers-wire")


@pytest.fixture(scope="module")
def ca(workdir: Path) -> Iterator[tuple[CertAuthority, dict[str, str]]]:
    authority, _, settings = edge_certificates(workdir)
    yield authority, settings


@pytest.fixture(scope="module")
def cluster(workdir: Path, ca: tuple[CertAuthority, dict[str, str]]) -> Iterator[Cluster]:
    port = free_port()
    settings = dict(ca[1])
    both = {"tls_ca": settings.pop("tls_ca")}  # edge B hands TLS phones' calls on over TLS
    with running_cluster(
        workdir, a_tls_port=port, both=both, edge_workers="2", **settings
    ) as running:
        running.a.env["TLS_PORT"] = str(port)
        yield running


def metric(cluster: Cluster, name: str) -> float:
    text = httpx.get(f"http://{LOOPBACK}:{cluster.a.http_port}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def connect(cluster: Cluster, transport: str, authority: CertAuthority) -> socket.socket:
    if transport == "tls":
        return tls_client(int(cluster.a.env["TLS_PORT"]), authority)
    return socket.create_connection((LOOPBACK, cluster.a.sip_port), timeout=10)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_stream_phone_is_reached_from_every_worker(
    cluster: Cluster, workdir: Path, ca: tuple[CertAuthority, dict[str, str]], transport: str
) -> None:
    user = f"{transport}workers"
    cluster.subscriber(user)
    handed_before = metric(cluster, "callmesh_edge_stream_writes_handed_on_total")
    sock = connect(cluster, transport, ca[0])
    try:
        contact = f"sip:{user}@{LOOPBACK}:{sock.getsockname()[1]};transport={transport}"
        phone = Phone(user, DOMAIN, PASSWORD, contact=contact, algorithm="MD5")
        stream = Stream(sock)
        stream.sock.settimeout(30)
        via = f"SIP/2.0/{transport.upper()}".encode()
        challenge = exchange(stream, phone.register().replace(b"SIP/2.0/UDP", via))
        assert challenge.status == 401
        phone.learn(challenge)
        assert exchange(stream, phone.register().replace(b"SIP/2.0/UDP", via)).status == 200
        [binding] = cluster.wait_bindings(user, 1)
        assert binding["transport"] == transport
        assert str(binding["edge"]).startswith("edge-a")  # the worker holding the connection
        answerer = Answerer(contact)
        answerer.serve(stream)
        caller = sipp(
            workdir,
            "dial",
            free_port(),
            remote=cluster.b.sip_port,
            calls=CALLS,
            args=("-s", user, "-key", "domain", DOMAIN, "-set", "hold", "0", "-l", "1"),
        )
        assert caller.wait(120) == 0, caller.errors()
        deadline = time.monotonic() + 10  # the last BYE's 200 may reach SIPp first
        while answerer.methods().count("BYE") < CALLS:
            assert time.monotonic() < deadline, answerer.methods()
            time.sleep(0.05)
        methods = answerer.methods()
        assert methods.count("INVITE") == CALLS and methods.count("ACK") == CALLS
        handed = metric(cluster, "callmesh_edge_stream_writes_handed_on_total") - handed_before
        assert handed > 0  # some calls were routed by the worker without the connection
    finally:
        sock.close()
