"""A gateway's `tls` options through the API to an edge's cache, and the ones refused."""

from __future__ import annotations

import pytest

from shared.routing_table.store import RoutingStore
from shared.sip.transport.tls_context import ClientProfile
from shared.sip.transport.tls_peers import GatewayProfiles
from shared.store import Store
from tests.services.routing.support import Deployment, deployment
from tests.shared.bus.support import until

pytestmark = pytest.mark.integration

CARRIER = {
    "address": "sips:203.0.113.10:5061",
    "tls": {
        "certificate": "/etc/callmesh/carrier.crt",
        "private_key": "/etc/callmesh/carrier.key",
        "ca_list": "/etc/callmesh/carrier-ca.pem",
        "server_name": "sbc.carrier.example",
    },
}


@pytest.fixture
async def routing(namespace: str, redis_store: Store) -> Deployment:  # type: ignore[misc]
    async with deployment(namespace, redis_store) as found:
        yield found


async def test_a_gateways_tls_options_reach_the_edge(routing: Deployment) -> None:
    edge = await routing.edge()
    reply = await routing.client.put("/v1/gateways/carrier", json=CARRIER)
    assert reply.status_code == 200, reply.text
    plain = {"address": "sip:203.0.113.11;transport=tls", "tls": {"verify_cert": False}}
    named = {"address": "sips:203.0.113.12", "tls": {"client_certificate": "carrier1"}}
    assert (await routing.client.put("/v1/gateways/named", json=named)).status_code == 200
    assert (await routing.client.put("/v1/gateways/lax", json=plain)).status_code == 200
    shown = (await routing.client.get("/v1/gateways/carrier")).json()
    assert shown["tls"]["server_name"] == "sbc.carrier.example"
    version = await RoutingStore(routing.store).version()
    await until(lambda: edge.version == version)
    profiles = GatewayProfiles(lambda: [(g.address, g.tls) for g in edge.index.gateways.values()])
    assert profiles(("203.0.113.10", 5061)) == ClientProfile(
        certificate="/etc/callmesh/carrier.crt",
        private_key="/etc/callmesh/carrier.key",
        ca="/etc/callmesh/carrier-ca.pem",
        server_name="sbc.carrier.example",
    )
    assert profiles(("203.0.113.11", 5061)) == ClientProfile(verify=False)
    assert profiles(("203.0.113.12", 5061)) == ClientProfile(certificate_name="carrier1")
    assert profiles(("203.0.113.13", 5061)) is None


@pytest.mark.parametrize(
    "body, why",
    [
        ({"address": "sip:203.0.113.10", "tls": {}}, "sips: address"),
        ({"address": "sips:203.0.113.10", "tls": {"certificate": "/a.crt"}}, "go together"),
        ({"address": "sips:203.0.113.10", "tls": {"ca_list": "ca.pem"}}, "ca_list"),
        ({"address": "sips:203.0.113.10", "tls": {"server_name": "a b"}}, "server_name"),
        ({"address": "sips:203.0.113.10", "tls": {"verify": False}}, "verify"),
        (
            {
                "address": "sips:203.0.113.10",
                "tls": {"certificate": "/a", "private_key": "/b", "client_certificate": "c1"},
            },
            "not both",
        ),
    ],
)
async def test_bad_tls_options_are_refused_with_the_reason(
    routing: Deployment, body: dict[str, object], why: str
) -> None:
    reply = await routing.client.put("/v1/gateways/bad", json=body)
    assert reply.status_code == 422
    assert why in reply.text
    assert (await routing.client.get("/v1/gateways/bad")).status_code == 404
