"""A call to a TLS gateway given by name, through a real edge resolving it against dnsmasq.

`sips:carrier.test` has one `_sips._tcp` SRV host, a Python `ssl` user agent whose certificate
names carrier.test only and which asks for a client certificate from the carrier's CA: the edge
dials the host's address, checks the certificate against the URI's host (RFC 5922), and sends
the client certificate the gateway's `tls` options name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.labs.certificates import CertAuthority
from deploy.labs.ports import free_port
from tests.services.edge.support import Edge, running_edge, sipp
from tests.services.edge.tls_support import TlsGateway, edge_certificates
from tests.shared.dns.dnsmasq import Zone, dnsmasq

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture
def ca_settings(tmp_path: Path) -> tuple[CertAuthority, dict[str, str]]:
    ca, _, settings = edge_certificates(tmp_path)
    return ca, settings


def test_a_call_to_a_tls_gateway_by_name_is_checked_against_its_name(
    tmp_path: Path, ca_settings: tuple[CertAuthority, dict[str, str]]
) -> None:
    ca, settings = ca_settings
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    gateway = TlsGateway(ca.issue("gw", hosts=("carrier.test",)), client_ca=carrier_ca)
    ours = carrier_ca.issue("edge-for-carrier", hosts=("edge.example.com",), client=True)
    zone = Zone(
        srv=(("_sips._tcp.carrier.test", "a.carrier.test", gateway.port, 10, 1),),
        hosts=(("a.carrier.test", ("127.0.0.1",)),),
    )
    try:
        with (
            dnsmasq(zone) as dns,
            running_edge(tmp_path, free_port(), dns_servers=dns.servers, **settings) as edge,
        ):
            tls = {"certificate": str(ours.cert), "private_key": str(ours.key)}
            edge.put(
                {
                    "gateways/secure": {"address": "sips:carrier.test", "tls": tls},
                    "rules/secure": {"prefix": "1605", "gateways": ["secure"]},
                }
            )
            assert call(edge, tmp_path, "16055550001") == 0, edge.log()
            assert gateway.done.wait(10)
            assert gateway.methods() == ["INVITE", "ACK", "BYE"]
            assert gateway.requests[0].startswith(b"INVITE sips:16055550001@carrier.test SIP/2.0")
            assert gateway.client_subjects == [((("commonName", "edge.example.com"),),)]
    finally:
        gateway.close()


def call(edge: Edge, workdir: Path, number: str) -> int:
    caller = sipp(workdir, "caller", free_port(), remote=edge.sip_port, args=("-s", number))
    return caller.wait()
