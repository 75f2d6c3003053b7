"""A WebRTC phone for the edge's wire tests, on the test WebSocket client: what JsSIP sends.

Its Contact and Via name an `.invalid` host (a browser has no address to
offer), its Via says `SIP/2.0/WS` or `WSS` without rport: every answer and
request must come back over its WebSocket.  It registers with digest, answers
the calls it is sent (INVITE 200, BYE 200), and places one call along the
route set the edge records.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from bench.registrar import Phone
from shared.sip.message import Request, Response, parse_message
from tests.services.edge.tls_support import answer, headers_of
from tests.shared.sip.transport.ws_client import WsClient

HOST = "df7jal23ls0d.invalid"


@dataclass
class WebPhone:
    client: WsClient
    user: str
    domain: str
    password: str
    transport: str = "WSS"
    received: list[bytes] = field(default_factory=list)

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{HOST};transport=ws"

    def _via(self) -> str:
        return f"Via: SIP/2.0/{self.transport} {HOST};branch=z9hG4bK{secrets.token_hex(8)}"

    async def request(self, data: bytes) -> Response:
        """Send a request; the final response (requests meanwhile are answered)."""
        self.client.send(data)
        while True:
            message = await self.next()
            if isinstance(message, Response) and message.status >= 200:
                return message

    async def next(self) -> Request | Response:
        raw = await self.client.receive()
        self.received.append(raw)
        return parse_message(raw)

    async def register(self) -> Response:
        phone = Phone(self.user, self.domain, self.password, contact=self.contact, algorithm="MD5")
        via = f"Via: SIP/2.0/UDP {phone.host}:{phone.port}"

        def over_ws(data: bytes) -> bytes:
            head, _, rest = data.partition(b";branch=")
            ours = self._via().split(";")[0].encode()
            return head.replace(via.encode(), ours) + b";branch=" + rest

        challenge = await self.request(over_ws(phone.register()))
        assert challenge.status == 401, challenge
        phone.learn(challenge)
        return await self.request(over_ws(phone.register()))

    async def answer_call(self, calls: int = 1) -> list[str]:
        """Answer incoming calls (INVITE 200, its ACK, BYE 200) until `calls` have ended:
        the methods seen.  The edge's keepalive OPTIONS, which comes at the binding's own
        phase of its 30 s interval and so now and then during a call, is answered, not
        listed."""
        tag = secrets.token_hex(4)
        methods: list[str] = []
        while methods.count("BYE") < calls:
            raw = await self.client.receive()
            self.received.append(raw)
            if raw.startswith(b"SIP/2.0"):
                continue
            method = raw.split(b" ", 1)[0].decode()
            if method != "ACK":
                self.client.send(answer(raw, 200, "OK", self.contact, tag))
            if method != "OPTIONS":
                methods.append(method)
        return methods

    async def call(self, number: str) -> tuple[Response, Response]:
        """Call `number@domain`, and hang up once answered: the INVITE's and BYE's finals."""
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        target = f"sip:{number}@{self.domain}"
        common = [
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{self.domain}>;tag={tag}",
            f"Call-ID: {call_id}",
            f"Contact: <{self.contact}>",
        ]
        invite = [f"INVITE {target} SIP/2.0", self._via(), f"To: <{target}>", "CSeq: 1 INVITE"]
        answered = await self.request(_join(invite + common))
        assert answered.status == 200, answered
        raw = self.received[-1]
        to = headers_of(raw, "to")[0].decode().split(":", 1)[1].strip()
        routes = re.findall(r"<[^>]*>", b" ".join(headers_of(raw, "record-route")).decode())
        route_set = [f"Route: {route}" for route in reversed(routes)]
        remote = str(answered.header("contact")).strip("<>")
        ack = [f"ACK {remote} SIP/2.0", self._via(), f"To: {to}", "CSeq: 1 ACK", *route_set]
        self.client.send(_join(ack + common))
        bye = [f"BYE {remote} SIP/2.0", self._via(), f"To: {to}", "CSeq: 2 BYE", *route_set]
        return answered, await self.request(_join(bye + common))


def _join(lines: list[str]) -> bytes:
    return "\r\n".join([*lines, "Content-Length: 0", "", ""]).encode()
