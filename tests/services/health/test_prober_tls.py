"""Probing TLS gateways: their certificate checked with our CA, their client certificate sent."""

from __future__ import annotations

from pathlib import Path

from deploy.labs.certificates import CertAuthority
from services.health.prober import OptionsProber
from shared.routing_table.gateway_tls import GatewayTls
from shared.settings import ListenAddress
from shared.sip.transport.tls_context import TlsFiles
from shared.sip.transport.tls_peers import GatewayProfiles
from tests.services.edge.support import LOOPBACK
from tests.services.edge.tls_support import TlsGateway


async def test_tls_gateways_are_probed_with_the_ca_and_their_client_certificate(
    tmp_path: Path,
) -> None:
    ca = CertAuthority(tmp_path / "ca")
    carrier_ca = CertAuthority(tmp_path / "carrier", "Carrier CA")
    plain = TlsGateway(ca.issue("gw"))
    mutual = TlsGateway(ca.issue("gw-mtls"), client_ca=carrier_ca)
    ours = carrier_ca.issue("edge", hosts=("edge.example.com",), client=True)
    mutual_address = f"sips:{LOOPBACK}:{mutual.port}"
    options = GatewayTls(certificate=str(ours.cert), private_key=str(ours.key))
    prober = OptionsProber(
        ListenAddress("udp", LOOPBACK, 0),
        2.0,
        tls=TlsFiles(ca=str(ca.cert)),
        profiles=GatewayProfiles(lambda: [(mutual_address, options)]),
    )
    await prober.open()
    try:
        outcome = await prober.probe(f"sip:{LOOPBACK}:{plain.port};transport=tls")
        assert outcome.status == 200, outcome
        outcome = await prober.probe(mutual_address)
        assert outcome.status == 200, outcome
        assert mutual.client_subjects == [((("commonName", "edge.example.com"),),)]
        rogue = TlsGateway(CertAuthority(tmp_path / "rogue", "Rogue CA").issue("gw"))
        outcome = await prober.probe(f"sips:{LOOPBACK}:{rogue.port}")
        assert outcome.status is None
        assert "certificate not accepted" in str(outcome.error)
        rogue.close()
    finally:
        await prober.close()
        plain.close()
        mutual.close()
