"""Two SIP user agents around a `B2bua`: the caller (leg A) and the gateway (leg B).

Each `Agent` keeps its side of its dialog with the edge the way a phone does (§12) and
writes real request bytes from it; `Call` drives the engine through the usual setup so a
test can start from the state it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.edge.b2bua.engine import Action, B2bua, Originate, PairTarget
from services.edge.b2bua.legs import PairAddress
from shared.sip.branch import new_branch
from shared.sip.message import Message, Request, Response, parse_message
from shared.sip.responses import make_response
from shared.sip.transaction import Send
from shared.sip.transport.destination import Destination

EDGE = PairAddress("192.0.2.10", 5060)
CALLER = Destination("udp", "198.51.100.7", 5062)
GATEWAY = Destination("udp", "203.0.113.5", 5060)
SDP_A = b"v=0\r\no=alice 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
SDP_B = b"v=0\r\no=gw 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
A_CALL_ID = "call-a-1f3e@198.51.100.7"
A_TAG = "alicetag77"
A_RECORD_ROUTE = "<sip:proxy.a.example;lr>"
B_TAG = "gwtag55"
B_RECORD_ROUTE = "<sip:sbc.b.example;lr>"
B_CONTACT = "<sip:gw@203.0.113.5:5060>"


def sent(actions: list[Action], to: Destination | None = None) -> list[Message]:
    """The messages among `actions` (to `to`'s address, when given), parsed."""
    return [
        parse_message(action.data)
        for action in actions
        if isinstance(action, Send) and (to is None or action.destination.address == to.address)
    ]


def head(message: Message) -> bytes:
    """`message`'s start line and header fields: the body (SDP) is the far end's by design."""
    wire = message.to_bytes()
    return wire[: wire.index(b"\r\n\r\n")]


def one(actions: list[Action], to: Destination) -> Message:
    (message,) = sent(actions, to)
    return message


def request_to(actions: list[Action], to: Destination) -> Request:
    message = one(actions, to)
    assert isinstance(message, Request)
    return message


def response_to(actions: list[Action], to: Destination) -> Response:
    message = one(actions, to)
    assert isinstance(message, Response)
    return message


def answer(
    request: Request,
    status: int,
    *,
    tag: str | None = None,
    contact: str | None = None,
    body: bytes = b"",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A far end's response to `request`, with its tag, Contact and body."""
    headers = list(extra)
    if contact is not None:
        headers.append(("Contact", contact))
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return make_response(request, status, to_tag=tag, headers=headers, body=body).to_bytes()


def caller_invite(*, extra: tuple[tuple[str, str], ...] = (), body: bytes = SDP_A) -> bytes:
    """The caller's INVITE, through one proxy of its own (at `CALLER`) that record-routed."""
    headers = [
        ("Via", f"SIP/2.0/UDP 198.51.100.7:5062;branch={new_branch()};rport"),
        ("Via", f"SIP/2.0/UDP 10.0.0.5:5070;branch={new_branch()}"),
        ("Max-Forwards", "69"),
        ("Record-Route", A_RECORD_ROUTE),
        ("From", f'"Alice" <sip:alice@a.example>;tag={A_TAG}'),
        ("To", "<sip:+15550100@b2b.example>"),
        ("Call-ID", A_CALL_ID),
        ("CSeq", "10 INVITE"),
        ("Contact", "<sip:alice@10.0.0.5:5070>"),
        ("Content-Type", "application/sdp"),
        *extra,
    ]
    return Request.build("INVITE", "sip:+15550100@b2b.example", headers, body).to_bytes()


@dataclass
class Agent:
    """One far end's view of its dialog with the edge, as a phone keeps it (§12)."""

    source: Destination
    call_id: str
    local: str
    """Its own From (with its tag)."""
    remote: str
    """The edge's address, To of what it sends (with the edge's tag)."""
    target: str
    """The edge's Contact URI, its remote target."""
    routes: list[str] = field(default_factory=list)
    cseq: int = 100

    def request(
        self,
        method: str,
        body: bytes = b"",
        *,
        cseq: int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        host = f"{self.source.host}:{self.source.port}"
        headers = [
            ("Via", f"SIP/2.0/UDP {host};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            *(("Route", route) for route in self.routes),
            ("Contact", f"<sip:ua@{host}>"),
            *extra,
        ]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return Request.build(method, self.target, headers, body).to_bytes()


class Call:
    """An engine, a caller and a gateway, driven through the setup by the steps below."""

    def __init__(self, engine: B2bua | None = None) -> None:
        self.engine = engine or B2bua(EDGE)
        self.now = 0.0
        self.invite_a: Request | None = None
        self.invite_b: Request | None = None
        self.pair_id = ""

    def from_a(self, data: bytes) -> list[Action]:
        return self.engine.receive(data, CALLER, self.now)

    def from_b(self, data: bytes) -> list[Action]:
        return self.engine.receive(data, GATEWAY, self.now)

    def invite(self, data: bytes | None = None) -> list[Action]:
        """The caller's INVITE in, leg B's out: what the engine sent to the gateway."""
        data = data or caller_invite()
        invite = parse_message(data)
        assert isinstance(invite, Request)
        self.invite_a = invite
        actions = self.from_a(data)
        (originate,) = [a for a in actions if isinstance(a, Originate)]
        self.pair_id = originate.pair_id
        out = self.engine.originate(
            self.pair_id, PairTarget("sip:+15550100@gw.example", GATEWAY), 0
        )
        self.invite_b = request_to(out, GATEWAY)
        return out

    def answer_b(self, status: int = 200, body: bytes = SDP_B) -> list[Action]:
        """The gateway answers leg B's INVITE (its Record-Route, Contact and SDP)."""
        assert self.invite_b is not None
        extra = (("Record-Route", B_RECORD_ROUTE),)
        data = answer(self.invite_b, status, tag=B_TAG, contact=B_CONTACT, body=body, extra=extra)
        return self.from_b(data)

    def answered(self) -> tuple[Agent, Agent]:
        """A call set up and ACKed; the caller's and the gateway's agents."""
        self.invite()
        ok = response_to(self.answer_b(), CALLER)
        caller = self.caller(ok)
        self.from_a(caller.request("ACK", cseq=10))
        return caller, self.gateway()

    def caller(self, ok: Response) -> Agent:
        """The caller's side of leg A, from the edge's 2xx."""
        return Agent(
            CALLER, A_CALL_ID, f'"Alice" <sip:alice@a.example>;tag={A_TAG}',
            ok.header("to") or "", str(ok.contacts[0].uri), [A_RECORD_ROUTE], cseq=10,
        )  # fmt: skip # the agent's fields on two lines

    def gateway(self) -> Agent:
        """The gateway's side of leg B, from the INVITE it got."""
        invite = self.invite_b
        assert invite is not None
        to = f"{invite.header('to')};tag={B_TAG}"
        uri = str(invite.contacts[0].uri)
        return Agent(GATEWAY, invite.call_id, to, invite.header("from") or "", uri, [], cseq=300)
