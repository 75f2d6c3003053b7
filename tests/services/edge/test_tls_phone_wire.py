"""A phone registered over TLS is called over its TLS connection (its flow), from another edge.

The phone (Python `ssl`, `tls_support`) registers with digest at edge A's TLS
listener; a SIPp caller dials it at edge B, which hands the call to edge A, which
sends it down the phone's own connection, as for TCP.  Edge B reaches edge A
over TLS too (the binding's transport), checking A's certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.registrar import Phone
from deploy.labs.certificates import CertAuthority
from deploy.labs.ports import free_port
from shared.sip.message import Response, parse_message
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import LOOPBACK
from tests.services.edge.test_subscribers_wire import dial_at_b
from tests.services.edge.tls_support import Answerer, Stream, edge_certificates, tls_client

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls-phone-wire")


@pytest.fixture(scope="module")
def tls_setup(workdir: Path) -> tuple[CertAuthority, dict[str, str]]:
    ca, _, settings = edge_certificates(workdir)
    return ca, settings


@pytest.fixture(scope="module")
def cluster(workdir: Path, tls_setup: tuple[CertAuthority, dict[str, str]]) -> Iterator[Cluster]:
    port = free_port()
    settings = dict(tls_setup[1])
    both = {"tls_ca": settings.pop("tls_ca")}  # edge B hands calls on to A over TLS
    with running_cluster(workdir, a_tls_port=port, both=both, **settings) as running:
        running.a.env["TLS_PORT"] = str(port)  # for the tests: where edge A's TLS listener is
        yield running


def exchange(stream: Stream, data: bytes) -> Response:
    stream.send(data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS"))
    while True:
        message = parse_message(stream.receive())
        assert isinstance(message, Response)
        if message.status >= 200:
            return message


async def test_a_tls_phone_registers_and_is_called_over_its_connection(
    cluster: Cluster, workdir: Path, tls_setup: tuple[CertAuthority, dict[str, str]]
) -> None:
    cluster.subscriber("tlsphone")
    secure = tls_client(int(cluster.a.env["TLS_PORT"]), tls_setup[0])
    try:
        port = int(secure.getsockname()[1])
        contact = f"sip:tlsphone@{LOOPBACK}:{port};transport=tls"
        phone = Phone("tlsphone", DOMAIN, PASSWORD, contact=contact, algorithm="MD5")
        stream = Stream(secure)
        challenge = exchange(stream, phone.register())
        assert challenge.status == 401
        phone.learn(challenge)
        assert exchange(stream, phone.register()).status == 200
        [binding] = cluster.wait_bindings("tlsphone", 1)
        assert binding["transport"] == "tls"
        answerer = Answerer(contact)
        answerer.serve(stream)
        assert await asyncio.to_thread(dial_at_b, cluster, workdir, "tlsphone") == 0
        assert answerer.done.wait(10)
        # The edge may ping the connection's binding meanwhile (a loaded run's was slow enough).
        assert [m for m in answerer.methods() if m != "OPTIONS"] == ["INVITE", "ACK", "BYE"]
        invite = next(r for r in answerer.requests if r.startswith(b"INVITE")).decode()
        assert invite.startswith("INVITE sip:tlsphone@")
        vias = [line for line in invite.split("\r\n") if line.startswith("Via:")]
        assert vias[0].startswith(f"Via: SIP/2.0/TLS {LOOPBACK}:{cluster.a.env['TLS_PORT']};")
        assert ";transport=tls;lr;cm-flow=" in invite  # edge A's Record-Route names the flow
    finally:
        secure.close()
