"""A relayed call whose BYE never comes leaves no rtpengine session, on real parts only.

A real edge relaying through a real rtpengine, SIPp as caller and gateway, the
accounting service (``python -m services.accounting``) on the real RabbitMQ
and PostgreSQL with ``CALLMESH_ACCOUNTING_MAX_CALL_DURATION`` shortened to
2 s: the caller vanishes after its ACK, the gateway never hangs up; once the
accounting service closes the call as ``timeout`` it publishes
``accounting.cdr.timed_out``, the edge takes it from ``edge.media.expired``
and rtpengine holds no session (its own timeout, 60 s of silent media, is far
off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from deploy.labs.postgres import drop_postgres, fresh_postgres
from deploy.rtpengine import Daemon, running_rtpengine
from shared.contracts.accounting import CALLS_QUEUE
from tests.services.accounting.wire import Accounting
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    delete_queues,
    running_edge,
    sipp,
    stop_all_sipp,
    wait_bound,
)
from tests.services.edge.test_media_wire import metric, sessions, until

pytestmark = [pytest.mark.wire, pytest.mark.integration]

MAX_CALL_DURATION = 2.0


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[Edge, Daemon, Accounting]]:
    url, database = asyncio.run(fresh_postgres())
    try:
        with (
            running_rtpengine(tmp_path, ports=40) as daemon,
            running_edge(
                tmp_path, rtpengine=daemon.instance.name, rtpengine_ping_interval="1"
            ) as edge,
        ):
            accounting = Accounting(
                dict(
                    edge.env,
                    CALLMESH_ACCOUNTING_DATABASE_URL=url,
                    CALLMESH_ACCOUNTING_MAX_CALL_DURATION=str(MAX_CALL_DURATION),
                    CALLMESH_ACCOUNTING_CLOSE_INTERVAL="0.5",
                ),
                tmp_path,
            )
            try:
                accounting.start("acct-1")  # first: its queue must exist before the call
                yield edge, daemon, accounting
            finally:
                stop_all_sipp()
                accounting.stop_all()
                delete_queues(edge.namespace, CALLS_QUEUE)  # the edge's own go with the edge
    finally:
        asyncio.run(drop_postgres(database))


def test_a_relayed_call_never_hung_up_leaves_no_session_after_the_max_duration(
    platform: tuple[Edge, Daemon, Accounting], tmp_path: Path
) -> None:
    edge, daemon, accounting = platform
    gateway_port = free_port()
    edge.put(
        {
            "gateways/forever": {
                "address": f"sip:{LOOPBACK}:{gateway_port}",
                "media_relay": "always",
            },
            "rules/forever": {"prefix": "1777", "gateways": ["forever"]},
        }
    )
    gateway = sipp(tmp_path, "media_gateway", gateway_port)  # waits for a BYE that never comes
    wait_bound(gateway_port)
    answered = time.time()
    caller = sipp(
        tmp_path,
        "media_caller_vanishes",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "17770001"),
    )
    assert caller.wait() == 0, caller.errors() + edge.log()
    # The positive control: the answered call holds its session (rtpengine keeps it for 60 s).
    [call_id] = sessions(daemon)
    until(
        lambda: sessions(daemon) == [],
        lambda: f"left: {sessions(daemon)}\n{edge.log()}\n{accounting.log()}",
        within=30.0,
    )
    assert time.time() - answered >= MAX_CALL_DURATION  # deleted by the close, not before
    assert metric(edge, "callmesh_edge_media_expired_total") == 1
    with accounting.api() as client:
        [record] = client.get(f"/v1/cdrs/{call_id}").json()["items"]
    assert record["disposition"] == "timeout", record
    assert "BYE" not in gateway.messages()  # the far end never had one
