"""RFC 2782's order of SRV records: priorities strictly, weights as shares of the draws."""

from __future__ import annotations

import random
from collections import Counter

from shared.dns.records import Naptr, Srv, order_naptr, order_srv


def test_lower_priority_always_first_whatever_the_weights() -> None:
    records = (Srv(20, 1000, 5060, "backup."), Srv(10, 1, 5060, "main."))
    rng = random.Random(1)
    for _ in range(50):
        assert [r.target for r in order_srv(records, rng)] == ["main.", "backup."]


def test_weights_share_the_first_place_in_proportion() -> None:
    records = (Srv(10, 1, 5060, "a."), Srv(10, 3, 5060, "b."), Srv(20, 1, 5060, "c."))
    rng = random.Random(7)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(4000))
    assert abs(firsts["b."] / 4000 - 0.75) < 0.03
    assert firsts["c."] == 0


def test_every_record_appears_once() -> None:
    records = tuple(Srv(i % 2, i, 5060 + i, f"h{i}.") for i in range(6))
    ordered = order_srv(records, random.Random(3))
    assert sorted(r.port for r in ordered) == [r.port for r in records]


def test_weight_zero_goes_after_the_weighted_of_its_priority() -> None:
    records = (Srv(10, 0, 5060, "standby."), Srv(10, 5, 5060, "main."))
    for seed in range(20):
        assert order_srv(records, random.Random(seed))[0].target == "main."


def test_all_weights_zero_keep_the_given_order() -> None:
    records = (Srv(10, 0, 5060, "x."), Srv(10, 0, 5060, "y."))
    assert [r.target for r in order_srv(records, random.Random(0))] == ["x.", "y."]


def test_a_dot_target_means_no_service() -> None:
    assert order_srv((Srv(0, 0, 0, "."),), random.Random(0)) == []


def test_naptr_by_order_then_preference() -> None:
    records = (
        Naptr(20, 1, "s", "SIP+D2U", "_sip._udp.x."),
        Naptr(10, 50, "s", "SIP+D2T", "_sip._tcp.x."),
        Naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.x."),
    )
    assert [r.service for r in order_naptr(records)] == ["SIPS+D2T", "SIP+D2T", "SIP+D2U"]
