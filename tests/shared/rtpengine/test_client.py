"""The client's timing and failure paths, against a scripted peer on a local socket.

What rtpengine itself answers is tested against the real daemon
(``test_client_daemon.py``); here a local UDP socket plays an instance that
loses datagrams, answers garbage, or does not answer at all.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from shared.rtpengine import metrics
from shared.rtpengine.client import RtpengineClient, RtpengineUnavailableError
from shared.rtpengine.instances import Instance, ranked
from shared.rtpengine.protocol import NgCommandError

Script = Callable[[bytes, int], list[bytes]]
"""(request datagram, how many came before) → the datagrams to answer with."""


class Peer(asyncio.DatagramProtocol):
    """A local UDP socket answering as its script says; records what it got."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.got: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for answer in self.script(data, len(self.got)):
            self.transport.sendto(answer, addr)
        self.got.append(data)


def cookie(data: bytes) -> bytes:
    return data.split(b" ", 1)[0]


async def peer(script: Script) -> tuple[Peer, Instance]:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Peer(script), local_addr=("127.0.0.1", 0)
    )
    assert protocol.transport is not None
    port = protocol.transport.get_extra_info("sockname")[1]
    return protocol, Instance("127.0.0.1", port)


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., RtpengineClient]]:
    clients: list[RtpengineClient] = []

    def make(*instances: Instance, timeout: float = 0.05, retries: int = 2) -> RtpengineClient:
        client = RtpengineClient(instances, timeout=timeout, retries=retries)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def silent_instance() -> Iterator[Instance]:
    """An address nobody answers on: a bound UDP socket never read."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield Instance("127.0.0.1", sock.getsockname()[1])


async def test_a_lost_reply_is_asked_again_with_the_same_cookie(
    client_for: Callable[..., RtpengineClient],
) -> None:
    """rtpengine answers a known cookie from its cache: the retry must not be a new request."""
    server, instance = await peer(
        lambda data, n: [] if n < 2 else [cookie(data) + b" d6:result4:ponge"]
    )
    client = client_for(instance)
    await client.start()
    before = metrics.RETRANSMISSIONS.labels(instance.name)._value.get()
    assert await client.ping(instance)
    assert len(server.got) == 3 and len({cookie(data) for data in server.got}) == 1
    assert metrics.RETRANSMISSIONS.labels(instance.name)._value.get() == before + 2


async def test_no_reply_after_the_retries_raises_and_marks_the_instance_down(
    client_for: Callable[..., RtpengineClient], silent_instance: Instance
) -> None:
    dead = silent_instance
    client = client_for(dead, timeout=0.03, retries=1)
    await client.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RtpengineUnavailableError, match="no reply to 'offer' after 2 tries"):
        await client.offer("c1", {"from-tag": "a", "sdp": "v=0"})
    assert loop.time() - started < 0.5  # bounded by timeout * (retries + 1), with slack
    assert client.alive[dead] is False
    assert metrics.UP.labels(dead.name)._value.get() == 0
    with pytest.raises(RtpengineUnavailableError, match="no rtpengine instance is up"):
        await client.offer("c2", {"from-tag": "a", "sdp": "v=0"})


async def test_a_malformed_reply_is_counted_and_dropped_and_the_good_one_taken(
    client_for: Callable[..., RtpengineClient], caplog: pytest.LogCaptureFixture
) -> None:
    def script(data: bytes, n: int) -> list[bytes]:
        return [
            b"garbage",
            cookie(data) + b" d6:result2:ok",
            b"other_1 d6:result2:oke",
            cookie(data) + b" d6:result2:oke",
        ]

    _, instance = await peer(script)
    client = client_for(instance)
    await client.start()
    malformed = metrics.ERRORS.labels("malformed", instance.name)
    before = malformed._value.get()
    reply = await client.request(instance, "query", {"call-id": "x"})
    assert reply.result == "ok"
    assert malformed._value.get() == before + 2
    assert client.exchange.strays >= 1
    said = [r for r in caplog.records if "malformed reply" in r.getMessage()]
    assert len(said) == 1  # the second within 10 s is counted, not logged


async def test_a_dead_instance_is_skipped_for_new_calls_and_back_once_it_answers_a_ping(
    client_for: Callable[..., RtpengineClient],
) -> None:
    answering = True

    def script(data: bytes, n: int) -> list[bytes]:
        return [cookie(data) + b" d6:result4:ponge"] if answering else []

    _, one = await peer(script)
    _, two = await peer(lambda data, n: [cookie(data) + b" d6:result2:ok3:sdp3:v=0e"])
    client = client_for(one, two)
    await client.start()
    call_id = next(f"c{n}" for n in range(100) if ranked(f"c{n}", (one, two))[0] == one)
    answering = False
    assert not await client.ping(one)
    reply = await client.offer(call_id, {"from-tag": "a", "sdp": "v=0"})
    assert reply.text("sdp") == "v=0"  # from the second instance
    answering = True
    assert await client.ping(one)
    assert client.alive[one]


@pytest.mark.parametrize(
    "not_held",
    [
        b" d6:result5:error12:error-reason15:Unknown call-IDe",
        b" d7:warning38:Call-ID not found or tags didn't match6:result2:oke",  # a delete's answer
    ],
)
async def test_the_commands_of_a_call_go_down_the_ranking_past_instances_that_do_not_know_it(
    client_for: Callable[..., RtpengineClient], not_held: bytes
) -> None:
    first, one = await peer(lambda data, n: [cookie(data) + not_held])
    second, two = await peer(lambda data, n: [cookie(data) + b" d6:result2:oke"])
    client = client_for(one, two)
    await client.start()
    call_id = next(f"c{n}" for n in range(100) if ranked(f"c{n}", (one, two))[0] == one)
    reply = await client.command("delete", call_id, {"from-tag": "a"})
    assert reply.result == "ok" and reply.text("warning") is None
    assert len(first.got) == 1 and len(second.got) == 1
    call_id = next(f"c{n}" for n in range(100) if ranked(f"c{n}", (one, two))[0] == two)
    assert (await client.command("delete", call_id, {"from-tag": "a"})).result == "ok"
    assert len(first.got) == 1  # the instance that knew it answered first


async def test_an_unknown_call_everywhere_and_other_refusals_raise(
    client_for: Callable[..., RtpengineClient],
) -> None:
    unknown = b" d6:result5:error12:error-reason15:Unknown call-IDe"
    _, one = await peer(lambda data, n: [cookie(data) + unknown])
    client = client_for(one)
    await client.start()
    with pytest.raises(NgCommandError, match="Unknown call-ID"):
        await client.command("delete", "c1", {"from-tag": "a"})
    _, two = await peer(lambda data, n: [cookie(data) + b" d6:result5:error12:error-reason3:bade"])
    other = client_for(two)
    await other.start()
    refused = metrics.ERRORS.labels("refused", two.name)
    before = refused._value.get()
    with pytest.raises(NgCommandError, match="bad"):
        await other.offer("c1", {"from-tag": "a", "sdp": "v=0"})
    assert refused._value.get() == before + 1


@pytest.mark.parametrize("new_call", [True, False])
async def test_a_new_calls_offer_without_reply_is_deleted_on_its_instance_a_reinvites_is_not(
    client_for: Callable[..., RtpengineClient], new_call: bool
) -> None:
    """rtpengine may have taken an offer whose replies were lost; no BYE will delete it."""

    def script(data: bytes, n: int) -> list[bytes]:
        return [cookie(data) + b" d6:result2:oke"] if b"6:delete" in data else []

    server, instance = await peer(script)
    client = client_for(instance, timeout=0.03, retries=1)
    await client.start()
    with pytest.raises(RtpengineUnavailableError):
        await client.offer("lost-1", {"from-tag": "a", "sdp": "v=0"}, new_call=new_call)
    await asyncio.sleep(0.1)  # the delete goes in the background
    deletes = [data for data in server.got if b"6:delete" in data]
    if not new_call:
        assert deletes == []  # a re-INVITE's: the call's media lives on
        return
    assert len(deletes) == 1 and b"7:call-id6:lost-1" in deletes[0]
    assert len(server.got) == 3  # the offer twice, the delete once
