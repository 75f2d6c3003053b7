"""Our Via branches: unique across workers and restarts, each carrying its loop hash."""

from __future__ import annotations

from dataclasses import replace

from services.edge.proxy.branches import BranchMaker, hash_in_branch
from shared.sip.branch import MAGIC_COOKIE
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import invite

LOOP_HASH = "0123456789abcdef"


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


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


def test_a_request_forwarded_again_by_another_maker_leaves_with_the_same_branch() -> None:
    """The other box of a VIP pair, or this edge restarted: the next hop sees a
    retransmission, not a new request; a fork's targets and a new transaction differ."""
    received = parse_request(invite())
    to = Destination("udp", "192.0.2.1", 5060)
    first, second = BranchMaker(), BranchMaker()
    branch = first.forwarded(LOOP_HASH, received, "sip:1@192.0.2.1", to)
    assert second.forwarded(LOOP_HASH, received, "sip:1@192.0.2.1", to) == branch
    assert hash_in_branch(branch) == LOOP_HASH
    new_transaction = parse_request(invite(branch="z9hG4bKc2"))
    next_cseq = parse_request(invite().replace(b"1 INVITE", b"2 INVITE"))
    target = "sip:1@192.0.2.1"
    others = {
        second.forwarded(LOOP_HASH, received, "sip:2@192.0.2.1", to),  # another fork target
        second.forwarded(LOOP_HASH, received, target, replace(to, transport="tcp")),
        second.forwarded(LOOP_HASH, new_transaction, target, to),
        second.forwarded(LOOP_HASH, next_cseq, target, to),
    }
    assert branch not in others and len(others) == 4


def test_a_senders_branch_without_the_cookie_gets_a_branch_of_its_own_each_time() -> None:
    """An RFC 2543 sender's branch need not be unique: no function of it may be ours."""
    received = parse_request(invite(branch="1"))
    to = Destination("udp", "192.0.2.1", 5060)
    first, second = BranchMaker(), BranchMaker()
    made = {maker.forwarded(LOOP_HASH, received, "sip:1@x", to) for maker in (first, second)}
    assert len(made) == 2 and all(hash_in_branch(b) == LOOP_HASH for b in made)
