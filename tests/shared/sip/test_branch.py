"""Branch, tag and Call-ID generation."""

from __future__ import annotations

from shared.sip.branch import (
    MAGIC_COOKIE,
    is_rfc3261_branch,
    new_branch,
    new_call_id,
    new_tag,
)


def test_new_branches_carry_the_cookie_and_are_unique() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith(MAGIC_COOKIE) and len(b) == 7 + 24 for b in branches)


def test_rfc3261_branch_detection() -> None:
    assert is_rfc3261_branch("z9hG4bK776asdhds")
    assert not is_rfc3261_branch("z9hG4bK")
    assert is_rfc3261_branch("z9hG4bK1")  # the cookie and one character are enough
    assert not is_rfc3261_branch("776asdhds")
    assert not is_rfc3261_branch(None)


def test_tags_and_call_ids() -> None:
    assert len({new_tag() for _ in range(1000)}) == 1000
    assert new_call_id("edge.example.com").endswith("@edge.example.com")
    assert "@" not in new_call_id()
