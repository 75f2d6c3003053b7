"""A subscriber's binding whose Path host is a name: RFC 3263 (NAPTR, SRV, A/AAAA) from the DNS
cache, not its first A record; its SRV targets one after another, never forked in parallel."""

from __future__ import annotations

import random

import pytest

from services.edge.location import BindingsQuery, Directory, DomainQuery
from services.edge.proxy.actions import Resolve
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.flows import FlowTokens
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.proxy.subscribers import Subscribers
from shared.dns import DnsCache, Names
from shared.registrar.model import Location
from shared.sip.auth.nonces import NonceKeeper
from tests.services.edge.proxy.test_core import EDGE, Table, answer, only_request, sent_to
from tests.services.edge.proxy.test_routes_dns import BACKUP, FIRST, carrier_records
from tests.services.edge.proxy.test_subscribers import (
    BOB,
    CARRIER,
    DOMAIN,
    PHONE,
    Run,
    binding,
    call,
)

BEHIND_SBC = "sip:bob@10.9.9.9:5060"


def behind_sbc(q: float | None) -> Location:
    """A phone registered through an SBC that added `Path: <sip:carrier.test;lr>` (RFC 3327)."""
    return Location(
        aor=BOB,
        contact=BEHIND_SBC,
        expires_at=10_000.0,
        q=q,
        received=BEHIND_SBC,
        transport="udp",
        edge="edge-a",
        path=("<sip:carrier.test;lr>",),
    )


def dns_run(*bindings: Location) -> tuple[Run, DnsCache]:
    cache = DnsCache()
    directory = Directory()
    secret = b"deployment-secret"
    subscribers = Subscribers(
        directory, FlowTokens(secret), NonceKeeper(secret, 300), lambda s: s == CARRIER
    )
    proxy = Proxy(
        Interfaces([Interface("udp", EDGE, 5060, 5060)]),
        NumberRouter(Table(), names=Names(cache, rng=random.Random(0), hold=30)),
        ProxyTimers(fr=2.0, fr_inv=10.0),
        subscribers=subscribers,
        dialogs=DialogGate(RecordRouteSigner.ephemeral(), subscribers.trusted),
    )
    directory.learn(DomainQuery(DOMAIN), True, 0.0)
    directory.learn(BindingsQuery(BOB), bindings, 0.0)
    return Run(proxy, directory), cache


def test_a_path_by_name_waits_for_dns_then_goes_to_its_first_srv_target() -> None:
    run, cache = dns_run(behind_sbc(None))
    actions = run.send(call())
    [resolve] = [action for action in actions if isinstance(action, Resolve)]
    assert resolve.keys == (("carrier.test", "NAPTR"),)
    carrier_records(cache, run.now)
    invite = only_request(run.proxy.resume(resolve.server, run.now), FIRST)
    assert invite.uri_text == BEHIND_SBC  # the contact stays the Request-URI
    assert invite.headers("route") == ["<sip:carrier.test;lr>"]


def test_a_503_from_the_first_sbc_moves_to_the_next_one_not_both_at_once() -> None:
    run, cache = dns_run(behind_sbc(1.0))
    carrier_records(cache, run.now)
    actions = run.send(call())
    first = only_request(actions, FIRST)
    assert sent_to(actions, BACKUP) == []  # one SBC at a time: the phone rings once
    backup = only_request(run.send(answer(first, 503), FIRST), BACKUP)
    assert backup.uri_text == BEHIND_SBC


@pytest.mark.parametrize("sbc_first", [True, False])
def test_in_a_parallel_fork_a_path_by_name_is_one_branch_to_its_first_target(
    sbc_first: bool,
) -> None:
    pair = (behind_sbc(1.0), binding(PHONE, 1.0))
    run, cache = dns_run(*(pair if sbc_first else pair[::-1]))
    carrier_records(cache, run.now)
    actions = run.send(call())
    assert only_request(actions, FIRST).uri_text == BEHIND_SBC
    assert only_request(actions, PHONE).method == "INVITE"
    assert sent_to(actions, BACKUP) == []


def test_a_lower_q_path_by_name_waits_for_no_dns_before_the_first_contact_rings() -> None:
    """Only the group being sent is resolved: a later q's name is asked for when its turn comes."""
    run, _cache = dns_run(binding(PHONE, 1.0), behind_sbc(0.5))
    actions = run.send(call())
    assert only_request(actions, PHONE).method == "INVITE"
    assert [action for action in actions if isinstance(action, Resolve)] == []
