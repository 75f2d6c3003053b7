"""The model reads what it has read already from its slots, and the rest from the lines."""

from __future__ import annotations

import pytest

from shared.sip.message import parse_message
from shared.sip.via import parse_vias

HEAD = b"INVITE sip:b@example.com SIP/2.0\r\n"
REST = (
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\n"
    b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    "via_lines",
    [
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\n",
        b'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa;x="1,2"\r\n',
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/TCP b;branch=z9hG4bKb\r\n",
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\nv: SIP/2.0/TCP b;branch=z9hG4bKb\r\n",
    ],
)
def test_every_via_after_the_top_one_was_read_is_every_via_of_the_lines(
    via_lines: bytes,
) -> None:
    message = parse_message(HEAD + via_lines + REST)
    top = message.top_via
    values = [line.split(b":", 1)[1].decode() for line in via_lines.split(b"\r\n")[:-1]]
    expected = [via for value in values for via in parse_vias(value)]
    assert message.vias == expected
    assert message.vias[0] is top
