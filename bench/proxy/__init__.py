"""SIP proxy benchmark: SIPp calls through Callmesh's edge and through Kamailio.

Both proxies get the same routing table and the same traffic, so the failed-call
share and CPU time per call can be compared row by row.  Run it from the
repository root with ``python -m bench.proxy.run``.
"""
