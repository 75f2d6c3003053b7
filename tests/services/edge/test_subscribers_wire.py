"""Subscribers on the wire: REGISTER with digest at edge A, calls to them entering at edge B.

Real processes (two edges, registrar, routing), real RabbitMQ and Redis, SIPp
as the phones, the callers and the carrier gateway.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.registrar import Phone
from deploy.labs.ports import free_port
from shared.sip.auth.digest import authorize, parse_challenge
from shared.sip.message import Request, Response, parse_message
from tests.services.edge.cluster import (
    DOMAIN,
    PASSWORD,
    Cluster,
    next_event,
    registrar_events,
    running_cluster,
)
from tests.services.edge.support import (
    LOOPBACK,
    SCENARIOS,
    SipClient,
    Sipp,
    sip_request,
    sipp,
    status_of,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("subscribers-wire")


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Cluster]:
    with running_cluster(workdir) as running:
        yield running


def raw_phone(cluster: Cluster, user: str, transport: str = "udp") -> tuple[Phone, SipClient]:
    client = SipClient(cluster.a.sip_port, transport)
    phone = Phone(user, DOMAIN, PASSWORD, host=LOOPBACK, port=client.port, algorithm="MD5")
    return phone, client


def exchange(client: SipClient, data: bytes) -> Response:
    client.send(data)
    response = parse_message(client.final())
    assert isinstance(response, Response)
    return response


def register(phone: Phone, client: SipClient, **options: object) -> Response:
    """Challenge, then the answer to it; the final response to the second REGISTER."""
    challenge = exchange(client, phone.register(**options))  # type: ignore[arg-type]
    assert challenge.status == 401, challenge
    phone.learn(challenge)
    return exchange(client, phone.register(**options))  # type: ignore[arg-type]


def with_credentials(workdir: Path, scenario: str, user: str) -> Path:
    """The scenario with `user`'s credentials written in: SIPp does not expand keys there."""
    text = (SCENARIOS / f"{scenario}.xml").read_text()
    path = workdir / f"{scenario}-{user}.xml"
    path.write_text(
        text.replace("username=[user] password=[password]", f"username={user} password={PASSWORD}")
    )
    return path


def phone_sipp(
    cluster: Cluster,
    workdir: Path,
    user: str,
    *,
    transport: str = "u1",
    contact_host: str | None = None,
    contact_port: int | None = None,
) -> Sipp:
    port = free_port()
    keys = {
        "user": user,
        "domain": DOMAIN,
        "password": PASSWORD,
        "expires": "300",
        "contact_host": contact_host or LOOPBACK,
        "contact_port": str(contact_port or port),
    }
    args = tuple(item for key, value in keys.items() for item in ("-key", key, value))
    args += ("-auth_uri", DOMAIN)  # SIPp's digest-uri is the remote address otherwise
    args += ("-oocsf", str(SCENARIOS / "phone_answer.xml"))
    scenario = with_credentials(workdir, "phone", user)
    return sipp(workdir, scenario, port, remote=cluster.a.sip_port, transport=transport, args=args)


def dial_at_b(cluster: Cluster, workdir: Path, user: str) -> int:
    caller = sipp(
        workdir,
        "dial",
        free_port(),
        remote=cluster.b.sip_port,
        args=("-s", user, "-key", "domain", DOMAIN, "-set", "hold", "0"),
    )
    return caller.wait()


def invite_at_b(cluster: Cluster, user: str) -> int:
    """A raw INVITE to user@DOMAIN entering at edge B: its final status."""
    client = SipClient(cluster.b.sip_port)
    try:
        request = sip_request("INVITE", f"sip:{user}@{DOMAIN}", "udp", client.port)
        client.send(request)
        return status_of(client.final())
    finally:
        client.close()


async def eventually_answered(cluster: Cluster, user: str, status: int) -> bool:
    """Whether edge B answers an INVITE to `user` with `status` within about 3 s: B applies
    a registrar event on its own consumer, a moment after the test's own queue heard it
    (once seen: the INVITE right after the event still went to the removed binding)."""
    deadline = time.monotonic() + 3.0
    while True:
        if await asyncio.to_thread(invite_at_b, cluster, user) == status:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


def test_wrong_password_is_refused(cluster: Cluster) -> None:
    cluster.subscriber("wrongpw")
    phone, client = raw_phone(cluster, "wrongpw")
    challenge = exchange(client, phone.register())
    assert challenge.status == 401
    assert "algorithm=MD5" in " ".join(challenge.headers("www-authenticate"))
    phone.learn(challenge)
    assert exchange(client, phone.register(password="not-it")).status == 403
    assert cluster.bindings("wrongpw") == []


def test_replayed_nonce_is_challenged_again(cluster: Cluster) -> None:
    cluster.subscriber("replay")
    phone, client = raw_phone(cluster, "replay")
    first = register(phone, client)
    assert first.status == 200
    replay = phone.register(cseq=phone.cseq + 1)
    assert exchange(client, replay).status == 200
    # The same credentials (nonce and nonce-count) in a new transaction: a replay.
    again = re.sub(rb"branch=z9hG4bK\w+", b"branch=z9hG4bK" + secrets.token_hex(8).encode(), replay)
    again = again.replace(f"CSeq: {phone.cseq} ".encode(), f"CSeq: {phone.cseq + 1} ".encode())
    assert exchange(client, again).status == 401


def test_a_retransmitted_register_is_answered_once_by_the_registrar(cluster: Cluster) -> None:
    cluster.subscriber("retrans")
    phone, client = raw_phone(cluster, "retrans")
    challenge = exchange(client, phone.register())
    phone.learn(challenge)
    authorized = phone.register()
    first = exchange(client, authorized)
    second = exchange(client, authorized)  # same branch: the edge's transaction answers
    assert first.status == second.status == 200
    assert first.to_tag == second.to_tag


async def test_registered_phone_is_called_through_the_other_edge(
    cluster: Cluster, workdir: Path
) -> None:
    cluster.subscriber("alice")
    async with registrar_events(cluster.a.namespace) as heard:
        phone = phone_sipp(cluster, workdir, "alice")
        added = await next_event(heard, "registrar.binding.added", f"sip:alice@{DOMAIN}", 15)
        assert added.data["binding"]["edge"] == "edge-a"
        [binding] = cluster.wait_bindings("alice", 1)
        assert str(binding["contact"]).startswith(f"sip:alice@{LOOPBACK}:")
        assert await asyncio.to_thread(dial_at_b, cluster, workdir, "alice") == 0
        phone.stop()
        assert phone.received("INVITE") == 1
        assert phone.received("BYE") == 1
        # Unregister: edge B learns it from the event (it had alice cached) and answers 480.
        remover, client = raw_phone(cluster, "alice")
        gone = register(remover, client, contacts=["*"], expires=0)
        assert gone.status == 200
        await next_event(heard, "registrar.binding.removed", f"sip:alice@{DOMAIN}", 10)
    assert await eventually_answered(cluster, "alice", 480)
    assert await asyncio.to_thread(invite_at_b, cluster, "nobody") == 404


async def test_expired_binding_disappears_with_an_event(cluster: Cluster) -> None:
    cluster.subscriber("brief")
    phone, client = raw_phone(cluster, "brief")
    async with registrar_events(cluster.a.namespace) as heard:
        assert register(phone, client, expires=1).status == 200
        assert len(cluster.bindings("brief")) == 1
        await next_event(heard, "registrar.binding.expired", f"sip:brief@{DOMAIN}", 10)
    assert cluster.bindings("brief") == []
    assert await asyncio.to_thread(invite_at_b, cluster, "brief") == 480


def test_subscriber_calling_a_number_is_challenged_then_routed(
    cluster: Cluster, workdir: Path
) -> None:
    cluster.subscriber("dave")
    port = free_port()
    cluster.a.route({"gw1": port}, {"r1": ("1555", ["gw1"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    caller = sipp(
        workdir,
        with_credentials(workdir, "subscriber_caller", "dave"),
        free_port(),
        remote=cluster.a.sip_port,
        args=(
            "-s",
            "15550001",
            "-key",
            "user",
            "dave",
            "-key",
            "domain",
            DOMAIN,
            "-key",
            "password",
            PASSWORD,
            "-auth_uri",
            f"15550001@{DOMAIN}",
        ),
    )
    assert caller.wait() == 0, caller.errors() + cluster.a.log()
    assert gateway.wait() == 0
    assert "SIP/2.0 407" in caller.messages()
    invite = gateway.messages().split("INVITE sip:", 1)[1]
    assert invite.startswith(f"15550001@{LOOPBACK}:{port}")
    assert "Proxy-Authorization" not in invite.split("\n\n", 1)[0]


def test_unauthenticated_call_from_an_untrusted_source_gets_407(cluster: Cluster) -> None:
    client = SipClient(cluster.a.sip_port)
    request = sip_request("INVITE", f"sip:15550001@{DOMAIN}", "udp", client.port)
    request = request.replace(f"<sip:test@{LOOPBACK}>".encode(), f"<sip:dave@{DOMAIN}>".encode())
    client.send(request)
    response = client.final()
    assert status_of(response) == 407
    assert b'Proxy-Authenticate: Digest realm="example.com"' in response


async def test_phone_behind_nat_is_reached_at_its_source(cluster: Cluster, workdir: Path) -> None:
    cluster.subscriber("nat")
    phone = phone_sipp(cluster, workdir, "nat", contact_host="10.255.255.1", contact_port=5099)
    [binding] = cluster.wait_bindings("nat", 1)
    assert binding["contact"] == "sip:nat@10.255.255.1:5099;transport=UDP"
    assert await asyncio.to_thread(dial_at_b, cluster, workdir, "nat") == 0
    phone.stop()
    assert phone.received("BYE") == 1
    invite = phone.messages().split("INVITE sip:", 1)[1]
    assert "cm-flow=" in invite  # edge A's Record-Route names the flow


async def test_tcp_phone_is_reached_over_its_connection(cluster: Cluster, workdir: Path) -> None:
    cluster.subscriber("tcpphone")
    phone = phone_sipp(cluster, workdir, "tcpphone", transport="t1")
    [binding] = cluster.wait_bindings("tcpphone", 1)
    assert binding["transport"] == "tcp"
    assert await asyncio.to_thread(dial_at_b, cluster, workdir, "tcpphone") == 0
    phone.stop()
    assert phone.received("INVITE") == 1
    assert phone.received("BYE") == 1


class UdpPhone:
    """A phone on an unconnected UDP socket: it registers at edge A, calls reach it from B."""

    def __init__(self, cluster: Cluster, user: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5.0)
        self.sock.bind((LOOPBACK, 0))
        port = int(self.sock.getsockname()[1])
        self.phone = Phone(user, DOMAIN, PASSWORD, host=LOOPBACK, port=port, algorithm="MD5")
        self.registrar = (LOOPBACK, cluster.a.sip_port)

    def register(self) -> int:
        self.sock.sendto(self.phone.register(), self.registrar)
        challenge = parse_message(self.receive(b"SIP/2.0 401"))
        assert isinstance(challenge, Response)
        self.phone.learn(challenge)
        self.sock.sendto(self.phone.register(), self.registrar)
        return status_of(self.receive(b"SIP/2.0 2"))

    def receive(self, start: bytes) -> bytes:
        """The next message starting with `start` (provisionals and strays skipped)."""
        while True:
            data, self.peer = self.sock.recvfrom(65535)
            if data.startswith(start):
                return data

    def respond(self, request: bytes, status: int, reason: str) -> None:
        message = parse_message(request)
        assert isinstance(message, Request)
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in message.headers("via")]
        lines += [f"Record-Route: {rr}" for rr in message.headers("record-route")]
        lines += [
            f"From: {message.header('from')}",
            f"To: {message.header('to')};tag=p{self.phone.port}",
            f"Call-ID: {message.call_id}",
            f"CSeq: {message.header('cseq')}",
            f"Contact: <{self.phone.contact}>",
        ]
        self.sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), self.peer)

    def close(self) -> None:
        self.sock.close()


def test_equal_q_contacts_ring_in_parallel_and_the_loser_is_cancelled(cluster: Cluster) -> None:
    cluster.subscriber("forked")
    desk, mobile = UdpPhone(cluster, "forked"), UdpPhone(cluster, "forked")
    caller = SipClient(cluster.b.sip_port)
    try:
        assert desk.register() == mobile.register() == 200
        cluster.wait_bindings("forked", 2)
        caller.send(sip_request("INVITE", f"sip:forked@{DOMAIN}", "udp", caller.port))
        at_desk, at_mobile = desk.receive(b"INVITE "), mobile.receive(b"INVITE ")
        desk.respond(at_desk, 180, "Ringing")
        mobile.respond(at_mobile, 180, "Ringing")
        desk.respond(at_desk, 200, "OK")
        assert status_of(caller.final()) == 200
        cancel = mobile.receive(b"CANCEL ")
        branch = parse_message(at_mobile).top_via.branch
        assert parse_message(cancel).top_via.branch == branch  # it cancels that very INVITE
        mobile.respond(cancel, 200, "OK")
        mobile.respond(at_mobile, 487, "Request Terminated")
        assert mobile.receive(b"ACK ").startswith(b"ACK sip:forked@")  # the 487's hop-by-hop ACK
    finally:
        for each in (desk, mobile, caller):
            each.close()


def test_a_replayed_invite_is_challenged_again(cluster: Cluster) -> None:
    cluster.subscriber("replayer")
    client = SipClient(cluster.a.sip_port)
    uri = f"sip:19995550000@{DOMAIN}"  # a number without a route: 404 once authenticated
    caller = f"<sip:test@{LOOPBACK}>"

    def invite(call_id: str, extra: str = "") -> bytes:
        request = sip_request("INVITE", uri, "udp", client.port, call_id=call_id, extra=extra)
        return request.replace(caller.encode(), f"<sip:replayer@{DOMAIN}>".encode())

    def final(call_id: str) -> bytes:
        """The final response of that call (unACKed 407s of earlier calls come again)."""
        while (message := client.final()).find(f"Call-ID: {call_id}\r\n".encode()) < 0:
            pass
        return message

    try:
        client.send(invite("replay-1"))
        challenge = parse_message(final("replay-1"))
        assert isinstance(challenge, Response) and challenge.status == 407
        credentials = authorize(
            parse_challenge(challenge.header("proxy-authenticate") or ""),
            username="replayer",
            password=PASSWORD,
            method="INVITE",
            uri=uri,
            cnonce="c0ffee",
        )
        answer = f"Proxy-Authorization: {credentials}\r\n"
        client.send(invite("replay-2", answer))
        assert status_of(final("replay-2")) == 404
        client.send(invite("replay-3", answer))  # the same nonce and nonce-count again
        assert status_of(final("replay-3")) == 407
    finally:
        client.close()


def test_a_strangers_message_never_reaches_a_registered_phone(cluster: Cluster) -> None:
    """Edge A trusts no loopback source: a MESSAGE to a registered phone is challenged like
    an INVITE, and only the sender who proves a subscriber's password reaches the phone."""
    cluster.subscriber("inbox")
    cluster.subscriber("sender")
    phone = UdpPhone(cluster, "inbox")
    stranger = SipClient(cluster.a.sip_port)
    uri = f"sip:inbox@{DOMAIN}"

    def message(call_id: str, extra: str = "") -> bytes:
        request = sip_request("MESSAGE", uri, "udp", stranger.port, call_id=call_id, extra=extra)
        return request.replace(f"<sip:test@{LOOPBACK}>".encode(), f"<sip:sender@{DOMAIN}>".encode())

    try:
        assert phone.register() == 200
        cluster.wait_bindings("inbox", 1)
        stranger.send(message("stranger-1"))
        challenge = parse_message(stranger.final())
        assert isinstance(challenge, Response) and challenge.status == 407
        # svwar's probe: a registered, an unregistered and an unknown user, all alike.
        for user in ("inbox", "sender", "nobody"):
            probe = sip_request("OPTIONS", f"sip:{user}@{DOMAIN}", "udp", stranger.port)
            stranger.send(
                probe.replace(f"sip:test@{LOOPBACK}".encode(), b"sip:x@" + DOMAIN.encode())
            )
            assert status_of(stranger.final()) == 407, user
        credentials = authorize(
            parse_challenge(challenge.header("proxy-authenticate") or ""),
            username="sender",
            password=PASSWORD,
            method="MESSAGE",
            uri=uri,
            cnonce="c0ffee",
        )
        stranger.send(message("sender-1", f"Proxy-Authorization: {credentials}\r\n"))
        delivered = parse_message(phone.receive(b"MESSAGE "))
        assert isinstance(delivered, Request)
        assert delivered.call_id == "sender-1"  # the first MESSAGE the phone got: not the 407'd one
        assert delivered.header("proxy-authorization") is None
    finally:
        phone.close()
        stranger.close()
