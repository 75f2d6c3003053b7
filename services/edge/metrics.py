"""The edge's Prometheus metrics, all of them (default registry, served by every ``/metrics``).

One module, so the names a dashboard reads are found in one place; the core
(proxy, policies, destinations) and the runtime count here alike.  Label
values are bounded: methods outside RFC 3261's and common extensions' set are
counted as ``other`` so a scanner cannot grow the series without limit; the
other labels are gateway ids, operator-configured sets and destination URIs,
and fixed reasons.

Counters and gauges are plain integers (`shared.counters`): the proxy counts
several series per call, and a ``prometheus_client`` increment takes a lock.
They reach ``/metrics`` through one collector, read at scrape time, under the
names and labels they always had.  The loop-lag histogram is observed once per
probe, not per message, and stays ``prometheus_client``'s.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import REGISTRY, Histogram

from shared.counters import IntCounter, IntCounters, IntGauge, IntGauges, IntMetrics

KNOWN_METHODS: Final = frozenset(
    {
        "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "UPDATE", "INFO",
        "PRACK", "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "PUBLISH",
    }
)  # fmt: skip # fourteen method names read as a table, not as a column

METRICS: Final = IntMetrics()
"""Every integer metric below, registered once with the default registry."""

REQUESTS: Final = METRICS.add(
    IntCounters[str]("callmesh_edge_requests", "SIP requests received", ("method",))
)
"""By method, one outside `KNOWN_METHODS` as ``other`` (the proxy core counts them)."""
RESPONSES: Final = METRICS.add(
    IntCounters[int](
        "callmesh_edge_responses", "SIP responses sent upstream (forwarded or own)", ("code",)
    )
)
"""By status code (three digits: at most 600 series)."""
CALLS_SET_UP: Final = METRICS.add(
    IntCounter("callmesh_edge_calls_set_up", "INVITEs answered with a 2xx")
)
FAILOVERS: Final = METRICS.add(
    IntCounter("callmesh_edge_failovers", "Requests moved on to the next gateway")
)
GATEWAY_ATTEMPTS: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_gateway_attempts", "Requests forwarded to a gateway", ("gateway",)
    )
)
GATEWAY_FAILURES: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_gateway_failures",
        "Gateway failures (timeout, 5xx, transport)",
        ("gateway",),
    )
)
TRANSACTIONS: Final = METRICS.add(
    IntGauges[str]("callmesh_edge_transactions", "Live SIP transactions", ("kind",))
)
ROUTING_VERSION: Final = METRICS.add(
    IntGauge("callmesh_edge_routing_version", "Routing table version the edge routes with")
)
LOOP_LAG = Histogram(
    "callmesh_edge_loop_lag_seconds",
    "How late the event loop ran a callback scheduled for now",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
RECEIVE_WAIT = Histogram(
    "callmesh_edge_receive_wait_seconds",
    "The longest a datagram waited in a UDP socket's buffer, per loop probe (0.1 s)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RECEIVE_QUEUE = Histogram(
    "callmesh_edge_receive_queue_seconds",
    "The shortest a datagram waited in a UDP socket's buffer per loop probe (0.1 s), the"
    " longest such among the sockets: a queue that stands",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

SHEDDING: Final = METRICS.add(
    IntGauge(
        "callmesh_edge_shedding",
        "1 while new calls are refused (event loop lagging, a queue standing in the sockets, or"
        " call events piling up)",
    )
)
CALLS_REFUSED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_calls_refused_overload", "New INVITEs answered 503 while shedding load"
    )
)
RELAY_REFUSED: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_relay_refused",
        "Requests refused because they would have been relayed along a route the edge did not set",
        ("reason",),
    )
)

# ----- media relay through rtpengine -------------------------------------------------

MEDIA_RELAYED_CALLS: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_media_relayed_calls", "New calls whose media rtpengine relays (offer taken)"
    )
)
MEDIA_EXPIRED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_media_expired",
        "rtpengine deletes of calls the accounting service closed as timeout (edge.media.expired)",
    )
)
MEDIA_FAILURES: Final = METRICS.add(
    IntCounters[tuple[str, str]](
        "callmesh_edge_media_failures",
        "rtpengine commands that failed (offer, answer, delete), and what the edge did: "
        "rejected (503), unrelayed (carried on without relay), ignored (a delete), "
        "requeued (a timed-out call's delete waiting for rtpengine)",
        ("command", "outcome"),
    )
)

# ----- policies: protection, hooks, header manipulation ----------------------------

SOURCES_BLOCKED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_sources_blocked", "Sources blocked for flooding (edge.source.blocked events)"
    )
)
FLOOD_DROPPED: Final = METRICS.add(
    IntCounter("callmesh_edge_flood_dropped", "Requests dropped from blocked sources")
)
SCANNER_REQUESTS: Final = METRICS.add(
    IntCounters[str]("callmesh_edge_scanner_requests", "Requests of flagged scanners", ("action",))
)
LIMIT_CHECKS: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_limit_checks",
        "New calls checked against the shared limits: admitted, refused_concurrent, refused_cps,"
        " unknown (the store did not answer: admitted), gateway_skipped (gateways at their"
        " channel cap passed over), and local (CPS taken from the worker's local allowance,"
        " no round trip)",
        ("outcome",),
    )
)
FRAUD_CHECKS: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_fraud_checks",
        "New calls a fraud rule watches, asked of the shared fraud counts: admitted, refused"
        " (a block), unknown (the store did not answer: admitted)",
        ("outcome",),
    )
)
HOOK_CALLS: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_routing_hook_calls", "Routing hook runs by outcome", ("outcome",)
    )
)
MANIPULATED_BRANCHES: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_manipulated_branches", "Branches changed by header manipulation rules"
    )
)
AUTH_FAILURES: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_auth_failures",
        "Failed digest authentications: wrong-credentials, or blocked (refused while blocked)",
        ("reason",),
    )
)
AUTH_BLOCKED: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_auth_blocked",
        "Accounts and sources blocked for failed authentications (edge.auth.blocked events)",
        ("kind",),
    )
)

# ----- dispatcher destinations and health targets --------------------------------

DESTINATION_ATTEMPTS: Final = METRICS.add(
    IntCounters[tuple[str, str]](
        "callmesh_edge_destination_attempts",
        "Requests forwarded to a dispatcher destination",
        ("set", "destination"),
    )
)
DESTINATION_FAILURES: Final = METRICS.add(
    IntCounters[tuple[str, str]](
        "callmesh_edge_destination_failures",
        "Dispatcher destination failures (timeout, 5xx, transport)",
        ("set", "destination"),
    )
)
ACTIVE_CALLS: Final = METRICS.add(
    IntGauges[tuple[str, str]](
        "callmesh_edge_destination_active_calls",
        "Calls this worker set up on a destination and has not seen end (least_calls input)",
        ("set", "destination"),
    )
)
TARGET_STATE: Final = METRICS.add(
    IntGauges[tuple[str, str]](
        "callmesh_edge_target_state",
        "The health state this edge routes with, per health target: 1 for the current state",
        ("target", "state"),
    )
)

ACKS_DROPPED: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_acks_dropped",
        "Stateless ACKs (for a 2xx) not forwarded: parked_full (too many waiting for DNS), "
        "deadline (DNS answered too late), unresolvable (the next hop's name has no target)",
        ("reason",),
    )
)
"""`services/edge/proxy/acks.py`, `parked_acks.py`."""

# ----- workers: messages handed to the worker owning their call ------------------

HANDED_ON: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_handed_on",
        "Messages (UDP, or come on a connection) handed to the worker that owns their Call-ID",
    )
)
STREAM_WRITES_HANDED_ON: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_stream_writes_handed_on",
        "Messages for a connection another worker holds (TCP, TLS, WS), handed to it to write",
    )
)
HANDED_ON_UNREACHABLE: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_handed_on_unreachable",
        "UDP messages handled by the worker they reached: their owner was not listening",
    )
)
HANDED_ON_DROPPED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_handed_on_dropped",
        "UDP messages for another worker dropped: its queue was full (the sender retransmits)",
    )
)

# ----- events: call events and failure reports on their way to the bus -----------

EVENTS_WAITING: Final = METRICS.add(
    IntGauge(
        "callmesh_edge_events_waiting", "Events (call events, reports) waiting to be published"
    )
)
EVENTS_DROPPED: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_events_dropped",
        "Events never published: backlog_full (the bus too slow for too long), failed, stopped",
        ("reason",),
    )
)

OUTBOX_UNSETTLED: Final = METRICS.add(
    IntGauge(
        "callmesh_edge_outbox_unsettled",
        "Call events journaled in the outbox and not confirmed by the broker yet",
    )
)
OUTBOX_REPLAYED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_outbox_replayed",
        "Call events a previous run journaled and never saw confirmed, published again at start",
    )
)
OUTBOX_UNJOURNALED: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_outbox_unjournaled",
        "Call events not journaled (published from memory only): full (the outbox's size"
        " bound), error (the disk refused the write)",
        ("reason",),
    )
)
OUTBOX_SKIPPED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_outbox_skipped",
        "Unreadable journal records skipped at start (a torn last line, garbage)",
    )
)

# ----- phones behind NAT (services/edge/proxy/nat.py, contacts.py, next_hop.py) ------------

NAT_REGISTRATIONS: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_nat_registrations",
        "REGISTERs from behind NAT handed to the registrar (a sign of nat.behind_nat)",
    )
)
NAT_CALLERS: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_nat_callers",
        "Dialog-creating requests whose caller's flow was recorded (behind NAT or on a connection)",
    )
)
NAT_CONTACTS: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_nat_contacts",
        "Contacts of phones on a flow rewritten to the edge's own (requests and 18x/2xx)",
    )
)

# ----- keepalives of NAT'd and connection bindings (services/edge/runtime/keepalives.py) ----

KEEPALIVES_WATCHED: Final = METRICS.add(
    IntGauge(
        "callmesh_edge_keepalive_bindings", "Bindings this edge worker keeps open with keepalives"
    )
)
KEEPALIVES_SENT: Final = METRICS.add(
    IntCounters[str]("callmesh_edge_keepalives_sent", "Keepalives sent", ("kind",))
)
KEEPALIVE_FAILURES: Final = METRICS.add(
    IntCounters[str](
        "callmesh_edge_keepalive_failures", "Keepalives that could not be sent", ("kind",)
    )
)
KEEPALIVE_ANSWERS: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_keepalive_answers",
        "Answers to keepalives: responses to OPTIONS (any status), CRLF pongs",
    )
)
KEEPALIVE_PONGS_MISSED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_keepalive_pongs_missed",
        "CRLF pings whose pong did not come back on their connection within 10 s",
    )
)
KEEPALIVE_REMOVALS: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_keepalive_removals",
        "Bindings reported unreachable to the registrar (no answer for the timeout)",
    )
)
KEEPALIVE_REPORTS_DELAYED: Final = METRICS.add(
    IntCounter(
        "callmesh_edge_keepalive_reports_delayed",
        "Unreachable reports the bus refused (broker away), each sent again next round",
    )
)
KEEPALIVES_LOADED: Final = METRICS.add(
    IntGauge(
        "callmesh_edge_keepalive_bindings_loaded",
        "Bindings of this worker read from the store at its start (and pinged since)",
    )
)

REGISTRY.register(METRICS)
