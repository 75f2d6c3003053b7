"""What the transports count, for `/metrics` (every process with SIP sockets serves them).

Labels are fixed small sets, so no peer can grow the series.
"""

from __future__ import annotations

from prometheus_client import Counter

TCP_REFUSED = Counter(
    "callmesh_sip_tcp_refused",
    "TCP connections closed at accept: limit (all connections), source_limit (one "
    "source's), flood (the source is over the flood limit)",
    ["reason"],
)
TCP_TIMED_OUT = Counter(
    "callmesh_sip_tcp_timed_out",
    "TCP connections closed because a message (or the first one) did not arrive whole in time",
)
TCP_STALLED = Counter(
    "callmesh_sip_tcp_stalled",
    "Stream connections (tcp, tls, ws, wss) cut because the peer left more than the unread "
    "limit of what we sent it unread (a ping flood that reads no pong, a peer that never reads)",
    ["transport"],
)
UDP_OVERSIZE = Counter(
    "callmesh_sip_udp_oversize",
    "Messages not sent because they are larger than a UDP datagram holds",
    ["kind"],
)
TLS_HANDSHAKE_FAILURES = Counter(
    "callmesh_sip_tls_handshake_failures",
    "TLS handshakes that failed, either direction: timeout, closed (the peer went away), "
    "certificate (the peer's did not verify), peer_alert (the peer refused ours or the "
    "handshake), protocol_version (TLS 1.0/1.1 or older), protocol (not TLS as we speak it)",
    ["reason"],
)
WS_REFUSED = Counter(
    "callmesh_sip_ws_refused",
    "WebSocket upgrades refused with an HTTP 4xx: not_websocket (not a valid upgrade "
    "request), subprotocol (no sip among the offered subprotocols), origin (an Origin not "
    "in CALLMESH_WS_ORIGINS)",
    ["reason"],
)
WS_CLOSED = Counter(
    "callmesh_sip_ws_closed",
    "WebSocket connections the edge closed for their messages: too_big (a message over the "
    "size limit), protocol (frames that break RFC 6455)",
    ["reason"],
)
