"""Fraud on the wire: a subscriber (digest through edge A) calling a premium prefix 30 times
a minute, real edge, registrar and routing service, SIPp, RabbitMQ and Redis.

The rule warns at 10 calls a minute and blocks the account at 20; the minute is
6 s here (``CALLMESH_FRAUD_WINDOW_SCALE=0.1``), so 30 calls at 5 a second are 30
a minute. The 20th call trips the critical level and is refused with the rest
(``403`` with a ``Reason`` naming the block); a call after the minute has passed
is still refused; the operator's unblock lets the next one through. The
``fraud.threshold.…`` events are consumed from RabbitMQ and carry the figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from tests.conftest import RABBITMQ_URL
from tests.services.edge.cluster import DOMAIN, PASSWORD, Cluster, running_cluster
from tests.services.edge.support import (
    SCENARIOS,
    Sipp,
    sipp,
    wait_bound,
)
from tests.shared.bus.support import until

pytestmark = [pytest.mark.wire, pytest.mark.integration]

NUMBER = "19005550001"
ACCOUNT = f"subscriber:mallory@{DOMAIN}"
RULE: dict[str, object] = {
    "caller": ACCOUNT,
    "prefixes": ["1900", "1976"],
    "calls_per_minute": {"warning": 10, "critical": 20},
    "block": "account",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, both={"fraud_window_scale": "0.1"}) as running:
        yield running


def call(cluster: Cluster, workdir: Path, calls: int, rate: str = "5") -> Sipp:
    workdir.mkdir(exist_ok=True)
    text = (SCENARIOS / "subscriber_caller_refusable.xml").read_text()
    scenario = workdir / "fraud_caller.xml"
    scenario.write_text(
        text.replace("username=[user] password=[password]", f"username=mallory password={PASSWORD}")
    )
    keys = ("-key", "user", "mallory", "-key", "domain", DOMAIN)
    args = ("-s", NUMBER, *keys, "-auth_uri", f"{NUMBER}@{DOMAIN}", "-r", rate, "-l", "5")
    caller = sipp(workdir, scenario, free_port(), remote=cluster.a.sip_port, calls=calls, args=args)
    caller.wait(timeout=60)
    return caller


def refusals(caller: Sipp) -> list[str]:
    """The Reason of each call the caller got a 403 for (once per call: retransmissions too)."""
    found: dict[str, str] = {}
    for message in caller.messages().split("\n\n"):
        lines = message.strip().splitlines()
        if lines and lines[0].startswith("SIP/2.0 403"):
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            found[headers["Call-ID"]] = headers.get("Reason", "")
    return list(found.values())


async def test_premium_calls_warn_then_block_the_account_until_the_operator_unblocks(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.subscriber("mallory")
    port = free_port()
    cluster.a.route({"premium": port}, {"p": ("1900", ["premium"])})
    cluster.a.put({"fraud/rules/premium": RULE})
    gateway = sipp(tmp_path, "gateway", port, calls=20)
    wait_bound(port)
    bus = AmqpBus(RABBITMQ_URL, cluster.a.namespace, "test", "fraud-listener")
    await bus.start()
    heard: list[Envelope] = []

    async def collect(envelope: Envelope) -> None:
        heard.append(envelope)

    try:
        await bus.subscribe(["fraud.#"], collect)
        burst = await asyncio.to_thread(call, cluster, tmp_path / "burst", 30)
        refused = refusals(burst)
        assert len(refused) == 11, burst.errors() + cluster.a.log()
        assert gateway.received("INVITE") == 19
        block = refused[0].split("fraud block ", 1)[1].split(":", 1)[0]
        assert set(refused) == {f'SIP;cause=403;text="fraud block {block}: account {ACCOUNT}"'}

        await until(lambda: len(heard) >= 2)
        warning, critical = (e.data for e in heard if e.type.startswith("fraud.threshold"))
        assert [e.type for e in heard] == ["fraud.threshold.warning", "fraud.threshold.critical"]
        figures: dict[str, object] = {"rule": "premium", "account": ACCOUNT, "prefix": "1900"}
        figures |= {"metric": "calls_per_minute", "window": 6.0, "source": "edge-a"}
        assert warning == {
            **figures, "value": 10.0, "threshold": 10, "block": None, "blocked": None,
            "call_id": warning["call_id"],
        }  # fmt: skip # the event's figures as one value
        assert critical == {
            **figures, "value": 20.0, "threshold": 20, "block": block, "blocked": "account",
            "call_id": critical["call_id"],
        }  # fmt: skip # the event's figures as one value

        await asyncio.sleep(6.5)  # the minute has passed: the block has not
        later = await asyncio.to_thread(call, cluster, tmp_path / "later", 1)
        assert len(refusals(later)) == 1 and gateway.received("INVITE") == 19
        with cluster.a.http(cluster.a.routing_port) as api:
            state = api.get("/v1/fraud/state").json()
            assert [(b["id"], b["account"], b["value"]) for b in state["blocks"]] == [
                (block, ACCOUNT, 20)
            ]
            dry = api.get("/v1/route", params={"number": NUMBER, "caller": f"mallory@{DOMAIN}"})
            assert dry.json()["fraud"]["verdict"] == "refused"
            assert api.post(f"/v1/fraud/blocks/{block}:unblock").status_code == 200
        after = await asyncio.to_thread(call, cluster, tmp_path / "after", 1)
        assert refusals(after) == [], after.messages()[-2000:]
        assert gateway.wait(timeout=10) == 0
        assert gateway.received("INVITE") == 20
        assert heard[-1].type == "fraud.block.removed" and heard[-1].data["block"] == block
    finally:
        await bus.close()
