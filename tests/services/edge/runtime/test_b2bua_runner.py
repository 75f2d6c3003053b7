"""The proxy hands a b2bua rule's calls to the worker's B2BUA, and only those (sans-IO)."""

from __future__ import annotations

import zlib
from pathlib import Path

from services.edge.destinations import ActiveCalls, DispatchSets, SetSelector
from services.edge.proxy.actions import Action, HandOff, Send
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.runtime.affinity import WorkerGroup
from services.edge.runtime.b2bua_call_ids import owned_call_ids
from services.edge.runtime.b2bua_runner import LINGER, B2buaRunner
from shared.dispatcher import DispatcherSet
from shared.routing_table.model import Gateway, Rule
from shared.routing_table.modes import carried_by_b2bua
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import (
    CALLER,
    EDGE,
    GW1,
    GW2,
    TRUSTED,
    UDP_IN,
    Table,
    answer,
    invite,
    signed,
)


def b2bua_proxy(*, runner: bool = True) -> tuple[Proxy, B2buaRunner | None]:
    """The core tests' table (44 → gateway 2) with rule r44 in b2bua mode."""
    table = Table()
    table.put("rule", "r44", Rule(prefix="44", gateways=("2",), mode="b2bua"))
    router = NumberRouter(
        table, b2bua=lambda hop: carried_by_b2bua(table.index, hop.rule_id, hop.gateway_id)
    )
    dialogs = DialogGate(RecordRouteSigner.ephemeral(), lambda source: source.host in TRUSTED)
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    timers = ProxyTimers(fr=2.0, fr_inv=10.0)
    proxy = Proxy(interfaces, router, timers, dialogs=dialogs)
    return proxy, B2buaRunner(proxy) if runner else None


def through(
    proxy: Proxy, runner: B2buaRunner, data: bytes, source: Destination, now: float
) -> list[Send]:
    """`data` into the proxy as the driver feeds it, hand-offs run by `runner`."""
    sends: list[Send] = []
    for action in proxy.receive(data, source, UDP_IN, now):
        if isinstance(action, HandOff):
            sends += [s for s in runner.hand_off(action, now) if isinstance(s, Send)]
        elif isinstance(action, Send):
            sends.append(action)
    return sends


def parsed(sends: list[Send] | list[Action], destination: Destination) -> list[Request | Response]:
    return [
        parse_message(s.data) for s in sends if isinstance(s, Send) and s.destination == destination
    ]


def test_a_b2bua_rules_invite_goes_out_as_a_new_call_and_its_bye_ends_both_legs() -> None:
    proxy, runner = b2bua_proxy()
    assert runner is not None
    sends = through(proxy, runner, invite(f"sip:4420@{EDGE}"), CALLER, 100.0)
    [out] = parsed(sends, GW2)
    assert isinstance(out, Request) and out.method == "INVITE"
    assert out.call_id != "call-1" and "10.0.0.5" not in out.to_bytes().decode()
    assert set(runner.calls) == {"call-1", out.call_id}
    ok = through(proxy, runner, answer(out, 200), GW2, 100.1)  # leg B's Call-ID: the engine's
    [to_caller] = [m for m in parsed(ok, CALLER) if isinstance(m, Response) and m.status == 200]
    tag = to_caller.to_tag
    bye = (
        f"BYE sip:{EDGE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKb1\r\n"
        f"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:4420@example.com>;tag={tag}\r\n"
        "Call-ID: call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    ended = through(proxy, runner, bye, CALLER, 101.0)
    assert [m.status for m in parsed(ended, CALLER) if isinstance(m, Response)] == [200]
    [bye_out] = parsed(ended, GW2)
    assert isinstance(bye_out, Request) and bye_out.method == "BYE"
    assert bye_out.call_id == out.call_id
    assert runner.next_deadline() is not None
    runner.expire(101.0 + LINGER + 1)  # retransmissions' time over: the Call-IDs let go
    assert runner.calls == {}


def test_a_proxy_rules_invite_and_a_b2bua_rules_without_a_runner_are_proxied() -> None:
    proxy, runner = b2bua_proxy()
    assert runner is not None
    sends = through(proxy, runner, invite(f"sip:14075551234@{EDGE}"), CALLER, 100.0)
    assert not runner.calls
    assert any(b"Call-ID: call-1" in s.data for s in sends if s.destination != CALLER)
    bare, _ = b2bua_proxy(runner=False)
    actions = bare.receive(invite(f"sip:4420@{EDGE}"), CALLER, UDP_IN, 100.0)
    assert not [a for a in actions if isinstance(a, HandOff)]
    [forwarded] = parsed(actions, GW2)
    assert forwarded.call_id == "call-1"


def test_a_dispatcher_sets_mode_decides_for_its_destinations() -> None:
    """A set with `mode: b2bua` hands its calls over; one without is proxied, even under a
    rule in b2bua mode (the rule's mode is the gateways' default, not the sets')."""
    table = Table()
    table.put("rule", "r45", Rule(prefix="45", gateways=("@farm",)))
    table.put("rule", "r46", Rule(prefix="46", gateways=("@plain",), mode="b2bua"))
    sets = DispatchSets()
    farm = {"destinations": [{"uri": f"sip:{GW2.host}:5060"}], "mode": "b2bua"}
    sets.put("farm", DispatcherSet.model_validate(farm))
    sets.put("plain", DispatcherSet.model_validate({"destinations": [{"uri": f"sip:{GW1.host}"}]}))
    router = NumberRouter(
        table,
        sets=SetSelector(sets, ActiveCalls()),
        b2bua=lambda hop: carried_by_b2bua(
            table.index, hop.rule_id, hop.gateway_id, sets.mode(hop.set_id)
        ),
    )
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    proxy = Proxy(interfaces, router, ProxyTimers(fr=2.0, fr_inv=10.0))
    runner = B2buaRunner(proxy)
    [out] = parsed(through(proxy, runner, invite(f"sip:4520@{EDGE}"), CALLER, 100.0), GW2)
    assert isinstance(out, Request) and out.method == "INVITE" and out.call_id != "call-1"
    assert set(runner.calls) == {"call-1", out.call_id}
    again = invite(f"sip:4620@{EDGE}").replace(b"call-1", b"call-2")
    [proxied] = parsed(through(proxy, runner, again, CALLER, 100.0), GW1)
    assert proxied.call_id == "call-2" and "call-2" not in runner.calls


def test_leg_bowned_call_ids_hash_to_the_worker_holding_the_pair(tmp_path: Path) -> None:
    for index in range(3):
        make = owned_call_ids(WorkerGroup(index, 3, tmp_path))
        assert {zlib.crc32(make().encode()) % 3 for _ in range(20)} == {index}


def test_an_in_dialog_request_naming_a_pairs_tag_elsewhere_is_handed_over_to_adopt() -> None:
    """Pairs shared (a writer sets `b2bua_tags`): a request naming a pair tag that no Call-ID
    here claims, with no signed route of ours, may be another edge's pair; with a signed
    route it is a proxied dialog's, whatever its tag."""
    proxy, _runner = b2bua_proxy()
    bye = (
        f"BYE sip:{EDGE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKb2\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:4420@example.com>;tag=cmb2b77\r\n"
        "Call-ID: elsewhere\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n{route}Content-Length: 0\r\n\r\n"
    )
    plain = bye.format(route="").encode()
    assert not [a for a in proxy.receive(plain, CALLER, UDP_IN, 100.0) if isinstance(a, HandOff)]
    proxy.b2bua_tags = "cmb2b"
    [handed] = [a for a in proxy.receive(plain, CALLER, UDP_IN, 100.0) if isinstance(a, HandOff)]
    assert handed.adopt and b"Call-ID: elsewhere" in handed.data
    route = f"Route: {signed(proxy, 'elsewhere')}\r\n"
    routed = bye.format(route=route).encode()
    assert not [a for a in proxy.receive(routed, CALLER, UDP_IN, 100.0) if isinstance(a, HandOff)]


def test_the_first_gateways_own_mode_wins_over_its_rules() -> None:
    proxy, runner = b2bua_proxy()
    assert runner is not None
    table = Table()
    table.put("gateway", "2", Gateway(address=f"sip:{GW2.host}:5060", mode="proxy"))
    table.put("gateway", "1", Gateway(address=f"sip:{GW1.host}", prefix="00", mode="b2bua"))
    table.put("rule", "r44", Rule(prefix="44", gateways=("2",), mode="b2bua"))
    proxy.router = NumberRouter(
        table, b2bua=lambda hop: carried_by_b2bua(table.index, hop.rule_id, hop.gateway_id)
    )
    proxied = through(proxy, runner, invite(f"sip:4420@{EDGE}"), CALLER, 100.0)
    assert [m.call_id for m in parsed(proxied, GW2)] == ["call-1"]
    assert not runner.calls
    second = invite(f"sip:14075551234@{EDGE}", branch="z9hG4bKc2").replace(b"call-1", b"call-2")
    handed = through(proxy, runner, second, CALLER, 100.0)
    [out] = parsed(handed, GW1)
    assert out.call_id != "call-2" and set(runner.calls) == {"call-2", out.call_id}


def test_a_refused_b2bua_call_frees_its_limit_slots_at_once() -> None:
    """As a proxied call's final answer would: not when its Call-IDs are let go, 32 s later."""
    proxy, runner = b2bua_proxy()
    assert runner is not None
    ended: list[str] = []
    runner.call_ended = ended.append  # the policies' (compiled: not to be subclassed here)
    [out] = parsed(through(proxy, runner, invite(f"sip:4420@{EDGE}"), CALLER, 100.0), GW2)
    assert isinstance(out, Request)
    busy = through(proxy, runner, answer(out, 486), GW2, 100.2)
    assert [m.status for m in parsed(busy, CALLER) if isinstance(m, Response)] == [486]
    assert ended == ["call-1"]
    assert set(runner.calls) == {"call-1", out.call_id}  # lingering for retransmissions


def requests(sends: list[Send], destination: Destination) -> list[Request]:
    return [m for m in parsed(sends, destination) if isinstance(m, Request)]


def failover_run() -> tuple[Proxy, B2buaRunner]:
    """1407 → gateways 1 then 2, in b2bua mode."""
    proxy, runner = b2bua_proxy()
    assert runner is not None
    table = Table()
    table.put("rule", "r1407", Rule(prefix="1407", gateways=("1", "2"), mode="b2bua"))
    proxy.router = NumberRouter(
        table, b2bua=lambda hop: carried_by_b2bua(table.index, hop.rule_id, hop.gateway_id)
    )
    return proxy, runner


def test_a_503_or_a_timeout_on_leg_b_tries_the_next_gateway_with_a_new_leg() -> None:
    proxy, runner = failover_run()
    [first] = requests(through(proxy, runner, invite(), CALLER, 100.0), GW1)
    busy = through(proxy, runner, answer(first, 503), GW1, 100.1)
    assert [m.status for m in parsed(busy, CALLER) if isinstance(m, Response)] == []
    [second] = requests(busy, GW2)
    assert second.method == "INVITE"
    assert second.call_id not in {first.call_id, "call-1"} and second.from_tag != first.from_tag
    assert {first.call_id, second.call_id} < set(runner.calls)
    ok = through(proxy, runner, answer(second, 200), GW2, 100.2)
    assert [m.status for m in parsed(ok, CALLER) if isinstance(m, Response)] == [200]

    proxy, runner = failover_run()  # silence: our own 408 after 64 T1, then the next one
    [first] = requests(through(proxy, runner, invite(), CALLER, 100.0), GW1)
    timed_out: list[Send] = []
    for step in range(1, 70):
        timed_out += [s for s in runner.expire(100.0 + step) if isinstance(s, Send)]
    retried = requests(timed_out, GW2)
    assert {(m.method, m.call_id) for m in retried} == {("INVITE", retried[0].call_id)}
    assert retried[0].call_id != first.call_id  # a new leg B, retransmitted as UDP does


def test_a_busy_gateway_or_the_last_one_failing_is_the_callers_answer() -> None:
    proxy, runner = failover_run()
    [first] = requests(through(proxy, runner, invite(), CALLER, 100.0), GW1)
    busy = through(proxy, runner, answer(first, 486), GW1, 100.1)
    assert [m.status for m in parsed(busy, CALLER) if isinstance(m, Response)] == [486]
    assert parsed(busy, GW2) == []
    proxy, runner = failover_run()
    [first] = requests(through(proxy, runner, invite(), CALLER, 100.0), GW1)
    [second] = requests(through(proxy, runner, answer(first, 503), GW1, 100.1), GW2)
    last = through(proxy, runner, answer(second, 503), GW2, 100.2)
    assert [m.status for m in parsed(last, CALLER) if isinstance(m, Response)] == [503]
