"""Routing hooks and header manipulation through the proxy core: what the gateway receives."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from services.edge.destinations import DispatchSets
from services.edge.hooks import Decision, RequestView, RoutingHook, example
from services.edge.hooks.decision import Target
from services.edge.policy.routing import b2bua_carriage
from services.edge.proxy.routes import Hop
from shared.dispatcher import DispatcherSet
from shared.dispatcher.model import SetMember
from shared.routing_table.cache import IndexRoutes
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Gateway, Manipulation
from shared.sip.message import Request
from shared.sip.transport.destination import Destination
from tests.services.edge.policy.support import (
    GW1,
    INSIDE,
    invite,
    policy_run,
    requests_to,
    responses_to,
)

PREMIUM = Destination("udp", "198.51.100.50", 5060)
"""Where `services.edge.hooks.example` sends premium-rate numbers."""


def hook_calls(outcome: str) -> float:
    name = "callmesh_edge_routing_hook_calls_total"
    value = REGISTRY.get_sample_value(name, {"outcome": outcome})
    return value or 0.0


# ----- the routing hook ----------------------------------------------------------------------


def test_the_example_hook_sends_a_premium_number_to_its_carrier() -> None:
    run = policy_run(RoutingHook.load("services.edge.hooks.example"))
    changed = hook_calls("changed")
    actions = run.send(invite("19005551234"))
    assert requests_to(actions, GW1) == []
    [forwarded] = requests_to(actions, PREMIUM)
    assert forwarded.uri_text == "sip:19005551234@198.51.100.50:5060"
    assert hook_calls("changed") == changed + 1
    # A number the hook has no opinion on keeps the table's decision.
    [normal] = requests_to(run.send(invite(extra="X-Call: 2\r\n").replace(b"in1", b"in2")), GW1)
    assert normal.uri_text == f"sip:14075551234@{GW1.host}"


def test_the_example_hook_refuses_a_satellite_number_even_without_a_route() -> None:
    run = policy_run(RoutingHook.load("services.edge.hooks.example"))
    responses = responses_to(run.send(invite("8816555123")), INSIDE)
    assert [(r.status, r.reason) for r in responses] == [
        (100, "Trying"),
        (403, "Destination Blocked"),
    ]


def failing(error: Exception) -> Callable[[RequestView, Decision], Decision | None]:
    def route(request: RequestView, decision: Decision) -> Decision | None:
        raise error

    return route


def test_a_hook_that_raises_falls_back_to_the_table_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = RoutingHook(failing(KeyError("premium")), "broken:route")
    run = policy_run(hook)
    errors = hook_calls("error")
    with caplog.at_level(logging.WARNING, logger="callmesh.edge.hooks"):
        [forwarded] = requests_to(run.send(invite("19005551234")), GW1)
    assert forwarded.uri_text == f"sip:19005551234@{GW1.host}"  # the table's gateway
    assert hook.counts["error"] == 1
    assert hook_calls("error") == errors + 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "broken:route" in line and "KeyError" in line


def test_a_hook_over_its_budget_falls_back_counted_in_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = itertools.count(step=0.5)  # every clock reading half a second later
    hook = RoutingHook(example.route, "slow:route", 0.005, clock=lambda: next(ticks))
    run = policy_run(hook)
    timeouts = hook_calls("timeout")
    with caplog.at_level(logging.WARNING, logger="callmesh.edge.hooks"):
        actions = run.send(invite("19005551234"))
    assert requests_to(actions, PREMIUM) == []  # the hook's answer came too late
    [forwarded] = requests_to(actions, GW1)
    assert forwarded.uri_text == f"sip:19005551234@{GW1.host}"
    assert hook.counts["timeout"] == 1
    assert hook_calls("timeout") == timeouts + 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "slow:route" in line and "timeout" in line and "500.00 ms" in line


# ----- header manipulation, rule by rule -------------------------------------------------------


def manipulated(
    rules: list[dict[str, object]], extra: str = "", kind: str = "gateway", target: str = "1"
) -> Request:
    """The INVITE gateway 1 receives with one rule set of `rules` attached to `kind` `target`."""
    run = policy_run()
    rule_set = Manipulation.model_validate({"scope": {"kind": kind, "id": target}, "rules": rules})
    run.table.put("manipulation", "m1", rule_set)
    [forwarded] = requests_to(run.send(invite(extra=extra)), GW1)
    return forwarded


def test_add_header_appends_or_goes_first() -> None:
    extra = "X-Tenant: a\r\n"
    last = manipulated([{"action": "add_header", "name": "X-Tenant", "value": "b"}], extra)
    assert last.headers("x-tenant") == ["a", "b"]
    first = manipulated(
        [{"action": "add_header", "name": "X-Tenant", "value": "b", "first": True}], extra
    )
    assert first.headers("x-tenant") == ["b", "a"]


def test_remove_header_by_name_removes_every_field_of_it() -> None:
    extra = "X-Trunk: 1\r\nX-Trunk: 2\r\nX-Other: 3\r\n"
    forwarded = manipulated([{"action": "remove_header", "name": "x-trunk"}], extra)
    assert (forwarded.headers("x-trunk"), forwarded.headers("x-other")) == ([], ["3"])


def test_remove_header_by_pattern_spares_the_others_and_protected_ones() -> None:
    extra = "X-Internal-Trunk: pbx\r\nX-Internal-Id: 7\r\nUser-Agent: Asterisk\r\n"
    forwarded = manipulated([{"action": "remove_header", "pattern": "^x-internal"}], extra)
    assert forwarded.headers("x-internal-trunk") == forwarded.headers("x-internal-id") == []
    assert forwarded.headers("user-agent") == ["Asterisk"]
    assert forwarded.call_id == "inside-call-1@10.0.0.5"


def test_replace_header_wholly_and_by_regex() -> None:
    extra = "User-Agent: Asterisk PBX 18.2\r\n"
    whole = manipulated(
        [{"action": "replace_header", "name": "User-Agent", "value": "Callmesh"}], extra
    )
    assert whole.headers("user-agent") == ["Callmesh"]
    regex = manipulated(
        [
            {
                "action": "replace_header",
                "name": "user-agent",
                "pattern": r"PBX ([0-9.]+)",
                "replacement": r"v\1",
            }
        ],
        extra,
    )
    assert regex.headers("user-agent") == ["Asterisk v18.2"]
    absent = manipulated([{"action": "replace_header", "name": "X-None", "value": "x"}])
    assert absent.headers("x-none") == []


def test_rewrite_ruri_user_strips_substitutes_then_prefixes() -> None:
    forwarded = manipulated(
        [
            {
                "action": "rewrite_ruri_user",
                "strip": 1,
                "pattern": "^407",
                "replacement": "4070",
                "prefix": "00",
            }
        ]
    )
    assert forwarded.uri_text == f"sip:0040705551234@{GW1.host}"
    assert forwarded.to.uri.user == "14075551234"  # type: ignore[union-attr]  # To untouched


def test_set_from_display_name_and_user_keep_the_tag() -> None:
    forwarded = manipulated([{"action": "set_from", "display_name": "Callmesh", "user": "4711"}])
    assert forwarded.from_.display_name == "Callmesh"
    assert forwarded.from_.uri.user == "4711"  # type: ignore[union-attr]
    assert forwarded.from_tag == "a1"


def test_set_to_user_and_display_name_keep_the_uri_host() -> None:
    forwarded = manipulated([{"action": "set_to", "user": "0014075551234", "display_name": "B"}])
    assert str(forwarded.to) == '"B" <sip:0014075551234@192.0.2.10>'


def test_sets_apply_by_scope_source_group_then_rule_then_gateway() -> None:
    run = policy_run()
    for set_id, kind, target, value in (
        ("a", "gateway", "1", "gateway"),
        ("b", "rule", "r1407", "rule"),
        ("c", "source_group", "0", "group"),
    ):
        body = {
            "scope": {"kind": kind, "id": target},
            "rules": [{"action": "add_header", "name": "X-Order", "value": value}],
        }
        run.table.put("manipulation", set_id, Manipulation.model_validate(body))
    [forwarded] = requests_to(run.send(invite()), GW1)
    assert forwarded.headers("x-order") == ["group", "rule", "gateway"]


def test_a_set_of_another_gateway_or_rule_does_not_apply() -> None:
    other_gateway = manipulated([{"action": "add_header", "name": "X-A", "value": "1"}], target="2")
    other_rule = manipulated(
        [{"action": "add_header", "name": "X-A", "value": "1"}], kind="rule", target="r1900"
    )
    assert other_gateway.headers("x-a") == other_rule.headers("x-a") == []


def test_a_hook_routes_by_the_request_it_is_shown() -> None:
    """The hook sees the request itself: here its From user picks the carrier."""

    def by_caller(request: RequestView, decision: Decision) -> Decision | None:
        if request.from_user != "alice":
            return None
        return replace(decision, targets=(Target(f"sip:{decision.number}@{PREMIUM.host}"),))

    run = policy_run(RoutingHook(by_caller, "test:by_caller"))
    actions = run.send(invite())
    assert requests_to(actions, GW1) == []
    [forwarded] = requests_to(actions, PREMIUM)
    assert forwarded.uri_text == f"sip:14075551234@{PREMIUM.host}"


def test_the_b2bua_carriage_reads_the_table_of_the_moment_and_the_hops_set() -> None:
    """The router's per-call question: the gateway's or rule's mode in the index the table
    holds when asked (a reload swaps it whole), a set destination's by its set's mode."""
    routes = IndexRoutes()
    sets = DispatchSets()
    sets.put("farm", DispatcherSet(destinations=(SetMember(uri="sip:10.0.0.1"),), mode="b2bua"))
    carried = b2bua_carriage(routes, sets.mode)
    to_gateway = Hop("sip:192.0.2.2", GW1, gateway_id="gw", rule_id="r1")
    assert not carried(to_gateway)  # no such gateway yet: proxied
    reloaded = RoutingIndex()
    reloaded.put("gateway", "gw", Gateway(address="sip:192.0.2.2", mode="b2bua"))
    routes.index = reloaded
    assert carried(to_gateway)
    to_farm = Hop("sip:10.0.0.1", GW1, set_id="farm", set_uri="sip:10.0.0.1")
    assert carried(to_farm)
    assert not carried(Hop("sip:10.0.0.9", GW1, set_id="elsewhere"))
