"""A WebRTC phone over WSS (the test WebSocket client) registers, is called and calls out.

The all-in-one listens on `ws:` and `wss:` (its certificate from the test CA);
the phone registers with digest over WSS from an `.invalid` Contact, a SIPp
caller dials it over UDP (the edge sends the call down the phone's WebSocket,
Via `SIP/2.0/WSS`, its Record-Route naming the flow), and it calls a number the
routing table sends to a SIPp gateway, ACK and BYE along the recorded route.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import LOOPBACK, sipp, wait_bound
from tests.services.edge.tls_support import edge_certificates
from tests.services.edge.ws_phone import HOST, WebPhone
from tests.services.test_all_in_one import running_all_in_one
from tests.shared.sip.transport.ws_client import RefusedError, WsClient

pytestmark = [pytest.mark.wire, pytest.mark.integration]

DOMAIN = "example.com"
NO_PROBES = "never"
"""The SIPp gateway starts for its call only: a probe before would mark it down (480)."""
ORIGIN = "https://app.example.com"


async def test_a_webrtc_phone_over_wss_registers_is_called_and_calls_out(tmp_path: Path) -> None:
    ca, _, settings = edge_certificates(tmp_path)
    ws_port, wss_port = free_port(), free_port()
    listen = f",ws:{LOOPBACK}:{ws_port},wss:{LOOPBACK}:{wss_port}"
    with running_all_in_one(
        tmp_path, listen=listen, health_probe_mode=NO_PROBES, ws_origins=ORIGIN, **settings
    ) as (
        sip,
        http,
        _,
    ):
        api = httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{http}")
        body = {"domain": DOMAIN, "password": "s3cret"}
        (await api.put("/v1/subscribers/webrtc", json=body)).raise_for_status()
        gateway_port = free_port()
        gateway = {"address": f"sip:{LOOPBACK}:{gateway_port}"}
        (await api.put("/v1/gateways/g1", json=gateway)).raise_for_status()
        rule = {"prefix": "1604", "gateways": ["g1"]}
        (await api.put("/v1/rules/r1", json=rule)).raise_for_status()
        with pytest.raises(RefusedError) as refused:  # another site's page
            await WsClient.connect(ws_port, origin="https://elsewhere.example")
        assert refused.value.status == 403

        context = ssl.create_default_context(cafile=str(ca.cert))
        client = await WsClient.connect(wss_port, origin=ORIGIN, context=context)
        phone = WebPhone(client, "webrtc", DOMAIN, "s3cret")
        assert (await phone.register()).status == 200
        [binding] = (await api.get(f"/v1/registrations/sip:webrtc@{DOMAIN}")).json()["bindings"]
        assert binding["transport"] == "wss" and HOST in str(binding["contact"])

        caller = sipp(
            tmp_path,
            "dial",
            free_port(),
            remote=sip,
            args=("-s", "webrtc", "-key", "domain", DOMAIN, "-set", "hold", "0"),
        )
        assert await phone.answer_call() == ["INVITE", "ACK", "BYE"]
        assert await asyncio.to_thread(caller.wait) == 0
        invite = next(m for m in phone.received if m.startswith(b"INVITE")).decode()
        assert invite.startswith(f"INVITE sip:webrtc@{HOST};transport=ws SIP/2.0")
        vias = [line for line in invite.split("\r\n") if line.startswith("Via:")]
        assert vias[0].startswith(f"Via: SIP/2.0/WSS {LOOPBACK}:{wss_port};")
        assert f"<sip:{LOOPBACK}:{wss_port};transport=ws;lr;cm-flow=" in invite

        answering = sipp(tmp_path, "gateway", gateway_port)
        await asyncio.to_thread(wait_bound, gateway_port)
        answered, ended = await phone.call("16045550001")
        assert (answered.status, ended.status) == (200, 200)
        assert await asyncio.to_thread(answering.wait) == 0
        at_gateway = answering.messages().split("INVITE sip:", 1)[1]
        assert "Via: SIP/2.0/WSS df7jal23ls0d.invalid" in at_gateway  # the phone's own Via
        assert f"<sip:{LOOPBACK}:{wss_port};transport=ws;lr;" in at_gateway  # both sides
        assert f"<sip:{LOOPBACK}:{sip};lr;" in at_gateway  # of the edge recorded (RFC 5658)
        await client.close()
        await api.aclose()
