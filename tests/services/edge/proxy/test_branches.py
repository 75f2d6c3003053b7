"""Our Via branches: unique across workers and restarts, each carrying its loop hash."""

from __future__ import annotations

from dataclasses import replace

from services.edge.proxy.branches import BranchMaker, hash_in_branch
from services.edge.proxy.core import Proxy
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.routing_table.model import Gateway, Rule
from shared.sip.branch import MAGIC_COOKIE
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import MemoryTable
from tests.services.edge.proxy.test_core import (
    EDGE,
    GW1,
    Run,
    Table,
    answer,
    invite,
    only_request,
    sent_to,
)

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


def test_a_failover_to_the_same_target_again_takes_a_new_branch() -> None:
    """Two gateways of a rule at one address (the same box entered twice): the second
    attempt goes where the first went, and its branch must not be the first one's, whose
    transaction still absorbs retransmissions."""
    table = MemoryTable(
        {"a": Gateway(address=f"sip:{GW1.host}"), "b": Gateway(address=f"sip:{GW1.host}")},
        {"r": Rule(prefix="1407", gateways=("a", "b"))},
    )
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    run = Run(Proxy(interfaces, NumberRouter(table)), Table())
    first = only_request(run.send(invite()), GW1)
    sent = [parse_message(data) for data in sent_to(run.send(answer(first, 503), GW1), GW1)]
    [second] = [m for m in sent if isinstance(m, Request) and m.method == "INVITE"]  # and an ACK
    assert second.uri_text == first.uri_text
    assert second.top_branch != first.top_branch
    assert hash_in_branch(second.top_branch) == hash_in_branch(first.top_branch)
