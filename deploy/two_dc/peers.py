"""The lab's SIP peers on raw UDP sockets: phones that register through an edge, gateways,
and a caller whose INVITE the peer it reaches answers (486 Busy Here: a final answer that
proves the INVITE arrived, with no dialog left to tear down).
"""

from __future__ import annotations

import select
import socket
import time
import uuid
from dataclasses import dataclass, field

from bench.registrar import Phone
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import make_response

LOOPBACK = "127.0.0.1"
ANSWER = (486, "Busy Here")
WAIT = 5.0
"""Seconds a peer waits for one message (a lost UDP datagram fails the step, never hangs)."""


@dataclass
class UdpPeer:
    """A phone (`register` through an edge) or a gateway: answers every INVITE with 486.

    `behind_nat`: the phone's Contact names a private address it cannot be reached at (as
    behind a NAT), so only its source address — and the edge that saw it — reach it.
    """

    user: str = "gateway"
    domain: str = "example.com"
    password: str = ""
    behind_nat: bool = False
    sock: socket.socket = field(init=False)
    phone: Phone = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(WAIT)
        self.sock.bind((LOOPBACK, 0))
        private = f"sip:{self.user}@10.255.255.1:5099" if self.behind_nat else ""
        self.phone = Phone(
            self.user, self.domain, self.password, private,
            host=LOOPBACK, port=self.port, algorithm="MD5",
        )  # fmt: skip # one phone

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def aor(self) -> str:
        return self.phone.aor

    def register(self, edge_port: int, expires: int = 600) -> int:
        """Register through the edge at `edge_port` (challenge, then credentials; ``expires``
        0 unregisters): the final status (a 503 while the registrar's store fails over)."""
        self.phone.challenge = None
        first = self._ask(self.phone.register(expires=expires), edge_port)
        if first.status != 401:
            return first.status
        self.phone.learn(first)
        return self._ask(self.phone.register(expires=expires), edge_port).status

    def _ask(self, request: bytes, edge_port: int) -> Response:
        self.sock.sendto(request, (LOOPBACK, edge_port))
        cseq = f"{self.phone.cseq} REGISTER"
        while True:
            message = parse_message(self.sock.recv(65535))
            if not isinstance(message, Response) or message.status < 200:
                continue  # a provisional, or a stray request
            if message.header("cseq") == cseq:  # not a late answer to an earlier REGISTER
                return message

    def answer(self) -> None:
        """Read one datagram; answer it 486 if it is an INVITE (an ACK or a stray: ignored)."""
        data, sender = self.sock.recvfrom(65535)
        message = parse_message(data)
        if isinstance(message, Request) and message.method == "INVITE":
            self.sock.sendto(make_response(message, *ANSWER, to_tag="peer").to_bytes(), sender)

    def close(self) -> None:
        self.sock.close()


def call(edge_port: int, uri: str, callee: UdpPeer) -> int:
    """An INVITE for `uri` into the edge at `edge_port` from a trusted caller on loopback,
    `callee` answering any INVITE it gets meanwhile.  The caller's final status: 486 when
    `callee` answered, the edge's own refusal (404, 480, 503…) otherwise."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        caller.bind((LOOPBACK, 0))
        port = caller.getsockname()[1]
        invite = (
            f"INVITE {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK{call_id};rport\r\n"
            f"From: <sip:caller@{LOOPBACK}>;tag=c{call_id[:8]}\r\n"
            f"To: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:caller@{LOOPBACK}:{port}>\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        caller.sendto(invite.encode(), (LOOPBACK, edge_port))
        deadline = time.monotonic() + 2 * WAIT
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([caller, callee.sock], [], [], left)
            if callee.sock in readable:
                callee.answer()
            if caller in readable:
                message = parse_message(caller.recv(65535))
                if isinstance(message, Response) and message.status >= 200:
                    return message.status
        raise TimeoutError(f"no final answer to an INVITE for {uri}")
