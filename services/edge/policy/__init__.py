"""The edge's security and routing policies, behind the few call sites the proxy core has.

`EdgePolicies` bundles what `CALLMESH_*` switched on: protection (`guard`),
the call limits shared by the cluster (`leases`), fraud screening (`fraud`), topology hiding
(`topology`, needs `CALLMESH_TOPOLOGY_KEYS`), the routing hook, and header
manipulation from the routing table.  It implements the core's policy stages
(`services.edge.proxy.stages.PolicyStages`, whose own stages do nothing: the
core's default); each is cheap when its policy is off.
"""

from __future__ import annotations

import logging
from typing import Final

from services.edge.hooks import HookSettings, RoutingHook
from services.edge.policy.call_limit_settings import CallLimitSettings
from services.edge.policy.fraud import FraudScreen
from services.edge.policy.guard import Guard, Trusted
from services.edge.policy.limits import CallLeases
from services.edge.policy.routing import TableView, decide, hop_topology, manipulate
from services.edge.policy.topology import DialogPlan, TopologyGate
from services.edge.protection import (
    FloodSettings,
    ProtectionSettings,
    ScannerSettings,
)
from services.edge.protection.scanner import SCANNER_USER_AGENTS
from services.edge.proxy.actions import Action
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.media import Policy
from services.edge.proxy.routes import Found, Hop
from services.edge.proxy.stages import PolicyStages
from services.edge.topology import Keyring
from shared.fraud.rules import FraudQuery, FraudVerdict
from shared.limits.model import LimitQuery, LimitVerdict
from shared.routing_table.media import table_media_relay
from shared.settings import Settings
from shared.sip.errors import SipError
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination
from shared.sip.via import Via

log = logging.getLogger("callmesh.edge")

__all__ = ["DialogPlan", "EdgePolicies", "PolicyContext", "Trusted"]

NO_KEYS_REASON: Final = "Server Internal Error (topology hiding needs CALLMESH_TOPOLOGY_KEYS)"
NO_KEYS_HEADER: Final = 'SIP;cause=500;text="topology hiding needs CALLMESH_TOPOLOGY_KEYS"'


class PolicyContext:
    """What one forwarding's branches need: the caller's source group, the dialog's plan.

    A plain class, not a dataclass: a generated `__init__` runs as Python even in the
    compiled build, and one of these is made per call."""

    __slots__ = ("group", "plan")

    def __init__(self, group: str = "0", plan: DialogPlan | None = None) -> None:
        self.group: Final = group
        self.plan: Final = plan

    @property
    def restored(self) -> bool:
        """A hidden dialog's request from its outside, turned back into the inside's."""
        return self.plan is not None and self.plan.from_outside


class EdgePolicies(PolicyStages):
    """The policy stages of an edge: protection, topology hiding, routing hook, manipulation."""

    def __init__(
        self,
        table: TableView,
        guard: Guard,
        topology: TopologyGate | None = None,
        hook: RoutingHook | None = None,
        leases: CallLeases | None = None,
    ) -> None:
        self.table = table
        self.guard = guard
        self.leases = leases if leases is not None else CallLeases(CallLimitSettings(), table)
        self.topology = topology
        self.hook = hook
        self.fraud = FraudScreen(table)
        self._warned: set[str] = set()

    @classmethod
    def from_settings(
        cls, settings: Settings, interfaces: Interfaces, table: TableView, trusted: Trusted
    ) -> EdgePolicies:
        """Raises `ValueError` (or `HookLoadError`) naming the setting that is unusable."""
        keys = settings.topology_keys
        topology = None
        if keys is not None:
            topology = TopologyGate(Keyring.parse(keys.get_secret_value()), interfaces)
        hook = HookSettings(
            module=settings.routing_hook, budget_ms=settings.routing_hook_budget_ms
        ).load()
        guard = Guard(protection_settings(settings), settings.instance, trusted, interfaces)
        return cls(table, guard, topology, hook, CallLeases(limit_settings(settings), table))

    # ----- before parsing / outside transactions ----------------------------------------

    def drop_flood(
        self, data: bytes, source: Destination, now: float, actions: list[Action]
    ) -> bool:
        """Raw bytes from `source`, before parsing: True drops them (a blocked source)."""
        return self.guard.drop_flood(data, source, now, actions)

    def refuse_connection(self, source: Destination, now: float, actions: list[Action]) -> bool:
        """A new TCP connection from `source`, counted like a request: True refuses it."""
        return self.guard.flooding(source, now, actions)

    def screen(
        self,
        request: Request,
        source: Destination,
        now: float,
        actions: list[Action],
        context: PolicyContext | None = None,
    ) -> bool:
        """A restored request's token opened: it is a peer of our dialog, not a scanner."""
        known = context is not None and context.restored
        return self.guard.screen(request, source, now, actions, known=known)

    def inbound(self, request: Request) -> PolicyContext | None:
        """A request outside any transaction, before routing: restored if from the outside."""
        if self.topology is None:
            return None
        plan = self.topology.inbound(request)
        return None if plan is None else PolicyContext(plan=plan)

    def restore_response(self, response: Response) -> bool:
        """False: drop the response (a bad topology token)."""
        return self.topology is None or self.topology.restore_from_outside(response)

    # ----- routing a number -------------------------------------------------------------

    def admit_call(self, request: Request, source: Destination, now: float) -> PolicyContext:
        return PolicyContext()

    def call_ended(self, call_id: str) -> None:
        """A BYE that passed the dialog check: the call's limit slots are free again, whichever
        edge admitted it."""
        self.leases.release(call_id, anywhere=True)

    def fraud_for(self, request: Request, peer: str | None, number: str) -> FraudQuery | None:
        return self.fraud.query(request, peer, number)

    def screened(self, query: FraudQuery, verdict: FraudVerdict | None) -> None:
        self.fraud.apply(query, verdict)

    def limits_for(
        self, request: Request, source: Destination, peer: str | None, hops: list[Hop], now: float
    ) -> LimitQuery | None:
        return self.leases.query(request, source, peer, hops, now)

    def limited(
        self,
        request: Request,
        query: LimitQuery,
        verdict: LimitVerdict | None,
        hops: list[Hop],
        now: float,
    ) -> list[Hop]:
        return self.leases.apply(query, verdict, hops, now)

    def channel_for(self, call_id: str, hop: Hop) -> LimitQuery | None:
        return self.leases.channel_for(call_id, hop)

    def channel_taken(self, query: LimitQuery, verdict: LimitVerdict | None, now: float) -> bool:
        return self.leases.channel_taken(query, verdict, now)

    def decide(self, request: Request, source: Destination, number: str, found: Found) -> Found:
        if self.hook is None:
            return found
        return decide(self.hook, request, source, number, found)

    def media_policy(self, hop: Hop) -> Policy | None:
        """The table's media relay policy toward `hop`: its gateway's, else its rule's."""
        if hop.gateway_id is None and hop.rule_id is None:
            return None
        return table_media_relay(self.table.index, hop.rule_id, hop.gateway_id)

    # ----- branches and responses -------------------------------------------------------

    def outgoing(
        self, request: Request, context: PolicyContext | None, hop: Hop, outbound: Interface
    ) -> None:
        """A branch's request, its Via (and Record-Route) added, before it is sent."""
        plan = context.plan if context is not None else None
        options = None
        if plan is None and (hop.gateway_id is not None or hop.rule_id is not None):
            index = self.table.index
            options = hop_topology(index, hop)
            if options is not None and self.topology is None:
                raise self._no_topology_keys(hop)
            manipulate(index, request, context.group if context else "0", hop)
        if plan is None and options is None:
            return
        assert self.topology is not None  # a plan exists only where the gate restored it
        self.topology.outgoing(request, plan, options, outbound)

    def _no_topology_keys(self, hop: Hop) -> SipError:
        """The table asks for hiding toward `hop`, this edge has no key: fail closed.

        Tables change live, so neither the routing service (it does not know
        the edges' keys) nor the edge's start can refuse this; the branch
        fails with 500 instead of leaking, a next gateway is still tried, and
        the operator gets one log line per target naming the setting.
        """
        target = f"gateway {hop.gateway_id}" if hop.gateway_id else f"rule {hop.rule_id}"
        if target not in self._warned:
            self._warned.add(target)
            log.error(
                "topology hiding toward %s is asked for by the routing table but "
                "CALLMESH_TOPOLOGY_KEYS is not set: its branches fail with 500",
                target,
            )
        return SipError(NO_KEYS_REASON, 500, (("Reason", NO_KEYS_HEADER),))

    def upstream(self, response: Response, popped: Via, outbound: Interface) -> None:
        """A response relayed upstream, the edge's Via popped."""
        if self.topology is not None:
            self.topology.upstream(response, popped, outbound)

    def hide_answer(self, response: Response, context: PolicyContext, outbound: Interface) -> None:
        """A response the edge made itself to a restored request (`context.restored`)."""
        if self.topology is not None and context.plan is not None:
            self.topology.answer(response, context.plan, outbound)

    def failure_sent(self, request: Request) -> None:
        """A failed (or cancelled) INVITE frees its leases."""
        if request.method == "INVITE" and request.to_tag is None:
            self.leases.release(request.call_id)


def protection_settings(settings: Settings) -> ProtectionSettings:
    agents = settings.scanner_user_agents
    return ProtectionSettings(
        trusted=settings.trusted_networks,
        flood=FloodSettings(
            limit=settings.pike_limit,
            period=settings.pike_period,
            block_time=settings.pike_block_time,
            max_sources=settings.pike_max_sources,
            max_blocked=settings.pike_max_blocked,
        ),
        scanner=ScannerSettings(
            action=settings.scanner_action,
            sweep_targets=settings.scanner_sweep_targets,
            sweep_window=settings.scanner_sweep_window,
            flag_time=settings.scanner_flag_time,
            user_agents=(
                SCANNER_USER_AGENTS
                if agents is None
                else tuple(a.strip() for a in agents.split(",") if a.strip())
            ),
        ),
    )


def limit_settings(settings: Settings) -> CallLimitSettings:
    return CallLimitSettings(
        per_subscriber=settings.call_limit_per_subscriber,
        per_subscriber_cps=settings.call_limit_per_subscriber_cps,
        per_source=settings.call_limit_per_source,
        per_source_cps=settings.call_limit_per_source_cps,
        max_call_duration=settings.call_limit_max_call_duration,
        concurrent_status=settings.call_limit_status,
    )
