"""Example routing hook: premium-rate numbers to one carrier, satellite numbers refused.

Enable with `CALLMESH_ROUTING_HOOK=services.edge.hooks.example` (the
function is `route`).  Copy it as the start of your own.
"""

from __future__ import annotations

from dataclasses import replace

from services.edge.hooks.decision import Decision, Reject, RequestView, Target

PREMIUM_PREFIXES = ("1900", "+1900", "44909", "+44909")
PREMIUM_GATEWAY = Target("sip:{number}@198.51.100.50:5060", gateway_id="premium")
BLOCKED_PREFIXES = ("+881", "00881", "881")


def route(request: RequestView, decision: Decision) -> Decision | None:
    number = decision.number
    if number.startswith(BLOCKED_PREFIXES):
        return replace(decision, reject=Reject(403, "Destination Blocked"))
    if number.startswith(PREMIUM_PREFIXES):
        uri = PREMIUM_GATEWAY.uri.format(number=number)
        return replace(decision, targets=(Target(uri, PREMIUM_GATEWAY.gateway_id),))
    return None
