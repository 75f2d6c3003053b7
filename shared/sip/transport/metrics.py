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
UDP_OVERSIZE = Counter(
    "callmesh_sip_udp_oversize",
    "Messages not sent because they are larger than a UDP datagram holds",
    ["kind"],
)
