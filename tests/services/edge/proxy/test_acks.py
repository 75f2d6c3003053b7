"""A 2xx's ACK forwarded statelessly to a next hop given by name: RFC 3263 as for any request
(NAPTR → SRV → A/AAAA from the DNS cache); a name the cache lacks parks the ACK for a
`ResolveAck` (as many rounds as RFC 3263 has steps), then it leaves once, to the first target,
with a Via naming the transport DNS chose; the parked ACKs are bounded in number and time."""

from __future__ import annotations

from services.edge import metrics
from services.edge.proxy.actions import Action, ResolveAck, Send
from services.edge.proxy.core import Proxy
from services.edge.proxy.parked_acks import ParkedAcks
from shared.dns import Naptr, Srv
from shared.dns.cache import record_key
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import only_request, signed
from tests.services.edge.proxy.test_routes_dns import (
    BACKUP,
    FIRST,
    SRV_NAME,
    carrier_records,
    dns_run,
)


def ack(proxy: Proxy, call_id: str = "call-9", uri: str = "sip:gw@carrier.test") -> bytes:
    """The caller's ACK for a 2xx, along our signed Record-Route, to `uri`."""
    return (
        f"ACK {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKack9\r\n"
        f"Route: {signed(proxy, call_id)}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def resolve_acks(actions: list[Action]) -> list[ResolveAck]:
    return [action for action in actions if isinstance(action, ResolveAck)]


def sends(actions: list[Action]) -> list[Send]:
    return [action for action in actions if isinstance(action, Send)]


def dropped(reason: str) -> int:
    return metrics.ACKS_DROPPED.get(reason, 0)


def test_an_ack_to_a_cached_name_goes_to_its_first_target_at_once() -> None:
    run, cache = dns_run()
    carrier_records(cache, run.now)
    actions = run.send(ack(run.proxy))
    assert resolve_acks(actions) == []
    forwarded = only_request(actions, FIRST)
    assert forwarded.method == "ACK" and forwarded.max_forwards == 69


def test_an_ack_to_a_cold_name_waits_for_dns_then_leaves_once_to_the_first_srv_target() -> None:
    run, cache = dns_run()
    actions = run.send(ack(run.proxy))
    assert sends(actions) == []  # nothing leaves to the name's A record meanwhile
    (resolve,) = resolve_acks(actions)
    assert resolve.keys == (("carrier.test", "NAPTR"),)
    carrier_records(cache, run.now)
    actions = run.proxy.ack_resolved(resolve.ticket, run.now + 0.5)
    forwarded = only_request(actions, FIRST)
    assert forwarded.uri_text == "sip:gw@carrier.test"  # the name stays in the URI
    assert forwarded.top_via.transport.upper() == "UDP"
    assert [s.destination for s in sends(actions)] == [FIRST]  # not the backup too
    assert run.proxy.ack_resolved(resolve.ticket, run.now + 0.5) == []  # a ticket is used once


def test_each_rfc_3263_step_is_a_round_of_its_own() -> None:
    """NAPTR (none), then SRV, then the targets' addresses: three `ResolveAck`s, one ACK."""
    run, cache = dns_run()
    (first,) = resolve_acks(run.send(ack(run.proxy)))
    cache.put(record_key("carrier.test", "NAPTR"), (), None, run.now)
    (second,) = resolve_acks(run.proxy.ack_resolved(first.ticket, run.now))
    assert (SRV_NAME, "SRV") in second.keys
    cache.put(
        record_key(SRV_NAME, "SRV"), (Srv(10, 1, BACKUP.port, "c.carrier.test."),), 60, run.now
    )
    (third,) = resolve_acks(run.proxy.ack_resolved(second.ticket, run.now))
    assert set(third.keys) == {("c.carrier.test", "A"), ("c.carrier.test", "AAAA")}
    cache.put(record_key("c.carrier.test", "A"), (BACKUP.host,), 60, run.now)
    cache.put(record_key("c.carrier.test", "AAAA"), (), 60, run.now)
    only_request(run.proxy.ack_resolved(third.ticket, run.now), BACKUP)


def test_the_via_names_the_transport_dns_chose() -> None:
    """`sip:carrier.test` says no transport; its NAPTR says TCP: the ACK goes by TCP, and says
    so in its Via (not the UDP the URI alone would have meant)."""
    run, cache = dns_run(transports=("udp", "tcp"))
    (resolve,) = resolve_acks(run.send(ack(run.proxy)))
    naptr = Naptr(10, 10, "S", "SIP+D2T", "_sip._tcp.carrier.test")
    cache.put(record_key("carrier.test", "NAPTR"), (naptr,), 60, run.now)
    srv = Srv(10, 1, FIRST.port, "a.carrier.test.")
    cache.put(record_key("_sip._tcp.carrier.test", "SRV"), (srv,), 60, run.now)
    cache.put(record_key("a.carrier.test", "A"), (FIRST.host,), 60, run.now)
    cache.put(record_key("a.carrier.test", "AAAA"), (), 60, run.now)
    tcp = Destination("tcp", FIRST.host, FIRST.port)
    forwarded = only_request(run.proxy.ack_resolved(resolve.ticket, run.now), tcp)
    assert forwarded.top_via.transport.upper() == "TCP"


def test_an_ack_to_a_name_that_does_not_resolve_is_dropped_and_counted() -> None:
    run, cache = dns_run()
    for rtype in ("A", "AAAA"):
        cache.put(record_key("nowhere.test", rtype), (), None, run.now, "no such name")
    before = dropped("unresolvable")
    assert sends(run.send(ack(run.proxy, uri="sip:gw@nowhere.test:5080"))) == []
    assert dropped("unresolvable") == before + 1


def test_an_ack_whose_dns_answer_comes_after_the_deadline_is_dropped() -> None:
    run, cache = dns_run()
    (resolve,) = resolve_acks(run.send(ack(run.proxy)))
    carrier_records(cache, run.now)
    before = dropped("deadline")
    assert run.proxy.ack_resolved(resolve.ticket, run.now + 60) == []
    assert dropped("deadline") == before + 1


def test_a_flood_of_acks_to_cold_names_parks_a_bounded_number() -> None:
    """An attacker's ACKs, each to a name of its own: at most the limit wait; the others are
    dropped and counted, never queued."""
    run, _cache = dns_run()
    run.proxy._parked_acks = ParkedAcks(limit=3)
    before = dropped("parked_full")
    parked = []
    for n in range(5):
        actions = run.send(ack(run.proxy, f"flood-{n}", f"sip:gw@n{n}.flood.test"))
        parked.extend(resolve_acks(actions))
        assert sends(actions) == []
    assert len(parked) == 3
    assert dropped("parked_full") == before + 2


def test_dns_answers_that_keep_expiring_end_the_wait() -> None:
    """A cache emptied faster than it fills (TTLs at the floor, a huge zone): the ACK asks at
    most `MAX_DNS_ROUNDS` times, then is dropped."""
    run, _cache = dns_run()
    before = dropped("deadline")
    (resolve,) = resolve_acks(run.send(ack(run.proxy)))
    rounds = 1
    while True:
        asked = resolve_acks(run.proxy.ack_resolved(resolve.ticket, run.now))
        if not asked:
            break
        (resolve,) = asked
        rounds += 1
        assert rounds < 20
    assert rounds == 6
    assert dropped("deadline") == before + 1
