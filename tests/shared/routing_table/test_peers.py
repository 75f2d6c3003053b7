"""Peers: the record's validation and the index that classifies a source (and number) by peer."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.routing_table.model import Limits, Peer
from shared.routing_table.peers import PeerIndex


def index(**peers: dict[str, Any]) -> PeerIndex:
    found = PeerIndex()
    for peer_id, body in peers.items():
        found.put(peer_id, Peer.model_validate(body))
    return found


def test_a_peer_takes_the_contracts_body() -> None:
    body = {
        "addresses": ["udp:198.51.100.7:5060", "10.0.0.0/8", "tcp:[2001:db8::7]:5061"],
        "trusted": True,
        "group": "0",
        "dialplan": None,
        "tech_prefix": None,
        "limits": {"max_concurrent": 20, "max_cps": 50},
    }
    peer = Peer.model_validate(body)
    assert peer.limits == Limits(max_concurrent=20, max_cps=50)
    assert Peer.model_validate_json(peer.stored()) == peer


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"addresses": []},
        {"addresses": ["not an address"]},
        {"addresses": ["10.0.0.0/33"]},
        {"addresses": ["udp:10.0.0.1:70000"]},
        {"addresses": ["10.0.0.1"], "group": "a,b"},
        {"addresses": ["10.0.0.1"], "tech_prefix": "ab"},
        {"addresses": ["10.0.0.1"], "tech_prefix": ""},
        {"addresses": ["10.0.0.1"], "limits": {"max_concurrent": -1}},
        {"addresses": ["10.0.0.1"], "limits": {"max_cps": 0}},
        {"addresses": ["10.0.0.1"], "limits": {"max_calls": 3}},
        {"addresses": ["10.0.0.1"], "trusted": "maybe"},
        {"addresses": ["10.0.0.1"] * 65},
    ],
)
def test_a_malformed_peer_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Peer.model_validate(body)


def test_the_longest_address_wins_and_a_port_or_transport_before_the_bare_network() -> None:
    peers = index(
        wide={"addresses": ["10.0.0.0/8"], "group": "w"},
        narrow={"addresses": ["10.1.0.0/16"], "group": "n"},
        port={"addresses": ["udp:10.1.0.0/16:5070"], "group": "p"},
    )

    def who(host: str, port: int, transport: str) -> str | None:
        match = peers.classify(host, port, transport, "1")
        return None if match is None else match.id

    assert who("10.9.9.9", 5060, "udp") == "wide"
    assert who("10.1.2.3", 5060, "udp") == "narrow"
    assert who("10.1.2.3", 5070, "udp") == "port"
    assert who("10.1.2.3", 5070, "tcp") == "narrow"
    assert who("192.0.2.1", 5060, "udp") is None
    assert who("not-an-ip", 5060, "udp") is None


def test_a_tech_prefix_picks_the_customer_behind_a_shared_address() -> None:
    peers = index(
        sbc={"addresses": ["192.0.2.10"]},
        acme={"addresses": ["192.0.2.10"], "tech_prefix": "12"},
        acme_premium={"addresses": ["192.0.2.10"], "tech_prefix": "1234"},
    )

    def who(number: str | None) -> str | None:
        match = peers.classify("192.0.2.10", 5060, "udp", number)
        return None if match is None else match.id

    assert who("1234555") == "acme_premium"
    assert who("12555") == "acme"
    assert who("555") == "sbc"
    assert who(None) == "sbc"
    peers.remove("sbc")
    assert who("555") is None  # only prefixed customers left: a number without one is nobody's


def test_trust_is_the_addresss_and_a_disabled_peer_is_nobody() -> None:
    peers = index(
        carrier={"addresses": ["192.0.2.0/24"], "trusted": True},
        customer={"addresses": ["192.0.2.7"]},
        off={"addresses": ["198.51.100.1"], "trusted": True, "enabled": False},
    )
    assert peers.trusts("192.0.2.8", 5060)
    assert not peers.trusts("192.0.2.7", 5060)  # its longest address is an untrusted peer's
    assert not peers.trusts("198.51.100.1", 5060)
    peers.put("customer", Peer(addresses=("192.0.2.7",), trusted=True))
    assert peers.trusts("192.0.2.7", 5060)
    assert len(peers) == 3
