"""Two edge workers on one TLS port: both serve TLS, and both take up a renewed certificate.

Only the service's process gets an operator's SIGHUP; the workers see the files change
(each looks at most once a second when a peer connects), so every new handshake, on
whichever worker the kernel gives it, presents the renewed certificate.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cryptography import x509

from deploy.labs.ports import free_port
from tests.services.edge.support import options, running_edge, status_of
from tests.services.edge.tls_support import Stream, edge_certificates, tls_client

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CONNECTIONS = 12


def test_both_workers_serve_tls_and_take_up_a_renewed_certificate(tmp_path: Path) -> None:
    ca, _, settings = edge_certificates(tmp_path)
    with running_edge(tmp_path, free_port(), edge_workers="2", **settings) as edge:
        found = re.search(r"tls:[^:]+:(\d+)", edge.env["CALLMESH_SIP_LISTEN"])
        assert found is not None
        port = int(found.group(1))

        def serials() -> set[int]:
            seen = set()
            for _ in range(CONNECTIONS):  # new connections: the kernel spreads them
                with tls_client(port, ca) as secure:
                    stream = Stream(secure)
                    question = options(port).replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")
                    stream.send(question)
                    assert status_of(stream.receive()) == 200
                    der = secure.getpeercert(binary_form=True)
                assert der is not None
                seen.add(x509.load_der_x509_certificate(der).serial_number)
            return seen

        assert len(serials()) == 1
        assert "2 workers" in edge.log() or "(2 workers" in edge.log()
        renewed = ca.issue("edge-renewed")
        Path(settings["tls_key"]).write_bytes(renewed.key.read_bytes())
        Path(settings["tls_cert"]).write_bytes(renewed.cert.read_bytes())
        deadline = time.monotonic() + 15
        while serials() != {ca.serial_of(renewed)}:
            assert time.monotonic() < deadline, "a worker kept the old certificate"
            time.sleep(0.5)
