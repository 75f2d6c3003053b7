"""rtpengine's ng control protocol without I/O: requests, cookies, replies.

A datagram is ``<cookie> <bencoded dictionary>``. The cookie matches a reply
to its request, and makes a retransmission safe: rtpengine answers a cookie it
has seen with the reply it cached instead of running the command again, so a
lost reply to an ``offer`` does not create a second session. A request is sent
again with the same cookie; a new request gets a new one.

``Exchange`` keeps the requests awaiting a reply: ``receive`` takes any
datagram, and hands back the reply only for a cookie it is waiting for (a
late duplicate, a stray or a forged datagram is dropped and counted). A
malformed datagram raises ``NgProtocolError``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.rtpengine.bencode import BencodeError, Encodable, Value, decode, encode

MAX_COOKIE = 64
"""Longest cookie read back; ours are 20 characters."""
COMMANDS = frozenset(
    {"ping", "offer", "answer", "delete", "query", "list", "start recording", "stop recording"}
)
"""The commands this client sends; metrics count others as ``other``."""


class NgProtocolError(ValueError):
    """A datagram that is not an ng reply: says what is wrong with it."""


class NgCommandError(Exception):
    """rtpengine answered ``result: error``; ``reason`` is its ``error-reason``."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"rtpengine refused {command!r}: {reason}")
        self.command = command
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply: ``result`` (``ok``, ``pong``, ``error``…) and the whole dictionary."""

    result: str
    body: dict[str, Value]

    def text(self, key: str) -> str | None:
        """A string member as text (``None`` when absent or not a string)."""
        value = self.body.get(key)
        return value.decode(errors="replace") if isinstance(value, bytes) else None

    def checked(self, command: str) -> Reply:
        """This reply, or ``NgCommandError`` when rtpengine refused the command."""
        if self.result == "error":
            raise NgCommandError(command, self.text("error-reason") or "no reason given")
        return self


def encode_request(cookie: str, command: str, params: Mapping[str, Encodable]) -> bytes:
    """The datagram of ``command`` with ``params`` (``call-id``, ``sdp``, ``from-tag``…)."""
    if "command" in params:
        raise ValueError("the command is given apart, not among the parameters")
    return cookie.encode() + b" " + encode({**params, "command": command})


def parse_reply(datagram: bytes) -> tuple[str, Reply]:
    """``(cookie, reply)`` of a datagram; ``NgProtocolError`` if it is not a reply."""
    cookie, space, payload = datagram.partition(b" ")
    if not space or not cookie or len(cookie) > MAX_COOKIE or not cookie.isascii():
        raise NgProtocolError("no cookie before the first space (or one too long or not ASCII)")
    try:
        body = decode(payload)
    except BencodeError as error:
        raise NgProtocolError(f"reply is not bencode: {error}") from None
    if not isinstance(body, dict):
        raise NgProtocolError("reply is not a dictionary")
    result = body.get("result")
    if not isinstance(result, bytes) or not result:
        raise NgProtocolError("reply has no result string")
    return cookie.decode(), Reply(result.decode(errors="replace"), body)


@dataclass(slots=True)
class Exchange:
    """Cookies handed out and awaited, for one client.

    Cookies are a random prefix (per client: two edges restarting do not reuse
    each other's) and a counter, so they never repeat within a client's life.
    """

    prefix: str = field(default_factory=lambda: secrets.token_hex(6))
    waiting: set[str] = field(default_factory=set)
    strays: int = 0
    _next: int = 0

    def request(self, command: str, params: Mapping[str, Encodable]) -> tuple[str, bytes]:
        """A new cookie, now awaited, and the datagram carrying it."""
        self._next += 1
        cookie = f"{self.prefix}_{self._next}"
        datagram = encode_request(cookie, command, params)
        self.waiting.add(cookie)
        return cookie, datagram

    def receive(self, datagram: bytes) -> tuple[str, Reply] | None:
        """The awaited reply in ``datagram``, or ``None`` for one nobody awaits.

        Raises ``NgProtocolError`` for a malformed datagram.
        """
        cookie, reply = parse_reply(datagram)
        if cookie not in self.waiting:
            self.strays += 1
            return None
        self.waiting.discard(cookie)
        return cookie, reply

    def forget(self, cookie: str) -> None:
        """Stop awaiting ``cookie`` (its request was given up)."""
        self.waiting.discard(cookie)
