"""A TLS peer's options: the gateway's at that address, or, for an address DNS gave a name
(RFC 3263), the options of the gateway whose URI names that host and the name to check."""

from __future__ import annotations

from shared.routing_table.gateway_tls import GatewayTls
from shared.sip.transport.tls_context import ClientProfile
from shared.sip.transport.tls_peers import GatewayProfiles

MUTUAL = GatewayTls(certificate="/c.pem", private_key="/k.pem")
NAMED = GatewayTls(certificate="/c.pem", private_key="/k.pem", server_name="sbc.example")
GATEWAYS = [
    ("sips:192.0.2.7:5061", MUTUAL),
    ("sips:carrier.test", MUTUAL),
    ("sips:other.test", NAMED),
    ("sips:plain.test", None),
]
BY_NAME = {
    ("192.0.2.1", 5061): "carrier.test",
    ("192.0.2.2", 5061): "other.test",
    ("192.0.2.3", 5061): "plain.test",
}


def test_a_gateway_at_an_address_has_its_options() -> None:
    profiles = GatewayProfiles(lambda: GATEWAYS, BY_NAME.get)
    assert profiles(("192.0.2.7", 5061)) == ClientProfile(
        certificate="/c.pem", private_key="/k.pem"
    )
    assert profiles(("192.0.2.9", 5061)) is None


def test_a_dns_target_has_its_gateways_options_checked_against_the_uri_host() -> None:
    profiles = GatewayProfiles(lambda: GATEWAYS, BY_NAME.get)
    found = profiles(("192.0.2.1", 5061))
    assert found == ClientProfile(
        certificate="/c.pem", private_key="/k.pem", server_name="carrier.test"
    )
    named = profiles(("192.0.2.2", 5061))
    assert named is not None and named.server_name == "sbc.example"  # the gateway's word wins
    assert profiles(("192.0.2.3", 5061)) == ClientProfile(server_name="plain.test")


def test_without_dns_the_address_alone_decides() -> None:
    assert GatewayProfiles(lambda: GATEWAYS)(("192.0.2.1", 5061)) is None
