"""Concurrent-call limits: idempotent leases keyed by Call-ID."""

from __future__ import annotations

from services.edge.protection import CallLimiter


def test_limit_refuses_the_call_over_it_and_a_release_frees_a_slot() -> None:
    limiter = CallLimiter(2)
    assert limiter.acquire("alice", "c1", 0.0)
    assert limiter.acquire("alice", "c2", 0.0)
    assert not limiter.acquire("alice", "c3", 0.0)
    assert limiter.acquire("bob", "c4", 0.0)  # other keys are independent
    assert limiter.release("alice", "c1")
    assert limiter.acquire("alice", "c3", 1.0)
    assert limiter.active("alice") == 2


def test_retransmissions_neither_take_nor_free_twice() -> None:
    limiter = CallLimiter(1)
    assert limiter.acquire("192.0.2.1", "c1", 0.0)
    assert limiter.acquire("192.0.2.1", "c1", 0.5)  # retransmitted INVITE
    assert limiter.active("192.0.2.1") == 1
    assert limiter.release("192.0.2.1", "c1")
    assert not limiter.release("192.0.2.1", "c1")  # retransmitted BYE
    assert limiter.active("192.0.2.1") == 0


def test_unlimited_counts_nothing() -> None:
    limiter = CallLimiter(0)
    assert all(limiter.acquire("alice", f"c{i}", 0.0) for i in range(100))
    assert limiter.active("alice") == 0


def test_leaked_leases_are_reaped_after_the_longest_call() -> None:
    limiter = CallLimiter(1, max_call_duration=3600.0)
    assert limiter.acquire("alice", "lost-bye", 0.0)
    assert not limiter.acquire("alice", "c2", 100.0)
    assert limiter.expire(3599.0) == 0
    assert limiter.expire(3601.0) == 1
    assert limiter.acquire("alice", "c2", 3601.0)
