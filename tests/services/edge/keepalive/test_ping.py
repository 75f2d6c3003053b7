"""The keepalive OPTIONS: addressed to the phone's contact, matched back by its Call-ID."""

from __future__ import annotations

import hashlib

from services.edge.keepalive.ping import options_ping, ping_call_id
from shared.registrar.model import Location
from shared.sip.message import Request, parse_message

BINDING = Location(
    aor="sip:alice@example.com",
    contact="sip:alice@192.168.1.5:5060;ob",
    expires_at=1e12,
    received="sip:203.0.113.9:40000;transport=tcp",
    transport="tcp",
    edge="edge-a",
)


def test_options_to_the_contact_with_the_bindings_call_id() -> None:
    parsed = parse_message(options_ping(BINDING, "198.51.100.1", 5060, 7).to_bytes())
    assert isinstance(parsed, Request)
    assert parsed.method == "OPTIONS"
    assert str(parsed.uri) == BINDING.contact
    assert parsed.call_id == f"{ping_call_id(BINDING.aor, BINDING.contact)}.7"
    assert parsed.cseq.seq == 7
    assert str(parsed.header("via")).startswith("SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bK")
    assert str(parsed.to.uri) == BINDING.aor


def test_call_id_tells_bindings_apart_and_is_stable() -> None:
    assert ping_call_id("sip:a@x", "sip:a@1.2.3.4") == ping_call_id("sip:a@x", "sip:a@1.2.3.4")
    assert ping_call_id("sip:a@x", "sip:a@1.2.3.4") != ping_call_id("sip:a@x", "sip:a@1.2.3.5")


def test_ipv6_via_host_is_bracketed() -> None:
    request = options_ping(BINDING, "2001:db8::1", 5060, 1)
    assert "[2001:db8::1]:5060" in str(request.header("via"))


def test_call_id_is_not_computable_from_the_binding_alone() -> None:
    """Keyed per process: a stranger who knows the AoR and Contact cannot name the pings (and
    forge their answers from a spoofed address); the process itself always finds its own."""
    aor, contact = "sip:a@x", "sip:a@1.2.3.4"
    unkeyed = hashlib.blake2b(f"{aor} {contact}".encode(), digest_size=12).hexdigest()
    assert ping_call_id(aor, contact) != f"cm-ka-{unkeyed}"
