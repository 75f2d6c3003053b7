"""Route and Request-URI hosts given by name in the proxy core: RFC 3263 targets from the DNS
cache (a cold name waits for a `Resolve`), the name's next target after no answer or a 503,
never after another answer, and a 480 with the reason when the name does not resolve."""

from __future__ import annotations

from services.edge.proxy.core import Proxy
from shared.dns.cache import record_key
from tests.services.edge.proxy.test_core import (
    CALLER,
    answer,
    only_request,
    sent_to,
    signed,
    statuses,
)
from tests.services.edge.proxy.test_routes_dns import (
    BACKUP,
    FIRST,
    carrier_records,
    dns_run,
    resolves,
    rounds_until_given_up,
)


def bye(proxy: Proxy, uri: str = "sip:gw@carrier.test", route: str = "") -> bytes:
    """The caller's BYE along our signed Record-Route, then `route` if given."""
    routes = f"Route: {signed(proxy, 'call-9')}\r\n" + (f"Route: {route}\r\n" if route else "")
    return (
        f"BYE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKbye9\r\n"
        f"{routes}"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:b@example.com>;tag=gw\r\n"
        "Call-ID: call-9\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_an_in_dialog_request_to_a_cold_name_waits_for_dns_then_goes_to_its_srv_target() -> None:
    run, cache = dns_run()
    actions = run.send(bye(run.proxy))
    (resolve,) = resolves(actions)
    assert resolve.keys == (("carrier.test", "NAPTR"),)
    assert sent_to(actions, FIRST) == []
    carrier_records(cache, run.now)
    forwarded = only_request(run.proxy.resume(resolve.server, run.now), FIRST)
    assert forwarded.uri_text == "sip:gw@carrier.test"  # the name stays in the URI


def test_a_route_by_name_is_followed_to_its_srv_target() -> None:
    run, cache = dns_run()
    carrier_records(cache, run.now)
    actions = run.send(bye(run.proxy, "sip:gw@198.51.100.77", "<sip:carrier.test;lr>"))
    forwarded = only_request(actions, FIRST)
    assert forwarded.headers("route") == ["<sip:carrier.test;lr>"]


def test_silence_moves_to_the_names_next_target() -> None:
    run, cache = dns_run()
    carrier_records(cache, run.now)
    only_request(run.send(bye(run.proxy)), FIRST)
    backup = only_request(run.later(2.1), BACKUP)
    assert backup.method == "BYE"
    assert statuses(run.send(answer(backup, 200), BACKUP)) == [200]


def test_a_503_moves_on_but_another_answer_is_final() -> None:
    run, cache = dns_run()
    carrier_records(cache, run.now)
    first = only_request(run.send(bye(run.proxy)), FIRST)
    only_request(run.send(answer(first, 503), FIRST), BACKUP)
    run2, cache2 = dns_run()
    carrier_records(cache2, run2.now)
    first = only_request(run2.send(bye(run2.proxy)), FIRST)
    actions = run2.send(answer(first, 500), FIRST)
    assert sent_to(actions, BACKUP) == []
    assert statuses(actions) == [500]


def test_a_name_that_does_not_resolve_is_480_with_the_reason() -> None:
    run, cache = dns_run()
    cache.put(record_key("nowhere.test", "A"), (), None, run.now, "no such name")
    cache.put(record_key("nowhere.test", "AAAA"), (), None, run.now, "no such name")
    actions = run.send(bye(run.proxy, "sip:gw@nowhere.test:5080"))
    assert statuses(actions) == [480]
    [response] = sent_to(actions, CALLER)
    assert b"nowhere.test does not resolve" in response


def test_dns_answers_that_keep_expiring_end_the_wait_with_a_480_saying_so() -> None:
    """A cache emptied faster than it fills: the request waits for `MAX_DNS_ROUNDS` answers."""
    run, _cache = dns_run()
    rounds, actions = rounds_until_given_up(run, run.send(bye(run.proxy)))
    assert rounds == 6
    assert statuses(actions) == [480]
    [response] = sent_to(actions, CALLER)
    assert b"(DNS answers expire faster than they come)" in response
