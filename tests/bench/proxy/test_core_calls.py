"""The proxy core's benchmark call (`bench.proxy.core_calls`), and what a call leaves behind."""

from __future__ import annotations

import gc
from collections import Counter

from bench.proxy.core_calls import CallDriver
from shared.sip.address import Address
from shared.sip.uri import SipUri
from shared.sip.values import CSeq
from shared.sip.via import Via

PARSED_HEADERS = (Via, Address, SipUri, CSeq)


def left_by_calls(driver: CallDriver, first: int, calls: int) -> Counter[str]:
    """The objects the cyclic collector tracks that `calls` more calls left, by type name."""
    gc.collect()
    before = {id(kept) for kept in gc.get_objects()}
    for n in range(first, first + calls):
        driver.call(n)
    gc.collect()
    return Counter(type(kept).__name__ for kept in gc.get_objects() if id(kept) not in before)


def test_a_finished_call_lingers_as_bytes_and_keys_not_parsed_headers() -> None:
    """For 32 s a call's transactions absorb retransmissions, and every collection walks what
    they hold: the requests' bytes, not their lines or parsed headers (a 2xx'd INVITE's
    once its events are out), and no dict (armed timers keyed by plain strings, which the
    collector does not track)."""
    driver = CallDriver()
    for n in range(20):
        driver.call(n)  # warm the memos
    left = left_by_calls(driver, 20, 50)
    names = {kind.__name__ for kind in PARSED_HEADERS} | {"dict"}
    assert {name: left[name] for name in names if left[name]} == {}
    # The four transactions' requests are held as their bytes: the BYE's two, done, and the
    # INVITE's two (the forwarding's is its server transaction's), answered.
    assert left["Request"] == 0
    assert left["list"] == 3 * 50  # the INVITE forwarding's own: hops, branches, finals
