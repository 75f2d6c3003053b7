from __future__ import annotations

from services.edge.sockets import top_via_names_port

RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:40001;branch=z9hG4bKa\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKb\r\n"
    b"Call-ID: x\r\n\r\n"
)


def test_the_top_via_names_a_port_or_not() -> None:
    assert top_via_names_port(RESPONSE, 40001)
    assert not top_via_names_port(RESPONSE, 5060)  # the second Via does not count
    assert top_via_names_port(RESPONSE.replace(b";branch=z9hG4bKa", b""), 40001)
    assert top_via_names_port(RESPONSE.replace(b"\nVia:", b"\nv:"), 40001)


def test_an_unreadable_via_counts_as_ours() -> None:
    assert top_via_names_port(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", 40001)
