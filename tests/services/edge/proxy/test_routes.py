"""Which Request-URIs dial a number, and which gateways a number goes to."""

from __future__ import annotations

import pytest

from services.edge.proxy.routes import dialled_number
from shared.routing_table.model import Gateway, Rule
from shared.sip.uri import parse_uri
from tests.services.edge.proxy.test_core import EDGE, GW2, core_run, invite, only_request


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:14075551234@example.com", "14075551234"),
        ("sip:+442071234567@10.0.0.1;user=phone", "+442071234567"),
        ("tel:+1-407-555-1234", "+14075551234"),
        ("sip:alice@example.com", None),
        ("sip:example.com", None),
        ("sip:+@example.com", None),
        ("sip:a14075551234@example.com", None),  # only a leading + may precede the digits
        ("sip:١٢٣@example.com", None),
    ],
)
def test_dialled_number(uri: str, number: str | None) -> None:
    assert dialled_number(parse_uri(uri)) == number


def test_a_gateway_with_an_unusable_address_is_skipped_for_the_next() -> None:
    run = core_run()
    run.table.put("gateway", "bad", Gateway(address="sip:[not-an-address"))
    run.table.put("rule", "r1999", Rule(prefix="1999", gateways=("bad", "2")))
    forwarded = only_request(run.send(invite(uri=f"sip:19995550000@{EDGE}")), GW2)
    assert forwarded.uri_text == f"sip:19995550000@{GW2.host}:5060"
