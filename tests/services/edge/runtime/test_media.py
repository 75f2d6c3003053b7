"""The edge's rtpengine runner against a real daemon: flags sent, failures given back as None."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.rtpengine import Daemon, running_rtpengine
from services.edge import metrics
from services.edge.proxy.actions import Media
from services.edge.runtime.media import MediaRunner
from shared.rtpengine.instances import Instance
from shared.settings import Settings

pytestmark = pytest.mark.integration

OFFER = (
    b"v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_rtpengine(tmp_path_factory.mktemp("rtpengine")) as running:
        yield running


@pytest.fixture
async def runner(daemon: Daemon) -> AsyncIterator[MediaRunner]:
    flags = "codec-strip-PCMU replace-origin"
    settings = Settings(rtpengine=daemon.instance.name, rtpengine_flags=flags)
    made = MediaRunner.from_settings(settings)
    assert made is not None
    await made.start()
    yield made
    await made.stop()


def test_no_instances_no_runner() -> None:
    assert MediaRunner.from_settings(Settings()) is None


async def test_the_flags_reach_rtpengine_and_a_delete_ends_the_session(
    runner: MediaRunner,
) -> None:
    offered = await runner.run(Media("offer", "flags-1", "ft", None, OFFER, 1))
    assert offered is not None
    media_line = next(line for line in offered.splitlines() if line.startswith(b"m=audio"))
    assert media_line.endswith(b"RTP/AVP 8")  # PCMU stripped as the flags ask
    assert b"192.0.2.10" not in offered  # c= always, o= as replace-origin asks
    assert await runner.run(Media("delete", "flags-1", "", None, b"", 0)) == b""
    reply = await runner.client.request(runner.client.instances[0], "list", {})
    assert reply.body.get("calls") == []


async def test_a_refused_command_gives_none(tmp_path: Path) -> None:
    """`answer` of a call rtpengine does not hold: its error, given back as no SDP."""
    unknown = Media("answer", "never-offered", "ft", "tt", OFFER, 2)
    with running_rtpengine(tmp_path) as daemon:
        made = MediaRunner.from_settings(Settings(rtpengine=daemon.instance.name))
        assert made is not None
        await made.start()
        try:
            assert await made.run(unknown) is None
        finally:
            await made.stop()


async def test_an_unreachable_rtpengine_gives_none_and_a_failed_delete_is_counted() -> None:
    settings = Settings(rtpengine=Instance("127.0.0.1", 9).name, rtpengine_timeout=0.05)
    made = MediaRunner.from_settings(settings)
    assert made is not None
    await made.start()
    before = metrics.MEDIA_FAILURES["delete", "ignored"]
    try:
        assert await made.run(Media("offer", "dead-1", "ft", None, OFFER, 1)) is None
        assert await made.run(Media("delete", "dead-1", "", None, b"", 0)) is None
    finally:
        await made.stop()
    assert metrics.MEDIA_FAILURES["delete", "ignored"] == before + 1


@pytest.mark.parametrize("to_tag", [None, "tt"])
async def test_a_new_calls_offer_rtpengine_never_answered_is_deleted_a_reinvites_is_not(
    to_tag: str | None,
) -> None:
    """An INVITE's offer (no to-tag) that got no reply: a delete follows, since the call goes
    on unrelayed (or is refused) and no BYE would end a session rtpengine took late."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        instance = Instance("127.0.0.1", sock.getsockname()[1])
        settings = Settings(rtpengine=instance.name, rtpengine_timeout=0.03, rtpengine_retries=0)
        made = MediaRunner.from_settings(settings)
        assert made is not None
        await made.client.start()  # no pings: only the call's datagrams reach the socket
        try:
            assert await made.run(Media("offer", "lost-1", "ft", to_tag, OFFER, 1)) is None
            await asyncio.sleep(0.1)  # the delete goes in the background
        finally:
            made.client.close()
        got = []
        while True:
            try:
                got.append(sock.recv(65536))
            except BlockingIOError:
                break
    deletes = [data for data in got if b"6:delete" in data]
    assert len(deletes) == (1 if to_tag is None else 0)
    assert all(b"7:call-id6:lost-1" in data for data in deletes)
