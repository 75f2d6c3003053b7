"""The sans-IO proxy core with its policies on, driven message by message (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.edge.hooks import RoutingHook
from services.edge.policy import EdgePolicies
from services.edge.policy.guard import Guard
from services.edge.policy.topology import TopologyGate
from services.edge.protection import ProtectionSettings
from services.edge.proxy.actions import Action, Send
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.topology import Keyring, new_secret
from shared.routing_table.model import Gateway, Rule
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import MemoryTable

EDGE = "192.0.2.10"
INSIDE = Destination("udp", "10.0.0.5", 5070)
"""The hidden side: an Asterisk box on a private address."""
GW1 = Destination("udp", "203.0.113.1", 5060)
GW2 = Destination("udp", "203.0.113.2", 5060)
UDP_IN = Listener("udp", EDGE, 5060)
KEYS = f"1:{new_secret()}"


class Table(MemoryTable):
    """1407 and 1900 → gateway 1; gateway 2 for the tests to route to."""

    def __init__(self) -> None:
        super().__init__(
            {"1": Gateway(address=f"sip:{GW1.host}"), "2": Gateway(address=f"sip:{GW2.host}")},
            {
                "r1407": Rule(prefix="1407", gateways=("1",)),
                "r1900": Rule(prefix="1900", gateways=("1",)),
            },
        )


@dataclass
class Run:
    proxy: Proxy
    table: Table
    now: float = 100.0
    sent: list[Action] = field(default_factory=list)

    def send(self, data: bytes, source: Destination = INSIDE) -> list[Action]:
        actions = self.proxy.receive(data, source, UDP_IN, self.now)
        self.sent.extend(actions)
        return actions


def policy_run(
    hook: RoutingHook | None = None, *, topology: bool = True, trusted: bool = True
) -> Run:
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    table = Table()
    gate = TopologyGate(Keyring.parse(KEYS), interfaces) if topology else None
    guard = Guard(ProtectionSettings(), "edge-test", trusted=lambda source: trusted)
    policies = EdgePolicies(table, guard, gate, hook)
    proxy = Proxy(interfaces, NumberRouter(table), ProxyTimers(fr=2.0, fr_inv=10.0), policies)
    return Run(proxy, table)


def invite(number: str = "14075551234", extra: str = "") -> bytes:
    """An INVITE from the inside, as an Asterisk box sends it."""
    return (
        f"INVITE sip:{number}@{EDGE} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {INSIDE.host}:{INSIDE.port};branch=z9hG4bKin1;rport\r\n"
        "Via: SIP/2.0/UDP 10.0.0.6:5060;branch=z9hG4bKin0\r\n"
        "Record-Route: <sip:10.0.0.7;lr>\r\n"
        'From: "Alice" <sip:alice@10.0.0.5>;tag=a1\r\n'
        f"To: <sip:{number}@{EDGE}>\r\n"
        "Call-ID: inside-call-1@10.0.0.5\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@10.0.0.5:5070>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def sent_to(actions: list[Action], destination: Destination) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send) and a.destination == destination]


def requests_to(actions: list[Action], destination: Destination) -> list[Request]:
    found = []
    for data in sent_to(actions, destination):
        message = parse_message(data)
        if isinstance(message, Request):
            found.append(message)
    return found


def responses_to(actions: list[Action], destination: Destination) -> list[Response]:
    found = []
    for data in sent_to(actions, destination):
        message = parse_message(data)
        if isinstance(message, Response):
            found.append(message)
    return found


def answer(request: Request, status: int, extra: str = "") -> bytes:
    """A UAS's response to `request` (Vias and Record-Route echoed, a To tag added)."""
    to = request.header("to") or ""
    lines = [f"SIP/2.0 {status} Whatever"]
    lines += [f"Via: {via}" for via in request.headers("via")]
    lines += [f"Record-Route: {rr}" for rr in request.headers("record-route")]
    lines += [
        f"From: {request.header('from')}",
        f"To: {to}" if ";tag=" in to else f"To: {to};tag=gw",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.header('cseq')}",
        f"Contact: <sip:gw@{GW1.host}>",
    ]
    return ("\r\n".join(lines) + f"\r\n{extra}Content-Length: 0\r\n\r\n").encode()
