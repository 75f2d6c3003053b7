"""The edge's ``/metrics`` keeps its names, types and labels, and a call counts the same series.

Names and label sets are what dashboards and alerts read (docs/edge.md,
docs/security.md, docs/health.md); this is their list, checked against what
the default registry exposes, and a call through the proxy core checked
against the series it moves, read from the text Prometheus scrapes.
"""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.edge import metrics
from shared.counters import IntCounters, IntGauges
from tests.services.edge.proxy.test_core import (
    GW1,
    GW2,
    answer,
    core_run,
    invite,
    only_request,
)

EDGE_FAMILIES = {
    "callmesh_edge_requests": ("counter", ("method",)),
    "callmesh_edge_responses": ("counter", ("code",)),
    "callmesh_edge_calls_set_up": ("counter", ()),
    "callmesh_edge_failovers": ("counter", ()),
    "callmesh_edge_gateway_attempts": ("counter", ("gateway",)),
    "callmesh_edge_gateway_failures": ("counter", ("gateway",)),
    "callmesh_edge_transactions": ("gauge", ("kind",)),
    "callmesh_edge_routing_version": ("gauge", ()),
    "callmesh_edge_loop_lag_seconds": ("histogram", ()),
    "callmesh_edge_receive_wait_seconds": ("histogram", ()),
    "callmesh_edge_receive_queue_seconds": ("histogram", ()),
    "callmesh_edge_shedding": ("gauge", ()),
    "callmesh_edge_calls_refused_overload": ("counter", ()),
    "callmesh_edge_relay_refused": ("counter", ("reason",)),
    "callmesh_edge_sources_blocked": ("counter", ()),
    "callmesh_edge_flood_dropped": ("counter", ()),
    "callmesh_edge_scanner_requests": ("counter", ("action",)),
    "callmesh_edge_limit_checks": ("counter", ("outcome",)),
    "callmesh_edge_routing_hook_calls": ("counter", ("outcome",)),
    "callmesh_edge_manipulated_branches": ("counter", ()),
    "callmesh_edge_auth_failures": ("counter", ("reason",)),
    "callmesh_edge_auth_blocked": ("counter", ("kind",)),
    "callmesh_edge_destination_attempts": ("counter", ("set", "destination")),
    "callmesh_edge_destination_failures": ("counter", ("set", "destination")),
    "callmesh_edge_destination_active_calls": ("gauge", ("set", "destination")),
    "callmesh_edge_target_state": ("gauge", ("target", "state")),
    "callmesh_edge_acks_dropped": ("counter", ("reason",)),
    "callmesh_edge_handed_on": ("counter", ()),
    "callmesh_edge_handed_on_unreachable": ("counter", ()),
    "callmesh_edge_stream_writes_handed_on": ("counter", ()),
    "callmesh_edge_handed_on_dropped": ("counter", ()),
    "callmesh_edge_events_waiting": ("gauge", ()),
    "callmesh_edge_outbox_unsettled": ("gauge", ()),
    "callmesh_edge_outbox_replayed": ("counter", ()),
    "callmesh_edge_outbox_unjournaled": ("counter", ("reason",)),
    "callmesh_edge_outbox_skipped": ("counter", ()),
    "callmesh_edge_events_dropped": ("counter", ("reason",)),
    "callmesh_edge_media_relayed_calls": ("counter", ()),
    "callmesh_edge_media_expired": ("counter", ()),
    "callmesh_edge_media_failures": ("counter", ("command", "outcome")),
    "callmesh_edge_nat_registrations": ("counter", ()),
    "callmesh_edge_nat_callers": ("counter", ()),
    "callmesh_edge_nat_contacts": ("counter", ()),
    "callmesh_edge_keepalive_bindings": ("gauge", ()),
    "callmesh_edge_keepalives_sent": ("counter", ("kind",)),
    "callmesh_edge_keepalive_failures": ("counter", ("kind",)),
    "callmesh_edge_keepalive_answers": ("counter", ()),
    "callmesh_edge_keepalive_pongs_missed": ("counter", ()),
    "callmesh_edge_keepalive_removals": ("counter", ()),
    "callmesh_edge_keepalive_reports_delayed": ("counter", ()),
    "callmesh_edge_keepalive_bindings_loaded": ("gauge", ()),
    "callmesh_edge_fraud_checks": ("counter", ("outcome",)),
}
"""Every family of the edge: its type and label names (a histogram adds ``le`` itself)."""

Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape() -> Scraped:
    """Every ``callmesh_edge_`` sample of the default registry, as Prometheus reads its text."""
    text = generate_latest(REGISTRY).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("callmesh_edge_")
        for sample in family.samples
    }


def moved(before: Scraped, after: Scraped) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The counter series that changed between two scrapes, by how much."""
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0].endswith("_total") and value != before.get(key, 0.0)
    }


def test_every_family_keeps_its_name_type_and_labels() -> None:
    exposed = {
        family.name: family.type
        for family in REGISTRY.collect()
        if family.name.startswith("callmesh_edge_")
    }
    assert exposed == {name: kind for name, (kind, _labels) in EDGE_FAMILIES.items()}
    labelled = {
        metric.name: metric.labels
        for metric in vars(metrics).values()
        if isinstance(metric, IntCounters | IntGauges)
    }
    assert labelled == {name: labels for name, (_kind, labels) in EDGE_FAMILIES.items() if labels}


def test_a_call_with_a_failover_counts_the_series_it_always_did() -> None:
    run = core_run()
    before = scrape()
    first = only_request(run.send(invite()), GW1)
    second = only_request(run.send(answer(first, 503), GW1), GW2)
    run.send(answer(second, 200), GW2)
    assert moved(before, scrape()) == {
        ("callmesh_edge_requests_total", frozenset({("method", "INVITE")})): 1.0,
        ("callmesh_edge_responses_total", frozenset({("code", "100")})): 1.0,
        ("callmesh_edge_responses_total", frozenset({("code", "200")})): 1.0,
        ("callmesh_edge_gateway_attempts_total", frozenset({("gateway", "1")})): 1.0,
        ("callmesh_edge_gateway_attempts_total", frozenset({("gateway", "2")})): 1.0,
        ("callmesh_edge_gateway_failures_total", frozenset({("gateway", "1")})): 1.0,
        ("callmesh_edge_failovers_total", frozenset()): 1.0,
        ("callmesh_edge_calls_set_up_total", frozenset()): 1.0,
    }


def test_a_method_outside_the_known_set_counts_as_other() -> None:
    run = core_run()
    before = scrape()
    probe = invite().replace(b"INVITE sip", b"XPROBE sip").replace(b"1 INVITE", b"1 XPROBE")
    assert only_request(run.send(probe), GW1).method == "XPROBE"  # forwarded as it came
    counted = moved(before, scrape())
    assert counted[("callmesh_edge_requests_total", frozenset({("method", "other")}))] == 1.0
    assert not [key for key in counted if ("method", "XPROBE") in key[1]]
