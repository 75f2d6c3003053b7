"""Programmable routing: the operator's Python counterpart of opensips.cfg's route blocks.

Set `CALLMESH_ROUTING_HOOK=package.module` (function `route`) or
`package.module:function`, and optionally `CALLMESH_ROUTING_HOOK_BUDGET_MS`
(default 5).  The module is imported once when the edge starts; a module
that cannot be imported or has no such function stops the start with a
clear error (`HookLoadError`).  For every out-of-dialog request the edge
has routed, it calls

    def route(request: RequestView, decision: Decision) -> Decision | None

`request` is read-only (method, uri, uri_user, from_user, to_user, call_id,
header(), headers(), source_ip, source_port, transport).  `decision` holds
the ordered `targets` (`Target(uri, gateway_id)`), the matched `rule_id`
and the routed `number`.  Return None to keep it, or a new `Decision`
(`dataclasses.replace(decision, targets=...)`, or `reject=Reject(403,
"...")` to answer the caller instead).

A hook that raises, returns something else, or runs past its budget is
ignored for that call: the default decision is used, the failure is counted
(`RoutingHook.counts`) and logged in one line.  See `runner` for why the
budget is measured rather than enforced by a thread, and `example` for a
working hook (premium-rate numbers to one carrier, satellite numbers refused).
"""

from services.edge.hooks.decision import Decision, Reject, RequestView, Target
from services.edge.hooks.runner import HookLoadError, HookResult, HookSettings, RoutingHook

__all__ = [
    "Decision",
    "HookLoadError",
    "HookResult",
    "HookSettings",
    "Reject",
    "RequestView",
    "RoutingHook",
    "Target",
]
