"""``CALLMESH_RTPENGINE`` parsed, and each call's instances ranked the same way everywhere."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.rtpengine.instances import Instance, parse_instances, ranked
from shared.settings import Settings


def test_instances_are_parsed_with_optional_weights() -> None:
    parsed = parse_instances(" udp:10.0.0.5:2223=3, udp:[2001:db8::1]:2223 ,")
    assert parsed == (Instance("10.0.0.5", 2223, 3), Instance("2001:db8::1", 2223, 1))
    assert [instance.name for instance in parsed] == ["udp:10.0.0.5:2223", "udp:[2001:db8::1]:2223"]
    assert parse_instances("") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tcp:10.0.0.5:2223", "only udp"),
        ("10.0.0.5:2223", "only udp"),
        ("udp:10.0.0.5", "host:port"),
        ("udp:10.0.0.5:99999", "bad port"),
        ("udp:10.0.0.5:0", "expected"),
        ("udp::2223", "expected"),
        ("udp:10.0.0.5:2223=0", "expected"),
        ("udp:10.0.0.5:2223=1001", "expected"),
        ("udp:10.0.0.5:2223=x", "expected"),
        ("udp:10.0.0.5:2223,udp:10.0.0.5:2223=2", "twice"),
    ],
)
def test_a_bad_instance_list_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_instances(text)


def test_the_setting_is_checked_when_read() -> None:
    assert Settings(rtpengine="udp:127.0.0.1:2223").rtpengine == "udp:127.0.0.1:2223"
    with pytest.raises(ValueError, match="only udp"):
        Settings(rtpengine="tcp:127.0.0.1:2223")


FOUR = parse_instances("udp:10.0.0.1:2223,udp:10.0.0.2:2223,udp:10.0.0.3:2223,udp:10.0.0.4:2223")


def test_a_call_ranks_the_instances_the_same_whatever_their_listed_order() -> None:
    """Two edges configured in a different order (or restarted) pick the same instance."""
    for n in range(200):
        call_id = f"call-{n}@host"
        assert ranked(call_id, FOUR) == ranked(call_id, tuple(reversed(FOUR)))
        assert sorted(ranked(call_id, FOUR), key=FOUR.index) == list(FOUR)


def test_calls_spread_over_the_instances_by_weight() -> None:
    weighted = parse_instances("udp:10.0.0.1:2223=1,udp:10.0.0.2:2223=3")
    first = Counter(ranked(f"c{n}", weighted)[0].weight for n in range(4000))
    assert 0.2 < first[1] / 4000 < 0.3  # 1/4 expected
    evenly = Counter(ranked(f"c{n}", FOUR)[0] for n in range(4000))
    assert all(800 < count < 1200 for count in evenly.values())


def test_removing_an_instance_moves_only_the_calls_it_held() -> None:
    three = FOUR[:3]
    for n in range(1000):
        before = ranked(f"c{n}", FOUR)
        after = ranked(f"c{n}", three)
        assert after == [instance for instance in before if instance != FOUR[3]]
