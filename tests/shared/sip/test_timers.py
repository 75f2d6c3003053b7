"""Timer values and the caller-driven timer queue."""

from __future__ import annotations

import random

import pytest

from shared.sip.timers import TimerQueue, TimerSettings


def test_rfc_defaults_and_derived_values() -> None:
    settings = TimerSettings()
    assert (settings.t1, settings.t2, settings.t4) == (0.5, 4.0, 5.0)
    assert settings.transaction_timeout == 32.0
    assert settings.timer_d(reliable=False) == 32.0
    assert settings.timer_d(reliable=True) == 0.0
    assert settings.timer_i_or_k(reliable=False) == 5.0
    assert settings.timer_i_or_k(reliable=True) == 0.0


def test_timer_d_is_at_least_32_seconds_even_with_a_small_t1() -> None:
    assert TimerSettings(t1=0.1, t2=0.4).timer_d(reliable=False) == 32.0
    assert TimerSettings(t1=1.0, t2=4.0).timer_d(reliable=False) == 64.0


@pytest.mark.parametrize("values", [{"t1": 0}, {"t1": 5.0, "t2": 4.0}, {"t4": -1}])
def test_nonsense_settings_are_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerSettings(**values)


def test_pop_due_returns_expired_items_in_deadline_order() -> None:
    queue: TimerQueue[str] = TimerQueue()
    queue.schedule(0.0, 3.0, "c")
    queue.schedule(0.0, 1.0, "a")
    queue.schedule(0.0, 2.0, "b")
    queue.schedule(1.0, 1.0, "b2")
    assert queue.next_deadline() == 1.0
    assert queue.pop_due(0.9) == []
    assert [item for _, item in queue.pop_due(2.0)] == ["a", "b", "b2"]
    assert len(queue) == 1
    assert queue.pop_due(10.0) == [(0, "c")]
    assert queue.next_deadline() is None


def test_timers_of_many_delays_fire_as_one_heap_would_order_them() -> None:
    """By deadline, then by when they were scheduled, whatever lane each is in; cancelled
    ones never; and one given a `now` earlier than the latest (the caller's clock went
    back) counted from the latest."""
    rng = random.Random(7)
    queue: TimerQueue[int] = TimerQueue()
    expected: dict[int, tuple[float, int]] = {}
    now = latest = 0.0
    for item in range(3000):
        now += rng.choice([0.0, 0.001, 0.25])
        if rng.random() < 0.02:
            now -= 1.0
        latest = max(latest, now)
        delay = rng.choice([0.5, 1.0, 2.0, 4.0, 5.0, 32.0, 180.0])
        timer = queue.schedule(now, delay, item)
        expected[timer] = (latest + delay, item)
        if rng.random() < 0.4:
            cancelled = rng.choice(list(expected))
            queue.cancel(cancelled)
            del expected[cancelled]
    assert len(queue) == len(expected)
    fired: list[tuple[float, int]] = []
    at = 0.0
    while (deadline := queue.next_deadline()) is not None:
        assert deadline == min(deadline for deadline, _ in expected.values())
        at = deadline + rng.choice([0.0, 0.3, 3.0])
        due = queue.pop_due(at)
        assert due
        for timer, item in due:
            assert expected[timer][1] == item
            fired.append((expected.pop(timer)[0], timer))
    assert not expected
    assert fired == sorted(fired)


def test_a_clock_gone_back_counts_as_the_latest_now_given() -> None:
    """The edge's `now` is each datagram's arrival, and its sockets' queues lag unevenly:
    a timer so scheduled is counted from the latest `now`, after the ones of its delay
    already there (appended to its lane: never inserted in the middle, which cost the edge
    ~6.5 % of its CPU at 2000 calls a second)."""
    queue: TimerQueue[str] = TimerQueue()
    queue.schedule(10.0, 1.0, "first")
    queue.schedule(10.0, 5.0, "other delay")
    gone_back = queue.schedule(4.0, 1.0, "gone back")
    assert queue.deadline(gone_back) == 11.0
    assert queue.next_deadline() == 11.0
    assert queue.pop_due(10.9) == []
    assert [item for _, item in queue.pop_due(20.0)] == ["first", "gone back", "other delay"]
    queue.schedule(30.0, 1.0, "forward again")
    assert queue.next_deadline() == 31.0


def test_cancelled_timers_never_fire_and_are_skipped_by_next_deadline() -> None:
    queue: TimerQueue[str] = TimerQueue()
    first = queue.schedule(0.0, 1.0, "a")
    queue.schedule(0.0, 2.0, "b")
    queue.cancel(first)
    queue.cancel(first)
    assert len(queue) == 1
    assert queue.next_deadline() == 2.0
    assert [item for _, item in queue.pop_due(5.0)] == ["b"]


def test_cancelling_a_fired_timer_is_harmless() -> None:
    queue: TimerQueue[str] = TimerQueue()
    timer = queue.schedule(0.0, 1.0, "a")
    assert queue.deadline(timer) == 1.0
    assert queue.pop_due(1.0) == [(timer, "a")]
    queue.cancel(timer)
    assert len(queue) == 0
    with pytest.raises(KeyError):
        queue.deadline(timer)


def test_mass_cancellation_compacts_the_lanes() -> None:
    queue: TimerQueue[int] = TimerQueue()
    timers = [queue.schedule(float(i), 32.0, i) for i in range(1000)]
    for timer in timers[:900]:
        queue.cancel(timer)
    assert len(queue) == 100
    assert queue._entries < 1000
    assert sum(len(lane) for lane in queue._lanes.values()) == queue._entries
    assert [item for _, item in queue.pop_due(2000.0)] == list(range(900, 1000))


@pytest.mark.parametrize("settings", [{"t4": 0.0}, {"timer_c": -1.0}])
def test_t4_and_timer_c_must_be_positive(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"^T4 and Timer C must be positive$"):
        TimerSettings(**settings)
