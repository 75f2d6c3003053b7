"""The routing-table service: owns gateways, carriers, rules and dialplans in Redis.

Changes arrive over HTTP or the ``routing.commands`` queue, are stored atomically
with a version bump, and are announced as ``routing.…`` events so every edge's
in-memory copy (:mod:`shared.routing_table.cache`) follows within milliseconds.
"""
