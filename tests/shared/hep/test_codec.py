"""HEPv3 encoding and decoding: every chunk, both address families, and malformed input."""

from __future__ import annotations

import struct

import pytest

from shared.hep.codec import (
    CAPTURE_ID,
    CORRELATION_ID,
    PAYLOAD,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    TYPE_LOG,
    Encoder,
    HepError,
    HepPacket,
    decode,
    encode,
    ip_protocol,
    packet_length,
)

INVITE = b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: abc@h\r\nContent-Length: 0\r\n\r\n"


def chunks_of(data: bytes) -> dict[int, bytes]:
    """The generic chunks, read independently of the decoder."""
    found = {}
    offset = 6
    while offset < len(data):
        _vendor, kind, length = struct.unpack_from("!HHH", data, offset)
        found[kind] = data[offset + 6 : offset + length]
        offset += length
    return found


def test_ipv4_packet_carries_every_chunk_as_the_spec_lays_it_out() -> None:
    packet = HepPacket(
        source=("192.0.2.1", 5060),
        destination=("198.51.100.7", 5080),
        seconds=1_700_000_000,
        microseconds=123_456,
        payload=INVITE,
        capture_id=2001,
        auth_key="secret",
        correlation_id="abc@h",
    )
    data = encode(packet)
    assert data[:4] == b"HEP3"
    assert struct.unpack("!H", data[4:6])[0] == len(data)
    chunks = chunks_of(data)
    assert chunks == {
        1: b"\x02",
        2: b"\x11",
        3: bytes([192, 0, 2, 1]),
        4: bytes([198, 51, 100, 7]),
        7: struct.pack("!H", 5060),
        8: struct.pack("!H", 5080),
        9: struct.pack("!I", 1_700_000_000),
        10: struct.pack("!I", 123_456),
        11: b"\x01",
        12: struct.pack("!I", 2001),
        14: b"secret",
        17: b"abc@h",
        15: INVITE,
    }
    assert decode(data) == packet


def test_ipv6_packet_round_trips_with_the_v6_chunks() -> None:
    packet = HepPacket(
        source=("2001:db8::1", 5060),
        destination=("2001:db8::2", 40000),
        seconds=1,
        microseconds=999_999,
        payload=INVITE,
        protocol=PROTOCOL_TCP,
        protocol_type=TYPE_LOG,
    )
    data = encode(packet)
    chunks = chunks_of(data)
    assert chunks[1] == b"\x0a" and chunks[2] == b"\x06" and chunks[11] == bytes([100])
    assert len(chunks[5]) == 16 and len(chunks[6]) == 16
    assert 3 not in chunks and 14 not in chunks and 17 not in chunks  # unset: not written
    decoded = decode(data)
    assert decoded == packet and decoded.ipv6


def test_transports_map_to_their_ip_protocol() -> None:
    assert [ip_protocol(t) for t in ("udp", "tcp", "tls", "ws", "wss")] == [17, 6, 6, 6, 6]


def test_unknown_chunks_are_kept_apart_and_do_not_stop_the_decoder() -> None:
    data = encode(HepPacket(("10.0.0.1", 1), ("10.0.0.2", 2), 0, 0, b"x"))
    extra = struct.pack("!HHH", 0x0002, 0x0020, 8) + b"\x00\x07"
    data = b"HEP3" + struct.pack("!H", len(data) + len(extra)) + data[6:] + extra
    assert decode(data).extra == {(2, 0x20): b"\x00\x07"}


def test_encoder_refuses_what_cannot_be_a_packet() -> None:
    with pytest.raises(HepError, match="not an IP address"):
        encode(HepPacket(("gw.example", 1), ("10.0.0.2", 2), 0, 0, b"x"))
    with pytest.raises(HepError, match="different address families"):
        encode(HepPacket(("10.0.0.1", 1), ("::1", 2), 0, 0, b"x"))
    with pytest.raises(HepError, match="over HEP"):
        encode(HepPacket(("10.0.0.1", 1), ("10.0.0.2", 2), 0, 0, b"x" * 65536))


def _valid() -> bytes:
    return encode(HepPacket(("10.0.0.1", 1), ("10.0.0.2", 2), 3, 4, INVITE, correlation_id="c"))


def _without(data: bytes, kind: int) -> bytes:
    out = b""
    offset = 6
    while offset < len(data):
        _vendor, found, length = struct.unpack_from("!HHH", data, offset)
        if found != kind:
            out += data[offset : offset + length]
        offset += length
    return b"HEP3" + struct.pack("!H", 6 + len(out)) + out


def _family(family: int) -> bytes:
    data = _valid()
    at = data.index(struct.pack("!HHH", 0, 1, 7)) + 6  # the IP family chunk's one-byte value
    return data[:at] + bytes([family]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "total length None"),
        (b"HEP2\x00\x06", "no HEP3 magic"),
        (b"HEP3\x00\x03", "shorter than the header"),
        (_valid()[:-1], "but"),
        (_valid() + b"\x00", "but"),
        (b"HEP3\x00\x09\x00\x00\x01", "truncated chunk header"),
        (b"HEP3\x00\x0c\x00\x00\x00\x01\x00\x02", "bad length 2"),
        (b"HEP3\x00\x0c\x00\x00\x00\x01\x00\x40", "bad length 64"),
        (_without(_valid(), PAYLOAD), "no payload"),
        (_without(_valid(), CAPTURE_ID), "no chunk 12"),
        (_family(7), "unknown IP family 7"),
        (_valid().replace(b"\x00\x11\x00\x07c", b"\x00\x11\x00\x07\xff"), "not UTF-8"),
        (_without(_valid(), 3), "chunk 3 missing"),
    ],
)
def test_decoder_names_what_is_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(HepError, match=reason):
        decode(data)


def test_packet_length_frames_a_stream() -> None:
    data = _valid()
    assert packet_length(data[:5]) is None
    assert packet_length(data + data) == len(data)
    assert CORRELATION_ID == 17


def test_encoder_refuses_a_port_out_of_range() -> None:
    with pytest.raises(HepError, match="out of its range"):
        encode(HepPacket(("10.0.0.1", 70000), ("10.0.0.2", 2), 0, 0, b"x"))


def test_one_encoder_keeps_each_packets_own_addresses_protocol_and_time() -> None:
    """The encoder memoises address chunks per (source, destination, protocol): none leaks."""
    encoder = Encoder(capture_id=5, auth_key="k")
    v4, v6 = (("192.0.2.1", 5060), ("192.0.2.2", 5080)), (("2001:db8::1", 5060), ("::1", 5))
    sent = [
        (*v4, PROTOCOL_UDP, 1, "a"),
        (*v4, PROTOCOL_TCP, 2, ""),  # the same addresses over TCP
        (*v6, PROTOCOL_UDP, 3, "c"),
        (v4[1], v4[0], PROTOCOL_UDP, 4, "d"),  # the other way
        (*v4, PROTOCOL_UDP, 5, "a"),
    ]
    for source, destination, protocol, seconds, correlation in sent:
        packet = decode(
            encoder.pack(
                source, destination, seconds, 7, INVITE, protocol=protocol,
                correlation_id=correlation,
            )
        )  # fmt: skip # the packet's fields together
        assert (packet.source, packet.destination, packet.protocol) == (
            source, destination, protocol
        )  # fmt: skip # one comparison
        assert (packet.seconds, packet.microseconds, packet.correlation_id) == (
            seconds, 7, correlation
        )  # fmt: skip # one comparison
        assert (packet.capture_id, packet.auth_key, packet.payload) == (5, "k", INVITE)
    with pytest.raises(HepError, match="different address families"):
        encoder.pack(v4[0], v6[1], 1, 0, INVITE)
