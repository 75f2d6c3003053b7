"""Bencode, the encoding of rtpengine's ng control protocol: strict, bounded.

The decoder reads what an rtpengine instance (or whoever can send a datagram
from its address) sends back, so it refuses anything it does not expect with
one error type, ``BencodeError``, naming the offset: leading zeros, ``-0``, a
length past the end, duplicate dictionary keys, nesting deeper than
``MAX_DEPTH``, more than ``MAX_ITEMS`` values or bytes left over. It never
recurses on input (an explicit stack), so a hostile reply cannot exhaust
Python's stack. Dictionary keys are not required to be sorted: rtpengine
writes them in insertion order. Strings decode to ``bytes`` (an SDP is bytes
on the wire), keys to ``str``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

Value: TypeAlias = int | bytes | list["Value"] | dict[str, "Value"]
"""A decoded bencode value."""
Encodable: TypeAlias = int | str | bytes | Sequence["Encodable"] | Mapping[str, "Encodable"]
"""What ``encode`` accepts: ``str`` is written as UTF-8, tuples as lists."""

MAX_DEPTH = 32
"""Nesting deeper than any ng message (a dict of lists of dicts at most)."""
MAX_ITEMS = 10_000
"""Values in one message: an offer's reply holds a few dozen."""
_MAX_DIGITS = 20
"""Digits of an integer or a length: a 64-bit number fits."""


class BencodeError(ValueError):
    """Input that is not strict bencode within the bounds; says what and where."""


def encode(value: Encodable) -> bytes:
    """``value`` as bencode; dictionary keys sorted (the canonical form)."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nesting deeper than {MAX_DEPTH}")
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans: send the string the command expects")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, Mapping):
        out.append(b"d")
        for key in sorted(value):
            if not isinstance(key, str):
                raise TypeError(f"dictionary keys are strings, not {type(key).__name__}")
            _encode(key, out, depth + 1)
            _encode(value[key], out, depth + 1)
        out.append(b"e")
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Value:
    """The single value ``data`` holds; anything else raises ``BencodeError``."""
    decoder = _Decoder(data)
    value = decoder.value()
    if decoder.pos != len(data):
        raise BencodeError(
            f"{len(data) - decoder.pos} bytes after the value at offset {decoder.pos}"
        )
    return value


class _Decoder:
    """One pass over ``data`` with an explicit stack of open lists and dicts."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.items = 0

    def value(self) -> Value:
        stack: list[list[Value] | dict[str, Value]] = []
        keys: list[str | None] = []  # per open dict: the key awaiting its value
        while True:
            kind = self._peek()
            if kind == b"e" and stack:
                self.pos += 1
                done: Value = stack.pop()
                if keys.pop() is not None:
                    raise BencodeError(
                        f"dictionary ends after a key without value at {self.pos - 1}"
                    )
            elif kind in (b"l", b"d"):
                if len(stack) >= MAX_DEPTH:
                    raise BencodeError(f"nesting deeper than {MAX_DEPTH} at offset {self.pos}")
                self.pos += 1
                self._count()
                stack.append([] if kind == b"l" else {})
                keys.append(None)
                continue
            elif kind == b"i":
                done = self._integer()
            elif kind.isdigit():
                done = self._string()
            else:
                raise BencodeError(f"unexpected {kind!r} at offset {self.pos}")
            if not stack:
                return done
            self._store(stack[-1], keys, done)

    def _store(
        self, top: list[Value] | dict[str, Value], keys: list[str | None], item: Value
    ) -> None:
        if isinstance(top, list):
            top.append(item)
            return
        key = keys[-1]
        if key is not None:
            top[key] = item
            keys[-1] = None
            return
        if not isinstance(item, bytes):
            raise BencodeError(f"dictionary key is not a string before offset {self.pos}")
        try:
            text = item.decode()
        except UnicodeDecodeError:
            raise BencodeError(f"dictionary key is not UTF-8 before offset {self.pos}") from None
        if text in top:
            raise BencodeError(f"duplicate dictionary key {text!r} before offset {self.pos}")
        keys[-1] = text

    def _peek(self) -> bytes:
        if self.pos >= len(self.data):
            raise BencodeError(f"input ends at offset {self.pos} inside a value")
        return self.data[self.pos : self.pos + 1]

    def _count(self) -> None:
        self.items += 1
        if self.items > MAX_ITEMS:
            raise BencodeError(f"more than {MAX_ITEMS} values")

    def _digits(self, end: bytes, signed: bool) -> int:
        stop = self.data.find(end, self.pos, self.pos + _MAX_DIGITS + 2)
        if stop < 0:
            raise BencodeError(f"number without {end!r} (or too long) at offset {self.pos}")
        text = self.data[self.pos : stop]
        body = text[1:] if signed and text.startswith(b"-") else text
        if not body.isdigit() or not body.isascii():
            raise BencodeError(f"bad number {text!r} at offset {self.pos}")
        if (body.startswith(b"0") and len(body) > 1) or text == b"-0":
            raise BencodeError(f"non-canonical number {text!r} at offset {self.pos}")
        self.pos = stop + 1
        return int(text)

    def _integer(self) -> int:
        self.pos += 1
        self._count()
        return self._digits(b"e", signed=True)

    def _string(self) -> bytes:
        self._count()
        length = self._digits(b":", signed=False)
        end = self.pos + length
        if end > len(self.data):
            raise BencodeError(f"string of {length} bytes runs past the end at offset {self.pos}")
        text = self.data[self.pos : end]
        self.pos = end
        return text
