"""The client against the real rtpengine: a call's offer, answer, query and delete.

Two daemons play two instances: a call goes where its Call-ID's hash says, the
rewritten SDP names rtpengine's address and ports, and every call deleted
leaves no session behind.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from deploy.rtpengine import Daemon, running_rtpengine
from shared.rtpengine import metrics
from shared.rtpengine.client import RtpengineClient
from shared.rtpengine.instances import ranked
from shared.rtpengine.protocol import NgCommandError

pytestmark = pytest.mark.integration

CALLER_SDP = (
    "v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
CALLEE_SDP = (
    "v=0\r\no=callee 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    folder = tmp_path_factory.mktemp("rtpengine")
    with running_rtpengine(folder) as one, running_rtpengine(folder) as two:
        yield one, two


@pytest.fixture
async def client(daemons: tuple[Daemon, Daemon]) -> AsyncIterator[RtpengineClient]:
    client = RtpengineClient(tuple(daemon.instance for daemon in daemons), timeout=0.5)
    await client.start()
    yield client
    client.close()


def media_port(sdp: str) -> int:
    found = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    assert found is not None, sdp
    return int(found.group(1))


def connection_addresses(sdp: str) -> set[str]:
    """The addresses of the SDP's ``c=`` lines: where the media is to be sent."""
    return set(re.findall(r"^c=IN IP4 (\S+)", sdp, re.MULTILINE))


async def calls_on(client: RtpengineClient) -> dict[str, list[str]]:
    """Each instance's name → the Call-IDs it holds (``list``)."""
    held = {}
    for instance in client.instances:
        reply = (await client.request(instance, "list", {})).checked("list")
        calls = reply.body.get("calls")
        assert isinstance(calls, list)
        held[instance.name] = [call.decode() for call in calls if isinstance(call, bytes)]
    return held


async def test_a_call_is_relayed_through_the_instance_its_call_id_picks(
    client: RtpengineClient, daemons: tuple[Daemon, Daemon], tmp_path: Path
) -> None:
    call_id = "relay-1@edge"
    chosen = ranked(call_id, client.instances)[0]
    daemon = next(d for d in daemons if d.instance == chosen)
    assert await client.ping(chosen)

    offered = await client.offer(call_id, {"from-tag": "caller-tag", "sdp": CALLER_SDP})
    sdp = offered.text("sdp")
    assert sdp is not None and connection_addresses(sdp) == {"127.0.0.1"}
    assert daemon.port_min <= media_port(sdp) <= daemon.port_max

    answered = await client.command(
        "answer", call_id, {"from-tag": "caller-tag", "to-tag": "callee-tag", "sdp": CALLEE_SDP}
    )
    sdp = answered.text("sdp")
    assert sdp is not None and connection_addresses(sdp) == {"127.0.0.1"}
    assert daemon.port_min <= media_port(sdp) <= daemon.port_max

    queried = await client.command("query", call_id, {})
    tags = queried.body.get("tags")
    assert isinstance(tags, dict) and set(tags) == {"caller-tag", "callee-tag"}
    assert (await calls_on(client))[chosen.name] == [call_id]

    await client.command("delete", call_id, {"from-tag": "caller-tag"})
    assert await calls_on(client) == {instance.name: [] for instance in client.instances}


async def test_many_calls_spread_over_both_instances_and_none_is_left_after_delete(
    client: RtpengineClient,
) -> None:
    call_ids = [f"spread-{n}@edge" for n in range(20)]
    for call_id in call_ids:
        await client.offer(call_id, {"from-tag": "a", "sdp": CALLER_SDP})
    held = await calls_on(client)
    for call_id in call_ids:
        assert call_id in held[ranked(call_id, client.instances)[0].name]
    assert all(held.values()), "each instance holds some of the 20 calls"
    for call_id in call_ids:
        await client.command("delete", call_id, {"from-tag": "a"})
    assert await calls_on(client) == {instance.name: [] for instance in client.instances}


async def test_rtpengine_s_refusals_come_back_as_errors_and_are_counted(
    client: RtpengineClient,
) -> None:
    with pytest.raises(NgCommandError, match=r"(?i)unknown call"):
        await client.command("query", "never-offered@edge", {})
    deleted = await client.command("delete", "never-offered@edge", {"from-tag": "a"})
    assert deleted.result == "ok" and "not found" in (deleted.text("warning") or "")
    instance = ranked("bad-sdp@edge", client.instances)[0]
    refused = metrics.ERRORS.labels("refused", instance.name)
    before = refused._value.get()
    with pytest.raises(NgCommandError):
        await client.offer("bad-sdp@edge", {"from-tag": "a", "sdp": "this is not an SDP"})
    assert refused._value.get() == before + 1
    assert await calls_on(client) == {instance.name: [] for instance in client.instances}


async def test_latency_is_measured_per_command(client: RtpengineClient) -> None:
    histogram = metrics.LATENCY.labels("ping")
    before = histogram._sum.get()
    assert await client.ping(client.instances[0])
    assert histogram._sum.get() > before


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_stopped_instance_is_found_down_by_its_pings_and_new_calls_go_elsewhere(
    daemons: tuple[Daemon, Daemon], tmp_path: Path
) -> None:
    survivor = daemons[0].instance
    with running_rtpengine(tmp_path) as doomed:
        client = RtpengineClient((survivor, doomed.instance), timeout=0.1, retries=1)
        await client.start()
        probing = asyncio.create_task(client.probe(interval=0.05))
        first, second = [
            call_id
            for call_id in (f"moved-{n}@edge" for n in range(100))
            if ranked(call_id, client.instances)[0] == doomed.instance
        ][:2]
        await client.offer(first, {"from-tag": "a", "sdp": CALLER_SDP})
        assert (await calls_on(client))[doomed.instance.name] == [first]
    try:  # the daemon is stopped: its pings go unanswered
        await wait_for(lambda: not client.alive[doomed.instance])
        assert metrics.UP.labels(doomed.instance.name)._value.get() == 0
        offered = await client.offer(second, {"from-tag": "a", "sdp": CALLER_SDP})
        assert connection_addresses(offered.text("sdp") or "") == {"127.0.0.1"}
        calls = (await client.request(survivor, "list", {})).body.get("calls")
        assert calls == [second.encode()]
        await client.command("delete", second, {"from-tag": "a"})
    finally:
        probing.cancel()
        client.close()
