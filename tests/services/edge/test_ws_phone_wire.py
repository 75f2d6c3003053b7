"""A phone registered over WS at edge A is called from edge B, down its own WebSocket.

Edge B cannot open a WebSocket to anyone, so the binding names edge A by one of its
other interfaces (TCP here): B sends the call there with the flow token in a Route,
and A sends it down the connection the phone opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import LOOPBACK
from tests.services.edge.test_subscribers_wire import dial_at_b
from tests.services.edge.ws_phone import WebPhone
from tests.shared.sip.transport.ws_client import WsClient

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ws-phone-wire")


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Cluster]:
    port = free_port()
    with running_cluster(workdir, a_listen=f",ws:{LOOPBACK}:{port}") as running:
        running.a.env["WS_PORT"] = str(port)  # for the tests: where edge A's WS listener is
        yield running


async def test_a_ws_phone_registered_at_one_edge_is_called_from_another(
    cluster: Cluster, workdir: Path
) -> None:
    cluster.subscriber("wsphone")
    ws_port = int(cluster.a.env["WS_PORT"])
    client = await WsClient.connect(ws_port)
    try:
        phone = WebPhone(client, "wsphone", DOMAIN, PASSWORD, transport="WS")
        assert (await phone.register()).status == 200
        [binding] = await asyncio.to_thread(cluster.wait_bindings, "wsphone", 1)
        assert binding["transport"] == "ws"
        assert binding["edge_address"] == f"sip:{LOOPBACK}:{cluster.a.sip_port};transport=tcp"
        dialling = asyncio.create_task(asyncio.to_thread(dial_at_b, cluster, workdir, "wsphone"))
        assert await phone.answer_call() == ["INVITE", "ACK", "BYE"]
        assert await dialling == 0
        invite = next(m for m in phone.received if m.startswith(b"INVITE")).decode()
        vias = [line for line in invite.split("\r\n") if line.startswith("Via:")]
        assert vias[0].startswith(f"Via: SIP/2.0/WS {LOOPBACK}:{ws_port};")
        assert f"<sip:{LOOPBACK}:{ws_port};transport=ws;lr;cm-flow=" in invite
    finally:
        await client.close()
