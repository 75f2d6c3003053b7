"""Our Via branches: unique across workers and restarts, each carrying its loop hash."""

from __future__ import annotations

from services.edge.proxy.branches import BranchMaker, hash_in_branch
from shared.sip.branch import MAGIC_COOKIE

LOOP_HASH = "0123456789abcdef"


def test_two_makers_never_make_the_same_branch() -> None:
    """Two workers (or a worker before and after a restart) count from the same start:
    only their random stems keep a transaction of one from matching the other's."""
    first, second = BranchMaker(), BranchMaker()
    made = [maker.new(LOOP_HASH) for maker in (first, second) for _ in range(3)]
    assert len(set(made)) == len(made)
    assert all(branch.startswith(MAGIC_COOKIE) for branch in made)


def test_the_loop_hash_is_read_back_from_our_branches_only() -> None:
    assert hash_in_branch(BranchMaker().new(LOOP_HASH)) == LOOP_HASH
    assert hash_in_branch(f"{MAGIC_COOKIE}{LOOP_HASH}") is None  # someone else's
    assert hash_in_branch(None) is None
