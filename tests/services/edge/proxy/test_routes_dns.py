"""Gateways given by name in the proxy core: RFC 3263 targets from the DNS cache as hops, a cold
name waiting for a `Resolve`, failover through the SRV targets before the next gateway."""

from __future__ import annotations

import logging
import random
from dataclasses import replace

import pytest

from services.edge.destinations import ActiveCalls, DispatchSets, SetSelector
from services.edge.proxy.actions import Action, Publish, Resolve, Send
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import Hop, NumberRouter
from shared.contracts.calls import CallFailed
from shared.contracts.edge import GatewayFailed
from shared.dispatcher import DispatcherSet
from shared.dns import DnsCache, Names, Srv
from shared.dns.cache import record_key
from shared.dns.locate import NameSpec
from shared.routing_table.model import Gateway, Rule
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import MemoryTable, published
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW2,
    TRUSTED,
    Run,
    answer,
    invite,
    only_request,
    sent_to,
    statuses,
)

FIRST = Destination("udp", "203.0.113.21", 5071)
BACKUP = Destination("udp", "203.0.113.23", 5073)
SRV_NAME = "_sip._udp.carrier.test"


def carrier_records(cache: DnsCache, now: float) -> None:
    cache.put(record_key("carrier.test", "NAPTR"), (), None, now)
    cache.put(
        record_key(SRV_NAME, "SRV"),
        (Srv(10, 1, FIRST.port, "a.carrier.test."), Srv(20, 1, BACKUP.port, "c.carrier.test.")),
        60,
        now,
    )
    for host, address in (("a.carrier.test", FIRST.host), ("c.carrier.test", BACKUP.host)):
        cache.put(record_key(host, "A"), (address,), 60, now)
        cache.put(record_key(host, "AAAA"), (), 60, now)


def dns_run(
    states: dict[str, str] | None = None, transports: tuple[str, ...] = ("udp",)
) -> tuple[Run, DnsCache]:
    cache = DnsCache()
    table = MemoryTable(
        {
            "carrier": Gateway(address="sip:carrier.test"),
            "nowhere": Gateway(address="sip:nowhere.test;transport=udp"),
            "2": Gateway(address=f"sip:{GW2.host}:5060"),
        },
        {
            "r1407": Rule(prefix="1407", gateways=("carrier", "2")),
            "r1408": Rule(prefix="1408", gateways=("nowhere", "2")),
        },
    )
    known = states or {}
    router = NumberRouter(
        table,
        names=Names(cache, rng=random.Random(0), hold=30),
        health=lambda key: known.get(key, "unknown"),
    )
    interfaces = Interfaces([Interface(transport, EDGE, 5060, 5060) for transport in transports])
    dialogs = DialogGate(RecordRouteSigner.ephemeral(), lambda source: source.host in TRUSTED)
    proxy = Proxy(interfaces, router, ProxyTimers(fr=2.0, fr_inv=10.0), dialogs=dialogs)
    return Run(proxy, table), cache  # type: ignore[arg-type]


def resolves(actions: list[Action]) -> list[Resolve]:
    return [action for action in actions if isinstance(action, Resolve)]


def rounds_until_given_up(run: Run, actions: list[Action]) -> tuple[int, list[Action]]:
    """Resume the request each time its one name is asked again, as when every answer has
    expired by the time the request reads it: the rounds it waited, and what ended it."""
    (resolve,) = resolves(actions)
    rounds = 1
    while True:
        actions = run.proxy.resume(resolve.server, run.now)
        asked = resolves(actions)
        if not asked:
            return rounds, actions
        (resolve,) = asked
        rounds += 1
        assert rounds < 20


def test_a_cold_name_waits_for_dns_then_goes_to_the_first_srv_target() -> None:
    run, cache = dns_run()
    actions = run.send(invite())
    (resolve,) = resolves(actions)
    assert resolve.keys == (("carrier.test", "NAPTR"),)
    assert statuses(actions) == [100]
    carrier_records(cache, run.now)
    forwarded = only_request(run.proxy.resume(resolve.server, run.now), FIRST)
    assert forwarded.uri_text == "sip:14075551234@carrier.test"  # the name stays in the URI


def test_a_503_moves_to_the_next_srv_target_before_the_next_gateway() -> None:
    run, cache = dns_run()
    carrier_records(cache, run.now)
    first = only_request(run.send(invite()), FIRST)
    actions = run.send(answer(first, 503), FIRST)
    backup = only_request(actions, BACKUP)
    assert backup.uri_text == "sip:14075551234@carrier.test"
    (report,) = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(report, GatewayFailed)
    assert (report.gateway_id, report.target) == ("carrier", f"udp:a.carrier.test:{FIRST.port}")
    actions = run.send(answer(backup, 503), BACKUP)
    assert only_request(actions, GW2).uri_text == f"sip:14075551234@{GW2.host}:5060"


def test_a_transport_error_then_silence_go_through_the_srv_targets_then_the_gateway() -> None:
    """The first target cannot be reached (connect refused): the next target at once; that one
    stays silent past the failover timer: the rule's next gateway. Each is reported alone."""
    run, cache = dns_run()
    carrier_records(cache, run.now)
    [send] = [a for a in run.send(invite()) if isinstance(a, Send) and a.destination == FIRST]
    assert send.client is not None
    actions = run.proxy.transport_failed(send.client, run.now)
    assert only_request(actions, BACKUP).uri_text == "sip:14075551234@carrier.test"
    assert sent_to(actions, GW2) == []
    (report,) = [a.event for a in actions if isinstance(a, Publish)]
    assert isinstance(report, GatewayFailed)
    assert report.target == f"udp:a.carrier.test:{FIRST.port}"
    actions = run.later(2.1)  # the failover timer (fr) on the backup target
    assert only_request(actions, GW2).uri_text == f"sip:14075551234@{GW2.host}:5060"
    reports = [a.event for a in actions if isinstance(a, Publish)]
    assert [r.target for r in reports if isinstance(r, GatewayFailed)] == [
        f"udp:c.carrier.test:{BACKUP.port}"
    ]


def test_the_failed_target_is_tried_last_by_the_next_call() -> None:
    run, cache = dns_run()
    carrier_records(cache, run.now)
    first = only_request(run.send(invite()), FIRST)
    run.send(answer(first, 503), FIRST)
    only_request(run.send(invite(branch="z9hG4bKc2").replace(b"call-1", b"call-2")), BACKUP)


def test_a_target_the_health_service_holds_down_is_skipped() -> None:
    run, cache = dns_run({f"carrier@udp:a.carrier.test:{FIRST.port}": "down"})
    carrier_records(cache, run.now)
    only_request(run.send(invite()), BACKUP)


def test_an_unresolvable_gateway_is_skipped_for_the_next() -> None:
    run, cache = dns_run()
    for rtype in ("A", "AAAA"):
        cache.put(record_key("nowhere.test", rtype), (), None, run.now, "no such name")
    for rtype in ("SRV",):
        cache.put(record_key("_sip._udp.nowhere.test", rtype), (), None, run.now, "no such name")
    forwarded = only_request(run.send(invite(uri=f"sip:14085550000@{EDGE}")), GW2)
    assert forwarded.uri_text == f"sip:14085550000@{GW2.host}:5060"


def test_a_destination_by_name_skips_the_dns_target_its_set_holds_down() -> None:
    """The health service probes a destination given by name per DNS target (`{uri}@{label}`
    in the set's states): a target down is skipped, the name's next one tried."""
    cache = DnsCache()
    table = MemoryTable({"2": Gateway(address=f"sip:{GW2.host}:5060")}, {})
    table.index.put("rule", "r1407", Rule(prefix="1407", gateways=("@farm", "2")))
    sets = DispatchSets()
    sets.put("farm", DispatcherSet.model_validate({"destinations": [{"uri": "sip:carrier.test"}]}))
    sets.set_state("farm", f"sip:carrier.test@udp:a.carrier.test:{FIRST.port}", "down")
    router = NumberRouter(
        table,
        sets=SetSelector(sets, ActiveCalls()),
        names=Names(cache, rng=random.Random(0), hold=30),
    )
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    proxy = Proxy(interfaces, router, ProxyTimers(fr=2.0, fr_inv=10.0))
    run = Run(proxy, table)  # type: ignore[arg-type]
    carrier_records(cache, run.now)
    forwarded = only_request(run.send(invite()), BACKUP)
    assert forwarded.uri_text == "sip:14075551234@carrier.test"


def test_dns_answers_that_keep_expiring_end_a_new_calls_routing_with_a_500() -> None:
    """A cache emptied faster than it fills: the call waits for `MAX_DNS_ROUNDS` answers."""
    run, _cache = dns_run()
    rounds, actions = rounds_until_given_up(run, run.send(invite()))
    assert rounds == 6
    [data] = [d for d in sent_to(actions, CALLER) if d.startswith(b"SIP/2.0 ")]
    assert data.startswith(b"SIP/2.0 500 Server Internal Error (DNS)\r\n")


def test_a_call_given_up_on_dns_is_published_as_failed_with_its_500() -> None:
    run, _cache = dns_run()
    run.proxy.call_events = CallEvents("edge-test", wall_offset=0.0)
    _rounds, actions = rounds_until_given_up(run, run.send(invite()))
    [failed] = [event for event in published(actions) if isinstance(event, CallFailed)]
    assert (failed.status, failed.reason) == (500, "Server Internal Error (DNS)")


# ----- the hops a named gateway or destination gives (NumberRouter) ----------------------

NUMBER = "14075551234"


def carrier_router(address: str, *, names: bool = True) -> NumberRouter:
    """Rule r1407 to the one gateway `carrier` at `address`; DNS answered by `carrier_records`."""
    cache = DnsCache()
    carrier_records(cache, 0.0)
    table = MemoryTable(
        {"carrier": Gateway(address=address)}, {"r1407": Rule(prefix="1407", gateways=("carrier",))}
    )
    return NumberRouter(table, names=Names(cache, rng=random.Random(0), hold=30) if names else None)


def test_a_named_gateways_targets_are_hops_of_its_rule_pinned_to_its_transport() -> None:
    address = "sip:carrier.test;transport=udp"
    found = carrier_router(address).hops_for(NUMBER, "0")
    assert found is not None
    hops, skipped = found
    assert [(h.destination, h.gateway_id, h.gateway_address, h.rule_id) for h in hops] == [
        (FIRST, "carrier", address, "r1407"),
        (BACKUP, "carrier", address, "r1407"),
    ]
    assert skipped == 0
    assert all(hop.destination.pinned for hop in hops)  # `transport=udp`: never moved to TCP


def test_a_named_gateway_without_a_resolver_is_one_hop_the_transport_resolves() -> None:
    address = "sip:carrier.test"
    found = carrier_router(address, names=False).hops_for(NUMBER, "0")
    assert found == (
        [
            Hop(
                f"sip:{NUMBER}@carrier.test",
                Destination("udp", "carrier.test", 5060),
                "carrier",
                address,
                "r1407",
            )
        ],
        0,
    )


def test_an_unresolvable_gateway_counts_once_as_skipped_and_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = DnsCache()
    for rtype in ("A", "AAAA"):
        cache.put(record_key("nowhere.test", rtype), (), None, 0.0, "no such name")
    cache.put(record_key("_sip._udp.nowhere.test", "SRV"), (), None, 0.0, "no such name")
    table = MemoryTable(
        {"nowhere": Gateway(address="sip:nowhere.test;transport=udp")},
        {"r1408": Rule(prefix="1408", gateways=("nowhere",))},
    )
    router = NumberRouter(table, names=Names(cache, rng=random.Random(0), hold=30))
    with caplog.at_level(logging.WARNING):
        assert router.hops_for("14085550000", "0") == ([], 1)
    assert caplog.messages == [
        "gateway nowhere skipped: nowhere.test does not resolve (nowhere.test: no such name)"
    ]


def test_a_set_destinations_hop_names_no_gateway_address() -> None:
    cache = DnsCache()
    carrier_records(cache, 0.0)
    table = MemoryTable({}, {"r1407": Rule(prefix="1407", gateways=("@farm",))})
    sets = DispatchSets()
    sets.put("farm", DispatcherSet.model_validate({"destinations": [{"uri": "sip:carrier.test"}]}))
    router = NumberRouter(
        table,
        sets=SetSelector(sets, ActiveCalls()),
        names=Names(cache, rng=random.Random(0), hold=30),
    )
    found = router.hops_for(NUMBER, "0")
    assert found is not None
    assert [(h.set_id, h.set_uri, h.gateway_address) for h in found[0]] == [
        ("farm", "sip:carrier.test", ""),
        ("farm", "sip:carrier.test", ""),
    ]


def test_a_hop_by_name_without_a_resolver_is_left_to_the_transport() -> None:
    router = NumberRouter(MemoryTable({}, {}))
    hop = Hop(
        "sip:x@carrier.test",
        Destination("udp", "carrier.test", 5060),
        name=NameSpec("carrier.test", None, None, False),
    )
    assert router.by_name(hop, 0.0) == ([replace(hop, name=None)], "")


def test_a_route_by_name_keeps_its_pin_on_every_target() -> None:
    cache = DnsCache()
    carrier_records(cache, 0.0)
    router = NumberRouter(MemoryTable({}, {}), names=Names(cache, rng=random.Random(0), hold=30))
    pinned = Destination("udp", "carrier.test", 5060, pinned=True)
    hop = Hop("sip:x@carrier.test", pinned, name=NameSpec("carrier.test", None, "udp", False))
    hops, why = router.by_name(hop, 0.0)
    assert [h.destination for h in hops] == [FIRST, BACKUP] and why == ""
    assert all(h.destination.pinned for h in hops)


def test_a_failed_dns_target_is_logged_with_how_long_it_is_tried_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = NumberRouter(MemoryTable({}, {}), names=Names(DnsCache(), hold=30))
    with caplog.at_level(logging.INFO):
        router.target_failed("udp:a.carrier.test:5071", 0.0, None)
    assert caplog.messages == ["DNS target udp:a.carrier.test:5071 failed: tried last for 30 s"]
