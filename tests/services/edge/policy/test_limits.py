"""The edge's shared call limits through the sans-IO core: each new call's `Acquire`
answered by the real scripts (`shared.limits.store`) on the embedded store (fakeredis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.edge.policy import EdgePolicies, limit_settings
from services.edge.policy.call_limit_settings import CallLimitSettings
from services.edge.policy.callers import CallerProfiles
from services.edge.policy.guard import Guard
from services.edge.policy.limits import CallLeases
from services.edge.protection import ProtectionSettings
from services.edge.proxy.actions import Acquire, Action
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from shared.limits.model import Demand
from shared.limits.store import SharedLimits
from shared.routing_table.model import Carrier, CarrierMember, Gateway, Limits, Peer, Rule
from shared.settings import Settings
from shared.sip.errors import SipError
from shared.sip.message import Request, Response, parse_message
from shared.store.embedded import open_embedded
from tests.services.edge.policy.support import (
    EDGE,
    GW1,
    GW2,
    INSIDE,
    UDP_IN,
    Table,
    answer,
    invite,
    requests_to,
    responses_to,
)


class Limited:
    """The core, its policies and the shared limits; `send` runs the round trips too."""

    def __init__(
        self, limits: SharedLimits, settings: CallLimitSettings, dialogs: DialogGate | None = None
    ) -> None:
        self.table = Table()
        self.limits = limits
        self.leases = leases = CallLeases(settings, self.table)
        self.freed: list[tuple[str, tuple[str, ...], bool]] = []
        leases.on_free = lambda *freed: self.freed.append(freed)
        guard = Guard(ProtectionSettings(), "edge-test", lambda _: True)
        policies = EdgePolicies(self.table, guard, None, None, leases)
        router = NumberRouter(self.table, CallerProfiles("", self.table))
        interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
        self.proxy = Proxy(interfaces, router, ProxyTimers(), policies, dialogs=dialogs)
        self.now = 100.0

    async def send(self, data: bytes) -> list[Action]:
        actions = self.proxy.receive(data, INSIDE, UDP_IN, self.now)
        done: list[Action] = []
        while actions:
            action = actions.pop(0)
            if isinstance(action, Acquire):
                verdict = await self.limits.acquire(action.query)
                actions += self.proxy.limited(action.server, verdict, self.now)
            else:
                done.append(action)
        for call_id, entities, whole in self.freed:  # as the runtime frees them
            if entities:
                await self.limits.release(call_id, entities, whole=whole)
            else:
                await self.limits.release_call(call_id)
        self.freed.clear()
        return done


@pytest.fixture
async def limits(tmp_path: Path) -> AsyncIterator[SharedLimits]:
    store = await open_embedded(Settings(namespace="t", data_dir=str(tmp_path)))
    yield SharedLimits(store)
    await store.close()


def call(n: int) -> bytes:
    return (
        invite()
        .replace(b"z9hG4bKin1", f"z9hG4bKin1-{n}".encode())
        .replace(b"Call-ID: ", f"Call-ID: {n}-".encode())
    )


def refusal(actions: list[Action]) -> Response:
    [answer] = [r for r in responses_to(actions, INSIDE) if r.status >= 300]
    return answer


def peer(**limits: int) -> Peer:
    return Peer(addresses=(f"{INSIDE.host}/32",), trusted=True, limits=Limits(**limits))


async def test_a_peer_past_its_concurrent_calls_gets_486_until_a_call_ends(
    limits: SharedLimits,
) -> None:
    edge = Limited(limits, CallLimitSettings())
    edge.table.put("peer", "pbx", peer(max_concurrent=1))
    [first] = requests_to(await edge.send(call(1)), GW1)  # the positive control
    busy = refusal(await edge.send(call(2)))
    assert busy.status == 486
    assert busy.header("reason") == 'SIP;cause=486;text="concurrent call limit of peer:pbx"'
    assert (await limits.usage(["peer:pbx"]))[0].concurrent == 1
    # The gateway fails the first call: its lease is freed, a new call goes through.
    await edge.send(answer(first, 503))
    assert requests_to(await edge.send(call(3)), GW1)
    assert (await limits.usage(["peer:pbx"]))[0].concurrent == 1


async def test_a_cancelled_call_frees_its_slot_at_its_487(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings())
    edge.table.put("peer", "pbx", peer(max_concurrent=1))
    [first] = requests_to(await edge.send(call(1)), GW1)
    await edge.send(answer(first, 180))  # a CANCEL goes on once the branch has a provisional
    cancel = call(1).replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    assert [r.method for r in requests_to(await edge.send(cancel), GW1)] == ["CANCEL"]
    assert refusal(await edge.send(call(2))).status == 486  # held until the INVITE ends
    await edge.send(answer(first, 487))
    assert (await limits.usage(["peer:pbx"]))[0].concurrent == 0
    assert requests_to(await edge.send(call(3)), GW1)


async def test_the_concurrent_refusal_may_be_403(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings(concurrent_status=403))
    edge.table.put("peer", "pbx", peer(max_concurrent=0))
    assert refusal(await edge.send(call(1))).status == 403


async def test_past_its_cps_a_peer_gets_503_with_retry_after(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings())
    edge.table.put("peer", "pbx", peer(max_cps=1))
    assert requests_to(await edge.send(call(1)), GW1)
    refused = refusal(await edge.send(call(2)))
    assert (refused.status, refused.header("retry-after")) == (503, "1")
    assert "calls per second limit of peer:pbx" in (refused.header("reason") or "")


async def test_a_gateway_at_its_channel_cap_is_skipped_for_the_next(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings())
    capped = Limits(max_concurrent=1)
    edge.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", limits=capped))
    edge.table.put("gateway", "2", Gateway(address=f"sip:{GW2.host}", limits=capped))
    edge.table.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2")))
    assert requests_to(await edge.send(call(1)), GW1)
    second = await edge.send(call(2))
    assert (requests_to(second, GW1), len(requests_to(second, GW2))) == ([], 1)
    third = refusal(await edge.send(call(3)))
    assert third.status == 503
    assert "channel caps" in (third.header("reason") or "")


async def test_a_failover_takes_a_channel_at_the_next_capped_gateway(
    limits: SharedLimits,
) -> None:
    """Gateways 1 and 2, a channel each: a call failing over from 1 to 2 takes 2's channel
    and gives 1's back; the next call failing over finds 2 at its cap and skips it."""
    edge = Limited(limits, CallLimitSettings())
    capped = Limits(max_concurrent=1)
    edge.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", limits=capped))
    edge.table.put("gateway", "2", Gateway(address=f"sip:{GW2.host}", limits=capped))
    edge.table.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2")))
    [first] = requests_to(await edge.send(call(1)), GW1)
    assert len(requests_to(await edge.send(answer(first, 503)), GW2)) == 1  # failed over
    usage = await limits.usage(["gateway:1", "gateway:2"])
    assert [found.concurrent for found in usage] == [0, 1]
    [second] = requests_to(await edge.send(call(2)), GW1)
    failed = await edge.send(answer(second, 503))
    assert requests_to(failed, GW2) == []  # at its cap: skipped, like a busy gateway
    assert [r.status for r in responses_to(failed, INSIDE)] == [500]  # a 503 turns 500 (§16.7)
    assert [found.concurrent for found in await limits.usage(["gateway:1"])] == [0]


async def test_a_failover_from_an_uncapped_gateway_starts_the_calls_lease_then(
    limits: SharedLimits,
) -> None:
    """The call held nothing before: the channel it takes at 2 is held from the failover on,
    renewed, and freed once the call has lasted `max_call_duration` since."""
    settings = CallLimitSettings()
    edge = Limited(limits, settings)
    edge.table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}"))
    capped = Limits(max_concurrent=1)
    edge.table.put("gateway", "2", Gateway(address=f"sip:{GW2.host}", limits=capped))
    edge.table.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2")))
    [first] = requests_to(await edge.send(call(1)), GW1)
    assert edge.leases.held(edge.now) == []  # gateway 1 has no limits: nothing held
    edge.now += 5.0
    assert len(requests_to(await edge.send(answer(first, 503)), GW2)) == 1
    assert edge.leases.held(edge.now) == [(first.call_id, ("gateway:2",))]
    assert edge.leases.held(edge.now + settings.max_call_duration - 1.0) != []
    assert edge.leases.held(edge.now + settings.max_call_duration + 1.0) == []


async def test_a_call_without_limits_takes_no_round_trip(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings())
    actions = edge.proxy.receive(call(1), INSIDE, UDP_IN, edge.now)
    assert not [action for action in actions if isinstance(action, Acquire)]
    assert requests_to(actions, GW1)


def bye(call_id: str, route: str, branch: str) -> bytes:
    return (
        f"BYE sip:14075551234@{GW1.host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {INSIDE.host}:{INSIDE.port};branch={branch};rport\r\n"
        f"{route}"
        f"From: <sip:alice@10.0.0.5>;tag=a1\r\nTo: <sip:14075551234@{EDGE}>;tag=g1\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_a_forged_bye_does_not_free_a_callers_slot(limits: SharedLimits) -> None:
    """Only a BYE that passed the dialog check ends a call for the limits."""
    edge = Limited(limits, CallLimitSettings(per_source=1))
    [forwarded] = requests_to(await edge.send(call(1)), GW1)
    forged = bye(forwarded.call_id, "", "z9hG4bKbye1")  # the Call-ID, but no route of ours
    assert requests_to(await edge.send(forged), GW1) == []
    assert refusal(await edge.send(call(2))).status == 486  # still held
    ours = f"Route: {forwarded.headers('record-route')[0]}\r\n"
    genuine = bye(forwarded.call_id, ours, "z9hG4bKbye2")
    assert [r.method for r in requests_to(await edge.send(genuine), GW1)] == ["BYE"]
    assert [r.method for r in requests_to(await edge.send(call(3)), GW1)] == ["INVITE"]


async def test_a_bye_through_another_edge_frees_the_call(limits: SharedLimits) -> None:
    """Edge A admits the call; its BYE goes through edge B (the cluster's Record-Route key):
    B frees the lease by Call-ID, and A's renewal then forgets the call."""
    dialogs = DialogGate.closed()
    first, other = (Limited(limits, CallLimitSettings(), dialogs) for _ in range(2))
    for edge in (first, other):
        edge.table.put("peer", "pbx", peer(max_concurrent=1))
    [forwarded] = requests_to(await first.send(call(1)), GW1)
    assert refusal(await other.send(call(2))).status == 486  # the positive control
    route = f"Route: {forwarded.headers('record-route')[0]}\r\n"
    ended = bye(forwarded.call_id, route, "z9hG4bKbye1")
    assert [r.method for r in requests_to(await other.send(ended), GW1)] == ["BYE"]
    assert (await limits.usage(["peer:pbx"]))[0].concurrent == 0
    assert [r.method for r in requests_to(await other.send(call(3)), GW1)] == ["INVITE"]
    leases = first.leases
    held = leases.held(first.now)
    assert [call_id for call_id, _ in held] == [forwarded.call_id]
    leases.forget(await limits.renew(held))
    assert leases.held(first.now) == []


async def test_a_destination_prefixs_rule_limits_its_calls_only(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings())
    prefix = Rule(prefix="1407", gateways=("1",), limits=Limits(max_concurrent=1))
    edge.table.put("rule", "r1407", prefix)
    assert requests_to(await edge.send(call(1)), GW1)
    busy = refusal(await edge.send(call(2)))
    assert busy.header("reason") == 'SIP;cause=486;text="concurrent call limit of rule:r1407"'
    other = invite("19005551234").replace(b"Call-ID: ", b"Call-ID: other-")
    assert requests_to(await edge.send(other), GW1)  # 1900 is another prefix's rule


async def test_a_carrier_at_its_cap_has_its_gateways_skipped(limits: SharedLimits) -> None:
    """Carrier c holds gateway 1 (no cap of its own) with a cap of 1: the second call skips
    gateway 1 for gateway 2, outside the carrier; the third finds every gateway capped."""
    edge = Limited(limits, CallLimitSettings())
    carrier = Carrier(gateways=(CarrierMember(id="1"),), limits=Limits(max_concurrent=1))
    edge.table.put("carrier", "c", carrier)
    edge.table.put("rule", "r1407", Rule(prefix="1407", gateways=("#c", "2")))
    assert requests_to(await edge.send(call(1)), GW1)
    second = await edge.send(call(2))
    assert (requests_to(second, GW1), len(requests_to(second, GW2))) == ([], 1)
    assert (await limits.usage(["carrier:c"]))[0].concurrent == 1


async def test_a_subscribers_calls_per_second_are_limited_with_its_calls_at_once() -> None:
    """``CALLMESH_CALL_LIMIT_PER_SUBSCRIBER_CPS`` beside ``_PER_SUBSCRIBER``: one demand of
    the subscriber holds both, the bucket a tenth of the rate (at least 1)."""
    settings = limit_settings(
        Settings(call_limit_per_subscriber=3, call_limit_per_subscriber_cps=20)
    )
    leases = CallLeases(settings, Table())
    request = parse_message(call(1))
    assert isinstance(request, Request)
    query = leases.query(request, INSIDE, None, [], 0.0)
    assert query is not None
    assert query.demands == (Demand("subscriber:alice@10.0.0.5", 3, 20, 2),)


async def test_past_its_cps_a_subscriber_gets_503_with_retry_after(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings(per_subscriber_cps=1))
    assert requests_to(await edge.send(call(1)), GW1)  # the positive control
    refused = refusal(await edge.send(call(2)))
    assert (refused.status, refused.header("retry-after")) == (503, "1")
    reason = refused.header("reason") or ""
    assert "calls per second limit of subscriber:alice@10.0.0.5" in reason
    assert (await limits.usage(["subscriber:alice@10.0.0.5"]))[0].concurrent == 0  # no lease


async def test_a_strangers_source_is_limited_and_a_peers_is_not(limits: SharedLimits) -> None:
    edge = Limited(limits, CallLimitSettings(per_source_cps=1))
    assert requests_to(await edge.send(call(1)), GW1)
    refused = refusal(await edge.send(call(2)))
    assert f"calls per second limit of source:{INSIDE.host}" in (refused.header("reason") or "")
    edge.table.put("peer", "pbx", peer())  # the same address, now a peer's: its own limits
    assert requests_to(await edge.send(call(3)), GW1)


async def offer(
    limits: SharedLimits, workers: list[CallLeases], per_second: int, seconds: int, start: int = 0
) -> tuple[list[int], int]:
    """``per_second`` new calls from peer pbx spread evenly over time and round robin over
    ``workers`` (edge workers of the cluster), the store's and edges' clocks in step:
    (calls admitted in each second, round trips to the store)."""
    admitted, trips = [0] * seconds, 0
    for n in range(per_second * seconds):
        now = start + n / per_second
        leases = workers[n % len(workers)]
        request = parse_message(call(n))
        assert isinstance(request, Request)
        query = leases.query(request, INSIDE, "pbx", [], now)
        if query is not None:
            trips += 1
            verdict = await limits.acquire(query, now_ms=int(now * 1000))
            try:
                leases.apply(query, verdict, [], now)
            except SipError:
                continue
        admitted[int(now) - start] += 1
    return admitted, trips


async def test_a_local_allowance_saves_round_trips_within_its_documented_error(
    limits: SharedLimits,
) -> None:
    """``max_cps`` 50 taken 5 tokens at a time by 4 workers (W * (A - 1) = 16 tokens held
    ahead at most): under the limit (40 offered per second) one call in 5 asks the store,
    and once the workers hold their allowances no call is refused; at 200 offered each
    second admits 50 within the bound of docs/limits.md: burst + A - 1 + 16 = 25 over,
    16 under."""
    table = Table()
    rated = Limits(max_cps=50, cps_allowance=5)
    table.put("peer", "pbx", Peer(addresses=(f"{INSIDE.host}/32",), limits=rated))
    workers = [CallLeases(CallLimitSettings(), table) for _ in range(4)]
    under, trips = await offer(limits, workers, 40, 5)
    assert under[0] >= 40 - 16  # at first, a worker may find the bucket in another's debt
    assert under[1:] == [40] * 4, under
    assert trips <= 200 / 5 + 8, trips  # one call in five asks, and the first ones refused
    over, _ = await offer(limits, workers, 200, 5, start=5)
    assert all(50 - 16 <= count <= 50 + 25 for count in over), over
    assert 250 - 16 <= sum(over) <= 250 + 25  # over the 5 s, within the same bound
