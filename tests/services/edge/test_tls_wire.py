"""SIP over TLS through a real edge: its TLS listener, calls to TLS gateways, failover, mutual TLS.

The edge listens on TLS beside UDP and TCP with a certificate from a test CA
(`CALLMESH_TLS_CA` is that CA); the callers are SIPp over UDP, the TLS
gateways Python `ssl` user agents (`tls_support`), and the fallback gateway SIPp.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from deploy.labs.certificates import CertAuthority
from deploy.labs.ports import free_port
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    options,
    running_edge,
    sipp,
    status_of,
    wait_bound,
)
from tests.services.edge.tls_support import (
    SlowLink,
    Stream,
    TlsGateway,
    edge_certificates,
    tls_client,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls-wire")


@pytest.fixture(scope="module")
def ca_and_settings(workdir: Path) -> tuple[CertAuthority, dict[str, str]]:
    ca, _, settings = edge_certificates(workdir)
    return ca, settings


@pytest.fixture(scope="module")
def ca(ca_and_settings: tuple[CertAuthority, dict[str, str]]) -> CertAuthority:
    return ca_and_settings[0]


@pytest.fixture(scope="module")
def edge(workdir: Path, ca_and_settings: tuple[CertAuthority, dict[str, str]]) -> Iterator[Edge]:
    # Failover timers longer than SIPp waits (30 s): a call that completes failed over on
    # something else (a transport error).
    settings = {**ca_and_settings[1], "fr_timeout": "40", "fr_inv_timeout": "60"}
    with running_edge(workdir, free_port(), **settings) as running:
        yield running


def tls_port(edge: Edge) -> int:
    found = re.search(r"tls:[^:]+:(\d+)", edge.env["CALLMESH_SIP_LISTEN"])
    assert found is not None
    return int(found.group(1))


def failures(edge: Edge, reason: str) -> float:
    with edge.http() as client:
        text = client.get("/metrics").text
    name = f'callmesh_sip_tls_handshake_failures_total{{reason="{reason}"}}'
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def call(edge: Edge, workdir: Path, number: str) -> int:
    caller = sipp(workdir, "caller", free_port(), remote=edge.sip_port, args=("-s", number))
    return caller.wait()


def test_options_over_tls_is_answered_and_plain_sip_there_is_cut(
    edge: Edge, ca: CertAuthority
) -> None:
    port = tls_port(edge)
    with tls_client(port, ca) as secure:
        assert secure.version() in ("TLSv1.2", "TLSv1.3")
        stream = Stream(secure)
        question = options(port).replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")
        stream.send(question)
        assert status_of(stream.receive()) == 200
    before = failures(edge, "protocol")
    with socket.create_connection((LOOPBACK, port), timeout=10) as plain:
        plain.sendall(options(port))
        assert plain.recv(65535) in (b"", b"\x15\x03\x01\x00\x02\x02\x46")  # closed (or alert)
    assert failures(edge, "protocol") == before + 1


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_1_is_refused(edge: Edge, ca: CertAuthority) -> None:
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    before = failures(edge, "protocol_version")
    with (
        socket.create_connection((LOOPBACK, tls_port(edge)), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionResetError)),
    ):
        context.wrap_socket(raw, server_hostname=LOOPBACK)
    assert failures(edge, "protocol_version") == before + 1


def test_a_call_to_a_tls_gateway_leaves_over_tls(
    edge: Edge, workdir: Path, ca: CertAuthority
) -> None:
    gateway = TlsGateway(ca.issue("gw-ok"))
    try:
        edge.put(
            {
                "gateways/t1": {"address": f"sips:{LOOPBACK}:{gateway.port}"},
                "rules/t1": {"prefix": "1601", "gateways": ["t1"]},
            }
        )
        assert call(edge, workdir, "16015550001") == 0, edge.log()
        assert gateway.done.wait(10)
        assert gateway.methods() == ["INVITE", "ACK", "BYE"]
        invite = gateway.requests[0].decode()
        assert invite.startswith(f"INVITE sips:16015550001@{LOOPBACK}:{gateway.port} SIP/2.0")
        assert f"Via: SIP/2.0/TLS {LOOPBACK}:{tls_port(edge)};" in invite
        # A sips: Request-URI gets a sips: Record-Route (RFC 3261 §16.6 step 4), after the
        # caller's side's plain UDP one.
        assert f"Record-Route: <sips:{LOOPBACK}:{tls_port(edge)};lr;" in invite
        assert f"Record-Route: <sip:{LOOPBACK}:{edge.sip_port};lr;" in invite
        assert gateway.handshakes == 1  # ACK and BYE reused the connection
    finally:
        gateway.close()


def test_an_untrusted_or_expired_gateway_certificate_fails_over(
    edge: Edge, workdir: Path, ca: CertAuthority
) -> None:
    rogue = CertAuthority(workdir / "rogue", "Rogue CA")
    untrusted = TlsGateway(rogue.issue("gw-rogue"))
    expired = TlsGateway(ca.issue("gw-expired", days=(-30, -1)))
    fallback = free_port()
    try:
        edge.put(
            {
                "gateways/u1": {"address": f"sips:{LOOPBACK}:{untrusted.port}"},
                "gateways/u2": {"address": f"sip:{LOOPBACK}:{expired.port};transport=tls"},
                "gateways/u3": {"address": f"sip:{LOOPBACK}:{fallback}"},
                "rules/u1": {"prefix": "1602", "gateways": ["u1", "u2", "u3"]},
            }
        )
        answering = sipp(workdir, "gateway", fallback)
        wait_bound(fallback)
        before = failures(edge, "certificate")
        assert call(edge, workdir, "16025550001") == 0, edge.log()
        assert answering.wait() == 0
        assert answering.received("INVITE") == 1
        assert failures(edge, "certificate") == before + 2
        assert untrusted.requests == expired.requests == []
        log = edge.log()
        assert "certificate not accepted: self-signed certificate in certificate chain" in log
        assert "certificate not accepted: certificate has expired" in log
    finally:
        untrusted.close()
        expired.close()


def test_a_gateway_asking_for_a_client_certificate_gets_the_one_its_record_names(
    edge: Edge, workdir: Path, ca: CertAuthority
) -> None:
    carrier_ca = CertAuthority(workdir / "carrier", "Carrier CA")
    gateway = TlsGateway(ca.issue("gw-mtls", hosts=("sbc.carrier.test",)), client_ca=carrier_ca)
    ours = carrier_ca.issue("edge-for-carrier", hosts=("edge.example.com",), client=True)
    try:
        edge.put(
            {
                "gateways/m1": {
                    "address": f"sips:{LOOPBACK}:{gateway.port}",
                    "tls": {
                        "certificate": str(ours.cert),
                        "private_key": str(ours.key),
                        "server_name": "sbc.carrier.test",
                    },
                },
                "rules/m1": {"prefix": "1603", "gateways": ["m1"]},
            }
        )
        assert call(edge, workdir, "16035550001") == 0, edge.log()
        assert gateway.done.wait(10)
        assert gateway.client_subjects == [((("commonName", "edge.example.com"),),)]
    finally:
        gateway.close()


def test_a_tls13_gateway_refusing_our_client_certificate_fails_over_at_once(
    edge: Edge, workdir: Path, ca: CertAuthority
) -> None:
    """Two TLS 1.3 gateways that require a client certificate of their carrier's CA, which
    refuse us after our handshake has ended (RFC 8446: their alert follows our Finished):
    to one the edge presents none, to the other one of another CA; each behind a link whose
    replies come 0.3 s late, so the refusal lands after the INVITE left. The call fails over to
    the SIPp fallback as for a connection that failed, not after the failover timer
    (`CALLMESH_FR_TIMEOUT`, 40 s here: longer than SIPp waits), and each refusal counts as
    a failed handshake, logged as one."""
    carrier_ca = CertAuthority(workdir / "strict-carrier", "Strict Carrier CA")
    other = CertAuthority(workdir / "other-ca", "Other CA").issue("edge-other", client=True)
    gateways = [TlsGateway(ca.issue(f"gw-strict{n}"), client_ca=carrier_ca) for n in (1, 2)]
    for gateway in gateways:
        gateway.context.minimum_version = ssl.TLSVersion.TLSv1_3
    links = [SlowLink(gateway.port) for gateway in gateways]
    fallback = free_port()
    try:
        edge.put(
            {
                "gateways/s1": {"address": f"sips:{LOOPBACK}:{links[0].port}"},
                "gateways/s2": {
                    "address": f"sips:{LOOPBACK}:{links[1].port}",
                    "tls": {"certificate": str(other.cert), "private_key": str(other.key)},
                },
                "gateways/s3": {"address": f"sip:{LOOPBACK}:{fallback}"},
                "rules/s1": {"prefix": "1605", "gateways": ["s1", "s2", "s3"]},
            }
        )
        answering = sipp(workdir, "gateway", fallback)
        wait_bound(fallback)
        before = failures(edge, "peer_alert") + failures(edge, "closed")
        assert call(edge, workdir, "16055550001") == 0, edge.log()
        assert answering.wait() == 0
        assert answering.received("INVITE") == 1
        assert failures(edge, "peer_alert") + failures(edge, "closed") == before + 2
        assert gateways[0].requests == gateways[1].requests == []
        log = edge.log()
        assert "TLSV13_ALERT_CERTIFICATE_REQUIRED" in log  # the failed handshake's warning
        for link in links:  # and each request's failure (the warning: once per 10 s)
            assert f"tls to {LOOPBACK}:{link.port}: refused after the handshake" in log
    finally:
        for gateway, link in zip(gateways, links, strict=True):
            link.close()
            gateway.close()


def test_a_renewed_certificate_is_presented_after_sighup_without_a_restart(
    edge: Edge, ca_and_settings: tuple[CertAuthority, dict[str, str]]
) -> None:
    ca, settings = ca_and_settings
    renewed = ca.issue("edge-renewed")
    Path(settings["tls_key"]).write_bytes(renewed.key.read_bytes())
    Path(settings["tls_cert"]).write_bytes(renewed.cert.read_bytes())
    assert edge.process is not None
    edge.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        with tls_client(tls_port(edge), ca) as secure:
            der = secure.getpeercert(binary_form=True)
        assert der is not None
        if x509.load_der_x509_certificate(der).serial_number == ca.serial_of(renewed):
            break
        assert time.monotonic() < deadline, "the renewed certificate was not picked up"
        time.sleep(0.1)
    assert edge.process.poll() is None  # SIGHUP reloads, it does not end the edge
    assert "tls: certificate" in edge.log() and "loaded for new handshakes" in edge.log()
