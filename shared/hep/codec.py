"""HEPv3 packets to and from bytes, sans-IO: what a capture agent sends a Homer collector.

A packet is ``HEP3``, its total length (uint16, header included), then chunks:
vendor id (0 = the generic chunks), chunk type, chunk length (uint16, its
6-byte header included) and the value, all in network byte order.  Only the
generic chunks a SIP capture carries are written; `decode` keeps any other
chunk it meets in ``extra`` (a collector must skip what it does not know).
The decoder is for the tests' collector and for tools: it raises `HepError`
with a reason on anything malformed, never another exception.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final

MAGIC: Final = b"HEP3"
MAX_PACKET: Final = 0xFFFF
"""The header's length field is 16 bits: a payload past about 64 KiB cannot be sent."""

FAMILY_IPV4: Final = 2
FAMILY_IPV6: Final = 10
PROTOCOL_UDP: Final = 17
PROTOCOL_TCP: Final = 6
TYPE_SIP: Final = 1
TYPE_LOG: Final = 100

IP_FAMILY: Final = 1
IP_PROTOCOL: Final = 2
IPV4_SOURCE: Final = 3
IPV4_DESTINATION: Final = 4
IPV6_SOURCE: Final = 5
IPV6_DESTINATION: Final = 6
SOURCE_PORT: Final = 7
DESTINATION_PORT: Final = 8
TIME_SECONDS: Final = 9
TIME_MICROSECONDS: Final = 10
PROTOCOL_TYPE: Final = 11
CAPTURE_ID: Final = 12
AUTH_KEY: Final = 14
PAYLOAD: Final = 15
CORRELATION_ID: Final = 17

_HEADER = struct.Struct("!4sH")
_CHUNK = struct.Struct("!HHH")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

_PROTOCOLS: Final = {"udp": PROTOCOL_UDP, "tcp": PROTOCOL_TCP, "tls": PROTOCOL_TCP}
"""Transports by the IP protocol under them (TLS and WebSocket run over TCP)."""


class HepError(ValueError):
    """A packet that is not well-formed HEPv3; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class HepPacket:
    """One captured message with where and when it was seen."""

    source: tuple[str, int]
    destination: tuple[str, int]
    seconds: int
    microseconds: int
    payload: bytes
    protocol: int = PROTOCOL_UDP
    protocol_type: int = TYPE_SIP
    capture_id: int = 0
    auth_key: str = ""
    correlation_id: str = ""
    extra: dict[tuple[int, int], bytes] = field(default_factory=dict, compare=False)
    """Chunks `decode` met and does not name, by (vendor, type)."""

    @property
    def ipv6(self) -> bool:
        return ":" in self.source[0]


def ip_protocol(transport: str) -> int:
    """The IP protocol number a SIP transport runs over (`ws`, `wss` too: TCP)."""
    return _PROTOCOLS.get(transport, PROTOCOL_TCP)


_HEAD = struct.Struct("!4sH 6sI 6sI")
"""The header, then the time chunks (seconds, microseconds), their chunk headers given as
bytes: one `pack` a packet, of the three numbers only."""
_SECONDS_CHUNK: Final = _CHUNK.pack(0, TIME_SECONDS, 10)
_MICROSECONDS_CHUNK: Final = _CHUNK.pack(0, TIME_MICROSECONDS, 10)
_AGENT = struct.Struct("!HHHB HHHI")
"""The protocol type and capture id chunks: packed once per encoder."""
_ADDRESSES: dict[tuple[str, int, str, int, int], bytes] = {}
"""The family, protocol, address and port chunks of a source, destination and protocol
(a flat tuple: cheaper to hash than one of tuples), memoised:
peers are few compared with messages, and these chunks are most of a packet's fields."""
_MEMO_SIZE: Final = 65536
_CORRELATIONS_KEPT: Final = 4096
"""Correlation chunks an encoder keeps: a call's dozen messages share one, and a worker has
a few thousand calls under way at most."""
_PAYLOAD_HEADS_KEPT: Final = 4096
"""Payload chunk headers an encoder keeps, by payload size: a call's messages repeat the
sizes of the calls before it."""


def _chunk(kind: int, value: bytes) -> bytes:
    return _CHUNK.pack(0, kind, len(value) + _CHUNK.size) + value


def _address_chunks(source: tuple[str, int], destination: tuple[str, int], protocol: int) -> bytes:
    try:
        source_ip = ipaddress.ip_address(source[0]).packed
        destination_ip = ipaddress.ip_address(destination[0]).packed
    except ValueError as error:
        raise HepError(f"not an IP address: {error}") from None
    if len(source_ip) != len(destination_ip):
        raise HepError("source and destination of different address families")
    v6 = len(source_ip) == 16
    try:
        return b"".join((
            _CHUNK.pack(0, IP_FAMILY, 7), _U8.pack(FAMILY_IPV6 if v6 else FAMILY_IPV4),
            _CHUNK.pack(0, IP_PROTOCOL, 7), _U8.pack(protocol),
            _chunk(IPV6_SOURCE if v6 else IPV4_SOURCE, source_ip),
            _chunk(IPV6_DESTINATION if v6 else IPV4_DESTINATION, destination_ip),
            _CHUNK.pack(0, SOURCE_PORT, 8), _U16.pack(source[1]),
            _CHUNK.pack(0, DESTINATION_PORT, 8), _U16.pack(destination[1]),
        ))  # fmt: skip # one chunk a row: its header, then its value
    except struct.error as error:
        raise HepError(f"a field out of its range: {error}") from None


class Encoder:
    """Packs packets sharing the agent's fields (protocol type, capture id, auth key).

    The capture's hot path, where each `struct` `pack` is a method call costing more than
    the bytes it writes: per packet, the address and correlation chunks come from memos, the
    agent's chunks were packed when the encoder was made, the header and time chunks are one
    `pack`, the payload's chunk header comes from a memo by size, and the pieces are joined
    once.  Chunks may
    come in any order (HEPv3 is type-length-value); the payload is last, as every agent
    sends it.
    """

    def __init__(
        self, *, capture_id: int = 0, auth_key: str = "", protocol_type: int = TYPE_SIP
    ) -> None:
        if not 0 <= capture_id <= 0xFFFFFFFF or not 0 <= protocol_type <= 0xFF:
            raise HepError("capture id or protocol type out of range")
        agent = _AGENT.pack(0, PROTOCOL_TYPE, 7, protocol_type, 0, CAPTURE_ID, 10, capture_id)
        self._agent = agent + (_chunk(AUTH_KEY, auth_key.encode()) if auth_key else b"")
        self._fixed = _HEAD.size + len(self._agent) + _CHUNK.size
        """The bytes of every packet but its addresses, correlation and payload."""
        self._correlations: dict[str, bytes] = {}
        self._payload_heads: dict[int, bytes] = {}
        self._addresses = _ADDRESSES
        self._pack_head = _HEAD.pack
        """Bound once: a call through it skips looking the method up at every packet."""

    def pack(
        self,
        source: tuple[str, int],
        destination: tuple[str, int],
        seconds: int,
        microseconds: int,
        payload: bytes,
        *,
        protocol: int = PROTOCOL_UDP,
        correlation_id: str = "",
    ) -> bytes:
        """The packet's bytes; `HepError` when it cannot be one (too long, bad address)."""
        key = (source[0], source[1], destination[0], destination[1], protocol)
        memo = self._addresses
        addresses = memo.get(key)
        if addresses is None:
            addresses = _address_chunks(source, destination, protocol)
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[key] = addresses
        correlation = b""
        if correlation_id:
            found = self._correlations.get(correlation_id)
            if found is None:
                found = _chunk(CORRELATION_ID, correlation_id.encode())
                if len(self._correlations) >= _CORRELATIONS_KEPT:
                    self._correlations.clear()
                self._correlations[correlation_id] = found
            correlation = found
        size = len(payload)
        total = self._fixed + len(addresses) + len(correlation) + size
        if total > MAX_PACKET:
            raise HepError(f"packet of {total} bytes (payload {size}) is over HEP's {MAX_PACKET}")
        try:
            head = self._pack_head(
                MAGIC, total, _SECONDS_CHUNK, seconds, _MICROSECONDS_CHUNK, microseconds
            )
        except struct.error as error:
            raise HepError(f"a field out of its range: {error}") from None
        payload_head = self._payload_heads.get(size)
        if payload_head is None:
            payload_head = _CHUNK.pack(0, PAYLOAD, size + _CHUNK.size)
            if len(self._payload_heads) >= _PAYLOAD_HEADS_KEPT:
                self._payload_heads.clear()
            self._payload_heads[size] = payload_head
        return b"".join((
            head, addresses, self._agent, correlation, payload_head, payload
        ))  # fmt: skip # the packet's parts in their order


def encode(packet: HepPacket) -> bytes:
    """The packet's bytes; `HepError` when it cannot be one (payload too long, bad address)."""
    encoder = Encoder(
        capture_id=packet.capture_id, auth_key=packet.auth_key, protocol_type=packet.protocol_type
    )
    return encoder.pack(
        packet.source,
        packet.destination,
        packet.seconds,
        packet.microseconds,
        packet.payload,
        protocol=packet.protocol,
        correlation_id=packet.correlation_id,
    )


def packet_length(data: bytes) -> int | None:
    """The length of the packet starting ``data`` (a stream's framing), None if unknown yet."""
    if len(data) < _HEADER.size:
        return None
    magic, total = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise HepError("not a HEP3 packet (no HEP3 magic)")
    if total < _HEADER.size:
        raise HepError(f"total length {total} shorter than the header")
    return int(total)


def decode(data: bytes) -> HepPacket:
    """One whole packet (exactly: trailing bytes are an error) back into a `HepPacket`."""
    total = packet_length(data)
    if total is None or total != len(data):
        raise HepError(f"total length {total} but {len(data)} bytes")
    chunks: dict[tuple[int, int], bytes] = {}
    offset = _HEADER.size
    while offset < total:
        if total - offset < _CHUNK.size:
            raise HepError(f"truncated chunk header at byte {offset}")
        vendor, kind, length = _CHUNK.unpack_from(data, offset)
        if length < _CHUNK.size or offset + length > total:
            raise HepError(f"chunk {vendor}:{kind} at byte {offset} has bad length {length}")
        chunks[(vendor, kind)] = data[offset + _CHUNK.size : offset + length]
        offset += length
    return _packet_of(chunks)


def _packet_of(chunks: dict[tuple[int, int], bytes]) -> HepPacket:
    generic = {kind: value for (vendor, kind), value in chunks.items() if vendor == 0}
    family = _number(generic, IP_FAMILY, _U8)
    if family not in (FAMILY_IPV4, FAMILY_IPV6):
        raise HepError(f"unknown IP family {family}")
    v6 = family == FAMILY_IPV6
    source = _address(generic, IPV6_SOURCE if v6 else IPV4_SOURCE, 16 if v6 else 4)
    destination = _address(generic, IPV6_DESTINATION if v6 else IPV4_DESTINATION, 16 if v6 else 4)
    known = {
        IP_FAMILY, IP_PROTOCOL, IPV4_SOURCE, IPV4_DESTINATION, IPV6_SOURCE, IPV6_DESTINATION,
        SOURCE_PORT, DESTINATION_PORT, TIME_SECONDS, TIME_MICROSECONDS, PROTOCOL_TYPE,
        CAPTURE_ID, AUTH_KEY, PAYLOAD, CORRELATION_ID,
    }  # fmt: skip # the chunk types read as a table, not one per line
    if PAYLOAD not in generic:
        raise HepError("no payload chunk")
    try:
        auth_key = generic.get(AUTH_KEY, b"").decode()
        correlation_id = generic.get(CORRELATION_ID, b"").decode()
    except UnicodeDecodeError as error:
        raise HepError(f"text chunk not UTF-8: {error.reason}") from None
    return HepPacket(
        source=(source, _number(generic, SOURCE_PORT, _U16)),
        destination=(destination, _number(generic, DESTINATION_PORT, _U16)),
        seconds=_number(generic, TIME_SECONDS, _U32),
        microseconds=_number(generic, TIME_MICROSECONDS, _U32),
        payload=generic[PAYLOAD],
        protocol=_number(generic, IP_PROTOCOL, _U8),
        protocol_type=_number(generic, PROTOCOL_TYPE, _U8),
        capture_id=_number(generic, CAPTURE_ID, _U32),
        auth_key=auth_key,
        correlation_id=correlation_id,
        extra={key: value for key, value in chunks.items() if key[0] != 0 or key[1] not in known},
    )


def _number(chunks: dict[int, bytes], kind: int, shape: struct.Struct) -> int:
    value = chunks.get(kind)
    if value is None:
        raise HepError(f"no chunk {kind}")
    if len(value) != shape.size:
        raise HepError(f"chunk {kind} of {len(value)} bytes, not {shape.size}")
    return int(shape.unpack(value)[0])


def _address(chunks: dict[int, bytes], kind: int, size: int) -> str:
    value = chunks.get(kind)
    if value is None or len(value) != size:
        raise HepError(f"chunk {kind} missing or not a {size}-byte address")
    return str(ipaddress.ip_address(value))
