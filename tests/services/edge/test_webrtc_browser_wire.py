"""A real browser over WSS: headless Chromium runs JsSIP (npm) against the all-in-one.

The page (`webrtc/phone.html`, its script `phone.js`, JsSIP pinned in
`webrtc/package.json` and installed by `make test`'s set-up with `npm ci`) is
served from loopback, so its Origin is that server's, the one allowed in
`CALLMESH_WS_ORIGINS`.  Chromium trusts the edge's certificate (from the test
CA) by its public key, `--ignore-certificate-errors-spki-list`: only that key,
and no profile to prepare.  The phone registers with digest over WSS, a SIPp
caller calls it (it answers), and it calls a number the routing table sends to
a SIPp gateway, then hangs up.  Signalling only: the SDP the SIPp side sends is
a browser's kind (ICE, DTLS, rtcp-mux) but leads nowhere, so no media flows.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from deploy.labs.ports import free_port
from tests.services.edge.cdp import Browser
from tests.services.edge.support import LOOPBACK, sipp, wait_bound
from tests.services.edge.tls_support import edge_certificates
from tests.services.test_all_in_one import running_all_in_one

pytestmark = [pytest.mark.wire, pytest.mark.integration]

PAGE = Path(__file__).parent / "webrtc"
USER = "browser"
DOMAIN = "example.com"
NO_PROBES = "never"
"""The SIPp gateway starts for its call only: a probe before would mark it down (480)."""


def spki_hash(certificate: Path) -> str:
    """What `--ignore-certificate-errors-spki-list` takes: base64 of the key's SHA-256."""
    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextmanager
def serving(directory: Path) -> Iterator[int]:
    """The page's files over HTTP on loopback (a file:// page has no Origin to allow)."""
    assert (directory / "node_modules" / "jssip").is_dir(), (
        f"JsSIP is not installed: npm ci --prefix {directory}"
    )
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = PageServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


class PageServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # not 5: the browser's fetches must not meet a full backlog


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Not every module fetch on the test's output."""


async def test_chromium_with_jssip_registers_over_wss_is_called_and_calls(tmp_path: Path) -> None:
    _, edge, settings = edge_certificates(tmp_path)
    wss_port = free_port()
    with serving(PAGE) as page_port:
        origin = f"http://{LOOPBACK}:{page_port}"
        listen = f",wss:{LOOPBACK}:{wss_port}"
        with running_all_in_one(
            tmp_path, listen=listen, health_probe_mode=NO_PROBES, ws_origins=origin, **settings
        ) as (
            sip,
            http_port,
            _,
        ):
            api = httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{http_port}")
            body = {"domain": DOMAIN, "password": "s3cret"}
            (await api.put(f"/v1/subscribers/{USER}", json=body)).raise_for_status()
            gateway_port = free_port()
            gateway = {"address": f"sip:{LOOPBACK}:{gateway_port}"}
            (await api.put("/v1/gateways/g1", json=gateway)).raise_for_status()
            rule = {"prefix": "1604", "gateways": ["g1"]}
            (await api.put("/v1/rules/r1", json=rule)).raise_for_status()
            browser = await asyncio.to_thread(
                Browser.start,
                f"{origin}/phone.html",
                tmp_path / "profile",
                f"--ignore-certificate-errors-spki-list={spki_hash(edge.cert)}",
            )
            try:
                await browser.page()
                await browser.ready("phone")
                start = (
                    f"phone.start({{url: 'wss://{LOOPBACK}:{wss_port}', user: '{USER}', "
                    f"domain: '{DOMAIN}', password: 's3cret'}})"
                )
                assert await browser.evaluate(start) == "registered"
                reply = await api.get(f"/v1/registrations/sip:{USER}@{DOMAIN}")
                [binding] = reply.json()["bindings"]
                assert binding["transport"] == "wss"
                assert ".invalid" in str(binding["contact"])

                caller = sipp(
                    tmp_path,
                    "caller_webrtc",
                    free_port(),
                    remote=sip,
                    args=("-s", USER, "-key", "domain", DOMAIN, "-set", "hold", "500"),
                )
                assert await asyncio.to_thread(caller.wait) == 0, caller.errors()
                events = await browser.evaluate("phone.events")
                assert "incoming:caller" in events and "incoming:confirmed" in events, events

                answering = sipp(tmp_path, "gateway_webrtc", gateway_port)
                await asyncio.to_thread(wait_bound, gateway_port)
                events = await browser.evaluate(f"phone.call('16045550001', '{DOMAIN}')")
                assert "outgoing:confirmed" in events, events
                assert "outgoing:ended:local:Terminated" in events, events
                assert await asyncio.to_thread(answering.wait) == 0, answering.errors()
                at_gateway = answering.messages().split("INVITE sip:", 1)[1]
                assert at_gateway.startswith(f"16045550001@{LOOPBACK}:{gateway_port}")
                assert "Via: SIP/2.0/WSS " in at_gateway  # JsSIP's own Via, under ours
                assert "a=fingerprint:" in at_gateway  # the browser's offer, untouched
            finally:
                await browser.close()
                await api.aclose()
