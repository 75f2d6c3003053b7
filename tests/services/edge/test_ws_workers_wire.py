"""A WebSocket phone on a multi-worker edge is reached whichever worker routes its call.

Edge A runs two workers sharing its ports; the phone's WebSocket belongs to the one
the kernel gave it. Calls come from edge B over TCP (each to the worker its Call-ID
hashes to, whoever accepted B's connection), and that worker hands each message for
the phone to the worker holding the WebSocket, which hands the phone's answers back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.labs.ports import free_port
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import LOOPBACK, sipp
from tests.services.edge.ws_phone import WebPhone
from tests.shared.sip.transport.ws_client import WsClient

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = 20
"""Calls whose Call-IDs spread over both workers (all on one: 2 in a million)."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ws-workers-wire")


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Cluster]:
    port = free_port()
    with running_cluster(workdir, a_listen=f",ws:{LOOPBACK}:{port}", edge_workers="2") as running:
        running.a.env["WS_PORT"] = str(port)
        yield running


def metric(cluster: Cluster, name: str) -> float:
    text = httpx.get(f"http://{LOOPBACK}:{cluster.a.http_port}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_websocket_phone_is_reached_from_every_worker(
    cluster: Cluster, workdir: Path
) -> None:
    cluster.subscriber("wsworkers")
    client = await WsClient.connect(int(cluster.a.env["WS_PORT"]))
    try:
        phone = WebPhone(client, "wsworkers", DOMAIN, PASSWORD, transport="WS")
        assert (await phone.register()).status == 200
        [binding] = await asyncio.to_thread(cluster.wait_bindings, "wsworkers", 1)
        assert str(binding["edge"]).startswith("edge-a")  # the worker holding the WebSocket
        caller = sipp(
            workdir,
            "dial",
            free_port(),
            remote=cluster.b.sip_port,
            calls=CALLS,
            args=("-s", "wsworkers", "-key", "domain", DOMAIN, "-set", "hold", "0", "-l", "1"),
        )
        methods = await phone.answer_call(calls=CALLS)
        assert methods.count("INVITE") == CALLS and methods.count("ACK") == CALLS
        assert await asyncio.to_thread(caller.wait, 60) == 0, caller.errors()
        handed = await asyncio.to_thread(
            metric, cluster, "callmesh_edge_stream_writes_handed_on_total"
        )
        assert handed > 0  # some calls were routed by the worker without the WebSocket
    finally:
        await client.close()
