"""Caller profiles: the routing group and dialplan a source address gets, used per call."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.edge.policy.callers import CallerProfiles
from services.edge.proxy.routes import CallerProfile, Found, NumberRouter
from shared.routing_table.model import Dialplan, DialplanRule, Gateway, Peer, Rule
from shared.settings import Settings
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import MemoryTable

PROFILES = "10.0.0.0/8=1/national; 10.1.0.0/16, udp:192.0.2.7:5060=2; 0.0.0.0/0=0/intl"


def test_the_longest_matching_network_chooses_the_profile() -> None:
    profiles = CallerProfiles(PROFILES)
    assert profiles(Destination("udp", "10.9.9.9", 5060), "1") == CallerProfile("1", "national")
    assert profiles(Destination("udp", "10.1.2.3", 5060), "1") == CallerProfile("2", None)
    assert profiles(Destination("udp", "192.0.2.7", 5060), "1") == CallerProfile("2", None)
    assert profiles(Destination("udp", "192.0.2.7", 5070), "1") == CallerProfile("0", "intl")
    assert CallerProfiles("")(Destination("udp", "10.9.9.9", 5060), "1") == CallerProfile("0", None)


@pytest.mark.parametrize("text", ["10.0.0.0/8", "=1", "10.0.0.0/8=", "10.0.0.0/8=/intl", "x=1"])
def test_a_malformed_profile_is_refused_when_settings_load(text: str) -> None:
    with pytest.raises(ValidationError, match="caller_profiles"):
        Settings(caller_profiles=text)


def test_a_callers_dialplan_and_group_apply_before_routing() -> None:
    table = MemoryTable(
        {"1": Gateway(address="sip:192.0.2.1"), "2": Gateway(address="sip:192.0.2.2")},
        {
            "intl": Rule(prefix="1407", gateways=("1",)),
            "wholesale": Rule(group="2", prefix="1407", gateways=("2",)),
        },
    )
    table.put(
        "dialplan", "national", Dialplan(rules=(DialplanRule(match="^00(.*)$", replace="+\\1"),))
    )
    router = NumberRouter(table, CallerProfiles("10.0.0.0/8=0/national; 10.1.0.0/16=2"))

    def found(number: str, host: str) -> Found:
        """What the proxy core asks: the source's profile, its dialplan, then its group's rule."""
        profile = router.caller_profile(Destination("udp", host, 5060), number)
        return router.hops_for(router.translate(number, profile), profile.group)

    def routed(number: str, host: str) -> list[str | None]:
        hops = found(number, host)
        assert hops is not None
        return [hop.gateway_id for hop in hops[0]]

    assert routed("0014075551234", "10.9.9.9") == ["1"]  # 00… → +1407… by the plan
    assert found("0014075551234", "192.0.2.9") is None
    assert routed("14075551234", "10.1.2.3") == ["2"]  # group 2's rule


def test_a_peer_of_the_routing_table_comes_before_the_bootstrap_profiles() -> None:
    """A peer's longest address wins over the variable's; its tech prefix is stripped
    before its dialplan, and a source no peer covers keeps its bootstrap profile."""
    table = MemoryTable(
        {"1": Gateway(address="sip:192.0.2.1"), "2": Gateway(address="sip:192.0.2.2")},
        {
            "intl": Rule(prefix="1407", gateways=("1",)),
            "wholesale": Rule(group="7", prefix="1407", gateways=("2",)),
        },
    )
    table.put(
        "dialplan", "national", Dialplan(rules=(DialplanRule(match="^00(.*)$", replace="\\1"),))
    )
    table.put("peer", "sbc", Peer(addresses=("10.1.0.0/16",), group="7"))
    table.put(
        "peer",
        "acme",
        Peer(addresses=("10.1.0.0/16",), group="7", dialplan="national", tech_prefix="4711#"),
    )
    profiles = CallerProfiles("10.0.0.0/8=0/national", table)
    router = NumberRouter(table, profiles)
    behind_sbc = Destination("udp", "10.1.2.3", 5060)
    acme = router.caller_profile(behind_sbc, "4711#0014075551234")
    assert acme == CallerProfile("7", "national", "acme", "4711#")
    assert router.translate("4711#0014075551234", acme) == "14075551234"
    assert router.caller_profile(behind_sbc, "14075551234") == CallerProfile("7", None, "sbc")
    elsewhere = router.caller_profile(Destination("udp", "10.9.9.9", 5060), "0014075551234")
    assert elsewhere == CallerProfile("0", "national")
    table.index.remove("peer", "sbc")
    assert router.caller_profile(behind_sbc, "14075551234") == CallerProfile("0", "national")
