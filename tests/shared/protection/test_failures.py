"""Failed-authentication thresholds, the blocks' in-memory copy and the log line (sans-IO)."""

from __future__ import annotations

import logging

import pytest

from shared.protection import AuthFailureSettings, BlockList, FailureCounts, log_auth_failure
from shared.protection.blocklist import MAX_BLOCKS

SETTINGS = AuthFailureSettings(delay_after=3, delay=1.5, block_after=5)


@pytest.mark.parametrize(
    ("account", "source", "delay"), [(1, 1, 0.0), (2, 2, 0.0), (3, 1, 1.5), (1, 3, 1.5)]
)
def test_failures_past_the_first_threshold_are_delayed(
    account: int, source: int, delay: float
) -> None:
    assert FailureCounts(account, source).delay(SETTINGS) == delay


def test_a_block_refuses_its_account_or_source_until_it_ends() -> None:
    blocks = BlockList()
    assert not blocks.refuses("alice@example.com", "192.0.2.1", 0.0)
    blocks.add("account", "alice@example.com", 100.0)
    blocks.add("source", "192.0.2.66", 50.0)
    assert blocks.refuses("alice@example.com", "192.0.2.1", 99.0)
    assert blocks.refuses("bob@example.com", "192.0.2.66", 49.0)
    assert not blocks.refuses("bob@example.com", "192.0.2.1", 49.0)
    assert not blocks.refuses("bob@example.com", "192.0.2.66", 50.0)  # over, and forgotten
    assert len(blocks) == 1
    assert blocks.remove("account", "alice@example.com")
    assert not blocks.refuses("alice@example.com", "192.0.2.1", 1.0)


def test_the_block_list_is_bounded() -> None:
    blocks = BlockList()
    blocks.replace({("source", str(n)): 10.0 for n in range(MAX_BLOCKS)})
    blocks.add("account", "newest@example.com", 10.0)
    assert len(blocks) == MAX_BLOCKS
    assert blocks.blocks("account", "newest@example.com", 0.0)
    assert not blocks.blocks("source", "0", 0.0)  # the oldest made room
    blocks.prune(10.0)
    assert len(blocks) == 0


def test_the_log_line_is_stable_and_a_hostile_user_cannot_forge_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "callmesh.auth"):
        log_auth_failure("192.0.2.7", "alice", "example.com", "REGISTER", "wrong-credentials")
        log_auth_failure("192.0.2.8", "x source=6.6.6.6\nline", "", "INVITE", "blocked")
    assert [record.getMessage() for record in caplog.records] == [
        "auth failed: source=192.0.2.7 user=alice realm=example.com method=REGISTER "
        "reason=wrong-credentials",
        "auth failed: source=192.0.2.8 user=x?source=6.6.6.6?line realm=- method=INVITE "
        "reason=blocked",
    ]
