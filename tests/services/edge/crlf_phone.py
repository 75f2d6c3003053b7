"""A raw-socket phone registered with RFC 5626 outbound over TCP, for wire tests.

Run as a process (``python -m tests.services.edge.crlf_phone``), in the phone's network
namespace behind the test NAT: it opens one TCP connection to the edge, registers over it
with ``reg-id`` and ``+sip.instance`` (answering the digest challenge), then keeps the
connection open and answers what comes down it: each CRLF ping (double CRLF) with a pong
(a single CRLF, RFC 5626 §4.4.1), an INVITE with a 200 (a BYE, an OPTIONS likewise).  After
SIGUSR1 it stops answering the pings and nothing else: a phone gone without closing its
connection, as the edge sees one.  Every line it writes on stdout names what came
(``registered``, ``ping``, ``INVITE``...), for the test to count.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import socket
import sys
from types import FrameType

from bench.registrar import Phone
from shared.sip.framing import PING, FrameEvent, StreamFramer
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import make_response

INSTANCE = '+sip.instance="<urn:uuid:00000000-0000-4000-8000-000000000517>"'


class OutboundPhone:
    def __init__(self, args: argparse.Namespace) -> None:
        self.sock = socket.create_connection((args.edge_host, args.edge_port), timeout=10)
        self.host, self.port = self.sock.getsockname()[:2]
        contact = f"sip:{args.user}@{self.host}:{self.port};transport=tcp"
        self.phone = Phone(args.user, args.domain, args.password, contact, self.host, self.port)
        self.phone.algorithm = "MD5"
        self.expires = args.expires
        self.framer = StreamFramer()
        self.answering = True
        self.pending: list[FrameEvent] = []

    def say(self, what: str) -> None:
        print(what, flush=True)

    def next_event(self) -> FrameEvent:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the edge closed the connection")
            self.pending.extend(self.framer.feed(data))
        return self.pending.pop(0)

    def register(self) -> None:
        contacts = [f"<{self.phone.contact}>;reg-id=1;{INSTANCE}"]
        for _ in range(2):
            request = self.phone.register(expires=self.expires, contacts=contacts)
            self.sock.sendall(request.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP", 1))
            response = self.final()
            if response.status == 200:
                self.say("registered")
                return
            self.phone.learn(response)
        raise RuntimeError(f"REGISTER refused: {response.status}")

    def final(self) -> Response:
        while True:
            event = self.next_event()
            if isinstance(event, bytes):
                message = parse_message(event)
                if isinstance(message, Response) and message.status >= 200:
                    return message

    def serve(self) -> None:
        self.sock.settimeout(None)
        while True:
            event = self.next_event()
            if event is PING:
                self.say("ping")
                if self.answering:
                    self.sock.sendall(b"\r\n")
            elif isinstance(event, bytes):
                message = parse_message(event)
                if isinstance(message, Request):
                    self.say(message.method)
                    self.answer(message)

    def answer(self, request: Request) -> None:
        if request.method == "ACK":
            return
        contact = ("Contact", f"<{self.phone.contact}>")
        headers = [contact] if request.method == "INVITE" else []
        response = make_response(request, 200, to_tag=secrets.token_hex(4), headers=headers)
        self.sock.sendall(response.to_bytes())

    def stop_answering(self, _signal: int, _frame: FrameType | None) -> None:
        self.answering = False


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("edge_host", "user", "domain", "password"):
        parser.add_argument(name)
    parser.add_argument("edge_port", type=int)
    parser.add_argument("--expires", type=int, default=300)
    phone = OutboundPhone(parser.parse_args())
    signal.signal(signal.SIGUSR1, phone.stop_answering)
    phone.register()
    try:
        phone.serve()
    except ConnectionError as error:
        phone.say(f"closed: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
