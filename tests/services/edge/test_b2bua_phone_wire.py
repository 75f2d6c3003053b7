"""A real softphone through B2BUA calls: Debian's baresip, registered at the edge over UDP.

The all-in-one (`python -m services`: edge, registrar, routing, accounting) carries
two rules with `"mode": "b2bua"` (docs/b2bua.md). The phone calls out through one to a
SIPp gateway, which answers with SDP and later hangs up; a SIPp caller calls in through
the other, whose gateway is the phone's own SIP address (the B2BUA calls a gateway, not
a registration: the Request-URI's user, the phone's number, is its account's user), the
phone answers by itself and is hung up over its `ctrl_tcp` socket. Each side's trace
(baresip's `-s` SIP trace, SIPp's message trace) holds none of the other's Call-ID,
tags or addresses; baresip's events say the call was established and closed.
Needs the Debian package `baresip-core`.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.labs.ports import free_port
from deploy.processes import stop_process
from tests.baresip import write_config
from tests.services.edge.support import LOOPBACK, Sipp, sipp, stop_all_sipp, wait_bound
from tests.services.edge.test_b2bua_wire import tags_in
from tests.services.test_all_in_one import running_all_in_one

pytestmark = [pytest.mark.wire, pytest.mark.integration]

NUMBER = "22990001"
"""The phone's account user: the number a SIPp caller dials (rule prefix 2299) to reach it."""
DOMAIN = "example.com"
OUT = "22985550001"
"""What the phone dials (rule prefix 2298, a SIPp gateway)."""
WAIT = 20.0
"""The longest any one step may take (seconds)."""

TRACED = re.compile(r"^(?:UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)(?=\x1b\[;m|\Z)", re.S | re.M)
"""One message of baresip's `-s` SIP trace: from, to, the message."""


@dataclass
class Phone:
    """A running baresip: its SIP port, its control socket (events read as they come) and log."""

    process: subprocess.Popen[bytes]
    port: int
    control: socket.socket
    log: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    _buffer: bytes = b""

    def command(self, name: str, params: str = "") -> None:
        """One command over ctrl_tcp (a netstring of JSON); its answer is read with the events."""
        body = json.dumps({"command": name, "params": params, "token": name}).encode()
        self.control.sendall(b"%d:%s," % (len(body), body))

    def wait_event(self, kind: str, direction: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first event of type `kind` (CALL_ESTABLISHED, CALL_CLOSED) on a call in
        `direction` (incoming, outgoing) not taken yet."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("type") == kind and event.get("direction") == direction:
                    self.events.remove(event)
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"baresip reported no {kind} in {timeout} s: {self.tail()}")
            self.control.settimeout(left)
            try:
                chunk = self.control.recv(65535)
            except TimeoutError:
                continue
            assert chunk, "baresip closed its control socket"
            self._buffer += chunk
            self._parse()

    def _parse(self) -> None:
        """Netstrings of JSON: events kept, the commands' answers dropped."""
        while b":" in self._buffer:
            size, _, rest = self._buffer.partition(b":")
            if len(rest) < int(size) + 1:
                return
            message = json.loads(rest[: int(size)])
            self._buffer = rest[int(size) + 1 :]
            if message.get("event"):
                self.events.append(message)

    def trace(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.trace()[-4000:]

    def sent(self, call_id: str) -> list[str]:
        """The messages of Call-ID `call_id` baresip sent (its SIP trace)."""
        return [
            message
            for source, _, message in TRACED.findall(self.trace())
            if source.endswith(f":{self.port}") and f"\nCall-ID: {call_id}\n" in message
        ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("b2bua-phone-wire")


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[tuple[int, str]]:
    """The all-in-one's SIP port and API base; its health service sends no OPTIONS (a SIPp
    gateway would take one for its call)."""
    with running_all_in_one(workdir, health_probe_mode="never") as (sip, http, _):
        yield sip, f"http://{LOOPBACK}:{http}"


@pytest.fixture(autouse=True)
def no_sipp_left() -> Iterator[None]:
    yield
    stop_all_sipp()


@pytest.fixture(scope="module")
def phone(platform: tuple[int, str], workdir: Path) -> Iterator[Phone]:
    """baresip registered at the edge over UDP, answering calls by itself."""
    baresip = shutil.which("baresip")
    assert baresip is not None, "baresip is missing: apt-get install -y baresip-core"
    sip, api = platform
    body = {"domain": DOMAIN, "password": "s3cret"}
    httpx.put(f"{api}/v1/subscribers/{NUMBER}", json=body).raise_for_status()
    config = workdir / "baresip"
    config.mkdir()
    port, control = free_port(), free_port()
    write_config(config, port, control=control)
    config.joinpath("accounts").write_text(
        f"<sip:{NUMBER}@{DOMAIN}>;auth_pass=s3cret;answermode=auto;"
        f'outbound="sip:{LOOPBACK}:{sip}";regint=600\n'
    )
    log = workdir / "baresip.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [baresip, "-f", str(config), "-s", "-t", "120"],  # -t: it quits by itself anyway
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                connection = socket.create_connection((LOOPBACK, control), timeout=1)
                break
            except OSError:
                assert process.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "baresip's ctrl_tcp did not listen"
                time.sleep(0.1)
        with connection:
            running = Phone(process, port, connection, log)
            until(lambda: registered(api), "registration", running)
            yield running
    finally:
        stop_all_sipp()
        stop_process(process)


def registered(api: str) -> bool:
    reply = httpx.get(f"{api}/v1/registrations/sip:{NUMBER}@{DOMAIN}")
    return reply.status_code == 200 and bool(reply.json()["bindings"])


def until(predicate: Callable[[], bool], what: str, phone: Phone) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert phone.process.poll() is None, phone.tail()
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s: {phone.tail()}"
        time.sleep(0.1)


def b2bua_rule(api: str, prefix: str, port: int) -> None:
    """A b2bua rule for `prefix` whose one gateway is loopback:`port`; returns once the
    edge's routing cache has it."""
    gateway = {"address": f"sip:{LOOPBACK}:{port}"}
    httpx.put(f"{api}/v1/gateways/b{prefix}", json=gateway).raise_for_status()
    rule = {"prefix": prefix, "gateways": [f"b{prefix}"], "mode": "b2bua"}
    reply = httpx.put(f"{api}/v1/rules/b{prefix}", json=rule)
    reply.raise_for_status()
    version = reply.json()["version"]
    deadline = time.monotonic() + WAIT
    while routing_version(api) < version:
        assert time.monotonic() < deadline, f"the edge has no routing table version {version}"
        time.sleep(0.05)


def routing_version(api: str) -> float:
    for line in httpx.get(f"{api}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name == "callmesh_edge_routing_version":
            return float(value)
    return 0.0


def record(api: str, call_id: str) -> dict[str, Any]:
    """The call's record once it has ended (the all-in-one's accounting service)."""
    deadline = time.monotonic() + WAIT
    while True:
        reply = httpx.get(f"{api}/v1/cdrs/{call_id}")
        items = reply.json()["items"] if reply.status_code == 200 else []
        if items and items[0]["state"] == "complete":
            assert len(items) == 1, items  # one call, one record (two legs)
            found: dict[str, Any] = items[0]
            return found
        assert time.monotonic() < deadline, f"no record of {call_id}: {reply.text}"
        time.sleep(0.2)


def sipp_sent(agent: Sipp) -> list[str]:
    """The messages a SIPp sent (its message trace)."""
    return [block for block in re.split(r"-{10,}", agent.messages()) if "message sent" in block]


def headers(messages: list[str], name: str) -> set[str]:
    """Every value of header `name` in `messages`."""
    return set(re.findall(rf"^\s*{name}:\s*(.+?)\s*$", "\n".join(messages), re.I | re.M))


def assert_hidden(messages: list[str], port: int, trace: str) -> None:
    """`trace`, the other side's, holds none of the Call-IDs or tags of the side that sent
    `messages` and no Via, Contact, Record-Route or Route naming its SIP `port` (its SDP
    crosses as it is: docs/b2bua.md, media not relayed)."""
    addresses = headers(messages, "From") | headers(messages, "To")
    secrets = headers(messages, "Call-ID") | {tag for a in addresses for tag in tags_in(a)}
    assert secrets, messages
    assert [secret for secret in secrets if secret in trace] == []
    for name in ("Via", "Contact", "Record-Route", "Route"):
        found = headers([trace], name)
        assert [value for value in found if f":{port}" in value] == [], (name, found)


def test_the_phone_calls_a_gateway_through_the_b2bua_and_the_gateway_hangs_up(
    platform: tuple[int, str], phone: Phone, workdir: Path
) -> None:
    """The gateway sees none of the phone's Call-ID, tags, Via or Contact (nor its agent);
    the phone none of the gateway's; baresip reports the call established and, on the
    gateway's BYE, closed."""
    sip, api = platform
    gateway_port = free_port()
    b2bua_rule(api, "2298", gateway_port)
    hold = ("-set", "hold", "1000", "-set", "bye_port", str(sip))
    gateway = sipp(workdir, "gateway_answers_then_bye", gateway_port, args=hold)
    wait_bound(gateway_port)
    phone.command("dial", OUT)
    call_id = phone.wait_event("CALL_ESTABLISHED", "outgoing")["id"]
    assert phone.wait_event("CALL_CLOSED", "outgoing")["id"] == call_id
    assert gateway.wait() == 0, gateway.errors() + phone.tail()
    assert [gateway.received(m) for m in ("INVITE", "ACK")] == [1, 1]
    mine, seen_by_gateway = phone.sent(call_id), gateway.messages()
    assert mine[0].startswith(f"INVITE sip:{OUT}@{DOMAIN} ")
    assert_hidden(mine, phone.port, seen_by_gateway)
    assert_hidden(sipp_sent(gateway), gateway_port, phone.trace())
    assert "User-Agent: baresip" not in seen_by_gateway and "gateway-agent" not in phone.trace()
    assert "s=answer" in phone.trace()  # the gateway's SDP answer reached the phone
    cdr = record(api, call_id)
    assert (cdr["mode"], cdr["hangup_side"]) == ("b2bua", "callee"), cdr
    assert cdr["b2bua_leg_call_id"] in seen_by_gateway and cdr["b2bua_leg_call_id"] != call_id


def test_a_caller_reaches_the_phone_through_the_b2bua_and_the_phone_hangs_up(
    platform: tuple[int, str], phone: Phone, workdir: Path
) -> None:
    """A SIPp caller's call through a b2bua rule whose gateway is the phone: answered by
    itself, hung up from its control socket; the caller gets the BYE, and neither side
    sees the other's dialog."""
    sip, api = platform
    b2bua_rule(api, "2299", phone.port)
    caller_port = free_port()
    caller = sipp(workdir, "caller_offers_takes_bye", caller_port, remote=sip, args=("-s", NUMBER))
    call_id = phone.wait_event("CALL_ESTABLISHED", "incoming")["id"]
    phone.command("hangup")
    assert phone.wait_event("CALL_CLOSED", "incoming")["id"] == call_id
    assert caller.wait() == 0, caller.errors() + phone.tail()
    assert caller.received("BYE") == 1
    mine, seen_by_caller = phone.sent(call_id), caller.messages()
    assert mine[0].startswith("SIP/2.0 ") and any(m.startswith("BYE ") for m in mine)
    assert_hidden(mine, phone.port, seen_by_caller)
    assert_hidden(sipp_sent(caller), caller_port, phone.trace())
    assert "User-Agent: baresip" not in seen_by_caller and "caller-agent" not in phone.trace()
    assert "s=offer" in phone.trace()  # the caller's SDP offer reached the phone
    [caller_call_id] = headers(sipp_sent(caller), "Call-ID")
    cdr = record(api, caller_call_id)
    assert (cdr["mode"], cdr["hangup_side"]) == ("b2bua", "callee"), cdr
    assert cdr["b2bua_leg_call_id"] == call_id
