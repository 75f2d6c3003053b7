"""A transfer's target: a SIP URI as a next hop, a number routed as the caller's own call
(the core tests' table: 44 → gateway 2; 1407 → gateways 1, 2)."""

from __future__ import annotations

import pytest

from services.edge.runtime.transfer_targets import (
    TransferTargetError,
    is_number,
    number_target,
    uri_target,
)
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import CALLER, GW1, GW2
from tests.services.edge.runtime.test_b2bua_runner import b2bua_proxy


def test_a_uri_is_sent_to_as_a_next_hop() -> None:
    target = uri_target("sip:agent7@192.0.2.7:5070")
    assert (target.uri, target.destination) == (
        "sip:agent7@192.0.2.7:5070",
        Destination("udp", "192.0.2.7", 5070),
    )
    assert uri_target("sip:a@192.0.2.7;transport=tcp").destination.transport == "tcp"


@pytest.mark.parametrize(
    "to",
    ["sip:", "sip:@", "sip:a@[::1", "sip:a@b:99999", "sip:a@b;transport=xyz", "sip:a@b?X=y",
     "tel:+15550100", "http://x", "mailto:a@b"],
)  # fmt: skip # the cases on two lines
def test_what_is_no_usable_uri_is_422(to: str) -> None:
    with pytest.raises(TransferTargetError) as refused:
        uri_target(to)
    assert refused.value.status == 422


def test_a_number_goes_to_its_routes_first_usable_gateway() -> None:
    proxy, _ = b2bua_proxy()
    target = number_target(proxy.router, "4420", CALLER, 0.0)
    assert (target.uri, target.destination.address) == (f"sip:4420@{GW2.host}:5060", GW2.address)
    assert number_target(proxy.router, "+4420", CALLER, 0.0).destination.address == GW2.address
    assert number_target(proxy.router, "14075551234", CALLER, 0.0).destination.host == GW1.host


def test_a_number_without_a_route_is_404() -> None:
    proxy, _ = b2bua_proxy()
    with pytest.raises(TransferTargetError) as refused:
        number_target(proxy.router, "999", CALLER, 0.0)
    assert refused.value.status == 404


def test_numbers_and_uris_are_told_apart() -> None:
    assert is_number("+15550100") and is_number("2502")
    assert not is_number("sip:2502@x") and not is_number("12a") and not is_number("")
