"""Which limits of the routing table a call is held to (`shared/limits/table.py`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.limits.model import Channel, Demand
from shared.limits.table import channels, configured
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Carrier, Gateway, Limits


def gateway(host: str, **limits: int) -> Gateway:
    return Gateway(address=f"sip:{host}", limits=Limits(**limits) if limits else None)


def test_a_gateways_calls_per_second_make_it_a_capped_candidate() -> None:
    index = RoutingIndex()
    index.put("gateway", "paced", gateway("192.0.2.1", max_cps=30))
    index.put("gateway", "both", gateway("192.0.2.2", max_concurrent=5, max_cps=20, cps_burst=4))
    index.put("gateway", "shut", gateway("192.0.2.3", max_concurrent=0))
    index.put("gateway", "free", gateway("192.0.2.4"))
    found = channels(index, ["paced", "both", "shut", "free", "paced"])
    assert found == (
        Channel("gateway:paced", (Demand("gateway:paced", None, 30, 3),)),
        Channel("gateway:both", (Demand("gateway:both", 5, 20, 4),)),
        Channel("gateway:shut", (Demand("gateway:shut", 0),)),
    )  # up to the first without any cap: a call reaching it needs nothing
    assert configured(index) == {
        "gateway:paced": (None, 30),
        "gateway:both": (5, 20),
        "gateway:shut": (0, None),
    }


def test_a_carriers_cap_rides_with_its_gateways_own_rate() -> None:
    index = RoutingIndex()
    index.put("gateway", "g", gateway("192.0.2.1", max_cps=10))
    index.put("carrier", "c", Carrier(gateways=("g",), limits=Limits(max_concurrent=7)))
    [channel] = channels(index, ["g"])
    assert channel.caps == (Demand("gateway:g", None, 10, 1), Demand("carrier:c", 7))


def test_a_gateway_takes_no_local_allowance() -> None:
    with pytest.raises(ValidationError, match="counted exactly"):
        gateway("192.0.2.1", max_cps=10, cps_allowance=5)
