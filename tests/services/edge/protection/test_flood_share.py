"""Pike counting with the cluster, sans-IO: the batches a worker hands over, when it hurries
one, and how the cluster's answer (windows, blocks) changes its verdicts."""

from __future__ import annotations

from services.edge.protection import AddressAcl, FloodDetector, FloodSettings, FloodVerdict

SETTINGS = FloodSettings(limit=32, period=10.0, block_time=60.0)
FLOODER, OTHER = "192.0.2.66", "192.0.2.10"


def sharing() -> tuple[FloodDetector, list[int]]:
    """A detector sharing its counts, and a record of each time it asked for a batch now."""
    pike = FloodDetector(SETTINGS)
    pike.share(interval=0.1)
    hurried: list[int] = []
    pike.on_due = lambda: hurried.append(1)
    return pike, hurried


def test_a_batch_takes_the_counts_since_the_last_one() -> None:
    pike, _ = sharing()
    for _ in range(3):
        pike.check(FLOODER, 0.0)
    pike.check(OTHER, 0.0)
    assert pike.batch() == {FLOODER: 3, OTHER: 1}
    assert pike.batch() == {}
    pike.check(OTHER, 0.05)
    assert pike.batch() == {OTHER: 1}


def test_a_source_hurries_a_batch_after_a_sixteenth_of_the_limit() -> None:
    pike, hurried = sharing()
    pike.check(FLOODER, 0.0)
    assert not hurried  # one request: the interval's batch will do
    pike.check(FLOODER, 0.0)
    assert hurried  # 32 / 16 = 2 unsent: the cluster hears of it now
    pike.batch()
    hurried.clear()
    pike.check(FLOODER, 0.01)
    assert not hurried  # one unsent again


def test_the_cluster_count_blocks_a_source_no_worker_saw_past_the_limit() -> None:
    """Three other workers sent 30 between them: this worker's third request passes 32."""
    pike, _ = sharing()
    pike.check(FLOODER, 0.0)
    pike.apply({FLOODER: (0, 30 + 1, 0.0)}, {}, 0.01)  # the cluster: its 30 and our one
    pike.batch()
    assert pike.check(FLOODER, 0.02) == FloodVerdict.ALLOW  # 32: at the limit, not past it
    assert pike.check(FLOODER, 0.03) == FloodVerdict.BLOCKED
    assert pike.check(FLOODER, 0.04) == FloodVerdict.DROP


def test_a_block_decided_by_another_worker_drops_the_source_here_at_once() -> None:
    pike, _ = sharing()
    pike.apply({}, {FLOODER: 30.0}, 1.0)
    assert pike.check(FLOODER, 1.5) == FloodVerdict.DROP
    assert pike.check(OTHER, 1.5) == FloodVerdict.ALLOW
    assert pike.check(FLOODER, 31.5) == FloodVerdict.ALLOW  # its time served


def test_the_clusters_window_decays_on_this_clock() -> None:
    """Last period's 40 requests weigh less as the period goes on: no block at the end of it."""
    pike, _ = sharing()
    pike.check(FLOODER, 0.0)
    pike.apply({FLOODER: (40, 0, 0.0)}, {}, 0.0)  # 40 last period, the new one just began
    pike.batch()
    assert pike.check(FLOODER, 0.01) == FloodVerdict.BLOCKED  # 40 * 0.999 + ...: past 32
    quiet, _ = sharing()
    quiet.check(FLOODER, 0.0)
    quiet.apply({FLOODER: (40, 0, 9.0)}, {}, 0.0)  # 9 s into the period: 40 * 0.1 = 4
    quiet.batch()
    assert quiet.check(FLOODER, 0.01) == FloodVerdict.ALLOW


def test_the_worker_whose_batch_started_the_clusters_block_announces_it_once() -> None:
    """No worker's view passed the limit, the cluster's did: the block is announced (one event)
    by the worker whose batch began it, at its next request; the others just drop."""
    starter, other = sharing()[0], sharing()[0]
    for pike in (starter, other):
        pike.check(FLOODER, 0.0)
        pike.batch()
    starter.apply({FLOODER: (0, 40, 0.0)}, {FLOODER: 60.0}, 0.01, started=[FLOODER])
    other.apply({}, {FLOODER: 60.0}, 0.01)
    assert starter.check(FLOODER, 0.02) == FloodVerdict.BLOCKED
    assert starter.rate(FLOODER, 0.02) >= 40  # the event's figure is the cluster's
    assert starter.check(FLOODER, 0.03) == FloodVerdict.DROP
    assert other.check(FLOODER, 0.02) == FloodVerdict.DROP


def test_a_block_this_worker_announced_already_is_not_announced_again() -> None:
    pike, _ = sharing()
    verdicts = [pike.check(FLOODER, 0.0) for _ in range(33)]
    assert verdicts[-1] == FloodVerdict.BLOCKED
    pike.apply({FLOODER: (0, 33, 0.0)}, {FLOODER: 60.0}, 0.01, started=[FLOODER])
    assert pike.check(FLOODER, 0.02) == FloodVerdict.DROP


def test_a_view_older_than_two_intervals_is_not_used() -> None:
    """A worker whose Redis went away does not block on what the cluster said long ago."""
    pike, _ = sharing()
    pike.check(FLOODER, 0.0)
    pike.apply({FLOODER: (0, 31, 0.0)}, {}, 0.0)
    pike.batch()
    assert pike.check(FLOODER, 0.5) == FloodVerdict.ALLOW  # 0.5 s later: only its own 2 count


def test_redis_away_leaves_the_local_count_in_charge() -> None:
    pike, _ = sharing()
    for _ in range(5):
        pike.check(FLOODER, 0.0)
    pike.apply({FLOODER: (0, 30, 0.0)}, {}, 0.0)
    pike.forget_cluster(pike.batch())  # the exchange failed
    verdicts = [pike.check(FLOODER, 0.01) for _ in range(32)]
    assert verdicts[:27] == [FloodVerdict.ALLOW] * 27  # 5 + 27 = 32 of its own
    assert verdicts[27] == FloodVerdict.BLOCKED


def test_a_blocked_source_does_not_hurry_batches() -> None:
    pike, hurried = sharing()
    pike.apply({}, {FLOODER: 30.0}, 0.0)
    for _ in range(100):
        pike.check(FLOODER, 0.01)
    assert not hurried
    assert pike.batch() == {FLOODER: 100}  # still counted: the block goes on while it floods


def test_a_cleared_source_leaves_the_batch() -> None:
    pike, _ = sharing()
    pike.check(FLOODER, 0.0)
    pike.clear(FLOODER)
    assert pike.batch() == {}


def test_an_allow_listed_source_is_neither_sent_nor_blocked_by_the_cluster() -> None:
    pike, _ = sharing()
    pike.check(FLOODER, 0.0)
    pike.set_allowlist(AddressAcl.parse(f"{FLOODER}/32"))
    assert pike.batch() == {}
    pike.apply({}, {FLOODER: 30.0}, 0.1)  # a worker that counted it before its allow-list
    assert pike.check(FLOODER, 0.2) == FloodVerdict.ALLOW


def test_a_spoofed_churn_past_the_batch_size_is_counted_locally() -> None:
    pike, _ = sharing()
    for n in range(1200):
        pike.check(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(pike.batch()) == 1000
    assert pike.tracked == 1200


def test_not_sharing_never_batches() -> None:
    pike = FloodDetector(SETTINGS)
    pike.check(FLOODER, 0.0)
    assert pike.batch() == {}
